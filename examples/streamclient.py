#!/usr/bin/env python3
"""A client written the way the Python HTTP-Stream-Communicator template's client is: a plain GET
of /<percent-encoded text>, the body read byte by byte and decoded as UTF-8 as it arrives.

    hscd --legacy-get --server_ip 127.0.0.1 --server_port 8000 --max_gen_len 10
    python3 examples/streamclient.py '醒醒，Neo'
"""
import codecs
import http.client
import os
import sys
import urllib.parse

host, port = "127.0.0.1", int(os.environ.get("HSC_PORT", "8000"))
text = sys.argv[1] if len(sys.argv) > 1 else "醒醒，Neo"

conn = http.client.HTTPConnection(host, port, timeout=60)
conn.request("GET", "/" + urllib.parse.quote(text))
resp = conn.getresponse()
if resp.status != 200:
    sys.exit(f"error {resp.status}: {resp.read().decode(errors='replace').strip()}")
decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
while True:
    byte = resp.read(1)  # raises http.client.IncompleteRead if the answer is cut short
    if not byte:
        break
    sys.stdout.write(decoder.decode(byte))
    sys.stdout.flush()
sys.stdout.write(decoder.decode(b"", final=True))
conn.close()
