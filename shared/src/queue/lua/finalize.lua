-- finalize: records that the run's manifest is written; no more claims.
-- KEYS[1]  meta  HASH  run record and state
-- Returns {"unknown"} (no such run) or {"finalized", created_ms}.
local m = redis.call('HMGET', KEYS[1], 'state', 'created_ms')
if not m[1] then return {'unknown'} end
redis.call('HSET', KEYS[1], 'state', 'finalized')
return {'finalized', m[2]}
