-- park: a running job whose call would take a budget past its limit waits for it (status `budget`,
-- counted in its batch's `budget`), listed in `waiting` with when to try again. Its arq entry stays,
-- re-run at the latest at ARGV[5] (a lost wake-up only delays it) with its payload kept that long; a
-- wake-up (wake.lua) moves it to the head of the queue. A waiting job runs like a queued one (claim_job).
-- A wake-up can be lost only between the refusal and this script: a call in flight that ended meanwhile
-- woke nobody. So a job refused while calls were in flight is due at once if the budget's holds have
-- shrunk since it was refused.
-- KEYS[1] job hash, KEYS[2] batch hash or '', KEYS[3] waiting zset, KEYS[4] arq's payload key,
-- KEYS[5] the spend hash that refused, KEYS[6] arq's queue or '' (the caller re-queues the job itself),
-- KEYS[7] arq's in-progress key or ''
-- ARGV[1] job id, ARGV[2] try again at (ms, or '+inf': when spending settles or the budget is raised),
-- ARGV[3] arq payload ttl ms, ARGV[4] micro-USD held there when it refused, ARGV[5] arq's latest re-run
-- (ms), ARGV[6..] field/value pairs of the job's state ('' deletes the field)
-- Returns 'ok', 'due' (waiting, but to try again now), 'missing' or the status that kept it from waiting.
-- include: job_state
local cur = redis.call('HGET', KEYS[1], 'status')
if not cur then return 'missing' end
if cur ~= 'running' then return cur end
job_state(KEYS[1], 'budget', 6)
if KEYS[2] ~= '' then
  redis.call('HINCRBY', KEYS[2], 'running', -1)
  redis.call('HINCRBY', KEYS[2], 'budget', 1)
end
local at, outcome = ARGV[2], 'ok'
if at == '+inf' and tonumber(redis.call('HGET', KEYS[5], 'reserved') or '0') < tonumber(ARGV[4]) then
  at, outcome = '0', 'due'
end
redis.call('ZADD', KEYS[3], at, ARGV[1])
redis.call('PEXPIRE', KEYS[4], ARGV[3])
if KEYS[6] ~= '' then
  redis.call('ZADD', KEYS[6], 'XX', ARGV[5], ARGV[1])
  redis.call('DEL', KEYS[7])
end
return outcome
