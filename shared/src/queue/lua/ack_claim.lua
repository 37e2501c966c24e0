-- ack_claim: ack (as ack.lua) then claim the run's next job (as claim.lua), in one round
-- trip: what a worker does between two shards of the same run.
-- ARGV[1]  shard
-- ARGV[2]  token
-- ARGV[3]  owner
-- ARGV[4]  at most this many expired leases and due retries handled per call
-- ARGV[5]  the acked lease's owner
-- Returns {"unknown"} (no such run) or {acked (0|1), the run's priority, claim reply…}
-- where the claim reply is as claim.lua's.
local acked = ack_one(ARGV[1], ARGV[2], ARGV[5])
if acked == -1 then return {'unknown'} end
local r = claim_one(ARGV[3], tonumber(ARGV[4]))
table.insert(r, 1, redis.call('HGET', META, 'priority'))
table.insert(r, 1, fmt(acked))
return r
