// BullMQ driver: run with the machine's `node`, NODE_PATH set to the cached Node project
// that has `bullmq` and `ioredis` from the npm registry (see sharq_fast/peers/envs.py).
// The same protocol as the Python drivers (_drvlib.py): `node peer_bullmq.cjs '<spec>'`
// prints one JSON line; `node peer_bullmq.cjs worker` is the worker process.
//
// As BullMQ's docs say: `Queue.addBulk` for bulk (chunks of 1,000), `Queue.add` for one
// job, and a `Worker` with `concurrency` (from the suite) in one process. Jobs are added
// with `removeOnComplete`/`removeOnFail` (no finished job kept, as for every peer).
// Rate limit: BullMQ's `limiter` limits a whole queue; per-group limits (one per tenant)
// are BullMQ Pro only, so the SharQ case is not supported.
"use strict";

const fs = require("fs");
const path = require("path");
const { spawn } = require("child_process");
const { performance } = require("perf_hooks");

const QUEUE = "bench";
const CHUNK = 1000;
const PAYLOAD = { to: "+14155550100", from: "+14155550199", text: "hello from sharq-fast bench" };
const JOB_OPTS = { removeOnComplete: true, removeOnFail: true };

const nowS = () => (performance.timeOrigin + performance.now()) / 1000; // like Python's time.time()
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function connection(url) {
  const u = new URL(url);
  return { host: u.hostname, port: Number(u.port || 6379), db: Number((u.pathname || "/0").slice(1) || 0), maxRetriesPerRequest: null };
}

function payload(i, extra) {
  return Object.assign({}, PAYLOAD, { n: i }, extra || {});
}

function warmupCount(jobs) {
  return Math.max(20, Math.min(2000, Math.floor(jobs / 50)));
}

// -- the worker side ----------------------------------------------------------------------

