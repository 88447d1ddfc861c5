"""Shared harness for the black-box integration tests of hscd.

Everything here talks to a real hscd process over 127.0.0.1 only:

- `Hscd`: starts `$HSCD --listen 127.0.0.1:0 ...` (or any argument list), stderr in a temp
  file, polls that file (bounded) for `listening on http://HOST:PORT` and parses the port. hscd
  gets a fresh temporary `--data-dir` of its own (its journal, removed once it has exited), so
  servers running side by side never share one, unless the arguments name a `--data-dir`.
  `stop()` sends SIGTERM to the PID it started, waits (bounded) and returns the exit status; the
  log is kept so that failure messages can show it.
- `ServerTestCase`: a TestCase whose `start()` registers a cleanup that stops the server and
  asserts exit status 0 and a log free of sanitizer reports (under ASan, a clean exit after
  SIGTERM also proves that nothing leaked). When a test fails, the logs of the servers it started
  are written to stderr (ctest --output-on-failure shows them).
- `RawConn`: a raw socket with a small HTTP/1.x response reader that keeps framing visible
  (status, headers, every chunk with its arrival time, whether the last chunk came, how the
  connection ended).
- helpers: the demo answer's pieces, an SSE parser, curl with timestamped output.

The environment gives HSCD (path to the binary) and HSC_SANITIZE (ON/OFF). A missing HSCD is a
failure, never a skip.
"""

import errno
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.parse

HOST = "127.0.0.1"
SANITIZE = os.environ.get("HSC_SANITIZE", "OFF").strip().upper() in ("ON", "1", "TRUE", "YES")
# Multiplier for timeouts and margins: the sanitizer build is 2-3x slower.
SLOW = 3.0 if SANITIZE else 1.0

_LISTEN_RE = re.compile(rb"listening on https?://(\[[0-9a-fA-F:.]+\]|[0-9.]+):(\d+)")
_SANITIZER_RE = re.compile(
    rb"AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer|runtime error:|ThreadSanitizer"
)


def binary():
    """The hscd binary from $HSCD; fails loudly when it is not set or not executable."""
    path = os.environ.get("HSCD", "")
    if not path:
        raise AssertionError(
            "HSCD is not set: run the integration tests through ctest, or set "
            "HSCD=/path/to/build/hscd"
        )
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        raise AssertionError("HSCD=%r is not an executable file" % path)
    return path


def piece(i, n, text):
    """The demo responder's i-th piece (1-based) of n for `text`, as str."""
    return "[%d/%d] «%s» → 回声 ✓\n" % (i, n, text)


def pieces(n, text):
    return [piece(i, n, text) for i in range(1, n + 1)]


