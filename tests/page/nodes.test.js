// nodes.test.js: the Nodes page (GET /nodes) in headless Chromium, against real nodes.
// Usage: node nodes.test.js BUILD/shoal BUILD_DIR   (tests/page/run.sh, ctest nodes_page)
//
// Starts its own redis-server and three `shoal worker` nodes on free loopback ports, opens
// http://127.0.0.1:<node-1>/nodes in Debian's chromium (driven by playwright-core), and checks:
// a wrong key is refused in words, the right one shows every node, a dead node shows Offline,
// the drain toggle and the cap input reach Redis and ping, a CLI change shows without a reload,
// the tasks view lists a running task, and a node that cannot be reached is said so; and that
// the page runs under a CSP without 'unsafe-inline' (script and style are files of their own,
// served with their type, nosniff and an ETag) with no violation reported. Saves
// BUILD_DIR/nodes-page.png. Prints PASS/FAIL lines and last "N passed, M failed"; exits 1 on any
// failure. Every wait has a deadline; everything started is stopped by its own PID.
"use strict";
const { chromium } = require("playwright-core");
const { spawn, execFileSync } = require("node:child_process");
const fs = require("node:fs");
const http = require("node:http");
const net = require("node:net");
const os = require("node:os");
const path = require("node:path");

const [shoal, buildDir] = process.argv.slice(2).map((p) => p && path.resolve(p));
if (!shoal || !buildDir) {
  console.error("usage: node nodes.test.js BUILD/shoal BUILD_DIR");
  process.exit(2);
}
const KEY = "page-test-key-0123456789";
const CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
  "--no-first-run", "--disable-background-networking", "--disable-component-update",
  "--disable-sync"];
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "shoal-page-"));
const procs = [];   // every child we started, stopped at the end by PID
let passed = 0, failed = 0;

function check(name, ok, detail) {
  ok ? passed++ : failed++;
  console.log(`${ok ? "PASS" : "FAIL"} ${name}${detail ? ": " + detail : ""}`);
  return ok;
}

// Polls fn (sync or async) until it returns a truthy value; null at the deadline.
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
  const dir = path.join(tmp, name);
  fs.mkdirSync(dir, { recursive: true });
  const p = spawn(argv[0], argv.slice(1), { cwd: dir, env, stdio: ["ignore", log, log] });
  fs.closeSync(log);
  p.on("error", (e) => console.log(`# ${name}: ${e.message}`));
  procs.push(p);
  return p;
}

const exited = (p) => p.exitCode !== null || p.signalCode !== null;

async function stop(p, signal = "SIGTERM") {
  if (exited(p)) return;
  p.kill(signal);
  if (!(await waitFor(() => exited(p), 15000))) p.kill("SIGKILL");
  await waitFor(() => exited(p), 5000);
}

function httpGet(port, urlPath) {
  return new Promise((resolve) => {
    const req = http.get({ host: "127.0.0.1", port, path: urlPath, timeout: 2000 }, (res) => {
      let body = "";
      res.on("data", (d) => (body += d));
      res.on("end", () => resolve({ status: res.statusCode, body }));
    });
    req.on("timeout", () => req.destroy(new Error("timeout")));
    req.on("error", () => resolve({ status: 0, body: "" }));
  });
}

