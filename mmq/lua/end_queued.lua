-- end_queued: cancel or expire a batch's still-queued jobs and those waiting for a budget (a job a worker
-- claimed meanwhile is skipped), moving the counters with them, and end the batch once nothing is left.
-- include: batch_end
-- KEYS[1] batch hash, KEYS[2..] job hashes
-- ARGV[1] now, ARGV[2] the status to end them in, ARGV[3] the error JSON ('' for none)
-- Returns how many jobs it ended.
local n, was = 0, {queued = 0, budget = 0}
for i = 2, #KEYS do
  local st = redis.call('HGET', KEYS[i], 'status')
  if st == 'queued' or st == 'budget' then
    redis.call('HSET', KEYS[i], 'status', ARGV[2], 'finished_at', ARGV[1])
    if ARGV[3] ~= '' then redis.call('HSET', KEYS[i], 'error', ARGV[3]) end
    was[st] = was[st] + 1
    n = n + 1
  end
end
if n > 0 then
  for st, k in pairs(was) do if k > 0 then redis.call('HINCRBY', KEYS[1], st, -k) end end
  redis.call('HINCRBY', KEYS[1], ARGV[2], n)
end
batch_end(KEYS[1], ARGV[1])
return n
