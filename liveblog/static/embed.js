/*! liveblog widget. Paste <script src="https://LIVEBLOG-HOST/embed.js" data-blog="BLOG" async></script>
 * where the blog should appear, or put <div data-liveblog="BLOG"></div> elements on the page and
 * load the script once. Options, as data- attributes on the script or the div:
 *   data-limit="20"                 entries shown (pinned ones come on top of these)
 *   data-theme="auto|light|dark"    auto follows prefers-color-scheme
 *   data-order="newest|oldest"      newest first (default) or oldest first
 * It renders in a shadow root, talks to the server the script came from (WebSocket, or
 * Server-Sent Events where WebSockets are blocked), and sets every reporter-supplied field
 * as text; only the entry body is HTML, sanitised by the server and filtered again here. */
(function () {
  "use strict";
  // API calls go to the server this script came from, whichever site embeds it.
  var script = document.currentScript || document.querySelector('script[src$="/embed.js"]');
  var base = new URL(".", script.src);
  var AWAY_MS = 30000; // hidden this long counts as "you left": reconnect and count what came
  var BODY_TAGS = /^(P|BR|STRONG|EM|A|BLOCKQUOTE|UL|OL|LI|H3)$/;
  var SAFE_LINK = /^(https?:|mailto:)/i;
  // Every reader-facing string. fill() and format() replace a {name}, so a translation may move
  // it; counted ones have a form per plural category (Intl.PluralRules).
  var TEXT = {
    list: "Live updates",
    live: "Live",
    reconnecting: "Reconnecting…",
    offline: "Offline: updates resume when you are back online",
    ended: "This live blog has ended.",
    missing: "This live blog does not exist.",
    refused: "This live blog cannot be shown on this site.",
    pinned: "Pinned",
    keyEvent: "Key event",
    updated: " · updated {time}",
    corrected: "Corrected {time}: {text}",
    retracted: "This entry was retracted: {note}",
    newUpdate: "New update: {text}",
    newUpdates: { one: "{n} new update", other: "{n} new updates" },
    sinceYouLeft: { one: "{n} update since you left", other: "{n} updates since you left" }
  };
  var PLURAL = new Intl.PluralRules("en");
  var DARK = "--bg:#161616;--fg:#ececec;--mu:#b5b5b5;--ln:#8ab4f8;--ac:#ff8a80;--on:#161616;--pin:#2a2516;--bd:#3a3a3a;--hl:#3a3320";
  var CSS =
    ":host{all:initial;display:block!important;visibility:visible!important;opacity:1!important}" +
    // The host element inherits whatever the page sets; .lb starts from initial values instead.
    ".lb{all:initial;--bg:#fff;--fg:#1a1a1a;--mu:#575757;--ln:#0b57d0;--ac:#b3261e;--on:#fff;--pin:#fff6db;--bd:#d9d9d9;--hl:#fff0b3;" +
    "display:block;background:var(--bg);color:var(--fg);font:16px/1.5 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;text-align:left;padding:4px 0}" +
    ".lb[data-theme=dark]{" + DARK + "}@media (prefers-color-scheme:dark){.lb[data-theme=auto]{" + DARK + "}}" +
    "*{box-sizing:border-box}[hidden]{display:none!important}" +
    "h2{font-size:1.3em;line-height:1.25;margin:0 0 4px}h3{font-size:1.1em;line-height:1.3;margin:4px 0}" +
    ".hd{padding:0 12px 8px;border-bottom:2px solid var(--bd)}.hd p,.meta,.by,.tags,figcaption{margin:0;color:var(--mu);font-size:.875em}" +
    ".st{font-weight:600}.dot{display:inline-block;width:.6em;height:.6em;border-radius:50%;background:var(--ac);margin-right:.4em}" +
    ".e{padding:10px 12px;border-bottom:1px solid var(--bd);outline-offset:-2px}.e.pin{background:var(--pin)}.e.key{border-left:4px solid var(--ac)}" +
    ".b{display:inline-block;margin-left:.5em;padding:0 .4em;border-radius:3px;font-size:.8em;font-weight:700;background:var(--fg);color:var(--bg)}.k{background:var(--ac);color:var(--on)}" +
    ".body p,.body ul,.body ol,.body blockquote{margin:.4em 0}.body blockquote{border-left:3px solid var(--bd);padding-left:.8em;font-style:italic}" +
    "a{color:var(--ln)}figure{margin:.5em 0}img,video{display:block;max-width:100%;height:auto}" +
    ".cx{margin:.4em 0;font-style:italic}.tags{list-style:none;padding:0;display:flex;flex-wrap:wrap;gap:.5em}" +
    ".bar{position:sticky;top:8px;z-index:1;height:0;text-align:center}" + // takes no room: showing it moves nothing
    ".more{margin-top:8px;padding:6px 16px;border:0;border-radius:999px;background:var(--ac);color:var(--on);font:inherit;font-weight:600;cursor:pointer;box-shadow:0 2px 6px rgba(0,0,0,.3)}" +
    "a:focus-visible,button:focus-visible,.e:focus-visible{outline:3px solid var(--ln);outline-offset:2px}" +
    ".sr{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0);white-space:nowrap}" +
    "@media (prefers-reduced-motion:no-preference){.new{animation:lbin 1.5s ease-out}.dot{animation:lbp 2s infinite}}" +
    "@keyframes lbin{from{background:var(--hl)}}@keyframes lbp{50%{opacity:.3}}";
  var FRAME =
    '<div class="lb" part="widget"><div class="top"></div><header class="hd"><h2></h2><p class="desc"></p><p class="st"></p></header>' +
    '<div class="bar"><button class="more" type="button" hidden></button></div><div class="sr" aria-live="polite"></div>' +
    '<section class="list"></section></div>';

  function h(tag, cls, text) {
    var el = document.createElement(tag);
    if (cls) el.className = cls;
    if (text != null) el.textContent = String(text);
    return el;
  }

  // The pattern's {name}s replaced by parts: nodes, or strings set as text (never parsed as HTML).
  function fill(el, pattern, parts) {
    pattern.split(/\{(\w+)\}/).forEach(function (piece, i) { el.append(i % 2 ? parts[piece] : piece); });
    return el;
  }

  function format(pattern, parts) {
    return pattern.replace(/\{(\w+)\}/g, function (all, name) { return parts[name]; });
  }

  function count(forms, n) {
    return format(forms[PLURAL.select(n)] || forms.other, { n: n });
  }

  function clock(iso) {
    var d = new Date(iso);
    var s = d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", hourCycle: "h23" });
    return d.toDateString() === new Date().toDateString() ? s : d.toLocaleDateString([], { day: "numeric", month: "short" }) + ", " + s;
  }

  function timeEl(iso) {
    var t = h("time", "", clock(iso));
    t.dateTime = iso;
    t.title = new Date(iso).toLocaleString([], { dateStyle: "full", timeStyle: "long" });
    return t;
  }

  function link(el, href) {
    el.href = href;
    el.target = "_blank";
    el.rel = "noopener noreferrer nofollow";
    return el;
  }

  // Defence in depth: keep only the server's allow-list, parsed inertly in a <template>.
  function filter(node) {
    Array.prototype.slice.call(node.children).forEach(function (el) {
      if (!BODY_TAGS.test(el.tagName)) return el.replaceWith(el.tagName === "SCRIPT" || el.tagName === "STYLE" ? "" : el.textContent);
      var href = el.getAttribute("href");
      while (el.attributes.length) el.removeAttribute(el.attributes[0].name);
      if (el.tagName === "A" && href && SAFE_LINK.test(href)) link(el, href);
      filter(el);
    });
  }

  function textOf(html) {
    var tpl = document.createElement("template"); // inert: nothing in it loads or runs
    tpl.innerHTML = html;
    return tpl.content.textContent;
  }

  function build(e) {
    var el = h("article", "e" + (e.pinned ? " pin" : "") + (e.key_event ? " key" : ""));
    el.tabIndex = -1;
    el.dataset.id = e.id;
    if (e.retracted) {
      fill(el.appendChild(h("p", "meta")), TEXT.retracted, { note: e.retracted });
      return el;
    }
    var meta = el.appendChild(h("p", "meta"));
    meta.appendChild(timeEl(e.time));
    if (e.pinned) meta.appendChild(h("span", "b", TEXT.pinned));
    if (e.key_event) meta.appendChild(h("span", "b k", TEXT.keyEvent));
    // Only a change of what readers read is an edit: pinning, key events and tags are not.
    if (e.edited_at) fill(meta, TEXT.updated, { time: timeEl(e.edited_at) });
    if (e.headline) el.appendChild(h("h3", "", e.headline));
    var a = e.author || {};
    el.appendChild(h("p", "by", [a.name, a.role, a.location].filter(Boolean).join(", ")));
    var tpl = document.createElement("template");
    tpl.innerHTML = e.body;
    filter(tpl.content);
    el.appendChild(h("div", "body")).appendChild(tpl.content);
    var m = e.media;
    if (m && /^https:\/\//.test(m.url)) {
      var fig = el.appendChild(h("figure"));
      if (m.type === "image") {
        var img = fig.appendChild(h("img"));
        img.alt = m.alt || m.caption || "";
        img.loading = "lazy";
        img.src = m.url;
      } else if (m.type === "video") {
        var v = fig.appendChild(h("video"));
        v.controls = true;
        v.preload = "metadata";
        v.src = m.url;
      } else fig.appendChild(link(h("a", "", m.caption || m.url), m.url));
      if (m.caption && m.type !== "embed") fig.appendChild(h("figcaption", "", m.caption));
    }
    (e.corrections || []).forEach(function (c) {
      fill(el.appendChild(h("p", "cx")), TEXT.corrected, { time: timeEl(c.at), text: c.text });
    });
    if (e.tags && e.tags.length) {
      var tags = el.appendChild(h("ul", "tags"));
      e.tags.forEach(function (t) { tags.appendChild(h("li", "", "#" + t)); });
    }
    return el;
  }

  function newestFirst(a, b) {
    return a.time < b.time ? 1 : a.time > b.time ? -1 : a.id < b.id ? 1 : -1;
  }

  function mount(host, blog, opt) {
    var limit = Math.min(Math.max(parseInt(opt.limit, 10) || 20, 1), 100);
    var oldestFirst = opt.order === "oldest";
    var root = host.attachShadow({ mode: "open" });
    // Until the first snapshot, the host's own children (the server-rendered page) stay visible.
    root.innerHTML = "<style>" + CSS + "</style><slot></slot>";
    var tmp = h("div");
    tmp.innerHTML = FRAME;
    var frame = tmp.firstChild;
    frame.dataset.theme = /^(light|dark)$/.test(opt.theme) ? opt.theme : "auto";
    function q(sel) { return frame.querySelector(sel); }
    var list = q(".list"), more = q(".more"), say = q(".sr"), st = q(".st");
    list.setAttribute("aria-label", TEXT.list);
    var reduced = matchMedia("(prefers-reduced-motion: reduce)");

    var shown = {}, held = {}, els = {}, rendered = false;
    var cursor = null, ws = null, es = null, timer = 0, attempt = 0, fails = 0, stopped = false;
    var useSse = typeof WebSocket !== "function";
    var scrolledPast = false, hiddenAt = 0, away = null, awayShown = false;
    var saidCount = 0, saidEntry = null, saidText = "", sayTimer = 0;

    // --- rendering ------------------------------------------------------------------------------

    function ordered() {
      var all = Object.keys(shown).map(function (id) { return shown[id]; }).sort(newestFirst);
      var pinned = all.filter(function (e) { return e.pinned; });
      var rest = all.filter(function (e) { return !e.pinned; }).slice(0, limit);
      // Only what is shown is kept: memory stays bounded however long the page stays open.
      all.forEach(function (e) { if (!e.pinned && rest.indexOf(e) < 0) delete shown[e.id]; });
      return pinned.concat(oldestFirst ? rest.reverse() : rest);
    }

    function render(fresh) {
      var keep = {}, prev = null;
      ordered().forEach(function (e) {
        var el = els[e.id];
        if (!el || el.__v !== e.version) {
          var next = build(e);
          next.__v = e.version;
          if (fresh && fresh[e.id]) next.classList.add("new");
          if (el) el.replaceWith(next);
          el = els[e.id] = next;
        }
        keep[e.id] = 1;
        var at = prev ? prev.nextSibling : list.firstChild;
        if (at !== el) list.insertBefore(el, at);
        prev = el;
      });
      Object.keys(els).forEach(function (id) {
        if (!keep[id]) { els[id].remove(); delete els[id]; }
      });
      if (!rendered) {
        rendered = true;
        root.replaceChild(frame, root.querySelector("slot"));
      }
      var n = Object.keys(held).length;
      more.hidden = !(n || (awayShown && away.count));
      more.textContent = awayShown && away.count ? count(TEXT.sinceYouLeft, away.count) : count(TEXT.newUpdates, n);
    }

    function setBlog(b) {
      q("h2").textContent = b.title;
      q(".desc").textContent = b.description || "";
      if (b.status === "ended") {
        stop(TEXT.ended);
        announce(null, TEXT.ended);
      } else if (!stopped) status();
    }

    function status(text) {
      st.textContent = "";
      if (text) return (st.textContent = text);
      if (ws && ws.readyState === 1 || es && es.readyState === 1) st.appendChild(h("span", "dot")).after(TEXT.live);
      else st.textContent = navigator.onLine === false ? TEXT.offline : TEXT.reconnecting;
    }

    // New entries (or a text), announced politely and in one sentence when several come at once.
    function announce(e, text) {
      if (e) { saidCount++; saidEntry = e; } else saidText = text;
      clearTimeout(sayTimer);
      sayTimer = setTimeout(function () {
        var news = saidCount > 1 ? count(TEXT.newUpdates, saidCount) : saidCount
          ? format(TEXT.newUpdate, { text: saidEntry.headline || textOf(saidEntry.body).slice(0, 140) }) : "";
        say.textContent = [saidText, news].filter(Boolean).join(" ");
        saidCount = 0;
        saidText = "";
      }, 400);
    }

    function flush() {
      var fresh = held;
      Object.keys(held).forEach(function (id) { shown[id] = held[id]; });
      held = {};
      return fresh;
    }

    more.addEventListener("click", function () {
      var fresh = flush();
      awayShown = false;
      away = null;
      render(fresh);
      host.scrollIntoView({ behavior: reduced.matches ? "auto" : "smooth", block: "start" });
      var first = list.querySelector(".new") || list.firstChild;
      if (first) first.focus({ preventScroll: true });
    });

    // Reading further down: hold new entries behind the button rather than push the text down.
    new IntersectionObserver(function (records) {
      var r = records[records.length - 1];
      scrolledPast = !r.isIntersecting && (r.rootBounds ? r.boundingClientRect.top < r.rootBounds.top : true);
      if (!scrolledPast && Object.keys(held).length && !awayShown) render(flush());
    }).observe(q(".top"));

    // --- messages -------------------------------------------------------------------------------

    function receive(text) {
      var m;
      try { m = JSON.parse(text); } catch (err) { return; }
      attempt = 0;
      if (m.cursor) cursor = m.cursor;
      if (m.type === "snapshot") {
        shown = {};
        held = {};
        m.pinned.concat(m.entries).forEach(function (e) { shown[e.id] = e; });
        render();
        setBlog(m.blog);
      } else if (m.type === "event" && m.event === "blog.updated") setBlog(m.blog);
      else if (m.type === "event") apply(m.event, m.entry);
    }

    function apply(kind, e) {
      var cur = shown[e.id] || held[e.id], wasHeld = !!held[e.id], isNew = !cur && kind === "entry.created", fresh = {};
      if (cur && cur.version >= e.version) return;
      delete shown[e.id];
      delete held[e.id];
      if (kind === "entry.deleted") {
        // A retraction with a note keeps the place of an entry the reader saw, to say why it went.
        if (e.retraction_note && cur && !wasHeld) {
          shown[e.id] = { id: e.id, version: e.version, time: cur.time, pinned: cur.pinned, retracted: e.retraction_note };
          announce(null, format(TEXT.retracted, { note: e.retraction_note }));
        }
      } else {
        if (isNew) {
          if (away) away.count++;
          announce(e);
          fresh[e.id] = 1;
        }
        (wasHeld || isNew && scrolledPast && !oldestFirst ? held : shown)[e.id] = e;
      }
      render(fresh);
    }

    // --- connection -----------------------------------------------------------------------------

    function connect() {
      timer = 0;
      if (stopped) return;
      var path = "api/v1/blogs/" + encodeURIComponent(blog) + (useSse ? "/events" : "/live");
      var url = new URL(path + (cursor ? "?cursor=" + encodeURIComponent(cursor) : ""), base);
      if (useSse) {
        // Reconnection is ours, not EventSource's, so it resumes from our cursor with our backoff.
        var source = es = new EventSource(url);
        source.onopen = function () { status(); };
        source.onmessage = function (ev) { receive(ev.data); };
        source.addEventListener("close", function () { drop(); retry(Math.random() * 1000); }); // 4408
        source.onerror = function () { drop(); retry(); };
        return;
      }
      url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
      var sock = ws = new WebSocket(url), opened = false;
      sock.onopen = function () { opened = true; fails = 0; status(); };
      sock.onmessage = function (ev) { receive(ev.data); };
      sock.onclose = function (ev) {
        ws = null;
        // Two attempts in a row that never opened: a network that blocks WebSockets. Use SSE.
        if (!opened && ++fails >= 2) useSse = true;
        if (ev.code === 4404) return stop(TEXT.missing);
        if (ev.code === 4403) return stop(TEXT.refused);
        retry(ev.code === 4408 ? Math.random() * 1000 : null);
      };
    }

    function drop() {
      if (ws) { ws.onclose = null; ws.close(); ws = null; }
      if (es) { es.close(); es = null; }
      clearTimeout(timer);
      timer = 0;
    }

    // Exponential backoff with jitter, so a restarted server is not hit by every reader at once.
    function retry(ms) {
      if (stopped || timer) return;
      if (ms == null) ms = Math.min(30000, 500 * Math.pow(2, attempt++)) * (0.5 + Math.random());
      status();
      timer = setTimeout(connect, ms);
    }

    function stop(text) {
      stopped = true;
      drop();
      status(text);
      if (!rendered && !host.childElementCount) render(); // say why, unless the page's own content is there
    }

    // Back after a long absence (a sleeping tab, a closed lid, a lost network): the old
    // connection may be dead without knowing it, so reconnect now and count what comes in.
    function back(long) {
      if (stopped || !away) return;
      if (long) {
        awayShown = true;
        drop();
        attempt = 0;
        connect();
        render();
      } else if (!awayShown) away = null;
    }
    document.addEventListener("visibilitychange", function () {
      if (document.hidden) { hiddenAt = Date.now(); away = away || { count: 0 }; }
      else back(Date.now() - hiddenAt > AWAY_MS);
    });
    addEventListener("offline", function () { away = away || { count: 0 }; status(); });
    addEventListener("online", function () { back(true); });

    connect();
  }

  function mountAll() {
    if (script && script.dataset.blog && !script.liveblog) {
      script.liveblog = h("div");
      script.parentNode.insertBefore(script.liveblog, script.nextSibling);
      mount(script.liveblog, script.dataset.blog, script.dataset);
    }
    document.querySelectorAll("[data-liveblog]").forEach(function (el) {
      if (!el.shadowRoot) mount(el, el.dataset.liveblog, el.dataset);
    });
  }
  mountAll();
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", mountAll);
})();
