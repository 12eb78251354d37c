-- Release dequeued jobs that were not worked on: put them back at the front of their
-- queues now, without counting a requeue against their limit.
--
-- A released job goes back as requeue.lua puts back an expired one: to the front of its
-- queue, and a queue that was empty re-enters the ready set at its time keeper + interval
-- (the interval still holds: the job's dequeue counted), else now. Jobs of one queue
-- released together keep their order.
--
-- KEYS[1]  reply key (see _replies.lua)
-- KEYS[2]  "P:": the key prefix P and ':' (see _replies.lua)
-- ARGV[1]  now (ms epoch)
-- ARGV[2..] groups of 4: queue_type, queue_id, job_id, lease (the expiry the caller holds)
--
-- Returns one integer per job: 1 released, 0 when the caller's lease was lost (the job was
-- finished, requeued, or dequeued again by another consumer).

local prefix = declared_prefix(KEYS[2])
local now = tonumber(ARGV[1])

-- Every score is read (and every active set vetted) before anything is written; the
-- ready sets and job lists written afterwards are vetted here.
local held = {}
local err
for i = 2, NARGS, 4 do
   local ready_key = prefix .. ':' .. ARGV[i]
   local score = redis.pcall('ZSCORE', ready_key .. ':active', ARGV[i + 1] .. ':' .. ARGV[i + 2])
   if type(score) == 'table' and score.err then
      return redis.error_reply(score.err .. ': nothing was changed')
   end
   held[i] = score and tonumber(score) == tonumber(ARGV[i + 3])
   if held[i] then
      err = err or wrong_type(ready_key, 'zset') or wrong_type(ready_key .. ':' .. ARGV[i + 1], 'list')
   end
end
if err then
   return err
end

-- Each queue's released jobs in input order.
local results = {}
local queues = {}  -- T:Q -> {queue_type, queue_id, job ids}
local order = {}
local types = {}
local seen = {}
for i = 2, NARGS, 4 do
   local queue_type, queue_id, job_id = ARGV[i], ARGV[i + 1], ARGV[i + 2]
   local active_key = prefix .. ':' .. queue_type .. ':active'
   local member = queue_id .. ':' .. job_id
   if held[i] and not seen[queue_type .. ':' .. member] then
      seen[queue_type .. ':' .. member] = true
      redis.call('ZREM', active_key, member)
      local queue = queue_type .. ':' .. queue_id
      local q = queues[queue]
      if not q then
         q = {queue_type, queue_id, {}}
         queues[queue] = q
         order[#order + 1] = queue
      end
      q[3][#q[3] + 1] = job_id
      types[queue_type] = true
      results[#results + 1] = 1
   else
      results[#results + 1] = 0
   end
end

local ready_now = push_back_front(prefix, order, queues, now)

for queue_type in pairs(types) do
   if redis.call('EXISTS', prefix .. ':' .. queue_type .. ':active') == 0 then
      redis.pcall('SREM', prefix .. ':active:queue_type', queue_type)
   end
   if ready_now[queue_type] then
      redis.pcall('PUBLISH', prefix .. ':.wake:' .. queue_type, ready_now[queue_type])
   end
end

if #order == 0 then
   return results  -- nothing changed
end
return reply(results)
