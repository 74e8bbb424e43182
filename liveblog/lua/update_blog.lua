-- ARGV: blog JSON as read, new blog JSON, event JSON, maxlen, outbox maxlen, webhook events.
-- KEYS[11] the blog's webhook outbox, KEYS[12] its webhooks.
-- Compare-and-set on the whole blog: an editor's patch is applied to what was read, or retried.
local current = redis.call('HGET', KEYS[1], 'blog')
if not current then return {'not_found'} end
if current ~= ARGV[1] then return {'conflict'} end
redis.call('HSET', KEYS[1], 'blog', ARGV[2])
local id = append_event(ARGV[3], tonumber(ARGV[4]))
append_alerts(KEYS[11], KEYS[12], tonumber(ARGV[5]), 6, #ARGV)
return {'ok', id}
