-- KEYS[1] the schedule index. ARGV: member, the score it was read with, new score or '' to drop.
-- Only if the member was not moved meanwhile (by a new schedule, which only ever moves it earlier).
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score or tonumber(score) ~= tonumber(ARGV[2]) then return 0 end
if ARGV[3] == '' then
  redis.call('ZREM', KEYS[1], ARGV[1])
else
  redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
end
return 1
