-- ARGV: how many latest entries. Returns the page as of one log position, read atomically:
-- {blog JSON, epoch, last log id, {entry JSON...} newest first, {pinned entry JSON...}}.
local blog = redis.call('HGET', KEYS[1], 'blog')
if not blog then return {'not_found'} end
local function load(ids)
  if #ids == 0 then return {} end
  return redis.call('HMGET', KEYS[3], unpack(ids))
end
local latest = load(redis.call('ZREVRANGE', KEYS[4], 0, tonumber(ARGV[1]) - 1))
local pinned = load(redis.call('ZREVRANGE', KEYS[5], 0, 99))
return {'ok', blog, redis.call('HGET', KEYS[1], 'epoch'), last_log_id(), latest, pinned}
