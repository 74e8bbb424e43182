-- Restore one blog from an export (liveblog.export), all or nothing. KEYS[11..] per entry, in
-- ARGV order: its versions list, then its n tag index keys.
-- ARGV: 1 blog JSON, 2 epoch (used if the blog is new), 3 blog.updated event JSON, 4 log maxlen,
-- 5 audit maxlen, 6 entry count, then per entry 10 values: id, entry JSON, 'public' | 'work',
-- score, pinned ('1'/'0'), owner ('' for none), tombstone event JSON ('' unless retracted),
-- audit record JSON (appended if the entry changes), n tags, m versions; then its m version JSONs.
-- An entry already stored exactly so is left alone, so importing twice changes nothing; one
-- stored at a newer version than the export's makes the whole import a conflict.
local maxlen = tonumber(ARGV[4])
local audit_maxlen = tonumber(ARGV[5])
local count = tonumber(ARGV[6])
local entries = {}
local a, k = 7, 11
for _ = 1, count do
  local e = {
    id = ARGV[a], json = ARGV[a + 1], place = ARGV[a + 2], score = ARGV[a + 3], pinned = ARGV[a + 4],
    owner = ARGV[a + 5], tombstone = ARGV[a + 6], audit = ARGV[a + 7], tags = tonumber(ARGV[a + 8]),
    versions = {}, versions_key = KEYS[k], first_tag = k + 1,
  }
  local m = tonumber(ARGV[a + 9])
  for i = 1, m do e.versions[i] = ARGV[a + 9 + i] end
  a = a + 10 + m
  k = k + 1 + e.tags
  entries[#entries + 1] = e
end

-- Check everything before writing anything.
for _, e in ipairs(entries) do
  local current = find_entry(e.id)
  if current and cjson.decode(current)['version'] > cjson.decode(e.json)['version'] then
    return {'conflict', e.id}
  end
end

local changed = 0
local stored = redis.call('HGET', KEYS[1], 'blog')
if not stored then
  redis.call('HSET', KEYS[1], 'blog', ARGV[1], 'epoch', ARGV[2])
  changed = changed + 1
elseif stored ~= ARGV[1] then
  redis.call('HSET', KEYS[1], 'blog', ARGV[1])
  append_event(ARGV[3], maxlen)
  changed = changed + 1
end

local function logged(id, event)
  local log_id = append_event(event, maxlen)
  local trail = redis.call('HGET', KEYS[8], id)
  redis.call('HSET', KEYS[8], id, trail and (trail .. ' ' .. log_id) or log_id)
end

for _, e in ipairs(entries) do
  local current, place = find_entry(e.id)
  if current ~= e.json or place ~= e.place then
    changed = changed + 1
    append_audit(e.audit, audit_maxlen)
    if e.place == 'public' then
      redis.call('HSET', KEYS[3], e.id, e.json)
      redis.call('HDEL', KEYS[7], e.id)
      redis.call('ZADD', KEYS[4], e.score, e.id)
      set_pinned(e.id, e.pinned, e.score)
      for i = 0, e.tags - 1 do redis.call('ZADD', KEYS[e.first_tag + i], e.score, e.id) end
      local kind = place == 'public' and 'updated' or 'created'
      logged(e.id, '{"event":"entry.' .. kind .. '","entry":' .. e.json .. '}')
    else
      redis.call('HSET', KEYS[7], e.id, e.json)
      redis.call('HDEL', KEYS[3], e.id)
      redis.call('ZREM', KEYS[4], e.id)
      redis.call('ZREM', KEYS[5], e.id)
      for i = 0, e.tags - 1 do redis.call('ZREM', KEYS[e.first_tag + i], e.id) end
      if place == 'public' and e.tombstone ~= '' then logged(e.id, e.tombstone) end
    end
  end
  if e.owner ~= '' and redis.call('HSETNX', KEYS[6], e.id, e.owner) == 1 then changed = changed + 1 end
  local have = redis.call('LRANGE', e.versions_key, 0, -1)
  local same = #have == #e.versions
  for i = 1, #have do
    if have[i] ~= e.versions[i] then same = false end
  end
  if not same then
    redis.call('DEL', e.versions_key)
    if #e.versions > 0 then redis.call('RPUSH', e.versions_key, unpack(e.versions)) end
    changed = changed + 1
  end
end
return {'ok', changed}
