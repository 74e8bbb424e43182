-- ARGV: blog id, blog JSON, epoch. (The global index is written by the caller: another slot.)
if redis.call('EXISTS', KEYS[1]) == 1 then return {'exists'} end
redis.call('HSET', KEYS[1], 'blog', ARGV[2], 'epoch', ARGV[3])
return {'ok'}
