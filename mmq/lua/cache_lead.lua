-- cache_lead(entry_key, lock_key, job_id, ttl_ms): the cache entry of a key, or its single-flight lock
-- for this job. Returns the entry JSON, 'lead' (the lock is this job's, now or already) or 'wait'
-- (another job holds it). Included by lookup_or_lead and claim.
local function cache_lead(entry_key, lock_key, job_id, ttl_ms)
  local entry = redis.call('GET', entry_key)
  if entry then return entry end
  local holder = redis.call('GET', lock_key)
  if holder == job_id or redis.call('SET', lock_key, job_id, 'NX', 'PX', ttl_ms) then
    redis.call('PEXPIRE', lock_key, ttl_ms)
    return 'lead'
  end
  return 'wait'
end
