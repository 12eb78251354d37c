-- Clear one queue, atomically (SharQ 1.3.0 does this in several unguarded round trips).
--
-- KEYS[1]  key prefix P
-- ARGV[1]  queue type T
-- ARGV[2]  queue id Q
-- ARGV[3]  '1' to purge: the queued jobs' payloads and requeue counts and the queue's
--          interval go too
-- ARGV[4]  with purge: the key to move the job list to; purge_jobs.lua then deletes its
--          jobs in bounded steps, so that a long queue never blocks Redis for long
--
-- Returns 1 when Q was in the ready set, 0 when it was not. The job list P:T:Q is gone
-- either way, as in SharQ (which purges only when Q was ready).

local prefix = KEYS[1]
local queue_type, queue_id, purge, purge_key = ARGV[1], ARGV[2], ARGV[3] == '1', ARGV[4]
local queue = queue_type .. ':' .. queue_id
local job_queue_key = prefix .. ':' .. queue

local was_ready = redis.call('ZREM', prefix .. ':' .. queue_type, queue_id)
if was_ready == 1 and redis.call('EXISTS', prefix .. ':' .. queue_type) == 0 then
   redis.call('SREM', prefix .. ':ready:queue_type', queue_type)
end
if was_ready == 1 and purge then
   redis.call('HDEL', prefix .. ':interval', queue)
   if redis.call('EXISTS', job_queue_key) == 1 then
      redis.call('RENAME', job_queue_key, purge_key)
   end
else
   -- UNLINK: the same as SharQ's DEL, but a long list is freed in the background.
   redis.call('UNLINK', job_queue_key)
end
return was_ready