async function workerMain() {
  const { Worker } = require("bullmq");
  const resultPath = process.env.SFB_RESULT;
  const expect = Number(process.env.SFB_EXPECT || 0);
  const sleepMs = Number(process.env.SFB_SLEEP_MS || 0);
  const deadline = Number(process.env.SFB_DEADLINE || 0); // the run's time budget (epoch s)
  const rec = { starts: [], sent: [], tenants: [], warm: [], last_end: 0, handled: 0, expected: expect, pid: process.pid };
  let written = false;
  const processor = async (job) => {
    const data = job.data;
    if (rec.starts.length === 0) fs.writeFileSync(resultPath + ".ready", "");
    rec.starts.push(nowS());
    rec.sent.push(data.t === undefined ? null : data.t);
    rec.tenants.push(data.k === undefined ? null : data.k);
    rec.warm.push(data.w || 0);
    if (sleepMs) await sleep(sleepMs);
    const end = nowS();
    rec.handled += 1;
    if (end > rec.last_end) rec.last_end = end;
    if (((expect && rec.handled >= expect) || (deadline && end > deadline)) && !written) {
      written = true;
      fs.writeFileSync(resultPath + ".tmp", JSON.stringify(rec));
      fs.renameSync(resultPath + ".tmp", resultPath);
    }
  };
  const worker = new Worker(QUEUE, processor, {
    connection: connection(process.env.SFB_URL),
    concurrency: Number(process.env.SFB_CONCURRENCY || 1),
  });
  worker.on("error", (err) => console.error(err));
  const stop = async () => {
    await worker.close();
    process.exit(0);
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

// -- the driver side ----------------------------------------------------------------------

function startWorker(spec, expect, sleepMs) {
  const result = path.join(spec.workdir, "worker-result.json");
  for (const p of [result, result + ".ready"]) if (fs.existsSync(p)) fs.unlinkSync(p);
  const logPath = path.join(spec.workdir, "worker.log");
  const log = fs.openSync(logPath, "w");
  const env = Object.assign({}, process.env, {
    SFB_RESULT: result, SFB_EXPECT: String(expect), SFB_SLEEP_MS: String(sleepMs || 0), SFB_URL: spec.url,
    SFB_CONCURRENCY: String(spec.concurrency),
  });
  if (spec.budget) env.SFB_DEADLINE = String(Date.now() / 1000 + Number(spec.budget));
  const child = spawn(process.execPath, [__filename, "worker"], { env, stdio: ["ignore", log, log], detached: true });
  let exited = null;
  child.on("exit", (code) => { exited = code === null ? "signal" : code; });
  const tail = () => {
    try {
      return fs.readFileSync(logPath, "utf8").split("\n").filter((l) => l.trim()).slice(-5).join(" | ");
    } catch (e) {
      return "";
    }
  };
  const waitFor = async (file, timeoutS, what) => {
    const deadline = Date.now() + timeoutS * 1000;
    while (!fs.existsSync(file)) {
      if (exited !== null) throw new Error(`the worker exited (${exited}): ${tail()}`);
      if (Date.now() > deadline) throw new Error(`${what} within ${timeoutS} s: ${tail()}`);
      await sleep(10);
    }
  };
  return {
    waitReady: (timeoutS) => waitFor(result + ".ready", timeoutS, "the worker handled no job"),
    waitResult: async (timeoutS) => {
      await waitFor(result, timeoutS, "the worker did not handle every job");
      return JSON.parse(fs.readFileSync(result, "utf8"));
    },
    stop: async () => {
      if (exited === null) {
        try { process.kill(-child.pid, "SIGTERM"); } catch (e) { /* gone */ }
        const deadline = Date.now() + 10000;
        while (exited === null && Date.now() < deadline) await sleep(20);
      }
      try { process.kill(-child.pid, "SIGKILL"); } catch (e) { /* gone */ }
      fs.closeSync(log);
    },
  };
}

async function main() {
  const spec = JSON.parse(process.argv[2]);
  const { Queue } = require("bullmq");
  const queue = new Queue(QUEUE, { connection: connection(spec.url) });
  const versions = {
    bullmq: require("bullmq/package.json").version,
    ioredis: require("ioredis/package.json").version,
    node: process.versions.node,
  };
  const enqueueAll = async (payloads) => {
    for (let start = 0; start < payloads.length; start += CHUNK) {
      await queue.addBulk(payloads.slice(start, start + CHUNK).map((p) => ({ name: "noop", data: p, opts: JOB_OPTS })));
    }
  };
  const answer = { versions, workload: spec.workload };
  const workload = spec.workload;
  if (workload === "enqueue" || workload === "drain" || workload === "drain_io") {
    const jobs = spec.jobs;
    const warm = warmupCount(jobs);
    Object.assign(answer, { jobs, warmup: warm });
    await enqueueAll(Array.from({ length: warm }, (_, i) => payload(i, { w: 1 })));
    const batch = Array.from({ length: jobs }, (_, i) => payload(warm + i));
    const t0 = performance.now();
    await enqueueAll(batch);
    answer.enqueue_seconds = (performance.now() - t0) / 1000;
    if (workload !== "enqueue") {
      const worker = startWorker(spec, warm + jobs, workload === "drain_io" ? spec.sleep_ms : 0);
      try {
        answer.records = await worker.waitResult(spec.timeout);
      } finally {
        await worker.stop();
      }
    }
  } else if (workload === "latency") {
    const count = spec.latency_jobs;
    const warm = spec.latency_warmup === undefined ? 100 : spec.latency_warmup;
    const rate = Number(spec.rate);
    Object.assign(answer, { jobs: count, rate });
    const worker = startWorker(spec, 1 + warm + count, 0);
    try {
      await queue.add("noop", payload(0, { w: 1, t: nowS() }), JOB_OPTS);
      await worker.waitReady(spec.startup_timeout || 120);
      const start = performance.now();
      for (let i = 0; i < warm + count; i++) {
        const delay = start + (1000 * i) / rate - performance.now();
        if (delay > 0) await sleep(delay);
        await queue.add("noop", payload(1 + i, Object.assign({ t: nowS() }, i < warm ? { w: 1 } : {})), JOB_OPTS);
      }
      answer.send_seconds = (performance.now() - start) / 1000;
      answer.records = await worker.waitResult(spec.timeout);
    } finally {
      await worker.stop();
    }
  } else {
    answer.error = `workload ${workload} is not supported by this driver`;
  }
  await queue.close();
  return answer;
}

if (process.argv[2] === "worker") {
  workerMain().catch((err) => {
    console.error(err);
    process.exit(1);
  });
} else {
  main()
    // Exit once the answer is flushed: process.exit() right after a write to a pipe cuts it at 64 KiB.
    .then((answer) => process.stdout.write("\n" + JSON.stringify(answer) + "\n", () => process.exit(0)))
    .catch((err) => {
      console.error(err);
      const answer = { error: String(err && err.message ? err.message : err) };
      process.stdout.write("\n" + JSON.stringify(answer) + "\n", () => process.exit(0));
    });
}
