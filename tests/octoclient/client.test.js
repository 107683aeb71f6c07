// Octopus's published TypeScript API client (@octopusdeploy/api-client), unchanged, against a
// real shoal node and redis-server started here on free loopback ports (stopped by PID):
// Client.create with an API key (reads GET /api), PackageRepository.push of a package streamed
// through shoal (size and SHA-256 checked on the node's download), SpaceServerTaskRepository
// getById / getByIds / getDetails / getRaw, ServerTaskWaiter waiting for a shoal task,
// ServerTaskRepository cancel. Prints "N passed, M failed" last.
const { spawn, execFileSync } = require("node:child_process");
const crypto = require("node:crypto");
const fs = require("node:fs");
const http = require("node:http");
const net = require("node:net");
const os = require("node:os");
const path = require("node:path");
const { Client, PackageRepository, SpaceServerTaskRepository, ServerTaskWaiter,
  ServerTaskRepository, OverwriteMode } = require("@octopusdeploy/api-client");
const octopack = require("@octopusdeploy/octopackjs");

const [shoalArg, mibArg] = process.argv.slice(2);
const shoal = path.resolve(shoalArg);
const MIB = Number(mibArg || 64);
const KEY = "octoclient-key-0123456789";
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "shoal-octoclient-"));
const procs = [];
let passed = 0, failed = 0;

function check(name, ok, detail) {
  ok ? passed++ : failed++;
  console.log(`${ok ? "PASS" : "FAIL"} ${name}${detail ? ": " + detail : ""}`);
  return ok;
}
async function waitFor(fn, ms = 10000, every = 50) {
  const deadline = Date.now() + ms;
  for (;;) {
    let v = null;
    try { v = await fn(); } catch (e) { v = null; }
    if (v) return v;
    if (Date.now() >= deadline) return null;
    await new Promise((r) => setTimeout(r, every));
  }
}
function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer().on("error", reject);
    s.listen(0, "127.0.0.1", () => { const p = s.address().port; s.close(() => resolve(p)); });
  });
}
function start(name, argv, env) {
  const log = fs.openSync(path.join(tmp, name + ".log"), "w");
  const p = spawn(argv[0], argv.slice(1), { cwd: tmp, env, stdio: ["ignore", log, log] });
  fs.closeSync(log);
  // a program that cannot start fails the test instead of crashing it (the others are stopped)
  p.on("error", (e) => check(`${name} starts`, false, e.message));
  procs.push(p);
  return p;
}
const exited = (p) => p.exitCode !== null || p.signalCode !== null;
async function stop(p) {
  if (exited(p)) return;
  p.kill("SIGTERM");
  if (!(await waitFor(() => exited(p), 15000))) p.kill("SIGKILL");
  await waitFor(() => exited(p), 5000);
}
// GET with the key; resolves {status, sha256, size} (the body hashed as it streams).
function download(port, urlPath) {
  return new Promise((resolve) => {
    const req = http.get({ host: "127.0.0.1", port, path: urlPath, headers: { "X-Octopus-ApiKey": KEY } }, (res) => {
      const h = crypto.createHash("sha256");
      let size = 0;
      res.on("data", (c) => { h.update(c); size += c.length; });
      res.on("end", () => resolve({ status: res.statusCode, sha256: h.digest("hex"), size }));
    });
    req.on("error", () => resolve({ status: 0 }));
  });
}
function peakRssKiB(pid) {
  try {
    const m = fs.readFileSync(`/proc/${pid}/status`, "utf8").match(/VmHWM:\s+(\d+)/);
    return m ? Number(m[1]) : 0;
  } catch (e) { return 0; }
}

