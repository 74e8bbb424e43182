-- Deliveries due for another try. KEYS: 1 the blog's retries, 2 deliveries.
-- ARGV: 1 lease (ms), 2 how many at most. Each one returned is leased: its score moves a lease
-- ahead, so no other process takes it meanwhile, and one does if this one dies.
-- Returns {member, delivery JSON, ...}.
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now_ms, 'LIMIT', 0, tonumber(ARGV[2]))
local found = {}
for _, member in ipairs(due) do
  local record = redis.call('HGET', KEYS[2], member)
  if record then
    redis.call('ZADD', KEYS[1], now_ms + tonumber(ARGV[1]), member)
    found[#found + 1] = member
    found[#found + 1] = record
  else
    redis.call('ZREM', KEYS[1], member)
  end
end
return found
