-- cancel: stops new claims of an active run (a finalized run stays finalized).
-- KEYS[1]  meta  HASH  run record and state
-- Returns {"unknown"} (no such run) or {state after, created_ms}.
local m = redis.call('HMGET', KEYS[1], 'state', 'created_ms')
if not m[1] then return {'unknown'} end
if m[1] == 'active' then
  redis.call('HSET', KEYS[1], 'state', 'cancelled')
  return {'cancelled', m[2]}
end
return {m[1], m[2]}
