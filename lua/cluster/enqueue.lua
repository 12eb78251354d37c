-- Enqueue a batch of jobs of one partition (cluster layout; one job is a batch of one).
-- Each job has the effects of SharQ's enqueue, in this layout: appended to its queue,
-- payload, requeue limit and interval stored, the queue made ready if it was not (now, or
-- time keeper + interval), counters bumped.
--
-- KEYS     the partition's keys (_partition.lua)
-- ARGV[1]  the queue type's wake-up channel P:.wake:T (see _waker.py)
-- ARGV[2]  job_expire_interval (ms: how long a time keeper counts)
-- ARGV[3]  now (ms epoch)
-- ARGV[4..] groups of 6: queue_type, queue_id, job_id, payload, interval, requeue_limit
--
-- Returns {partition head after the call, 1-based positions of the jobs refused as
-- duplicates...}: a job whose payload field Q:J exists is queued or active already.

local channel = ARGV[1]
local expire_interval = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
local err = partition_error()
if err then
   return err
end

local fields = {}
for i = 4, NARGS, 6 do
   fields[#fields + 1] = ARGV[i + 1] .. ':' .. ARGV[i + 2]
end
local existing = {}
for s = 1, #fields, SLICE do
   local found = redis.call('HMGET', PAYLOAD, unpack(fields, s, math.min(s + SLICE - 1, #fields)))
   for k = 1, #found do
      existing[s + k - 1] = found[k]
   end
end

local queues, order, payloads, limits, seen, duplicates = {}, {}, {}, {}, {}, {}
local queued = 0
for n = 1, #fields do
   local i = 4 + (n - 1) * 6
   local field = fields[n]
   if existing[n] or seen[field] then
      duplicates[#duplicates + 1] = n
   else
      seen[field] = true
      local queue_id, interval = ARGV[i + 1], ARGV[i + 4]
      local q = queues[queue_id]
      if not q then
         q = {first = interval, last = interval, job_ids = {}}
         queues[queue_id] = q
         order[#order + 1] = queue_id
      end
      q.last = interval
      q.job_ids[#q.job_ids + 1] = ARGV[i + 2]
      payloads[#payloads + 1] = field
      payloads[#payloads + 1] = ARGV[i + 3]
      limits[#limits + 1] = field
      limits[#limits + 1] = ARGV[i + 5]
      queued = queued + 1
   end
end

local function call_sliced(command, key, args)
   for s = 1, #args, SLICE do
      redis.call(command, key, unpack(args, s, math.min(s + SLICE - 1, #args)))
   end
end

if queued > 0 then
   call_sliced('HSET', PAYLOAD, payloads)
   call_sliced('HSET', REQUEUES, limits)
   local last = SEQ_BASE + redis.call('INCRBY', SEQ, queued) - queued
   local members, intervals, ready = {}, {}, {}
   local ready_now = 0
   for _, queue_id in ipairs(order) do
      local q = queues[queue_id]
      for _, job_id in ipairs(q.job_ids) do
         last = last + 1
         members[#members + 1] = 0
         members[#members + 1] = job_member(queue_id, last, job_id)
      end
      intervals[#intervals + 1] = queue_id
      intervals[#intervals + 1] = q.last
      if not redis.call('ZSCORE', READY, queue_id) then
         -- SharQ uses the interval of the job that made the queue ready.
         local ready_at = ready_time(queue_id, tonumber(q.first), now, expire_interval)
         ready[#ready + 1] = ready_at
         ready[#ready + 1] = queue_id
         if ready_at <= now then
            ready_now = ready_now + 1
         end
      end
      bump('e:' .. queue_id, #q.job_ids, now)
   end
   call_sliced('ZADD', JOBS, members)
   call_sliced('HSET', INTERVAL, intervals)
   if #ready > 0 then
      call_sliced('ZADD', READY, ready)
   end
   bump('e', queued, now)
   if ready_now > 0 then
      -- PUBLISH reaches the subscribers of every node of the cluster.
      redis.pcall('PUBLISH', channel, ready_now)
   end
end

local result = {partition_head()}
for _, position in ipairs(duplicates) do
   result[#result + 1] = position
end
return reply(result)
