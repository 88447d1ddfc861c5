#!/usr/bin/env python3
"""The origin behind Pushpin in `make bench`: answers `GET /sub/<channel>` with a GRIP stream
hold on that channel (Grip-Hold: stream, Grip-Channel), so Pushpin keeps the client's connection
open and sends it whatever is published to the channel through Pushpin's publish API.
asyncio, one thread: a storm of 10,000 subscriptions is answered without a thread each."""

import argparse
import asyncio

BODY = b": held\n\n"


async def handle(reader, writer):
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            line = head.split(b"\r\n", 1)[0].split(b" ")
            path = line[1].decode("latin-1") if len(line) >= 3 else ""
            if line[0] == b"GET" and path.startswith("/sub/") and len(path) > 5:
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                    b"Grip-Hold: stream\r\nGrip-Channel: " + path[5:].encode("latin-1") +
                    b"\r\nContent-Length: %d\r\n\r\n" % len(BODY) + BODY)
            else:
                writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        pass
    finally:
        writer.close()


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    a = ap.parse_args()
    server = await asyncio.start_server(handle, "127.0.0.1", a.port, backlog=4096)
    print("listening on http://127.0.0.1:%d" % a.port, flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
