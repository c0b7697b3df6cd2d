-- GET random ranges of a blob: wrk -s range.lua URL -- <blob size> <range size>
package.path = debug.getinfo(1, "S").source:match("@(.*/)") .. "?.lua;" .. package.path
require "report"

local counter = 0
setup = function(thread)
  counter = counter + 1
  thread:set("id", counter)
end

local size, span
init = function(args)
  size, span = tonumber(args[1]), tonumber(args[2])
  math.randomseed(os.time() * 1000 + (id or 0) * 7919)
end

request = function()
  local start = math.random(0, size - span)
  return wrk.format("GET", nil, { Range = string.format("bytes=%d-%d", start, start + span - 1) })
end

done = function(summary, latency, requests) report(summary, latency) end
