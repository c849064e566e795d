-- start: mmq's worker starts a due arq job and, when it is an mmq job, claims it, in one round trip.
-- It does what arq 0.28 does in three: start_jobs' WATCH, EXISTS, ZSCORE and MULTI/PSETEX/EXEC, run_job's
-- GET of the payload and INCR of the try counter, and then mmq's own claim (claim_job).
-- include: claim_job
-- KEYS[1] arq in-progress key, KEYS[2] arq queue (zset), KEYS[3] arq job key, KEYS[4] arq retry key,
-- KEYS[5] the mmq job hash
-- ARGV[1] job id, ARGV[2] now ms, ARGV[3] arq's in-progress ttl ms, ARGV[4] now (epoch s), ARGV[5] mmq key
-- prefix, ARGV[6] single-flight lock ttl ms, ARGV[7] an mmq job's lease ms
-- An mmq job's in-progress key and queue score live for its lease, which the worker's heartbeat renews
-- while the job runs: a crashed worker's job is due, and may start again, one lease after its last beat.
-- Returns false (running elsewhere, finished, or re-enqueued for later: not this worker's), {score} (the
-- job is this worker's and arq runs it: a batch task, or a payload arq must report as expired), or
-- {score, payload, try, claim_job's answer...} (an mmq job, claimed: the worker runs it itself).
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
local score = redis.call('ZSCORE', KEYS[2], ARGV[1])
if not score or tonumber(score) > tonumber(ARGV[2]) then return false end
local payload = redis.call('EXISTS', KEYS[5]) == 1 and redis.call('GET', KEYS[3])
if not payload then
  redis.call('PSETEX', KEYS[1], ARGV[3], '1')
  return {score}
end
redis.call('PSETEX', KEYS[1], ARGV[7], '1')
local try = redis.call('INCR', KEYS[4])
redis.call('EXPIRE', KEYS[4], 88400)  -- arq's own TTL for the try counter
local out = {score, payload, try}
for _, v in ipairs(claim_job(KEYS[5], ARGV[4], ARGV[5], ARGV[1], ARGV[6], KEYS[2], ARGV[7])) do
  out[#out + 1] = v
end
return out
