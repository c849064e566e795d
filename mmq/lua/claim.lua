-- claim: a worker takes a job (queued -> running), in one round trip; see claim_job for what it returns.
-- Used where arq itself started the job (the stock `arq` command); mmq's own worker claims inside start.
-- include: claim_job
-- KEYS[1] job hash
-- ARGV[1] now (epoch s), ARGV[2] key prefix, ARGV[3] job id, ARGV[4] single-flight lock ttl ms,
-- ARGV[5] the arq queue (zset) or '', ARGV[6] the run's lease ms
return claim_job(KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6])
