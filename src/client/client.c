/*
 * The hsc client (include/hsc/client.h) on libcurl's multi interface. One easy handle is reused
 * for every run and reconnection, so keep-alive connections carry repeated publishes.
 *
 * Waiting is done in curl_multi_poll() with one extra descriptor, the read end of a pipe that
 * hsc_client_stop() writes to: a Ctrl-C or a timeout ends the run at once rather than at curl's
 * next progress tick. Between reconnections the client sleeps in poll() on the same pipe.
 *
 * Reconnection follows EventSource: after a stream that delivered something ends, wait the
 * server's retry: plus up to half of it again (never sooner than the server asks) and reconnect
 * with Last-Event-ID; while the server cannot be reached or answers 5xx, back off exponentially
 * with "equal jitter": the backoff starts at retry: and doubles up to max_backoff_ms, and each
 * wait is half the backoff plus a uniform draw from the other half (the server's Retry-After when
 * longer). Half the backoff is a floor, so a down server is not tried again at once and the
 * doubling really spaces the attempts out; the random half spreads the clients a restart cut at
 * the same moment. (Full jitter, uniform in [0, backoff], spreads them wider but lets any
 * attempt follow the last one at once.) The draws come from a PRNG of the client's own: a
 * library must not reseed or draw from the process's rand().
 *
 * A 204 means the server wants no more reconnections; other 4xx are final.
 *
 * Credentials: the token goes in an Authorization header built once at hsc_client_new(); the
 * notices and a server's error line are passed through hsc_client_redact(), since a token may
 * ride in a URL's access_token parameter. The caller's headers come after the client's own, which
 * are left out when the caller names the same header.
 */
#define _GNU_SOURCE /* pipe2 */
#include "hsc/client.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#define BODY_KEEP (64 * 1024)

struct hsc_client_s {
    hsc_client_config_t cfg;
    CURL *easy;
    CURLM *multi;
    hsc_sse_parser_t *parser;
    int stop_pipe[2];
    volatile sig_atomic_t stopping;
    uint64_t deadline; /* monotonic ms, 0 = none */
    /* The current attempt. */
    int status;
    bool headers_done, is_sse, delivered, cb_stopped, protocol_error, nomem;
    uint64_t retry_after_ms;
    char content_type[128];
    char *body; /* first BODY_KEEP bytes of a response */
    size_t body_len;
    unsigned char carry[4]; /* !sse: the start of a character cut by the last read */
    size_t carry_len;
    char *scratch; /* !sse: repaired text */
    size_t scratch_cap;
    uint64_t retry_ms; /* the server's retry:, or the configured one */
    uint64_t rng;      /* xorshift64 state for the reconnection jitter, never 0 */
    char where[300];   /* "HOST:PORT" of the URL, for messages */
    char *auth;        /* "Authorization: Bearer TOKEN", or NULL */
    char error[512];
    char last_id_hdr[1100];
};

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* a + b, saturated: a server's retry: may be as large as UINT64_MAX. */
static uint64_t add_sat(uint64_t a, uint64_t b)
{
    return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

void hsc_client_config_init(hsc_client_config_t *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->retry_ms = 2000;
    cfg->max_backoff_ms = 30000;
    cfg->connect_timeout_ms = 10000;
    cfg->max_line = 1u << 20;
    cfg->max_event = 16u << 20;
}

static int on_parsed_event(void *user, const hsc_sse_msg_t *msg)
{
    hsc_client_t *c = user;
    c->delivered = true;
    if (c->cfg.on_event != NULL && c->cfg.on_event(c->cfg.user, msg) != 0) {
        c->cb_stopped = true;
        return 1;
    }
    return 0;
}

static int on_parsed_retry(void *user, uint64_t ms)
{
    hsc_client_t *c = user;
    c->retry_ms = ms;
    return 0;
}

/* Seeds the client's PRNG from the clock, the pid and the client's address, so that processes
 * started together, and clients of one process, draw differently. */
static void seed_rng(hsc_client_t *c)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t x = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
    x ^= ((uint64_t)getpid() << 32) ^ mono_ms() ^ (uint64_t)(uintptr_t)c;
    /* splitmix64's finaliser: nearby seeds give unrelated states. */
    x += 0x9e3779b97f4a7c15u;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9u;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebu;
    x ^= x >> 31;
    c->rng = x != 0 ? x : 1;
}

