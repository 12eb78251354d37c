-- Set the interval of a queue, only if the queue has one already (as SharQ 1.3.0).
--
-- KEYS[1]  reply key (see _replies.lua)
-- KEYS[2]  P:interval
-- ARGV[1]  field T:Q
-- ARGV[2]  interval (ms)
--
-- Returns 1 when set, 0 when the queue has no interval (it is unknown).

if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 0 then
   return 0  -- nothing changed
end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
return reply(1)
