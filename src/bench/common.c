/* What the scenarios of hsc-bench share: URLs, clocks, /proc readings, statistics, reports. */
#include "bench.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <llhttp.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

int bench_url_parse(const char *s, const char *channel, bench_url_t *u)
{
    memset(u, 0, sizeof *u);
    if (strncmp(s, "https://", 8) == 0) {
        u->tls = true;
        s += 8;
    } else if (strncmp(s, "http://", 7) == 0) {
        s += 7;
    } else {
        return -1;
    }
    const char *slash = strchr(s, '/');
    size_t hostlen = slash != NULL ? (size_t)(slash - s) : strlen(s);
    const char *colon = memchr(s, ':', hostlen);
    size_t namelen = colon != NULL ? (size_t)(colon - s) : hostlen;
    if (namelen == 0 || namelen >= sizeof u->host)
        return -1;
    memcpy(u->host, s, namelen);
    if (strcmp(u->host, "localhost") == 0)
        strcpy(u->host, "127.0.0.1");
    u->port = u->tls ? 443 : 80;
    if (colon != NULL) {
        char *end;
        long p = strtol(colon + 1, &end, 10);
        if (end != s + hostlen || p <= 0 || p > 65535)
            return -1;
        u->port = (int)p;
    }
    const char *path = slash != NULL ? slash : "/";
    size_t o = 0;
    for (const char *p = path; *p != '\0'; p++) {
        if (channel != NULL && strncmp(p, "{ch}", 4) == 0) {
            size_t cl = strlen(channel);
            if (o + cl >= sizeof u->path)
                return -1;
            memcpy(u->path + o, channel, cl);
            o += cl;
            p += 3;
            continue;
        }
        if (o + 1 >= sizeof u->path)
            return -1;
        u->path[o++] = *p;
    }
    u->path[o] = '\0';
    struct in_addr a;
    return inet_pton(AF_INET, u->host, &a) == 1 ? 0 : -1;
}

uint64_t bench_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- /proc ------------------------------------------------------------------------------- */

typedef struct proc_row_s {
    int pid, ppid;
    double cpu_s;
    uint64_t rss_kb;
} proc_row_t;

static int read_proc_row(int pid, proc_row_t *row)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* The command name may hold spaces and parentheses: fields start after the last ')'. */
    char *p = strrchr(buf, ')');
    if (p == NULL)
        return -1;
    char state;
    int ppid;
    unsigned long utime, stime;
    long rss_pages;
    if (sscanf(p + 2,
               "%c %d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu %*d %*d %*d %*d %*d %*d %*u "
               "%*u %ld",
               &state, &ppid, &utime, &stime, &rss_pages) != 5)
        return -1;
    long hz = sysconf(_SC_CLK_TCK);
    row->pid = pid;
    row->ppid = ppid;
    row->cpu_s = (double)(utime + stime) / (double)hz;
    row->rss_kb = (uint64_t)rss_pages * (uint64_t)sysconf(_SC_PAGESIZE) / 1024u;
    return 0;
}

int bench_usage(const int *pids, int npids, bench_usage_t *out)
{
    memset(out, 0, sizeof *out);
    if (npids <= 0)
        return 0;
    size_t cap = 1024, n = 0;
    proc_row_t *rows = malloc(cap * sizeof *rows);
    DIR *d = opendir("/proc");
    if (rows == NULL || d == NULL) {
        free(rows);
        if (d != NULL)
            closedir(d);
        return -1;
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        int pid = atoi(e->d_name);
        if (pid <= 0)
            continue;
        if (n == cap) {
            proc_row_t *more = realloc(rows, 2 * cap * sizeof *rows);
            if (more == NULL)
                break;
            rows = more;
            cap *= 2;
        }
        if (read_proc_row(pid, &rows[n]) == 0)
            n++;
    }
    closedir(d);
    /* Mark the given pids, then their descendants until nothing changes. */
    char *in = calloc(n > 0 ? n : 1, 1);
    if (in == NULL) {
        free(rows);
        return -1;
    }
    for (size_t i = 0; i < n; i++)
        for (int k = 0; k < npids; k++)
            if (rows[i].pid == pids[k])
                in[i] = 1;
    for (bool changed = true; changed;) {
        changed = false;
        for (size_t i = 0; i < n; i++) {
            if (in[i])
                continue;
            for (size_t j = 0; j < n; j++)
                if (in[j] && rows[j].pid == rows[i].ppid) {
                    in[i] = 1;
                    changed = true;
                    break;
                }
        }
    }
    for (size_t i = 0; i < n; i++)
        if (in[i]) {
            out->cpu_s += rows[i].cpu_s;
            out->rss_kb += rows[i].rss_kb;
            out->procs++;
        }
    free(in);
    free(rows);
    return 0;
}

