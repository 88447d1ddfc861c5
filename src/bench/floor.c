/*
 * The floor: the least a server can do to fan an event out. It accepts subscribers (any GET is
 * one: it answers the event-stream headers, then only writes), and for each POST it encodes the
 * body once as an SSE event and write()s those same bytes to every subscriber socket, in one
 * thread, with nothing else: no queues, no history, no timers, no parsing beyond finding the end
 * of a request. No server that delivers through the same system calls can do less work per
 * delivery, which makes it the yardstick of docs/PERFORMANCE.md.
 *
 * Subscriber sockets stay blocking (a write waits rather than drops: nothing may be lost), so
 * one subscriber that stops reading stalls everyone: a floor, not a server.
 */
#define _GNU_SOURCE /* memmem, accept4 */
#include "bench.h"

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define HEAD_MAX 16384
#define BODY_MAX (1 << 20)

typedef struct fconn_s {
    int fd;
    size_t len, cap;
    char *buf; /* request head and body being read: HEAD_MAX, grown for a POST's body */
} fconn_t;

static volatile sig_atomic_t g_stop;

static void on_signal(int sig)
{
    (void)sig;
    g_stop = 1;
}

static const char SSE_HEAD[] = "HTTP/1.1 200 OK\r\n"
                               "Content-Type: text/event-stream\r\n"
                               "Cache-Control: no-store\r\n"
                               "Connection: close\r\n\r\n";

typedef struct floor_s {
    int *subs;
    size_t nsubs, cap;
    unsigned long long next_id;
    char *frame;
} floor_t;

/* Encodes `body` as one event ("data:" per line) once, then writes it to every subscriber. */
static size_t fan_out(floor_t *f, const char *body, size_t len)
{
    size_t o = (size_t)sprintf(f->frame, "id: %llu\n", ++f->next_id);
    size_t start = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i == len || body[i] == '\n') {
            memcpy(f->frame + o, "data: ", 6);
            o += 6;
            memcpy(f->frame + o, body + start, i - start);
            o += i - start;
            f->frame[o++] = '\n';
            start = i + 1;
        }
    }
    f->frame[o++] = '\n';
    size_t delivered = 0;
    for (size_t i = 0; i < f->nsubs;) {
        if (bench_write_all(f->subs[i], f->frame, o) == 0) {
            delivered++;
            i++;
        } else {
            close(f->subs[i]);
            f->subs[i] = f->subs[--f->nsubs];
        }
    }
    return delivered;
}

static void drop(int ep, fconn_t *c)
{
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    free(c->buf);
    free(c);
}

/* Handles whatever complete requests `c` holds; returns -1 when the connection is done with. */
static int serve(floor_t *f, int ep, fconn_t *c)
{
    for (;;) {
        char *end = memmem(c->buf, c->len, "\r\n\r\n", 4);
        if (end == NULL)
            return c->len < HEAD_MAX ? 0 : -1;
        size_t head = (size_t)(end - c->buf) + 4;
        if (strncmp(c->buf, "GET ", 4) == 0) {
            /* A subscriber: from now on only written to. */
            if (bench_write_all(c->fd, SSE_HEAD, sizeof SSE_HEAD - 1) != 0)
                return -1;
            if (f->nsubs == f->cap) {
                size_t cap = f->cap ? 2 * f->cap : 1024;
                int *more = realloc(f->subs, cap * sizeof *more);
                if (more == NULL)
                    return -1;
                f->subs = more;
                f->cap = cap;
            }
            epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
            f->subs[f->nsubs++] = c->fd;
            free(c->buf);
            free(c);
            return 1;
        }
        if (strncmp(c->buf, "POST ", 5) != 0)
            return -1;
        size_t body = 0;
        for (char *line = strstr(c->buf, "\r\n"); line != NULL && line < end;
             line = strstr(line + 2, "\r\n"))
            if (strncasecmp(line + 2, "Content-Length:", 15) == 0)
                body = strtoul(line + 17, NULL, 10);
        if (body > BODY_MAX)
            return -1;
        if (c->len < head + body) {
            if (c->cap < HEAD_MAX + BODY_MAX) {
                char *more = realloc(c->buf, HEAD_MAX + BODY_MAX);
                if (more == NULL)
                    return -1;
                c->buf = more;
                c->cap = HEAD_MAX + BODY_MAX;
            }
            return 0;
        }
        size_t n = fan_out(f, c->buf + head, body);
        char resp[256], js[96];
        int jl = snprintf(js, sizeof js, "{\"id\":\"%llu\",\"subscribers\":%zu}", f->next_id, n);
        int rl = snprintf(resp, sizeof resp,
                          "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                          "Content-Length: %d\r\n\r\n%s",
                          jl, js);
        if (bench_write_all(c->fd, resp, (size_t)rl) != 0)
            return -1;
        memmove(c->buf, c->buf + head + body, c->len - head - body);
        c->len -= head + body;
    }
}

