-- claim: leases one ready job of a run (see claim_one in lib.lua).
-- ARGV[1]  owner
-- ARGV[2]  at most this many expired leases and due retries handled per call
-- Returns {"unknown"} (no such run), {"inactive"} (cancelled or finalized), {"empty"}
-- (nothing ready now) or {"leased", shard, token, failures, deadline_ms}.
if redis.call('EXISTS', META) == 0 then return {'unknown'} end
return claim_one(ARGV[1], tonumber(ARGV[2]))
