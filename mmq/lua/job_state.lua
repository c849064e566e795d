-- job_state(job_key, status, first): a job's new status and the state fields given as field/value pairs
-- in ARGV from position `first` on ('' as a value deletes the field), in one HSET and at most one HDEL.
-- Included by the scripts that move a job and write its state with the move (finish, park, deposit).
local function job_state(job_key, status, first)
  local sets, gone = {'status', status}, {}
  for i = first, #ARGV, 2 do
    if ARGV[i + 1] == '' then gone[#gone + 1] = ARGV[i] else sets[#sets + 1] = ARGV[i]; sets[#sets + 1] = ARGV[i + 1] end
  end
  redis.call('HSET', job_key, unpack(sets))
  if #gone > 0 then redis.call('HDEL', job_key, unpack(gone)) end
end
