"""The OpenAI-compatible front (docs/openai.md): POST /v1/chat/completions, POST /v1/completions
and GET /v1/models in front of the demo, --exec and --pool responders.

- Wire: the raw format with http.client and curl: SSE chunks with the fields clients read, one
  id per answer, the role in the first delta, a last chunk with finish_reason, the usage chunk,
  `data: [DONE]`; the single JSON answer; pieces spread in time; max_tokens honoured by the demo;
  --model and /v1/models; unknown fields ignored.
- Errors: malformed JSON, wrong types, missing fields, non-UTF-8, a huge body, all as
  {"error": {...}} with the right status; 401 with --stream-token; 404 for an unlisted model;
  429 with Retry-After when the queue is full; CORS preflight.
- Exec: the request JSON in HSC_REQUEST_JSON_FILE (private, removed after), HSC_API and
  HSC_MAX_TOKENS; a stop sequence cut across pieces ends the answer and kills the responder; a
  responder failure after the start is an error event, never [DONE]; max_tokens enforced by hscd.
- Pool: docs/openai.md's worker (examples/responders/openai_worker.py) reads the request JSON
  and max_tokens from the meta frame.
- Sdk: the official `openai` npm client (tests/js/openai_client.mjs) for all of it.
"""

import http.client
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import unittest

from hscd import HOST, SLOW, Curl, ServerTestCase, piece, rss_kb, wait_for

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
RESPONDER = "python3 %s" % os.path.join(HERE, "responders", "openai_responder.py")
WORKER = "python3 %s" % os.path.join(ROOT, "examples", "responders", "openai_worker.py")
TEST_WORKER = os.path.join(HERE, "pool_workers", "worker.py")
JS_DIR = os.path.join(ROOT, "tests", "js")
JS_CLIENT = os.path.join(JS_DIR, "openai_client.mjs")

CHAT = "/v1/chat/completions"
CMPL = "/v1/completions"


def post(s, path, body, headers=None, timeout=30):
    """POSTs `body` (an object: JSON-encoded; bytes: as is); returns (status, headers, bytes)."""
    if not isinstance(body, (bytes, bytearray)):
        body = json.dumps(body).encode()
    h = {"Content-Type": "application/json"}
    h.update(headers or {})
    c = http.client.HTTPConnection(HOST, s.port, timeout=timeout * SLOW)
    try:
        c.request("POST", path, body=body, headers=h)
        r = c.getresponse()
        return r.status, r.headers, r.read()
    finally:
        c.close()


def sse_data(raw):
    """The data of each event of an OpenAI stream, in order ("[DONE]" included)."""
    out = []
    for block in raw.decode("utf-8").split("\n\n"):
        lines = [l[6:] for l in block.split("\n") if l.startswith("data: ")]
        if lines:
            out.append("\n".join(lines))
    return out


def chunks_of(raw):
    """(JSON chunks, whether the stream ended with [DONE])."""
    data = sse_data(raw)
    done = bool(data) and data[-1] == "[DONE]"
    return [json.loads(d) for d in data if d != "[DONE]"], done


def chat_content(chunks):
    return "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])


def user(text):
    return [{"role": "user", "content": text}]