def free_port():
    """A port that was free a moment ago (bind to port 0, read it, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


# ---- the server process ------------------------------------------------------------------------


class Hscd:
    """One hscd process. `args` are passed as they are; with `listen` (the default), the
    arguments start with `--listen 127.0.0.1:0`. `env` replaces the environment when given,
    `cwd` the working directory."""

    def __init__(self, *args, listen=HOST + ":0", start_timeout=10.0, program=None, env=None,
                 cwd=None):
        self.program = program
        self.env = env
        self.cwd = cwd
        self.args = list(args)
        self._data_tmp = None
        if program is None and not any(
            a == "--data-dir" or a.startswith("--data-dir=") for a in self.args
        ):
            # Each hscd its own journal: the default (./hsc-data) would be shared and locked.
            self._data_tmp = tempfile.mkdtemp(prefix="hscd-data-")
            self.args = self.args + ["--data-dir", self._data_tmp]
        if listen is not None:
            self.args = ["--listen", listen] + self.args
        self.start_timeout = start_timeout * SLOW
        self.proc = None
        self.port = None
        self.returncode = None
        self._log_path = None
        self._log_final = None

    # -- lifecycle --

    def start(self):
        fd, self._log_path = tempfile.mkstemp(prefix="hscd-", suffix=".log")
        try:
            self.proc = subprocess.Popen(
                [self.program or binary()] + self.args,
                stdin=subprocess.DEVNULL,
                stdout=fd,
                stderr=fd,
                close_fds=True,
                env=self.env,
                cwd=self.cwd,
            )
        finally:
            os.close(fd)
        deadline = time.monotonic() + self.start_timeout
        while True:
            m = _LISTEN_RE.search(self._read_log_bytes())
            if m:
                self.port = int(m.group(2))
                return self
            rc = self.proc.poll()
            if rc is not None:
                self.returncode = rc
                self._finish_log()
                raise AssertionError(
                    "hscd %s exited with status %d before listening\n%s"
                    % (" ".join(self.args), rc, self.describe())
                )
            if time.monotonic() > deadline:
                self._kill()
                raise AssertionError(
                    "hscd %s did not log 'listening on' within %.0f s\n%s"
                    % (" ".join(self.args), self.start_timeout, self.describe())
                )
            time.sleep(0.01)

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def send_signal(self, sig):
        if self.running():
            os.kill(self.proc.pid, sig)

    def wait(self, timeout):
        """Waits for the process to exit; returns its status, or None after `timeout` seconds."""
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        self.returncode = rc
        self._finish_log()
        return rc

    def stop(self, sig=signal.SIGTERM, timeout=15.0):
        """Sends `sig` (SIGTERM) and waits; returns the exit status. A process that does not exit
        within `timeout` (scaled) is killed with SIGKILL and an AssertionError is raised."""
        if self.proc is None:
            return None
        if self.returncode is not None:
            return self.returncode
        self.send_signal(sig)
        rc = self.wait(timeout * SLOW)
        if rc is None:
            self._kill()
            raise AssertionError(
                "hscd did not exit within %.0f s of signal %d\n%s"
                % (timeout * SLOW, sig, self.describe())
            )
        return rc

    def _kill(self):
        if self.running():
            os.kill(self.proc.pid, signal.SIGKILL)
        try:
            self.returncode = self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        self._finish_log()

    # -- the log --

    def _read_log_bytes(self):
        if self._log_final is not None:
            return self._log_final
        try:
            with open(self._log_path, "rb") as f:
                return f.read()
        except OSError:
            return b""

    def _finish_log(self):
        if self._log_final is None and self._log_path is not None:
            self._log_final = self._read_log_bytes()
            try:
                os.unlink(self._log_path)
            except OSError:
                pass
        if self._data_tmp is not None and not self.running():
            shutil.rmtree(self._data_tmp, ignore_errors=True)
            self._data_tmp = None

    def log(self):
        return self._read_log_bytes().decode("utf-8", "replace")

    def sanitizer_report(self):
        return bool(_SANITIZER_RE.search(self._read_log_bytes()))

    def describe(self):
        log = self.log()
        if len(log) > 20000:
            log = log[:4000] + "\n[... %d bytes cut ...]\n" % (len(log) - 8000) + log[-4000:]
        return "--- hscd %s (port %s, exit %s) stderr ---\n%s--- end of stderr ---" % (
            " ".join(self.args),
            self.port,
            self.returncode,
            log,
        )

    # -- clients --

    def url(self, path="/"):
        return "http://%s:%d%s" % (HOST, self.port, path)

    def connect(self, timeout=10.0):
        return RawConn(self.port, timeout=timeout)


class ServerTestCase(unittest.TestCase):
    """Starts servers that are stopped (SIGTERM) after the test, asserting a clean exit."""

    def run(self, result=None):
        self._servers = []
        before = len(result.failures) + len(result.errors) if result is not None else 0
        ret = super().run(result)
        if result is not None and len(result.failures) + len(result.errors) > before:
            for s in self._servers:
                if s.returncode is None and s.proc is not None:
                    s._kill()
                sys.stderr.write("\n[%s]\n%s\n" % (self.id(), s.describe()))
            sys.stderr.flush()
        return ret

    def start(self, *args, **kw):
        s = Hscd(*args, **kw)
        self._servers.append(s)
        self.addCleanup(self.stop_clean, s)
        return s.start()

    def stop_clean(self, s, sig=signal.SIGTERM, timeout=15.0):
        """Stops `s` and asserts exit status 0 and no sanitizer report in its log."""
        if s.proc is None:
            return
        rc = s.stop(sig, timeout)
        self.assertEqual(rc, 0, "hscd exited with status %s\n%s" % (rc, s.describe()))
        self.assertFalse(s.sanitizer_report(), "sanitizer report in hscd's log\n" + s.describe())


def run_hscd(args, timeout=10.0):
    """Runs hscd to completion (for --help and command-line errors). Kills it by PID and fails
    when it is still running after `timeout` (scaled)."""
    proc = subprocess.Popen(
        [binary()] + list(args),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        out, err = proc.communicate(timeout=timeout * SLOW)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate(timeout=10)
        raise AssertionError(
            "hscd %s still running after %.0f s (killed)\nstdout: %s\nstderr: %s"
            % (" ".join(args), timeout * SLOW, out.decode("utf-8", "replace"),
               err.decode("utf-8", "replace"))
        )
    return proc.returncode, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")


# ---- a raw HTTP/1.x client ---------------------------------------------------------------------


class Response:
    def __init__(self):
        self.version = None  # "HTTP/1.1"
        self.status = None
        self.reason = None
        self.headers = []  # [(name, value)] as received
        self.interim = []  # 1xx statuses received before this response
        self.framing = None  # "length", "chunked", "close" or "none" (HEAD, 1xx, 204, 304)
        self.chunks = []  # chunked: data of every chunk but the last, in order
        self.chunk_times = []  # time.monotonic() when each chunk was complete
        self.complete = False  # the body ended as its framing says it must
        self.ended_by = None  # "close": "fin" or "reset"; otherwise None
        self.body = b""
        self.head_time = None

    def header(self, name, default=None):
        """The last value of header `name` (case-insensitive)."""
        name = name.lower()
        for k, v in reversed(self.headers):
            if k.lower() == name:
                return v
        return default

    def header_list(self, name):
        name = name.lower()
        return [v for k, v in self.headers if k.lower() == name]

    def text(self):
        return self.body.decode("utf-8")

    def __repr__(self):
        return "<Response %s %s %s framing=%s complete=%s ended_by=%s body=%r>" % (
            self.version, self.status, self.reason, self.framing, self.complete, self.ended_by,
            self.body[:300],
        )


class ProtocolError(AssertionError):
    pass


class RawConn:
    """A client socket with a receive buffer, so that several (pipelined) responses can be read
    in turn. Every blocking step has a timeout (scaled)."""

    def __init__(self, port, timeout=10.0, rcvbuf=None, source=None):
        """`source`: the local address to connect from (another loopback address, 127.0.0.2,
        is another client to hscd)."""
        self.timeout = timeout * SLOW
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        if source is not None:
            self.sock.bind((source, 0))
        self.sock.settimeout(self.timeout)
        self.sock.connect((HOST, port))
        self.buf = b""
        self.eof = None  # None while open; "fin" or "reset" once the peer has closed

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def reset(self):
        """Closes with an RST (SO_LINGER 0) instead of a FIN."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00" + b"\x00" * 4)
        self.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send(self, data):
        if isinstance(data, str):
            data = data.encode("utf-8")
        self.sock.sendall(data)

    def request(self, method, target, headers=(), body=None, version="HTTP/1.1"):
        self.send(make_request(method, target, headers, body, version))

    def _fill(self, deadline):
        """Reads more bytes into the buffer; False at EOF. Raises socket.timeout at `deadline`."""
        if self.eof is not None:
            return False
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise socket.timeout("timed out waiting for the server")
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(1 << 16)
        except ConnectionResetError:
            self.eof = "reset"
            return False
        if not data:
            self.eof = "fin"
            return False
        self.buf += data
        return True

    def _deadline(self, timeout):
        return time.monotonic() + (self.timeout if timeout is None else timeout * SLOW)

    def read_line(self, deadline):
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                line, self.buf = self.buf[:i], self.buf[i + 2:]
                return line
            if not self._fill(deadline):
                raise ProtocolError("connection closed (%s) in the middle of a line; buffered %r"
                                    % (self.eof, self.buf[:200]))

    def read_exact(self, n, deadline):
        while len(self.buf) < n:
            if not self._fill(deadline):
                return None
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def read_eof(self, timeout=None, limit=1 << 26):
        """Reads until the peer closes; returns (bytes, "fin" | "reset"). Fails past `limit`."""
        deadline = self._deadline(timeout)
        while self._fill(deadline):
            if len(self.buf) > limit:
                raise ProtocolError("more than %d bytes without the connection closing" % limit)
        data, self.buf = self.buf, b""
        return data, self.eof

    def wait_closed(self, timeout=None):
        """Returns "fin" or "reset" once the server closes, after discarding anything it sends."""
        self.read_eof(timeout)
        return self.eof

    def read_response(self, head_only=False, timeout=None):
        """Reads one response (skipping 1xx, recorded in .interim). `head_only` for a HEAD
        request. A body that ends early is returned with complete=False, not raised."""
        deadline = self._deadline(timeout)
        r = Response()
        while True:
            status_line = self.read_line(deadline)
            m = re.match(rb"^(HTTP/\d\.\d) (\d{3})(?: (.*))?$", status_line)
            if not m:
                raise ProtocolError("bad status line %r" % status_line)
            r.version = m.group(1).decode()
            r.status = int(m.group(2))
            r.reason = (m.group(3) or b"").decode("latin-1")
            r.headers = []
            while True:
                line = self.read_line(deadline)
                if line == b"":
                    break
                name, sep, value = line.partition(b":")
                if not sep or name != name.strip() or not name:
                    raise ProtocolError("bad header line %r" % line)
                r.headers.append((name.decode("latin-1"), value.strip().decode("latin-1")))
            r.head_time = time.monotonic()
            if 100 <= r.status < 200:
                r.interim.append(r.status)
                continue
            break
        te = (r.header("Transfer-Encoding") or "").lower()
        cl = r.header("Content-Length")
        if head_only or r.status in (204, 304):
            r.framing = "none"
            r.complete = True
        elif te:
            if te != "chunked":
                raise ProtocolError("unexpected Transfer-Encoding %r" % te)
            if cl is not None:
                raise ProtocolError("both Transfer-Encoding and Content-Length")
            r.framing = "chunked"
            self._read_chunked(r, deadline)
        elif cl is not None:
            r.framing = "length"
            data = self.read_exact(int(cl), deadline)
            if data is None:
                r.body, self.buf = self.buf, b""
            else:
                r.body = data
                r.complete = True
        else:
            r.framing = "close"
            while self._fill(deadline):
                pass
            r.body, self.buf = self.buf, b""
            r.ended_by = self.eof
            r.complete = self.eof == "fin"
        return r

    def _read_chunked(self, r, deadline):
        body = []
        while True:
            try:
                size_line = self.read_line(deadline)
            except ProtocolError:
                break  # closed without the last chunk
            m = re.match(rb"^([0-9a-fA-F]+)(;.*)?$", size_line)
            if not m:
                raise ProtocolError("bad chunk size line %r" % size_line)
            size = int(m.group(1), 16)
            if size == 0:
                # trailers, then the empty line
                try:
                    while self.read_line(deadline) != b"":
                        pass
                except ProtocolError:
                    break
                r.complete = True
                break
            data = self.read_exact(size + 2, deadline)
            if data is None:
                break
            if data[-2:] != b"\r\n":
                raise ProtocolError("chunk data not followed by CRLF: %r" % data[-10:])
            r.chunks.append(data[:-2])
            r.chunk_times.append(time.monotonic())
            body.append(data[:-2])
        r.body = b"".join(body)
        if not r.complete:
            r.ended_by = self.eof


