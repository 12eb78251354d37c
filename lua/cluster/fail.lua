-- Fail dequeued jobs of one partition (cluster layout), as lua/fail.lua does on one node:
-- each failure counts against the job's requeue limit as an expiry would. Requeues left:
-- backoff 0 counts one and puts the job back at the front of its queue now (a queue that
-- had no job re-enters the ready set at its time keeper + interval, else now); backoff > 0
-- moves its lease to now + backoff (the requeue counts it then). Out of requeues (0 left;
-- -1 is unlimited): discarded, payload and count deleted; a queue left without queued jobs
-- forgets its interval once no job of it can still be held (defer_forget_interval).
--
-- The dead-letter queue type lives in other slots, out of this script's reach: with `hold`
-- a job out of requeues is left active, lease and all, and its payload returned. The
-- client enqueues it into the dead-letter type, then calls again without `hold` to
-- discard it (if the client dies between, the requeuer discards it: never lost).
--
-- KEYS     the partition's keys (_partition.lua)
-- ARGV[1]  the queue type's wake-up channel
-- ARGV[2]  job_expire_interval (ms)
-- ARGV[3]  now (ms epoch)
-- ARGV[4]  backoff (ms, 0 or more)
-- ARGV[5]  hold: 1 to hold jobs out of requeues for the dead-letter type, else 0
-- ARGV[6..] groups of 4: queue_type, queue_id, job_id, lease
--
-- Returns one value per job: 1 retried, 2 discarded, 0 when the caller's lease was lost
-- (nothing changed), or the payload (a string) of a held job.

local err = partition_error()
if err then
   return err
end
local channel, expire_interval, now = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local backoff, hold = tonumber(ARGV[4]), ARGV[5] == '1'
local results, queues, order, gone, gone_order, seen = {}, {}, {}, {}, {}, {}
for i = 6, NARGS, 4 do
   local queue_id, job_id = ARGV[i + 1], ARGV[i + 2]
   local field = queue_id .. ':' .. job_id
   if not seen[field] and tonumber(redis.call('ZSCORE', ACTIVE, field)) == tonumber(ARGV[i + 3]) then
      seen[field] = true  -- a job named twice is failed once
      local remaining = tonumber(redis.call('HGET', REQUEUES, field))
      local payload = false
      if remaining and remaining > -1 and remaining - 1 == -1 and hold then
         payload = redis.call('HGET', PAYLOAD, field)  -- none (broken data): discarded
      end
      if payload then
         results[#results + 1] = payload
      elseif remaining and remaining > -1 and remaining - 1 == -1 then
         redis.call('ZREM', ACTIVE, field)
         redis.call('HDEL', PAYLOAD, field)
         redis.call('HDEL', REQUEUES, field)
         if not gone[queue_id] then
            gone[queue_id] = true
            gone_order[#gone_order + 1] = queue_id
         end
         results[#results + 1] = 2
      elseif backoff > 0 then
         redis.call('ZADD', ACTIVE, 'XX', now + backoff, field)
         results[#results + 1] = 1
      else
         if remaining and remaining > -1 then
            redis.call('HSET', REQUEUES, field, remaining - 1)
         end
         redis.call('ZREM', ACTIVE, field)
         if not queues[queue_id] then
            queues[queue_id] = {}
            order[#order + 1] = queue_id
         end
         table.insert(queues[queue_id], job_id)
         results[#results + 1] = 1
      end
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
-- A discarded job's queue left without queued jobs forgets its interval once no job of it
-- can still be held (defer_forget_interval).
for _, queue_id in ipairs(gone_order) do
   if queue_length(queue_id) == 0 then
      defer_forget_interval(queue_id, now, expire_interval)
   end
end
if ready_now > 0 then
   redis.pcall('PUBLISH', channel, ready_now)
end
return reply(results)
