-- heartbeat: extends a held lease to server TIME + lease_ms. Fenced by (shard, token, owner).
-- ARGV[1]  shard
-- ARGV[2]  token
-- ARGV[3]  owner
-- Returns "unknown" (no such run), "lost" (not held with this token: nothing changed),
-- "cancelled" (run cancelled; the lease is extended so its holder may release it) or
-- "held".
local m = redis.call('HMGET', META, 'state', 'lease_ms')
if not m[1] then return 'unknown' end
if not holds(ARGV[1], ARGV[2], ARGV[3]) then return 'lost' end
redis.call('ZADD', LEASED, 'XX', fmt(now_ms() + tonumber(m[2])), ARGV[1])
if m[1] == 'cancelled' then return 'cancelled' end
return 'held'