def make_request(method, target, headers=(), body=None, version="HTTP/1.1"):
    """Request bytes. Adds Host (HTTP/1.1) and Content-Length (when a body is given and neither
    Content-Length nor Transfer-Encoding is among `headers`)."""
    if isinstance(body, str):
        body = body.encode("utf-8")
    hs = list(headers)
    names = {k.lower() for k, _ in hs}
    if version == "HTTP/1.1" and "host" not in names:
        hs.insert(0, ("Host", "127.0.0.1"))
    if body is not None and "content-length" not in names and "transfer-encoding" not in names:
        hs.append(("Content-Length", str(len(body))))
    head = "%s %s %s\r\n" % (method, target, version)
    head += "".join("%s: %s\r\n" % (k, v) for k, v in hs) + "\r\n"
    return head.encode("utf-8") + (body or b"")


def chunked_body(data, size):
    """`data` in chunks of `size` bytes, with the last chunk."""
    out = b""
    for i in range(0, len(data), size):
        part = data[i:i + size]
        out += b"%x\r\n" % len(part) + part + b"\r\n"
    return out + b"0\r\n\r\n"


# ---- checks shared by several files ------------------------------------------------------------


def assert_error_response(tc, r, status, msg=""):
    """A one-line text/plain error: status, body "reason\\n", Content-Length right."""
    tc.assertEqual(r.status, status, "%s %r" % (msg, r))
    tc.assertEqual(r.header("Content-Type"), "text/plain; charset=utf-8", msg)
    tc.assertTrue(r.complete, "%s %r" % (msg, r))
    tc.assertTrue(r.body.endswith(b"\n"), "%s error body must end in \\n: %r" % (msg, r.body))
    tc.assertEqual(r.body.count(b"\n"), 1, "%s error body must be one line: %r" % (msg, r.body))
    tc.assertGreater(len(r.body.strip()), 0, "%s error body is empty" % msg)
    r.body.decode("utf-8")


