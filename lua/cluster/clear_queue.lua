-- Clear one queue of a partition (cluster layout), atomically: out of the ready set, its
-- queued jobs deleted with their payloads and requeue counts, and with purge_all (if it
-- was ready) its interval. One call: it costs Redis about a microsecond per job.
--
-- KEYS     the partition's keys (_partition.lua)
-- ARGV[1]  queue id Q
-- ARGV[2]  '1' to purge all
--
-- Returns {1 when Q was in the ready set else 0, number of jobs deleted}.

local err = partition_error()
if err then
   return err
end
local queue_id, purge_all = ARGV[1], ARGV[2] == '1'
local was_ready = redis.call('ZREM', READY, queue_id)
if was_ready == 1 and purge_all then
   redis.call('HDEL', INTERVAL, queue_id)
end
local low, high = queue_range(queue_id)
local members = redis.call('ZRANGEBYLEX', JOBS, low, high)
local fields = {}
for k, member in ipairs(members) do
   local _, _, job_id = split_member(member)
   fields[k] = queue_id .. ':' .. job_id
end
for s = 1, #fields, SLICE do
   local part = {unpack(fields, s, math.min(s + SLICE - 1, #fields))}
   redis.call('HDEL', PAYLOAD, unpack(part))
   redis.call('HDEL', REQUEUES, unpack(part))
end
if #members > 0 then
   redis.call('ZREMRANGEBYLEX', JOBS, low, high)
end
if was_ready == 0 and #members == 0 then
   return {0, 0}  -- nothing changed: nothing to keep for a resend
end
return reply({was_ready, #members})
