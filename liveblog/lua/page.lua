-- ARGV: limit, id of the entry to page after ('' for the newest).
-- Returns {'ok', epoch, last log id, {entry JSON...} newest first, next entry id or ''}.
if redis.call('EXISTS', KEYS[1]) == 0 then return {'not_found'} end
local start = 0
if ARGV[2] ~= '' then
  local rank = redis.call('ZREVRANK', KEYS[4], ARGV[2])
  if not rank then return {'no_entry'} end
  start = rank + 1
end
local limit = tonumber(ARGV[1])
local ids = redis.call('ZREVRANGE', KEYS[4], start, start + limit)
local next_id = ''
if #ids > limit then
  table.remove(ids)
  next_id = ids[#ids]
end
local entries = {}
if #ids > 0 then entries = redis.call('HMGET', KEYS[3], unpack(ids)) end
return {'ok', redis.call('HGET', KEYS[1], 'epoch'), last_log_id(), entries, next_id}