def parse_sse(data):
    """Parses an event stream (bytes) into [(event type, data str)], per the SSE spec
    (data lines joined with LF; events without data are not dispatched)."""
    text = data.decode("utf-8")
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    events = []
    etype, lines, has_data = "", [], False
    for line in text.split("\n"):
        if line == "":
            if has_data:
                events.append((etype or "message", "\n".join(lines)))
            etype, lines, has_data = "", [], False
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if field == "event":
            etype = value
        elif field == "data":
            lines.append(value)
            has_data = True
    return events


def rss_kb(pid):
    """The resident set size of process `pid`, in KiB (VmRSS)."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS for pid %d" % pid)


def wait_for(predicate, timeout, step=0.05):
    """Polls `predicate` until true or `timeout` (scaled) seconds; returns its last value."""
    deadline = time.monotonic() + timeout * SLOW
    while True:
        v = predicate()
        if v or time.monotonic() > deadline:
            return v
        time.sleep(step)


# ---- curl --------------------------------------------------------------------------------------


class Curl:
    """curl as a subprocess whose stdout is read incrementally, each read timestamped."""

    def __init__(self, *args):
        self.args = ["curl", "-sS", "-N", "--max-time", str(int(60 * SLOW))] + list(args)
        self.proc = subprocess.Popen(
            self.args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        self.reads = []  # [(time.monotonic(), bytes, curl still running at that time)]

    def read_all(self, timeout=30.0):
        """Reads stdout to EOF, recording every read; returns (stdout bytes, exit status,
        stderr text). Kills curl (by PID) and fails after `timeout` (scaled)."""
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout * SLOW
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.proc.kill()
                self.proc.wait(10)
                raise AssertionError("curl %s did not finish in time" % " ".join(self.args))
            ready, _, _ = select.select([fd], [], [], remaining)
            if not ready:
                continue
            data = os.read(fd, 1 << 16)
            if not data:
                break
            self.reads.append((time.monotonic(), data, self.proc.poll() is None))
        try:
            rc = self.proc.wait(timeout=10 * SLOW)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise AssertionError("curl %s did not exit" % " ".join(self.args))
        err = self.proc.stderr.read().decode("utf-8", "replace")
        self.proc.stdout.close()
        self.proc.stderr.close()
        return b"".join(d for _, d, _ in self.reads), rc, err

    def line_times(self):
        """[(time, line bytes, curl running)] for every complete line, timed by the read that
        completed it."""
        out, buf = [], b""
        for t, data, running in self.reads:
            buf += data
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                out.append((t, line + b"\n", running))
        return out


def is_connection_refused(port):
    """True when a connect() to the port is refused (nobody listens)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(2 * SLOW)
    try:
        s.connect((HOST, port))
    except ConnectionRefusedError:
        return True
    except OSError as e:
        return e.errno == errno.ECONNREFUSED
    finally:
        s.close()
    return False


