-- ARGV: log id to read after, max events.
-- Returns {'ok', epoch, trimmed id or '', last log id, {{id, {'e', event JSON}}...}}.
if redis.call('EXISTS', KEYS[1]) == 0 then return {'not_found'} end
local trimmed = redis.call('HGET', KEYS[1], 'trimmed') or ''
local events = redis.call('XRANGE', KEYS[2], '(' .. ARGV[1], '+', 'COUNT', ARGV[2])
return {'ok', redis.call('HGET', KEYS[1], 'epoch'), trimmed, last_log_id(), events}