class Wire(ServerTestCase):
    def setUp(self):
        self.s = self.start("--interval", "50ms", "--max-gen-len", "4")

    def test_streamed_chat_chunks(self):
        status, h, raw = post(self.s, CHAT, {"model": "m", "stream": True,
                                             "messages": [{"role": "system", "content": "Be brief"},
                                                          {"role": "user", "content": "Hi"}]})
        self.assertEqual(status, 200)
        self.assertTrue(h["Content-Type"].startswith("text/event-stream"))
        self.assertEqual(h["Transfer-Encoding"], "chunked")
        chunks, done = chunks_of(raw)
        self.assertTrue(done)
        text = "system: Be brief\nuser: Hi"
        self.assertEqual(chat_content(chunks), "".join(piece(i, 4, text) for i in range(1, 5)))
        self.assertEqual(len({c["id"] for c in chunks}), 1)
        self.assertTrue(chunks[0]["id"].startswith("chatcmpl-"))
        for c in chunks:
            self.assertEqual(c["object"], "chat.completion.chunk")
            self.assertEqual(c["model"], "m")
            self.assertIsInstance(c["created"], int)
        self.assertEqual(chunks[0]["choices"][0]["delta"]["role"], "assistant")
        self.assertEqual([c["choices"][0]["finish_reason"] for c in chunks],
                         [None] * 4 + ["stop"])
        self.assertEqual(chunks[-1]["choices"][0]["delta"], {})
        # events are "data: JSON" + a blank line, and [DONE] is the very last bytes
        self.assertTrue(raw.endswith(b"data: [DONE]\n\n"))

    def test_usage_chunk_when_asked(self):
        _, _, raw = post(self.s, CMPL, {"prompt": "three little words", "stream": True,
                                        "stream_options": {"include_usage": True}})
        chunks, done = chunks_of(raw)
        self.assertTrue(done)
        self.assertEqual(chunks[-1]["choices"], [])
        self.assertEqual(chunks[-1]["usage"],
                         {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7})
        self.assertEqual(chunks[-2]["choices"][0]["finish_reason"], "stop")
        self.assertEqual("".join(c["choices"][0]["text"] for c in chunks[:-1]),
                         "".join(piece(i, 4, "three little words") for i in range(1, 5)))

    def test_single_json_answers(self):
        status, h, raw = post(self.s, CMPL, {"prompt": "hello", "max_tokens": 2})
        self.assertEqual(status, 200)
        self.assertEqual(h["Content-Type"], "application/json")
        j = json.loads(raw)
        self.assertEqual(j["object"], "text_completion")
        self.assertTrue(j["id"].startswith("cmpl-"))
        self.assertEqual(j["model"], "hsc-demo")
        self.assertEqual(j["choices"][0]["text"], piece(1, 2, "hello") + piece(2, 2, "hello"))
        self.assertEqual(j["choices"][0]["finish_reason"], "length")  # max_tokens pieces
        self.assertEqual(j["usage"]["completion_tokens"], 2)
        status, _, raw = post(self.s, CHAT, {"messages": user("hey"), "stream": False})
        j = json.loads(raw)
        self.assertEqual(j["object"], "chat.completion")
        self.assertEqual(j["choices"][0]["message"],
                         {"role": "assistant",
                          "content": "".join(piece(i, 4, "user: hey") for i in range(1, 5))})
        self.assertEqual(j["choices"][0]["finish_reason"], "stop")

    def test_demo_honours_max_tokens_streaming(self):
        _, _, raw = post(self.s, CHAT, {"messages": user("x"), "stream": True,
                                        "max_completion_tokens": 1})
        chunks, done = chunks_of(raw)
        self.assertTrue(done)
        self.assertEqual(chat_content(chunks), piece(1, 1, "user: x"))
        self.assertEqual(chunks[-1]["choices"][0]["finish_reason"], "length")

    def test_pieces_spread_in_time_with_curl(self):
        c = Curl("-H", "Content-Type: application/json", "--data-binary",
                 json.dumps({"prompt": "t", "stream": True}), self.s.url(CMPL))
        out, rc, err = c.read_all()
        self.assertEqual(rc, 0, err)
        times = [t for t, line, _ in c.line_times() if line.startswith(b"data: {")]
        self.assertEqual(len(times), 5)  # 4 pieces and the last chunk
        # not one burst: the demo sends one piece every 50 ms (generous: 60 ms over 3 gaps)
        self.assertGreater(times[3] - times[0], 0.06)

    def test_longest_model_name_escaped(self):
        # 256 bytes that each escape to six: the chunks' fixed parts at their largest
        model = "\x01" * 128 + '"' * 64 + "é" * 32
        self.assertEqual(len(model.encode()), 256)
        _, _, raw = post(self.s, CHAT, {"model": model, "messages": user("x"), "stream": True,
                                        "stream_options": {"include_usage": True},
                                        "max_tokens": 1})
        chunks, done = chunks_of(raw)
        self.assertTrue(done)
        self.assertEqual({c["model"] for c in chunks}, {model})
        self.assertEqual(chunks[-1]["usage"]["completion_tokens"], 1)
        _, _, raw = post(self.s, CMPL, {"model": model, "prompt": "p", "max_tokens": 1})
        self.assertEqual(json.loads(raw)["model"], model)
        status, _, raw = post(self.s, CHAT, {"model": model + "x", "messages": user("x")})
        self.assertEqual(status, 400, raw)  # 257 bytes: not a model name

    def test_unknown_fields_are_ignored(self):
        status, _, raw = post(self.s, CHAT, {
            "messages": [{"role": "user", "content": "u", "name": "bob", "x-extra": [1, 2]}],
            "temperature": 0.3, "top_p": 1, "seed": 7, "tools": [], "user": "me",
            "frequency_penalty": 0, "logit_bias": {}, "some_future_field": {"a": None}})
        self.assertEqual(status, 200, raw)
        self.assertEqual(json.loads(raw)["choices"][0]["message"]["content"],
                         "".join(piece(i, 4, "user: u") for i in range(1, 5)))

    def test_models(self):
        c = http.client.HTTPConnection(HOST, self.s.port, timeout=10 * SLOW)
        c.request("GET", "/v1/models")
        r = c.getresponse()
        self.assertEqual(r.status, 200)
        j = json.loads(r.read())
        c.close()
        self.assertEqual(j["object"], "list")
        self.assertEqual([m["id"] for m in j["data"]], ["hsc-demo"])
        self.assertEqual(j["data"][0]["object"], "model")


