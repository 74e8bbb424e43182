-- ARGV: entry id, expected version, new entry JSON, score, pinned ('1'/'0'), event JSON, maxlen.
local current = redis.call('HGET', KEYS[3], ARGV[1])
if not current then return {'no_entry'} end
if cjson.decode(current)['version'] ~= tonumber(ARGV[2]) then return {'conflict', current} end
redis.call('HSET', KEYS[3], ARGV[1], ARGV[3])
redis.call('ZADD', KEYS[4], ARGV[4], ARGV[1])
set_pinned(ARGV[1], ARGV[5], ARGV[4])
return {'ok', append_event(ARGV[6], tonumber(ARGV[7]))}