int hsc_client_token_valid(const char *token)
{
    size_t n = strlen(token);
    if (n == 0 || n > 4096)
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)token[i] <= 0x20 || (unsigned char)token[i] >= 0x7f)
            return 0;
    return 1;
}

static bool is_tchar(unsigned char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           (ch != '\0' && strchr("!#$%&'*+-.^_`|~", ch) != NULL);
}

int hsc_client_header_valid(const char *line)
{
    size_t i = 0;
    while (is_tchar((unsigned char)line[i]))
        i++;
    if (i == 0 || line[i] != ':')
        return 0;
    for (i++; line[i] != '\0'; i++) {
        unsigned char ch = (unsigned char)line[i];
        if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
            return 0; /* CR and LF above all: they would start a header of their own */
    }
    return 1;
}

/* True when the caller's headers name `name` (compared without case). */
static bool caller_sets(const hsc_client_t *c, const char *name)
{
    size_t n = strlen(name);
    for (const char *const *h = c->cfg.headers; h != NULL && *h != NULL; h++)
        if (strncasecmp(*h, name, n) == 0 && (*h)[n] == ':')
            return true;
    return false;
}

static int hexval(unsigned char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    ch |= 0x20;
    return ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
}

/* True when the `n` bytes at `k`, a query key, decode to access_token (without case). */
static bool is_token_key(const char *k, size_t n)
{
    static const char want[] = "access_token";
    size_t w = 0;
    for (size_t i = 0; i < n; i++, w++) {
        int ch = (unsigned char)k[i];
        if (ch == '%') {
            int hi = i + 2 < n ? hexval((unsigned char)k[i + 1]) : -1;
            int lo = i + 2 < n ? hexval((unsigned char)k[i + 2]) : -1;
            if (hi < 0 || lo < 0)
                return false;
            ch = hi << 4 | lo;
            i += 2;
        } else if (ch == '+') {
            ch = ' ';
        }
        if (ch >= 'A' && ch <= 'Z')
            ch += 'a' - 'A';
        if (w >= sizeof want - 1 || ch != want[w])
            return false;
    }
    return w == sizeof want - 1;
}

char *hsc_client_redact(char *out, size_t cap, const char *text)
{
    size_t o = 0;
    const char *p = text;
    while (*p != '\0' && o + 1 < cap) {
        char ch = *p++;
        out[o++] = ch;
        if (ch != '?' && ch != '&')
            continue;
        /* A query key starts here: is it access_token? */
        size_t k = strcspn(p, "=&# \t\r\n");
        if (p[k] != '=' || !is_token_key(p, k))
            continue;
        for (size_t i = 0; i <= k && o + 1 < cap; i++)
            out[o++] = p[i]; /* the key as written, and '=' */
        for (const char *r = "***"; *r != '\0' && o + 1 < cap; r++)
            out[o++] = *r;
        p += k + 1;
        p += strcspn(p, "&# \t\r\n"); /* the value, never copied */
    }
    if (cap > 0)
        out[o < cap ? o : cap - 1] = '\0';
    return out;
}

/* Fills c->where with the URL's "HOST:PORT" (the scheme's port when the URL gives none). */
static void find_where(hsc_client_t *c)
{
    snprintf(c->where, sizeof c->where, "the server");
    CURLU *u = curl_url();
    char *host = NULL, *port = NULL;
    if (u != NULL && curl_url_set(u, CURLUPART_URL, c->cfg.url, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) == CURLUE_OK)
        snprintf(c->where, sizeof c->where, "%.200s:%s", host, port);
    curl_free(host);
    curl_free(port);
    curl_url_cleanup(u);
}

