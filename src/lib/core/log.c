/*
 * Logging to stderr: one line per call, "2026-11-22T05:31:00.123Z notice: message", or with
 * hsc_log_set_format(HSC_LOG_FORMAT_JSON) one JSON object per line:
 * {"time":"2026-11-22T05:31:00.123Z","level":"notice","message":"..."}. Each line is formatted
 * into a local buffer and written with one write(2), so lines from worker threads never
 * interleave mid-line. The level and the format are process-wide and read with a relaxed atomic
 * load, so a disabled level costs one comparison.
 *
 * JSON strings escape '"', '\\', control characters and every byte from 0x80 as \u00XX, so a
 * line is valid JSON (and ASCII) whatever bytes a client put in a path.
 */
#include "core/core.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

atomic_int hsc_log_level_v = HSC_LOG_NOTICE;
static atomic_int log_format = HSC_LOG_FORMAT_TEXT;

enum { LINE_MAX_BYTES = 2048 };

static const char *const level_names[] = {"error", "warn", "notice", "info", "debug"};

void hsc_log_set_format(hsc_log_format_t format)
{
    atomic_store(&log_format, (int)format);
}

int hsc_log_format_parse(const char *s, hsc_log_format_t *out)
{
    if (strcasecmp(s, "text") == 0)
        *out = HSC_LOG_FORMAT_TEXT;
    else if (strcasecmp(s, "json") == 0)
        *out = HSC_LOG_FORMAT_JSON;
    else
        return HSC_EINVAL;
    return 0;
}

void hsc_log_set_level(hsc_log_level_t level)
{
    atomic_store(&hsc_log_level_v, (int)level);
}

int hsc_log_level_parse(const char *s, hsc_log_level_t *out)
{
    for (int i = 0; i < (int)(sizeof level_names / sizeof level_names[0]); i++) {
        if (strcasecmp(s, level_names[i]) == 0) {
            *out = (hsc_log_level_t)i;
            return 0;
        }
    }
    if (strcasecmp(s, "warning") == 0) {
        *out = HSC_LOG_WARN;
        return 0;
    }
    return HSC_EINVAL;
}

static void vlog(hsc_log_level_t level, const char *fmt, va_list ap);

void hsc_log(hsc_log_level_t level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vlog(level, fmt, ap);
    va_end(ap);
}

void hsc_log_printf(hsc_log_level_t level, const char *fmt, ...)
{
    if ((int)level > atomic_load_explicit(&hsc_log_level_v, memory_order_relaxed))
        return;
    va_list ap;
    va_start(ap, fmt);
    vlog(level, fmt, ap);
    va_end(ap);
}

/* Appends `s` as a JSON string (quotes included) at line[*n], never past cap - 2. */
static void json_string(char *line, size_t *n, size_t cap, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    size_t i = *n;
    if (i < cap)
        line[i++] = '"';
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
        if (i + 7 >= cap) /* room for one escape and the closing quote */
            break;
        if (*p == '"' || *p == '\\') {
            line[i++] = '\\';
            line[i++] = (char)*p;
        } else if (*p < 0x20 || *p >= 0x7f) {
            memcpy(line + i, "\\u00", 4);
            line[i + 4] = hex[*p >> 4];
            line[i + 5] = hex[*p & 15];
            i += 6;
        } else {
            line[i++] = (char)*p;
        }
    }
    if (i < cap)
        line[i++] = '"';
    *n = i;
}

/* "2026-11-22T05:31:00.123Z" into out (at least 32 bytes). */
static void timestamp(char *out, size_t cap)
{
    struct timeval tv;
    struct tm tm;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    size_t n = strftime(out, cap, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, cap - n, ".%03ldZ", (long)(tv.tv_usec / 1000));
}

static void write_line(char *line, size_t n)
{
    if (n > LINE_MAX_BYTES - 2)
        n = LINE_MAX_BYTES - 2;
    line[n++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, n);
    (void)w;
}

static size_t append(char *line, size_t n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static size_t append(char *line, size_t n, const char *fmt, ...)
{
    if (n >= LINE_MAX_BYTES - 2)
        return n;
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, LINE_MAX_BYTES - 2 - n, fmt, ap);
    va_end(ap);
    if (m < 0)
        return n;
    n += (size_t)m;
    return n < LINE_MAX_BYTES - 2 ? n : LINE_MAX_BYTES - 2;
}

static void vlog(hsc_log_level_t level, const char *fmt, va_list ap)
{
    char ts[40], message[LINE_MAX_BYTES], line[LINE_MAX_BYTES];
    timestamp(ts, sizeof ts);
    int m = vsnprintf(message, sizeof message, fmt, ap);
    if (m < 0)
        message[0] = '\0';
    size_t n = 0;
    if (atomic_load_explicit(&log_format, memory_order_relaxed) == HSC_LOG_FORMAT_JSON) {
        n = append(line, n, "{\"time\":\"%s\",\"level\":\"%s\",\"message\":", ts,
                   level_names[level]);
        json_string(line, &n, LINE_MAX_BYTES - 3, message);
        n = append(line, n, "}");
    } else {
        n = append(line, n, "%s %s: %s", ts, level_names[level], message);
    }
    write_line(line, n);
}

void hsc_log_access(const hsc_access_t *a)
{
    char ts[40], line[LINE_MAX_BYTES];
    timestamp(ts, sizeof ts);
    size_t n = 0;
    if (atomic_load_explicit(&log_format, memory_order_relaxed) == HSC_LOG_FORMAT_JSON) {
        n = append(line, n,
                   "{\"time\":\"%s\",\"level\":\"info\",\"message\":\"access\","
                   "\"request_id\":%llu,\"peer\":",
                   ts, (unsigned long long)a->id);
        json_string(line, &n, LINE_MAX_BYTES - 200, a->peer);
        n = append(line, n, ",\"method\":");
        json_string(line, &n, LINE_MAX_BYTES - 180, a->method);
        n = append(line, n, ",\"path\":");
        json_string(line, &n, LINE_MAX_BYTES - 160, a->path);
        n = append(line, n, ",\"status\":%d,\"bytes\":%llu,\"duration_ms\":%.3f,\"complete\":%s}",
                   a->status, (unsigned long long)a->bytes, a->duration_ms,
                   a->complete ? "true" : "false");
    } else {
        n = append(line, n, "%s access: %llu %s %s %s %d %llu bytes %.3f ms%s", ts,
                   (unsigned long long)a->id, a->peer, a->method, a->path, a->status,
                   (unsigned long long)a->bytes, a->duration_ms, a->complete ? "" : " (cut short)");
    }
    write_line(line, n);
}
