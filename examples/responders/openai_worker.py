import json, sys
inp, out = sys.stdin.buffer, sys.stdout.buffer
def send(kind, payload=b""):
    out.write(b"%s %d\n" % (kind, len(payload)) + payload); out.flush()
def generate(req, limit):  # stand-in for a model runtime's streaming call, one token per yield
    yield from (w + " " for w in req["messages"][-1]["content"].split()[::-1][:limit or None])
while head := inp.readline():
    kind, n = head.split(); payload = inp.read(int(n))
    if kind == b"meta": meta = dict(l.split("=", 1) for l in payload.decode().split("\n") if l)
    if kind == b"request":
        for token in generate(json.loads(meta["request_json"]), int(meta["max_tokens"])):
            send(b"piece", token.encode())
        send(b"end")