int hsc_client_new(const hsc_client_config_t *cfg, hsc_client_t **out)
{
    static bool curl_ready;
    if (!curl_ready) {
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
            return HSC_ENOMEM;
        curl_ready = true;
    }
    *out = NULL;
    if (cfg->token != NULL && !hsc_client_token_valid(cfg->token))
        return HSC_EINVAL;
    for (const char *const *h = cfg->headers; h != NULL && *h != NULL; h++)
        if (!hsc_client_header_valid(*h))
            return HSC_EINVAL;
    hsc_client_t *c = calloc(1, sizeof *c);
    if (c == NULL)
        return HSC_ENOMEM;
    c->cfg = *cfg;
    c->stop_pipe[0] = c->stop_pipe[1] = -1;
    c->retry_ms = cfg->retry_ms;
    seed_rng(c);
    if (pipe2(c->stop_pipe, O_CLOEXEC | O_NONBLOCK) != 0 || (c->easy = curl_easy_init()) == NULL ||
        (c->multi = curl_multi_init()) == NULL || (c->body = malloc(BODY_KEEP + 1)) == NULL) {
        hsc_client_free(c);
        return HSC_ENOMEM;
    }
    if (cfg->token != NULL) {
        if ((c->auth = malloc(strlen(cfg->token) + 32)) == NULL) {
            hsc_client_free(c);
            return HSC_ENOMEM;
        }
        sprintf(c->auth, "Authorization: Bearer %s", cfg->token);
    }
    c->body[0] = '\0';
    find_where(c);
    if (cfg->sse) {
        c->parser = hsc_sse_parser_new(cfg->max_line, cfg->max_event, on_parsed_event,
                                       on_parsed_retry, NULL, c);
        if (c->parser == NULL) {
            hsc_client_free(c);
            return HSC_ENOMEM;
        }
        int rc = cfg->last_event_id != NULL
                     ? hsc_sse_parser_set_last_id(c->parser, cfg->last_event_id)
                     : 0;
        if (rc != 0) { /* HSC_EINVAL: an id with CR, LF or invalid UTF-8 */
            hsc_client_free(c);
            return rc;
        }
    }
    *out = c;
    return 0;
}

void hsc_client_set_body(hsc_client_t *c, const void *body, size_t len)
{
    c->cfg.body = body;
    c->cfg.body_len = len;
}

void hsc_client_stop(hsc_client_t *c)
{
    c->stopping = 1;
    ssize_t rc = write(c->stop_pipe[1], "x", 1); /* async-signal-safe */
    (void)rc;
}

int hsc_client_status(const hsc_client_t *c)
{
    return c->status;
}

const char *hsc_client_error(const hsc_client_t *c)
{
    return c->error;
}

const char *hsc_client_body(const hsc_client_t *c)
{
    return c->body;
}

const char *hsc_client_last_event_id(const hsc_client_t *c)
{
    if (c->parser != NULL)
        return hsc_sse_parser_last_id(c->parser);
    return "";
}

void hsc_client_free(hsc_client_t *c)
{
    if (c == NULL)
        return;
    if (c->multi != NULL)
        curl_multi_cleanup(c->multi);
    if (c->easy != NULL)
        curl_easy_cleanup(c->easy);
    if (c->parser != NULL)
        hsc_sse_parser_free(c->parser);
    for (int i = 0; i < 2; i++)
        if (c->stop_pipe[i] >= 0)
            close(c->stop_pipe[i]);
    free(c->body);
    free(c->scratch);
    free(c->auth);
    free(c);
}

/* ---- one attempt ------------------------------------------------------------------------------
 */

