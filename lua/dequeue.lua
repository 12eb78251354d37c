-- Dequeue up to `count` jobs of one queue type (one job is count = 1).
--
-- The result equals `count` successive SharQ 1.3.0 dequeues at the same instant: each
-- round takes the ready queue with the lowest (score, queue_id), so a queue with an
-- interval > 0 gives at most one job per call and a queue with interval 0 as many as it
-- has. Unlike SharQ, finding that queue costs O(log N) (ZRANGEBYSCORE ... LIMIT 0 1), not
-- a scan of every ready queue.
--
-- A job id whose payload is missing (a duplicate id written by an older client, or a
-- purge race) is an orphan: it cannot be delivered, so it is dropped from the queue (with
-- its requeue count) instead of being moved to the active set and reported as a failure,
-- as SharQ does.
--
-- KEYS[1]  reply key (see _replies.lua)
-- KEYS[2]  "P:": the key prefix P and ':' (see _replies.lua)
-- KEYS[3]  P:T, the ready set of queue type T
-- ARGV[1]  now (ms epoch)
-- ARGV[2]  job_expire_interval (ms)
-- ARGV[3]  count
-- ARGV[4]  (optional) 1: also tell the length of the first job's queue (see below)
--
-- Returns a flat array: when no job was dequeued, the lowest score left in the ready set
-- (the time at which the next queue becomes ready; else, or when none is left, -1), the
-- jobs' lease expiry (their score in
-- the active set, now + job_expire_interval), then queue_id, job_id, payload,
-- requeues_remaining per job. With ARGV[4] = 1, the number of jobs left in the queue of
-- the first job right after the call (0 when no job was taken) comes before the jobs:
-- sharq-server answers a dequeue with that length, and this saves it a second round trip.

local prefix = declared_prefix(KEYS[2])
local queue_type = string.sub(KEYS[3], #KEYS[2] + 1)
local now = tonumber(ARGV[1])
local expire_interval = tonumber(ARGV[2])
local count = tonumber(ARGV[3])
local with_length = NARGS >= 4 and ARGV[4] == '1'

local ready_key = prefix .. ':' .. queue_type
local active_key = ready_key .. ':active'
local payload_key = prefix .. ':payload'
local interval_key = prefix .. ':interval'
local minute = math.floor(now / 60000) * 60000
local counter_expiry = math.floor((minute + 600000) / 1000)
local max_orphans = 1000  -- keeps one call bounded even on a queue full of orphans

local function bump(key, n)
   -- INCRBY creates a missing counter with value n: then it is new and needs its expiry.
   -- pcall: a counter key holding something else must not fail a call that took jobs.
   if redis.pcall('INCRBY', key, n) == n then
      redis.call('EXPIREAT', key, counter_expiry)
   end
end

-- A queue's own keys holding another type (data that is not SharQ's) would make a
-- command fail after jobs were popped, and Redis does not roll a script back: such a
-- queue stops the call before anything of it changes (with an error if nothing was taken).
-- (Any other failure, as a command an ACL user may not run, is answered as it is.)
local function queue_error(queue_id, failed)
   if not string.find(failed.err, 'WRONGTYPE', 1, true) then
      return redis.error_reply(failed.err .. ' (queue ' .. queue_type .. ':' .. queue_id
         .. '; nothing was dequeued from it)')
   end
   return redis.error_reply('WRONGTYPE a key of queue ' .. queue_type .. ':' .. queue_id
      .. ' holds another type; nothing was dequeued from it')
end

-- The active set and its index are written after jobs were popped: vetted first. (The
-- ready set is vetted by the first ZRANGEBYSCORE; the payload and interval reads are
-- pcalls that stop the call before a queue they fail on.)
local err = wrong_type(active_key, 'zset') or wrong_type(prefix .. ':active:queue_type', 'set')
if err then
   return err
end

local expires_at = now + expire_interval
local result = {-1, expires_at}
if with_length then
   result[3] = 0
end
local active = {}      -- score, member pairs for one ZADD at the end
local queues = {}      -- queue_id -> what this call knows of that queue
local queue_order = {}
local dequeued = 0
local orphans = 0

