-- A delivery that must not be kept (its entry was purged: its body is the entry's text).
-- KEYS: 1 the blog's deliveries, 2 retries. ARGV: 1 member ("<webhook> <outbox id>").
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
