-- lookup_or_lead: the cache entry of a key, or the key's single-flight lock for this job.
-- KEYS[1] entry, KEYS[2] lock   ARGV[1] job id, ARGV[2] lock ttl ms
-- Returns the entry JSON, or 'lead' (the lock is this job's, now or already), or 'wait' (another job's).
local entry = redis.call('GET', KEYS[1])
if entry then return entry end
local holder = redis.call('GET', KEYS[2])
if holder == ARGV[1] or redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
  return 'lead'
end
return 'wait'
