// The reporter console (DESIGN §6). One file, no dependencies, no build. It runs under a strict
// Content-Security-Policy: no inline script, no eval, connections only to this service.
// The token is sent once, to POST /api/v1/session; afterwards the HttpOnly cookie authenticates.
// Nothing secret is kept in page storage: localStorage holds only the byline of this device,
// IndexedDB only the outbox of entries not yet sent.
"use strict";
(() => {
  // Every catalogue's "console" section (liveblog/locales/*.json), filled in when served.
  const STRINGS = __LIVEBLOG_CONSOLE_STRINGS__;
  let lang = (navigator.language || "en").slice(0, 2) in STRINGS ? navigator.language.slice(0, 2) : "en";
  const t = (key, values = {}) =>
    (STRINGS[lang][key] || STRINGS.en[key]).replace(/\{(\w+)\}/g, (m, k) => (k in values ? values[k] : m));

  // --- DOM and HTTP --------------------------------------------------------------------------------

  const h = (tag, attrs = {}, ...children) => {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (v === false || v == null) continue;
      if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
      else if (k === "text") el.textContent = v;
      else el.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children.flat()) if (c != null && c !== false) el.append(c);
    return el;
  };
  const $ = (sel, root = document) => root.querySelector(sel);
  const app = $("#app");
  const field = (label, input) => h("label", { class: "field" }, h("span", { text: label }), input);
  const button = (label, onclick, attrs = {}) => h("button", { type: "button", onclick, ...attrs }, label);

  class HttpError extends Error {
    constructor(status, body) {
      super((body && body.error && body.error.message) || `HTTP ${status}`);
      this.status = status;
      this.body = body;
    }
  }
  async function api(method, path, body, headers = {}) {
    const init = { method, headers: { ...headers }, credentials: "same-origin" };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const response = await fetch(path, init);
    const data = response.status === 204 ? null : await response.json().catch(() => null);
    if (!response.ok) throw new HttpError(response.status, data);
    return data;
  }
  function notify(text, error = false) {
    const el = $("#notice");
    el.textContent = text;
    el.classList.toggle("error", error);
  }
  function fail(e) {
    notify(t("error", { message: e.message }), true);
    if (e.status === 401 && me) { // the session ended (signed out elsewhere, token revoked)
      me = null;
      closeChannel();
      $("#who").textContent = "";
      $("#sign-out").hidden = true;
      signInForm();
    }
  }

  // --- state -----------------------------------------------------------------------------------------

  let me = null;
  let blogs = [];
  let blog = null;
  const shown = new Map(); // entry id → entry, every status this console may see
  let channel = null;

  const editor = () => me && (me.admin || me.role === "editor");

  // --- sign in ---------------------------------------------------------------------------------------

  async function start() {
    $("#sign-out").textContent = t("sign_out");
    $("#sign-out").addEventListener("click", signOut);
    addEventListener("online", () => { network(); outbox.flush(); });
    addEventListener("offline", network);
    addEventListener("hashchange", route);
    setInterval(() => outbox.flush(), 5000); // what a server error left queued is tried again
    network();
    try {
      me = await api("GET", "/api/v1/session");
    } catch (e) {
      if (e.status !== 401 && e.status !== undefined) fail(e);
      return signInForm();
    }
    signedIn();
  }
  function network() {
    $("#net").textContent = navigator.onLine ? "" : t("offline");
  }
  function signInForm() {
    const input = h("input", { type: "password", id: "token", autocomplete: "off", required: true });
    const form = h("form", { class: "card signin" }, h("h1", { text: t("sign_in") }), field(t("token"), input),
      h("button", { type: "submit" }, t("sign_in")));
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      try {
        me = await api("POST", "/api/v1/session", { token: input.value });
        input.value = "";
        signedIn();
      } catch (e) {
        fail(e);
      }
    });
    app.replaceChildren(form);
    input.focus();
  }
  function signedIn() {
    $("#who").textContent = t("signed_in_as", { name: me.name, role: me.admin ? "admin" : me.role });
    $("#sign-out").hidden = false;
    notify("");
    outbox.flush();
    route();
  }
  async function signOut() {
    try {
      await api("DELETE", "/api/v1/session");
    } catch (e) {
      return fail(e);
    }
    me = null;
    closeChannel();
    $("#who").textContent = "";
    $("#sign-out").hidden = true;
    location.hash = "";
    signInForm();
  }

  // --- routes: #/ (blogs), #/tokens, #/b/<blog> ------------------------------------------------------

  async function route() {
    if (!me) return;
    closeChannel();
    const [, what, id] = location.hash.split("/");
    try {
      blogs = (await api("GET", "/api/v1/blogs")).blogs;
      if (what === "b" && (blog = blogs.find((b) => b.id === id))) return blogView();
      blog = null;
      lang = (navigator.language || "en").slice(0, 2) in STRINGS ? navigator.language.slice(0, 2) : "en";
      if (what === "tokens" && me.admin) return tokensView();
      blogList();
    } catch (e) {
      if (e.status === 401) { me = null; return signInForm(); }
      fail(e);
    }
  }

  function blogList() {
    const list = blogs.length
      ? h("ul", { class: "blogs" }, blogs.map((b) =>
          h("li", {}, h("a", { href: `#/b/${b.id}` }, b.title), " ", h("small", { text: `${b.id} · ${b.language}` }))))
      : h("p", { text: t("no_blogs") });
    const parts = [h("h1", { text: t("blogs") }), list];
    if (me.admin) parts.push(h("p", {}, h("a", { href: "#/tokens" }, t("tokens"))));
    if (editor()) parts.push(newBlogForm());
    app.replaceChildren(h("section", { class: "card" }, parts));
  }

  function newBlogForm() {
    const zone = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
    const f = {
      title: h("input", { required: true, name: "title" }),
      id: h("input", { required: true, name: "slug", pattern: "[a-z0-9][a-z0-9-]{0,63}" }),
      language: h("input", { name: "language", value: lang, required: true }),
      timezone: h("input", { name: "timezone", value: zone, required: true }),
      origins: h("textarea", { name: "origins", rows: 2 }),
    };
    f.title.addEventListener("input", () => {
      f.id.value = f.title.value.toLowerCase().normalize("NFD").replace(/[\u0300-\u036f]/g, "")
        .replace(/[^a-z0-9]+/g, "-").replace(/^-|-$/g, "").slice(0, 64);
    });
    const form = h("form", { class: "newblog" }, h("h2", { text: t("new_blog") }), field(t("title"), f.title),
      field(t("slug"), f.id), field(t("language"), f.language), field(t("timezone"), f.timezone),
      field(t("origins"), f.origins), h("button", { type: "submit" }, t("create")));
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const origins = f.origins.value.split(/\s+/).filter(Boolean);
      try {
        const made = await api("POST", "/api/v1/blogs", {
          id: f.id.value, title: f.title.value, language: f.language.value, timezone: f.timezone.value, embed_origins: origins,
        });
        location.hash = `#/b/${made.id}`;
      } catch (e) {
        fail(e);
      }
    });
    return form;
  }

  async function tokensView() {
    const { tokens } = await api("GET", "/api/v1/tokens");
    const name = h("input", { name: "name", required: true });
    const role = h("select", { name: "role" }, ["contributor", "reporter", "editor"].map((r) => h("option", { value: r }, r)));
    const scope = h("input", { name: "blogs", value: blogs.map((b) => b.id).join(", ") });
    const secret = h("div", { class: "secret", "aria-live": "polite" });
    const form = h("form", {}, h("h2", { text: t("mint") }), field(t("name"), name), field(t("role"), role),
      field(t("token_blogs"), scope), h("button", { type: "submit" }, t("mint")));
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      try {
        const made = await api("POST", "/api/v1/tokens", {
          name: name.value, role: role.value, blogs: scope.value.split(/[\s,]+/).filter(Boolean),
        });
        const out = h("output", { class: "token-secret", text: made.token });
        const copy = button(t("copy"), async () => {
          await navigator.clipboard.writeText(made.token).catch(() => null);
          copy.textContent = t("copied");
        });
        secret.replaceChildren(h("p", { text: t("secret_once") }), out, " ", copy);
        listing.prepend(row({ ...made, token: undefined }));
      } catch (e) {
        fail(e);
      }
    });
    const row = (tok) => h("li", {}, `${tok.name} · ${tok.role} · ${tok.blogs.join(", ")} `,
      button(t("revoke"), async (ev) => {
        try {
          await api("DELETE", `/api/v1/tokens/${tok.id}`);
          ev.target.closest("li").remove();
        } catch (e) {
          fail(e);
        }
      }, { "aria-label": `${t("revoke")} ${tok.name}` }));
    const listing = h("ul", { class: "tokens" }, tokens.map(row));
    app.replaceChildren(h("section", { class: "card" }, h("p", {}, h("a", { href: "#/" }, t("back"))),
      h("h1", { text: t("tokens") }), form, secret, listing));
  }

  // --- the blog: composer, outbox, queues, timeline --------------------------------------------------

  function blogView() {
    lang = blog.language.slice(0, 2) in STRINGS ? blog.language.slice(0, 2) : "en";
    document.documentElement.lang = lang;
    shown.clear();
    const head = h("div", { class: "blog-head" }, h("a", { href: "#/" }, t("back")), h("h1", { text: blog.title }),
      h("a", { href: `/blogs/${blog.id}`, target: "_blank", rel: "noopener" }, t("live_page")));
    const lists = [
      h("section", { class: "card", id: "outbox", "aria-labelledby": "outbox-h" }, h("h2", { id: "outbox-h", text: t("outbox") }), h("ul")),
    ];
    if (editor()) {
      lists.push(h("section", { class: "card", id: "review", "aria-labelledby": "review-h" }, h("h2", { id: "review-h", text: t("review") }), h("ol")));
      lists.push(h("section", { class: "card", id: "scheduled", "aria-labelledby": "sched-h" }, h("h2", { id: "sched-h", text: t("scheduled") }), h("ol")));
    }
    const timeline = h("section", { class: "card", id: "timeline", "aria-labelledby": "tl-h", "aria-busy": "true" }, h("h2", { id: "tl-h", text: t("timeline") }), h("ol", { class: "entries" }));
    app.replaceChildren(head, h("div", { class: "columns" }, h("div", {}, composer.build(), ...lists), timeline));
    $("#sign-out").textContent = t("sign_out");
    outbox.render();
    openChannel();
  }

  // The staff channel first (it says where the trail is now), then the listings: anything that
  // changes between the two arrives on the channel, and the higher version wins.
  function openChannel(cursor) {
    const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/api/v1/blogs/${blog.id}/staff/live` +
      (cursor ? `?cursor=${encodeURIComponent(cursor)}` : "");
    const ws = new WebSocket(url);
    const mine = { ws, cursor, tries: 0, blog: blog.id };
    channel = mine;
    ws.onmessage = async (ev) => {
      const message = JSON.parse(ev.data);
      mine.cursor = message.cursor;
      if (message.type === "ready") {
        notify("");
        if (!cursor) await loadAll();
      } else if (message.type === "audit") {
        if (message.entry) upsert(message.entry);
        else if (shown.delete(message.record.entry)) renderLists();
      }
    };
    ws.onclose = () => {
      if (channel !== mine) return;
      notify(t("live_channel_down"));
      const wait = Math.min(30000, 500 * 2 ** mine.tries++) * (0.5 + Math.random() / 2);
      setTimeout(() => { if (channel === mine) openChannel(mine.cursor); }, wait);
    };
  }
  function closeChannel() {
    const old = channel;
    channel = null;
    if (old) old.ws.close();
  }
  async function loadAll() {
    const id = blog.id;
    const pages = [api("GET", `/api/v1/blogs/${id}/entries?limit=100`)];
    for (const status of ["draft", "submitted", "scheduled", "retracted"])
      pages.push(api("GET", `/api/v1/blogs/${id}/entries?status=${status}`));
    try {
      for (const page of await Promise.all(pages)) for (const e of page.entries) upsert(e, false);
    } catch (e) {
      fail(e);
    }
    renderLists();
    $("#timeline")?.setAttribute("aria-busy", "false"); // the listings are in: screen readers may read it now
  }
  function upsert(entry, render = true) {
    const have = shown.get(entry.id);
    if (!have || have.version <= entry.version) shown.set(entry.id, entry);
    if (render) renderLists();
  }

  const byTime = (a, b) => (a.time < b.time ? 1 : -1);
  function renderLists() {
    if (!blog) return;
    const all = [...shown.values()];
    $("#timeline ol").replaceChildren(...all.sort(byTime).map(entryCard));
    if (editor()) {
      const queue = all.filter((e) => e.status === "submitted");
      $("#review ol").replaceChildren(...(queue.length ? queue.map(reviewCard) : [h("li", { class: "empty", text: t("nothing") })]));
      const later = all.filter((e) => e.status === "scheduled").sort((a, b) => (a.publish_at > b.publish_at ? 1 : -1));
      $("#scheduled ol").replaceChildren(...(later.length ? later.map(scheduledCard) : [h("li", { class: "empty", text: t("nothing") })]));
    }
  }

  const clock = (iso) => new Date(iso).toLocaleString(lang, { timeZone: blog.timezone, dateStyle: "short", timeStyle: "short" });
  const label = (e) => e.headline || e.body.replace(/<[^>]*>/g, " ").replace(/\s+/g, " ").trim().slice(0, 60);
  // Entry bodies come from the server, sanitised on write to the allow-list: safe to show as HTML.
  const bodyOf = (html) => { const div = h("div", { class: "body" }); div.innerHTML = html; return div; };

  function entryCard(e) {
    const mineOnly = !editor() && e.author.name !== me.name;
    const named = (key) => ({ "aria-label": `${t(key)}: ${label(e)}` });
    const actions = [];
    const editable = !mineOnly && e.status !== "retracted" && !(me.role === "contributor" && e.status === "published");
    if (editable) actions.push(button(t("edit"), () => composer.edit(e), named("edit")));
    if (e.status === "published") {
      if (!mineOnly) actions.push(button(t("correct"), () => correct(e), named("correct")));
      if (!mineOnly) actions.push(button(t(e.pinned ? "unpin" : "pin"), () => change(e, { pinned: !e.pinned }), named(e.pinned ? "unpin" : "pin")));
      if (!mineOnly) actions.push(button(t(e.key_event ? "unmark_key" : "mark_key"), () => change(e, { key_event: !e.key_event }), named(e.key_event ? "unmark_key" : "mark_key")));
      if (!mineOnly) actions.push(button(t("retract"), () => retract(e), named("retract")));
    }
    if (e.status === "retracted" && editor()) actions.push(button(t("restore"), () => change(e, { status: "published" }), named("restore")));
    if (editor()) actions.push(button(t("purge"), () => purge(e), { ...named("purge"), class: "danger" }));
    return h("li", { class: `entry s-${e.status}`, "data-id": e.id, "data-status": e.status },
      h("div", { class: "meta" }, h("span", { class: "status", text: t(`status_${e.status}`) }), " ",
        h("time", { datetime: e.time, text: clock(e.time) }), " ", h("span", { text: t("by", { name: e.author.name }) }),
        e.pinned ? h("span", { class: "flag", text: t("pinned") }) : null,
        e.key_event ? h("span", { class: "flag", text: t("key_event") }) : null),
      e.headline ? h("h3", { text: e.headline }) : null,
      bodyOf(e.body),
      e.review_note && e.status === "draft" ? h("p", { class: "note", text: t("review_note", { note: e.review_note }) }) : null,
      h("div", { class: "actions" }, actions));
  }
  function reviewCard(e) {
    const named = (key) => ({ "aria-label": `${t(key)}: ${label(e)}` });
    return h("li", { "data-id": e.id }, h("strong", { text: label(e) }), " ", h("small", { text: t("by", { name: e.author.name }) }),
      h("div", { class: "actions" },
        button(t("approve"), () => change(e, { status: "published" }), named("approve")),
        button(t("edit"), () => composer.edit(e, "published"), named("edit")),
        button(t("return"), () => {
          const note = prompt(t("return_prompt"));
          if (note) change(e, { status: "draft", review_note: note });
        }, named("return"))));
  }
  function scheduledCard(e) {
    const named = (key) => ({ "aria-label": `${t(key)}: ${label(e)}` });
    return h("li", { "data-id": e.id }, h("time", { datetime: e.publish_at, text: clock(e.publish_at) }), " ", h("strong", { text: label(e) }),
      h("div", { class: "actions" },
        button(t("reschedule"), () => {
          const when = prompt(t("reschedule_prompt"), localInput(new Date(e.publish_at)).replace("T", " "));
          if (when) change(e, { publish_at: new Date(when.replace(" ", "T")).toISOString() });
        }, named("reschedule")),
        button(t("publish_now"), () => change(e, { status: "published" }), named("publish_now")),
        button(t("unschedule"), () => change(e, { status: "draft" }), named("unschedule"))));
  }
  const localInput = (d) => new Date(d.getTime() - d.getTimezoneOffset() * 60000).toISOString().slice(0, 16);

  async function change(e, fields) {
    try {
      upsert(await api("PATCH", `/api/v1/blogs/${blog.id}/entries/${e.id}`, fields, { "If-Match": `"${e.version}"` }));
      notify(t("saved"));
    } catch (err) {
      fail(err);
    }
  }
  function correct(e) {
    const note = prompt(t("correction_prompt"));
    if (note) change(e, { correction: note });
  }
  async function retract(e) {
    const note = prompt(t("retract_prompt"), "");
    if (note === null) return;
    try {
      await api("DELETE", `/api/v1/blogs/${blog.id}/entries/${e.id}`, note ? { retraction_note: note } : undefined, { "If-Match": `"${e.version}"` });
      notify(t("saved"));
    } catch (err) {
      fail(err);
    }
  }
  async function purge(e) {
    if (!confirm(t("purge_confirm", { what: label(e) }))) return;
    try {
      await api("DELETE", `/api/v1/blogs/${blog.id}/entries/${e.id}?purge=true`);
      shown.delete(e.id);
      renderLists();
    } catch (err) {
      fail(err);
    }
  }

  // --- the body editor: contenteditable reduced to the contract's allow-list ------------------------

  const ALLOWED = new Set(["P", "BR", "STRONG", "EM", "MARK", "A", "BLOCKQUOTE", "FOOTER", "UL", "OL", "LI", "H3"]);
  const RENAME = { B: "STRONG", I: "EM", DIV: "P", H1: "H3", H2: "H3", H4: "H3", H5: "H3", H6: "H3" };
  const DROP = new Set(["SCRIPT", "STYLE", "IMG", "IFRAME", "VIDEO", "AUDIO", "OBJECT", "EMBED", "SVG", "PICTURE", "META", "LINK", "TITLE", "HEAD"]);
  // Rebuilds `source`'s children into `target` keeping only the allow-list; returns whether
  // anything readers would have seen differently (a tag, an attribute, media) was dropped.
  function cleanInto(source, target) {
    let dropped = false;
    for (const node of [...source.childNodes]) {
      if (node.nodeType === Node.TEXT_NODE) { target.append(node.textContent); continue; }
      if (node.nodeType !== Node.ELEMENT_NODE) continue;
      let tag = node.tagName;
      if (DROP.has(tag)) { dropped = true; continue; }
      // The style attribute's text: under this page's CSP, inline styles are never parsed.
      const style = node.getAttribute("style") || "";
      if (tag === "SPAN" && /font-weight:\s*(bold|[6-9]00)/.test(style)) tag = "STRONG";
      else if (tag === "SPAN" && /font-style:\s*italic/.test(style)) tag = "EM";
      tag = RENAME[tag] || tag;
      if (!ALLOWED.has(tag)) {
        if (!["SPAN", "FONT", "U", "SECTION", "ARTICLE", "TABLE", "TBODY", "TR", "TD", "TH"].includes(tag)) dropped = true;
        dropped = dropped || node.tagName === "U";
        dropped = cleanInto(node, target) || dropped;
        continue;
      }
      const out = document.createElement(tag);
      if (tag === "A") {
        const href = node.getAttribute("href") || "";
        if (/^(https?:|mailto:)/i.test(href)) out.setAttribute("href", href);
        else { dropped = true; dropped = cleanInto(node, target) || dropped; continue; }
      }
      dropped = cleanInto(node, out) || dropped;
      target.append(out);
    }
    return dropped;
  }
  const BLOCKS = new Set(["P", "BLOCKQUOTE", "UL", "OL", "H3"]);
  // The allow-list, with loose inline runs at the top level gathered into paragraphs.
  function cleanHtml(html) {
    const doc = new DOMParser().parseFromString(html, "text/html");
    const loose = document.createElement("div");
    const dropped = cleanInto(doc.body, loose);
    const out = document.createElement("div");
    let para = null;
    for (const node of [...loose.childNodes]) {
      if (node.nodeType === Node.ELEMENT_NODE && BLOCKS.has(node.tagName)) {
        para = null;
        if (node.textContent.trim()) out.append(node);
      } else if (node.nodeName === "BR" && para) {
        para = null;
      } else if (node.nodeName !== "BR" && (node.textContent.trim() || para)) {
        if (!para) out.append((para = document.createElement("p")));
        para.append(node);
      }
    }
    return { html: out.innerHTML, dropped };
  }

  // --- the composer ----------------------------------------------------------------------------------

  const BYLINE = "liveblog-console-byline";
  const composer = {
    build() {
      const saved = JSON.parse(localStorage.getItem(BYLINE) || "{}");
      const tagNames = new Set([...shown.values()].flatMap((e) => e.tags));
      const f = (this.f = {
        headline: h("input", { name: "headline", maxlength: 300 }),
        body: h("div", { class: "rte", contenteditable: "true", role: "textbox", "aria-multiline": "true", "aria-label": t("body"), id: "body" }),
        role: h("input", { name: "role", value: saved.role || "" }),
        location: h("input", { name: "location", value: saved.location || "" }),
        tags: h("input", { name: "tags", list: "tag-names", autocomplete: "off" }),
        pinned: h("input", { type: "checkbox", name: "pinned" }),
        key_event: h("input", { type: "checkbox", name: "key_event" }),
        media_type: h("select", { name: "media_type" }, ["image", "video", "embed"].map((v) => h("option", { value: v }, t(v)))),
        media_url: h("input", { name: "media_url", type: "url" }),
        caption: h("input", { name: "caption" }), alt: h("input", { name: "alt" }), credit: h("input", { name: "credit" }),
        related: h("textarea", { name: "related", rows: 3 }),
        publish_at: h("input", { name: "publish_at", type: "datetime-local" }),
      });
      this.tagList = h("datalist", { id: "tag-names" }, [...tagNames].map((n) => h("option", { value: n })));
      // Completes the tag being typed, after those already there: each suggestion is the whole
      // field's value, as a datalist offers whole values.
      const suggest = () => {
        const names = new Set([...shown.values()].flatMap((e) => e.tags));
        const parts = f.tags.value.split(",");
        const typed = parts.pop().trim().toLowerCase();
        const done = parts.map((s) => s.trim()).filter(Boolean);
        const before = done.length ? done.join(", ") + ", " : "";
        const fits = [...names].filter((n) => !done.includes(n) && n.toLowerCase().startsWith(typed));
        this.tagList.replaceChildren(...fits.map((n) => h("option", { value: before + n })));
      };
      f.tags.addEventListener("focus", suggest);
      f.tags.addEventListener("input", suggest);
      f.body.addEventListener("paste", (ev) => {
        ev.preventDefault();
        const data = ev.clipboardData;
        const html = data.getData("text/html");
        const cleaned = html ? cleanHtml(html) : { html: escapeText(data.getData("text/plain")), dropped: false };
        // Inserted as nodes, not with insertHTML, which restyles what it inserts.
        const sel = getSelection();
        if (!sel.rangeCount) return;
        const range = sel.getRangeAt(0);
        const piece = document.createElement("template");
        piece.innerHTML = cleaned.html;
        const last = piece.content.lastChild;
        range.deleteContents();
        range.insertNode(piece.content);
        if (last) { range.setStartAfter(last); range.collapse(true); sel.removeAllRanges(); sel.addRange(range); }
        if (cleaned.dropped) notify(t("dropped"));
      });
      const keys = (ev) => {
        if ((ev.ctrlKey || ev.metaKey) && ev.key === "Enter") { ev.preventDefault(); this.send(me.role === "contributor" ? "submitted" : "published"); }
      };
      // mousedown would take the selection away from the text: the buttons act on it as it is.
      const tool = (key, run) => button(t(key), () => { f.body.focus(); run(); },
        { "aria-label": t(key), class: "tool", onmousedown: (ev) => ev.preventDefault() });
      const toolbar = h("div", { class: "toolbar", role: "toolbar", "aria-label": t("body") },
        tool("bold", () => document.execCommand("bold")),
        tool("italic", () => document.execCommand("italic")),
        tool("highlight", () => wrap("mark")),
        tool("link", () => { const url = prompt(t("link_url"), "https://"); if (url && /^(https?:|mailto:)/.test(url)) document.execCommand("createLink", false, url); }),
        tool("quote", () => quote()),
        tool("list", () => document.execCommand("insertUnorderedList")),
        tool("subheading", () => document.execCommand("formatBlock", false, "h3")));
      const contributor = me.role === "contributor";
      this.primary = button(t(contributor ? "submit" : "publish"), () => this.send(contributor ? "submitted" : "published"), { class: "primary", id: "publish" });
      const actions = [this.primary, button(t("save_draft"), () => this.send("draft"))];
      if (editor()) actions.push(field(t("publish_at"), f.publish_at), button(t("schedule"), () => this.send("scheduled")));
      actions.push(button(t("preview"), () => this.preview()));
      this.cancelButton = button(t("cancel"), () => this.reset(), { hidden: true });
      actions.push(this.cancelButton);
      this.title = h("h2", { text: contributor ? t("submit") : t("publish") });
      this.previewBox = h("div", { class: "preview", "aria-live": "polite" });
      this.conflictBox = h("div", { class: "conflict" });
      const form = h("form", { class: "card composer", id: "composer", onkeydown: keys },
        this.title, this.conflictBox, field(t("headline"), f.headline), h("div", { class: "field" }, h("span", { text: t("body"), id: "body-label" }), toolbar, f.body),
        h("div", { class: "row" }, field(t("byline_role"), f.role), field(t("byline_location"), f.location)),
        field(t("tags"), f.tags), this.tagList,
        h("div", { class: "row" }, h("label", {}, f.pinned, " ", t("pinned")), h("label", {}, f.key_event, " ", t("key_event"))),
        h("details", { id: "media" }, h("summary", { text: t("media_url") }), field(t("media_type"), f.media_type), field(t("media_url"), f.media_url),
          field(t("caption"), f.caption), field(t("alt"), f.alt), field(t("credit"), f.credit)),
        h("details", { id: "related" }, h("summary", { text: t("related_url") }), field(t("related_title"), f.related)),
        h("div", { class: "actions" }, actions), this.previewBox);
      form.addEventListener("submit", (ev) => ev.preventDefault());
      this.form = form;
      this.editing = null;
      return form;
    },
    payload(status) {
      const f = this.f;
      const body = { body: cleanHtml(f.body.innerHTML).html, tags: f.tags.value.split(",").map((s) => s.trim()).filter(Boolean), pinned: f.pinned.checked, key_event: f.key_event.checked };
      body.headline = f.headline.value.trim() || null;
      const author = {};
      if (f.role.value.trim()) author.role = f.role.value.trim();
      if (f.location.value.trim()) author.location = f.location.value.trim();
      localStorage.setItem(BYLINE, JSON.stringify(author));
      body.author = author;
      body.media = f.media_url.value.trim() ? Object.fromEntries(Object.entries({
        type: f.media_type.value, url: f.media_url.value.trim(), caption: f.caption.value.trim(), alt: f.alt.value.trim(), credit: f.credit.value.trim(),
      }).filter(([, v]) => v)) : null;
      // One story a line: its https URL, then its title.
      body.related = f.related.value.split("\n").map((line) => line.trim().match(/^(\S+)\s*(.*)$/)).filter(Boolean)
        .slice(0, 5).map(([, url, title]) => ({ url, title: title || url }));
      if (status) body.status = status;
      if (status === "scheduled") body.publish_at = new Date(f.publish_at.value).toISOString();
      return body;
    },
    fill(e) {
      const f = this.f;
      f.headline.value = e.headline || "";
      f.body.innerHTML = e.body; // the server's sanitised HTML
      f.tags.value = e.tags.join(", ");
      f.pinned.checked = e.pinned;
      f.key_event.checked = e.key_event;
      f.role.value = e.author.role || "";
      f.location.value = e.author.location || "";
      f.media_type.value = e.media ? e.media.type : "image";
      f.media_url.value = e.media ? e.media.url : "";
      for (const k of ["caption", "alt", "credit"]) f[k].value = (e.media && e.media[k]) || "";
      f.related.value = e.related.map((r) => `${r.url} ${r.title}`).join("\n");
      $("#media", this.form).open = !!e.media;
      $("#related", this.form).open = e.related.length > 0;
    },
    edit(e, then) {
      this.reset();
      this.editing = { id: e.id, version: e.version, status: e.status, then };
      this.fill(e);
      this.title.textContent = t("editing", { id: e.id });
      this.primary.textContent = t(then === "published" ? "approve" : "save");
      this.cancelButton.hidden = false;
      this.f.headline.focus();
    },
    reset() {
      this.form.replaceWith(this.build());
    },
    async send(status) {
      if (this.editing) return this.save(status);
      const payload = this.payload(status);
      await outbox.add(blog.id, payload);
      this.f.headline.value = "";
      this.f.body.replaceChildren();
      this.previewBox.replaceChildren();
      this.f.headline.focus();
    },
    async save(status, version = this.editing.version) {
      const fields = this.payload();
      delete fields.status;
      if (this.editing.then) fields.status = this.editing.then;
      else if (status === "submitted" && this.editing.status === "draft") fields.status = "submitted";
      const id = this.editing.id;
      try {
        upsert(await api("PATCH", `/api/v1/blogs/${blog.id}/entries/${id}`, fields, { "If-Match": `"${version}"` }));
        notify(t("saved"));
        this.reset();
      } catch (e) {
        if (e.status !== 412) return fail(e);
        const theirs = await api("GET", `/api/v1/blogs/${blog.id}/entries/${id}`).catch(() => shown.get(id));
        this.conflict(fields, theirs);
      }
    },
    // A 412: both versions side by side; nothing typed is lost whichever is chosen.
    conflict(mine, theirs) {
      const side = (key, e) => h("div", { class: `side ${key}` }, h("h3", { text: t(key) }), e.headline ? h("strong", { text: e.headline }) : null, bodyOf(e.body));
      const mineShown = { ...mine, body: cleanHtml(mine.body).html };
      this.conflictBox.replaceChildren(h("div", { role: "alert", class: "conflict-panel" }, h("p", { text: t("conflict") }),
        h("div", { class: "sides" }, side("mine", mineShown), side("theirs", theirs)),
        h("div", { class: "actions" },
          button(t("keep_mine"), () => { this.conflictBox.replaceChildren(); this.save(undefined, theirs.version); }),
          button(t("take_theirs"), () => { upsert(theirs); this.reset(); }),
          button(t("merge"), () => {
            this.editing.version = theirs.version;
            this.conflictBox.replaceChildren(h("p", { text: t("merging") }), side("theirs", theirs));
            this.f.body.focus();
          }))));
    },
    async preview() {
      const payload = this.payload();
      try {
        const { body } = await api("POST", "/console/preview", { body: payload.body });
        const m = payload.media;
        const byline = [me.name, payload.author.role, payload.author.location].filter(Boolean).join(", ");
        this.previewBox.replaceChildren(h("article", { class: "entry" }, payload.headline ? h("h3", { text: payload.headline }) : null,
          h("p", { class: "meta", text: byline }), bodyOf(body),
          m ? h("figure", {}, m.type === "image" ? h("img", { src: m.url, alt: m.alt || "" }) : h("a", { href: m.url, rel: "noopener" }, m.url),
            m.caption || m.credit ? h("figcaption", { text: [m.caption, m.credit].filter(Boolean).join(" · ") }) : null) : null,
          payload.tags.length ? h("p", { class: "meta", text: payload.tags.map((tag) => `#${tag}`).join(" ") }) : null));
      } catch (e) {
        fail(e);
      }
    },
  };
  const escapeText = (text) => text.split(/\n{2,}/).map((p) => `<p>${p.replace(/[&<>]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;" })[c]).replace(/\n/g, "<br>")}</p>`).join("");
  function wrap(tag) {
    const sel = getSelection();
    if (!sel.rangeCount || sel.isCollapsed) return;
    const range = sel.getRangeAt(0);
    const el = document.createElement(tag);
    el.append(range.extractContents());
    range.insertNode(el);
  }
  function quote() {
    const who = prompt(t("attribution"), "");
    const sel = getSelection();
    const text = sel.rangeCount ? sel.toString() : "";
    const q = document.createElement("blockquote");
    q.append(h("p", { text: text || "…" }));
    if (who) q.append(h("footer", { text: who }));
    if (sel.rangeCount) { const r = sel.getRangeAt(0); r.deleteContents(); r.insertNode(q); }
  }

  // --- the outbox: IndexedDB, each entry with its Idempotency-Key from the moment it is written ------

  const outbox = {
    db: null,
    flushing: false,
    open() {
      if (this.db) return this.db;
      this.db = new Promise((resolve, reject) => {
        const req = indexedDB.open("liveblog-console", 1);
        req.onupgradeneeded = () => req.result.createObjectStore("outbox", { keyPath: "key" });
        req.onsuccess = () => resolve(req.result);
        req.onerror = () => reject(req.error);
      });
      return this.db;
    },
    async tx(mode, run) {
      const db = await this.open();
      return new Promise((resolve, reject) => {
        const tx = db.transaction("outbox", mode);
        const result = run(tx.objectStore("outbox"));
        tx.oncomplete = () => resolve(result.result);
        tx.onerror = () => reject(tx.error);
      });
    },
    all() { return this.tx("readonly", (s) => s.getAll()).then((items) => items.sort((a, b) => a.written - b.written)); },
    put(item) { return this.tx("readwrite", (s) => s.put(item)); },
    remove(key) { return this.tx("readwrite", (s) => s.delete(key)); },
    async add(blogId, payload) {
      await this.put({ key: crypto.randomUUID(), blog: blogId, payload, state: "queued", reason: null, written: Date.now() });
      await this.render();
      this.flush();
    },
    // One at a time, oldest first. A network failure leaves the item queued; a refusal marks it
    // failed with the server's reason. A retry reuses the key, so the server writes it once.
    async flush() {
      if (this.flushing || !me) return;
      this.flushing = true;
      try {
        for (const item of await this.all()) {
          if (!navigator.onLine) break;
          if (item.state !== "queued" && item.state !== "sending") continue;
          item.state = "sending";
          await this.put(item);
          await this.render();
          try {
            const entry = await api("POST", `/api/v1/blogs/${item.blog}/entries`, item.payload, { "Idempotency-Key": item.key });
            item.state = "published";
            item.entry = entry.id;
            item.status = entry.status;
            if (blog && blog.id === item.blog) upsert(entry);
          } catch (e) {
            if (e instanceof HttpError && e.status !== 401 && e.status !== 429 && e.status < 500) {
              item.state = "failed";
              item.reason = e.message;
            } else { // offline, signed out, or the server's trouble: it waits, with its key
              item.state = "queued";
              await this.put(item);
              if (e.status === 401) fail(e);
              break;
            }
          }
          await this.put(item);
          await this.render();
        }
      } finally {
        this.flushing = false;
        await this.render();
      }
    },
    async render() {
      const list = $("#outbox ul");
      if (!list || !blog) return;
      const items = (await this.all()).filter((i) => i.blog === blog.id);
      list.replaceChildren(...items.map((item) => {
        const what = item.payload.headline || item.payload.body.replace(/<[^>]*>/g, " ").trim().slice(0, 60);
        const parts = [h("span", { class: `state ${item.state}`, text: t(item.state === "published" ? "published" : item.state) }), " ", what];
        if (item.state === "failed") {
          parts.push(h("div", { class: "reason", text: item.reason }),
            button(t("resend"), async () => {
              composer.reset();
              composer.fill({ ...item.payload, author: item.payload.author || {}, tags: item.payload.tags || [], related: item.payload.related || [], media: item.payload.media });
              composer.f.body.focus();
              await this.remove(item.key);
              this.render();
            }, { "aria-label": `${t("resend")}: ${what}` }));
        }
        if (item.state === "published" || item.state === "failed")
          parts.push(button(t("discard"), async () => { await this.remove(item.key); this.render(); }, { "aria-label": `${t("discard")}: ${what}` }));
        return h("li", { "data-key": item.key, "data-state": item.state }, parts);
      }));
    },
  };

  document.execCommand("defaultParagraphSeparator", false, "p");
  start();
})();
