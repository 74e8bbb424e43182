-- KEYS[1] the schedule index. ARGV: how many members at most.
-- Returns {now (ms, the Redis server's clock), {member, score, ...}} of the members due by now.
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now_ms, 'WITHSCORES', 'LIMIT', 0, tonumber(ARGV[1]))
return {now_ms, due}
