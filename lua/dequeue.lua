-- Dequeue up to `count` jobs of one queue type (one job is count = 1).
--
-- The result equals `count` successive SharQ 1.3.0 dequeues at the same instant: each
-- round takes the ready queue with the lowest (score, queue_id), so a queue with an
-- interval > 0 gives at most one job per call and a queue with interval 0 as many as it
-- has. Unlike SharQ, finding that queue costs O(log N) (ZRANGEBYSCORE ... LIMIT 0 1), not
-- a scan of every ready queue.
--
-- A job id whose payload is missing (a duplicate id written by an older client, or a
-- purge race) is an orphan: it cannot be delivered, so it is dropped from the queue
-- instead of being moved to the active set and reported as a failure, as SharQ does.
--
-- KEYS[1]  key prefix P
-- KEYS[2]  queue type T
-- ARGV[1]  now (ms epoch)
-- ARGV[2]  job_expire_interval (ms)
-- ARGV[3]  count
--
-- Returns a flat array: queue_id, job_id, payload, requeues_remaining per job.

local prefix = KEYS[1]
local queue_type = KEYS[2]
local now = tonumber(ARGV[1])
local expire_interval = tonumber(ARGV[2])
local count = tonumber(ARGV[3])

local ready_key = prefix .. ':' .. queue_type
local active_key = ready_key .. ':active'
local payload_key = prefix .. ':payload'
local interval_key = prefix .. ':interval'
local minute = math.floor(now / 60000) * 60000
local counter_expiry = math.floor((minute + 600000) / 1000)
local max_orphans = 1000  -- keeps one call bounded even on a queue full of orphans

local function bump(key, n)
   if redis.call('EXISTS', key) == 1 then
      redis.call('INCRBY', key, n)
   else
      redis.call('SET', key, n)
      redis.call('EXPIREAT', key, counter_expiry)
   end
end

local result = {}
local per_queue = {}   -- queue_id -> jobs dequeued from it in this call
local queue_order = {}
local dequeued = 0
local orphans = 0

while dequeued < count do
   local ready = redis.call('ZRANGEBYSCORE', ready_key, 0, now, 'LIMIT', 0, 1)
   local queue_id = ready[1]
   if not queue_id then
      break
   end
   local queue = queue_type .. ':' .. queue_id
   local job_queue_key = ready_key .. ':' .. queue_id
   local job_id, payload
   repeat
      job_id = redis.call('LPOP', job_queue_key)
      payload = job_id and redis.call('HGET', payload_key, queue .. ':' .. job_id)
      if job_id and not payload then
         orphans = orphans + 1
      end
   until payload or not job_id or orphans >= max_orphans

   if payload then
      redis.call('PSETEX', job_queue_key .. ':time', expire_interval, now)
   end
   if redis.call('EXISTS', job_queue_key) == 0 then
      redis.call('ZREM', ready_key, queue_id)
      if redis.call('EXISTS', ready_key) == 0 then
         redis.call('SREM', prefix .. ':ready:queue_type', queue_type)
      end
   elseif payload then
      local interval = tonumber(redis.call('HGET', interval_key, queue))
      redis.call('ZADD', ready_key, now + (interval or 0), queue_id)
   end
   if not payload then
      if orphans >= max_orphans then
         break
      end
   else
      redis.call('ZADD', active_key, now + expire_interval, queue_id .. ':' .. job_id)
      local remaining = redis.call('HGET', ready_key .. ':' .. queue_id .. ':requeues_remaining', job_id)
      result[#result + 1] = queue_id
      result[#result + 1] = job_id
      result[#result + 1] = payload
      result[#result + 1] = remaining or '-1'
      dequeued = dequeued + 1
      if not per_queue[queue_id] then
         per_queue[queue_id] = 0
         queue_order[#queue_order + 1] = queue_id
      end
      per_queue[queue_id] = per_queue[queue_id] + 1
   end
end

if dequeued > 0 then
   redis.call('SADD', prefix .. ':active:queue_type', queue_type)
   bump(prefix .. ':dequeue_counter:' .. minute, dequeued)
   for _, queue_id in ipairs(queue_order) do
      bump(ready_key .. ':' .. queue_id .. ':dequeue_counter:' .. minute, per_queue[queue_id])
   end
end

return result
