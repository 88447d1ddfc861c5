/*
 * Setting one of hscd's flags by name (hscd_flags_apply and its variants): the value is checked
 * against its entry's kind and range (flags.c's table), then stored in its field of
 * hsc_server_config_t or handed to the entry's handler, below, for the few flags that are not one
 * field (they combine, or read a file or a variable).
 *
 * A value is checked completely before anything is stored, so a refused flag leaves the
 * configuration as it was. Messages name the flag as the user spelled it and the fix; a value
 * from the environment is not repeated (it may be a secret).
 */
#include "flags_int.h"

#include "hsc/codec.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* ---- setting a flag ----------------------------------------------------------------------- */

void hscd_flags_init(hscd_flags_t *fl)
{
    memset(fl, 0, sizeof *fl);
    hsc_server_config_init(&fl->cfg);
    fl->cfg.data_dir = HSCD_DATA_DIR_DEFAULT; /* hscd is durable by default; the library not */
    fl->log_level = HSC_LOG_NOTICE;
}

void hscd_flags_dispose(hscd_flags_t *fl)
{
    for (size_t i = 0; i < HSCD_FLAGS_MAX; i++)
        free(fl->copies[i]);
    memset(fl, 0, sizeof *fl);
}

/* A string the configuration keeps: aborts when out of memory (a few bytes at start-up). */
static char *copy_or_abort(const char *s)
{
    char *c = strdup(s);
    if (c == NULL)
        abort();
    return c;
}

int hscd_flags_bad_value(const char *flag, const char *value, const char *fix)
{
    if (flag[0] == '$') /* from the environment: perhaps a secret, so not repeated */
        fprintf(hscd_flags_err(), "hscd: %s: invalid value (%s)\n", flag, fix);
    else
        fprintf(hscd_flags_err(), "hscd: %s: invalid value '%s' (%s)\n", flag, value, fix);
    return HSC_EINVAL;
}

/* A decimal number, digits only (no sign, no spaces), as the flags always took it. */
static int parse_number(const char *s, uint64_t *out)
{
    if (s[0] < '0' || s[0] > '9')
        return -1;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (*end != '\0' || errno == ERANGE)
        return -1;
    *out = v;
    return 0;
}

/* A static token: printable ASCII without spaces, as it travels in a header. */
static bool token_ok(const char *t)
{
    size_t n = strlen(t);
    if (n == 0 || n > 4096)
        return false;
    for (size_t i = 0; i < n; i++)
        if (t[i] <= 0x20 || t[i] >= 0x7f)
            return false;
    return true;
}

/* Checks `value` against the entry's kind and range; *n gets the number (1 for a switch). */
static bool value_ok(const hscd_flag_t *f, const char *value, uint64_t *n)
{
    uint64_t max = f->max != 0 ? f->max : UINT64_MAX;
    hsc_log_level_t level;
    *n = 0;
    switch (f->arg) {
    case HSCD_ARG_NONE:
        *n = 1;
        return true;
    case HSCD_ARG_STRING: {
        size_t len = strlen(value);
        return len >= f->min && len <= max;
    }
    case HSCD_ARG_TOKEN:
        return token_ok(value);
    case HSCD_ARG_UNSIGNED:
        if (parse_number(value, n) != 0)
            return false;
        break;
    case HSCD_ARG_SIZE:
        if (hsc_parse_size(value, n) != 0)
            return false;
        break;
    case HSCD_ARG_DURATION:
        if (hsc_parse_duration(value, n) != 0)
            return false;
        break;
    case HSCD_ARG_LOG_LEVEL:
        if (hsc_log_level_parse(value, &level) != 0)
            return false;
        *n = (uint64_t)level;
        return true;
    }
    return *n >= f->min && *n <= max;
}

