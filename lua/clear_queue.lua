-- Clear one queue, atomically (SharQ 1.3.0 does this in several unguarded round trips).
--
-- KEYS[1]  reply key (see _replies.lua)
-- KEYS[2]  "P:": the key prefix P and ':' (see _replies.lua)
-- KEYS[3]  the key to move the job list to, P:.purging:T:Q:<unique>: purge_jobs.lua then
--          deletes the cleared jobs' payloads and requeue counts from it in bounded steps,
--          so that a long queue never blocks Redis for long. It is listed in the set
--          P:.purging until done, so that a purge cut short is finished later (requeue).
-- ARGV[1]  queue type T
-- ARGV[2]  queue id Q
-- ARGV[3]  '1' to purge all: the queue's interval goes too (SharQ's purge_all)
--
-- Unlike SharQ, the cleared jobs' payloads always go (SharQ left them without purge_all:
-- then no job id of them could ever be enqueued again).
--
-- Returns {1 when Q was in the ready set else 0, 1 when there are jobs to purge else 0}.
-- The job list P:T:Q is gone either way, as in SharQ.

local prefix, purge_key = declared_prefix(KEYS[2]), KEYS[3]
local queue_type, queue_id, purge_all = ARGV[1], ARGV[2], ARGV[3] == '1'
local queue = queue_type .. ':' .. queue_id
local ready_key = prefix .. ':' .. queue_type
local job_queue_key = ready_key .. ':' .. queue_id

-- (The ready set is vetted by the ZREM, the first write.)
local list_exists = redis.call('EXISTS', job_queue_key) == 1
local err = list_exists and (wrong_type(job_queue_key, 'list') or wrong_type(prefix .. ':.purging', 'set'))
if err then
   return err
end

local was_ready = redis.call('ZREM', ready_key, queue_id)
if was_ready == 1 and redis.call('EXISTS', ready_key) == 0 then
   redis.pcall('SREM', prefix .. ':ready:queue_type', queue_type)  -- an index for metrics
end
if was_ready == 1 and purge_all then
   redis.pcall('HDEL', prefix .. ':interval', queue)
end
local set_aside = 0
if list_exists then
   redis.call('RENAME', job_queue_key, purge_key)
   redis.call('SADD', prefix .. ':.purging', purge_key)
   set_aside = 1
end
if was_ready == 0 and set_aside == 0 then
   return {0, 0}  -- nothing changed: nothing to keep for a resend
end
return reply({was_ready, set_aside})
