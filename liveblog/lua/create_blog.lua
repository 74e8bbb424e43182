-- KEYS[7] blogs index. ARGV: blog id, blog JSON, epoch, created (ms).
if redis.call('EXISTS', KEYS[1]) == 1 then return {'exists'} end
redis.call('HSET', KEYS[1], 'blog', ARGV[2], 'epoch', ARGV[3])
redis.call('ZADD', KEYS[7], ARGV[4], ARGV[1])
return {'ok'}
