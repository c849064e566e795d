-- deposit: a running job of the batch tier joins its target's open jobs, to go in the next provider
-- batch of that target (status `provider_batch`, counted in its batch). Its arq entry is cleared by the
-- caller in the same round trip: from here the batch tier's own tasks carry it (worker/batch_tier).
-- KEYS[1] job hash, KEYS[2] batch hash or '', KEYS[3] the group's open zset, KEYS[4] the set of groups
-- with open jobs (a gather that died is found from it)
-- ARGV[1] job id, ARGV[2] now ms, ARGV[3..] field/value pairs of the job's state ('' deletes the field)
-- Returns 'ok', 'missing' or the status that kept it from moving.
-- include: job_state
local cur = redis.call('HGET', KEYS[1], 'status')
if not cur then return 'missing' end
if cur ~= 'running' then return cur end
job_state(KEYS[1], 'provider_batch', 3)
if KEYS[2] ~= '' then
  redis.call('HINCRBY', KEYS[2], 'running', -1)
  redis.call('HINCRBY', KEYS[2], 'provider_batch', 1)
end
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[1])
redis.call('SADD', KEYS[4], KEYS[3])
return 'ok'