/* The field's typed setter: numbers by the field's width, strings copied. */
static void store_field(hscd_flags_t *fl, const hscd_flag_t *f, const char *value, uint64_t n)
{
    char *field = (char *)&fl->cfg + f->offset;
    if (f->arg == HSCD_ARG_STRING || f->arg == HSCD_ARG_TOKEN) {
        size_t i = hscd_flags_index(f);
        free(fl->copies[i]);
        fl->copies[i] = copy_or_abort(value);
        const char *s = fl->copies[i];
        memcpy(field, &s, sizeof s);
    } else if (f->size == sizeof(uint32_t)) {
        uint32_t v = (uint32_t)n;
        memcpy(field, &v, sizeof v);
    } else if (f->size == sizeof(uint64_t)) {
        memcpy(field, &n, sizeof n);
    } else {
        abort(); /* a table entry the unit test refuses */
    }
}

/* Applies one entry; `flag` names it in messages ("--server_port", "$HSC_STREAM_TOKEN"). */
int hscd_flags_apply_entry(hscd_flags_t *fl, const hscd_flag_t *f, const char *flag,
                           const char *value)
{
    uint64_t n;
    if (!value_ok(f, value, &n))
        return hscd_flags_bad_value(flag, value, f->fix);
    if (f->handler != NULL)
        return f->handler(fl, f, flag, value, n);
    store_field(fl, f, value, n);
    return 0;
}

int hscd_flags_apply(hscd_flags_t *fl, const char *name, const char *value)
{
    char flag[80];
    snprintf(flag, sizeof flag, "--%s", name);
    return hscd_flags_apply_as(fl, name, value, flag);
}

void hscd_flags_clear_switch(hscd_flags_t *fl, const hscd_flag_t *f)
{
    if (f->arg == HSCD_ARG_NONE && f->handler == NULL)
        store_field(fl, f, NULL, 0);
}

int hscd_flags_apply_as(hscd_flags_t *fl, const char *name, const char *value, const char *flag)
{
    const hscd_flag_t *f = hscd_flags_find(name);
    if (f == NULL) {
        fprintf(hscd_flags_err(), "hscd: unknown option '%s'\nTry 'hscd --help'.\n", flag);
        return HSC_EINVAL;
    }
    if (f->arg == HSCD_ARG_NONE && value != NULL) {
        fprintf(hscd_flags_err(), "hscd: %s takes no value\nTry 'hscd --help'.\n", flag);
        return HSC_EINVAL;
    }
    if (f->arg != HSCD_ARG_NONE && value == NULL) {
        fprintf(hscd_flags_err(), "hscd: %s needs a value\nTry 'hscd --help'.\n", flag);
        return HSC_EINVAL;
    }
    return hscd_flags_apply_entry(fl, f, flag, value);
}

/* ---- the handlers ------------------------------------------------------------------------- */

int hscd_flag_set_server_ip(hscd_flags_t *fl, const hscd_flag_t *f, const char *flag,
                            const char *value, uint64_t n)
{
    (void)f, (void)n;
    snprintf(fl->ip, sizeof fl->ip, "%s", value);
    snprintf(fl->ip_flag, sizeof fl->ip_flag, "%s", flag);
    return 0;
}

int hscd_flag_set_server_port(hscd_flags_t *fl, const hscd_flag_t *f, const char *flag,
                              const char *value, uint64_t n)
{
    (void)f, (void)flag, (void)value;
    snprintf(fl->port, sizeof fl->port, "%u", (unsigned)n);
    return 0;
}

/* The log level is the process's, not the server's: main() applies it (hsc_log_set_level). */
int hscd_flag_set_log_level(hscd_flags_t *fl, const hscd_flag_t *f, const char *flag,
                            const char *value, uint64_t n)
{
    (void)f, (void)flag, (void)value;
    fl->log_level = (hsc_log_level_t)n;
    return 0;
}

