-- Shared by every script. KEYS[1..6] are keys.blog_keys(blog):
-- 1 meta, 2 log, 3 entries, 4 timeline, 5 pinned, 6 owners.

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
