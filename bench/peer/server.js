// The peer for bench/compare.py: Socket.IO 4 with @socket.io/redis-streams-adapter, in one Node
// process, shaped like liveblog's hot path so that the same load generator measures both.
//
//   node server.js --redis-socket /path/redis.sock [--redis-url redis://...] [--port 0]
//
// - A reader connects to /socket.io/?EIO=4&transport=websocket&blog=<id> and is put in the room
//   <id> before the namespace CONNECT packet is answered (so nothing posted after that is missed).
// - POST /api/v1/blogs/{b}/entries with liveblog's JSON body ({"body","headline"?, ...}) builds an
//   entry like liveblog's, answers 201 with it, and emits it to the room:
//   io.to(b).emit("entry", {"type":"event","event":"entry.created","entry":{...}}).
//   The adapter appends every broadcast to a Redis stream (XADD) for other servers, as liveblog
//   appends each entry to its blog's stream.
// - It prints "peer is serving on http://127.0.0.1:<port>" once listening; everything binds to
//   127.0.0.1 only. SIGTERM closes it.
"use strict";

const http = require("node:http");
const { Server } = require("socket.io");
const { createClient } = require("redis");
const { createAdapter } = require("@socket.io/redis-streams-adapter");

function option(name, fallback) {
  const at = process.argv.indexOf(name);
  return at >= 0 && at + 1 < process.argv.length ? process.argv[at + 1] : fallback;
}

const HOST = "127.0.0.1";
const PORT = Number(option("--port", "0"));
const REDIS_SOCKET = option("--redis-socket", "");
const REDIS_URL = option("--redis-url", "redis://127.0.0.1:6379");
const MAX_BODY = 256 * 1024;
const ENTRY_PATH = /^\/api\/v1\/blogs\/([a-z0-9][a-z0-9-]{0,63})\/entries$/;

let io; // set once Redis is connected
let nextId = 0;

function answer(res, status, payload) {
  const text = JSON.stringify(payload);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
  res.end(text);
}

function post(res, blog, raw) {
  let input;
  try {
    input = JSON.parse(raw);
  } catch {
    return answer(res, 400, { error: { code: "malformed", message: "body is not JSON" } });
  }
  if (typeof input !== "object" || input === null || typeof input.body !== "string") {
    return answer(res, 422, { error: { code: "invalid", message: "body is required", field: "$.body" } });
  }
  const now = new Date().toISOString();
  const entry = {
    id: `${Date.now().toString(36)}-${(nextId++).toString(36)}`,
    blog,
    version: 1,
    time: input.time || now,
    created_at: now,
    updated_at: now,
    author: input.author || { name: "bench" },
    headline: input.headline ?? null,
    body: input.body,
    media: input.media ?? null,
    tags: input.tags || [],
    pinned: Boolean(input.pinned),
    key_event: Boolean(input.key_event),
  };
  io.to(blog).emit("entry", { type: "event", event: "entry.created", entry });
  answer(res, 201, entry);
}

function handle(req, res) {
  const url = req.url.split("?", 1)[0];
  if (url === "/healthz") return answer(res, 200, { status: "ok" });
  const match = ENTRY_PATH.exec(url);
  if (!match) return answer(res, 404, { error: { code: "not_found", message: "no such route" } });
  if (req.method !== "POST") return answer(res, 405, { error: { code: "method", message: "POST only" } });
  const chunks = [];
  let size = 0;
  req.on("data", (chunk) => {
    size += chunk.length;
    if (size > MAX_BODY) {
      answer(res, 413, { error: { code: "too_large", message: "body too large" } });
      req.destroy();
      return;
    }
    chunks.push(chunk);
  });
  req.on("end", () => {
    if (size <= MAX_BODY) post(res, match[1], Buffer.concat(chunks).toString("utf8"));
  });
}

async function main() {
  const redis = createClient(REDIS_SOCKET ? { socket: { path: REDIS_SOCKET } } : { url: REDIS_URL });
  redis.on("error", (err) => console.error("redis error:", err.message));
  await redis.connect();

  const httpServer = http.createServer(handle);
  httpServer.keepAliveTimeout = 60_000;
  io = new Server(httpServer, {
    adapter: createAdapter(redis),
    serveClient: false,
    perMessageDeflate: false,
    httpCompression: false,
    transports: ["websocket"],
  });
  io.use((socket, next) => {
    const blog = socket.handshake.query.blog;
    if (typeof blog !== "string" || !/^[a-z0-9][a-z0-9-]{0,63}$/.test(blog)) {
      return next(new Error("query parameter blog is required"));
    }
    socket.join(blog);
    next();
  });

  httpServer.listen(PORT, HOST, () => {
    console.log(`peer is serving on http://${HOST}:${httpServer.address().port}`);
  });
  const stop = () => {
    io.close();
    redis.quit().catch(() => {}).finally(() => process.exit(0));
    setTimeout(() => process.exit(0), 3000).unref();
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
