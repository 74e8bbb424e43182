-- ARGV: blog JSON as read, new blog JSON, event JSON, maxlen.
-- Compare-and-set on the whole blog: an editor's patch is applied to what was read, or retried.
local current = redis.call('HGET', KEYS[1], 'blog')
if not current then return {'not_found'} end
if current ~= ARGV[1] then return {'conflict'} end
redis.call('HSET', KEYS[1], 'blog', ARGV[2])
return {'ok', append_event(ARGV[3], tonumber(ARGV[4]))}