/* --data-dir DIR, or none for memory only. */
int hscd_flag_set_data_dir(hscd_flags_t *fl, const hscd_flag_t *f, const char *flag,
                           const char *value, uint64_t n)
{
    (void)flag, (void)n;
    if (strcmp(value, "none") == 0) {
        fl->cfg.data_dir = NULL;
        return 0;
    }
    size_t i = hscd_flags_index(f);
    free(fl->copies[i]);
    fl->copies[i] = copy_or_abort(value);
    fl->cfg.data_dir = fl->copies[i];
    return 0;
}

int hscd_flag_set_fsync(hscd_flags_t *fl, const hscd_flag_t *f, const char *flag, const char *value,
                        uint64_t n)
{
    (void)n;
    if (strcmp(value, "always") == 0)
        fl->cfg.fsync_mode = HSC_FSYNC_ALWAYS;
    else if (strcmp(value, "batch") == 0)
        fl->cfg.fsync_mode = HSC_FSYNC_BATCH;
    else if (strcmp(value, "off") == 0)
        fl->cfg.fsync_mode = HSC_FSYNC_OFF;
    else
        return hscd_flags_bad_value(flag, value, f->fix);
    return 0;
}

/* The log format is the process's too: main() applies it (hsc_log_set_format). */
int hscd_flag_set_log_format(hscd_flags_t *fl, const hscd_flag_t *f, const char *flag,
                             const char *value, uint64_t n)
{
    (void)n;
    hsc_log_format_t format;
    if (hsc_log_format_parse(value, &format) != 0)
        return hscd_flags_bad_value(flag, value, f->fix);
    fl->log_format = format;
    return 0;
}

/*
 * --redis is checked here, so that a bad URL is refused with its reason before anything starts
 * (never echoed: it may hold a password); --redis-password-env names a variable that must be set.
 */
int hscd_flag_set_redis(hscd_flags_t *fl, const hscd_flag_t *f, const char *flag, const char *value,
                        uint64_t n)
{
    (void)n;
    if (strcmp(f->name, "redis") == 0) {
        const char *why = "";
        if (hsc_redis_url_check(value, &why) != 0) {
            fprintf(stderr, "hscd: %s: %s (use %s)\n", flag, why, f->fix);
            return HSC_EINVAL;
        }
        size_t i = hscd_flags_index(f);
        free(fl->copies[i]);
        fl->copies[i] = copy_or_abort(value);
        fl->cfg.redis = fl->copies[i];
        return 0;
    }
    const char *pw = *value ? getenv(value) : NULL;
    if (pw == NULL || *pw == '\0') {
        fprintf(stderr, "hscd: %s: the environment variable '%s' is not set or empty\n", flag,
                value);
        return HSC_EINVAL;
    }
    size_t i = hscd_flags_index(f);
    free(fl->copies[i]);
    fl->copies[i] = copy_or_abort(value);
    fl->cfg.redis_password_env = fl->copies[i];
    return 0;
}

/* Each --cors-origin adds to the list; at most 4 KiB in all. */
int hscd_flag_add_cors_origin(hscd_flags_t *fl, const hscd_flag_t *f, const char *flag,
                              const char *value, uint64_t n)
{
    (void)n;
    if (strpbrk(value, "\r\n") != NULL)
        return hscd_flags_bad_value(flag, value, f->fix);
    if (fl->cors_source != fl->source) { /* the command line's list replaces the file's */
        fl->cors[0] = '\0';
        fl->cors_source = fl->source;
    }
    size_t used = strlen(fl->cors);
    if (used + (used > 0) + strlen(value) >= sizeof fl->cors)
        return hscd_flags_bad_value(flag, value, "at most 4 KiB of origins in all");
    if (used > 0)
        fl->cors[used++] = ',';
    memcpy(fl->cors + used, value, strlen(value) + 1);
    fl->cfg.cors_origin = fl->cors;
    return 0;
}

/*
 * Reads the JWT key from a file (--jwt-key-file) or an environment variable (--jwt-key-env),
 * never from a flag's value, which any user sees in ps. A file's final line end is dropped. At
 * least 32 bytes (RFC 7518: a key as long as the hash), at most 4 KiB.
 */
