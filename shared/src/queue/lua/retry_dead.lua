-- retry_dead: moves every dead job back to the ready list (by shard) with a fresh attempt
-- budget. Only an active run's: nothing is served from a cancelled or finalized run, so
-- its dead jobs stay dead (and its freed queue state stays freed).
-- Returns {"unknown"} (no such run) or {revived count, state, created_ms, priority}.
local m = redis.call('HMGET', META, 'state', 'created_ms', 'priority')
if not m[1] then return {'unknown'} end
if m[1] ~= 'active' then return {'0', m[1], m[2], m[3]} end
local shards = redis.call('HKEYS', DEAD)
table.sort(shards, function(a, b) return tonumber(a) < tonumber(b) end)
for i = 1, #shards, 1000 do
  redis.call('RPUSH', READY, unpack(shards, i, math.min(i + 999, #shards)))
end
redis.call('DEL', DEAD)
return {fmt(#shards), m[1], m[2], m[3]}
