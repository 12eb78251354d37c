-- The keys of one partition of a queue type in the cluster layout (docs/cluster-layout.md),
-- put after _replies.lua in front of every partition script. Every script of the cluster
-- layout gets the same eleven keys, all with the partition's hash tag {P:T:p}, so one call
-- touches one slot, and every key it touches is declared (so that Redis answers TRYAGAIN
-- or ASK, never a half-migrated view, while the slot moves).
--
-- KEYS[1]  reply cache {P:T:p}:.replies:<client> (see _replies.lua)
-- KEYS[2]  ready     zset  Q -> ms at which Q may next give a job
-- KEYS[3]  jobs      zset  all queued jobs of the partition, score 0, member Q:<seq>:J
--                          (lexicographic order = each queue's FIFO order)
-- KEYS[4]  payload   hash  Q:J -> payload
-- KEYS[5]  requeues  hash  Q:J -> requeues remaining
-- KEYS[6]  interval  hash  Q -> interval (ms)
-- KEYS[7]  time      zset  Q -> ms of its last dequeue (the time keeper; stale after
--                          job_expire_interval, as SharQ's key with a TTL)
-- KEYS[8]  active    zset  Q:J -> lease expiry
-- KEYS[9]  seq       string  the last sequence number given to a job (INCRBY)
-- KEYS[10] forget    zset  Q -> ms from which Q, left without queued jobs, may forget its
--                          interval (defer_forget_interval)
-- KEYS[11] counters  hash  of the minute M of `now`: e, d (partition), e:Q, d:Q (per queue)

local READY, JOBS, PAYLOAD, REQUEUES = KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local INTERVAL, TIME, ACTIVE, SEQ, FORGET, COUNTERS = KEYS[6], KEYS[7], KEYS[8], KEYS[9], KEYS[10], KEYS[11]
local SEQ_BASE = 100000000000000  -- 15 digits: room to grow at both ends of a queue
local SLICE = 1000                -- unpack() is limited by Lua's C stack
local FORGET_BATCH = 1000         -- due records of FORGET handled per requeue pass

-- Give a new partition its placeholders ('~', see _first.lua): scores +inf in READY,
-- ACTIVE, TIME and FORGET (never due), a field no job has in the hashes, a member outside every
-- queue's range in JOBS; check the key types first (nothing is written when one is
-- wrong). A partition that has its SEQ was made so by these scripts: its keys, all under
-- the partition's own hash tag, are not checked again on every call. Returns an error
-- reply, or nil.
local function partition_error()
   if redis.call('EXISTS', SEQ) == 0 then
      local err = wrong_type(READY, 'zset') or wrong_type(JOBS, 'zset') or wrong_type(PAYLOAD, 'hash')
         or wrong_type(REQUEUES, 'hash') or wrong_type(INTERVAL, 'hash') or wrong_type(TIME, 'zset')
         or wrong_type(ACTIVE, 'zset') or wrong_type(FORGET, 'zset') or wrong_type(COUNTERS, 'hash')
      if err then
         return err
      end
      redis.call('SET', SEQ, 0)
      for _, key in ipairs({READY, ACTIVE, TIME, FORGET}) do
         redis.call('ZADD', key, 'inf', '~')
      end
      redis.call('ZADD', JOBS, 0, '~')
      for _, key in ipairs({PAYLOAD, REQUEUES, INTERVAL}) do
         redis.call('HSET', key, '~', '')
      end
   end
end

local function seq_text(n)
   return string.format('%015d', n)
end

-- The lexicographic range of queue Q's members in JOBS (queue ids have no ':' or ';').
local function queue_range(queue_id)
   return '[' .. queue_id .. ':', '(' .. queue_id .. ';'
end

local function job_member(queue_id, seq, job_id)
   return queue_id .. ':' .. seq_text(seq) .. ':' .. job_id
end

-- queue_id, seq, job_id of a JOBS member.
local function split_member(member)
   local queue_id = member:match('^([^:]+):')
   local at = #queue_id + 2
   return queue_id, tonumber(member:sub(at, at + 14)), member:sub(at + 16)
end

local function queue_length(queue_id)
   local low, high = queue_range(queue_id)
   return redis.call('ZLEXCOUNT', JOBS, low, high)
end

-- The sequence number of the first job of Q, or nil when Q has none.
local function head_seq(queue_id)
   local low, high = queue_range(queue_id)
   local first = redis.call('ZRANGEBYLEX', JOBS, low, high, 'LIMIT', 0, 1)[1]
   if first then
      local _, seq = split_member(first)
      return seq
   end
end

-- Put job ids back at the front of Q, in order (requeue, release). Returns true when Q
-- had no job before.
local function push_front(queue_id, job_ids)
   local head = head_seq(queue_id)
   local was_empty = head == nil
   if was_empty then
      head = SEQ_BASE + redis.call('INCRBY', SEQ, #job_ids + 1)
   end
   local members = {}
   for k = #job_ids, 1, -1 do
      head = head - 1
      members[#members + 1] = 0
      members[#members + 1] = job_member(queue_id, head, job_ids[k])
   end
   for s = 1, #members, SLICE do
      redis.call('ZADD', JOBS, unpack(members, s, math.min(s + SLICE - 1, #members)))
   end
   return was_empty
end

-- When Q (re-)enters the ready set: its time keeper + interval while the keeper is
-- fresh (its last dequeue was less than job_expire_interval ago), else now.
local function ready_time(queue_id, interval, now, expire_interval)
   local last_dequeue = tonumber(redis.call('ZSCORE', TIME, queue_id))
   if last_dequeue and interval and last_dequeue + expire_interval > now then
      return last_dequeue + interval
   end
   return now
end

-- The lowest ready time of the partition (-1: no ready queue): the client's view of the
-- partition heads is kept current from these.
local function partition_head()
   local head = redis.call('ZRANGE', READY, 0, 0, 'WITHSCORES')
   if head[2] and head[1] ~= '~' then
      return tonumber(head[2])
   end
   return -1
end

local counters_expiring = false
-- Bump per-minute counters as n single SharQ increments would; they expire with the
-- minute's hash ten minutes after the minute.
local function bump(field, n, now)
   -- pcall: a counter holding something else must not fail a call that changed state.
   redis.pcall('HINCRBY', COUNTERS, field, n)
   if not counters_expiring then
      counters_expiring = true
      local minute = math.floor(now / 60000) * 60000
      redis.call('EXPIREAT', COUNTERS, math.floor((minute + 600000) / 1000))
   end
end

-- A queue left without queued jobs (finish, fail, requeue's discards) may still have other
-- jobs held, which would come back without their interval if it were deleted now (as
-- SharQ's finish does). So it is recorded in FORGET, scored at when no job of it can still
-- be held: its time keeper + job_expire_interval, now at the earliest. (The placeholder
-- goes with it: a partition made before FORGET existed gets it on its first record.)
local function defer_forget_interval(queue_id, now, expire_interval)
   local at = now
   local last_dequeue = tonumber(redis.call('ZSCORE', TIME, queue_id))
   if last_dequeue and last_dequeue + expire_interval > now then
      at = last_dequeue + expire_interval
   end
   redis.call('ZADD', FORGET, 'inf', '~', at, queue_id)
end

-- Once a requeue has put back every job of the partition whose lease ran out by now: the
-- due records of FORGET (up to FORGET_BATCH) whose queue is gone (no queued job, no time
-- keeper fresher than job_expire_interval) forget their interval; a queue with jobs again
-- keeps it (a finish that empties it records it again); one dequeued since is recorded
-- for its new time keeper. (A lease moved by extend() is not seen: such a queue gets its
-- interval back with its next enqueue.) Returns how many intervals were deleted.
local function forget_due_intervals(now, expire_interval)
   local deleted = 0
   for _, queue_id in ipairs(redis.call('ZRANGEBYSCORE', FORGET, '-inf', now, 'LIMIT', 0, FORGET_BATCH)) do
      if queue_id ~= '~' then
         local last_dequeue = tonumber(redis.call('ZSCORE', TIME, queue_id))
         if queue_length(queue_id) > 0 then
            redis.call('ZREM', FORGET, queue_id)
         elseif not last_dequeue or last_dequeue + expire_interval <= now then
            deleted = deleted + redis.call('HDEL', INTERVAL, queue_id)
            redis.call('ZREM', FORGET, queue_id)
         else
            redis.call('ZADD', FORGET, last_dequeue + expire_interval, queue_id)
         end
      end
   end
   return deleted
end