class Errors(ServerTestCase):
    def assertError(self, status, h, raw, want_status, param=None, code=None):
        self.assertEqual(status, want_status, raw)
        self.assertEqual(h["Content-Type"], "application/json")
        e = json.loads(raw)["error"]
        self.assertIsInstance(e["message"], str)
        self.assertTrue(e["message"])
        self.assertIsInstance(e["type"], str)
        self.assertEqual(e.get("param"), param)
        if code is not None:
            self.assertEqual(e["code"], code)
        return e

    def test_bad_requests(self):
        s = self.start("--max-body-bytes", "64k")
        cases = [
            (CHAT, b"{not json", None),
            (CHAT, b"", None),
            (CHAT, b"[1,2]", None),
            (CHAT, {"model": "m"}, "messages"),
            (CHAT, {"messages": "hi"}, "messages"),
            (CHAT, {"messages": []}, "messages"),
            (CHAT, {"messages": [{"role": "user", "content": 5}]}, "messages"),
            (CHAT, {"messages": user("x"), "stream": "yes"}, "stream"),
            (CHAT, {"messages": user("x"), "max_tokens": -1}, "max_tokens"),
            (CHAT, {"messages": user("x"), "stop": [1]}, "stop"),
            (CHAT, {"messages": user("x"), "n": 3}, "n"),
            (CMPL, {"prompt": 42}, "prompt"),
            (CMPL, {"prompt": [1, 2]}, "prompt"),
            (CMPL, b'{"prompt": "\xff\xfe bad"}', None),  # not UTF-8
            (CMPL, {"prompt": ""}, "prompt"),
        ]
        for path, body, param in cases:
            with self.subTest(body=body):
                status, h, raw = post(s, path, body)
                e = self.assertError(status, h, raw, 400, param)
                self.assertEqual(e["type"], "invalid_request_error")
        # a huge conversation: over --max-body-bytes is 413, and the server is still fine
        huge = {"messages": [{"role": "user", "content": "x" * 1000}] * 200}
        status, h, raw = post(s, CHAT, huge)
        self.assertEqual(status, 413)
        status, _, _ = post(s, CHAT, {"messages": user("ok")})
        self.assertEqual(status, 200)

    def test_large_conversation_within_limits(self):
        s = self.start("--max-gen-len", "2", "--interval", "0")
        msgs = [{"role": "user" if i % 2 else "assistant", "content": "m%d " % i * 50}
                for i in range(300)]
        status, _, raw = post(s, CHAT, {"messages": msgs})
        self.assertEqual(status, 200)
        content = json.loads(raw)["choices"][0]["message"]["content"]
        self.assertIn("assistant: m0 m0", content)
        self.assertIn("user: m299", content)

    def test_token_required(self):
        s = self.start("--stream-token", "sekrit")
        status, h, raw = post(s, CHAT, {"messages": user("x")})
        e = self.assertError(status, h, raw, 401)
        self.assertEqual(e["type"], "authentication_error")
        status, _, _ = post(s, CHAT, {"messages": user("x")},
                            {"Authorization": "Bearer sekrit"})
        self.assertEqual(status, 200)

    def test_model_list(self):
        s = self.start("--model", "big,small", "--max-gen-len", "1")
        status, h, raw = post(s, CHAT, {"model": "huge", "messages": user("x")})
        self.assertError(status, h, raw, 404, "model", "model_not_found")
        status, _, raw = post(s, CHAT, {"model": "small", "messages": user("x")})
        self.assertEqual(json.loads(raw)["model"], "small")
        status, _, raw = post(s, CHAT, {"messages": user("x")})
        self.assertEqual(json.loads(raw)["model"], "big")
        c = http.client.HTTPConnection(HOST, s.port, timeout=10 * SLOW)
        c.request("GET", "/v1/models")
        self.assertEqual([m["id"] for m in json.loads(c.getresponse().read())["data"]],
                         ["big", "small"])
        c.close()

    def test_queue_full_is_429(self):
        d = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, d, True)
        s = self.start("--exec", "%s forever %s" % (RESPONDER, d), "--max-processes", "1",
                       "--queue", "0", "--threads", "1")
        c = http.client.HTTPConnection(HOST, s.port, timeout=30 * SLOW)
        c.request("POST", CHAT, body=json.dumps({"messages": user("x"), "stream": True}))
        r = c.getresponse()
        self.assertEqual(r.status, 200)
        r.read1(100)  # it runs
        status, h, raw = post(s, CHAT, {"messages": user("y")})
        e = self.assertError(status, h, raw, 429)
        self.assertEqual(e["type"], "rate_limit_error")
        self.assertEqual(h["Retry-After"], "1")
        c.close()

    def test_cors_preflight(self):
        s = self.start("--cors-origin", "https://chat.example")
        c = http.client.HTTPConnection(HOST, s.port, timeout=10 * SLOW)
        c.request("OPTIONS", CHAT, headers={"Origin": "https://chat.example",
                                             "Access-Control-Request-Method": "POST",
                                             "Access-Control-Request-Headers": "content-type"})
        r = c.getresponse()
        r.read()
        self.assertIn(r.status, (200, 204))
        self.assertEqual(r.headers["Access-Control-Allow-Origin"], "https://chat.example")
        self.assertIn("POST", r.headers["Access-Control-Allow-Methods"])
        c.close()
        status, h, _ = post(s, CHAT, {"messages": user("x")}, {"Origin": "https://chat.example"})
        self.assertEqual(status, 200)
        self.assertEqual(h["Access-Control-Allow-Origin"], "https://chat.example")
        status, h, _ = post(s, CHAT, {"messages": 1}, {"Origin": "https://chat.example"})
        self.assertEqual(status, 400)  # errors too, or a browser could not read them
        self.assertEqual(h["Access-Control-Allow-Origin"], "https://chat.example")


