-- ack: marks a leased job committed. Fenced by (shard, token, owner) while the job is
-- leased; once committed, any ack of the shard answers 1 (storage holds its record either way).
-- ARGV[1]  shard
-- ARGV[2]  token
-- ARGV[3]  the lease's owner
-- Returns -1 (no such run), 0 (lease not held: nothing changed) or 1 (committed).
return ack_one(ARGV[1], ARGV[2], ARGV[3])
