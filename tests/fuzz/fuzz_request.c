/*
 * Fuzz target for the request path: bytes in through llhttp, the limits, the router and every
 * handler (static files, /healthz, /metrics, /v1/stream with the demo responder, /v1/events
 * publish and subscribe, CORS preflights, JWT checks) to the bytes of the responses, without a
 * network: the input is written into one end of a Unix socketpair whose other end hscd's worker
 * loop serves (hsc_http_adopt()), and the loop is run here, in this thread, until it is quiet.
 *
 * Properties checked (abort() on a violation), beyond what ASan and UBSan catch:
 *  - whatever comes back is a sequence of HTTP/1.x responses: it starts with "HTTP/1.1 " or
 *    "HTTP/1.0 " and a status from 100 to 599;
 *  - the connection is always released: after the client end closes, the worker has no
 *    connection left within a bounded number of loop turns (no leak, no stuck state).
 *
 * Input layout: byte 0 chooses how the bytes are written (bit 0: all at once or in pieces of
 * 1 + byte 1 bytes, with loop turns between them; bit 1: a JWT-protected server, where publish,
 * subscribe and stream need a token — most inputs then get 401, covering the auth paths);
 * the rest is what the client sends.
 */
#include "server/server.h"

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_request: check failed: %s (line %d)\n", #cond, __LINE__);        \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#define OUT_KEEP 4096 /* the first bytes of the output are kept for the checks */

static hsc_server_t *servers[2];

static hsc_server_t *server(int protected_)
{
    if (servers[protected_] != NULL)
        return servers[protected_];
    signal(SIGPIPE, SIG_IGN); /* as hscd does: a closed peer is an error return, not a signal */
    hsc_server_config_t cfg;
    hsc_server_config_init(&cfg);
    cfg.listen = "127.0.0.1:0"; /* bound but never used: input arrives through adopt() */
    cfg.threads = 1;
    cfg.max_gen_len = 3;
    cfg.interval_ms = 0;
    hsc_log_set_level(HSC_LOG_ERROR); /* process-wide, as stderr is */
    cfg.cors_origin = "https://app.example";
    cfg.history = 8;
    cfg.max_header_bytes = 4096;
    cfg.max_body_bytes = 4096;
    cfg.max_event_bytes = 1024;
    /* The HTTP/1.1 path: a preface gets llhttp's 505 here; fuzz_h2 feeds the HTTP/2 session. */
    cfg.http2 = 0;
    if (protected_) {
        static const char key[] = "fuzzing key for the request path";
        cfg.jwt_key = key;
        cfg.jwt_key_len = sizeof key - 1;
        cfg.publish_token = "pub";
    }
    CHECK(hsc_server_new(&cfg, &servers[protected_]) == 0);
    return servers[protected_];
}

typedef struct out_s {
    char keep[OUT_KEEP];
    size_t len;
} out_t;

static void drain(int fd, out_t *out)
{
    char buf[65536];
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n <= 0)
            return;
        if (out->len < OUT_KEEP) {
            size_t k = (size_t)n < OUT_KEEP - out->len ? (size_t)n : OUT_KEEP - out->len;
            memcpy(out->keep + out->len, buf, k);
        }
        out->len += (size_t)n;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2 || size > 65536)
        return 0;
    unsigned flags = data[0];
    size_t piece = (flags & 1) ? (size_t)data[1] + 1 : size;
    data += 2;
    size -= 2;
    hsc_server_t *srv = server((flags >> 1) & 1);
    hsc_worker_t *w = &srv->workers[0];

    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) == 0);
    CHECK(hsc_http_adopt(&w->http, sv[0]) == 0);
    out_t out = {.len = 0};
    size_t off = 0;
    unsigned quiet = 0;
    for (unsigned turn = 0; turn < 20000 && quiet < 64; turn++) {
        size_t before = out.len, off_before = off;
        if (off < size) {
            size_t n = size - off < piece ? size - off : piece;
            ssize_t k = write(sv[1], data + off, n);
            if (k > 0)
                off += (size_t)k;
        }
        uv_run(&w->loop, UV_RUN_NOWAIT);
        drain(sv[1], &out);
        quiet = out.len == before && off == off_before ? quiet + 1 : 0;
    }
    close(sv[1]); /* the client goes away; whatever it left open must be released */
    for (unsigned turn = 0; turn < 1000 && w->http.nconns > 0; turn++)
        uv_run(&w->loop, UV_RUN_NOWAIT);
    CHECK(w->http.nconns == 0);
    for (unsigned turn = 0; turn < 4; turn++)
        uv_run(&w->loop, UV_RUN_NOWAIT); /* close callbacks */

    if (out.len > 0) {
        CHECK(out.len >= 12);
        CHECK(memcmp(out.keep, "HTTP/1.1 ", 9) == 0 || memcmp(out.keep, "HTTP/1.0 ", 9) == 0);
        int status = (out.keep[9] - '0') * 100 + (out.keep[10] - '0') * 10 + (out.keep[11] - '0');
        CHECK(status >= 100 && status <= 599);
    }
    return 0;
}
