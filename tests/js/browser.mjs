// Headless Chromium (Debian's `chromium` package) driven by the npm `playwright-core` package, for
// hsc's browser tests (tests/integration/test_browser.py). The Python test is in control: it sends
// one JSON command per line on stdin, this script runs it and answers with one JSON line on
// stdout, so the test can cut a proxy, publish, or restart hscd between two browser steps.
//
// Usage: node browser.mjs [--timeout SEC] [--executable PATH]
//   --timeout     exit (closing the browser) after SEC seconds whatever happens (default 120)
//   --executable  the Chromium binary (default /usr/bin/chromium); playwright-core never
//                 downloads a browser
//   --arg ARG     one more Chromium command-line argument (repeatable), e.g. the test CA's
//                 --ignore-certificate-errors-spki-list=... (tests/integration/test_tls.py)
//
// Lines out (stdout):
//   {"t":"ready","version":"156.0...","pid":N}    once the browser runs; pid is this process
//   {"t":"reply","id":N,"ok":true,"value":...}    the answer to command N
//   {"t":"reply","id":N,"ok":false,"error":".."}  command N failed (a timeout, a bad selector)
//   {"t":"pageerror","page":"a","message":".."}   an uncaught exception in a page
//   {"t":"console","page":"a","type":"error","text":".."}   a page's console output
//   {"t":"crash","page":"a"}                      a page's renderer crashed
//
// Commands (stdin), each {"id":N,"op":..., ...}; `page` names a page the test opened, `ms` is a
// timeout in milliseconds:
//   open {page, url, context?}  a new page (in browser context `context`, default "default",
//                               created on first use) loaded from url (until "load")
//   goto {page, url}            navigates an open page
//   fill {page, sel, value}     types into an input (replacing its value)
//   click {page, sel}           clicks an element (waits until it is enabled)
//   eval {page, fn, arg?}       runs the JavaScript function source `fn` in the page with `arg`;
//                               its (awaited) result, which must be JSON, is the value
//   wait {page, fn, arg?, ms}   polls `fn(arg)` every 50 ms until it is truthy; that is the value
//   screenshot {page, path}     writes a full-page PNG
//   close {page}                closes a page
//   quit {}                     closes the browser and exits 0 (so does EOF on stdin)
import { chromium } from "playwright-core";
import { createInterface } from "node:readline";

function parseArgs(argv) {
  const opts = { timeout: 120, executable: "/usr/bin/chromium", args: [] };
  for (let i = 0; i < argv.length; i += 2) {
    const [a, v] = [argv[i], argv[i + 1]];
    if (a === "--timeout") opts.timeout = parseFloat(v);
    else if (a === "--executable") opts.executable = v;
    else if (a === "--arg") opts.args.push(v);
    else {
      process.stderr.write(`browser.mjs: unknown argument ${a}\n`);
      process.exit(64);
    }
  }
  return opts;
}

const opts = parseArgs(process.argv.slice(2));

function emit(obj) {
  process.stdout.write(JSON.stringify(obj) + "\n");
}

let browser = null;
const contexts = new Map();
const pages = new Map();
let quitting = false;

async function quit(status) {
  if (quitting) return;
  quitting = true;
  try {
    if (browser) await browser.close();
  } catch (err) {
    process.stderr.write(`browser.mjs: closing the browser: ${err}\n`);
  }
  process.stdout.write("", () => process.exit(status));
}

// Never outlive the test: a watchdog, and the end of stdin (the test went away).
setTimeout(() => {
  process.stderr.write(`browser.mjs: --timeout ${opts.timeout} s reached\n`);
  quit(2);
}, opts.timeout * 1000).unref();
for (const sig of ["SIGTERM", "SIGINT", "SIGHUP"]) process.on(sig, () => quit(1));

function page(name) {
  const p = pages.get(name);
  if (!p) throw new Error(`no page named ${JSON.stringify(name)}`);
  return p;
}

// `fn` is a function's source; it is called with `arg` in the page, and the promise it may return
// is awaited by playwright.
function call(fn, arg) {
  return `(${fn})(${JSON.stringify(arg === undefined ? null : arg)})`;
}

async function run(cmd) {
  switch (cmd.op) {
    case "open": {
      const cname = cmd.context || "default";
      let ctx = contexts.get(cname);
      if (!ctx) {
        ctx = await browser.newContext({ viewport: { width: 1000, height: 800 } });
        contexts.set(cname, ctx);
      }
      const p = await ctx.newPage();
      const name = cmd.page;
      pages.set(name, p);
      p.on("pageerror", (err) => emit({ t: "pageerror", page: name, message: String(err) }));
      p.on("console", (m) => emit({ t: "console", page: name, type: m.type(), text: m.text() }));
      p.on("crash", () => emit({ t: "crash", page: name }));
      const res = await p.goto(cmd.url, { waitUntil: "load", timeout: cmd.ms || 30000 });
      return res ? res.status() : null;
    }
    case "goto": {
      const opts = { waitUntil: "load", timeout: cmd.ms || 30000 };
      const res = await page(cmd.page).goto(cmd.url, opts);
      return res ? res.status() : null;
    }
    case "fill":
      await page(cmd.page).fill(cmd.sel, cmd.value, { timeout: cmd.ms || 10000 });
      return null;
    case "click":
      await page(cmd.page).click(cmd.sel, { timeout: cmd.ms || 10000 });
      return null;
    case "eval":
      return await page(cmd.page).evaluate(call(cmd.fn, cmd.arg));
    case "wait": {
      const h = await page(cmd.page).waitForFunction(call(cmd.fn, cmd.arg), undefined, {
        polling: 50,
        timeout: cmd.ms || 10000,
      });
      const v = await h.jsonValue();
      await h.dispose();
      return v;
    }
    case "screenshot":
      await page(cmd.page).screenshot({ path: cmd.path, fullPage: true, timeout: cmd.ms || 10000 });
      return cmd.path;
    case "close":
      await page(cmd.page).close();
      pages.delete(cmd.page);
      return null;
    case "quit":
      return null;
    default:
      throw new Error(`unknown op ${JSON.stringify(cmd.op)}`);
  }
}

try {
  browser = await chromium.launch({
    executablePath: opts.executable,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"].concat(
      opts.args,
    ),
    timeout: 30000,
  });
} catch (err) {
  process.stderr.write(`browser.mjs: cannot launch ${opts.executable}: ${err}\n`);
  process.exit(3);
}
emit({ t: "ready", version: browser.version(), pid: process.pid });

// One command at a time, in order: the test waits for each reply before it sends the next.
const rl = createInterface({ input: process.stdin, crlfDelay: Infinity });
for await (const line of rl) {
  if (!line.trim()) continue;
  let cmd;
  try {
    cmd = JSON.parse(line);
  } catch (err) {
    emit({ t: "reply", id: null, ok: false, error: `bad command line: ${err}` });
    continue;
  }
  try {
    const value = await run(cmd);
    emit({ t: "reply", id: cmd.id, ok: true, value: value === undefined ? null : value });
  } catch (err) {
    const text = String(err && err.message ? err.message : err);
    const error = text.replace(/\x1b\[[0-9;]*m/g, ""); // playwright colours its call logs
    emit({ t: "reply", id: cmd.id, ok: false, error });
  }
  if (cmd.op === "quit") break;
}
await quit(0);
