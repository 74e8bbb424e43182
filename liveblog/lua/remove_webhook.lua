-- KEYS: 1 the blog's webhooks, 2 this webhook's recent deliveries, 3 deliveries, 4 retries.
-- ARGV: 1 webhook id. Forgets the webhook and every delivery of it.
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
for _, id in ipairs(redis.call('LRANGE', KEYS[2], 0, -1)) do
  local field = ARGV[1] .. ' ' .. id
  redis.call('HDEL', KEYS[3], field)
  redis.call('ZREM', KEYS[4], field)
end
redis.call('DEL', KEYS[2])
return 1
