-- defer: a running job leaves its worker slot to run again later (its targets' circuits are open, its
-- rate-limit slot is far off, an identical job is calling the provider): its state is saved and it waits
-- as `queued`, so a cancel or an expiry reaches it meanwhile (end_queued), and the claim takes it again
-- when it runs. A job whose batch is cancelling is cancelled here instead: the cancel's sweep passed it
-- while it ran. Its batch's counters move with it, in the same call.
-- include: batch_end
-- KEYS[1] job hash, KEYS[2] its batch hash or ''
-- ARGV[1] now (epoch s), then the job's state fields as name, value pairs ('' deletes the field)
-- Returns 'deferred' (now queued), 'cancelled_now', 'ended' (cancelled, and that ended its batch),
-- 'missing', or the job's status when it was not running (nothing is written then: another run ended it).
local st = redis.call('HGET', KEYS[1], 'status')
if not st then return 'missing' end
if st ~= 'running' then return st end
local keep, gone = {}, {}
for i = 2, #ARGV, 2 do
  if ARGV[i + 1] == '' then gone[#gone + 1] = ARGV[i] else
    keep[#keep + 1] = ARGV[i]
    keep[#keep + 1] = ARGV[i + 1]
  end
end
if #keep > 0 then redis.call('HSET', KEYS[1], unpack(keep)) end
if #gone > 0 then redis.call('HDEL', KEYS[1], unpack(gone)) end
local to = 'queued'
if KEYS[2] ~= '' and redis.call('HGET', KEYS[2], 'status') == 'cancelling' then to = 'cancelled' end
redis.call('HSET', KEYS[1], 'status', to)
if to == 'cancelled' then redis.call('HSET', KEYS[1], 'finished_at', ARGV[1]) end
if KEYS[2] ~= '' then
  redis.call('HINCRBY', KEYS[2], 'running', -1)
  redis.call('HINCRBY', KEYS[2], to, 1)
  if to == 'cancelled' and batch_end(KEYS[2], ARGV[1]) then return 'ended' end
end
return (to == 'queued' and 'deferred') or 'cancelled_now'