SSE = [("Accept", "text/event-stream")]


# ---- what a responder program learns about its request -----------------------------------------

# docs/responders.md, "The request": every field, as an exec environment variable and as a key
# of the pool's meta frame. The exec and pool tests both check against this one list.
REQUEST_FIELDS = [
    ("HSC_REQUEST_ID", "request_id"),
    ("REQUEST_METHOD", "method"),
    ("PATH_INFO", "path"),
    ("QUERY_STRING", "query"),
    ("REMOTE_ADDR", "remote_ip"),
    ("REMOTE_PORT", "remote_port"),
    ("CONTENT_LENGTH", "content_length"),
    ("HSC_CONTENT_TYPE", "content_type"),
    ("SERVER_SOFTWARE", "server_software"),
]


def hscd_version():
    """hscd's version, as `hscd --version` prints it."""
    rc, out, _ = run_hscd(["--version"])
    return out.split()[-1]


def request_fields(rid, method, query, port, text, sse, version, path="/v1/stream"):
    """The values docs/responders.md promises for a request from 127.0.0.1:`port`, in the order
    of REQUEST_FIELDS."""
    return [str(rid), method, path, query, HOST, str(port), str(len(text.encode("utf-8"))),
            "text/event-stream" if sse else "text/plain", "hsc/" + version]


