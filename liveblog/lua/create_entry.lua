-- KEYS[7] idempotency key (optional). ARGV: entry id, entry JSON, score, pinned ('1'/'0'),
-- owner token id, event JSON, maxlen, idempotency TTL (s), request fingerprint.
local blog = redis.call('HGET', KEYS[1], 'blog')
if not blog then return {'not_found'} end
if KEYS[7] then
  local first = redis.call('GET', KEYS[7])
  if first then return {'replay', first} end
end
if cjson.decode(blog)['status'] == 'ended' then return {'ended'} end
redis.call('HSET', KEYS[3], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[4], ARGV[3], ARGV[1])
set_pinned(ARGV[1], ARGV[4], ARGV[3])
redis.call('HSET', KEYS[6], ARGV[1], ARGV[5])
local id = append_event(ARGV[6], tonumber(ARGV[7]))
if KEYS[7] then
  redis.call('SET', KEYS[7], ARGV[9] .. '\n' .. ARGV[2], 'EX', ARGV[8])
end
return {'ok', id}
