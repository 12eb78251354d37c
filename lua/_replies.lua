-- The reply cache: put in front of every script that changes state (scripts.py does), so
-- that a call whose reply was lost (connection cut, timeout, failover) can be sent again
-- unchanged and get its first answer instead of running twice.
--
-- KEYS[1]  this call's reply key: the client's reply key base (P:.replies:<client>:) and
--          the call's token
-- ARGV     the script's own arguments, then the tokens of earlier calls whose replies the
--          client has read (ack_1 .. ack_n: their keys are deleted here), then n, then
--          this call's token
--
-- A call whose reply key exists has run: its reply is returned again and nothing else is
-- done. Otherwise the script runs and ends with `return reply(result)`, which keeps the
-- result (MessagePack) for REPLY_TTL ms, or `return result` when it changed nothing. Error
-- replies are not kept: a script fails only before it writes anything that matters.

local TOKEN = ARGV[#ARGV]
local ACKS = tonumber(ARGV[#ARGV - 1])
local NARGS = #ARGV - 2 - ACKS  -- the script's own arguments are ARGV[1 .. NARGS]
local REPLY_TTL = 600000

-- Scripts declare the key prefix P as the key name "P:", and a queue type T as its ready
-- set "P:T": every key a call declares is then a name under P:*, which an ACL user
-- limited to ~P:* may use (README: Redis ACL).
local function declared_prefix(key)
   local prefix = string.match(key, '^(.+):$')
   if not prefix then
      error('the key prefix must be declared as "P:", not ' .. key)
   end
   return prefix
end

if ACKS > 0 then
   local base = string.sub(KEYS[1], 1, #KEYS[1] - #TOKEN)
   local acked = {}
   for i = 1, ACKS do
      acked[i] = base .. ARGV[NARGS + i]
   end
   redis.call('UNLINK', unpack(acked))
end
local cached = redis.call('GET', KEYS[1])
if cached then
   -- A write (replicated), so that a WAIT after this resend, on a connection that wrote
   -- nothing else, waits for the replicas to have the first run's effects too.
   redis.call('PEXPIRE', KEYS[1], REPLY_TTL)
   return cmsgpack.unpack(cached)
end

local function reply(result)
   redis.call('SET', KEYS[1], cmsgpack.pack(result), 'PX', REPLY_TTL)
   return result
end

-- A write that fails half way is not rolled back by Redis. So a key whose failing write
-- would lose or misreport a job, and that no read has vetted before the first write, is
-- checked here first (a key of another type is data that is not SharQ's); writes that
-- cannot lose a job if they fail (counters, index sets, clean-ups) use pcall instead.
local checked_types = {}
local function wrong_type(key, expected)
   if checked_types[key] then
      return nil
   end
   checked_types[key] = true
   local found = redis.call('TYPE', key)['ok']
   if found ~= 'none' and found ~= expected then
      return redis.error_reply('WRONGTYPE ' .. key .. ' holds a ' .. found .. ', not a ' .. expected
         .. ': nothing was changed')
   end
end

-- A queue that had no queued job and gets jobs back at its front (requeue, release)
-- re-enters its ready set as SharQ's requeue puts it: at its time keeper (its last
-- dequeue) + its interval when both exist, else now. True when it is ready now.
local function back_in_ready_set(prefix, queue_type, queue_id, now)
   local queue = queue_type .. ':' .. queue_id
   local ready_at = now
   local last_dequeue = tonumber(redis.pcall('GET', prefix .. ':' .. queue .. ':time'))
   local interval = tonumber(redis.pcall('HGET', prefix .. ':interval', queue))
   if last_dequeue and interval then
      ready_at = last_dequeue + interval
   end
   redis.call('ZADD', prefix .. ':' .. queue_type, ready_at, queue_id)
   redis.pcall('SADD', prefix .. ':ready:queue_type', queue_type)  -- an index for metrics
   return ready_at <= now
end

-- Put jobs back at the front of their queues (release, fail's retry): `order` lists the
-- queues (T:Q), `queues[T:Q]` is {queue_type, queue_id, job ids in input order}; the first
-- job of a queue is served first. Returns, per queue type, how many of its queues are
-- ready now (for the wake-up message).
local function push_back_front(prefix, order, queues, now)
   local ready_now = {}
   for _, queue in ipairs(order) do
      local queue_type, queue_id, job_ids = queues[queue][1], queues[queue][2], queues[queue][3]
      local job_queue_key = prefix .. ':' .. queue
      local length
      for k = #job_ids, 1, -1 do  -- LPUSH in reverse
         length = redis.call('LPUSH', job_queue_key, job_ids[k])
      end
      if length == #job_ids and back_in_ready_set(prefix, queue_type, queue_id, now) then
         ready_now[queue_type] = (ready_now[queue_type] or 0) + 1
      end
   end
   return ready_now
end

-- A queue left without queued jobs (finish, fail's discard) may still have other jobs
-- held, which would come back (requeue, release, fail) without their interval if it were
-- deleted now. So its interval is forgotten later: the queue is recorded in the sorted
-- set P:.forget_intervals (member T:Q), scored at when no job of it can still be held
-- (its time keeper + job_expire_interval, now at the earliest); the requeue pass runs
-- forget_intervals.lua on the due ones once its requeues are done.
local function defer_forget_interval(prefix, queue, now, expire_interval)
   local at = now
   local last_dequeue = tonumber(redis.pcall('GET', prefix .. ':' .. queue .. ':time'))
   if last_dequeue and last_dequeue + expire_interval > now then
      at = last_dequeue + expire_interval
   end
   -- pcall: a clean-up; a key holding something else must not fail a call that moved jobs.
   redis.pcall('ZADD', prefix .. ':.forget_intervals', at, queue)
end