async function main() {
  const redisPort = await freePort();
  start("redis", ["redis-server", "--port", String(redisPort), "--bind", "127.0.0.1",
    "--save", "", "--appendonly", "no", "--dir", tmp, "--daemonize", "no"], process.env);
  const redis = (...a) => execFileSync("redis-cli", ["-h", "127.0.0.1", "-p", String(redisPort), ...a],
    { timeout: 5000, stdio: ["ignore", "pipe", "pipe"] }).toString().trim();
  if (!check("redis-server answers", await waitFor(() => redis("PING") === "PONG"))) return;
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("SHOAL_")));
  env.SHOAL_REDIS_URL = `redis://127.0.0.1:${redisPort}/0`;
  const port = await freePort();
  const node = start("node", [shoal, "worker", "--name", "oc1", "--api-key", KEY, "--listen",
    `127.0.0.1:${port}`, "--package-dir", path.join(tmp, "packages")], env);
  const up = await waitFor(async () => (await download(port, "/api/octopusservernodes/ping")).status === 200, 20000);
  if (!check("node answers ping", up)) return;
  const cli = (...a) => execFileSync(shoal, a, { env, timeout: 15000 }).toString().trim();

  // Client.create reads the root document (GET /api) and fails without it.
  const client = await Client.create({ instanceURL: `http://127.0.0.1:${port}`, apiKey: KEY,
    userAgentApp: "shoal-test" });
  check("Client.create with an API key", !!client);

  // A package pushed through the client, streamed through shoal.
  const file = path.join(tmp, `Big.1.0.0.zip`);
  const fd = fs.openSync(file, "w");
  const block = crypto.randomBytes(1 << 20);
  const want = crypto.createHash("sha256");
  for (let i = 0; i < MIB; i++) { block[0] = i & 255; fs.writeSync(fd, block); want.update(block); }
  fs.closeSync(fd);
  const wantSha = want.digest("hex");
  const t0 = process.hrtime.bigint();
  await new PackageRepository(client, "Default").push([file], OverwriteMode.FailIfExists);
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  console.log(`# push of ${MIB} MiB through Octopus's client: ${secs.toFixed(2)} s, node peak RSS ${(peakRssKiB(node.pid) / 1024).toFixed(1)} MiB`);
  const got = await download(port, "/api/Spaces-1/packages/Big.1.0.0/raw");
  check("pushed package downloads with its size and SHA-256", got.status === 200 &&
    got.size === MIB << 20 && got.sha256 === wantSha, `${got.status} ${got.size} ${got.sha256}`);
  let again = null;
  try { await new PackageRepository(client, "Default").push([file], OverwriteMode.FailIfExists); } catch (e) { again = e; }
  check("pushing it again with FailIfExists fails", again !== null, again && again.message);
  await new PackageRepository(client, "Default").push([file], OverwriteMode.IgnoreIfExists);
  check("IgnoreIfExists succeeds", true);

  // Tasks: a shoal task seen through Octopus's repositories and waiter.
  const id = cli("enqueue", "--type", "sleep", "--", "300ms");
  const tasks = new SpaceServerTaskRepository(client, "Default");
  const t = await tasks.getById(id);
  check("SpaceServerTaskRepository.getById", t.Id === id, JSON.stringify(t).slice(0, 200));
  const done = await new ServerTaskWaiter(client, "Default").waitForServerTaskToComplete(id, 100, 20000);
  check("ServerTaskWaiter waits for the shoal task", done && done.IsCompleted && done.FinishedSuccessfully, done && done.State);
  const byIds = await tasks.getByIds([id]);
  check("getByIds", byIds.length === 1 && byIds[0].Id === id);
  const details = await tasks.getDetails(id);
  check("getDetails", details.Task.Id === id && Array.isArray(details.ActivityLogs));
  const raw = await tasks.getRaw(id);
  check("getRaw", typeof raw === "string");
  const long = cli("enqueue", "--type", "sleep", "--", "30s");
  await new ServerTaskRepository(client).cancel(long);
  const canceled = await waitFor(async () => ["Canceled", "Cancelling"].includes((await tasks.getById(long)).State) , 10000);
  check("ServerTaskRepository.cancel", !!canceled);

  // octopackjs, Octopus's npm packager, pushes to the legacy route without a space id and to
  // /api/{spaceId}/packages/raw with one; replace=true overwrites.
  const small = path.join(tmp, "small.zip");
  fs.writeFileSync(small, crypto.randomBytes(4096));
  const pack = (opts) => new Promise((res, rej) => octopack.push(small,
    Object.assign({ host: `http://127.0.0.1:${port}`, apikey: KEY }, opts), (e, b) => e ? rej(e) : res(b)));
  const legacy = await pack({ name: "Packed.1.0.0.zip" });
  check("octopackjs push, legacy route (no space id)", legacy && legacy.SpaceId === "Spaces-1" &&
    legacy.Version === "1.0.0", JSON.stringify(legacy).slice(0, 200));
  const spaced = await pack({ name: "Packed.2.0.0.zip", spaceId: "Spaces-1" });
  check("octopackjs push, space-scoped", spaced && spaced.Id === "packages-Packed.2.0.0",
    JSON.stringify(spaced).slice(0, 200));
  let dup = null;
  try { await pack({ name: "Packed.2.0.0.zip", spaceId: "Spaces-1" }); } catch (e) { dup = e; }
  check("octopackjs push of an existing version is refused (400)", dup && dup.statusCode === 400,
    dup && JSON.stringify(dup.body));
  const replaced = await pack({ name: "Packed.2.0.0.zip", spaceId: "Spaces-1", replace: true });
  check("octopackjs push with replace=true overwrites", replaced && replaced.Version === "2.0.0");
}

async function cleanup() {
  for (const p of procs.reverse()) await stop(p);
  fs.rmSync(tmp, { recursive: true, force: true });
}
const watchdog = setTimeout(async () => {
  check("finished within 280 s", false);
  await cleanup();
  console.log(`${passed} passed, ${failed} failed`);
  process.exit(1);
}, 280000);
main()
  .catch((e) => check("test ran to the end", false, e.stack || String(e)))
  .finally(async () => {
    clearTimeout(watchdog);
    await cleanup();
    console.log(`${passed} passed, ${failed} failed`);
    process.exit(failed ? 1 : 0);
  });
