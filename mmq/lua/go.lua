-- go: a call admitted to a future slot has slept until it; may it go now? Not while a 429 elsewhere has
-- paused its target meanwhile. A call that goes is counted now (see admit).
-- KEYS[1] the target's cooldown key, KEYS[2] the hash whose `provider_calls` counts calls sent or ''
-- Returns 0 (go), or the cooldown left in ms (give the slot back and wait).
local cooldown = redis.call('PTTL', KEYS[1])
if cooldown > 0 then return cooldown end
if KEYS[2] ~= '' then redis.call('HINCRBY', KEYS[2], 'provider_calls', 1) end
return 0
