// A real EventSource client (the npm `eventsource` package) for hsc's integration tests
// (tests/integration/test_eventsource.py). It subscribes to one URL and reports, one JSON object
// per line on stdout, everything a test needs to judge the stream:
//
//   {"t":"connect","n":1,"lastEventId":null}      every HTTP request the client makes; the
//                                                 Last-Event-ID header it sent (null: none)
//   {"t":"open"}                                   a connection was established (200)
//   {"t":"event","type":"message","id":"..","data":".."}   every event dispatched
//   {"t":"error","message":"..","code":..}         connection lost or failed (it reconnects)
//   {"t":"done","reason":"until"|"count"|"timeout"|"closed"}  last line
//
// Usage: node es_client.mjs --url URL [--types a,b] [--until DATA] [--count N] [--timeout SEC]
//   --types    event types to listen for besides "message" (hsc.gap is always listened for)
//   --until    exit 0 after an event whose data is DATA
//   --count    exit 0 after N events (of any listened type)
//   --timeout  exit 2 after SEC seconds (default 60); a client that failed for good exits 3
//
// The client never closes by itself otherwise: losing the connection makes the package
// reconnect after the server's retry: delay and send Last-Event-ID, which is what is tested.
import { EventSource } from "eventsource";

function parseArgs(argv) {
  const opts = { types: [], until: null, count: 0, timeout: 60, url: null };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const v = argv[i + 1];
    if (a === "--url") opts.url = v;
    else if (a === "--types") opts.types = v.split(",").filter((s) => s.length > 0);
    else if (a === "--until") opts.until = v;
    else if (a === "--count") opts.count = parseInt(v, 10);
    else if (a === "--timeout") opts.timeout = parseFloat(v);
    else {
      process.stderr.write(`es_client: unknown argument ${a}\n`);
      process.exit(64);
    }
    i++;
  }
  if (!opts.url) {
    process.stderr.write("es_client: --url is required\n");
    process.exit(64);
  }
  return opts;
}

const opts = parseArgs(process.argv.slice(2));
const out = [];
let finished = false;

function emit(obj) {
  out.push(JSON.stringify(obj) + "\n");
  if (out.length >= 256) flush();
}

function flush() {
  if (out.length > 0) {
    process.stdout.write(out.join(""));
    out.length = 0;
  }
}

function finish(reason, status) {
  if (finished) return;
  finished = true;
  es.close();
  emit({ t: "done", reason });
  flush();
  // Exit once stdout has drained (a pipe may still hold a backlog).
  process.stdout.write("", () => process.exit(status));
}

let requests = 0;
// Wraps fetch to record each request's Last-Event-ID: proof that the reconnection resumed.
function recordingFetch(url, init) {
  requests++;
  const headers = (init && init.headers) || {};
  let last = null;
  for (const [k, v] of Object.entries(headers)) {
    if (k.toLowerCase() === "last-event-id") last = v;
  }
  emit({ t: "connect", n: requests, lastEventId: last });
  return globalThis.fetch(url, init);
}

const es = new EventSource(opts.url, { fetch: recordingFetch });
let events = 0;

function onEvent(ev) {
  emit({ t: "event", type: ev.type, id: ev.lastEventId, data: ev.data });
  events++;
  if (opts.until !== null && ev.data === opts.until) finish("until", 0);
  else if (opts.count > 0 && events >= opts.count) finish("count", 0);
}

es.addEventListener("open", () => emit({ t: "open" }));
es.addEventListener("error", (ev) => {
  emit({ t: "error", message: String(ev.message || ""), code: ev.code === undefined ? null : ev.code });
  if (es.readyState === EventSource.CLOSED) finish("closed", 3);
});
for (const type of new Set(["message", "hsc.gap", ...opts.types])) {
  es.addEventListener(type, onEvent);
}
setTimeout(() => finish("timeout", 2), opts.timeout * 1000).unref();
setInterval(flush, 50).unref();
// Keep the process alive while the client waits between reconnections.
const keep = setInterval(() => {}, 1000);
process.on("exit", () => clearInterval(keep));
