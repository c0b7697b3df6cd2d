// fastreg's read-only web page.  Everything shown comes from this registry's own /v2/ API,
// called from the browser with the user's credentials, so the page sees exactly what the user
// may pull.  All data is put into the page with textContent / setAttribute, never as HTML.
"use strict";

(function () {
  const MEDIA = {
    ociIndex: "application/vnd.oci.image.index.v1+json",
    dockerList: "application/vnd.docker.distribution.manifest.list.v2+json",
    ociManifest: "application/vnd.oci.image.manifest.v1+json",
    dockerManifest: "application/vnd.docker.distribution.manifest.v2+json",
    ociConfig: "application/vnd.oci.image.config.v1+json",
    dockerConfig: "application/vnd.docker.container.image.v1+json",
  };
  const ACCEPT = [MEDIA.ociIndex, MEDIA.dockerList, MEDIA.ociManifest, MEDIA.dockerManifest].join(", ");
  const PAGE = 50;              // names shown per page (repositories, tags)
  const SCAN_PAGE = 100;        // catalog page size while searching
  const SCAN_BUDGET = 10;       // catalog pages read per search step before asking for "more"
  const CONFIG_MAX = 1 << 20;   // largest image config the page reads
  const CHILDREN_MAX = 64;      // index entries whose manifests are read for the size totals
  const TAG_COUNT_CAP = 1000;   // tags counted per repository in the list ("1000+" past it)
  const PARALLEL = 4;           // requests in flight for the per-row details (counts, sizes)
  const HOST = location.host;

  // -- DOM helpers: text only -------------------------------------------------------------
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "text") node.textContent = String(v);
      else if (k === "class") node.className = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, String(v));
    }
    return put(node, children);
  }
  function put(node, ...children) {       // append, flattening arrays and skipping null/false
    for (const c of children.flat(Infinity)) {
      if (c === undefined || c === null || c === false) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }
  // aria-busy on the view while a step of it loads (tests and screen readers wait for it)
  function busy(fn) {
    return async (...args) => {
      const view = document.getElementById("view");
      view.setAttribute("aria-busy", "true");
      try { return await fn(...args); } finally { view.setAttribute("aria-busy", "false"); }
    };
  }
  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); return node; }
  // A view draws only while it is the current one (a slow answer for a page the user has
  // already left must not overwrite the next page).
  class Stale extends Error {}
  let generation = 0;
  function freshView(gen) {
    if (gen !== generation) throw new Stale();
    return clear(document.getElementById("view"));
  }
  function humanSize(bytes) {
    const n = Number(bytes) || 0;
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let v = n, u = 0;
    while (v >= 1024 && u < units.length - 1) { v /= 1024; u += 1; }
    return u === 0 ? `${n} B` : `${v.toFixed(v < 10 ? 2 : 1)} ${units[u]}`;
  }
  function size(bytes) {
    const n = Number(bytes) || 0;
    return el("span", { class: "size", "data-bytes": n, title: `${n} bytes`, text: humanSize(n) });
  }
  // A digest shown short (algorithm and 12 hex digits, as docker does), the whole of it in the
  // title and data-digest, with a Copy button; a link when href is given.
  function shortDigest(d) {
    const m = /^([a-z0-9]+(?:[+._-][a-z0-9]+)*):([0-9a-fA-F]{12})[0-9a-fA-F]+$/.exec(d || "");
    return m ? `${m[1]}:${m[2]}…` : (d || "");
  }
  function digestBox(d, attrs) {
    const a = attrs || {};
    const label = el(a.href ? "a" : "span", { href: a.href, download: a.download, class: a.class || "digest",
      "data-digest": d, title: d, text: shortDigest(d) });
    const btn = el("button", { type: "button", class: "plain copy", title: `Copy ${d}`, "aria-label": `Copy ${d}`, text: "Copy" });
    btn.addEventListener("click", () => copyText(d, label, btn));
    return el("span", { class: "digest-box", id: a.id }, label, btn);
  }
  // navigator.clipboard where the page may use it (a secure context); otherwise the whole text
  // is shown in `node` and selected, for the user's Ctrl+C.
  async function copyText(text, node, btn) {
    try {
      if (!window.isSecureContext || !navigator.clipboard) throw new Error("no clipboard");
      await navigator.clipboard.writeText(text);
      btn.textContent = "Copied";
    } catch (e) {
      node.textContent = text;
      getSelection().selectAllChildren(node);
      btn.textContent = "Selected: press Ctrl+C";
    }
  }
  // fn over items, at most PARALLEL at a time; stops early once the view is left.
  async function pool(items, fn, gen) {
    let next = 0;
    const worker = async () => {
      while (next < items.length && (gen === undefined || gen === generation)) {
        const item = items[next++];
        try { await fn(item); } catch (e) { if (e instanceof LoginNeeded) throw e; }
      }
    };
    await Promise.all(Array.from({ length: Math.min(PARALLEL, items.length) }, worker));
  }
  function repoHref(repo) { return "#/r/" + encodeURIComponent(repo); }
  function refHref(repo, ref) { return repoHref(repo) + "/m/" + encodeURIComponent(ref); }
  function platformText(p) {
    if (!p) return "";
    return [p.os, p.architecture, p.variant].filter(Boolean).join("/") + (p["os.version"] ? ` (${p["os.version"]})` : "");
  }

  // -- credentials and tokens -------------------------------------------------------------
  // The user's credentials live in this tab's sessionStorage; requests are sent with
  // credentials: "omit" and an explicit Authorization header, so the browser never pops up its
  // own login dialog.  With token auth the page asks the realm of the challenge for a token
  // per scope, as docker and podman do.
  const auth = {
    user: sessionStorage.getItem("fastreg.user"),
    basic: sessionStorage.getItem("fastreg.basic"),
    tokens: new Map(),          // scope → {token, until}
  };
  class LoginNeeded extends Error {}
  class ApiError extends Error {
    constructor(status, code, message, detail) {
      super(message); this.status = status; this.code = code; this.detail = detail;
    }
  }

  function b64(text) {
    const bytes = new TextEncoder().encode(text);
    let bin = "";
    for (const b of bytes) bin += String.fromCharCode(b);
    return btoa(bin);
  }
  function signIn(user, password) {
    auth.user = user;
    auth.basic = b64(`${user}:${password}`);
    auth.tokens.clear();
    sessionStorage.setItem("fastreg.user", user);
    sessionStorage.setItem("fastreg.basic", auth.basic);
  }
  function signOut() {
    auth.user = auth.basic = null;
    auth.tokens.clear();
    sessionStorage.removeItem("fastreg.user");
    sessionStorage.removeItem("fastreg.basic");
  }

  // WWW-Authenticate: Bearer realm="...",service="...",scope="..."  (RFC 7235 auth-params)
  function parseChallenge(header) {
    if (!header) return null;
    const m = /^\s*(\w+)\s*(.*)$/.exec(header);
    if (!m) return null;
    const params = {};
    const re = /([\w-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))/g;
    let p;
    while ((p = re.exec(m[2])) !== null) params[p[1].toLowerCase()] = p[2] !== undefined ? p[2].replace(/\\(.)/g, "$1") : p[3];
    return { scheme: m[1].toLowerCase(), params };
  }

  function scopeOf(path) {
    if (path.startsWith("/v2/_catalog")) return "registry:catalog:*";
    const h = /^\/v2\/_fastreg\/(?:history|usage)\/([^?]+)/.exec(path);
    if (h) return `repository:${h[1]}:pull`;
    const m = /^\/v2\/(.+)\/(tags|manifests|blobs|referrers)\//.exec(path);
    return m ? `repository:${m[1]}:pull` : "";
  }

  async function fetchToken(challenge, scope) {
    const realm = challenge.params.realm;
    if (!realm) throw new ApiError(401, "UNAUTHORIZED", "the registry asked for a token but named no realm");
    const url = new URL(realm, location.href);
    if (challenge.params.service) url.searchParams.set("service", challenge.params.service);
    for (const s of (challenge.params.scope || scope).split(" ").filter(Boolean)) url.searchParams.append("scope", s);
    const headers = auth.basic ? { Authorization: "Basic " + auth.basic } : {};
    const res = await fetch(url, { headers, credentials: "omit", cache: "no-store" });
    if (res.status === 401) {
      const rejected = Boolean(auth.basic);
      signOut();
      throw new LoginNeeded(rejected ? "invalid username or password" : "");
    }
    if (!res.ok) throw new ApiError(res.status, "TOKEN", `the token service answered ${res.status}`);
    const body = await res.json();
    const token = body.token || body.access_token;
    const ttl = Number(body.expires_in) || 60;
    auth.tokens.set(scope, { token, until: Date.now() + (ttl - 10) * 1000 });
    return token;
  }

  async function send(path, accept, authorization) {
    const headers = { Accept: accept || "application/json" };
    if (authorization) headers.Authorization = authorization;
    return fetch(path, { headers, credentials: "omit", cache: "no-cache" });
  }

  // One API call; the retry after a Bearer challenge carries a token for the challenge's scope.
  async function api(path, accept) {
    const scope = scopeOf(path);
    const cached = auth.tokens.get(scope);
    let authorization = null;
    if (cached && cached.until > Date.now()) authorization = "Bearer " + cached.token;
    else if (auth.basic && auth.mode !== "bearer") authorization = "Basic " + auth.basic;
    let res = await send(path, accept, authorization);
    if (res.status === 401) {
      const ch = parseChallenge(res.headers.get("www-authenticate"));
      if (ch && ch.scheme === "bearer" && !(ch.params.error === "insufficient_scope" && authorization && authorization.startsWith("Bearer"))) {
        auth.mode = "bearer";
        const token = await fetchToken(ch, scope);
        res = await send(path, accept, "Bearer " + token);
      } else if (ch && ch.scheme === "basic") {
        auth.mode = "basic";
        if (auth.basic) { signOut(); throw new LoginNeeded("invalid username or password"); }
        throw new LoginNeeded("");
      }
    }
    if (res.ok) return res;
    let code = "", message = `HTTP ${res.status}`, detail = null;
    try {
      const err = (await res.json()).errors[0];
      code = err.code || ""; message = err.message || message; detail = err.detail;
    } catch (e) { /* not an error envelope */ }
    if (res.status === 401 && !auth.user) throw new LoginNeeded("");
    throw new ApiError(res.status, code, message, detail);
  }

  // Which kind of credentials the registry wants, learnt once from /v2/ (which challenges every
  // anonymous client), so "Sign in" is offered even where anonymous users may browse.
  let probed = null;
  function probe() {
    if (!probed) {
      probed = fetch("/v2/", { credentials: "omit", cache: "no-store" }).then((res) => {
        const ch = res.status === 401 ? parseChallenge(res.headers.get("www-authenticate")) : null;
        if (ch && (ch.scheme === "basic" || ch.scheme === "bearer") && !auth.mode) auth.mode = ch.scheme;
      }).catch(() => { probed = null; });
    }
    return probed;
  }

  async function apiJSON(path, accept) {
    const res = await api(path, accept);
    return { res, doc: await res.json() };
  }

  function nextLast(res) {
    // Link: </v2/_catalog?last=a%2Fb&n=50>; rel="next"  →  "a/b"
    const link = res.headers.get("link");
    if (!link) return null;
    const m = /<([^>]*)>\s*;\s*rel="?next"?/.exec(link);
    return m ? new URL(m[1], location.href).searchParams.get("last") : null;
  }

  // -- chrome: breadcrumbs, who is signed in ----------------------------------------------
  function crumbs(...parts) {
    const nav = clear(document.getElementById("crumbs"));
    parts.forEach(([text, href], i) => {
      if (i) nav.append(el("span", { class: "sep", text: "›" }));
      nav.append(href ? el("a", { href, text }) : el("span", { text }));
    });
  }
  function renderWho() {
    const who = clear(document.getElementById("who"));
    if (auth.user) {
      who.append("signed in as ", el("strong", { id: "user", text: auth.user }), " ",
        el("button", { class: "plain", type: "button", id: "signout", text: "Sign out",
          onclick: () => { signOut(); route(); } }));
    } else if (auth.mode) {          // only once the registry has asked for credentials
      who.append(el("button", { class: "plain", type: "button", id: "signin", text: "Sign in",
        onclick: () => showLogin("") }));
    }
  }

  function showLogin(message) {
    const view = clear(document.getElementById("view"));
    const user = el("input", { id: "login-user", name: "username", autocomplete: "username", required: true });
    const pass = el("input", { id: "login-password", name: "password", type: "password", autocomplete: "current-password" });
    const form = el("form", { class: "login", id: "login" },
      el("label", { for: "login-user", text: "User" }), user,
      el("label", { for: "login-password", text: "Password" }), pass,
      el("button", { type: "submit", text: "Sign in" }));
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      signIn(user.value, pass.value);
      route();
    });
    view.append(el("section", {},
      el("h1", { text: "Sign in" }),
      el("p", { class: "muted", text: "This registry needs your registry credentials to show its content." }),
      message ? el("p", { class: "error", id: "login-error", text: message }) : null,
      form));
    user.focus();
  }

  function showError(err) {
    const view = clear(document.getElementById("view"));
    let text = err.message;
    if (err instanceof ApiError && [401, 403, 404].includes(err.status)) {
      text = err.status === 404 && err.code !== "NAME_UNKNOWN" && err.code !== "MANIFEST_UNKNOWN"
        ? `Not found (${err.message}).`
        : "This repository does not exist, or you may not pull it.";
    }
    put(view, el("section", { class: "error", id: "error" },
      el("h1", { text: "Cannot show this page" }),
      el("p", { text }),
      err instanceof ApiError ? el("p", { class: "mono", text: `HTTP ${err.status} ${err.code}` }) : null,
      el("p", {}, el("a", { href: "#/", text: "Back to the repositories" }))));
  }

  // -- view: repositories -----------------------------------------------------------------
  // Searching reads the catalog page by page: "starts with" jumps to the prefix with `last`
  // and stops past it; "contains" scans at most SCAN_BUDGET pages per step.
  function beforePrefix(prefix) {
    // the largest string below every name starting with `prefix`: names use [a-z0-9._/-], all below "~"
    const last = prefix.charCodeAt(prefix.length - 1);
    return prefix.slice(0, -1) + String.fromCharCode(last - 1) + "~";
  }

  // fastreg.catalog.maxentries may be below our page size: the 400 names the maximum
  let catalogMax = Infinity;
  async function catalogPage(n, last) {
    for (;;) {
      const qs = new URLSearchParams({ n: String(Math.min(n, catalogMax)) });
      if (last !== null) qs.set("last", last);
      try {
        return await apiJSON("/v2/_catalog?" + qs);
      } catch (e) {
        const max = e instanceof ApiError && e.code === "PAGINATION_NUMBER_INVALID" && e.detail && Number(e.detail.max);
        if (!max || max >= catalogMax) throw e;
        catalogMax = max;
      }
    }
  }

  async function viewRepositories(params, gen) {
    crumbs(["Repositories"]);
    const q = (params.get("q") || "").trim().toLowerCase();
    const mode = params.get("m") === "prefix" ? "prefix" : "contains";
    const view = freshView(gen);
    const input = el("input", { type: "search", id: "search", placeholder: "Search repositories", value: q,
      "aria-label": "Search repositories" });
    const select = el("select", { id: "search-mode", "aria-label": "match" },
      el("option", { value: "contains", text: "contains", selected: mode === "contains" }),
      el("option", { value: "prefix", text: "starts with", selected: mode === "prefix" }));
    const form = el("form", { class: "search", role: "search" }, input, select, el("button", { type: "submit", text: "Search" }));
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      const p = new URLSearchParams();
      if (input.value.trim()) { p.set("q", input.value.trim()); p.set("m", select.value); }
      location.hash = "#/" + (p.toString() ? "?" + p : "");
    });
    const list = el("ul", { class: "list", id: "repos" });
    const status = el("p", { class: "muted", id: "repos-status" });
    const more = el("button", { type: "button", class: "plain", id: "repos-more", text: "More", hidden: true });
    view.append(el("section", {}, el("h1", { text: "Repositories" }), form, list, status, more));

    let last = q && mode === "prefix" ? beforePrefix(q) : null;
    let done = false, shown = 0, scanned = 0;
    const step = busy(async () => {
      more.hidden = true;
      status.textContent = "Loading…";
      let found = 0, pages = 0;
      const counts = [];
      while (!done && found < PAGE && pages < SCAN_BUDGET) {
        const { res, doc } = await catalogPage(q ? SCAN_PAGE : PAGE, last);
        const names = doc.repositories || [];
        pages += 1; scanned += names.length;
        for (const name of names) {
          if (q && mode === "prefix" && !name.startsWith(q)) { if (name > q) { done = true; break; } continue; }
          if (q && mode === "contains" && !name.includes(q)) continue;
          const count = el("span", { class: "muted tag-count" });
          list.append(el("li", {}, el("a", { href: repoHref(name), class: "repo", text: name }), " ", count));
          counts.push([name, count]);
          found += 1; shown += 1;
        }
        last = nextLast(res) || (names.length ? names[names.length - 1] : last);
        if (!nextLast(res)) done = true;
      }
      status.textContent = shown === 0 && done ? (q ? "No repository matches." : "No repositories yet.")
        : q ? `${shown} shown, ${scanned} searched${done ? "" : " so far"}.` : `${shown} shown.`;
      more.hidden = done;
      await pool(counts, ([name, span]) => tagCount(name, span), gen);
    });
    more.addEventListener("click", () => step().catch(fail));
    await step();
  }

  // A tag list of a repository without tags: 404 NAME_UNKNOWN, as for one that does not exist
  // (Distribution answers the same).
  const noTags = (e) => e instanceof ApiError && e.status === 404 && e.code === "NAME_UNKNOWN";

  // One bounded request per repository shown: up to TAG_COUNT_CAP tags (fewer when the
  // registry's own page maximum is lower); a next page means "at least that many".  The catalog
  // listed it, so an unknown name here is a repository without tags.
  async function tagCount(name, span) {
    let res = null, doc = {};
    try {
      ({ res, doc } = await apiJSON(`/v2/${name}/tags/list?n=${TAG_COUNT_CAP}`));
    } catch (e) { if (!noTags(e)) throw e; }
    const n = (doc.tags || []).length;
    const more = res !== null && nextLast(res) !== null;
    span.setAttribute("data-count", String(n));
    if (more) span.setAttribute("data-more", "true");
    span.textContent = `${n}${more ? "+" : ""} tag${n === 1 && !more ? "" : "s"}`;
  }

  // -- view: a repository's tags ----------------------------------------------------------
  async function viewTags(repo, gen) {
    crumbs(["Repositories", "#/"], [repo]);
    const rows = el("tbody", {});
    const list = el("table", { id: "tags" }, el("thead", {}, el("tr", {},
      el("th", { text: "Tag" }), el("th", { text: "Digest" }), el("th", { class: "num", text: "Size" }),
      el("th", { text: "Pushed" }))), rows);
    const status = el("p", { class: "muted", id: "tags-status" });
    const more = el("button", { type: "button", class: "plain", id: "tags-more", text: "More tags", hidden: true });
    let last = null, shown = 0;
    const load = async () => {
      more.hidden = true;
      const qs = new URLSearchParams({ n: String(PAGE) });
      if (last !== null) qs.set("last", last);
      let res = null, doc = {};
      try {
        ({ res, doc } = await apiJSON(`/v2/${repo}/tags/list?` + qs));
      } catch (e) {
        // no tags: a repository still, if its usage is known (pushed to, but never tagged)
        if (!noTags(e) || last !== null) throw e;
        try { await apiJSON(`/v2/_fastreg/usage/${repo}`); } catch (e2) { throw e; }
      }
      // digests and push times (fastreg's history endpoint; absent for a pull-through cache's
      // upstream tags: the listing stands without them)
      const hist = {};
      try {
        const h = res === null ? null : await apiJSON(`/v2/_fastreg/history/${repo}?` + qs);
        for (const t of h ? h.doc.tags || [] : []) hist[t.tag] = t;
      } catch (e) { if (e instanceof LoginNeeded) throw e; }
      const sizeCells = new Map();        // digest → the size cells of the tags naming it
      for (const tag of doc.tags || []) {
        const t = hist[tag] || {};
        const sizeCell = el("td", { class: "num tag-size" });
        if (t.digest) {
          if (!sizeCells.has(t.digest)) sizeCells.set(t.digest, []);
          sizeCells.get(t.digest).push(sizeCell);
        }
        rows.append(el("tr", { class: "tag-row" },
          el("td", {}, el("a", { href: refHref(repo, tag), class: "tag", text: tag })),
          el("td", { class: "tag-digest" }, t.digest ? digestBox(t.digest, { href: refHref(repo, t.digest) }) : null),
          sizeCell,
          el("td", { class: "muted pushed", title: t.pushed || null,
            text: t.pushed ? t.pushed.replace("T", " ").replace(/(\.\d+)?Z$/, " UTC") : "" })));
        shown += 1;
      }
      last = res === null ? null : nextLast(res);
      status.textContent = shown ? `${shown} tag${shown === 1 ? "" : "s"} shown.` : "No tags.";
      more.hidden = last === null;
      return sizeCells;
    };
    // Sizes: each distinct manifest of the page read once, by digest (so the page's reads do not
    // count as pulls of the tags): an image's config and layers added up, an index's platforms counted.
    const fillSizes = (sizeCells) => pool([...sizeCells], async ([digest, cells]) => {
      const m = await getManifest(repo, digest);
      const blobs = isIndex(m) ? null : [m.doc.config, ...(m.doc.layers || m.doc.blobs || [])].filter(Boolean);
      for (const cell of cells) {
        cell.setAttribute("title", `manifest: ${m.size} bytes`);
        if (blobs) put(cell, size(blobs.reduce((n, b) => n + (Number(b.size) || 0), 0)));
        else put(cell, el("span", { class: "platforms", text: `${(m.doc.manifests || []).length} platforms` }));
      }
    }, gen);
    const cells = await load();      // errors (no such repository, no pull right) before anything is drawn
    const first = rows.querySelector("a.tag");
    freshView(gen).append(el("section", {}, el("h1", { id: "repo-name", text: repo }),
      await usageLine(repo),
      pullBox(`${HOST}/${repo}${first ? ":" + first.textContent : ""}`, "pull-repo"),
      el("h2", { text: "Tags" }), list, status, more));
    more.addEventListener("click", () => busy(async () => fillSizes(await load()))().catch(fail));
    await fillSizes(cells);
  }

  // storage usage and quotas (fastreg's usage endpoint; nothing shown when no quota is configured)
  async function usageLine(repo) {
    let doc;
    try { doc = (await apiJSON(`/v2/_fastreg/usage/${repo}`)).doc; } catch (e) { return null; }
    if (doc.bytes === null && !(doc.quotas || []).length) return null;
    const parts = [];
    if (doc.bytes !== null) parts.push(`Storage used: ${humanSize(doc.bytes)}`);
    for (const q of doc.quotas || []) {
      const what = q.scope === "registry" ? "the registry" : q.scope;
      parts.push(`quota of ${what}: ${q.usage === null ? "not counted yet" : humanSize(q.usage)} of ${humanSize(q.limit)}`);
    }
    return el("p", { class: "muted", id: "repo-usage", text: parts.join("; ") + "." });
  }

  function pullBox(ref, id) {
    const cmd = `podman pull ${ref}`;
    const code = el("code", { id, text: cmd });
    const btn = el("button", { type: "button", class: "plain", text: "Copy" });
    btn.addEventListener("click", () => copyText(cmd, code, btn));
    return el("div", { class: "pull" }, code, btn);
  }

  // -- view: a manifest or an index -------------------------------------------------------
  async function getManifest(repo, ref) {
    const res = await api(`/v2/${repo}/manifests/${encodeURIComponent(ref)}`, ACCEPT);
    const bytes = await res.arrayBuffer();
    const doc = JSON.parse(new TextDecoder().decode(bytes));
    const mediaType = (res.headers.get("content-type") || doc.mediaType || "").split(";")[0].trim();
    const digest = res.headers.get("docker-content-digest") || (ref.includes(":") ? ref : "");
    return { doc, mediaType, digest, size: bytes.byteLength };
  }
  const isIndex = (m) => m.mediaType === MEDIA.ociIndex || m.mediaType === MEDIA.dockerList || Array.isArray(m.doc.manifests);

  function descriptorRows(descs, withPlatform, repo) {
    return descs.map((d, i) => el("tr", { class: withPlatform ? "platform" : "layer" },
      withPlatform ? el("td", { class: "platform-name", text: platformText(d.platform) || attestationLabel(d) })
        : el("td", { class: "num", text: String(i + 1) }),
      el("td", {}, withPlatform ? digestBox(d.digest, { href: refHref(repo, d.digest) })
        : digestBox(d.digest, blobLink(repo, d.digest))),
      el("td", { class: "mono media-type", text: d.mediaType || "" }),
      el("td", { class: "num" }, size(d.size))));
  }
  // A blob's own URL in the registry API: a plain link, so the browser downloads it itself
  // (streamed to disk, following a storage redirect); see docs/webui.md for it under auth.
  function blobLink(repo, digest, id) {
    return { id, href: `/v2/${repo}/blobs/${digest}`, download: digest.replace(":", "-"), class: "digest blob" };
  }
  function attestationLabel(d) {
    const a = d.annotations || {};
    return a["vnd.docker.reference.type"] ? `${a["vnd.docker.reference.type"]} for ${a["vnd.docker.reference.digest"] || "?"}` : "";
  }
  function table(head, rows, id) {
    return el("table", { id }, el("thead", {}, el("tr", {}, head.map(([t, cls]) => el("th", { class: cls, text: t })))),
      el("tbody", {}, rows));
  }
  function annotations(obj, id, title) {
    const entries = Object.entries(obj || {});
    if (!entries.length) return null;
    return [el("h3", { text: title || "Annotations" }),
      el("dl", { id }, entries.flatMap(([k, v]) => [el("dt", { class: "mono", text: k }), el("dd", { class: "mono", text: String(v) })]))];
  }
  function sizes(blobs, id) {
    // total: every descriptor as listed; unique: each digest once (what storage holds)
    const total = blobs.reduce((s, b) => s + (Number(b.size) || 0), 0);
    const seen = new Map();
    for (const b of blobs) seen.set(b.digest, Number(b.size) || 0);
    const unique = [...seen.values()].reduce((s, n) => s + n, 0);
    return el("dl", { id }, el("dt", { text: "Total size" }), el("dd", { id: `${id}-total` }, size(total)),
      el("dt", { text: "Unique size" }), el("dd", { id: `${id}-unique` }, size(unique)));
  }

  async function viewManifest(repo, ref, gen) {
    crumbs(["Repositories", "#/"], [repo, repoHref(repo)], [ref]);
    const m = await getManifest(repo, ref);
    const view = freshView(gen);
    const isDigest = ref.includes(":");
    const head = el("section", {},
      el("h1", { id: "ref-name", text: `${repo}${isDigest ? "@" : ":"}${ref}` }),
      el("dl", { id: "manifest-info" },
        el("dt", { text: "Digest" }), el("dd", {}, digestBox(m.digest, { id: "manifest-digest" })),
        el("dt", { text: "Media type" }), el("dd", { class: "mono", id: "manifest-media-type", text: m.mediaType }),
        m.doc.artifactType ? [el("dt", { text: "Artifact type" }), el("dd", { class: "mono", id: "manifest-artifact-type", text: m.doc.artifactType })] : null,
        el("dt", { text: "Manifest size" }), el("dd", {}, size(m.size)),
        m.doc.subject ? [el("dt", { text: "Subject" }), el("dd", {},
          digestBox(m.doc.subject.digest, { href: refHref(repo, m.doc.subject.digest), id: "manifest-subject" }))] : null),
      el("h3", { text: "Pull" }),
      isDigest ? null : pullBox(`${HOST}/${repo}:${ref}`, "pull-tag"),
      m.digest ? pullBox(`${HOST}/${repo}@${m.digest}`, "pull-digest") : null);
    view.append(head);
    if (isIndex(m)) await renderIndex(view, repo, m);
    else await renderImage(view, repo, m);
    if (m.digest) {
      const refs = await referrersSection(repo, m.digest);
      if (gen === generation) view.append(refs);
    }
  }

  async function renderIndex(view, repo, m) {
    const entries = m.doc.manifests || [];
    const sec = el("section", { id: "index" }, el("h2", { text: `Platforms (${entries.length})` }),
      table([["Platform"], ["Digest"], ["Media type"], ["Size", "num"]], descriptorRows(entries, true, repo), "platforms"),
      annotations(m.doc.annotations, "annotations"));
    view.append(sec);
    // Sizes over all platforms: each entry's manifest is read (a bounded number of them).
    const totals = el("div", { id: "index-sizes" }, el("p", { class: "muted", text: "Adding up sizes…" }));
    sec.append(el("h3", { text: "Sizes of all platforms (configs and layers)" }), totals);
    const blobs = [];
    let read = 0;
    for (const d of entries.slice(0, CHILDREN_MAX)) {
      try {
        const child = await getManifest(repo, d.digest);
        if (isIndex(child)) continue;
        if (child.doc.config) blobs.push(child.doc.config);
        blobs.push(...(child.doc.layers || []));
        read += 1;
      } catch (e) { /* a missing child manifest: counted out below */ }
    }
    put(clear(totals), sizes(blobs, "sizes"),
      read < entries.length ? el("p", { class: "muted", text: `${read} of ${entries.length} manifests counted.` }) : null);
  }

  async function renderImage(view, repo, m) {
    const layers = m.doc.layers || m.doc.blobs || [];
    const cfg = m.doc.config;
    const sec = el("section", { id: "image" });
    view.append(sec);
    if (cfg) {
      sec.append(el("h2", { text: "Config" }), el("dl", { id: "config" },
        el("dt", { text: "Digest" }), el("dd", {}, digestBox(cfg.digest, blobLink(repo, cfg.digest, "config-digest"))),
        el("dt", { text: "Media type" }), el("dd", { class: "mono", id: "config-media-type", text: cfg.mediaType }),
        el("dt", { text: "Size" }), el("dd", {}, size(cfg.size))));
    }
    put(sec, el("h2", { text: `Layers (${layers.length})` }),
      table([["#", "num"], ["Digest"], ["Media type"], ["Size", "num"]], descriptorRows(layers, false, repo), "layers"),
      el("h3", { text: "Sizes (config and layers)" }), sizes(cfg ? [cfg, ...layers] : layers, "sizes"),
      annotations(m.doc.annotations, "annotations"));
    if (cfg && (cfg.mediaType === MEDIA.ociConfig || cfg.mediaType === MEDIA.dockerConfig) && cfg.size <= CONFIG_MAX) {
      try {
        const res = await api(`/v2/${repo}/blobs/${cfg.digest}`, "*/*");
        put(sec, imageConfig(await res.json()));
      } catch (e) {
        if (e instanceof LoginNeeded) throw e;
        sec.append(el("p", { class: "muted", text: `The config could not be read: ${e.message}` }));
      }
    }
  }

  function imageConfig(c) {
    const platform = platformText({ os: c.os, architecture: c.architecture, variant: c.variant, "os.version": c["os.version"] });
    const cc = c.config || {};
    const out = [el("h2", { text: "Image" }), el("dl", { id: "image-config" },
      el("dt", { text: "Platform" }), el("dd", { id: "image-platform", text: platform }),
      c.created ? [el("dt", { text: "Created" }), el("dd", { id: "image-created", text: c.created })] : null,
      c.author ? [el("dt", { text: "Author" }), el("dd", { text: c.author })] : null,
      cc.Entrypoint ? [el("dt", { text: "Entrypoint" }), el("dd", { class: "mono", text: JSON.stringify(cc.Entrypoint) })] : null,
      cc.Cmd ? [el("dt", { text: "Cmd" }), el("dd", { class: "mono", text: JSON.stringify(cc.Cmd) })] : null,
      cc.WorkingDir ? [el("dt", { text: "Working dir" }), el("dd", { class: "mono", text: cc.WorkingDir })] : null,
      cc.User ? [el("dt", { text: "User" }), el("dd", { class: "mono", text: cc.User })] : null,
      cc.Env ? [el("dt", { text: "Env" }), el("dd", {}, el("pre", { text: cc.Env.join("\n") }))] : null),
    annotations(cc.Labels, "labels", "Labels")];
    const history = c.history || [];
    if (history.length) {
      out.push(el("h3", { text: `History (${history.length})` }), table([["Created"], ["Created by"], ["Layer"]],
        history.map((h) => el("tr", { class: "history" },
          el("td", { class: "mono", text: h.created || "" }),
          el("td", {}, el("pre", { text: h.created_by || h.comment || "" })),
          el("td", { text: h.empty_layer ? "empty" : "" }))), "history"));
    }
    return out;
  }

  // Referrers (OCI 1.1): grouped by artifactType; a filter asks the API (?artifactType=).
  const KINDS = [
    ["Signatures", (t) => /signature|\.sig\b|cosign.*sig|notary/.test(t)],
    ["SBOMs", (t) => /spdx|cyclonedx|sbom|syft/.test(t)],
    ["Attestations", (t) => /in-toto|intoto|attestation|provenance|slsa|sigstore\.bundle|vex/.test(t)],
  ];
  function kindOf(type) {
    const t = (type || "").toLowerCase();
    for (const [name, test] of KINDS) if (test(t)) return name;
    return "Other artifacts";
  }

  async function referrersSection(repo, digest, artifactType) {
    const sec = el("section", { id: "referrers" }, el("h2", { text: "Referrers" }));
    const qs = artifactType ? "?" + new URLSearchParams({ artifactType }) : "";
    let descs = [];
    try {
      let path = `/v2/${repo}/referrers/${digest}${qs}`;
      for (let pages = 0; path && pages < 20; pages += 1) {     // a Link header pages long lists
        const { res, doc } = await apiJSON(path, MEDIA.ociIndex);
        descs = descs.concat(doc.manifests || []);
        const link = /<([^>]*)>\s*;\s*rel="?next"?/.exec(res.headers.get("link") || "");
        path = link ? new URL(link[1], location.href).pathname + new URL(link[1], location.href).search : null;
      }
    } catch (e) {
      if (e instanceof LoginNeeded) throw e;
      sec.append(el("p", { class: "muted", text: `Referrers are not available: ${e.message}` }));
      return sec;
    }
    if (!descs.length && !artifactType) {
      sec.append(el("p", { class: "muted", id: "no-referrers", text: "No signatures, SBOMs or attestations refer to this manifest." }));
      return sec;
    }
    const types = [...new Set(descs.map((d) => d.artifactType || d.mediaType))].sort();
    const filter = el("select", { id: "referrers-filter", "aria-label": "artifact type" },
      el("option", { value: "", text: "all artifact types" }),
      (artifactType && !types.includes(artifactType) ? [artifactType, ...types] : types)
        .map((t) => el("option", { value: t, text: t, selected: t === artifactType })));
    filter.addEventListener("change", async () => {
      const fresh = await referrersSection(repo, digest, filter.value).catch((e) => { fail(e); return null; });
      if (fresh) sec.replaceWith(fresh);
    });
    sec.append(el("p", {}, "Show ", filter));
    const groups = new Map();
    for (const d of descs) {
      const kind = kindOf(d.artifactType || d.mediaType);
      if (!groups.has(kind)) groups.set(kind, []);
      groups.get(kind).push(d);
    }
    for (const kind of [...KINDS.map((k) => k[0]), "Other artifacts"]) {
      const list = groups.get(kind);
      if (!list) continue;
      put(sec, el("h3", { class: "referrer-kind", text: `${kind} (${list.length})` }),
        table([["Artifact type"], ["Digest"], ["Size", "num"], ["Annotations"]], list.map((d) => el("tr", { class: "referrer" },
          el("td", { class: "mono artifact-type", text: d.artifactType || d.mediaType || "" }),
          el("td", {}, digestBox(d.digest, { href: refHref(repo, d.digest) })),
          el("td", { class: "num" }, size(d.size)),
          el("td", {}, Object.entries(d.annotations || {}).map(([k, v]) => el("div", { class: "mono", text: `${k}: ${v}` }))))),
        `referrers-${kind.split(" ")[0].toLowerCase()}`));
    }
    if (!descs.length) sec.append(el("p", { class: "muted", text: "No referrer of this type." }));
    return sec;
  }

  // -- routing ----------------------------------------------------------------------------
  //   #/[?q=&m=]           repositories (search)
  //   #/r/<repo>           a repository's tags
  //   #/r/<repo>/m/<ref>   a tag or digest: manifest or index, and its referrers
  function fail(err) {
    if (err instanceof Stale) return;
    if (err instanceof LoginNeeded) showLogin(err.message);
    else showError(err);
    renderWho();
  }

  // Names as the distribution spec defines them; anything else is refused before a request.
  const NAME = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$/;
  const REF = /^(?:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}|[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[A-Za-z0-9=_-]+)$/;

  async function route() {
    const mine = ++generation;
    renderWho();
    const hash = location.hash.replace(/^#/, "") || "/";
    const [path, query] = hash.split("?");
    const view = document.getElementById("view");
    view.setAttribute("aria-busy", "true");
    try {
      await probe();
      renderWho();
      const m = /^\/r\/([^/]+)(?:\/m\/([^/]+))?$/.exec(path);
      if (m) {
        const repo = decodeURIComponent(m[1]);
        const ref = m[2] ? decodeURIComponent(m[2]) : null;
        if (!NAME.test(repo)) throw new ApiError(400, "NAME_INVALID", "not a repository name");
        if (ref !== null && !REF.test(ref)) throw new ApiError(400, "TAG_INVALID", "not a tag or digest");
        if (ref !== null) await viewManifest(repo, ref, mine);
        else await viewTags(repo, mine);
      } else {
        await viewRepositories(new URLSearchParams(query || ""), mine);
      }
    } catch (err) {
      if (mine === generation) fail(err);
    } finally {
      if (mine === generation) { view.setAttribute("aria-busy", "false"); renderWho(); }
    }
  }

  document.getElementById("host").textContent = HOST;
  window.addEventListener("hashchange", route);
  route();
})();