static void notice(hsc_client_t *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static bool ok_status(int s)
{
    return s >= 200 && s < 300;
}

static size_t on_header(char *p, size_t size, size_t n, void *user)
{
    hsc_client_t *c = user;
    size_t len = size * n;
    if (len >= 5 && strncmp(p, "HTTP/", 5) == 0) {
        /* A status line: a new response starts (after 100 Continue, or a redirect). */
        const char *sp = memchr(p, ' ', len);
        c->status = sp ? atoi(sp + 1) : 0;
        c->content_type[0] = '\0';
        c->retry_after_ms = 0;
        c->headers_done = false;
    } else if (len >= 13 && strncasecmp(p, "Content-Type:", 13) == 0) {
        size_t v = 13;
        while (v < len && (p[v] == ' ' || p[v] == '\t'))
            v++;
        size_t e = len;
        while (e > v && (p[e - 1] == '\r' || p[e - 1] == '\n' || p[e - 1] == ' '))
            e--;
        snprintf(c->content_type, sizeof c->content_type, "%.*s", (int)(e - v), p + v);
    } else if (len >= 12 && strncasecmp(p, "Retry-After:", 12) == 0) {
        long s = strtol(p + 12, NULL, 10);
        if (s > 0 && s < 3600)
            c->retry_after_ms = (uint64_t)s * 1000u;
    } else if ((len == 2 && p[0] == '\r') || (len == 1 && p[0] == '\n')) {
        if (c->status >= 200)
            c->headers_done = true;
        if (ok_status(c->status) && c->cfg.reconnect)
            notice(c, "connected to %s", c->cfg.url);
    }
    return len;
}

/* Text pieces: hold back a cut character, repair bad bytes, hand the rest over. */
static int emit_text(hsc_client_t *c, const char *p, size_t n, bool final)
{
    size_t total = c->carry_len + n;
    if (total == 0)
        return 0;
    size_t need = 3 * total + 1;
    if (need > c->scratch_cap) {
        char *s = realloc(c->scratch, need);
        if (s == NULL) {
            snprintf(c->error, sizeof c->error, "out of memory");
            c->nomem = true;
            return 1;
        }
        c->scratch = s;
        c->scratch_cap = need;
    }
    /* Join the carried bytes and the new ones at the end of scratch, repair into its start. */
    char *joined = c->scratch + 2 * total;
    memcpy(joined, c->carry, c->carry_len);
    memcpy(joined + c->carry_len, p, n);
    size_t keep = final ? total : hsc_utf8_complete_prefix(joined, total);
    size_t carry = total - keep;
    unsigned char tail[4];
    memcpy(tail, joined + keep, carry);
    size_t out = hsc_utf8_repair(c->scratch, joined, keep);
    memcpy(c->carry, tail, carry);
    c->carry_len = carry;
    if (out > 0 && c->cfg.on_piece != NULL && c->cfg.on_piece(c->cfg.user, c->scratch, out) != 0) {
        c->cb_stopped = true;
        return 1;
    }
    return 0;
}

static size_t on_body(char *p, size_t size, size_t n, void *user)
{
    hsc_client_t *c = user;
    size_t len = size * n;
    if (c->body_len < BODY_KEEP) {
        size_t k = len < BODY_KEEP - c->body_len ? len : BODY_KEEP - c->body_len;
        memcpy(c->body + c->body_len, p, k);
        c->body_len += k;
        c->body[c->body_len] = '\0';
    }
    if (!ok_status(c->status))
        return len; /* an error's reason: kept above, reported by the caller */
    if (!c->cfg.sse)
        return emit_text(c, p, len, false) == 0 ? len : 0;
    if (!c->is_sse) {
        if (strncasecmp(c->content_type, "text/event-stream", 17) != 0) {
            snprintf(c->error, sizeof c->error, "not an event stream (Content-Type: %s)",
                     c->content_type[0] ? c->content_type : "none");
            c->protocol_error = true;
            return 0;
        }
        c->is_sse = true;
    }
    if (c->cfg.on_raw != NULL && c->cfg.on_raw(c->cfg.user, p, len) != 0) {
        c->cb_stopped = true;
        return 0;
    }
    int rc = hsc_sse_parser_feed(c->parser, p, len);
    if (rc == HSC_ETOOBIG) {
        snprintf(c->error, sizeof c->error,
                 "a line or an event is longer than the limit (%zu / %zu bytes)", c->cfg.max_line,
                 c->cfg.max_event);
        c->protocol_error = true;
        return 0;
    }
    if (rc == HSC_ENOMEM) {
        snprintf(c->error, sizeof c->error, "out of memory");
        c->nomem = true;
    }
    return rc == 0 ? len : 0;
}

/* Hands a notice to on_notice, redacted: it may hold the URL, or a server's words about it. */
static void notice(hsc_client_t *c, const char *fmt, ...)
{
    if (c->cfg.on_notice == NULL)
        return;
    char msg[600], shown[700];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    c->cfg.on_notice(c->cfg.user, hsc_client_redact(shown, sizeof shown, msg));
}

static void drain_pipe(hsc_client_t *c)
{
    char buf[64];
    while (read(c->stop_pipe[0], buf, sizeof buf) > 0) {
    }
}

/* Appends `line` to *list unless the caller's headers name the same header. On failure, keeps
 * the list and sets c->nomem. */
static void add_header(hsc_client_t *c, struct curl_slist **list, const char *line)
{
    char name[64];
    size_t n = strcspn(line, ":");
    snprintf(name, sizeof name, "%.*s", (int)n, line);
    if (caller_sets(c, name))
        return;
    struct curl_slist *l = curl_slist_append(*list, line);
    if (l == NULL)
        c->nomem = true;
    else
        *list = l;
}

/* Runs one request to its end. Returns the curl result. */
static CURLcode attempt(hsc_client_t *c)
{
    CURL *e = c->easy;
    c->status = 0;
    c->headers_done = c->is_sse = c->delivered = c->cb_stopped = c->protocol_error = c->nomem =
        false;
    c->retry_after_ms = 0;
    c->content_type[0] = '\0';
    c->body_len = 0;
    c->body[0] = '\0';
    c->carry_len = 0;
    c->error[0] = '\0';
    if (c->parser != NULL)
        hsc_sse_parser_reset(c->parser);

    struct curl_slist *hdrs = NULL;
    if (c->cfg.sse) {
        add_header(c, &hdrs, "Accept: text/event-stream");
        add_header(c, &hdrs, "Cache-Control: no-cache");
        const char *id = hsc_sse_parser_last_id(c->parser);
        if (id[0] != '\0' && strlen(id) < sizeof c->last_id_hdr - 20) {
            snprintf(c->last_id_hdr, sizeof c->last_id_hdr, "Last-Event-ID: %s", id);
            add_header(c, &hdrs, c->last_id_hdr);
        }
    }
    if (c->cfg.body != NULL) {
        char ct[160];
        snprintf(ct, sizeof ct, "Content-Type: %s",
                 c->cfg.content_type ? c->cfg.content_type : "text/plain; charset=utf-8");
        add_header(c, &hdrs, ct);
        add_header(c, &hdrs, "Expect:");
    }
    if (c->auth != NULL)
        add_header(c, &hdrs, c->auth);
    for (const char *const *h = c->cfg.headers; h != NULL && *h != NULL; h++) {
        struct curl_slist *l = curl_slist_append(hdrs, *h);
        if (l == NULL)
            c->nomem = true;
        else
            hdrs = l;
    }
    if (c->nomem) {
        curl_slist_free_all(hdrs);
        snprintf(c->error, sizeof c->error, "out of memory");
        return CURLE_OUT_OF_MEMORY;
    }
    curl_easy_setopt(e, CURLOPT_URL, c->cfg.url);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "hsc/" HSC_VERSION_STRING);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, c);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, c);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)c->cfg.connect_timeout_ms);
    curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    if (c->cfg.body != NULL) {
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, c->cfg.body);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)c->cfg.body_len);
    } else {
        curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
    }
    if (c->cfg.method != NULL)
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, c->cfg.method);

    CURLcode result = CURLE_OK;
    curl_multi_add_handle(c->multi, e);
    for (;;) {
        int running = 0;
        CURLMcode mc = curl_multi_perform(c->multi, &running);
        if (mc != CURLM_OK) {
            result = CURLE_OUT_OF_MEMORY;
            break;
        }
        if (running == 0) {
            int left;
            CURLMsg *m;
            while ((m = curl_multi_info_read(c->multi, &left)) != NULL)
                if (m->msg == CURLMSG_DONE)
                    result = m->data.result;
            break;
        }
        if (c->stopping)
            break;
        int wait = 1000;
        if (c->deadline != 0) {
            uint64_t now = mono_ms();
            if (now >= c->deadline)
                break;
            if (c->deadline - now < (uint64_t)wait)
                wait = (int)(c->deadline - now);
        }
        struct curl_waitfd wfd = {.fd = c->stop_pipe[0], .events = CURL_WAIT_POLLIN};
        curl_multi_poll(c->multi, &wfd, 1, wait, NULL);
        if (wfd.revents != 0)
            drain_pipe(c);
    }
    curl_multi_remove_handle(c->multi, e);
    curl_slist_free_all(hdrs);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, NULL);
    if (c->status != 0 && ok_status(c->status) && !c->cfg.sse && result == CURLE_OK)
        emit_text(c, NULL, 0, true);
    return result;
}

