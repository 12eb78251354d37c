-- Enqueue a batch of jobs (one job is a batch of one).
--
-- Each job has exactly the effects of SharQ 1.3.0's enqueue, so a job written here is
-- indistinguishable from one written by SharQ. The batch form only does less work per job:
-- one HMGET finds duplicates, multi-field HSETs write payloads, requeue counts and
-- intervals, one RPUSH and one ready-set check per queue, one update per counter key.
--
-- KEYS[1]  reply key (see _replies.lua)
-- KEYS[2]  "P:": the key prefix P and ':' (see _replies.lua)
-- ARGV[1]  now (ms epoch)
-- ARGV[2..] groups of 6: queue_type, queue_id, job_id, payload, interval, requeue_limit
--
-- Returns the 1-based positions (in the batch) of the jobs refused as duplicates: a job
-- whose payload field P:payload T:Q:J already exists is queued or active already, and
-- enqueueing it again would overwrite the first job's payload and queue its id twice.
-- A refused job changes nothing.
--
-- Waiting consumers (sharq_fast's dequeue with a timeout) listen on the channel P:.wake:T:
-- a call that makes queues of type T ready now publishes their number there, once. With
-- pcall: a user whose ACL refuses the channel still enqueues (waiters then find the jobs
-- by their bounded poll).

local prefix = declared_prefix(KEYS[2])
local now = tonumber(ARGV[1])
local payload_key = prefix .. ':payload'
local interval_key = prefix .. ':interval'

local minute = math.floor(now / 60000) * 60000
local counter_expiry = math.floor((minute + 600000) / 1000)

-- Bump a per-minute counter by n as n single SharQ increments would.
local function bump(key, n)
   -- INCRBY creates a missing counter with value n: then it is new and needs its expiry.
   -- pcall: a counter key holding something else must not fail a call that wrote jobs.
   if redis.pcall('INCRBY', key, n) == n then
      redis.call('EXPIREAT', key, counter_expiry)
   end
end

-- Calls with many arguments are sent in slices: unpack() is limited by Lua's C stack.
local SLICE = 1000
local function call_sliced(command, key, args)
   for s = 1, #args, SLICE do
      redis.call(command, key, unpack(args, s, math.min(s + SLICE - 1, #args)))
   end
end

-- (P:payload is vetted by the HMGET below, which comes before any write.)
local err = wrong_type(interval_key, 'hash')
for i = 2, NARGS, 6 do
   if err then
      return err
   end
   local ready_key = prefix .. ':' .. ARGV[i]
   local job_queue_key = ready_key .. ':' .. ARGV[i + 1]
   err = wrong_type(ready_key, 'zset') or wrong_type(job_queue_key, 'list')
      or wrong_type(job_queue_key .. ':requeues_remaining', 'hash')
end
if err then
   return err
end

-- Which jobs exist already: one HMGET for the whole batch.
local fields = {}
for i = 2, NARGS, 6 do
   fields[#fields + 1] = ARGV[i] .. ':' .. ARGV[i + 1] .. ':' .. ARGV[i + 2]
end
local existing = {}
for s = 1, #fields, SLICE do
   local found = redis.call('HMGET', payload_key, unpack(fields, s, math.min(s + SLICE - 1, #fields)))
   for k = 1, #found do
      existing[s + k - 1] = found[k]
   end
end

local queues = {}      -- queue -> {type, id, first interval, last interval, job ids, requeue pairs}
local order = {}       -- queues in order of first appearance
local payloads = {}    -- field, payload pairs of the new jobs
local seen = {}        -- fields of this batch, to refuse a duplicate inside it
local duplicates = {}
local queued = 0

for n = 1, #fields do
   local i = 2 + (n - 1) * 6
   local field = fields[n]
   if existing[n] or seen[field] then
      duplicates[#duplicates + 1] = n
   else
      seen[field] = true
      local queue_type, queue_id, interval = ARGV[i], ARGV[i + 1], ARGV[i + 4]
      local queue = queue_type .. ':' .. queue_id
      local q = queues[queue]
      if not q then
         q = {queue_type, queue_id, interval, interval, {}, {}}
         queues[queue] = q
         order[#order + 1] = queue
      end
      q[4] = interval
      q[5][#q[5] + 1] = ARGV[i + 2]
      q[6][#q[6] + 1] = ARGV[i + 2]
      q[6][#q[6] + 1] = ARGV[i + 5]
      payloads[#payloads + 1] = field
      payloads[#payloads + 1] = ARGV[i + 3]
      queued = queued + 1
   end
end

call_sliced('HSET', payload_key, payloads)
local intervals = {}
local newly_ready = {}  -- queue type -> score, queue_id pairs to add
local ready_now = {}    -- queue type -> how many of its queues became ready now
local ready_order = {}
for _, queue in ipairs(order) do
   local q = queues[queue]
   local queue_type, queue_id, first_interval, last_interval, job_ids = q[1], q[2], q[3], q[4], q[5]
   local job_queue_key = prefix .. ':' .. queue
   call_sliced('HSET', job_queue_key .. ':requeues_remaining', q[6])
   call_sliced('RPUSH', job_queue_key, job_ids)
   intervals[#intervals + 1] = queue
   intervals[#intervals + 1] = last_interval
   if not redis.call('ZSCORE', prefix .. ':' .. queue_type, queue_id) then
      -- pcall: a time keeper holding something else counts as none.
      local last_dequeue = tonumber(redis.pcall('GET', job_queue_key .. ':time'))
      local ready_at = now
      if last_dequeue then
         -- SharQ uses the interval of the job that made the queue ready.
         ready_at = tonumber(first_interval) + tonumber(last_dequeue)
      end
      local pairs_of_type = newly_ready[queue_type]
      if not pairs_of_type then
         pairs_of_type = {}
         newly_ready[queue_type] = pairs_of_type
         ready_now[queue_type] = 0
         ready_order[#ready_order + 1] = queue_type
      end
      pairs_of_type[#pairs_of_type + 1] = ready_at
      pairs_of_type[#pairs_of_type + 1] = queue_id
      if ready_at <= now then
         ready_now[queue_type] = ready_now[queue_type] + 1
      end
   end
   bump(job_queue_key .. ':enqueue_counter:' .. minute, #job_ids)
end
call_sliced('HSET', interval_key, intervals)
-- Queues are distinct, so adding them to their ready sets together changes nothing.
for _, queue_type in ipairs(ready_order) do
   redis.pcall('SADD', prefix .. ':ready:queue_type', queue_type)  -- an index for metrics
   call_sliced('ZADD', prefix .. ':' .. queue_type, newly_ready[queue_type])
   if ready_now[queue_type] > 0 then
      redis.pcall('PUBLISH', prefix .. ':.wake:' .. queue_type, ready_now[queue_type])
   end
end

if queued > 0 then
   bump(prefix .. ':enqueue_counter:' .. minute, queued)
end

return reply(duplicates)
