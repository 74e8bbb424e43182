-- KEYS[11] a tag's index (optional: then only entries with that tag).
-- ARGV: limit, id of the entry to page after ('' for the newest).
-- Returns {'ok', epoch, last log id, {entry JSON...} newest first, next entry id or ''}.
if redis.call('EXISTS', KEYS[1]) == 0 then return {'not_found'} end
local order = KEYS[11] or KEYS[4]
local start = 0
if ARGV[2] ~= '' then
  local rank = redis.call('ZREVRANK', order, ARGV[2])
  if not rank then return {'no_entry'} end
  start = rank + 1
end
local limit = tonumber(ARGV[1])
local ids = redis.call('ZREVRANGE', order, start, start + limit)
local next_id = ''
if #ids > limit then
  table.remove(ids)
  next_id = ids[#ids]
end
local entries = {}
if #ids > 0 then entries = redis.call('HMGET', KEYS[3], unpack(ids)) end
return {'ok', redis.call('HGET', KEYS[1], 'epoch'), last_log_id(), entries, next_id}
