-- Clear one queue, atomically (SharQ 1.3.0 does this in several unguarded round trips).
--
-- KEYS[1]  key prefix P
-- ARGV[1]  queue type T
-- ARGV[2]  queue id Q
-- ARGV[3]  '1' to purge: also delete the queued jobs' payloads and requeue counts and the
--          queue's interval
--
-- Returns 1 when Q was in the ready set, 0 when it was not. The job list P:T:Q is deleted
-- either way, as SharQ does.

local prefix = KEYS[1]
local queue_type, queue_id, purge = ARGV[1], ARGV[2], ARGV[3] == '1'
local queue = queue_type .. ':' .. queue_id
local job_queue_key = prefix .. ':' .. queue

local was_ready = redis.call('ZREM', prefix .. ':' .. queue_type, queue_id)
if was_ready == 1 and redis.call('EXISTS', prefix .. ':' .. queue_type) == 0 then
   redis.call('SREM', prefix .. ':ready:queue_type', queue_type)
end
if was_ready == 1 and purge then
   local job_ids = redis.call('LRANGE', job_queue_key, 0, -1)
   local payload_key = prefix .. ':payload'
   local remaining_key = job_queue_key .. ':requeues_remaining'
   for _, job_id in ipairs(job_ids) do
      redis.call('HDEL', payload_key, queue .. ':' .. job_id)
      redis.call('HDEL', remaining_key, job_id)
   end
   redis.call('HDEL', prefix .. ':interval', queue)
end
redis.call('DEL', job_queue_key)
return was_ready