int bench_floor_main(int argc, char **argv)
{
    const char *listen_at = "127.0.0.1:0";
    static const struct option longs[] = {{"listen", required_argument, NULL, 'l'},
                                          {"help", no_argument, NULL, 'h'},
                                          {NULL, 0, NULL, 0}};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", longs, NULL)) != -1) {
        if (c == 'l') {
            listen_at = optarg;
        } else {
            fputs("usage: hsc-bench floor [--listen 127.0.0.1:PORT]\n"
                  "  The physical floor of fan-out: GET subscribes, POST writes the body as one\n"
                  "  event to every subscriber with plain write() calls. SIGTERM stops it.\n",
                  c == 'h' ? stdout : stderr);
            return c == 'h' ? 0 : 2;
        }
    }
    char host[64];
    const char *colon = strrchr(listen_at, ':');
    if (colon == NULL || (size_t)(colon - listen_at) >= sizeof host) {
        fprintf(stderr, "hsc-bench floor: --listen HOST:PORT\n");
        return 2;
    }
    memcpy(host, listen_at, (size_t)(colon - listen_at));
    host[colon - listen_at] = '\0';
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(colon + 1))};
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
        fprintf(stderr, "hsc-bench floor: %s is not an IPv4 address\n", host);
        return 2;
    }
    bench_raise_nofile();
    signal(SIGPIPE, SIG_IGN);
    struct sigaction act = {.sa_handler = on_signal};
    sigaction(SIGTERM, &act, NULL);
    sigaction(SIGINT, &act, NULL);

    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    socklen_t sl = sizeof sa;
    if (bind(lfd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(lfd, 4096) != 0 ||
        getsockname(lfd, (struct sockaddr *)&sa, &sl) != 0) {
        perror("hsc-bench floor: listen");
        return 1;
    }
    fprintf(stderr, "hsc-bench floor: listening on http://%s:%d\n", host, ntohs(sa.sin_port));
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
    floor_t f = {.frame = malloc(2 * BODY_MAX + 64)};
    if (f.frame == NULL)
        return 1;
    struct epoll_event events[256];
    while (!g_stop) {
        int n = epoll_wait(ep, events, 256, 500);
        for (int i = 0; i < n; i++) {
            fconn_t *conn = events[i].data.ptr;
            if (conn == NULL) {
                int fd;
                while ((fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC)) >= 0) {
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    fconn_t *nc = calloc(1, sizeof *nc);
                    char *buf = malloc(HEAD_MAX);
                    if (nc == NULL || buf == NULL) {
                        free(nc);
                        free(buf);
                        close(fd);
                        continue;
                    }
                    nc->fd = fd;
                    nc->buf = buf;
                    nc->cap = HEAD_MAX;
                    struct epoll_event cev = {.events = EPOLLIN, .data.ptr = nc};
                    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &cev);
                }
                continue;
            }
            ssize_t r = read(conn->fd, conn->buf + conn->len, conn->cap - conn->len);
            if (r <= 0) {
                drop(ep, conn);
                continue;
            }
            conn->len += (size_t)r;
            if (serve(&f, ep, conn) < 0)
                drop(ep, conn);
        }
    }
    for (size_t i = 0; i < f.nsubs; i++)
        close(f.subs[i]);
    free(f.subs);
    free(f.frame);
    close(ep);
    close(lfd);
    return 0;
}
