#!/usr/bin/env python3
"""A faithful equivalent of the Python HTTP-Stream-Communicator template that hsc grew from
(../shared/seeds/000_*.txt, "MPStreamServer.py"), for `make bench` only: the yardstick of the
streamed-answers scenario, started with the same parameters as hscd's demo responder.

Its design, as the template describes it:
- the HTTP server (Python's http.server, a thread per request) runs in a process of its own;
- the responder ("FakeResponser") runs in the front process and talks to the server over one
  pipe: the server sends the request text, the responder sends back `--max_gen_len` pieces, one
  every `--interval` seconds (the template: 1 s; the bench: 0, as for hscd), then an end mark;
- `GET /<percent-encoded text>` answers the pieces, written to the client character by character.
One pipe means one conversation at a time: requests take turns (a lock), as in the template.
"""

import argparse
import multiprocessing
import os
import signal
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

END = None


def piece(i, n, text):
    # The same text as hscd's demo responder (tests/integration/hscd.py: piece()).
    return "[%d/%d] «%s» → 回声 ✓\n" % (i, n, text)


def fake_responser(conn, max_gen_len, interval):
    """The front process: one request text in, max_gen_len pieces out, then END."""
    while True:
        text = conn.recv()
        for i in range(1, max_gen_len + 1):
            if interval > 0:
                time.sleep(interval)
            conn.send(piece(i, max_gen_len, text))
        conn.send(END)


def exit_with_parent(parent):
    """The server process ends when the front process is gone, however it ended."""
    while os.getppid() == parent:
        time.sleep(0.2)
    os._exit(0)


def serve(conn, host, port, ready, parent):
    threading.Thread(target=exit_with_parent, args=(parent,), daemon=True).start()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            text = urllib.parse.unquote(self.path[1:])
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.end_headers()
            with lock:
                conn.send(text)
                while True:
                    p = conn.recv()
                    if p is END:
                        break
                    for ch in p:
                        self.wfile.write(ch.encode("utf-8"))
                        self.wfile.flush()

    httpd = ThreadingHTTPServer((host, port), Handler)
    httpd.daemon_threads = True
    ready.set()
    httpd.serve_forever()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--server_ip", default="127.0.0.1")
    ap.add_argument("--server_port", type=int, default=8000)
    ap.add_argument("--max_gen_len", type=int, default=10)
    ap.add_argument("--interval", type=float, default=1.0)
    a = ap.parse_args()
    front, back = multiprocessing.Pipe()
    ready = multiprocessing.Event()
    server = multiprocessing.Process(
        target=serve, args=(back, a.server_ip, a.server_port, ready, os.getpid()), daemon=True
    )
    # SIGTERM ends the front process normally, so the server process is ended with it.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server.start()
    ready.wait(10)
    print("listening on http://%s:%d" % (a.server_ip, a.server_port), flush=True)
    try:
        fake_responser(front, a.max_gen_len, a.interval)
    except (KeyboardInterrupt, EOFError):
        pass


if __name__ == "__main__":
    main()
