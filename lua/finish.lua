-- Finish a batch of dequeued jobs (one job is a batch of one), as SharQ 1.3.0's finish.
--
-- KEYS[1]  reply cache (see _replies.lua)
-- KEYS[2]  key prefix P
-- ARGV     groups of 4: queue_type, queue_id, job_id, lease. A lease of 0 finishes the
--          job if it is active (SharQ's finish); another lease finishes it only if its
--          score in the active set is still that lease expiry, that is if the job was not
--          requeued (and maybe dequeued by another consumer) since the caller got it.
--
-- Returns one integer per job: 1 finished, 0 not active (unknown, already finished, or
-- expired and requeued) or, with a lease, held by another delivery.

local prefix = KEYS[2]
local payload_key = prefix .. ':payload'
local interval_key = prefix .. ':interval'

local err = wrong_type(payload_key, 'hash') or wrong_type(interval_key, 'hash')
   or wrong_type(prefix .. ':active:queue_type', 'set')
for i = 1, NARGS, 4 do
   if err then
      return err
   end
   local ready_key = prefix .. ':' .. ARGV[i]
   err = wrong_type(ready_key .. ':active', 'zset')
      or wrong_type(ready_key .. ':' .. ARGV[i + 1] .. ':requeues_remaining', 'hash')
end
if err then
   return err
end

local results = {}
local finished_types = {}
local queue_exists = {}  -- finishing never changes job lists: check each queue once

for i = 1, NARGS, 4 do
   local queue_type, queue_id, job_id, lease = ARGV[i], ARGV[i + 1], ARGV[i + 2], tonumber(ARGV[i + 3])
   local ready_key = prefix .. ':' .. queue_type
   local active_key = ready_key .. ':active'
   local member = queue_id .. ':' .. job_id
   local held = true
   if lease ~= 0 then
      held = tonumber(redis.call('ZSCORE', active_key, member)) == lease
   end
   if held and redis.call('ZREM', active_key, member) == 1 then
      local queue = queue_type .. ':' .. queue_id
      redis.call('HDEL', payload_key, queue .. ':' .. job_id)
      if queue_exists[queue] == nil then
         queue_exists[queue] = redis.call('EXISTS', ready_key .. ':' .. queue_id) == 1
         if not queue_exists[queue] then
            redis.call('HDEL', interval_key, queue)
         end
      end
      redis.call('HDEL', ready_key .. ':' .. queue_id .. ':requeues_remaining', job_id)
      finished_types[queue_type] = true
      results[#results + 1] = 1
   else
      results[#results + 1] = 0
   end
end

-- A finish only ever shrinks active sets, so checking once at the end leaves the same
-- state as SharQ's check after every job.
for queue_type in pairs(finished_types) do
   if redis.call('EXISTS', prefix .. ':' .. queue_type .. ':active') == 0 then
      redis.call('SREM', prefix .. ':active:queue_type', queue_type)
   end
end

return reply(results)
