-- release_lock: a single-flight lock is released by its holder only.
-- KEYS[1] lock   ARGV[1] job id.   Returns 1 if it was released.
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
