-- Requeue up to `limit` expired active jobs of one partition (cluster layout), as SharQ's
-- requeue: back to the front of their queue (a queue that had no job re-enters the ready
-- set), one requeue counted; a job out of requeues is discarded (payload and count
-- deleted, returned to the caller). A queue a discard leaves without queued jobs is
-- recorded in FORGET (defer_forget_interval); the last step of a pass (the one that finds
-- fewer than `limit` expired jobs: every job whose lease ran out by now is back) then
-- forgets the intervals of the due records (forget_due_intervals, see lua/requeue.lua for
-- why not earlier).
--
-- KEYS     the partition's keys (_partition.lua)
-- ARGV[1]  the queue type's wake-up channel
-- ARGV[2]  job_expire_interval (ms)
-- ARGV[3]  now (ms epoch)
-- ARGV[4]  limit
--
-- Returns {requeued, more (1: the limit was reached, call again), partition head, next
-- lease expiry left (-1: none), then queue_id, job_id, payload, -1 per discarded job}.

local channel, expire_interval = ARGV[1], tonumber(ARGV[2])
local now, limit = tonumber(ARGV[3]), tonumber(ARGV[4])

local function next_expiry()
   local first = redis.call('ZRANGE', ACTIVE, 0, 0, 'WITHSCORES')
   if first[2] and first[1] ~= '~' then
      return tonumber(first[2])
   end
   return -1
end

-- The requeuer calls every partition every round: one with nothing expired and no due
-- record in FORGET answers at once, and writes nothing (a resend may run again).
local err = wrong_type(ACTIVE, 'zset') or wrong_type(FORGET, 'zset')
if err then
   return err
end
local expired = redis.call('ZRANGEBYSCORE', ACTIVE, '-inf', now, 'LIMIT', 0, limit)
if #expired == 0 and #redis.call('ZRANGEBYSCORE', FORGET, '-inf', now, 'LIMIT', 0, 1) == 0 then
   return {0, 0, partition_head(), next_expiry()}
end
err = partition_error()
if err then
   return err
end
local requeued, ready_now = 0, 0
local discarded = {}
local queues, order, gone = {}, {}, {}
for _, field in ipairs(expired) do
   local queue_id, job_id = field:match('^([^:]+):(.+)$')
   local remaining = tonumber(redis.call('HGET', REQUEUES, field))
   redis.call('ZREM', ACTIVE, field)
   if remaining and remaining > -1 and remaining - 1 == -1 then
      discarded[#discarded + 1] = queue_id
      discarded[#discarded + 1] = job_id
      discarded[#discarded + 1] = redis.call('HGET', PAYLOAD, field) or ''
      discarded[#discarded + 1] = -1
      redis.call('HDEL', PAYLOAD, field)
      redis.call('HDEL', REQUEUES, field)
      gone[queue_id] = true
   else
      if remaining and remaining > -1 then
         redis.call('HSET', REQUEUES, field, remaining - 1)
      end
      -- Expired jobs come oldest lease first; each goes before the ones already back.
      if not queues[queue_id] then
         queues[queue_id] = {}
         order[#order + 1] = queue_id
      end
      table.insert(queues[queue_id], 1, job_id)
      requeued = requeued + 1
   end
end
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
for queue_id in pairs(gone) do
   if queue_length(queue_id) == 0 then
      defer_forget_interval(queue_id, now, expire_interval)
   end
end
if ready_now > 0 then
   redis.pcall('PUBLISH', channel, ready_now)
end
local more = 0
if #expired == limit then
   more = 1
else
   forget_due_intervals(now, expire_interval)
end
local result = {requeued, more, partition_head(), next_expiry()}
for _, value in ipairs(discarded) do
   result[#result + 1] = value
end
return reply(result)
