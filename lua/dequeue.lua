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
local active = {}      -- score, member pairs for one ZADD at the end
local queues = {}      -- queue_id -> what this call knows of that queue
local queue_order = {}
local dequeued = 0
local orphans = 0

-- Per job this costs four Redis calls (find the ready queue, LPOP, two HGETs); the
-- queue's length and interval are read once per call, and what SharQ writes again
-- and again with the same value (time keeper, active set) is written once at the end.
while dequeued < count do
   local ready = redis.call('ZRANGEBYSCORE', ready_key, 0, now, 'WITHSCORES', 'LIMIT', 0, 1)
   local queue_id = ready[1]
   if not queue_id then
      break
   end
   local job_queue_key = ready_key .. ':' .. queue_id
   local q = queues[queue_id]
   if not q then
      q = {length = redis.call('LLEN', job_queue_key), dequeued = 0}
      queues[queue_id] = q
      queue_order[#queue_order + 1] = queue_id
   end
   local field_prefix = queue_type .. ':' .. queue_id .. ':'
   local job_id, payload
   repeat
      job_id = redis.call('LPOP', job_queue_key)
      payload = nil
      if job_id then
         q.length = q.length - 1
         payload = redis.call('HGET', payload_key, field_prefix .. job_id)
         if not payload then
            orphans = orphans + 1
         end
      end
   until payload or not job_id or orphans >= max_orphans

   if q.length <= 0 then
      redis.call('ZREM', ready_key, queue_id)
      if redis.call('EXISTS', ready_key) == 0 then
         redis.call('SREM', prefix .. ':ready:queue_type', queue_type)
      end
   elseif payload then
      if q.interval == nil then
         q.interval = tonumber(redis.call('HGET', interval_key, queue_type .. ':' .. queue_id)) or 0
      end
      local ready_at = now + q.interval
      if ready_at ~= tonumber(ready[2]) then
         redis.call('ZADD', ready_key, ready_at, queue_id)
      end
   end
   if payload then
      local remaining = redis.call('HGET', job_queue_key .. ':requeues_remaining', job_id)
      result[#result + 1] = queue_id
      result[#result + 1] = job_id
      result[#result + 1] = payload
      result[#result + 1] = remaining or '-1'
      active[#active + 1] = now + expire_interval
      active[#active + 1] = queue_id .. ':' .. job_id
      q.dequeued = q.dequeued + 1
      dequeued = dequeued + 1
   elseif orphans >= max_orphans then
      break
   end
end

if dequeued > 0 then
   -- ZADD in slices: unpack() is limited by Lua's C stack.
   for s = 1, #active, 1000 do
      redis.call('ZADD', active_key, unpack(active, s, math.min(s + 999, #active)))
   end
   redis.call('SADD', prefix .. ':active:queue_type', queue_type)
   bump(prefix .. ':dequeue_counter:' .. minute, dequeued)
   for _, queue_id in ipairs(queue_order) do
      local q = queues[queue_id]
      if q.dequeued > 0 then
         local job_queue_key = ready_key .. ':' .. queue_id
         redis.call('PSETEX', job_queue_key .. ':time', expire_interval, now)
         bump(job_queue_key .. ':dequeue_counter:' .. minute, q.dequeued)
      end
   end
end

return result
