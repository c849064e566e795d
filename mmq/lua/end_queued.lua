-- end_queued: cancel or expire a batch's still-queued jobs (a job a worker claimed meanwhile is skipped),
-- moving the counters with them, and end the batch once nothing is queued or running.
-- include: batch_end
-- KEYS[1] batch hash, KEYS[2..] job hashes
-- ARGV[1] now, ARGV[2] the status to end them in, ARGV[3] the error JSON ('' for none)
-- Returns how many jobs it ended.
local n = 0
for i = 2, #KEYS do
  if redis.call('HGET', KEYS[i], 'status') == 'queued' then
    redis.call('HSET', KEYS[i], 'status', ARGV[2], 'finished_at', ARGV[1])
    if ARGV[3] ~= '' then redis.call('HSET', KEYS[i], 'error', ARGV[3]) end
    n = n + 1
  end
end
if n > 0 then
  redis.call('HINCRBY', KEYS[1], 'queued', -n)
  redis.call('HINCRBY', KEYS[1], ARGV[2], n)
end
batch_end(KEYS[1], ARGV[1])
return n
