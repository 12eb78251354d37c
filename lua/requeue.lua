-- Requeue up to `limit` expired active jobs of one queue type, as SharQ 1.3.0's requeue.
--
-- The client calls this until it reports no more work, so tens of thousands of expired
-- jobs are handled in bounded steps instead of one long blocking call.
--
-- A job whose requeues run out is discarded here, atomically, with exactly the effects of
-- SharQ's discard-then-finish; SharQ leaves that finish to the client, and a client that
-- dies in between leaves a job that is then requeued forever. The discarded job's payload
-- is returned so that the caller can log or keep it.
--
-- KEYS[1]  key prefix P
-- KEYS[2]  queue type T
-- ARGV[1]  now (ms epoch)
-- ARGV[2]  limit: at most this many expired jobs are handled by this call
--
-- Returns { requeued, more, then queue_id, job_id, payload, -1 for each discarded job },
-- where `more` is 1 when the limit was reached (call again) and 0 otherwise.

local prefix = KEYS[1]
local queue_type = KEYS[2]
local now = ARGV[1]
local limit = tonumber(ARGV[2])

local ready_key = prefix .. ':' .. queue_type
local active_key = ready_key .. ':active'
local payload_key = prefix .. ':payload'
local interval_key = prefix .. ':interval'

local expired = redis.call('ZRANGEBYSCORE', active_key, 0, now, 'LIMIT', 0, limit)
local requeued = 0
local discarded = {}

for _, member in ipairs(expired) do
   local queue_id, job_id = member:match('^([^:]+):(.+)$')
   local queue = queue_type .. ':' .. queue_id
   local job_queue_key = ready_key .. ':' .. queue_id
   local remaining_key = job_queue_key .. ':requeues_remaining'
   local remaining = tonumber(redis.call('HGET', remaining_key, job_id))
   redis.call('ZREM', active_key, member)
   if remaining and remaining > -1 and remaining - 1 == -1 then
      -- Out of requeues: discard, as SharQ's finish would.
      local payload = redis.call('HGET', payload_key, queue .. ':' .. job_id)
      discarded[#discarded + 1] = queue_id
      discarded[#discarded + 1] = job_id
      discarded[#discarded + 1] = payload or ''
      discarded[#discarded + 1] = '-1'
      redis.call('HDEL', payload_key, queue .. ':' .. job_id)
      if redis.call('EXISTS', job_queue_key) == 0 then
         redis.call('HDEL', interval_key, queue)
      end
      redis.call('HDEL', remaining_key, job_id)
   else
      if remaining and remaining > -1 then
         redis.call('HSET', remaining_key, job_id, remaining - 1)
      end
      -- Back to the front of its queue.
      if redis.call('LPUSH', job_queue_key, job_id) == 1 then
         local ready_at = now
         local last_dequeue = tonumber(redis.call('GET', job_queue_key .. ':time'))
         local interval = tonumber(redis.call('HGET', interval_key, queue))
         if last_dequeue and interval then
            ready_at = last_dequeue + interval
         end
         redis.call('ZADD', ready_key, ready_at, queue_id)
         redis.call('SADD', prefix .. ':ready:queue_type', queue_type)
      end
      requeued = requeued + 1
   end
end

if redis.call('EXISTS', active_key) == 0 then
   redis.call('SREM', prefix .. ':active:queue_type', queue_type)
end

local more = 0
if #expired == limit then
   more = 1
end
local result = {requeued, more}
for _, value in ipairs(discarded) do
   result[#result + 1] = value
end
return result
