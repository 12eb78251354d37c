-- After a requeue discarded jobs of one partition (cluster layout): forget the interval
-- of those jobs' queues that are gone (no job queued, no fresh time keeper), as SharQ's
-- finish of a discarded job does, once every requeue step has run. Safe to run twice.
--
-- KEYS     the partition's keys (_partition.lua; KEYS[1] is not used)
-- ARGV[1]  now (ms epoch)
-- ARGV[2]  job_expire_interval (ms)
-- ARGV[3..] queue ids
--
-- Returns how many intervals were deleted.

local now, expire_interval = tonumber(ARGV[1]), tonumber(ARGV[2])
local deleted = 0
for i = 3, #ARGV do
   local queue_id = ARGV[i]
   if queue_length(queue_id) == 0 then
      local last_dequeue = tonumber(redis.call('ZSCORE', TIME, queue_id))
      if not last_dequeue or last_dequeue + expire_interval <= now then
         deleted = deleted + redis.call('HDEL', INTERVAL, queue_id)
      end
   end
end
return deleted
