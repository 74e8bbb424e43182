/*! liveblog widget. Paste <script src="https://LIVEBLOG-HOST/embed.js" data-blog="BLOG" async></script>
 * where the blog should appear, or put <div data-liveblog="BLOG"></div> elements on the page and
 * load the script once. Options, as data- attributes on the script or the div:
 *   data-limit="20"                 entries shown at first ("Load more" adds as many again)
 *   data-theme="light|dark|auto"    light by default; auto follows prefers-color-scheme
 *   data-order="newest|oldest"      newest first (default) or from the first entry on
 * Branding: --lb-accent, --lb-font, --lb-radius, --lb-link, --lb-bg, --lb-fg on the element.
 * It renders in a shadow root, in the blog's language, talks to the server the script came from
 * (WebSocket, or Server-Sent Events where WebSockets are blocked), and sets every
 * reporter-supplied field as text; only the entry body is HTML, sanitised by the server and
 * filtered again here. */
(function () {
  "use strict";
  // API calls go to the server this script came from, whichever site embeds it.
  var script = document.currentScript || document.querySelector('script[src*="/embed.js"]');
  var base = new URL(".", script.src);
  var AWAY_MS = 30000; // hidden this long counts as "you left": reconnect and count what came
  var BODY_TAGS = /^(P|BR|STRONG|EM|MARK|A|BLOCKQUOTE|FOOTER|UL|OL|LI|H3)$/;
  var SAFE_LINK = /^(https?:|mailto:)/i;
  // Every reader-facing string, English (the server fills in liveblog/locales/en.json). Other
  // languages come from /i18n/{lang}.json, once per page; a key they lack stays English.
  var EN = __LIVEBLOG_STRINGS__;
  var VERSION = "__LIVEBLOG_STRINGS_VERSION__";
  var LANGS = { en: Promise.resolve({ lang: "en", dir: "ltr", strings: EN }) };
  var PROVIDERS = { x: "X", youtube: "YouTube", vimeo: "Vimeo", instagram: "Instagram", tiktok: "TikTok", bluesky: "Bluesky", facebook: "Facebook" };
  var DARK = "--bg:var(--lb-bg-dark,#161616);--fg:var(--lb-fg-dark,#ececec);--mu:#b5b5b5;--ln:var(--lb-link-dark,#8ab4f8);--ac:var(--lb-accent-dark,#ff8a80);--on:#161616;--pin:#2a2516;--bd:#3a3a3a;--hl:#3a3320";
  var CSS =
    ":host{all:initial;display:block!important;visibility:visible!important;opacity:1!important}" +
    // The host element inherits whatever the page sets; .lb starts from initial values instead.
    // Custom properties are not reset by all:initial: --lb-* set on the host brand the widget.
    ".lb{all:initial;--bg:var(--lb-bg,#fff);--fg:var(--lb-fg,#1a1a1a);--mu:#575757;--ln:var(--lb-link,#0b57d0);--ac:var(--lb-accent,#b3261e);--on:#fff;--pin:#fff6db;--bd:#d9d9d9;--hl:#fff0b3;--r:var(--lb-radius,4px);" +
    "display:block;background:var(--bg);color:var(--fg);font:16px/1.5 var(--lb-font,system-ui,-apple-system,'Segoe UI',Roboto,sans-serif);text-align:start;padding:4px 0}" +
    ".lb[data-theme=dark]{" + DARK + "}@media (prefers-color-scheme:dark){.lb[data-theme=auto]{" + DARK + "}}" +
    "*{box-sizing:border-box}[hidden]{display:none!important}" +
    "h2{font-size:1.3em;line-height:1.25;margin:0 0 4px}h3{font-size:1.1em;line-height:1.3;margin:4px 0}h4{margin:0;font-size:.875em;text-transform:uppercase}" +
    ".hd{padding:0 12px 8px;border-bottom:2px solid var(--bd)}.hd p,.meta,.by,.tags,figcaption,.ke li{margin:0;color:var(--mu);font-size:.875em}" +
    ".st{font-weight:600}.dot{display:inline-block;width:.6em;height:.6em;border-radius:50%;background:var(--ac);margin-inline-end:.4em}" +
    ".e{padding:10px 12px;border-bottom:1px solid var(--bd);outline-offset:-2px}.pins .e,.e.pin{background:var(--pin)}.e.key{border-inline-start:4px solid var(--ac)}" +
    ".b{display:inline-block;margin-inline-start:.5em;padding:0 .4em;border-radius:var(--r);font-size:.8em;font-weight:700;background:var(--fg);color:var(--bg)}.k{background:var(--ac);color:var(--on)}" +
    ".body p,.body ul,.body ol,.body blockquote{margin:.4em 0}.body blockquote{border-inline-start:3px solid var(--bd);padding-inline-start:.8em;font-style:italic}" +
    "footer{font-style:normal;color:var(--mu)}footer:before{content:'— '}mark{background:var(--hl);color:inherit}" +
    "a{color:var(--ln)}figure{margin:.5em 0}img,video,iframe{display:block;max-width:100%;height:auto;border:0}iframe{width:100%;aspect-ratio:16/9}" +
    ".cx{margin:.4em 0;font-style:italic}.tags{list-style:none;padding:0;display:flex;flex-wrap:wrap;gap:.5em}" +
    ".tags button,.sh,.ld,.all,.lm{font:inherit;color:var(--ln);background:none;border:0;padding:0;cursor:pointer;text-decoration:underline}" +
    ".sh{font-size:.875em;margin-top:4px}" +
    ".ke{margin:8px 12px;padding:8px 12px;border-radius:var(--r);background:var(--pin)}.ke ul{margin:4px 0 0;padding-inline-start:1.2em}" +
    ".rel{margin:.6em 0;padding:8px;border:1px solid var(--bd);border-radius:var(--r)}.rel ul{list-style:none;margin:4px 0 0;padding:0}.rel li{margin:4px 0}" +
    ".rel small{display:block;color:var(--mu);font-weight:700;text-transform:uppercase}" +
    ".emb{padding:12px;border:1px solid var(--bd);border-radius:var(--r)}.emb p{margin:0 0 .5em}" +
    ".ld,.lm{display:block;margin:10px auto;padding:6px 16px;border:1px solid var(--ln);border-radius:var(--r);text-decoration:none}" +
    // The pill has a strip of its own, always there: showing it moves nothing and, at rest, covers no text.
    ".bar{position:sticky;top:0;z-index:1;height:44px;padding-top:6px;text-align:center;pointer-events:none}.bar button{pointer-events:auto}" +
    ".more{padding:6px 16px;border:0;border-radius:999px;background:var(--ac);color:var(--on);font:inherit;font-weight:600;cursor:pointer}" +
    "a:focus-visible,button:focus-visible,.e:focus-visible{outline:3px solid var(--ln);outline-offset:2px}" +
    ".sr{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0);white-space:nowrap}" +
    "@media (prefers-reduced-motion:no-preference){.new{animation:lbin 1.5s ease-out}.dot{animation:lbp 2s infinite}}" +
    "@keyframes lbin{from{background:var(--hl)}}@keyframes lbp{50%{opacity:.3}}";
  var FRAME =
    '<div class="lb" part="widget"><div class="top"></div><header class="hd"><h2></h2><p class="desc"></p><p class="st"></p></header>' +
    '<div class="bar"><button class="more" type="button" hidden></button></div><div class="sr" aria-live="polite"></div>' +
    '<nav class="ke" hidden><h4></h4><ul></ul></nav><section class="pins"></section><section class="list"></section>' +
    '<button class="lm" type="button" hidden></button><section class="tv" hidden><h3></h3><button class="all" type="button"></button><div></div></section></div>';

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

  // A language's strings, fetched once per page however many widgets show it.
  function strings(lang) {
    lang = String(lang || "en").toLowerCase();
    if (!LANGS[lang]) {
      LANGS[lang] = fetch(new URL("i18n/" + encodeURIComponent(lang) + ".json?v=" + VERSION, base))
        .then(function (r) { return r.ok ? r.json() : LANGS.en; })
        .catch(function () { return LANGS.en; });
    }
    return LANGS[lang];
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
    frame.dataset.theme = /^(auto|dark)$/.test(opt.theme) ? opt.theme : "light";
    function q(sel) { return frame.querySelector(sel); }
    var list = q(".list"), pins = q(".pins"), more = q(".more"), say = q(".sr"), st = q(".st");
    var keys = q(".ke"), lm = q(".lm"), tv = q(".tv");
    var reduced = matchMedia("(prefers-reduced-motion: reduce)");

    var S = EN, lang = "en", loc = "en", zone = "UTC", plural = new Intl.PluralRules("en"), rtf = null;
    var shown = {}, held = {}, els = {}, pinEls = {}, rendered = false, win = limit, older = false, loading = false;
    var cursor = null, ws = null, es = null, timer = 0, attempt = 0, fails = 0, stopped = false, chain = Promise.resolve();
    var useSse = typeof WebSocket !== "function";
    var scrolledPast = false, hiddenAt = 0, away = null, awayShown = false;
    var saidCount = 0, saidEntry = null, saidText = "", sayTimer = 0;

    // --- language -------------------------------------------------------------------------------

    function T(key, parts) {
      var s = S[key] != null ? S[key] : EN[key];
      return parts ? format(s, parts) : s;
    }

    function count(key, n) {
      var forms = S[key] || EN[key];
      return format(forms[plural.select(n)] || forms.other, { n: n.toLocaleString(lang, { numberingSystem: "latn" }) });
    }

    function setLanguage(doc) {
      S = doc.strings;
      lang = doc.lang;
      // The reader's own variant of the blog's language (en-GB for an English blog) where it is one.
      loc = navigator.language.split("-")[0] === lang ? navigator.language : lang;
      plural = new Intl.PluralRules(lang);
      rtf = new Intl.RelativeTimeFormat(lang, { numeric: "auto", style: "short" });
      frame.lang = lang;
      frame.dir = doc.dir;
      list.setAttribute("aria-label", T("live_updates"));
      keys.setAttribute("aria-label", T("key_events"));
      q(".ke h4").textContent = T("key_events");
      lm.textContent = T("load_more");
      q(".all").textContent = T("all_updates");
    }
    setLanguage({ lang: "en", dir: "ltr", strings: EN });

    // Times in the reader's own zone; the tooltip says when it was in the blog's.
    function clock(iso) {
      var d = new Date(iso);
      var s = d.toLocaleTimeString(loc, { hour: "2-digit", minute: "2-digit", hourCycle: "h23" });
      return d.toDateString() === new Date().toDateString() ? s : d.toLocaleDateString(loc, { day: "numeric", month: "short" }) + ", " + s;
    }

    function timeEl(iso) {
      var t = h("time", "", clock(iso));
      t.dateTime = iso;
      try {
        t.title = new Intl.DateTimeFormat(loc, { dateStyle: "full", timeStyle: "long", timeZone: zone }).format(new Date(iso));
      } catch (err) {
        t.title = new Date(iso).toLocaleString(loc, { dateStyle: "full", timeStyle: "long" });
      }
      return t;
    }

    // "5 min ago" for the last day's entries, kept current by tick().
    function ago(el) {
      var s = (Date.now() - new Date(el.dataset.t)) / 1000;
      el.textContent = s < 86400 ? " · " + (s < 3600 ? rtf.format(-Math.max(1, Math.floor(s / 60)), "minute") : rtf.format(-Math.floor(s / 3600), "hour")) : "";
    }
    setInterval(function () { frame.querySelectorAll(".ago").forEach(ago); }, 30000);

    function permalink(e) {
      return new URL("blogs/" + encodeURIComponent(blog) + "/entries/" + encodeURIComponent(e.id), base).href;
    }

    // --- entries --------------------------------------------------------------------------------

    function media(el, m) {
      var fig = el.appendChild(h("figure"));
      if (m.type === "image") {
        var img = fig.appendChild(h("img"));
        img.alt = m.alt || m.caption || "";
        img.loading = "lazy";
        if (m.width && m.height) { img.width = m.width; img.height = m.height; }
        img.src = m.url;
      } else if (m.type === "video") {
        var v = fig.appendChild(h("video"));
        v.controls = true;
        v.preload = "metadata";
        v.src = m.url;
      } else {
        // Nothing is asked of the provider until the reader says so.
        var name = PROVIDERS[m.provider] || new URL(m.url).hostname, box = fig.appendChild(h("div", "emb"));
        box.appendChild(h("p", "", T("embed_notice", { provider: name })));
        if (m.embed_url && /^https:\/\//.test(m.embed_url)) {
          var go = box.appendChild(h("button", "ld", T("embed_load", { provider: name })));
          go.type = "button";
          go.addEventListener("click", function () {
            var f = h("iframe");
            f.src = m.embed_url;
            f.title = m.caption || name;
            f.allow = "fullscreen; picture-in-picture";
            if (m.width && m.height) f.style.aspectRatio = m.width + "/" + m.height;
            box.replaceWith(f);
          });
        }
        box.appendChild(link(h("a", "", T("embed_open", { provider: name })), m.url));
      }
      if (m.caption || m.credit) {
        var cap = fig.appendChild(h("figcaption", "", m.caption || ""));
        if (m.credit) cap.appendChild(h("span", "cr", (m.caption ? " " : "") + T("photo_credit", { credit: m.credit })));
      }
    }

    function build(e) {
      var el = h("article", "e" + (e.pinned ? " pin" : "") + (e.key_event ? " key" : ""));
      el.tabIndex = -1;
      el.dataset.id = e.id;
      if (e.retracted) {
        fill(el.appendChild(h("p", "meta")), T("retracted"), { note: e.retracted });
        return el;
      }
      var meta = el.appendChild(h("p", "meta"));
      meta.appendChild(timeEl(e.time));
      var rel = meta.appendChild(h("span", "ago"));
      rel.dataset.t = e.time;
      ago(rel);
      if (e.pinned) meta.appendChild(h("span", "b", T("pinned")));
      if (e.key_event) meta.appendChild(h("span", "b k", T("key_event")));
      // Only a change of what readers read is an edit: pinning, key events and tags are not.
      if (e.edited_at) fill(meta, " · " + T("updated"), { time: timeEl(e.edited_at) });
      if (e.headline) el.appendChild(h("h3", "", e.headline));
      var a = e.author || {};
      el.appendChild(h("p", "by", [a.name, a.role, a.location].filter(Boolean).join(", ")));
      var tpl = document.createElement("template");
      tpl.innerHTML = e.body;
      filter(tpl.content);
      el.appendChild(h("div", "body")).appendChild(tpl.content);
      if (e.media && /^https:\/\//.test(e.media.url)) media(el, e.media);
      if (e.related && e.related.length) {
        var box = el.appendChild(h("aside", "rel"));
        box.appendChild(h("h4", "", T("related")));
        var ul = box.appendChild(h("ul"));
        e.related.forEach(function (r) {
          var card = link(ul.appendChild(h("li")).appendChild(h("a")), r.url);
          if (r.kicker) card.appendChild(h("small", "", r.kicker));
          card.append(r.title);
        });
      }
      (e.corrections || []).forEach(function (c) {
        fill(el.appendChild(h("p", "cx")), T("corrected"), { time: timeEl(c.at), text: c.text });
      });
      if (e.tags && e.tags.length) {
        var tags = el.appendChild(h("ul", "tags"));
        e.tags.forEach(function (t) {
          tags.appendChild(h("li")).appendChild(h("button", "", "#" + t)).addEventListener("click", function () { tagView(t); });
        });
      }
      var share = el.appendChild(h("button", "sh", T("share")));
      share.type = "button";
      share.addEventListener("click", function () {
        var url = permalink(e);
        if (navigator.share) return navigator.share({ title: e.headline || document.title, url: url }).catch(function () {});
        navigator.clipboard.writeText(url).then(function () { announce(null, T("link_copied")); });
      });
      return el;
    }

    // --- rendering ------------------------------------------------------------------------------

    function ordered() {
      var all = Object.keys(shown).map(function (id) { return shown[id]; }).sort(newestFirst);
      if (oldestFirst) return all.reverse().slice(0, win);
      var rest = all.slice(0, win);
      // Only what is shown is kept: memory stays bounded however long the page stays open.
      all.forEach(function (e) { if (!e.pinned && rest.indexOf(e) < 0) delete shown[e.id]; });
      return rest;
    }

    // Puts els[id] for each entry into box, in order, building only what changed.
    function sync(box, entries, cache, fresh) {
      var keep = {}, prev = null;
      entries.forEach(function (e) {
        var el = cache[e.id];
        if (!el || el.__v !== e.version) {
          var next = build(e);
          next.__v = e.version;
          // The copy on top is not the entry's place: ids name only the one in the stream.
          if (cache === pinEls) { next.dataset.pin = e.id; next.removeAttribute("data-id"); }
          if (fresh && fresh[e.id]) next.classList.add("new");
          if (el) el.replaceWith(next);
          el = cache[e.id] = next;
        }
        keep[e.id] = 1;
        var at = prev ? prev.nextSibling : box.firstChild;
        if (at !== el) box.insertBefore(el, at);
        prev = el;
      });
      Object.keys(cache).forEach(function (id) {
        if (!keep[id]) { cache[id].remove(); delete cache[id]; }
      });
    }

    function render(fresh) {
      var stream = ordered(), all = Object.keys(shown).map(function (id) { return shown[id]; }).sort(newestFirst);
      // Pinned entries come on top, and keep their place in the stream as well.
      sync(pins, all.filter(function (e) { return e.pinned && !e.retracted; }), pinEls);
      sync(list, stream, els, fresh);
      var ul = q(".ke ul"), key = all.filter(function (e) { return e.key_event && !e.retracted; });
      ul.textContent = "";
      key.forEach(function (e) {
        var a = link(ul.appendChild(h("li")).appendChild(h("a", "", clock(e.time) + " " + (e.headline || textOf(e.body).slice(0, 80)))), permalink(e));
        a.addEventListener("click", function (ev) {
          var el = els[e.id];
          if (!el) return;
          ev.preventDefault();
          el.scrollIntoView({ behavior: reduced.matches ? "auto" : "smooth", block: "start" });
          el.focus({ preventScroll: true });
        });
      });
      keys.hidden = !key.length;
      lm.hidden = !(oldestFirst ? Object.keys(shown).length > win : older);
      if (!rendered) {
        rendered = true;
        root.replaceChild(frame, root.querySelector("slot"));
      }
      var n = Object.keys(held).length;
      more.hidden = !(n || (awayShown && away.count));
      more.textContent = awayShown && away.count ? count("since_you_left", away.count) : count("new_updates", n);
    }

    function page(params) {
      return fetch(new URL("api/v1/blogs/" + encodeURIComponent(blog) + "/entries?" + params, base)).then(function (r) { return r.json(); });
    }

    // Older entries, by the API's before= paging (newest first); oldest first has them all already.
    lm.addEventListener("click", function () {
      if (oldestFirst) { win += limit; return render(); }
      if (loading) return;
      loading = true;
      var last = ordered().pop();
      page("limit=" + limit + "&before=" + encodeURIComponent(last.id)).then(function (p) {
        p.entries.forEach(function (e) { if (!shown[e.id]) { shown[e.id] = e; win++; } });
        older = !!p.next;
        loading = false;
        render();
      });
    });

    // Reading from the start: every entry, page by page back to the first.
    function fromStart(p) {
      p.entries.forEach(function (e) { if (!shown[e.id]) shown[e.id] = e; });
      return p.next ? page("limit=100&before=" + encodeURIComponent(p.next)).then(fromStart) : null;
    }

    // The widget's own tag view: the API's ?tag=, until the reader goes back to all updates.
    function tagView(t) {
      page("limit=100&tag=" + encodeURIComponent(t)).then(function (p) {
        var box = tv.querySelector("div");
        box.textContent = "";
        tv.querySelector("h3").textContent = T("tagged", { tag: t });
        p.entries.forEach(function (e) { box.appendChild(build(e)); });
        showTags(true);
        tv.querySelector(".all").focus();
      });
    }
    function showTags(on) {
      tv.hidden = !on;
      [list, pins, keys, lm].forEach(function (el) { el.style.display = on ? "none" : ""; });
    }
    q(".all").addEventListener("click", function () { showTags(false); });

    // The blog's own look, under whatever the host page sets: this rule beats .lb's defaults but
    // not the dark theme's (more specific), and --lb-* on the host still comes first.
    var look = root.appendChild(h("style"));
    function brand(b) {
      var d = [];
      if (/^#[0-9a-f]{6}$/i.test(b.accent)) d.push("--ac:var(--lb-accent," + b.accent + ")");
      if (/^[\w ,'-]{1,200}$/.test(b.font)) d.push("font-family:var(--lb-font," + b.font + ")");
      if (typeof b.radius == "number") d.push("--r:var(--lb-radius," + Math.min(Math.max(b.radius | 0, 0), 24) + "px)");
      look.textContent = d.length ? ".lb{" + d.join(";") + "}" : "";
    }
    function setBlog(b) {
      zone = b.timezone || "UTC";
      brand(b.brand || {});
      q("h2").textContent = b.title;
      q(".desc").textContent = b.description || "";
      if (b.status === "ended") {
        stop(T("ended"));
        announce(null, T("ended"));
      } else if (!stopped) status();
    }

    function status(text) {
      st.textContent = "";
      if (text) return (st.textContent = text);
      if (ws && ws.readyState === 1 || es && es.readyState === 1) st.appendChild(h("span", "dot")).after(T("live"));
      else st.textContent = navigator.onLine === false ? T("offline") : T("reconnecting");
    }

    // New entries (or a text), announced politely and in one sentence when several come at once.
    function announce(e, text) {
      if (e) { saidCount++; saidEntry = e; } else saidText = text;
      clearTimeout(sayTimer);
      sayTimer = setTimeout(function () {
        var news = saidCount > 1 ? count("new_updates", saidCount) : saidCount
          ? T("announce_new", { text: saidEntry.headline || textOf(saidEntry.body).slice(0, 140) }) : "";
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

    // Messages are handled in order; a snapshot first waits for its blog's language.
    function receive(text) {
      var m;
      try { m = JSON.parse(text); } catch (err) { return; }
      attempt = 0;
      if (m.cursor) cursor = m.cursor;
      chain = chain.then(function () { return handle(m); });
    }

    function handle(m) {
      if (m.type === "snapshot") {
        return strings(m.blog.language).then(function (doc) {
          setLanguage(doc);
          shown = {};
          held = {};
          win = limit;
          m.pinned.concat(m.entries).forEach(function (e) { shown[e.id] = e; });
          var last = m.entries[m.entries.length - 1];
          older = false;
          // Whether there is more than the snapshot: one entry before its last says.
          return last && page((oldestFirst ? "limit=100" : "limit=1") + "&before=" + encodeURIComponent(last.id))
            .then(function (p) { older = p.entries.length > 0 || m.entries.length > limit; return oldestFirst && fromStart(p); });
        }).then(function () {
          zone = m.blog.timezone || "UTC";
          render();
          setBlog(m.blog);
        });
      }
      if (m.type === "event" && m.event === "blog.updated") setBlog(m.blog);
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
          shown[e.id] = { id: e.id, version: e.version, time: cur.time, retracted: e.retraction_note };
          announce(null, T("retracted", { note: e.retraction_note }));
        }
      } else {
        if (isNew) {
          if (away) away.count++;
          announce(e);
          fresh[e.id] = 1;
        }
        var hold = wasHeld || isNew && scrolledPast && !oldestFirst;
        (hold ? held : shown)[e.id] = e;
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
        source.addEventListener("close", function (ev) { // 4408, or a restart's 1012
          drop();
          var ms = suggested(ev.data);
          retry(ms != null ? ms : Math.random() * 1000);
        });
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
        if (ev.code === 4404) return stop(T("not_found"));
        if (ev.code === 4403) return stop(T("not_allowed"));
        retry(ev.code === 4408 ? Math.random() * 1000 : ev.code === 1012 ? suggested(ev.reason) : null);
      };
    }

    // A restart's 1012 says when to come back ({"retry_ms":N,...}): the server spreads its
    // readers' returns over a window, which our own backoff would bunch up again. Anything else:
    // null, and the backoff decides.
    function suggested(text) {
      var ms;
      try { ms = JSON.parse(text).retry_ms; } catch (e) { return null; }
      return typeof ms === "number" && ms >= 0 ? Math.min(ms, 60000) : null;
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