-- Each round serves the first ready queue, as one SharQ dequeue would. A queue whose
-- interval is 0 and whose score is already `now` stays the first ready queue after a
-- dequeue (its score does not change), so the next rounds would serve it again: take
-- those jobs in one go. The queue's length and interval are read once per call, and
-- what SharQ writes again and again with the same value (time keeper, active set
-- score) is written once at the end.
while dequeued < count and orphans < max_orphans do
   local ready = redis.call('ZRANGEBYSCORE', ready_key, 0, now, 'WITHSCORES', 'LIMIT', 0, 1)
   local queue_id = ready[1]
   if not queue_id then
      break
   end
   local score = tonumber(ready[2])
   local job_queue_key = ready_key .. ':' .. queue_id
   local q = queues[queue_id]
   if not q then
      local length = redis.pcall('LLEN', job_queue_key)
      if type(length) == 'table' then
         if dequeued > 0 then
            break
         end
         return queue_error(queue_id, length)
      end
      local interval = redis.pcall('HGET', interval_key, queue_type .. ':' .. queue_id)
      if type(interval) == 'table' and interval.err then
         if dequeued > 0 then
            break
         end
         return queue_error(queue_id, interval)
      end
      q = {length = length, interval = tonumber(interval) or 0, dequeued = 0}
      queues[queue_id] = q
      queue_order[#queue_order + 1] = queue_id
   end

   local job_ids
   if q.interval == 0 and score == now and q.length > 1 and count - dequeued > 1 then
      local take = math.min(count - dequeued, q.length)
      job_ids = redis.call('LRANGE', job_queue_key, 0, take - 1)
      redis.call('LTRIM', job_queue_key, take, -1)
   else
      job_ids = {redis.call('LPOP', job_queue_key)}
      if not job_ids[1] then
         job_ids = {}
      end
   end
   q.length = q.length - #job_ids

   local delivered = 0
   if #job_ids > 0 then
      local fields = {}
      for k, job_id in ipairs(job_ids) do
         fields[k] = queue_type .. ':' .. queue_id .. ':' .. job_id
      end
      local payloads = redis.pcall('HMGET', payload_key, unpack(fields))
      local remaining = redis.pcall('HMGET', job_queue_key .. ':requeues_remaining', unpack(job_ids))
      if payloads.err or remaining.err then
         -- Put the popped ids back, in order, and stop before this queue.
         for k = #job_ids, 1, -1 do
            redis.call('LPUSH', job_queue_key, job_ids[k])
         end
         if dequeued > 0 then
            break
         end
         return queue_error(queue_id, payloads.err and payloads or remaining)
      end
      for k, job_id in ipairs(job_ids) do
         if payloads[k] then
            result[#result + 1] = queue_id
            result[#result + 1] = job_id
            result[#result + 1] = payloads[k]
            result[#result + 1] = remaining[k] or '-1'
            active[#active + 1] = expires_at
            active[#active + 1] = queue_id .. ':' .. job_id
            delivered = delivered + 1
         else
            -- An orphan: dropped with its requeue count (it is no job any more), and the
            -- next job of this queue is served instead.
            redis.pcall('HDEL', job_queue_key .. ':requeues_remaining', job_id)
            orphans = orphans + 1
         end
      end
   end
   q.dequeued = q.dequeued + delivered
   dequeued = dequeued + delivered

   if q.length <= 0 then
      redis.call('ZREM', ready_key, queue_id)
      if redis.call('EXISTS', ready_key) == 0 then
         redis.pcall('SREM', prefix .. ':ready:queue_type', queue_type)  -- an index for metrics
      end
   elseif delivered > 0 and now + q.interval ~= score then
      redis.call('ZADD', ready_key, now + q.interval, queue_id)
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

if with_length and result[4] then
   result[3] = redis.call('LLEN', ready_key .. ':' .. result[4])  -- the first job's queue
end
if dequeued == 0 then
   -- For a caller that waits: when the next queue becomes ready.
   local head = redis.call('ZRANGE', ready_key, 0, 0, 'WITHSCORES')
   if head[2] then
      result[1] = tonumber(head[2])
   end
   if orphans == 0 then
      return result  -- nothing changed: a resend may run again (waiting consumers poll this)
   end
end
return reply(result)