/* Sleeps up to `ms`, waking for a stop or the deadline. Returns false when the run must end. */
static bool pause_for(hsc_client_t *c, uint64_t ms)
{
    uint64_t until = add_sat(mono_ms(), ms);
    while (!c->stopping) {
        uint64_t now = mono_ms();
        if (c->deadline != 0 && now >= c->deadline)
            return false;
        if (now >= until)
            return true;
        uint64_t wait = until - now;
        if (c->deadline != 0 && c->deadline - now < wait)
            wait = c->deadline - now;
        struct pollfd pfd = {.fd = c->stop_pipe[0], .events = POLLIN};
        if (poll(&pfd, 1, (int)(wait > 1000 ? 1000 : wait)) > 0)
            drain_pipe(c);
    }
    return false;
}

/* A draw from [0, n], uniform but for a modulo bias of about n / 2^64. */
static uint64_t draw_upto(hsc_client_t *c, uint64_t n)
{
    c->rng ^= c->rng << 13;
    c->rng ^= c->rng >> 7;
    c->rng ^= c->rng << 17;
    return n == UINT64_MAX ? c->rng : c->rng % (n + 1);
}

/*
 * Says in hsc's words why a transfer failed with `rc`: curl's own wording ("Couldn't connect to
 * server", "Transferred a partial file") is written for curl's users, and names neither the
 * server nor the system's reason. The common failures get a sentence; the rest keep curl's text
 * after "the transfer failed: ".
 */
