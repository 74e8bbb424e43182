-- KEYS: 1 the blog's meta, 2 its webhooks, 3 its outbox. ARGV: 1 webhook id, 2 webhook JSON,
-- 3 most webhooks a blog may have, 4 the deliverers' group name.
if redis.call('HEXISTS', KEYS[1], 'blog') == 0 then return 'not_found' end
if redis.call('HLEN', KEYS[2]) >= tonumber(ARGV[3]) then return 'full' end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
-- The group starts at the outbox's end: a webhook hears of what happens after it was made.
local made = redis.pcall('XGROUP', 'CREATE', KEYS[3], ARGV[4], '$', 'MKSTREAM')
if type(made) == 'table' and made.err and not string.find(made.err, 'BUSYGROUP') then
  return redis.error_reply(made.err)
end
return 'ok'
