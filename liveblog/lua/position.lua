-- Where a blog's log is now: {'ok', epoch, last log id}.
if redis.call('EXISTS', KEYS[1]) == 0 then return {'not_found'} end
return {'ok', redis.call('HGET', KEYS[1], 'epoch'), last_log_id()}
