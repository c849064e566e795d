-- reap: seal a batch whose submission stopped (its producer died, or gave up) with the lines it has,
-- marked `interrupted` (see mmq/submissions.py).
-- include: batch_end
-- KEYS[1] the submitting zset, KEYS[2] the batch hash
-- ARGV[1] batch id, ARGV[2] now (epoch s), ARGV[3] stalled before (ms): a batch whose last progress mark
-- is at or after it is left alone ('inf': seal it whatever its mark, or with none)
-- Returns false (it showed progress since, or it is not being submitted), or {how, ended, status} where
-- how is 'sealed' (sealed with what it has), 'failing' (a batch made with on_interrupt = fail, a /v1
-- batch: now cancelling, and its queued jobs are the caller's to cancel) or 'was_sealed' (sealed
-- meanwhile: only taken off the list); ended is the status the batch ended in, or ''; status is its status
-- after the call (cancelling: queued jobs are the caller's to cancel, as a cancel's sweep may have missed
-- lines submitted after it).
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if ARGV[3] ~= 'inf' and (not score or tonumber(score) >= tonumber(ARGV[3])) then return false end
redis.call('ZREM', KEYS[1], ARGV[1])
local v = redis.call('HMGET', KEYS[2], 'sealed', 'status', 'on_interrupt')
if not v[2] then return false end
if v[1] == '1' then return {'was_sealed', '', v[2]} end
redis.call('HSET', KEYS[2], 'sealed', '1', 'interrupted', 'submission_interrupted', 'interrupted_at', ARGV[2])
local how = 'sealed'
if v[3] == 'fail' then
  how = 'failing'
  if v[2] == 'in_progress' then redis.call('HSET', KEYS[2], 'status', 'cancelling') end
end
local ended = batch_end(KEYS[2], ARGV[2]) or ''
return {how, ended, redis.call('HGET', KEYS[2], 'status')}
