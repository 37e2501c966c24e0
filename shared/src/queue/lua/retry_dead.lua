-- retry_dead: moves every dead job back to the ready list (by shard) with a fresh attempt
-- budget. The run's state is left as it is (a cancelled run stays cancelled).
-- Returns {"unknown"} (no such run) or {revived count, state, created_ms, priority}.
local m = redis.call('HMGET', META, 'state', 'created_ms', 'priority')
if not m[1] then return {'unknown'} end
local shards = redis.call('HKEYS', DEAD)
table.sort(shards, function(a, b) return tonumber(a) < tonumber(b) end)
for i = 1, #shards, 1000 do
  redis.call('RPUSH', READY, unpack(shards, i, math.min(i + 999, #shards)))
end
redis.call('DEL', DEAD)
return {fmt(#shards), m[1], m[2], m[3]}
