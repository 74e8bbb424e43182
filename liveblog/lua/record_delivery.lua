-- A delivery's new state. KEYS: 1 the blog's deliveries, 2 retries. ARGV: 1 member
-- ("<webhook> <outbox id>"), 2 delivery JSON, 3 ms from now to its next try, '' for none.
-- A delivery forgotten meanwhile (its webhook removed) stays forgotten.
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
if ARGV[3] == '' then
  redis.call('ZREM', KEYS[2], ARGV[1])
else
  local now = redis.call('TIME')
  local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
  redis.call('ZADD', KEYS[2], now_ms + tonumber(ARGV[3]), ARGV[1])
end
return 1
