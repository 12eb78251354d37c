-- Fail dequeued jobs: the worker could not do them. Each failure counts against the job's
-- requeue limit exactly as an expiry would (requeue.lua), without waiting for the lease to
-- run out.
--
-- A job with requeues left is retried:
--   backoff 0: one requeue is counted and the job goes back to the front of its queue now,
--     as requeue.lua puts back an expired job (a queue that was empty re-enters the ready
--     set at its time keeper + interval, else now: the interval still holds). Jobs of one
--     queue failed together keep their order.
--   backoff > 0: only its lease moves, to now + backoff; when it expires, requeue.lua puts
--     it back and counts the requeue then (so nothing is counted here).
-- A job out of requeues (requeues remaining 0; -1 is unlimited) is discarded as requeue.lua
-- discards: its payload and requeue count are deleted. With a dead-letter queue type T2 it
-- is then enqueued into T2 as an enqueue would write it (same queue_id, job_id and payload,
-- interval 0, requeue limit ARGV[4]); a job already queued there under that id is kept.
-- The queue's interval is kept: a queue left without queued jobs is recorded to forget it
-- once no job of it can still be held (defer_forget_interval, forget_intervals.lua), so
-- that its other active jobs, put back later, still wait their interval.
--
-- KEYS[1]  reply key (see _replies.lua)
-- KEYS[2]  "P:": the key prefix P and ':' (see _replies.lua)
-- ARGV[1]  now (ms epoch)
-- ARGV[2]  backoff (ms, 0 or more)
-- ARGV[3]  dead-letter queue type T2, or '' (none: jobs out of requeues are discarded)
-- ARGV[4]  requeue limit of a dead-lettered job (the client's default_job_requeue_limit)
-- ARGV[5]  job_expire_interval (ms)
-- ARGV[6..] groups of 4: queue_type, queue_id, job_id, lease (the expiry the caller holds)
--
-- Returns one integer per job: 1 retried, 2 discarded, 3 dead-lettered, 0 when the caller's
-- lease was lost (the job was finished, requeued, or dequeued again): nothing changed.

local prefix = declared_prefix(KEYS[2])
local now = tonumber(ARGV[1])
local backoff = tonumber(ARGV[2])
local dead_letter = ARGV[3]
local dead_limit = ARGV[4]
local expire_interval = tonumber(ARGV[5])
local FIRST = 6
local payload_key = prefix .. ':payload'
local interval_key = prefix .. ':interval'

local RETRIED, DISCARDED, DEAD_LETTERED = 1, 2, 3

-- Reads first: every score (vetting every active set), and the keys written for a held
-- job are vetted, before anything is written.
local held = {}
local seen = {}
local err
for i = FIRST, NARGS, 4 do
   local ready_key = prefix .. ':' .. ARGV[i]
   local member = ARGV[i + 1] .. ':' .. ARGV[i + 2]
   local score = redis.pcall('ZSCORE', ready_key .. ':active', member)
   if type(score) == 'table' and score.err then
      return redis.error_reply(score.err .. ': nothing was changed')
   end
   local job = ARGV[i] .. ':' .. member
   if score and tonumber(score) == tonumber(ARGV[i + 3]) and not seen[job] then
      seen[job] = true  -- a job named twice is failed once
      held[i] = true
      local job_queue_key = ready_key .. ':' .. ARGV[i + 1]
      err = err or wrong_type(ready_key, 'zset') or wrong_type(job_queue_key, 'list')
         or wrong_type(job_queue_key .. ':requeues_remaining', 'hash')
   end
end
if err then
   return err
end

-- What happens to each held job (requeue.lua's counting), and the payloads to keep.
local action, remaining, payloads = {}, {}, {}
local any = false
for i = FIRST, NARGS, 4 do
   if held[i] then
      any = true
      local r = tonumber(redis.call('HGET', prefix .. ':' .. ARGV[i] .. ':' .. ARGV[i + 1] .. ':requeues_remaining',
         ARGV[i + 2]))
      remaining[i] = r
      if r and r > -1 and r - 1 == -1 then
         action[i] = DISCARDED
         if dead_letter ~= '' then
            err = err or wrong_type(payload_key, 'hash') or wrong_type(interval_key, 'hash')
            local dead_ready_key = prefix .. ':' .. dead_letter
            local dead_queue_key = dead_ready_key .. ':' .. ARGV[i + 1]
            err = err or wrong_type(dead_ready_key, 'zset') or wrong_type(dead_queue_key, 'list')
               or wrong_type(dead_queue_key .. ':requeues_remaining', 'hash')
            if not err then
               payloads[i] = redis.call('HGET', payload_key, ARGV[i] .. ':' .. ARGV[i + 1] .. ':' .. ARGV[i + 2])
               -- A job without a payload (broken data) has nothing to keep: discarded.
               if payloads[i] then
                  action[i] = DEAD_LETTERED
               end
            end
         end
      else
         action[i] = RETRIED
      end
   end
end
if err then
   return err
end

-- Writes.
local results = {}
local queues, order = {}, {}      -- T:Q -> {queue_type, queue_id, job ids} put back now
local gone, gone_order = {}, {}   -- T:Q -> {queue_type, queue_id} of discarded jobs
local dead = {}                   -- i of dead-lettered jobs, in input order
local types = {}
for i = FIRST, NARGS, 4 do
   local kind = action[i]
   if not kind then
      results[#results + 1] = 0
   else
      local queue_type, queue_id, job_id = ARGV[i], ARGV[i + 1], ARGV[i + 2]
      local queue = queue_type .. ':' .. queue_id
      local active_key = prefix .. ':' .. queue_type .. ':active'
      local member = queue_id .. ':' .. job_id
      types[queue_type] = true
      if kind == RETRIED and backoff > 0 then
         redis.call('ZADD', active_key, 'XX', now + backoff, member)
      elseif kind == RETRIED then
         local r = remaining[i]
         if r and r > -1 then
            redis.call('HSET', prefix .. ':' .. queue .. ':requeues_remaining', job_id, r - 1)
         end
         redis.call('ZREM', active_key, member)
         local q = queues[queue]
         if not q then
            q = {queue_type, queue_id, {}}
            queues[queue] = q
            order[#order + 1] = queue
         end
         q[3][#q[3] + 1] = job_id
      else
         redis.call('ZREM', active_key, member)
         redis.pcall('HDEL', payload_key, queue .. ':' .. job_id)
         redis.call('HDEL', prefix .. ':' .. queue .. ':requeues_remaining', job_id)
         if not gone[queue] then
            gone[queue] = {queue_type, queue_id}
            gone_order[#gone_order + 1] = queue
         end
         if kind == DEAD_LETTERED then
            dead[#dead + 1] = i
         end
      end
      results[#results + 1] = kind
   end
end

local ready_now = push_back_front(prefix, order, queues, now)

-- A discarded job's queue left without queued jobs forgets its interval once no job of it
-- can still be held (as SharQ's finish, but deferred: see defer_forget_interval).
for _, queue in ipairs(gone_order) do
   if redis.call('EXISTS', prefix .. ':' .. queue) == 0 then
      defer_forget_interval(prefix, queue, now, expire_interval)
   end
end

for queue_type in pairs(types) do
   if redis.call('EXISTS', prefix .. ':' .. queue_type .. ':active') == 0 then
      redis.pcall('SREM', prefix .. ':active:queue_type', queue_type)
   end
   if ready_now[queue_type] then
      redis.pcall('PUBLISH', prefix .. ':.wake:' .. queue_type, ready_now[queue_type])
   end
end

-- The dead-letter enqueue, as enqueue.lua writes a job with interval 0.
if #dead > 0 then
   local minute = math.floor(now / 60000) * 60000
   local counter_expiry = math.floor((minute + 600000) / 1000)
   local function bump(key, n)
      -- pcall: a counter key holding something else must not fail a call that moved jobs.
      if redis.pcall('INCRBY', key, n) == n then
         redis.call('EXPIREAT', key, counter_expiry)
      end
   end
   local dead_ready_key = prefix .. ':' .. dead_letter
   local queued, dead_ready_now = 0, 0
   for _, i in ipairs(dead) do
      local queue_id, job_id = ARGV[i + 1], ARGV[i + 2]
      local queue = dead_letter .. ':' .. queue_id
      local job_queue_key = dead_ready_key .. ':' .. queue_id
      -- A job already queued or active there under this id is kept (as enqueue refuses a
      -- duplicate). (HEXISTS and HSET: commands the documented ACL user has.)
      if redis.call('HEXISTS', payload_key, queue .. ':' .. job_id) == 0 then
         redis.call('HSET', payload_key, queue .. ':' .. job_id, payloads[i])
         redis.call('RPUSH', job_queue_key, job_id)
         redis.call('HSET', interval_key, queue, 0)
         redis.call('HSET', job_queue_key .. ':requeues_remaining', job_id, dead_limit)
         if not redis.call('ZSCORE', dead_ready_key, queue_id) then
            -- pcall: a time keeper holding something else counts as none.
            local ready_at = tonumber(redis.pcall('GET', job_queue_key .. ':time')) or now
            redis.pcall('SADD', prefix .. ':ready:queue_type', dead_letter)  -- an index for metrics
            redis.call('ZADD', dead_ready_key, ready_at, queue_id)
            if ready_at <= now then
               dead_ready_now = dead_ready_now + 1
            end
         end
         bump(job_queue_key .. ':enqueue_counter:' .. minute, 1)
         queued = queued + 1
      end
   end
   if queued > 0 then
      bump(prefix .. ':enqueue_counter:' .. minute, queued)
   end
   if dead_ready_now > 0 then
      redis.pcall('PUBLISH', prefix .. ':.wake:' .. dead_letter, dead_ready_now)
   end
end

if not any then
   return results  -- nothing changed
end
return reply(results)
