-- wake: jobs waiting for a budget whose time has come (a budget raised, spending settled, a new day or
-- month) are moved to the head of arq's queue, still in `budget` state: the worker that starts one checks
-- the budget again (claim_job takes a waiting job like a queued one). One sweep per call, bounded.
-- KEYS[1] waiting zset, KEYS[2] arq's queue
-- ARGV[1] now ms, ARGV[2] most jobs to wake, ARGV[3] mmq's key prefix (a job's hash: {p}:job:{id})
-- Returns how many jobs it woke.
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
local n = 0
for _, id in ipairs(due) do
  redis.call('ZREM', KEYS[1], id)
  if redis.call('HGET', ARGV[3] .. ':job:' .. id, 'status') == 'budget' then
    redis.call('ZADD', KEYS[2], 'XX', ARGV[1], id)
    n = n + 1
  end
end
return n
