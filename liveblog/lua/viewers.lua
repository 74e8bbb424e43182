-- KEYS[1] the blog's viewer counts (hash: process id -> "count:ms").
-- ARGV: this process's id, its reader count, how old (ms) another process's count may be.
-- Records this process's count, forgets processes that stopped reporting, returns the total.
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local fresh_ms = tonumber(ARGV[3])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. ':' .. now_ms)
local total = 0
local counts = redis.call('HGETALL', KEYS[1])
for i = 1, #counts, 2 do
  local count, at = string.match(counts[i + 1], '^(%d+):(%d+)$')
  if count and now_ms - tonumber(at) <= fresh_ms then
    total = total + tonumber(count)
  else
    redis.call('HDEL', KEYS[1], counts[i])
  end
end
redis.call('PEXPIRE', KEYS[1], fresh_ms)
return total