class Exec(ServerTestCase):
    def test_request_reaches_the_program(self):
        s = self.start("--exec", RESPONDER + " env")
        req = {"model": "x", "messages": [{"role": "user", "content": "héllo"}],
               "max_tokens": 5, "custom": {"k": [1, "ü"]}}
        status, _, raw = post(s, CHAT, req)
        self.assertEqual(status, 200, raw)
        got = json.loads(json.loads(raw)["choices"][0]["message"]["content"])
        self.assertEqual(got["api"], "chat")
        self.assertEqual(got["max_tokens"], "5")
        self.assertEqual(json.loads(got["json"]), req)
        self.assertNotIn("\n", got["json"])
        self.assertEqual(got["text"], "user: héllo")
        self.assertEqual(got["mode"], "0o600")
        self.assertEqual(got["dir_mode"], "0o700")
        # the file goes with its process
        self.assertTrue(wait_for(lambda: not os.path.exists(got["file"]), 10))

    def test_stop_split_across_pieces_cancels(self):
        d = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, d, True)
        s = self.start("--exec", "%s split %s" % (RESPONDER, d))
        t0 = time.monotonic()
        status, h, raw = post(s, CMPL, {"prompt": "p", "stream": True, "stop": ["END", "zzz"]})
        self.assertLess(time.monotonic() - t0, 30)  # not the responder's 60 s
        chunks, done = chunks_of(raw)
        self.assertTrue(done)
        self.assertEqual("".join(c["choices"][0]["text"] for c in chunks), "Hello, world! ")
        self.assertEqual(chunks[-1]["choices"][0]["finish_reason"], "stop")
        pid = int(open(os.path.join(d, "%s.pid" % h["X-Request-Id"])).read())
        self.assertTrue(wait_for(lambda: not os.path.exists("/proc/%d" % pid), 10),
                        "the responder still runs")

    def test_failure_after_start_is_an_error_event(self):
        s = self.start("--exec", RESPONDER + " fail")
        status, _, raw = post(s, CHAT, {"messages": user("x"), "stream": True})
        self.assertEqual(status, 200)
        data = sse_data(raw)
        self.assertNotIn("[DONE]", data)
        err = json.loads(data[-1])["error"]
        self.assertIn("status 3", err["message"])
        self.assertEqual(err["type"], "server_error")
        self.assertEqual(chat_content([json.loads(x) for x in data[:-1]]), "partial ")
        status, h, raw = post(s, CHAT, {"messages": user("x")})
        self.assertEqual(status, 500)
        self.assertEqual(json.loads(raw)["error"]["code"], "responder_failed")

    def test_client_leaving_a_single_answer_cancels(self):
        d = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, d, True)
        s = self.start("--exec", "%s forever %s" % (RESPONDER, d))
        c = http.client.HTTPConnection(HOST, s.port, timeout=10 * SLOW)
        c.request("POST", CHAT, body=json.dumps({"messages": user("x")}))
        self.assertTrue(wait_for(lambda: any(f.endswith(".pid") for f in os.listdir(d)), 10))
        pid = int(open(os.path.join(d, [f for f in os.listdir(d) if f.endswith(".pid")][0])).read())
        self.assertTrue(os.path.exists("/proc/%d" % pid))
        c.close()  # before any answer: stream false waits for the end
        self.assertTrue(wait_for(lambda: not os.path.exists("/proc/%d" % pid), 10),
                        "the responder still runs")

    def test_keepalive_comments_before_the_first_piece(self):
        s = self.start("--exec", RESPONDER + " sleepy 700", "--keepalive", "100ms")
        status, _, raw = post(s, CHAT, {"messages": user("x"), "stream": True})
        self.assertEqual(status, 200)
        before = raw.split(b"data: ", 1)[0]
        # comments (which every SSE client skips) while the responder is silent: a few, not
        # counted exactly
        self.assertGreaterEqual(before.count(b"\n: ") + before.startswith(b":"), 3, raw[:300])
        chunks, done = chunks_of(raw)
        self.assertTrue(done)
        self.assertEqual(chat_content(chunks), "awake")

    def test_flood_to_a_slow_reader_is_paused(self):
        d = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, d, True)
        s = self.start("--exec", "%s flood %s" % (RESPONDER, d), "--threads", "1",
                       "--max-queue-bytes", "1m")
        base = rss_kb(s.proc.pid)
        sock = socket.create_connection((HOST, s.port))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
        body = json.dumps({"messages": user("x"), "stream": True}).encode()
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n"
                     b"\r\n" % len(body) + body)
        self.assertTrue(wait_for(lambda: any(f.endswith(".pid") for f in os.listdir(d)), 10))
        pid = int(open(os.path.join(d, [f for f in os.listdir(d) if f.endswith(".pid")][0])).read())
        peak = base
        for _ in range(15):  # 1.5 s of reading nothing while it floods
            time.sleep(0.1)
            peak = max(peak, rss_kb(s.proc.pid))
        # paused, not dropped: bounded by the queue (1 MiB), not by what the responder wrote
        self.assertLess(peak - base, 16 * 1024, "hscd grew by %d KiB" % (peak - base))
        self.assertTrue(os.path.exists("/proc/%d" % pid))
        sock.settimeout(10 * SLOW)
        self.assertTrue(sock.recv(65536).startswith(b"HTTP/1.1 200"))
        sock.close()
        self.assertTrue(wait_for(lambda: not os.path.exists("/proc/%d" % pid), 10),
                        "the responder still runs after the client left")

    def test_max_tokens_enforced_by_hscd(self):
        s = self.start("--exec", RESPONDER + " pieces 20 50")
        _, _, raw = post(s, CMPL, {"prompt": "p", "max_tokens": 3})
        j = json.loads(raw)
        # a piece of an exec program is a read of its stdout: under load two writes can arrive
        # as one read, so the text is three reads' worth, at least three tokens and not all 20
        text = j["choices"][0]["text"]
        self.assertTrue(text.startswith("tok1 tok2 tok3 "), text)
        self.assertTrue("".join("tok%d " % i for i in range(1, 21)).startswith(text), text)
        self.assertNotIn("tok20", text)
        self.assertEqual(j["usage"]["completion_tokens"], 3)
        self.assertEqual(j["choices"][0]["finish_reason"], "length")


