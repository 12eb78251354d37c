-- Take or keep a lock (the background requeuer's, one holder per key prefix).
--
-- KEYS[1]  the lock key
-- ARGV[1]  the holder's token
-- ARGV[2]  ttl (ms); 0 releases the lock instead
--
-- Returns 1 while the caller holds the lock (taken now, or extended), else 0. Safe to run
-- twice: a resend after a lost reply gives the same answer.

local holder = redis.call('GET', KEYS[1])
if ARGV[2] == '0' then
   if holder == ARGV[1] then
      redis.call('DEL', KEYS[1])
   end
   return 0
end
if holder == ARGV[1] then
   redis.call('PEXPIRE', KEYS[1], ARGV[2])
   return 1
end
if not holder then
   redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
   return 1
end
return 0
