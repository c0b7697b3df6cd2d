-- GET one URL with optional extra headers: wrk -s get.lua URL -- "Header: value" ...
package.path = debug.getinfo(1, "S").source:match("@(.*/)") .. "?.lua;" .. package.path
require "report"

init = function(args)
  for _, h in ipairs(args) do
    local k, v = h:match("^([^:]+):%s*(.*)$")
    if k then wrk.headers[k] = v end
  end
end

done = function(summary, latency, requests) report(summary, latency) end