static void curl_failure(hsc_client_t *c, CURLcode rc)
{
    long oserr = 0;
    curl_easy_getinfo(c->easy, CURLINFO_OS_ERRNO, &oserr);
    char why[128] = "";
    if (oserr != 0) {
        snprintf(why, sizeof why, "%s", strerror((int)oserr));
        if (why[0] >= 'A' && why[0] <= 'Z' && (why[1] < 'A' || why[1] > 'Z'))
            why[0] = (char)(why[0] - 'A' + 'a'); /* "Connection refused", inside a sentence */
    }
    bool reached = c->status != 0;
    char *e = c->error;
    size_t n = sizeof c->error;
    switch (rc) {
    case CURLE_COULDNT_RESOLVE_HOST:
        snprintf(e, n, "cannot connect to %s: unknown host name", c->where);
        break;
    case CURLE_COULDNT_CONNECT:
        snprintf(e, n, "cannot connect to %s: %s", c->where, why[0] ? why : "refused");
        break;
    case CURLE_OPERATION_TIMEDOUT:
        if (reached)
            snprintf(e, n, "the server stopped answering (timed out)");
        else
            snprintf(e, n, "cannot connect to %s: no answer within %.1f s", c->where,
                     (double)c->cfg.connect_timeout_ms / 1000.0);
        break;
    case CURLE_GOT_NOTHING:
        snprintf(e, n, "%s closed the connection without answering", c->where);
        break;
    case CURLE_PARTIAL_FILE:
        snprintf(e, n, "the server closed the stream before it ended");
        break;
    case CURLE_RECV_ERROR:
        if (reached)
            snprintf(e, n, "the connection broke before the stream ended%s%s%s", why[0] ? " (" : "",
                     why, why[0] ? ")" : "");
        else
            snprintf(e, n, "the connection to %s broke before an answer%s%s%s", c->where,
                     why[0] ? " (" : "", why, why[0] ? ")" : "");
        break;
    case CURLE_SEND_ERROR:
        snprintf(e, n, "cannot send the request to %s%s%s%s", c->where, why[0] ? " (" : "", why,
                 why[0] ? ")" : "");
        break;
    case CURLE_WEIRD_SERVER_REPLY:
        snprintf(e, n, "%s does not answer in HTTP", c->where);
        break;
    case CURLE_UNSUPPORTED_PROTOCOL:
        snprintf(e, n, "%s does not answer in HTTP/1.x, or the URL's scheme is not supported",
                 c->where);
        break;
    case CURLE_URL_MALFORMAT:
        snprintf(e, n, "not a valid URL");
        break;
    case CURLE_OUT_OF_MEMORY:
        snprintf(e, n, "out of memory");
        break;
    case CURLE_SSL_CONNECT_ERROR:
        snprintf(e, n, "cannot connect to %s: the TLS handshake failed", c->where);
        break;
    case CURLE_PEER_FAILED_VERIFICATION:
        snprintf(e, n, "cannot connect to %s: its certificate cannot be verified", c->where);
        break;
    default:
        snprintf(e, n, "the transfer failed: %s", curl_easy_strerror(rc));
        break;
    }
}

