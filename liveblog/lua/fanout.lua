-- One outbox event, for each webhook that wants it. KEYS: 1 the blog's webhooks, 2 deliveries,
-- 3 retries, then each webhook's recent-deliveries list. ARGV: 1 outbox id, 2 deliveries kept
-- per webhook, then (webhook id, new delivery JSON) pairs in KEYS' order.
-- A delivery is made once: a process that claims the event of one that died finds the
-- deliveries it made, with how far they got. Returns each one's delivery JSON (false if the
-- webhook is gone).
local found = {}
for i = 1, (#ARGV - 2) / 2 do
  local hook, record = ARGV[1 + 2 * i], ARGV[2 + 2 * i]
  local field = hook .. ' ' .. ARGV[1]
  found[i] = false
  if redis.call('HEXISTS', KEYS[1], hook) == 1 then
    if redis.call('HSETNX', KEYS[2], field, record) == 1 then
      local recent = KEYS[3 + i]
      redis.call('LPUSH', recent, ARGV[1])
      while redis.call('LLEN', recent) > tonumber(ARGV[2]) do
        local old = hook .. ' ' .. redis.call('RPOP', recent)
        redis.call('HDEL', KEYS[2], old)
        redis.call('ZREM', KEYS[3], old)
      end
    end
    found[i] = redis.call('HGET', KEYS[2], field)
  end
end
return found