class Pool(ServerTestCase):
    def scripted_pool(self):
        d = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, d, True)
        s = self.start("--pool", "1", "--exec", "python3 %s --dir %s" % (TEST_WORKER, d))
        return s, d

    def frames(self, d):
        out = []
        for f in os.listdir(d):
            if f.endswith(".frames"):
                with open(os.path.join(d, f)) as fh:
                    out += [json.loads(l) for l in fh if l.endswith("\n")]
        return out

    def test_meta_carries_the_request(self):
        s, _ = self.scripted_pool()
        req = {"model": "m", "prompt": "meta", "max_tokens": 9, "extra": ["é", {"k": None}]}
        status, _, raw = post(s, CMPL, req)
        self.assertEqual(status, 200, raw)
        meta = dict(l.split("=", 1) for l in json.loads(raw)["choices"][0]["text"].split("\n")
                    if l)
        self.assertEqual(meta["api"], "completions")
        self.assertEqual(meta["max_tokens"], "9")
        self.assertEqual(meta["path"], CMPL)
        self.assertEqual(json.loads(meta["request_json"]), req)

    def test_stop_sends_cancel_to_the_worker(self):
        s, d = self.scripted_pool()
        status, _, raw = post(s, CMPL, {"prompt": "slow 20 30", "stop": "2/20"})
        self.assertEqual(status, 200, raw)
        choice = json.loads(raw)["choices"][0]
        self.assertTrue(choice["text"].startswith("slow 1/20 pid="), choice)
        self.assertTrue(choice["text"].endswith("\nslow "), choice)
        self.assertEqual(choice["finish_reason"], "stop")
        self.assertTrue(wait_for(lambda: "cancel" in [f["ev"] for f in self.frames(d)], 10),
                        self.frames(d))
        # the worker is free again: the next request is served
        status, _, raw = post(s, CMPL, {"prompt": "echo again"})
        self.assertEqual(json.loads(raw)["choices"][0]["text"], "again")

    def test_documented_worker(self):
        s = self.start("--pool", "2", "--exec", WORKER)
        status, _, raw = post(s, CHAT, {"messages": user("one two three four")})
        self.assertEqual(status, 200, raw)
        self.assertEqual(json.loads(raw)["choices"][0]["message"]["content"],
                         "four three two one ")
        _, _, raw = post(s, CHAT, {"messages": user("one two three four"), "stream": True,
                                   "max_tokens": 2})
        chunks, done = chunks_of(raw)
        self.assertTrue(done)
        self.assertEqual(chat_content(chunks), "four three ")
        self.assertEqual(chunks[-1]["choices"][0]["finish_reason"], "length")