/* The reason an error response gives: its first line, redacted (a server may quote the URL). */
static void http_error(hsc_client_t *c)
{
    char msg[sizeof c->error];
    size_t n = strcspn(c->body, "\r\n");
    snprintf(msg, sizeof msg, "HTTP %d: %.*s", c->status, (int)(n > 400 ? 400 : n),
             n > 0 ? c->body : "(no reason given)");
    hsc_client_redact(c->error, sizeof c->error, msg);
}

int hsc_client_run(hsc_client_t *c)
{
    c->stopping = 0;
    drain_pipe(c);
    c->deadline = c->cfg.timeout_ms ? add_sat(mono_ms(), c->cfg.timeout_ms) : 0;
    uint64_t backoff = 0;
    for (;;) {
        CURLcode rc = attempt(c);
        if (c->cb_stopped || c->stopping)
            return HSC_CLIENT_STOPPED;
        if (c->protocol_error)
            return HSC_CLIENT_PROTOCOL;
        if (c->nomem)
            return HSC_CLIENT_NOMEM;
        bool timed_out = c->deadline != 0 && mono_ms() >= c->deadline;
        bool reached = c->status != 0;
        bool retryable_status =
            c->status >= 500 || c->status == 408 || c->status == 429 || !reached;
        if (reached && !ok_status(c->status) && !(c->cfg.reconnect && retryable_status)) {
            http_error(c);
            return HSC_CLIENT_HTTP;
        }
        if (c->status == 204 && c->cfg.sse)
            return HSC_CLIENT_OK; /* the server asks EventSource clients to stop */
        if (timed_out)
            return HSC_CLIENT_TIMEOUT;
        if (rc != CURLE_OK && c->error[0] == '\0')
            curl_failure(c, rc);
        if (!c->cfg.reconnect) {
            if (rc == CURLE_OK)
                return HSC_CLIENT_OK;
            return reached ? HSC_CLIENT_CUT : HSC_CLIENT_CONNECT;
        }
        /* Reconnect: promptly after a stream that worked, backing off while the server is down. */
        uint64_t delay;
        if (ok_status(c->status) && c->headers_done) {
            backoff = 0;
            delay = add_sat(c->retry_ms, draw_upto(c, c->retry_ms / 2));
            notice(c, "disconnected (%s); reconnecting in %.1f s",
                   rc == CURLE_OK ? "the server ended the stream" : c->error,
                   (double)delay / 1000.0);
        } else {
            backoff = backoff == 0 ? c->retry_ms : add_sat(backoff, backoff);
            if (backoff > c->cfg.max_backoff_ms)
                backoff = c->cfg.max_backoff_ms;
            /* Equal jitter: uniform in [backoff / 2, backoff]. */
            delay = c->retry_after_ms > backoff ? c->retry_after_ms
                                                : backoff / 2 + draw_upto(c, backoff - backoff / 2);
            if (reached)
                http_error(c);
            notice(c, "cannot subscribe (%s); retrying in %.1f s", c->error,
                   (double)delay / 1000.0);
        }
        if (!pause_for(c, delay))
            return c->stopping ? HSC_CLIENT_STOPPED : HSC_CLIENT_TIMEOUT;
    }
}