class StreamRequest:
    """One /v1/stream request on a connection of its own, read chunk by chunk with arrival
    times. `chunks` holds every chunk but the last (SSE comments included); `times` their
    time.monotonic() of arrival. Shared by the exec and pool tests."""

    def __init__(self, srv, text, sse=False, post=False, timeout=10, rcvbuf=None, query=None):
        self.conn = RawConn(srv.port, timeout=timeout, rcvbuf=rcvbuf)
        headers = list(SSE) if sse else []
        if post:
            self.conn.request("POST", "/v1/stream", headers, body=text)
        else:
            q = query if query is not None else "q=" + urllib.parse.quote(text)
            self.conn.request("GET", "/v1/stream?" + q, headers)
        self.sent = time.monotonic()
        self.head = None
        self.chunks, self.times = [], []
        self.done = False
        self.complete = False  # ended with the last chunk
        self.ended_by = None  # "fin" or "reset" when cut

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.conn.close()

    def read_head(self, timeout=10):
        self.head = self.conn.read_response(head_only=True, timeout=timeout)
        return self.head

    @property
    def rid(self):
        return self.head.header("X-Request-Id")

    def next_chunk(self, timeout=10):
        """The next chunk's data, or None once the body has ended (complete or cut)."""
        if self.head is None:
            self.read_head(timeout)
        if self.done:
            return None
        c = self.conn
        deadline = c._deadline(timeout)
        try:
            line = c.read_line(deadline)
            size = int(line.split(b";")[0], 16)
            if size == 0:
                while c.read_line(deadline) != b"":
                    pass
                self.complete = self.done = True
                return None
        except ProtocolError:
            self.done, self.ended_by = True, c.eof
            return None
        data = c.read_exact(size + 2, deadline)
        if data is None:
            self.done, self.ended_by = True, c.eof
            return None
        if data[-2:] != b"\r\n":
            raise ProtocolError("chunk data not followed by CRLF: %r" % data[-10:])
        self.chunks.append(data[:-2])
        self.times.append(time.monotonic())
        return data[:-2]
