// mmframe dashboard: plain ES2020, no framework, no build step.
// Every string from the server is put into the page as text (textContent, attribute values): never as HTML.
"use strict";

(() => {
  const API = "/api/v1";
  const PAGE_SIZE = 100;
  const DETAIL_EVERY_MS = 2000;
  const TOKEN_KEY = "mmframe.api_token";
  const COLUMNS = [
    // [row field, cell class, formatter]
    ["symbol", "symbol", (r) => r.symbol],
    ["state", "state", (r) => r.state],
    ["strategy", "strategy", (r) => r.strategy],
    ["index_price", "index num", (r) => dash(r.index_price)],
    ["bid", "bid num", (r) => dash(r.bid)],
    ["ask", "ask num", (r) => dash(r.ask)],
    ["spread", "spread num", (r) => dash(r.spread)],
    ["inventory", "inventory num", (r) => dash(r.inventory)],
    ["pnl", "pnl num", (r) => dash(r.pnl)],
    ["fills", "fills num", (r) => dash(r.fills)],
    ["orders_per_s", "orders num", (r) => rate(r.orders_per_s)],
    ["feed_age", "feed-age num", (r) => age(r.feed_age)],
    ["sink", "sink", (r) => dash(r.sink)],
    ["owner", "owner", (r) => (r.owner == null ? "" : String(r.owner))],
  ];

  // ---- state -------------------------------------------------------------------------------------------------
  const rows = new Map(); // id -> Row
  let sorted = null; // cached sorted ids (null: to recompute)
  let shownIds = []; // ids in the table body, in order
  const rowEls = new Map(); // id -> <tr> for the rows shown
  let filterText = "";
  let page = 0;
  let stream = null;
  let streamRetry = null;
  let currentId = null; // the market view's id
  let detailTimer = null;
  let detailSeq = 0;
  let lastDetail = null;
  let editorConfigJson = null; // the config the editor was built from (JSON text)
  let editorDirty = false;
  let pendingConfig = null; // JSON of a saved config not yet running (it applies on reload)
  let pendingAction = null; // run once a token is saved

  const $ = (id) => document.getElementById(id);

  // ---- small helpers -----------------------------------------------------------------------------------------
  function el(tag, opts, ...children) {
    const node = document.createElement(tag);
    if (opts) {
      if (opts.cls) node.className = opts.cls;
      if (opts.text != null) node.textContent = String(opts.text);
      if (opts.attrs) for (const [k, v] of Object.entries(opts.attrs)) node.setAttribute(k, String(v));
    }
    for (const child of children) if (child != null) node.append(child);
    return node;
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
  }

  function dash(v) {
    return v == null || v === "" ? "—" : String(v);
  }

  function rate(v) {
    if (v == null) return "—";
    const n = Number(v);
    return Number.isFinite(n) ? String(Math.round(n * 100) / 100) : String(v);
  }

  function age(v) {
    if (v == null) return "—";
    const n = Number(v);
    if (!Number.isFinite(n)) return String(v);
    return n < 10 ? `${n.toFixed(1)} s` : n < 120 ? `${Math.round(n)} s` : `${Math.round(n / 60)} min`;
  }

  function clock(t) {
    if (t == null) return "—";
    const d = new Date(Number(t) * 1000);
    if (Number.isNaN(d.getTime())) return String(t);
    const p = (n, w = 2) => String(n).padStart(w, "0");
    return `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}.${p(d.getMilliseconds(), 3)}`;
  }

  function sign(v) {
    const n = parseFloat(v);
    return !Number.isFinite(n) || n === 0 ? "zero" : n > 0 ? "pos" : "neg";
  }

  function stateClass(state) {
    const s = String(state || "unknown").toLowerCase().replace(/[^a-z0-9_-]/g, "");
    const known = ["running", "degraded", "starting", "stopping", "stopped", "failed", "halted", "paused"];
    return `badge state-${known.includes(s) ? s : "other"}`;
  }

  function setClassKeep(node, base, extra) {
    const cls = extra ? `${base} ${extra}` : base;
    if (node.className !== cls) node.className = cls;
  }

  function setText(node, text) {
    if (node.textContent !== text) node.textContent = text;
  }

  let messageTimer = null;
  function say(text, kind = "info") {
    const m = $("message");
    m.textContent = text;
    m.className = `message message-${kind}`;
    clearTimeout(messageTimer);
    if (kind === "ok" || kind === "info") messageTimer = setTimeout(() => { m.textContent = ""; m.className = "message"; }, 8000);
  }

  // ---- token -------------------------------------------------------------------------------------------------
  function getToken() {
    try { return sessionStorage.getItem(TOKEN_KEY) || ""; } catch (_) { return ""; }
  }
  function setToken(t) {
    try { if (t) sessionStorage.setItem(TOKEN_KEY, t); else sessionStorage.removeItem(TOKEN_KEY); } catch (_) { /* private mode */ }
    showTokenState();
  }
  function showTokenState() {
    const has = !!getToken();
    $("token-form").hidden = has;
    $("token-status").hidden = !has;
  }
  function askToken(why) {
    setToken("");
    $("token-form").classList.add("wanted");
    const input = $("token-input");
    input.value = "";
    input.focus();
    if (why) say(why, "error");
  }

  // ---- HTTP --------------------------------------------------------------------------------------------------
  async function getJson(path) {
    const res = await fetch(path, { headers: { Accept: "application/json" }, cache: "no-store", credentials: "same-origin" });
    let body = null;
    try { body = await res.json(); } catch (_) { /* not JSON */ }
    if (!res.ok) {
      const err = new Error((body && body.message) || `HTTP ${res.status}`);
      err.status = res.status;
      throw err;
    }
    return body ? body.data : null;
  }

  // A mutating call with the bearer token. Returns {ok, status, message, data}; handles 401/403 itself.
  async function post(path, payload, what) {
    const token = getToken();
    if (!token) {
      return { ok: false, status: 0, needToken: true, message: `Enter the API token to ${what}.` };
    }
    let res;
    try {
      res = await fetch(path, {
        method: "POST",
        headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json", Accept: "application/json" },
        body: payload === undefined ? "{}" : JSON.stringify(payload),
        cache: "no-store",
        credentials: "same-origin",
      });
    } catch (e) {
      return { ok: false, status: 0, message: `Could not reach the server (${e.message || e}).` };
    }
    let body = null;
    try { body = await res.json(); } catch (_) { /* not JSON */ }
    const message = (body && body.message) || `HTTP ${res.status}`;
    if (res.status === 401) {
      askToken("The API token was refused: enter it again.");
      return { ok: false, status: 401, handled: true, message: "The API token was refused." };
    }
    if (res.status === 403) {
      say(`Mutations are disabled on this server (no API token is configured): ${message}`, "error");
      return { ok: false, status: 403, handled: true, message };
    }
    return { ok: res.ok, status: res.status, message, data: body ? body.data : null };
  }

  // Run an action; without a token, ask for it and run the action once it is saved.
  async function act(path, payload, what, after) {
    say(`${what}…`, "info");
    const r = await post(path, payload, what);
    if (r.needToken) {
      pendingAction = () => act(path, payload, what, after);
      askToken(r.message);
      return r;
    }
    if (!r.handled) say(r.ok ? r.message : `Could not ${what}: ${r.message}`, r.ok ? "ok" : "error");
    if (after) after(r);
    return r;
  }

  // ---- markets list ------------------------------------------------------------------------------------------
  function compareRows(a, b) {
    const x = String(a.symbol), y = String(b.symbol);
    if (x !== y) return x < y ? -1 : 1;
    if (a.market_type !== b.market_type) return Number(a.market_type) - Number(b.market_type);
    return String(a.id) < String(b.id) ? -1 : 1;
  }

  function matches(r) {
    if (!filterText) return true;
    const f = filterText;
    return String(r.symbol).toLowerCase().includes(f) || String(r.strategy).toLowerCase().includes(f)
      || String(r.state).toLowerCase().includes(f) || String(r.id).toLowerCase().includes(f);
  }

  function visibleIds() {
    if (!sorted) sorted = [...rows.values()].sort(compareRows).map((r) => r.id);
    return filterText ? sorted.filter((id) => matches(rows.get(id))) : sorted;
  }

  function buildRow(r) {
    const tr = el("tr", { cls: "market-row", attrs: { "data-id": r.id, "data-testid": "market-row", tabindex: "0" } });
    for (const [, cls] of COLUMNS) tr.append(el("td", { cls }));
    fillRow(tr, r);
    return tr;
  }

  function fillRow(tr, r) {
    const cells = tr.children;
    COLUMNS.forEach(([field, cls, fmt], i) => {
      const td = cells[i];
      if (field === "state") {
        let badge = td.firstChild;
        if (!badge) { badge = el("span"); td.append(badge); }
        setText(badge, dash(r.state));
        setClassKeep(badge, stateClass(r.state));
        const title = r.error ? String(r.error) : "";
        if (td.title !== title) td.title = title;
        setClassKeep(td, cls, r.error ? "has-error" : "");
      } else {
        setText(td, fmt(r));
        if (field === "pnl" || field === "inventory") setClassKeep(td, cls, sign(r[field]));
        else if (field === "sink") setClassKeep(td, cls, r.sink && r.sink !== "ok" ? "warn" : "");
        else if (field === "feed_age") setClassKeep(td, cls, r.feed_age != null && Number(r.feed_age) > 5 ? "warn" : "");
      }
    });
  }

  function renderList() {
    const ids = visibleIds();
    const pages = Math.max(1, Math.ceil(ids.length / PAGE_SIZE));
    if (page >= pages) page = pages - 1;
    const pageIds = ids.slice(page * PAGE_SIZE, (page + 1) * PAGE_SIZE);
    const body = $("markets-body");
    const same = pageIds.length === shownIds.length && pageIds.every((id, i) => id === shownIds[i]);
    if (!same) {
      const old = new Map(rowEls);
      rowEls.clear();
      const frag = document.createDocumentFragment();
      for (const id of pageIds) {
        let tr = old.get(id);
        if (tr) fillRow(tr, rows.get(id));
        else tr = buildRow(rows.get(id));
        rowEls.set(id, tr);
        frag.append(tr);
      }
      clear(body);
      body.append(frag);
      shownIds = pageIds;
    }
    $("markets-empty").hidden = ids.length > 0;
    $("markets-empty").textContent = rows.size ? "No market matches the filter." : "No markets.";
    setText($("count"), filterText ? `${ids.length} of ${rows.size} markets` : `${rows.size} market${rows.size === 1 ? "" : "s"}`);
    const from = ids.length ? page * PAGE_SIZE + 1 : 0;
    setText($("page-info"), `${from}–${page * PAGE_SIZE + pageIds.length} of ${ids.length}`);
    $("page-prev").disabled = page === 0;
    $("page-next").disabled = page >= pages - 1;
  }

  function applySnapshot(data) {
    rows.clear();
    for (const r of (data && data.markets) || []) rows.set(r.id, r);
    sorted = null;
    showCluster(data ? data.cluster : null);
    renderList();
    if (currentId) updateHeadFromRow(rows.get(currentId));
  }

  function applyDelta(data) {
    let reorder = false;
    for (const id of (data && data.removed) || []) {
      if (rows.delete(id)) reorder = true;
    }
    // A changed row carries its id and the fields that changed since the last delta (a new row: all of them).
    const changed = [];
    for (const part of (data && data.changed) || []) {
      const prev = rows.get(part.id);
      const r = prev ? Object.assign({}, prev, part) : part;
      if (!prev || prev.symbol !== r.symbol || prev.market_type !== r.market_type) reorder = true;
      else if (filterText && matches(prev) !== matches(r)) reorder = true;
      rows.set(r.id, r);
      changed.push(r);
    }
    if (reorder) {
      sorted = null;
      renderList();
    } else {
      for (const r of changed) {
        const tr = rowEls.get(r.id);
        if (tr) fillRow(tr, r);
      }
    }
    if (currentId && changed.some((r) => r.id === currentId)) updateHeadFromRow(rows.get(currentId));
  }

  function showCluster(cluster) {
    const c = $("cluster");
    if (cluster && typeof cluster === "object") {
      const n = cluster.instances;
      c.textContent = `cluster · instance ${cluster.instance == null ? "?" : cluster.instance}${n == null ? "" : ` · ${n} instance${n === 1 ? "" : "s"}`}`;
      c.className = "cluster cluster-on";
    } else {
      c.textContent = "single process";
      c.className = "cluster";
    }
  }

  // ---- live stream -------------------------------------------------------------------------------------------
  function setLive(on, note) {
    const l = $("live");
    l.textContent = on ? "live" : "disconnected";
    l.className = on ? "live live-on" : "live live-off";
    l.title = note || "";
  }

  function connect() {
    if (stream) stream.close();
    clearTimeout(streamRetry);
    let es;
    try {
      es = new EventSource(`${API}/dashboard/stream`);
    } catch (e) {
      setLive(false, String(e));
      streamRetry = setTimeout(connect, 3000);
      return;
    }
    stream = es;
    const parse = (ev) => { try { return JSON.parse(ev.data); } catch (_) { return null; } };
    const stamp = (d) => { if (d && d.time != null) setLive(true, `last update ${clock(d.time)}`); };
    es.onopen = () => setLive(true, "connected");
    es.addEventListener("snapshot", (ev) => { const d = parse(ev); const data = d && d.data !== undefined && d.code !== undefined ? d.data : d; applySnapshot(data); stamp(data); });
    es.addEventListener("delta", (ev) => { const d = parse(ev); const data = d && d.data !== undefined && d.code !== undefined ? d.data : d; applyDelta(data); stamp(data); });
    es.onerror = () => {
      setLive(false, "reconnecting");
      if (es.readyState === EventSource.CLOSED) {
        // The browser gave up (e.g. a non-event-stream answer): try again ourselves.
        streamRetry = setTimeout(connect, 3000);
      }
    };
  }

  // ---- routing -----------------------------------------------------------------------------------------------
  function route() {
    const params = new URLSearchParams(location.hash.replace(/^#/, ""));
    const id = params.get("market");
    if (id) openMarket(id);
    else showList();
  }

  function showList() {
    currentId = null;
    lastDetail = null;
    clearTimeout(detailTimer);
    $("market-view").hidden = true;
    $("markets-view").hidden = false;
    document.title = "mmframe";
  }

  function openMarket(id) {
    if (currentId !== id) {
      currentId = id;
      lastDetail = null;
      editorConfigJson = null;
      editorDirty = false;
      pendingConfig = null;
      $("config-pending").hidden = true;
      clear($("config-fields"));
      clearConfigErrors();
      clear($("ladder-body"));
      clear($("fills-body"));
      clear($("events-body"));
      clear($("status-body"));
      clear($("summary"));
      $("config-view").textContent = "";
      for (const n of ["pnl", "inventory", "index"]) $(`chart-${n}-last`).textContent = "";
      updateHeadFromRow(rows.get(id) || { id, symbol: id, state: "…" });
    }
    $("markets-view").hidden = true;
    $("market-view").hidden = false;
    window.scrollTo(0, 0);
    refreshDetail();
  }

  // ---- market view -------------------------------------------------------------------------------------------
  function updateHeadFromRow(r) {
    if (!r) return;
    const h = $("market-title");
    clear(h);
    h.append(el("span", { cls: "sym", text: r.symbol }), " ", el("span", { cls: stateClass(r.state), text: dash(r.state) }));
    if (r.strategy) h.append(" ", el("span", { cls: "muted small", text: `${r.strategy} · ${r.id}` }));
    document.title = `${r.symbol} · mmframe`;
    const err = $("market-error");
    err.hidden = !r.error;
    err.textContent = r.error ? String(r.error) : "";
    renderSummary(r);
  }

  function renderSummary(r) {
    const dl = $("summary");
    const items = [
      ["Index", dash(r.index_price), "index"], ["Bid", dash(r.bid), "bid"], ["Ask", dash(r.ask), "ask"],
      ["Spread", dash(r.spread), "spread"], ["Inventory", dash(r.inventory), `inventory ${sign(r.inventory)}`],
      ["PnL", dash(r.pnl), `pnl ${sign(r.pnl)}`], ["Fills", dash(r.fills), "fills"], ["Orders/s", rate(r.orders_per_s), "orders"],
      ["Feed age", age(r.feed_age), "feed-age"], ["Sink", dash(r.sink), "sink"], ["Owner", r.owner == null ? "—" : String(r.owner), "owner"],
    ];
    if (r.index_price === undefined) items.length = 0;
    if (dl.children.length !== items.length) {
      clear(dl);
      for (const [label] of items) dl.append(el("div", { cls: "item" }, el("dt", { text: label }), el("dd")));
    }
    items.forEach(([, value, cls], i) => {
      const dd = dl.children[i].lastChild;
      setText(dd, value);
      setClassKeep(dd, cls);
    });
  }

  async function refreshDetail() {
    clearTimeout(detailTimer);
    const id = currentId;
    if (!id) return;
    const seq = ++detailSeq;
    try {
      const data = await getJson(`${API}/dashboard/market?id=${encodeURIComponent(id)}`);
      if (id !== currentId || seq !== detailSeq) return;
      lastDetail = data;
      renderDetail(data);
      const m = $("message");  // a load error shown earlier (the server restarting) is over now
      if (m.textContent.startsWith("Could not load market")) { m.textContent = ""; m.className = "message"; }
    } catch (e) {
      if (id !== currentId || seq !== detailSeq) return;
      if (e.status === 404) {
        say(`Unknown market ${id}.`, "error");
        const h = $("market-title");
        clear(h);
        h.append(el("span", { cls: "sym", text: id }), " ", el("span", { cls: "badge state-other", text: "unknown" }));
      } else {
        say(`Could not load market ${id}: ${e.message}`, "error");
      }
    }
    if (id === currentId && seq === detailSeq) detailTimer = setTimeout(refreshDetail, DETAIL_EVERY_MS);
  }

  function renderDetail(d) {
    const row = d.row || rows.get(currentId);
    // The stream is at most a second old; the detail up to two: take the newer row for the head.
    const live = rows.get(currentId);
    updateHeadFromRow(live || row);
    renderLadder(d.ladder || {}, d.book || {}, (live || row || {}).index_price);
    const h = d.history || {};
    drawSeries("pnl", h.t, h.pnl, "#2563eb");
    drawSeries("inventory", h.t, h.inventory, "#7c3aed");
    drawSeries("index", h.t, h.index, "#0f766e");
    renderFills(d.fills || []);
    renderEvents(d.events || []);
    renderStatus(d.strategy_status);
    renderConfig(d.config);
  }

  function num(v) {
    const n = parseFloat(v);
    return Number.isFinite(n) ? n : null;
  }

  function renderLadder(ladder, book, indexPrice) {
    // Merge our resting orders with the book by price; asks on top (highest first), the index, then bids.
    const side = (ours, theirs) => {
      const m = new Map();
      for (const [p, q] of theirs || []) {
        const k = num(p);
        if (k == null) continue;
        m.set(k, { price: String(p), book: String(q), ours: null });
      }
      for (const [p, q] of ours || []) {
        const k = num(p);
        if (k == null) continue;
        const e = m.get(k) || { price: String(p), book: null, ours: null };
        e.ours = String(q);
        m.set(k, e);
      }
      return m;
    };
    const asks = side(ladder.asks, book.asks);
    const bids = side(ladder.bids, book.bids);
    const maxQ = Math.max(1e-12, ...[...asks.values(), ...bids.values()].map((e) => Math.max(num(e.book) || 0, num(e.ours) || 0)));
    const idx = num(indexPrice);
    const body = $("ladder-body");
    const frag = document.createDocumentFragment();
    const line = (k, e, cls) => {
      const bps = idx ? ((k - idx) / idx) * 10000 : null;
      frag.append(el("tr", { cls },
        el("td", { cls: "num", text: e.book == null ? "" : e.book }),
        el("td", { cls: "num ours", text: e.ours == null ? "" : e.ours }),
        el("td", { cls: "num price", text: e.price }),
        el("td", { cls: "num muted", text: bps == null ? "" : `${bps >= 0 ? "+" : ""}${bps.toFixed(1)} bp` }),
        el("td", { cls: "depth" }, depthBar(num(e.book) || 0, num(e.ours) || 0, maxQ, cls))));
    };
    const askKeys = [...asks.keys()].sort((a, b) => b - a);
    const bidKeys = [...bids.keys()].sort((a, b) => b - a);
    for (const k of askKeys) line(k, asks.get(k), "ask-row");
    frag.append(el("tr", { cls: "index-row" },
      el("td", { attrs: { colspan: "2" }, cls: "muted", text: "index" }),
      el("td", { cls: "num price", text: dash(indexPrice) }),
      el("td", { attrs: { colspan: "2" }, cls: "muted", text: askKeys.length || bidKeys.length ? "" : "no orders and no book" })));
    for (const k of bidKeys) line(k, bids.get(k), "bid-row");
    clear(body);
    body.append(frag);
  }

  const SVG = "http://www.w3.org/2000/svg";
  function depthBar(bookQ, ourQ, maxQ, cls) {
    const W = 120, H = 12;
    const svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
    svg.setAttribute("width", String(W));
    svg.setAttribute("height", String(H));
    svg.setAttribute("class", "bar");
    const rect = (w, y, h, c) => {
      const r = document.createElementNS(SVG, "rect");
      r.setAttribute("x", "0");
      r.setAttribute("y", String(y));
      r.setAttribute("width", String(Math.max(0, Math.min(W, (w / maxQ) * W)).toFixed(1)));
      r.setAttribute("height", String(h));
      r.setAttribute("class", c);
      svg.append(r);
    };
    const s = cls === "ask-row" ? "ask" : "bid";
    if (bookQ > 0) rect(bookQ, 0, H, `book-${s}`);
    if (ourQ > 0) rect(ourQ, 3, H - 6, `ours-${s}`);
    return svg;
  }

  function tableRows(body, items, cells) {
    const frag = document.createDocumentFragment();
    for (const it of items) frag.append(el("tr", null, ...cells(it)));
    if (!items.length) frag.append(el("tr", null, el("td", { cls: "muted", text: "none yet", attrs: { colspan: "9" } })));
    clear(body);
    body.append(frag);
  }

  function renderFills(fills) {
    tableRows($("fills-body"), fills, (f) => [
      el("td", { cls: "time", text: clock(f.t) }),
      el("td", { cls: `side side-${f.side === "buy" ? "buy" : f.side === "sell" ? "sell" : "none"}`, text: dash(f.side) }),
      el("td", { cls: "num", text: dash(f.price) }),
      el("td", { cls: "num", text: dash(f.quantity) }),
      el("td", { cls: "num", text: dash(f.fee) }),
      el("td", { text: dash(f.liquidity) }),
    ]);
  }

  function renderEvents(events) {
    tableRows($("events-body"), events, (e) => [
      el("td", { cls: "time", text: clock(e.t) }),
      el("td", { cls: "kind", text: dash(e.kind) }),
      el("td", { cls: `side side-${e.side === "buy" ? "buy" : e.side === "sell" ? "sell" : "none"}`, text: dash(e.side) }),
      el("td", { cls: "num", text: dash(e.price) }),
      el("td", { cls: "num", text: dash(e.quantity) }),
      el("td", { cls: "cid", text: dash(e.client_order_id) }),
      el("td", { cls: "reason", text: e.reason ? String(e.reason) : "" }),
    ]);
  }

  function show(v) {
    if (v == null) return "—";
    if (typeof v === "object") return JSON.stringify(v);
    return String(v);
  }

  function renderStatus(status) {
    const body = $("status-body");
    const frag = document.createDocumentFragment();
    if (status && typeof status === "object" && !Array.isArray(status)) {
      for (const [k, v] of Object.entries(status)) frag.append(el("tr", null, el("th", { text: k }), el("td", { text: show(v) })));
    } else if (status != null) {
      frag.append(el("tr", null, el("td", { text: show(status) })));
    }
    if (!frag.childNodes.length) frag.append(el("tr", null, el("td", { cls: "muted", text: "no status" })));
    clear(body);
    body.append(frag);
  }

  // ---- charts ------------------------------------------------------------------------------------------------
  function fmtAxis(v) {
    const a = Math.abs(v);
    if (a === 0) return "0";
    if (a >= 1e6) return v.toExponential(2);
    if (a >= 100) return v.toFixed(1);
    if (a >= 1) return v.toFixed(2);
    return v.toPrecision(3);
  }

  function drawSeries(name, ts, vs, color) {
    const canvas = $(`chart-${name}`);
    const t = Array.isArray(ts) ? ts : [];
    const v = Array.isArray(vs) ? vs : [];
    let last = null;
    for (let i = v.length - 1; i >= 0; i--) if (v[i] != null && Number.isFinite(Number(v[i]))) { last = Number(v[i]); break; }
    $(`chart-${name}-last`).textContent = last == null ? "" : `now ${fmtAxis(last)}`;
    const dpr = window.devicePixelRatio || 1;
    const w = Math.max(200, canvas.clientWidth || 400), h = Math.max(80, canvas.clientHeight || 130);
    if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
      canvas.width = Math.round(w * dpr);
      canvas.height = Math.round(h * dpr);
    }
    const ctx = canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, h);
    ctx.font = "11px system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif";
    const pts = [];
    const n = Math.min(t.length, v.length);
    for (let i = 0; i < n; i++) {
      const x = Number(t[i]), y = v[i] == null ? null : Number(v[i]);
      if (Number.isFinite(x)) pts.push([x, y != null && Number.isFinite(y) ? y : null]);
    }
    const ys = pts.filter((p) => p[1] != null).map((p) => p[1]);
    if (!ys.length) {
      ctx.fillStyle = "#8a94a6";
      ctx.fillText("no data yet", 10, h / 2);
      return;
    }
    let lo = Math.min(...ys), hi = Math.max(...ys);
    if (lo === hi) { const pad = Math.abs(lo) * 0.001 || 1; lo -= pad; hi += pad; }
    const padY = (hi - lo) * 0.08;
    lo -= padY; hi += padY;
    const t0 = pts[0][0], t1 = pts[pts.length - 1][0] === t0 ? t0 + 1 : pts[pts.length - 1][0];
    const L = 58, R = 8, T = 8, B = 18;
    const X = (x) => L + ((x - t0) / (t1 - t0)) * (w - L - R);
    const Y = (y) => T + (1 - (y - lo) / (hi - lo)) * (h - T - B);
    // grid and labels
    ctx.strokeStyle = "#e5e8ee";
    ctx.lineWidth = 1;
    ctx.fillStyle = "#6b7385";
    ctx.textBaseline = "middle";
    ctx.textAlign = "right";
    for (let i = 0; i <= 3; i++) {
      const y = lo + ((hi - lo) * i) / 3;
      const py = Math.round(Y(y)) + 0.5;
      ctx.beginPath(); ctx.moveTo(L, py); ctx.lineTo(w - R, py); ctx.stroke();
      ctx.fillText(fmtAxis(y), L - 6, py);
    }
    if (lo < 0 && hi > 0) {
      ctx.strokeStyle = "#9aa3b5";
      const pz = Math.round(Y(0)) + 0.5;
      ctx.beginPath(); ctx.moveTo(L, pz); ctx.lineTo(w - R, pz); ctx.stroke();
    }
    ctx.textBaseline = "alphabetic";
    ctx.textAlign = "left";
    ctx.fillText(clock(t0).slice(0, 8), L, h - 4);
    ctx.textAlign = "right";
    ctx.fillText(clock(t1).slice(0, 8), w - R, h - 4);
    // the line (a null is a gap)
    ctx.strokeStyle = color;
    ctx.lineWidth = 1.6;
    ctx.lineJoin = "round";
    ctx.beginPath();
    let pen = false;
    for (const [x, y] of pts) {
      if (y == null) { pen = false; continue; }
      if (pen) ctx.lineTo(X(x), Y(y)); else { ctx.moveTo(X(x), Y(y)); pen = true; }
    }
    ctx.stroke();
    const lp = pts.filter((p) => p[1] != null).pop();
    ctx.fillStyle = color;
    ctx.beginPath(); ctx.arc(X(lp[0]), Y(lp[1]), 2.5, 0, Math.PI * 2); ctx.fill();
  }

  // ---- config editor -----------------------------------------------------------------------------------------
  function isNested(v) {
    return v !== null && typeof v === "object";
  }

  function renderConfig(config) {
    const text = config == null ? "" : JSON.stringify(config, null, 2);
    setText($("config-view"), text || "—");
    if (pendingConfig != null) {
      if (text === pendingConfig) pendingConfig = null; // the saved config now runs
      else { $("config-pending").hidden = false; return; } // keep showing what was saved until it is reloaded
    }
    $("config-pending").hidden = true;
    if (editorDirty) return; // never overwrite what the user is typing
    if (text === editorConfigJson) return;
    buildEditor(config || {});
  }

  function buildEditor(config) {
    editorConfigJson = JSON.stringify(config, null, 2);
    editorDirty = false;
    const box = $("config-fields");
    clear(box);
    if (!config || typeof config !== "object" || Array.isArray(config) || !Object.keys(config).length) {
      box.append(el("p", { cls: "muted", text: "This strategy has no config." }));
      return;
    }
    for (const [key, value] of Object.entries(config)) {
      const id = `cfg-${key.replace(/[^A-Za-z0-9_-]/g, "_")}`;
      const nested = isNested(value);
      const input = nested ? el("textarea", { attrs: { rows: String(Math.min(8, Math.max(3, JSON.stringify(value, null, 1).split("\n").length))) } }) : el("input", { attrs: { type: "text" } });
      input.id = id;
      input.className = "cfg-input";
      input.spellcheck = false;
      input.dataset.key = key;
      input.dataset.kind = nested ? "json" : value === null ? "null" : typeof value;
      input.value = nested ? JSON.stringify(value) : value === null ? "null" : String(value);
      input.dataset.original = input.value;
      input.setAttribute("data-testid", `config-field-${key}`);
      input.addEventListener("input", () => {
        editorDirty = true;
        input.classList.toggle("changed", input.value !== input.dataset.original);
      });
      const err = el("div", { cls: "field-error", attrs: { "data-key": key, "data-testid": `field-error-${key}` } });
      err.hidden = true;
      const type = nested ? (Array.isArray(value) ? "JSON array" : "JSON object") : value === null ? "null" : typeof value;
      box.append(el("div", { cls: "field", attrs: { "data-key": key } },
        el("label", { attrs: { for: id } }, el("span", { cls: "key", text: key }), el("span", { cls: "type muted", text: type })),
        input, err));
    }
  }

  function clearConfigErrors() {
    const top = $("config-error");
    top.textContent = "";
    top.className = "config-error";
    for (const e of document.querySelectorAll("#config-fields .field-error")) { e.textContent = ""; e.hidden = true; }
    for (const f of document.querySelectorAll("#config-fields .field.bad")) f.classList.remove("bad");
  }

  function fieldError(key, text) {
    for (const f of document.querySelectorAll("#config-fields .field")) {
      if (f.dataset.key === key) {
        f.classList.add("bad");
        const e = f.querySelector(".field-error");
        e.textContent = text;
        e.hidden = false;
        const input = f.querySelector(".cfg-input");
        if (input) input.focus();
        return true;
      }
    }
    return false;
  }

  function topError(text, kind = "error") {
    const top = $("config-error");
    top.textContent = text;
    top.className = `config-error config-${kind}`;
  }

  // The key a server message names: the longest key found in it as a whole word.
  function keyNamed(message) {
    const keys = [...document.querySelectorAll("#config-fields .cfg-input")].map((i) => i.dataset.key);
    let best = null;
    for (const k of keys) {
      const re = new RegExp(`(^|[^A-Za-z0-9_])${k.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}($|[^A-Za-z0-9_])`);
      if (re.test(message) && (!best || k.length > best.length)) best = k;
    }
    return best;
  }

  function readChanges() {
    const changes = {};
    let bad = false;
    for (const input of document.querySelectorAll("#config-fields .cfg-input")) {
      if (input.value === input.dataset.original) continue;
      const key = input.dataset.key;
      const kind = input.dataset.kind;
      const raw = input.value;
      if (kind === "string") {
        changes[key] = raw;
        continue;
      }
      try {
        changes[key] = JSON.parse(raw);
      } catch (_) {
        if (kind === "json") {
          fieldError(key, `not valid JSON: ${raw.length > 60 ? `${raw.slice(0, 57)}...` : raw}`);
          bad = true;
        } else {
          changes[key] = raw; // let the server judge it (and name the key)
        }
      }
    }
    return bad ? null : changes;
  }

  async function saveConfig(ev) {
    ev.preventDefault();
    clearConfigErrors();
    const row = (lastDetail && lastDetail.row) || rows.get(currentId);
    if (!row) { topError("The market is not loaded yet."); return; }
    const changes = readChanges();
    if (changes == null) { topError("Not saved: fix the field marked below."); return; }
    if (!Object.keys(changes).length) { topError("Nothing changed.", "info"); return; }
    const saveBtn = $("config-save");
    saveBtn.disabled = true;
    // by id: two markets can share a symbol (one that failed to load shows its index's), never an id
    const r = await post(`${API}/strategy/config/update`, { symbol: row.id, market_type: row.market_type, config: changes }, "save the config");
    saveBtn.disabled = false;
    if (r.needToken) {
      pendingAction = () => $("config-save").click();
      askToken(r.message);
      topError(r.message);
      return;
    }
    if (r.status === 401 || r.status === 403) { topError(r.status === 401 ? "The API token was refused: enter it again." : "Mutations are disabled on this server (no API token is configured)."); return; }
    if (!r.ok) {
      const key = keyNamed(r.message);
      if (key) {
        fieldError(key, r.message);
        topError(`Not saved: ${r.message}`);
      } else {
        topError(`Not saved: ${r.message}`);
      }
      return;
    }
    const config = r.data && r.data.config;
    editorDirty = false;
    if (config) {
      buildEditor(config);
      pendingConfig = editorConfigJson;
      $("config-pending").hidden = false;
    }
    topError("saved; reload to apply", "ok");
    say(`Config of ${row.symbol} saved; reload to apply.`, "ok");
  }

  // ---- actions -----------------------------------------------------------------------------------------------
  function marketAction(verb) {
    const row = (lastDetail && lastDetail.row) || rows.get(currentId);
    if (!row) { say("The market is not loaded yet.", "error"); return; }
    act(`${API}/strategy/${verb}`, { symbol: row.id, market_type: row.market_type }, `${verb} ${row.symbol}`, (r) => {
      if (r.ok && verb === "reload") { pendingConfig = null; editorConfigJson = null; editorDirty = false; }
      refreshDetail();
    });
  }

  function kill() {
    if (!window.confirm("Kill switch: stop every market and cancel all our orders?")) return;
    act(`${API}/kill`, {}, "use the kill switch", () => { if (currentId) refreshDetail(); });
  }

  // ---- wiring ------------------------------------------------------------------------------------------------
  function init() {
    showTokenState();
    $("token-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      const input = $("token-input");
      const t = input.value.trim();
      if (!t) { input.focus(); return; }
      input.value = "";
      setToken(t);
      $("token-form").classList.remove("wanted");
      say("Token saved for this browser tab.", "ok");
      const run = pendingAction;
      pendingAction = null;
      if (run) run();
    });
    $("token-forget").addEventListener("click", () => { setToken(""); pendingAction = null; say("Token forgotten.", "info"); });
    $("btn-kill").addEventListener("click", kill);
    $("btn-start").addEventListener("click", () => marketAction("start"));
    $("btn-stop").addEventListener("click", () => marketAction("stop"));
    $("btn-reload").addEventListener("click", () => marketAction("reload"));
    $("config-editor").addEventListener("submit", saveConfig);
    $("config-reset").addEventListener("click", () => {
      editorDirty = false;
      pendingConfig = null;
      $("config-pending").hidden = true;
      clearConfigErrors();
      if (lastDetail) buildEditor(lastDetail.config || {});
    });
    let filterTimer = null;
    $("filter").addEventListener("input", () => {
      clearTimeout(filterTimer);
      filterTimer = setTimeout(() => {
        filterText = $("filter").value.trim().toLowerCase();
        page = 0;
        renderList();
      }, 80);
    });
    $("page-prev").addEventListener("click", () => { if (page > 0) { page--; renderList(); } });
    $("page-next").addEventListener("click", () => { page++; renderList(); });
    const body = $("markets-body");
    const openRow = (target) => {
      const tr = target.closest("tr.market-row");
      if (tr && tr.dataset.id) location.hash = `market=${encodeURIComponent(tr.dataset.id)}`;
    };
    body.addEventListener("click", (ev) => openRow(ev.target));
    body.addEventListener("keydown", (ev) => { if (ev.key === "Enter") openRow(ev.target); });
    window.addEventListener("hashchange", route);
    let resizeTimer = null;
    window.addEventListener("resize", () => {
      clearTimeout(resizeTimer);
      resizeTimer = setTimeout(() => { if (lastDetail && currentId) renderDetail(lastDetail); }, 150);
    });
    renderList();
    connect();
    route();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
