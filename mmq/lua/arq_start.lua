-- arq_start: an arq worker starts a due job: what arq 0.28's start_jobs does with WATCH, EXISTS, ZSCORE
-- and MULTI/PSETEX/EXEC (four round trips per job id it looks at), done atomically in one.
-- KEYS[1] the job's arq in-progress key, KEYS[2] the arq queue (zset)
-- ARGV[1] job id, ARGV[2] now ms, ARGV[3] in-progress ttl ms
-- Returns the job's queue score (the job is now this worker's), or false: running elsewhere, finished,
-- or re-enqueued for later.
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
local score = redis.call('ZSCORE', KEYS[2], ARGV[1])
if not score or tonumber(score) > tonumber(ARGV[2]) then return false end
redis.call('PSETEX', KEYS[1], ARGV[3], '1')
return score
