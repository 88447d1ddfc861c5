/*
 * Fuzz target for the HTTP/2 side of the transport: frames in through the frame reader
 * (h2recv.c), nghttp2's server session, the limits, the router and every handler, to the frames
 * of the responses, without a network: as fuzz_request.c does, the input is written into one end
 * of a Unix socketpair whose other end hscd's worker loop serves (hsc_http_adopt()), and the loop
 * is run here until it is quiet.
 *
 * Properties checked (abort() on a violation), beyond what ASan and UBSan catch:
 *  - when the input started with the client preface, what comes back starts with the server's
 *    SETTINGS frame (stream 0, no ACK flag) and is a sequence of well-formed frame headers up to
 *    what was kept;
 *  - the connection is always released: after the client end closes, the worker has no
 *    connection left within a bounded number of loop turns (no leak, no stuck stream).
 *
 * Input layout: byte 0 chooses how the bytes are written (bit 0: all at once or in pieces of
 * 1 + byte 1 bytes, with loop turns between them; bit 1: do not prepend the client preface, so
 * that preface detection itself is fuzzed); the rest is what the client sends after the preface.
 */
#include "server/server.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_h2: check failed: %s (line %d)\n", #cond, __LINE__);             \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#define OUT_KEEP 4096
static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

static hsc_server_t *srv;

static hsc_server_t *server(void)
{
    if (srv != NULL)
        return srv;
    signal(SIGPIPE, SIG_IGN);
    hsc_server_config_t cfg;
    hsc_server_config_init(&cfg);
    cfg.listen = "127.0.0.1:0"; /* bound but never used: input arrives through adopt() */
    cfg.threads = 1;
    cfg.max_gen_len = 3;
    cfg.interval_ms = 0;
    cfg.history = 8;
    cfg.max_header_bytes = 4096;
    cfg.max_body_bytes = 4096;
    cfg.max_event_bytes = 1024;
    cfg.h2_max_streams = 8;
    hsc_log_set_level(HSC_LOG_ERROR);
    CHECK(hsc_server_new(&cfg, &srv) == 0);
    return srv;
}

typedef struct out_s {
    unsigned char keep[OUT_KEEP];
    size_t len;
} out_t;

static void drain(int fd, out_t *out)
{
    unsigned char buf[65536];
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

/* The kept output is frames: each header's length stays within the default maximum frame size. */
static void check_frames(const out_t *out)
{
    size_t kept = out->len < OUT_KEEP ? out->len : OUT_KEEP;
    CHECK(kept >= 9);
    CHECK(out->keep[3] == 4 && out->keep[4] == 0); /* SETTINGS, not an ACK */
    for (size_t off = 0; off + 9 <= kept;) {
        size_t len =
            (size_t)out->keep[off] << 16 | (size_t)out->keep[off + 1] << 8 | out->keep[off + 2];
        CHECK(len <= 16384);
        off += 9 + len;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2 || size > 65536)
        return 0;
    unsigned flags = data[0];
    size_t piece = (flags & 1) ? (size_t)data[1] + 1 : size + 24;
    bool with_preface = !(flags & 2);
    data += 2;
    size -= 2;
    uint8_t *in = malloc(size + 24);
    CHECK(in != NULL);
    size_t n_in = 0;
    if (with_preface) {
        memcpy(in, preface, 24);
        n_in = 24;
    }
    memcpy(in + n_in, data, size);
    n_in += size;

    hsc_worker_t *w = &server()->workers[0];
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) == 0);
    CHECK(hsc_http_adopt(&w->http, sv[0]) == 0);
    out_t out = {.len = 0};
    size_t off = 0;
    unsigned quiet = 0;
    for (unsigned turn = 0; turn < 20000 && quiet < 64; turn++) {
        size_t before = out.len, off_before = off;
        if (off < n_in) {
            size_t n = n_in - off < piece ? n_in - off : piece;
            ssize_t k = write(sv[1], in + off, n);
            if (k > 0)
                off += (size_t)k;
        }
        uv_run(&w->loop, UV_RUN_NOWAIT);
        drain(sv[1], &out);
        quiet = out.len == before && off == off_before ? quiet + 1 : 0;
    }
    close(sv[1]);
    for (unsigned turn = 0; turn < 1000 && w->http.nconns > 0; turn++)
        uv_run(&w->loop, UV_RUN_NOWAIT);
    CHECK(w->http.nconns == 0);
    for (unsigned turn = 0; turn < 4; turn++)
        uv_run(&w->loop, UV_RUN_NOWAIT);
    if (with_preface && out.len > 0)
        check_frames(&out);
    free(in);
    return 0;
}