async function main() {
  // --- Redis and the nodes ---
  const redisPort = await freePort();
  start("redis", ["redis-server", "--port", String(redisPort), "--bind", "127.0.0.1",
    "--save", "", "--appendonly", "no", "--dir", tmp, "--daemonize", "no"], process.env);
  const redis = (...args) => execFileSync("redis-cli",
    ["-h", "127.0.0.1", "-p", String(redisPort), ...args],
    { timeout: 5000, stdio: ["ignore", "pipe", "pipe"] }).toString().trim();
  if (!check("redis-server answers", await waitFor(() => redis("PING") === "PONG"))) return;

  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("SHOAL_")));
  env.SHOAL_REDIS_URL = `redis://127.0.0.1:${redisPort}/0`;
  const cli = (...args) => execFileSync(shoal, args, { env, timeout: 15000 }).toString().trim();
  const nodes = {};
  for (const name of ["node-1", "node-2", "node-3"]) {
    const port = await freePort();
    nodes[name] = { port, proc: start(name, [shoal, "worker", "--name", name, "--api-key", KEY,
      "--heartbeat", "200ms", "--grace", "2s", "--listen", `127.0.0.1:${port}`], env) };
  }
  for (const [name, n] of Object.entries(nodes)) {
    const up = await waitFor(async () => (await httpGet(n.port, "/api/octopusservernodes/ping")).status === 200, 20000);
    if (!check(`${name} answers ping`, up)) return;
  }
  const ping = (name) => httpGet(nodes[name].port, "/api/octopusservernodes/ping");
  const hget = (name, field) => redis("HGET", `{shoal}:node:${name}`, field);

  // --- the browser ---
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), "shoal-page-chromium-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: "/usr/bin/chromium", headless: true, args: CHROMIUM_ARGS,
    viewport: { width: 1000, height: 640 }, timeout: 60000 });
  try {
    await browse(context, nodes, { ping, hget, cli });
  } finally {
    await context.close().catch(() => {});
    fs.rmSync(profile, { recursive: true, force: true });
  }
}

