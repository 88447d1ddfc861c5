"""examples/embed.c: a program linking libhsc with its own C callback responder serves
/v1/stream, pieces produced asynchronously on the loop, in both wire forms, and a client that
leaves mid-answer cancels it (the program then exits cleanly: under ASan, without leaks). The
same responder answers the OpenAI-compatible front and honours its max_tokens."""

import json
import os
import socket
import subprocess
import time
import unittest
import urllib.parse

from hscd import HOST, SLOW, RawConn, ServerTestCase, binary, parse_sse


def embed_binary():
    path = os.path.join(os.path.dirname(binary()), "embed")
    if not os.access(path, os.X_OK):
        raise AssertionError("examples/embed.c was not built next to hscd: %s" % path)
    return path


class Embed(ServerTestCase):
    def start_embed(self):
        return self.start(program=embed_binary())

    def test_words_stream_as_chunks(self):
        srv = self.start_embed()
        with RawConn(srv.port) as c:
            c.request("GET", "/v1/stream?q=" + urllib.parse.quote("streams of words"))
            r = c.read_response(timeout=10)
        self.assertEqual(r.status, 200)
        self.assertTrue(r.complete, r)
        self.assertEqual(r.chunks, [b"smaerts\n", b"fo\n", b"sdrow\n"])

    def test_words_stream_as_events(self):
        srv = self.start_embed()
        with RawConn(srv.port) as c:
            c.request("POST", "/v1/stream", body="ab cd",
                      headers=[("Accept", "text/event-stream")])
            r = c.read_response(timeout=10)
        events = parse_sse(r.body)
        self.assertEqual(events[:2], [("message", "ba\n"), ("message", "dc\n")])
        self.assertEqual(events[2][0], "done")

    def test_openai_front_and_max_tokens(self):
        srv = self.start_embed()
        body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "ab cd ef"}],
                           "max_tokens": 2})
        with RawConn(srv.port) as c:
            c.request("POST", "/v1/chat/completions", body=body,
                      headers=[("Content-Type", "application/json")])
            r = c.read_response(timeout=10)
        self.assertEqual(r.status, 200, r)
        choice = json.loads(r.body)["choices"][0]
        self.assertEqual(choice["message"]["content"], ":resu\nba\n")  # "user: ab ..." reversed
        self.assertEqual(choice["finish_reason"], "length")

    def test_client_leaving_cancels(self):
        srv = self.start_embed()
        s = socket.create_connection((HOST, srv.port))
        s.sendall(b"GET /v1/stream?q=" + b"+".join([b"w"] * 200) + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        s.settimeout(5)
        self.assertIn(b"200 OK", s.recv(4096))
        s.close()
        time.sleep(0.3)
        with RawConn(srv.port) as c:  # still serving
            c.request("GET", "/healthz")
            self.assertEqual(c.read_response().body, b"ok\n")


class CommandLine(unittest.TestCase):
    """embed --help helps instead of serving; a flag it does not know is an error (exit 2)."""

    def run_embed(self, args):
        try:
            return subprocess.run([embed_binary()] + args, stdin=subprocess.DEVNULL,
                                  capture_output=True, timeout=5 * SLOW)
        except subprocess.TimeoutExpired:  # subprocess.run() has killed it
            raise AssertionError("embed %s did not exit: it is serving" % " ".join(args))

    def test_help(self):
        for flag in ("--help", "-h"):
            with self.subTest(flag=flag):
                r = self.run_embed([flag])
                self.assertEqual(r.returncode, 0, r.stderr)
                self.assertIn(b"Usage: embed [--listen ADDRESS]", r.stdout)
                self.assertIn(b"--listen", r.stdout)
                self.assertEqual(r.stderr, b"")

    def test_bad_flags_exit_2(self):
        for args, what in ((["--bogus"], b"--bogus"), (["--listen"], b"--listen"),
                           (["stray"], b"stray"), (["--listen", "nope"], b"nope")):
            with self.subTest(args=args):
                r = self.run_embed(args)
                self.assertEqual(r.returncode, 2, r.stderr)
                self.assertIn(what, r.stderr)
                self.assertIn(b"embed --help", r.stderr)
                self.assertNotIn(b"listening", r.stderr)


if __name__ == "__main__":
    unittest.main()
