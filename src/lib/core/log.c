/*
 * Logging to stderr: one line per call, "2026-11-22T05:31:00.123Z notice: message". Each line is
 * formatted into a local buffer and written with one write(2), so lines from worker threads never
 * interleave mid-line. The level is process-wide and read with a relaxed atomic load, so a
 * disabled level costs one comparison.
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

static const char *const level_names[] = {"error", "warn", "notice", "info", "debug"};

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

static void vlog(hsc_log_level_t level, const char *fmt, va_list ap)
{
    char line[1024];
    struct timeval tv;
    struct tm tm;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    size_t n = strftime(line, sizeof line, "%Y-%m-%dT%H:%M:%S", &tm);
    n += (size_t)snprintf(line + n, sizeof line - n, ".%03ldZ %s: ", (long)(tv.tv_usec / 1000),
                          level_names[level]);
    int m = vsnprintf(line + n, sizeof line - n, fmt, ap);
    if (m < 0)
        m = 0;
    n += (size_t)m;
    if (n > sizeof line - 2)
        n = sizeof line - 2;
    line[n++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, n);
    (void)w;
}
