-- cancel: stops new claims of an active run (a finalized run stays finalized) and frees
-- what only claims need (ready list, retry schedule, committed bitmap). Leases in flight,
-- dead jobs and the counts stay.
-- Returns {"unknown"} (no such run) or {state after, created_ms}.
local m = redis.call('HMGET', META, 'state', 'created_ms')
if not m[1] then return {'unknown'} end
if m[1] == 'active' then
  migrate()
  redis.call('HSET', META, 'state', 'cancelled')
  redis.call('UNLINK', READY, DELAYED, COMMITTED)
  return {'cancelled', m[2]}
end
return {m[1], m[2]}
