-- Requeue up to `limit` expired active jobs of one queue type, as SharQ 1.3.0's requeue.
--
-- The client calls this until it reports no more work, so tens of thousands of expired
-- jobs are handled in bounded steps instead of one long blocking call.
--
-- A job whose requeues run out is discarded here, atomically, with exactly the effects of
-- SharQ's discard-then-finish but one: the queue's interval is kept. SharQ finishes the
-- discarded jobs after its whole requeue, when the other expired jobs of their queues are
-- back in the queue; the client does the same with forget_intervals.lua once every step
-- has run. (Deleting it here, while a queue is momentarily empty, would let the queue's
-- next jobs go out without their interval.) The discarded job's payload is returned so
-- that the caller can log or keep it.
--
-- KEYS[1]  reply key (see _replies.lua)
-- KEYS[2]  "P:": the key prefix P and ':' (see _replies.lua)
-- KEYS[3]  P:T, the ready set of queue type T
-- ARGV[1]  now (ms epoch)
-- ARGV[2]  limit: at most this many expired jobs are handled by this call
-- ARGV[3]  offset: expired jobs skipped by earlier steps (their queue's keys hold another
--          type: they are left alone, and reported, rather than stop the requeue)
--
-- Returns { requeued, more, skipped, next expiry (the lowest score left in the active set,
-- -1 when it is empty), then queue_id, job_id, payload, -1 for each discarded job }, where
-- `more` is 1 when the limit was reached (call again) and 0 otherwise.

local prefix = declared_prefix(KEYS[2])
local queue_type = string.sub(KEYS[3], #KEYS[2] + 1)
local now = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local offset = tonumber(ARGV[3])

local ready_key = prefix .. ':' .. queue_type
local active_key = ready_key .. ':active'
local payload_key = prefix .. ':payload'

-- The ready set is written after jobs left the active set: vetted first (the active set
-- is vetted by the ZRANGEBYSCORE below; payload and interval reads are pcalls).
local err = wrong_type(ready_key, 'zset')
if err then
   return err
end

local expired = redis.call('ZRANGEBYSCORE', active_key, 0, now, 'LIMIT', offset, limit)

-- First pass: which jobs belong to queues whose keys hold another type.
local bad_queue = {}
for _, member in ipairs(expired) do
   local queue_id = member:match('^([^:]+):') or member
   if bad_queue[queue_id] == nil then
      local job_queue_key = ready_key .. ':' .. queue_id
      bad_queue[queue_id] = (wrong_type(job_queue_key, 'list')
         or wrong_type(job_queue_key .. ':requeues_remaining', 'hash')) ~= nil
   end
end

local requeued = 0
local skipped = 0
local discarded = {}
local ready_now = 0

for _, member in ipairs(expired) do
   local queue_id, job_id = member:match('^([^:]+):(.+)$')
   if not queue_id or bad_queue[queue_id] then
      skipped = skipped + 1
   else
      local queue = queue_type .. ':' .. queue_id
      local job_queue_key = ready_key .. ':' .. queue_id
      local remaining_key = job_queue_key .. ':requeues_remaining'
      local remaining = tonumber(redis.call('HGET', remaining_key, job_id))
      redis.call('ZREM', active_key, member)
      if remaining and remaining > -1 and remaining - 1 == -1 then
         -- Out of requeues: discard, as SharQ's finish would (but for the interval).
         local payload = redis.pcall('HGET', payload_key, queue .. ':' .. job_id)
         if type(payload) ~= 'string' then
            payload = ''
         end
         discarded[#discarded + 1] = queue_id
         discarded[#discarded + 1] = job_id
         discarded[#discarded + 1] = payload
         discarded[#discarded + 1] = -1
         redis.pcall('HDEL', payload_key, queue .. ':' .. job_id)
         redis.call('HDEL', remaining_key, job_id)
      else
         if remaining and remaining > -1 then
            redis.call('HSET', remaining_key, job_id, remaining - 1)
         end
         -- Back to the front of its queue.
         if redis.call('LPUSH', job_queue_key, job_id) == 1
            and back_in_ready_set(prefix, queue_type, queue_id, now) then
            ready_now = ready_now + 1
         end
         requeued = requeued + 1
      end
   end
end

if redis.call('EXISTS', active_key) == 0 then
   redis.pcall('SREM', prefix .. ':active:queue_type', queue_type)
end
if ready_now > 0 then
   redis.pcall('PUBLISH', prefix .. ':.wake:' .. queue_type, ready_now)
end

local more = 0
if #expired == limit then
   more = 1
end
local next_expiry = -1
local head = redis.call('ZRANGE', active_key, 0, 0, 'WITHSCORES')
if head[2] then
   next_expiry = tonumber(head[2])
end
local result = {requeued, more, skipped, next_expiry}
for _, value in ipairs(discarded) do
   result[#result + 1] = value
end
return reply(result)
