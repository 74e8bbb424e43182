-- ARGV: entry id, expected version, event JSON, maxlen.
local current = redis.call('HGET', KEYS[3], ARGV[1])
if not current then return {'no_entry'} end
if cjson.decode(current)['version'] ~= tonumber(ARGV[2]) then return {'conflict', current} end
redis.call('HDEL', KEYS[3], ARGV[1])
redis.call('ZREM', KEYS[4], ARGV[1])
redis.call('ZREM', KEYS[5], ARGV[1])
redis.call('HDEL', KEYS[6], ARGV[1])
return {'ok', append_event(ARGV[3], tonumber(ARGV[4]))}
