-- Enqueue a batch of jobs (one job is a batch of one).
--
-- Each job has exactly the effects of SharQ 1.3.0's enqueue, so a job written here is
-- indistinguishable from one written by SharQ. The batch form only does less work per job:
-- one interval write and one ready-set check per queue, one RPUSH per queue, and one
-- counter update per counter key.
--
-- KEYS[1]  key prefix P
-- ARGV[1]  now (ms epoch)
-- ARGV[2..] groups of 6: queue_type, queue_id, job_id, payload, interval, requeue_limit
--
-- Returns the 1-based positions (in the batch) of the jobs refused as duplicates: a job
-- whose payload field P:payload T:Q:J already exists is queued or active already, and
-- enqueueing it again would overwrite the first job's payload and queue its id twice.
-- A refused job changes nothing.

local prefix = KEYS[1]
local now = tonumber(ARGV[1])
local payload_key = prefix .. ':payload'
local interval_key = prefix .. ':interval'

local minute = math.floor(now / 60000) * 60000
local counter_expiry = math.floor((minute + 600000) / 1000)

-- Bump a per-minute counter by n as n single SharQ increments would.
local function bump(key, n)
   if redis.call('EXISTS', key) == 1 then
      redis.call('INCRBY', key, n)
   else
      redis.call('SET', key, n)
      redis.call('EXPIREAT', key, counter_expiry)
   end
end

local queues = {}      -- queue key -> {type, id, first interval, last interval, job ids}
local order = {}       -- queue keys in order of first appearance
local duplicates = {}
local queued = 0

for i = 2, #ARGV, 6 do
   local queue_type, queue_id, job_id = ARGV[i], ARGV[i + 1], ARGV[i + 2]
   local interval = ARGV[i + 4]
   local queue = queue_type .. ':' .. queue_id
   if redis.call('HSETNX', payload_key, queue .. ':' .. job_id, ARGV[i + 3]) == 0 then
      duplicates[#duplicates + 1] = (i + 4) / 6
   else
      redis.call('HSET', prefix .. ':' .. queue .. ':requeues_remaining', job_id, ARGV[i + 5])
      local q = queues[queue]
      if not q then
         q = {queue_type, queue_id, interval, interval, {}}
         queues[queue] = q
         order[#order + 1] = queue
      end
      q[4] = interval
      q[5][#q[5] + 1] = job_id
      queued = queued + 1
   end
end

for _, queue in ipairs(order) do
   local q = queues[queue]
   local queue_type, queue_id, first_interval, last_interval, job_ids = q[1], q[2], q[3], q[4], q[5]
   local job_queue_key = prefix .. ':' .. queue
   -- RPUSH in slices: unpack() is limited by Lua's C stack.
   for s = 1, #job_ids, 1000 do
      redis.call('RPUSH', job_queue_key, unpack(job_ids, s, math.min(s + 999, #job_ids)))
   end
   redis.call('HSET', interval_key, queue, last_interval)
   local ready_key = prefix .. ':' .. queue_type
   if not redis.call('ZSCORE', ready_key, queue_id) then
      redis.call('SADD', prefix .. ':ready:queue_type', queue_type)
      local last_dequeue = redis.call('GET', job_queue_key .. ':time')
      local ready_at = now
      if last_dequeue then
         -- SharQ uses the interval of the job that made the queue ready.
         ready_at = tonumber(first_interval) + tonumber(last_dequeue)
      end
      redis.call('ZADD', ready_key, ready_at, queue_id)
   end
   bump(job_queue_key .. ':enqueue_counter:' .. minute, #job_ids)
end

if queued > 0 then
   bump(prefix .. ':enqueue_counter:' .. minute, queued)
end

return duplicates
