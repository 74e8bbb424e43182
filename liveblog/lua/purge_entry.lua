-- A takedown (storage.Purge). KEYS[11] the entry's versions list, KEYS[12..11+n] its tag index
-- keys, then the blog's webhook outbox, webhooks, deliveries, retries and alerts, then the
-- entry's idempotency key as the caller read it from KEYS[10] (optional).
-- ARGV: 1 entry id, 2 expected version ('' for any), 3 tombstone event JSON, 4 audit JSON,
-- 5 log maxlen, 6 audit maxlen, 7 n.
local tag_keys = tonumber(ARGV[7])
local outbox_key, webhooks_key = KEYS[12 + tag_keys], KEYS[13 + tag_keys]
local deliveries_key, retries_key = KEYS[14 + tag_keys], KEYS[15 + tag_keys]
local alerts_key, idem_key = KEYS[16 + tag_keys], KEYS[17 + tag_keys]
if redis.call('EXISTS', KEYS[1]) == 0 then return {'not_found'} end
local id = ARGV[1]
local current = find_entry(id)
if not current then return {'no_entry'} end
if ARGV[2] ~= '' and cjson.decode(current)['version'] ~= tonumber(ARGV[2]) then return {'conflict', current} end
local idem = redis.call('HGET', KEYS[10], id)
if (idem or '') ~= (idem_key or '') then return {'retry'} end

redis.call('HDEL', KEYS[3], id)
redis.call('HDEL', KEYS[7], id)
redis.call('HDEL', KEYS[6], id)
redis.call('ZREM', KEYS[4], id)
redis.call('ZREM', KEYS[5], id)
redis.call('DEL', KEYS[11])
for i = 1, tag_keys do redis.call('ZREM', KEYS[11 + i], id) end
if idem then
  -- The key stays, for its remaining lifetime, as a mark that holds no text: a client retrying
  -- the entry's POST is refused instead of publishing the taken-down text again.
  local ttl = redis.call('PTTL', idem_key)
  if ttl > 0 then
    redis.call('SET', idem_key, 'purged', 'PX', ttl)
  end
  redis.call('HDEL', KEYS[10], id)
end
-- Every public event that ever carried the entry goes, so that no cursor replays its text.
local trail = redis.call('HGET', KEYS[8], id)
local log_id = ''
if trail then
  for event_id in string.gmatch(trail, '%S+') do
    redis.call('XDEL', KEYS[2], event_id)
  end
  redis.call('HDEL', KEYS[8], id)
  log_id = append_event(ARGV[3], tonumber(ARGV[5]))
end
-- And every webhook event that carried it, with the deliveries made of them (their bodies are
-- the entry's text): none is sent, replayed or kept.
local alerts = redis.call('HGET', alerts_key, id)
if alerts then
  local hooks = redis.call('HKEYS', webhooks_key)
  for outbox_id in string.gmatch(alerts, '%S+') do
    redis.call('XDEL', outbox_key, outbox_id)
    for _, hook in ipairs(hooks) do
      redis.call('HDEL', deliveries_key, hook .. ' ' .. outbox_id)
      redis.call('ZREM', retries_key, hook .. ' ' .. outbox_id)
    end
  end
  redis.call('HDEL', alerts_key, id)
end
append_audit(ARGV[4], tonumber(ARGV[6]))
return {'ok', log_id}
