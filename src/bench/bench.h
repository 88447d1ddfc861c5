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
/** The client context (no certificate verification: the bench measures the server). 0 or -1. */
int bench_tls_init(void);
/** A client for one connection that sends `request` (borrowed) once the handshake is done. */
bench_tls_t *bench_tls_new(const char *request, size_t len);
void bench_tls_free(bench_tls_t *t);
/** After the TCP connect: sends the ClientHello on `s`. 0 or -1. */
int bench_tls_start(bench_tls_t *t, struct uv_stream_s *s);
/** Ciphertext read from `s`: handshake, then each piece of plaintext (decrypted into `buf`) to
 * `plain`. 0, or -1 when the connection failed (or `plain` did). */
int bench_tls_input(bench_tls_t *t, struct uv_stream_s *s, const char *data, size_t len, char *buf,
                    size_t cap, int (*plain)(void *arg, const char *p, size_t n), void *arg);

#endif