# ---- the official npm client -------------------------------------------------------------------


def node_binary():
    node = shutil.which("node") or shutil.which("nodejs")
    if node is None:
        raise AssertionError("node is not installed: run scripts/install-deps.sh")
    if not os.path.isfile(os.path.join(JS_DIR, "node_modules", "openai", "package.json")):
        raise AssertionError("%s/node_modules has no openai: run scripts/install-js.sh" % JS_DIR)
    return node


class SdkRun:
    """openai_client.mjs as a subprocess; its JSON lines are read by a thread."""

    def __init__(self, s, op, params=None, api_key=None, abort_after=None):
        args = [node_binary(), JS_CLIENT, "--base", "http://%s:%d" % (HOST, s.port), "--op", op]
        if params is not None:
            args += ["--params", json.dumps(params)]
        if api_key:
            args += ["--api-key", api_key]
        if abort_after:
            args += ["--abort-after", str(abort_after)]
        self.proc = subprocess.Popen(args, cwd=JS_DIR, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.lines = []
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(json.loads(line))

    def wait_for(self, kind, timeout=30):
        ok = wait_for(lambda: any(l["type"] == kind for l in self.lines), timeout)
        assert ok, "no %s from the client: %r" % (kind, self.lines)

    def finish(self, timeout=60):
        try:
            self.proc.stdin.close()
            self.proc.wait(timeout * SLOW)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise AssertionError("the node client did not finish")
        self.thread.join(10)
        err = self.proc.stderr.read().decode("utf-8", "replace")
        self.proc.stdout.close()
        self.proc.stderr.close()
        assert self.proc.returncode == 0, err
        return self.lines


def sdk(s, op, params=None, **kw):
    return SdkRun(s, op, params, **kw).finish()


class Sdk(ServerTestCase):
    def test_chat_stream_arrives_piece_by_piece(self):
        s = self.start("--interval", "100ms", "--max-gen-len", "5")
        lines = sdk(s, "chat", {"model": "hsc-demo", "messages": user("hi"), "stream": True,
                                "stream_options": {"include_usage": True}})
        chunks = [l for l in lines if l["type"] == "chunk"]
        self.assertEqual(lines[-1]["type"], "end")
        content = [c["chunk"]["choices"][0]["delta"].get("content") for c in chunks
                   if c["chunk"]["choices"]]
        self.assertEqual(content[:5], [piece(i, 5, "user: hi") for i in range(1, 6)])
        self.assertEqual(chunks[-1]["chunk"]["usage"]["completion_tokens"], 5)
        # for await hands them over as they come: spread, not one burst at the end
        t = [c["t"] for c in chunks[:5]]
        self.assertGreater(t[4] - t[0], 150)  # ms; they are 400 ms apart in all

    def test_completions_and_single_answers(self):
        s = self.start("--interval", "0", "--max-gen-len", "3")
        lines = sdk(s, "completions", {"model": "m", "prompt": "p", "stream": True})
        text = "".join(l["chunk"]["choices"][0]["text"] for l in lines if l["type"] == "chunk")
        self.assertEqual(text, "".join(piece(i, 3, "p") for i in range(1, 4)))
        r = sdk(s, "chat", {"model": "m", "messages": user("q")})[0]["result"]
        self.assertEqual(r["choices"][0]["message"]["content"],
                         "".join(piece(i, 3, "user: q") for i in range(1, 4)))
        r = sdk(s, "completions", {"model": "m", "prompt": "q", "max_tokens": 1})[0]["result"]
        self.assertEqual(r["choices"][0]["text"], piece(1, 1, "q"))
        self.assertEqual(r["choices"][0]["finish_reason"], "length")
        r = sdk(s, "models")[0]["result"]
        self.assertEqual([m["id"] for m in r], ["hsc-demo"])

    def test_stop_split_across_pieces(self):
        d = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, d, True)
        s = self.start("--exec", "%s split %s" % (RESPONDER, d))
        lines = sdk(s, "chat", {"model": "m", "messages": user("x"), "stream": True,
                                "stop": "END"})
        self.assertEqual(lines[-1]["type"], "end")
        chunks = [l["chunk"] for l in lines if l["type"] == "chunk"]
        self.assertEqual(chat_content(chunks), "Hello, world! ")
        self.assertEqual(chunks[-1]["choices"][0]["finish_reason"], "stop")
        pids = [int(open(os.path.join(d, f)).read()) for f in os.listdir(d)
                if f.endswith(".pid")]
        self.assertEqual(len(pids), 1)
        self.assertTrue(wait_for(lambda: not os.path.exists("/proc/%d" % pids[0]), 10))

    def test_abort_cancels_the_responder(self):
        d = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, d, True)
        s = self.start("--exec", "%s forever %s" % (RESPONDER, d))
        run = SdkRun(s, "chat", {"model": "m", "messages": user("x"), "stream": True},
                     abort_after=3)
        try:
            run.wait_for("aborted")
            pidfiles = [f for f in os.listdir(d) if f.endswith(".pid")]
            self.assertEqual(len(pidfiles), 1)
            pid = int(open(os.path.join(d, pidfiles[0])).read())
            # the client process is still alive: only the abort can have stopped it
            self.assertTrue(wait_for(lambda: not os.path.exists("/proc/%d" % pid), 10),
                            "the responder still runs after the abort")
            self.assertIsNone(run.proc.poll())
        finally:
            run.finish()

    def test_errors_are_sdk_error_types(self):
        s = self.start("--stream-token", "tok", "--model", "only", "--exec",
                       RESPONDER + " fail")
        e = sdk(s, "chat", {"model": "only", "messages": user("x")})[0]
        self.assertEqual((e["name"], e["status"]), ("AuthenticationError", 401))
        e = sdk(s, "chat", {"model": "only", "messages": "nope"}, api_key="tok")[0]
        self.assertEqual((e["name"], e["status"]), ("BadRequestError", 400))
        self.assertIn("messages", e["message"])
        e = sdk(s, "chat", {"model": "other", "messages": user("x")}, api_key="tok")[0]
        self.assertEqual((e["name"], e["status"], e["code"]),
                         ("NotFoundError", 404, "model_not_found"))
        e = sdk(s, "chat", {"model": "only", "messages": user("x")}, api_key="tok")[0]
        self.assertEqual((e["name"], e["status"]), ("InternalServerError", 500))
        # mid-stream: the pieces before it arrive, then the SDK raises
        lines = sdk(s, "chat", {"model": "only", "messages": user("x"), "stream": True},
                    api_key="tok")
        self.assertEqual(lines[-1]["type"], "error")
        self.assertTrue(lines[-1]["apiError"])
        self.assertIn("status 3", lines[-1]["message"])
        self.assertEqual(chat_content([l["chunk"] for l in lines if l["type"] == "chunk"]),
                         "partial ")


if __name__ == "__main__":
    unittest.main()