async function browse(context, nodes, { ping, hget, cli }) {
  const page = context.pages()[0] || (await context.newPage());
  page.setDefaultTimeout(10000);
  const base = `http://127.0.0.1:${nodes["node-1"].port}`;
  const pageErrors = [], foreign = [];
  page.on("pageerror", (e) => pageErrors.push(e.message));
  page.on("console", (m) => { if (/Content Security Policy/i.test(m.text())) pageErrors.push(m.text()); });
  // Every CSP violation the page meets, as the page itself hears of it.
  await page.addInitScript(() => {
    window.cspViolations = [];
    document.addEventListener("securitypolicyviolation",
      (e) => window.cspViolations.push(`${e.violatedDirective} ${e.blockedURI}`));
  });
  page.on("request", (r) => { if (!r.url().startsWith(base + "/") && !r.url().startsWith("data:")) foreign.push(r.url()); });
  const row = (name) => page.locator(`#nodes tr[data-name="${name}"]`);
  const cellText = (name, i) => row(name).locator("td").nth(i).textContent();

  const res = await page.goto(base + "/nodes");
  check("GET /nodes answers 200 text/html without a key",
    res.status() === 200 && /^text\/html/.test(res.headers()["content-type"]), `${res.status()}`);
  const html = await res.text();
  const csp = res.headers()["content-security-policy"] || "";
  check("the CSP allows no inline script or style", /script-src 'self'/.test(csp) &&
    /style-src 'self'/.test(csp) && !/unsafe-inline|unsafe-eval/.test(csp), csp);
  check("the page holds no inline script, style or handler",
    !/<script>|<script [^>]*>[^<]|<style|\sstyle=|\son[a-z]+=/i.test(html));
  const assets = {};
  for (const [file, label, type] of [["nodes.js", "text/javascript", /^text\/javascript/],
                                    ["nodes.css", "text/css", /^text\/css/]]) {
    const r = await page.request.get(`${base}/${file}`);
    const h = r.headers();
    assets[file] = await r.text();
    check(`GET /${file}: 200 ${label}, nosniff, revalidated by ETag`,
      r.status() === 200 && type.test(h["content-type"]) &&
      h["x-content-type-options"] === "nosniff" && h["cache-control"] === "no-cache" && /^"[0-9a-f]{32}"$/.test(h["etag"] || ""),
      `${r.status()} ${h["content-type"]} ${h["cache-control"]} ${h["etag"]}`);
    const again = await page.request.get(`${base}/${file}`,
      { headers: { "If-None-Match": h["etag"] } });
    check(`GET /${file} with its ETag: 304`, again.status() === 304, `${again.status()}`);
  }
  check("the page puts no HTML strings in the DOM",
    !/innerHTML|outerHTML|insertAdjacentHTML|document\.write/.test(html + assets["nodes.js"]));

  // The key: a wrong one is refused with the server's words, the right one opens the table.
  await page.fill("#key", "wrong-key");
  await page.click("#key-form button[type=submit]");
  const refused = await waitFor(async () => {
    const t = await page.textContent("#key-msg");
    return (await page.isVisible("#key-form")) && /refused: the API key is not valid/.test(t) && t;
  });
  check("a wrong key brings the form back with the server's message", refused, refused || "");
  await page.fill("#key", KEY);
  await page.click("#key-form button[type=submit]");
  const shown = await waitFor(async () => (await row("node-1").count()) && (await row("node-2").count()) && (await row("node-3").count()));
  check("with the key, a row per node", shown);
  if (!shown) return;
  const seen = await cellText("node-1", 2), iso = await row("node-1").locator("td").nth(2).getAttribute("title");
  check("last seen is relative, the exact time on hover", /^\d+s ago$/.test(seen) &&
    /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d/.test(iso || ""), `${seen} / ${iso}`);
  check("status Running", (await cellText("node-1", 1)) === "Running");

  // A node that dies shows Offline, with the warning style.
  await stop(nodes["node-3"].proc, "SIGKILL");
  const offline = await waitFor(async () => (await cellText("node-3", 1)) === "Offline" &&
    /offline/.test(await row("node-3").getAttribute("class")), 15000);
  check("a killed node turns Offline with the warning style", offline);

  // Drain node-1 with the toggle: Redis and ping follow.
  await row("node-1").locator("input[type=checkbox]").check();
  check("drain toggle: HGET drain == 1", await waitFor(() => hget("node-1", "drain") === "1"),
    `drain=${hget("node-1", "drain")}`);
  const p418 = await waitFor(async () => (await ping("node-1")).status === 418);
  check("drain toggle: node-1's ping answers 418", p418);
  check("drain toggle: the row says Drained",
    await waitFor(async () => (await cellText("node-1", 1)) === "Drained"));

  // Cap 7 on node-2 through the input.
  const cap = row("node-2").locator("input.cap");
  await cap.fill("7");
  await cap.press("Enter");   // commits the value: the change event
  check("cap input: HGET cap == 7", await waitFor(() => hget("node-2", "cap") === "7"),
    `cap=${hget("node-2", "cap")}`);
  const capPing = await waitFor(async () => {
    const r = await ping("node-2");
    return r.status === 200 && JSON.parse(r.body).MaxConcurrentTasks === 7 && r.body;
  });
  check("cap input: node-2's ping says MaxConcurrentTasks 7", capPing);
  check("cap input: the page says it was saved",
    await waitFor(async () => /Task cap of node-2: saved/.test(await page.textContent("#act"))));

  // A change made elsewhere (the CLI) shows without a reload.
  await page.evaluate(() => { window.notReloaded = true; });   // gone if the page reloads
  cli("drain", "node-2", "on");
  check("refresh: `shoal drain node-2 on` shows as checked and Drained",
    await waitFor(async () => (await row("node-2").locator("input[type=checkbox]").isChecked()) &&
      (await cellText("node-2", 1)) === "Drained", 10000));
  cli("drain", "node-2", "off");
  check("refresh: `shoal drain node-2 off` shows as unchecked and Running",
    await waitFor(async () => !(await row("node-2").locator("input[type=checkbox]").isChecked()) &&
      (await cellText("node-2", 1)) === "Running", 10000));
  check("refresh happened without reloading the page",
    await page.evaluate(() => window.notReloaded === true));

  // The tasks view: a sleep task runs on node-2 (node-1 drained, node-3 offline).
  const id = cli("enqueue", "--type", "sleep", "--", "60s").split(/\s+/).pop();
  check("a running task shows in the Tasks count",
    await waitFor(async () => (await cellText("node-2", 4)) === "1", 10000));
  await row("node-2").locator("a").click();
  const listed = await waitFor(async () => (await page.isVisible("#tasks")) &&
    /Executing/.test(await page.textContent("#tasks tbody")) && (await page.textContent("#tasks tbody")));
  check("the Tasks link lists node-2's executing task", listed, (listed || "").trim());

  // Who the key is, and what it may do (issue 15): the node's own key is the built-in
  // administrator; its changes above are in the recent events.
  const me = await waitFor(async () => /bootstrap \(administrator\)/.test(await page.textContent("#me")) &&
    (await page.textContent("#me")));
  check("the page says whose key it is", me, me || "");
  const evs = await waitFor(async () => (await page.isVisible("#events")) &&
    /drain/i.test(await page.textContent("#events tbody")) && (await page.textContent("#events tbody")));
  check("recent events list the drain made from the page", evs, (evs || "").slice(0, 200));
  check("an administrator's controls are enabled",
    !(await row("node-2").locator("input[type=checkbox]").isDisabled()));

  fs.mkdirSync(buildDir, { recursive: true });
  const shot = path.join(buildDir, "nodes-page.png");
  await page.screenshot({ path: shot, fullPage: true });
  check("screenshot saved", fs.existsSync(shot), shot);

  // A viewer's key: it sees nodes and events, and the controls it may not use are disabled.
  cli("user", "add", "page-viewer", "--role", "viewer");
  const viewerKey = (/API-[A-Z0-9]+/.exec(cli("apikey", "create", "--user", "page-viewer",
    "--purpose", "nodes page test")) || [""])[0];
  await page.click("#change-key");
  await page.fill("#key", viewerKey);
  await page.click("#key-form button[type=submit]");
  const viewer = await waitFor(async () => /page-viewer \(viewer\)/.test(await page.textContent("#me")) &&
    (await page.textContent("#me")));
  check("a viewer's key shows as the viewer", viewer, viewer || "");
  const disabled = await waitFor(async () =>
    (await row("node-2").locator("input[type=checkbox]").isDisabled()) &&
    (await row("node-2").locator("input.cap").isDisabled()) &&
    (await row("node-2").locator("input[type=checkbox]").getAttribute("title")));
  check("a viewer's drain and cap controls are disabled, saying why",
    /AdministerSystem/.test(disabled || ""), disabled || "");
  check("a viewer still sees the nodes and the events",
    (await row("node-2").count()) === 1 && (await page.isVisible("#events")));
  try { cli("cancel", id); } catch (e) { console.log(`# cancel ${id}: ${e.message}`); }

  // The node serving the page stops: the page says so in words.
  await stop(nodes["node-1"].proc);
  check("node-1 exits 0 on SIGTERM", nodes["node-1"].proc.exitCode === 0,
    `exit ${nodes["node-1"].proc.exitCode} signal ${nodes["node-1"].proc.signalCode}`);
  const words = await waitFor(async () => {
    const t = await page.textContent("#msg");
    return /cannot reach the node/.test(t) && t;
  }, 10000);
  check("a node that cannot be reached is said so", words, words || "");

  check("no script errors or CSP violations", pageErrors.length === 0, pageErrors.join(" | "));
  const violations = await page.evaluate(() => window.cspViolations);
  check("no securitypolicyviolation event", Array.isArray(violations) && violations.length === 0,
    JSON.stringify(violations));
  check("no request left 127.0.0.1", foreign.length === 0, foreign.join(" "));
  await stop(nodes["node-2"].proc);   // a sanitizer build reports leaks at exit: non-zero
  check("node-2 exits 0 on SIGTERM", nodes["node-2"].proc.exitCode === 0,
    `exit ${nodes["node-2"].proc.exitCode} signal ${nodes["node-2"].proc.signalCode}`);
}

async function cleanup() {
  for (const p of procs.slice().reverse()) await stop(p);
  if (failed === 0) fs.rmSync(tmp, { recursive: true, force: true });
  else console.log(`# logs kept in ${tmp}`);
}

const watchdog = setTimeout(async () => {
  check("finished within 150 s", false);
  await cleanup();
  console.log(`${passed} passed, ${failed} failed`);
  process.exit(1);
}, 150000);

main()
  .catch((e) => check("test ran to the end", false, e.stack || String(e)))
  .finally(async () => {
    clearTimeout(watchdog);
    await cleanup();
    console.log(`${passed} passed, ${failed} failed`);
    process.exit(failed ? 1 : 0);
  });