int hscd_flag_read_jwt_key(hscd_flags_t *fl, const hscd_flag_t *f, const char *flag,
                           const char *where, uint64_t n_unused)
{
    (void)n_unused;
    bool from_file = strcmp(f->name, "jwt-key-file") == 0;
    char *key = fl->jwt_key;
    size_t n = 0;
    if (from_file) {
        FILE *fp = fopen(where, "rb");
        if (fp == NULL) {
            fprintf(hscd_flags_err(), "hscd: %s: cannot read '%s': %s\n", flag, where,
                    strerror(errno));
            return HSC_EINVAL;
        }
        n = fread(key, 1, sizeof fl->jwt_key, fp);
        fclose(fp);
        while (n > 0 && (key[n - 1] == '\n' || key[n - 1] == '\r'))
            n--;
    } else {
        const char *v = getenv(where);
        if (v == NULL) {
            fprintf(hscd_flags_err(), "hscd: %s: environment variable '%s' is not set\n", flag,
                    where);
            return HSC_EINVAL;
        }
        n = strlen(v);
        memcpy(key, v, n < sizeof fl->jwt_key ? n : sizeof fl->jwt_key);
        if (strlen(where) >= sizeof fl->jwt_key_env) {
            fprintf(hscd_flags_err(), "hscd: %s: the variable's name is too long\n", flag);
            return HSC_EINVAL;
        }
    }
    if (n < 32 || n >= sizeof fl->jwt_key) {
        fprintf(hscd_flags_err(), "hscd: %s: the key must be 32 to 4096 bytes (it is %s%zu)\n",
                flag, n >= sizeof fl->jwt_key ? "over " : "", n);
        return HSC_EINVAL;
    }
    fl->cfg.jwt_key = key;
    fl->cfg.jwt_key_len = n;
    /* Responders must not see the variable (docs/responders.md); a key from a file is kept from
     * them too, by its value. */
    if (!from_file)
        memcpy(fl->jwt_key_env, where, strlen(where) + 1);
    fl->cfg.jwt_key_env = from_file ? NULL : fl->jwt_key_env;
    return 0;
}

int hscd_flag_show_help(hscd_flags_t *fl, const hscd_flag_t *f, const char *flag, const char *value,
                        uint64_t n)
{
    (void)fl, (void)f, (void)flag, (void)value, (void)n;
    hscd_flags_print_help(stdout);
    return HSCD_FLAGS_DONE;
}

int hscd_flag_show_version(hscd_flags_t *fl, const hscd_flag_t *f, const char *flag,
                           const char *value, uint64_t n)
{
    (void)fl, (void)f, (void)flag, (void)value, (void)n;
    printf("hscd %s\n", HSC_VERSION_STRING);
    return HSCD_FLAGS_DONE;
}

int hscd_flag_show_markdown(hscd_flags_t *fl, const hscd_flag_t *f, const char *flag,
                            const char *value, uint64_t n)
{
    (void)fl, (void)f, (void)flag, (void)value, (void)n;
    hscd_flags_print_markdown(stdout);
    return HSCD_FLAGS_DONE;
}

int hscd_flag_set_config(hscd_flags_t *fl, const hscd_flag_t *f, const char *flag,
                         const char *value, uint64_t n)
{
    (void)f, (void)flag, (void)n;
    snprintf(fl->config, sizeof fl->config, "%s", value);
    return 0;
}

int hscd_flag_set_check(hscd_flags_t *fl, const hscd_flag_t *f, const char *flag, const char *value,
                        uint64_t n)
{
    (void)f, (void)flag, (void)value, (void)n;
    fl->check = 1;
    return 0;
}

int hscd_flag_no_http2(hscd_flags_t *fl, const hscd_flag_t *f, const char *flag, const char *value,
                       uint64_t n)
{
    (void)f, (void)flag, (void)value, (void)n;
    fl->cfg.http2 = 0;
    return 0;
}
