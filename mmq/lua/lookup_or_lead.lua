-- lookup_or_lead: the cache entry of a key, or the key's single-flight lock for this job.
-- include: cache_lead
-- KEYS[1] entry, KEYS[2] lock   ARGV[1] job id, ARGV[2] lock ttl ms
-- Returns the entry JSON, or 'lead' (the lock is this job's, now or already), or 'wait' (another job's).
return cache_lead(KEYS[1], KEYS[2], ARGV[1], ARGV[2])
