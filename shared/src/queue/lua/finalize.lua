-- finalize: records that the run's manifest is written; no more claims. Frees every
-- per-shard key: a finished run keeps its meta hash only.
-- Returns {"unknown"} (no such run) or {"finalized", created_ms}.
local m = redis.call('HMGET', META, 'state', 'created_ms')
if not m[1] then return {'unknown'} end
migrate()
redis.call('HSET', META, 'state', 'finalized')
redis.call('UNLINK', READY, DELAYED, LEASED, OWNERS, CLAIMS, FAILURES, DEAD, COMMITTED)
return {'finalized', m[2]}
