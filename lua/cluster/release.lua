-- Release dequeued jobs of one partition that were not worked on (cluster layout): back
-- to the front of their queues, uncounted; a queue that had no job re-enters the ready set
-- at its time keeper + interval (the interval still holds), else now. Jobs of one queue
-- released together keep their order.
--
-- KEYS     the partition's keys (_partition.lua)
-- ARGV[1]  the queue type's wake-up channel
-- ARGV[2]  job_expire_interval (ms)
-- ARGV[3]  now (ms epoch)
-- ARGV[4..] groups of 4: queue_type, queue_id, job_id, lease
--
-- Returns one integer per job: 1 released, 0 when the caller's lease was lost.

local err = partition_error()
if err then
   return err
end
local channel, expire_interval, now = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local results, queues, order = {}, {}, {}
for i = 4, NARGS, 4 do
   local queue_id, job_id = ARGV[i + 1], ARGV[i + 2]
   local field = queue_id .. ':' .. job_id
   if tonumber(redis.call('ZSCORE', ACTIVE, field)) == tonumber(ARGV[i + 3]) then
      redis.call('ZREM', ACTIVE, field)
      if not queues[queue_id] then
         queues[queue_id] = {}
         order[#order + 1] = queue_id
      end
      table.insert(queues[queue_id], job_id)
      results[#results + 1] = 1
   else
      results[#results + 1] = 0
   end
end
local ready_now = 0
for _, queue_id in ipairs(order) do
   if push_front(queue_id, queues[queue_id]) then
      local interval = tonumber(redis.call('HGET', INTERVAL, queue_id))
      local ready_at = ready_time(queue_id, interval, now, expire_interval)
      redis.call('ZADD', READY, ready_at, queue_id)
      if ready_at <= now then
         ready_now = ready_now + 1
      end
   end
end
if ready_now > 0 then
   redis.pcall('PUBLISH', channel, ready_now)
end
return reply(results)
