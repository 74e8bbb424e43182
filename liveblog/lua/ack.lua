-- An outbox event whose deliveries are made and tried once leaves the outbox, which then holds
-- only what is not yet handed out. KEYS[1] the outbox. ARGV: 1 the group, 2 the event's id.
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
return redis.call('XDEL', KEYS[1], ARGV[2])
