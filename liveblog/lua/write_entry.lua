-- One change to an entry (storage.Change). KEYS[11] the entry's versions list, KEYS[12] its
-- idempotency key (new entries, optional).
-- ARGV: 1 entry id, 2 expected version ('0': new), 3 entry JSON, 4 'public' | 'work',
-- 5 score, 6 pinned ('1'/'0'), 7 event JSON or '', 8 version row JSON or '', 9 audit JSON,
-- 10 log maxlen, 11 audit maxlen, 12 owner token id, 13 idempotency TTL (s),
-- 14 request fingerprint, 15 versions kept, 16 '1' if this is a new publication.
local blog = redis.call('HGET', KEYS[1], 'blog')
if not blog then return {'not_found'} end
local id = ARGV[1]
local current = find_entry(id)
if ARGV[2] == '0' then
  if KEYS[12] then
    local first = redis.call('GET', KEYS[12])
    if first == 'purged' then return {'purged'} end
    if first then return {'replay', first} end
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
else
  -- Unpublished work never reaches the public state: not its hash, timeline or pinned set.
  redis.call('HSET', KEYS[7], id, ARGV[3])
  redis.call('HDEL', KEYS[3], id)
  redis.call('ZREM', KEYS[4], id)
  redis.call('ZREM', KEYS[5], id)
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
if KEYS[12] then
  redis.call('SET', KEYS[12], ARGV[14] .. '\n' .. ARGV[3], 'EX', ARGV[13])
  redis.call('HSET', KEYS[10], id, KEYS[12])
end
return {'ok', log_id}
