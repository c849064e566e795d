-- start_cancel: only a running batch can be cancelled (in_progress -> cancelling).
-- KEYS[1] batch hash.  Returns the batch's status after the call, or 'missing'.
local st = redis.call('HGET', KEYS[1], 'status')
if not st then return 'missing' end
if st == 'in_progress' then
  redis.call('HSET', KEYS[1], 'status', 'cancelling')
  return 'cancelling'
end
return st
