-- First lines of every cluster script with a reply cache (before _replies.lua).
--
-- While a slot migrates, Redis runs a script on the old owner only if every declared key
-- is there (else TRYAGAIN or ASK), but then refuses, with an error in the middle of the
-- script, any command on a key that the script itself emptied (it has "moved"). So no key
-- of a partition ever becomes empty: each holds a placeholder, '~' (no queue or job id
-- can be '~'), from the partition's first write on. The reply cache gets its own here,
-- before _replies.lua deletes acknowledged replies from it.
redis.call('HSETNX', KEYS[1], '~', '')
