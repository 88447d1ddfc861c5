/*
 * hsc-bench: the load generator behind `make bench` (docs/PERFORMANCE.md).
 *
 * Scenarios (one file each): fanout.c (subscribers in several processes, a publisher, delivery
 * counting and latency; also the connection storm and idle memory of `connect`), stream.c
 * (concurrent clients asking for streamed answers) and floor.c (the physical floor: a minimal
 * server that writes one pre-encoded event to every subscriber with plain write() calls).
 * This header holds what they share: URLs, clocks, /proc readings, statistics and the report.
 */
#ifndef HSC_BENCH_H
#define HSC_BENCH_H

#include <jansson.h>
#include <uv.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* An http:// (or https://) URL split for a TCP client (IPv4 literal or "localhost" only:
 * loopback). */
typedef struct bench_url_s {
    char host[64];
    int port;
    bool tls;        /* https:// (fanout's --sub-url only: tls.c) */
    char path[2048]; /* path and query, "/" when empty */
} bench_url_t;

/* Parses `s` into `u`; "{ch}" in the path is replaced by `channel` (may be NULL). 0 or -1. */
int bench_url_parse(const char *s, const char *channel, bench_url_t *u);

/* Monotonic time in nanoseconds; every process of the bench (and the machine) shares it. */
uint64_t bench_now_ns(void);

/* CPU seconds (user + system) and resident memory of a set of processes and all their
 * descendants, read from /proc. */
typedef struct bench_usage_s {
    double cpu_s;
    uint64_t rss_kb;
    int procs; /* processes counted; 0 when none of the pids exists */
} bench_usage_t;

#define BENCH_MAX_PIDS 8
int bench_usage(const int *pids, int npids, bench_usage_t *out);

/* Percentiles over a latency sample (microseconds); sorts `v` in place. */
typedef struct bench_lat_s {
    double p50_ms, p90_ms, p99_ms, max_ms, mean_ms;
    size_t n;
} bench_lat_t;
void bench_lat_summarize(uint32_t *v, size_t n, bench_lat_t *out);
json_t *bench_lat_json(const bench_lat_t *l);

/* A progress line on stderr when it is a terminal (printf-style), erased by bench_progress_end. */
void bench_progress(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void bench_progress_end(void);

/* write() until all of it is written (EINTR retried); 0, or -1 on an error. */
int bench_write_all(int fd, const char *p, size_t n);

/* Raises the soft limit of open files to the hard one: tens of thousands of sockets. */
void bench_raise_nofile(void);

/* Opens a blocking TCP connection to u (TCP_NODELAY); -1 with a message on failure. */
int bench_connect_blocking(const bench_url_t *u);

/*
 * One HTTP/1.1 request on a blocking keep-alive connection: writes it, reads the response (with
 * llhttp), returns its status, or -1 when the connection failed (the caller reconnects).
 * `body` may be NULL for GET. The response body is discarded.
 */
int bench_http_roundtrip(int fd, const char *method, const bench_url_t *u, const char *ctype,
                         const char *body, size_t body_len);

/* Prints a scenario's result: the JSON object with --json, else a readable table. */
void bench_report(json_t *result, bool as_json);

int bench_fanout_main(int argc, char **argv, bool connect_only);
int bench_stream_main(int argc, char **argv);
int bench_floor_main(int argc, char **argv);
int bench_publish_main(int argc, char **argv);

/* ---- TLS for subscribers (tls.c) --------------------------------------------------------- */

typedef struct bench_tls_s bench_tls_t;
struct uv_stream_s;
/** The client context (no certificate verification: the bench measures the server); ALPN offers
 * h2 when `h2`, else http/1.1. 0 or -1. */
int bench_tls_init(bool h2);
/** A client for one connection that sends `request` (borrowed; none when len is 0) once the
 * handshake is done. */
bench_tls_t *bench_tls_new(const char *request, size_t len);
void bench_tls_free(bench_tls_t *t);
/** After the TCP connect: sends the ClientHello on `s`. 0 or -1. */
int bench_tls_start(bench_tls_t *t, struct uv_stream_s *s);
/** Ciphertext read from `s`: handshake, then each piece of plaintext (decrypted into `buf`) to
 * `plain`. 0, or -1 when the connection failed (or `plain` did). */
int bench_tls_input(bench_tls_t *t, struct uv_stream_s *s, const char *data, size_t len, char *buf,
                    size_t cap, int (*plain)(void *arg, const char *p, size_t n), void *arg);
/** The handshake is done; and the protocol the server chose by ALPN is `proto`. */
bool bench_tls_ready(const bench_tls_t *t);
bool bench_tls_alpn_is(const bench_tls_t *t, const char *proto);
/** Encrypts `p` and writes it on `s` (after the handshake only). 0 or -1. */
int bench_tls_write(bench_tls_t *t, struct uv_stream_s *s, const char *p, size_t n);

/* ---- HTTP/2 subscribers (h2.c) ----------------------------------------------------------- */

typedef struct bench_h2_conn_s bench_h2_conn_t;
/* What a stream tells its owner; `user` is bench_h2_request's. on_status and on_data return
 * nonzero to reset the stream (on_close follows). on_close: the stream ended, was reset, or its
 * connection failed; called once per accepted request, never after. */
typedef struct bench_h2_cbs_s {
    int (*on_status)(void *user, int status);
    int (*on_data)(void *user, const char *p, size_t n);
    void (*on_close)(void *user);
} bench_h2_cbs_t;
struct sockaddr_in;
/** Opens an HTTP/2 connection from `src` to `dst` (TLS with ALPN h2 when `tls`: bench_tls_init
 * first) for up to `capacity` streams. `cbs` and the read buffers are borrowed for its life;
 * `*slot` (the caller's pointer to it) is set to NULL when it closes. NULL on failure. */
bench_h2_conn_t *bench_h2_connect(uv_loop_t *loop, const struct sockaddr_in *src,
                                  const struct sockaddr_in *dst, bool tls, int capacity,
                                  const bench_h2_cbs_t *cbs, bench_h2_conn_t **slot, char *rbuf,
                                  size_t rcap, char *plain, size_t pcap);
/** The connection takes no more requests (all its slots used, or it failed). */
bool bench_h2_full(const bench_h2_conn_t *c);
/** A GET of `path` as one stream (with Last-Event-ID when `last_id` is non-empty). 0: on_close
 * will come for `user`; -1: refused, no callback. */
int bench_h2_request(bench_h2_conn_t *c, const char *authority, const char *path,
                     const char *last_id, void *user);

#endif
