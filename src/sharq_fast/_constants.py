"""Defaults and limits, in one place."""

#: SharQ's default key prefix (sharq.conf's ``[redis] key_prefix``).
DEFAULT_KEY_PREFIX = "sharq_server"
#: Default queue type of SharQ's API.
DEFAULT_QUEUE_TYPE = "default"
#: ms a dequeued job may stay unfinished before requeue() puts it back.
DEFAULT_JOB_EXPIRE_INTERVAL = 1000
#: ms between two runs of the background requeuer.
DEFAULT_JOB_REQUEUE_INTERVAL = 1000
#: -1: a job is requeued without limit.
DEFAULT_JOB_REQUEUE_LIMIT = -1
#: Seconds between two looks for jobs of a dequeue that waits, when no wake-up comes (jobs
#: of clients that publish none: sharq 1.3.0, go-sharq).
DEFAULT_WAIT_POLL_INTERVAL = 1.0
#: Seconds a round whose connection failed is sent again before OutcomeUnknownError.
DEFAULT_RETRY_FOR = 10.0
#: Replicas a write must reach (WAIT) before it counts as done; 0: none (asynchronous
#: replication, Redis' default).
DEFAULT_REPLICAS = 0
#: Seconds a write waits for those replicas before ReplicationError.
DEFAULT_REPLICA_TIMEOUT = 1.0
#: Most replicas a write may ask for (a sanity bound: WAIT takes any number).
MAX_REPLICAS = 1000

#: Largest interval, requeue limit, job_expire_interval or lease (ms) accepted: Redis' Lua
#: computes with doubles, which hold integers exactly only up to 2**53 - 1.
MAX_INTEGER = 2**53 - 1
TOO_LARGE = "is larger than 2**53 - 1, the largest integer Redis scripts hold exactly."

#: Identifiers (queue_type, queue_id, job_id) are 1..100 of these characters.
IDENTIFIER_MAX_LENGTH = 100

# Script calls are kept small, so that one call blocks Redis for ~1-2 ms at most (Redis
# spends roughly 5-20 us per job in them), and pipelined, so that the round trip is still
# paid once per thousands of jobs.
#: Names whose keys would be SharQ's own keys in its layout: queue type "payload" has the
#: ready set P:payload (the payload hash), queue id "active" the job list P:T:active (the
#: active set), queue id "queue_type" of type "ready" the job list P:ready:queue_type, and
#: counter-named types have job lists P:enqueue_counter:M. SharQ accepted them and broke.
RESERVED_QUEUE_TYPES = frozenset(("payload", "interval", "enqueue_counter", "dequeue_counter"))
RESERVED_QUEUE_IDS = frozenset(("active",))
RESERVED_QUEUE_TYPE_IDS = frozenset((("ready", "queue_type"), ("active", "queue_type")))
RESERVED_MESSAGE = "is reserved: its keys would be SharQ's own keys."

#: Jobs per script call in enqueue_many/finish_many.
DEFAULT_CHUNK_SIZE = 100
MAX_CHUNK_SIZE = 5000
#: Script calls sent per round trip in batch operations.
DEFAULT_PIPELINE_DEPTH = 20
MAX_PIPELINE_DEPTH = 1000
#: Most jobs one dequeue script call takes; larger counts are split into several calls.
MAX_DEQUEUE_PER_CALL = 100
#: Most jobs one dequeue_many may ask for (100 script calls in one round trip).
MAX_DEQUEUE_COUNT = 10_000
#: Expired jobs handled per requeue script call.
REQUEUE_BATCH = 200
#: Queues whose deferred interval forgetting is due, taken per requeue pass (the rest wait
#: for the next pass; each is a few Redis commands).
FORGET_BATCH = 1000
#: Jobs deleted per purge script call of clear_queue(purge_all=True).
PURGE_BATCH = 500

#: Metrics keep ten one-minute windows.
METRICS_WINDOWS = 10
MINUTE_MS = 60_000

#: Written by deep_status(), as SharQ does.
DEEP_STATUS_KEY = "sharq:deep_status:{prefix}"
DEEP_STATUS_VALUE = "sharq_deep_status"
#: The background requeuer's lock. Outside the prefix's namespace on purpose: any
#: ``prefix:a:b`` key could be the job list of queue type ``a``, queue ``b``.
REQUEUE_LOCK_KEY = "sharq:requeue_lock:{prefix}"

#: Environment variable that forces the pure-Python core.
NO_EXTENSIONS_ENV = "SHARQ_FAST_NO_EXTENSIONS"
