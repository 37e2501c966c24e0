-- retry_dead: moves every dead job back to the ready list (by shard) with a fresh attempt
-- budget. The run's state is left as it is (a cancelled run stays cancelled).
-- KEYS[1]  meta   HASH  run record and state
-- KEYS[2]  dead   HASH  shard -> "<failures>:<last error>"
-- KEYS[3]  ready  LIST  shards ready to claim
-- Returns {"unknown"} (no such run) or {revived count, state, created_ms, priority}.
local m = redis.call('HMGET', KEYS[1], 'state', 'created_ms', 'priority')
if not m[1] then return {'unknown'} end
local shards = redis.call('HKEYS', KEYS[2])
table.sort(shards, function(a, b) return tonumber(a) < tonumber(b) end)
for i = 1, #shards, 1000 do
  redis.call('RPUSH', KEYS[3], unpack(shards, i, math.min(i + 999, #shards)))
end
redis.call('DEL', KEYS[2])
return {string.format('%d', #shards), m[1], m[2], m[3]}
