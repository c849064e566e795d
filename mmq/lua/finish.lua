-- finish: a job ends (succeeded | failed | cancelled) with its outcome, its batch's counters and the
-- batch's end, in one call. A re-run can never count twice: only a job in an allowed status moves.
-- What its provider call cost is added to its batch's and its tenant's spending with the move (a re-run
-- adds nothing), and then its budget reservation is given back (so no other call sees the room first).
-- include: batch_end
-- include: budget
-- include: job_state
-- KEYS[1] job hash, KEYS[2] batch hash or '', KEYS[3] tenant's day spend hash, KEYS[4] month's,
-- KEYS[5] budget held zset, KEYS[6] held-what hash, KEYS[7] waiting zset
-- ARGV[1] allowed-from statuses (comma list), ARGV[2] to, ARGV[3] now, ARGV[4] cached (0/1),
-- ARGV[5] provider calls to add to the batch, ARGV[6] cost in micro-USD, ARGV[7] the call's budget
-- reservation id or '', ARGV[8] what the batch tier saved on it (micro-USD), ARGV[9..] field/value pairs
-- of the job's new state ('' as a value deletes the field)
-- Returns 'ended' (this ended the batch), 'ok', 'missing', or the status that blocked the move.
local cur = redis.call('HGET', KEYS[1], 'status')
local allowed = false
for s in string.gmatch(ARGV[1], '[^,]+') do if s == cur then allowed = true end end
if allowed and ARGV[6] ~= '0' then
  if KEYS[2] ~= '' then
    redis.call('HINCRBY', KEYS[2], 'spent', ARGV[6])
    if ARGV[8] ~= '0' then redis.call('HINCRBY', KEYS[2], 'saved', ARGV[8]) end
  end
  for i = 3, 4 do
    redis.call('HINCRBY', KEYS[i], 'spent', ARGV[6])
    redis.call('EXPIRE', KEYS[i], 35000000)  -- ~13 months: a tenant's day and month stay readable
  end
end
budget_release(KEYS[5], KEYS[6], KEYS[7], ARGV[7])
if allowed then
  -- a line answered by a provider batch: the hold its deposit took at the batch price goes back too
  local hold = redis.call('HGET', KEYS[1], 'nb_hold')
  if hold then
    budget_release(KEYS[5], KEYS[6], KEYS[7], hold)
    redis.call('HDEL', KEYS[1], 'nb_hold')
  end
end
if not cur then return 'missing' end
if not allowed then return cur end
job_state(KEYS[1], ARGV[2], 9)
if KEYS[2] ~= '' and cur ~= ARGV[2] then
  redis.call('HINCRBY', KEYS[2], cur, -1)
  redis.call('HINCRBY', KEYS[2], ARGV[2], 1)
  if ARGV[4] == '1' then redis.call('HINCRBY', KEYS[2], 'cached', 1) end
  if ARGV[5] ~= '0' then redis.call('HINCRBY', KEYS[2], 'provider_calls', ARGV[5]) end
  if batch_end(KEYS[2], ARGV[3]) then return 'ended' end
end
return 'ok'
