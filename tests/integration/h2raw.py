"""A small raw HTTP/2 client for the tests (test_h2.py): frames by hand, so that a test can send
what no well-behaved client would (floods, resets, a closed window) and see every frame hscd
answers with.

Frames are a 9-byte header (24-bit length, type, flags, 31-bit stream id) and a payload (RFC 9113
§4.1). Requests are encoded with HPACK's "literal header field without indexing, new name"
representation and plain (non-Huffman) strings (RFC 7541 §6.2.2), which every decoder accepts;
responses are not decoded (hscd's encoder uses Huffman and the dynamic table): the tests look at
frame types, stream ids, error codes and DATA payloads, which are plain bytes.
"""

import select
import socket
import struct
import time

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, \
    CONTINUATION = range(10)
END_STREAM, ACK, END_HEADERS = 0x1, 0x1, 0x4
NO_ERROR, PROTOCOL_ERROR, INTERNAL_ERROR, FLOW_CONTROL_ERROR = 0, 1, 2, 3
REFUSED_STREAM, CANCEL, ENHANCE_YOUR_CALM = 7, 8, 11
SETTINGS_INITIAL_WINDOW_SIZE = 4


def frame(ftype, flags, sid, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + \
        struct.pack(">I", sid & 0x7FFFFFFF) + payload


def hpack_int(n, prefix_bits, first=0):
    """An HPACK integer (RFC 7541 §5.1) with `first`'s high bits in its first byte."""
    limit = (1 << prefix_bits) - 1
    if n < limit:
        return bytes([first | n])
    out = [first | limit]
    n -= limit
    while n >= 128:
        out.append(n % 128 + 128)
        n //= 128
    out.append(n)
    return bytes(out)


def literal(name, value):
    """A field as a literal without indexing, new name, plain strings."""
    if isinstance(name, str):
        name = name.encode()
    if isinstance(value, str):
        value = value.encode()
    return b"\x00" + hpack_int(len(name), 7) + name + hpack_int(len(value), 7) + value


def request_block(method, path, authority="127.0.0.1", extra=()):
    block = literal(":method", method) + literal(":scheme", "http") + \
        literal(":path", path) + literal(":authority", authority)
    for name, value in extra:
        block += literal(name, value)
    return block


class H2Conn:
    """One raw HTTP/2 connection: send frames, read frames (with a deadline)."""

    def __init__(self, port, settings=(), timeout=10.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""
        self.closed = False
        payload = b"".join(struct.pack(">HI", k, v) for k, v in settings)
        self.send(PREFACE + frame(SETTINGS, 0, 0, payload))
        self.next_sid = 1

    def send(self, data):
        try:
            self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            self.closed = True

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def request(self, method, path, end_stream=True, extra=()):
        """Sends HEADERS for a new stream; returns its id."""
        sid = self.next_sid
        self.next_sid += 2
        flags = END_HEADERS | (END_STREAM if end_stream else 0)
        self.send(frame(HEADERS, flags, sid, request_block(method, path, extra=extra)))
        return sid

    def _fill(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0 or self.closed:
            return False
        r, _, _ = select.select([self.sock], [], [], left)
        if not r:
            return False
        try:
            data = self.sock.recv(65536)
        except (ConnectionResetError, socket.timeout):
            data = b""
        if not data:
            self.closed = True
            return False
        self.buf += data
        return True

    def read_frame(self, timeout=5.0):
        """The next frame as (type, flags, stream id, payload), or None at EOF or timeout."""
        deadline = time.monotonic() + timeout
        while True:
            if len(self.buf) >= 9:
                n = struct.unpack(">I", b"\0" + self.buf[:3])[0]
                if len(self.buf) >= 9 + n:
                    t, f = self.buf[3], self.buf[4]
                    sid = struct.unpack(">I", self.buf[5:9])[0] & 0x7FFFFFFF
                    payload = self.buf[9:9 + n]
                    self.buf = self.buf[9 + n:]
                    if t == SETTINGS and not f & ACK:
                        self.send(frame(SETTINGS, ACK, 0))
                    return t, f, sid, payload
            if not self._fill(deadline):
                return None

    def frames_until(self, pred, timeout=5.0):
        """Reads frames until pred(frame) is true; returns (all frames read, the match or None)."""
        seen = []
        deadline = time.monotonic() + timeout
        while True:
            f = self.read_frame(max(0.0, deadline - time.monotonic()))
            if f is None:
                return seen, None
            seen.append(f)
            if pred(f):
                return seen, f

    def drain_frames(self, timeout=1.0):
        """Every frame that arrives within `timeout` (until EOF)."""
        seen, _ = self.frames_until(lambda f: False, timeout)
        return seen

    def goaway(self, timeout=5.0):
        """Waits for GOAWAY: (last stream id, error code), or None."""
        _, f = self.frames_until(lambda f: f[0] == GOAWAY, timeout)
        if f is None:
            return None
        last, code = struct.unpack(">II", f[3][:8])
        return last & 0x7FFFFFFF, code

    def wait_eof(self, timeout=5.0):
        deadline = time.monotonic() + timeout
        while not self.closed and time.monotonic() < deadline:
            self.buf = b""
            self._fill(deadline)
        return self.closed