/* ---- statistics -------------------------------------------------------------------------- */

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

void bench_lat_summarize(uint32_t *v, size_t n, bench_lat_t *out)
{
    memset(out, 0, sizeof *out);
    out->n = n;
    if (n == 0)
        return;
    qsort(v, n, sizeof *v, cmp_u32);
    double sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += v[i];
#define PCT(q) ((double)v[(size_t)((double)(n - 1) * (q) + 0.5)] / 1000.0)
    out->p50_ms = PCT(0.50);
    out->p90_ms = PCT(0.90);
    out->p99_ms = PCT(0.99);
#undef PCT
    out->max_ms = (double)v[n - 1] / 1000.0;
    out->mean_ms = sum / (double)n / 1000.0;
}

json_t *bench_lat_json(const bench_lat_t *l)
{
    return json_pack("{s:I,s:f,s:f,s:f,s:f,s:f}", "samples", (json_int_t)l->n, "p50_ms", l->p50_ms,
                     "p90_ms", l->p90_ms, "p99_ms", l->p99_ms, "max_ms", l->max_ms, "mean_ms",
                     l->mean_ms);
}

/* ---- terminal progress ------------------------------------------------------------------- */

static bool g_progress_shown;

void bench_progress(const char *fmt, ...)
{
    if (!isatty(STDERR_FILENO))
        return;
    char line[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\r\033[K%s", line);
    g_progress_shown = true;
}

void bench_progress_end(void)
{
    if (g_progress_shown)
        fprintf(stderr, "\r\033[K");
    g_progress_shown = false;
}

/* ---- blocking HTTP/1.1 client (publishers) ---------------------------------------------- */

int bench_connect_blocking(const bench_url_t *u)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)u->port)};
    inet_pton(AF_INET, u->host, &sa.sin_addr);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        close(fd);
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

static int on_complete(llhttp_t *p)
{
    *(int *)p->data = 1;
    return HPE_PAUSED;
}

int bench_write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

int bench_http_roundtrip(int fd, const char *method, const bench_url_t *u, const char *ctype,
                         const char *body, size_t body_len)
{
    char head[4096];
    int hl = snprintf(head, sizeof head,
                      "%s %s HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: %s\r\n"
                      "Content-Length: %zu\r\n\r\n",
                      method, u->path, u->host, u->port, ctype != NULL ? ctype : "text/plain",
                      body != NULL ? body_len : 0);
    if (hl <= 0 || (size_t)hl >= sizeof head || bench_write_all(fd, head, (size_t)hl) != 0 ||
        (body != NULL && body_len > 0 && bench_write_all(fd, body, body_len) != 0))
        return -1;
    llhttp_settings_t settings;
    llhttp_settings_init(&settings);
    settings.on_message_complete = on_complete;
    llhttp_t parser;
    llhttp_init(&parser, HTTP_RESPONSE, &settings);
    int done = 0;
    parser.data = &done;
    char buf[8192];
    while (!done) {
        ssize_t r = read(fd, buf, sizeof buf);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        llhttp_errno_t err = llhttp_execute(&parser, buf, (size_t)r);
        if (err != HPE_OK && err != HPE_PAUSED)
            return -1;
    }
    /* A publisher's connection carries one response at a time: nothing may follow it. */
    return (int)parser.status_code;
}

void bench_raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

/* ---- reports ----------------------------------------------------------------------------- */

static void print_value(const char *prefix, const char *key, json_t *v)
{
    char name[128];
    snprintf(name, sizeof name, "%s%s", prefix, key);
    if (json_is_object(v)) {
        char sub[160];
        snprintf(sub, sizeof sub, "%s.", name);
        const char *k;
        json_t *x;
        json_object_foreach(v, k, x) print_value(sub, k, x);
    } else if (json_is_real(v)) {
        printf("  %-34s %.4g\n", name, json_real_value(v));
    } else if (json_is_integer(v)) {
        printf("  %-34s %lld\n", name, (long long)json_integer_value(v));
    } else if (json_is_string(v)) {
        printf("  %-34s %s\n", name, json_string_value(v));
    } else if (json_is_boolean(v)) {
        printf("  %-34s %s\n", name, json_is_true(v) ? "yes" : "no");
    }
}

void bench_report(json_t *result, bool as_json)
{
    bench_progress_end();
    if (as_json) {
        char *s = json_dumps(result, JSON_COMPACT | JSON_PRESERVE_ORDER);
        if (s != NULL)
            printf("%s\n", s);
        free(s);
    } else {
        const char *k;
        json_t *v;
        json_object_foreach(result, k, v) print_value("", k, v);
    }
    fflush(stdout);
}
