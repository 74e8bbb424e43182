-- One change to an entry (storage.Change). KEYS[11] the entry's versions list, KEYS[12..11+n]
-- tag index keys (the first m for the tags it has now, the rest for those it lost), then the
-- blog's webhook outbox, webhooks and alerts (entry -> outbox ids), then its idempotency key
-- (new entries, optional).
-- ARGV: 1 entry id, 2 expected version ('0': new), 3 entry JSON, 4 'public' | 'work',
-- 5 score, 6 pinned ('1'/'0'), 7 event JSON or '', 8 version row JSON or '', 9 audit JSON,
-- 10 log maxlen, 11 audit maxlen, 12 owner token id, 13 idempotency TTL (s),
-- 14 request fingerprint, 15 versions kept, 16 '1' if this is a new publication, 17 n, 18 m,
-- 19 outbox maxlen, 20.. webhook events.
local tag_keys, current_tags = tonumber(ARGV[17]), tonumber(ARGV[18])
local outbox_key, webhooks_key = KEYS[12 + tag_keys], KEYS[13 + tag_keys]
local alerts_key, idem_key = KEYS[14 + tag_keys], KEYS[15 + tag_keys]
local blog = redis.call('HGET', KEYS[1], 'blog')
if not blog then return {'not_found'} end
local id = ARGV[1]
local current = find_entry(id)
if ARGV[2] == '0' then
  if idem_key then
    local first = redis.call('GET', idem_key)
    if first == 'purged' then return {'purged'} end
    if first then
      -- A write of our own, so that the caller's WAIT covers the first one: a replay answered
      -- before a replica confirmed that entry must not acknowledge it either.
      redis.call('EXPIRE', idem_key, ARGV[13])
      return {'replay', first}
    end
  end
  if current then return {'conflict', current} end
else
  if not current then return {'no_entry'} end
  if cjson.decode(current)['version'] ~= tonumber(ARGV[2]) then return {'conflict', current} end
end
if ARGV[16] == '1' and cjson.decode(blog)['status'] == 'ended' then return {'ended'} end

if ARGV[4] == 'public' then
  redis.call('HSET', KEYS[3], id, ARGV[3])
  redis.call('HDEL', KEYS[7], id)
  redis.call('ZADD', KEYS[4], ARGV[5], id)
  set_pinned(id, ARGV[6], ARGV[5])
  for i = 1, tag_keys do
    if i <= current_tags then
      redis.call('ZADD', KEYS[11 + i], ARGV[5], id)
    else
      redis.call('ZREM', KEYS[11 + i], id)
    end
  end
else
  -- Unpublished work never reaches the public state: not its hash, timeline or pinned set.
  redis.call('HSET', KEYS[7], id, ARGV[3])
  redis.call('HDEL', KEYS[3], id)
  redis.call('ZREM', KEYS[4], id)
  redis.call('ZREM', KEYS[5], id)
  for i = 1, tag_keys do redis.call('ZREM', KEYS[11 + i], id) end
end
if ARGV[2] == '0' then redis.call('HSET', KEYS[6], id, ARGV[12]) end

local log_id = ''
if ARGV[7] ~= '' then
  log_id = append_event(ARGV[7], tonumber(ARGV[10]))
  local trail = redis.call('HGET', KEYS[8], id)
  redis.call('HSET', KEYS[8], id, trail and (trail .. ' ' .. log_id) or log_id)
end
if ARGV[8] ~= '' then
  redis.call('RPUSH', KEYS[11], ARGV[8])
  redis.call('LTRIM', KEYS[11], -tonumber(ARGV[15]), -1)
end
append_audit(ARGV[9], tonumber(ARGV[11]))
note_alerts(alerts_key, id, append_alerts(outbox_key, webhooks_key, tonumber(ARGV[19]), 20, #ARGV))
if idem_key then
  redis.call('SET', idem_key, ARGV[14] .. '\n' .. ARGV[3], 'EX', ARGV[13])
  redis.call('HSET', KEYS[10], id, idem_key)
end
return {'ok', log_id}
