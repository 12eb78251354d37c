-- Finish dequeued jobs of one partition (cluster layout), as SharQ's finish: the job
-- leaves the active set, its payload and requeue count go, and a queue left without
-- queued jobs forgets its interval once no job of it can still be held (SharQ's finish
-- deletes it at once: defer_forget_interval in _partition.lua says why not).
--
-- KEYS     the partition's keys (_partition.lua)
-- ARGV[1]  job_expire_interval (ms)
-- ARGV[2]  now (ms epoch)
-- ARGV[3..] groups of 4: queue_type, queue_id, job_id, lease (0: by id, as SharQ's finish;
--          else only while the job's lease expiry is still that one)
--
-- Returns one integer per job: 1 finished, 0 not active (or held by another delivery).

local err = partition_error()
if err then
   return err
end
local expire_interval, now = tonumber(ARGV[1]), tonumber(ARGV[2])
local results = {}
local queue_exists = {}
for i = 3, NARGS, 4 do
   local queue_id, job_id, lease = ARGV[i + 1], ARGV[i + 2], tonumber(ARGV[i + 3])
   local field = queue_id .. ':' .. job_id
   local held = true
   if lease ~= 0 then
      held = tonumber(redis.call('ZSCORE', ACTIVE, field)) == lease
   end
   if held and redis.call('ZREM', ACTIVE, field) == 1 then
      redis.call('HDEL', PAYLOAD, field)
      redis.call('HDEL', REQUEUES, field)
      if queue_exists[queue_id] == nil then
         queue_exists[queue_id] = queue_length(queue_id) > 0
         if not queue_exists[queue_id] then
            defer_forget_interval(queue_id, now, expire_interval)
         end
      end
      results[#results + 1] = 1
   else
      results[#results + 1] = 0
   end
end
return reply(results)
