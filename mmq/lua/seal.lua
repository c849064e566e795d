-- seal: every line of a batch has been submitted; until then a batch cannot end.
-- include: batch_end
-- KEYS[1] batch hash   ARGV[1] now, ARGV[2] invalid lines to add
-- Returns 'ended' if nothing was left to run, else 'ok'.
redis.call('HSET', KEYS[1], 'sealed', '1')
if ARGV[2] ~= '0' then redis.call('HINCRBY', KEYS[1], 'invalid_lines', ARGV[2]) end
if batch_end(KEYS[1], ARGV[1]) then return 'ended' end
return 'ok'
