-- Shared by every blog script. KEYS[1..10] are keys.blog_keys(blog):
-- 1 meta, 2 log, 3 entries (public), 4 timeline, 5 pinned, 6 owners, 7 work (staff-only entries),
-- 8 trail (entry -> its log event ids), 9 audit, 10 idem-of (entry -> idempotency key).

-- Append one event to the blog's log and keep the log at most `maxlen` long. What is trimmed is
-- only the change log: entries stay in their hash. `trimmed` records the newest id dropped, so a
-- cursor older than that is known to be unresumable.
local function append_event(event_json, maxlen)
  -- The epoch rides along so that a tailer notices at once when it reads a recreated log.
  local id = redis.call('XADD', KEYS[2], '*', 'e', event_json, 'epoch', redis.call('HGET', KEYS[1], 'epoch'))
  local excess = redis.call('XLEN', KEYS[2]) - maxlen
  if excess > 0 then
    local dropped = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', excess)
    redis.call('XTRIM', KEYS[2], 'MAXLEN', maxlen)
    redis.call('HSET', KEYS[1], 'trimmed', dropped[#dropped][1])
  end
  return id
end

local function last_log_id()
  local last = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
  if #last == 0 then return '0-0' end
  return last[1][1]
end

local function set_pinned(id, pinned, score)
  if pinned == '1' then
    redis.call('ZADD', KEYS[5], score, id)
  else
    redis.call('ZREM', KEYS[5], id)
  end
end

-- Append a record to the blog's audit trail, kept at about `maxlen` records.
local function append_audit(record_json, maxlen)
  redis.call('XADD', KEYS[9], 'MAXLEN', '~', maxlen, '*', 'r', record_json)
end

-- The entry's stored JSON and where it is: 'public' (KEYS[3]) or 'work' (KEYS[7]); nil if none.
local function find_entry(id)
  local current = redis.call('HGET', KEYS[3], id)
  if current then return current, 'public' end
  current = redis.call('HGET', KEYS[7], id)
  if current then return current, 'work' end
  return nil, nil
end

-- Append webhook events ARGV[first..last] to the blog's outbox stream (for the deliverers'
-- consumer group), but only if the blog has webhooks: a blog without any keeps no outbox.
-- Returns the new events' ids, space-separated ('' for none).
local function append_alerts(outbox_key, webhooks_key, maxlen, first, last)
  if first > last or redis.call('HLEN', webhooks_key) == 0 then return '' end
  local ids = {}
  for i = first, last do
    ids[#ids + 1] = redis.call('XADD', outbox_key, 'MAXLEN', '~', maxlen, '*', 'e', ARGV[i])
  end
  return table.concat(ids, ' ')
end

-- Note in hash `alerts_key` that entry `id`'s outbox events include `ids` (space-separated).
local function note_alerts(alerts_key, id, ids)
  if ids == '' then return end
  local known = redis.call('HGET', alerts_key, id)
  redis.call('HSET', alerts_key, id, known and (known .. ' ' .. ids) or ids)
end
