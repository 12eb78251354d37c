-- Set the interval of a queue of one partition (cluster layout), only if it has one.
--
-- KEYS     the partition's keys (_partition.lua)
-- ARGV[1]  queue id Q
-- ARGV[2]  interval (ms)
--
-- Returns 1 when set, 0 when the queue has no interval (it is unknown).

local err = wrong_type(INTERVAL, 'hash')
if err then
   return err
end
if redis.call('HEXISTS', INTERVAL, ARGV[1]) == 0 then
   return reply(0)
end
redis.call('HSET', INTERVAL, ARGV[1], ARGV[2])
return reply(1)
