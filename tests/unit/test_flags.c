/*
 * Unit tests for src/hscd/flags.c: the table of hscd's flags is well formed (unique spellings,
 * every field entry's storage and range fit), the defaults --help and docs/hscd.md show are the
 * ones hsc_server_config_init() sets, and hscd_flags_apply() (what a configuration file reader
 * calls) sets exactly its field by any spelling, copies strings, and leaves the configuration
 * untouched when it refuses a value. Refused values print their message on stderr, as in hscd.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "flags.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *field_ptr(const hsc_server_config_t *cfg, const hscd_flag_t *f)
{
    return (const char *)cfg + f->offset;
}

static const char *string_field(const hsc_server_config_t *cfg, const hscd_flag_t *f)
{
    const char *s;
    memcpy(&s, field_ptr(cfg, f), sizeof s);
    return s;
}

static int field_is_zero(const hsc_server_config_t *cfg, const hscd_flag_t *f)
{
    for (size_t i = 0; i < f->size; i++)
        if (field_ptr(cfg, f)[i] != 0)
            return 0;
    return 1;
}

static void test_spellings_are_unique(void **state)
{
    (void)state;
    size_t n;
    const hscd_flag_t *t = hscd_flags_table(&n);
    assert_true(n >= 35 && n <= HSCD_FLAGS_MAX);
    for (size_t i = 0; i < n; i++) {
        const char *sp[4] = {t[i].name, t[i].aliases[0], t[i].aliases[1], t[i].aliases[2]};
        for (size_t a = 0; a < 4 && sp[a] != NULL; a++) {
            assert_true(sp[a][0] != '\0' && sp[a][0] != '-');
            /* hscd_flags_find() returns the first match: this entry, or a duplicate */
            if (hscd_flags_find(sp[a]) != &t[i])
                fail_msg("'%s' spells two flags", sp[a]);
        }
    }
}

static void test_entries_are_complete(void **state)
{
    (void)state;
    size_t n;
    const hscd_flag_t *t = hscd_flags_table(&n);
    for (size_t i = 0; i < n; i++) {
        const hscd_flag_t *f = &t[i];
        if (f->aliases[2] != NULL)
            fail_msg("--%s: at most two aliases (the list ends with NULL)", f->name);
        if (f->help == NULL || f->help[0] == '\0')
            fail_msg("--%s has no help text", f->name);
        if ((f->arg == HSCD_ARG_NONE) != (f->metavar == NULL))
            fail_msg("--%s: a metavar for exactly the flags that take a value", f->name);
        if (f->arg != HSCD_ARG_NONE && f->fix == NULL)
            fail_msg("--%s: a value can be refused, so it needs a fix to show", f->name);
        if (f->handler != NULL)
            continue;
        /* a field: within hsc_server_config_t, and storable by store_field() */
        if (f->offset + f->size > sizeof(hsc_server_config_t) || f->size == 0)
            fail_msg("--%s: no field", f->name);
        uint64_t max = f->max != 0 ? f->max : UINT64_MAX;
        switch (f->arg) {
        case HSCD_ARG_STRING:
        case HSCD_ARG_TOKEN:
            assert_int_equal(f->size, sizeof(const char *));
            break;
        case HSCD_ARG_NONE:
        case HSCD_ARG_LOG_LEVEL:
            assert_int_equal(f->size, 4);
            break;
        case HSCD_ARG_UNSIGNED:
        case HSCD_ARG_SIZE:
        case HSCD_ARG_DURATION:
            if (f->size != 4 && f->size != 8)
                fail_msg("--%s: a %zu-byte field", f->name, f->size);
            if (f->size == 4 && max > UINT32_MAX)
                fail_msg("--%s: max %llu does not fit its 4-byte field", f->name,
                         (unsigned long long)max);
            break;
        }
    }
}

/* A default that is a word, not a value: the field is zero (0, NULL) by default. */
static int descriptive(const char *d)
{
    return strcmp(d, "cores") == 0 || strcmp(d, "off") == 0 || strcmp(d, "none") == 0;
}

static void test_shown_defaults_are_the_real_ones(void **state)
{
    (void)state;
    size_t n, checked = 0;
    const hscd_flag_t *t = hscd_flags_table(&n);
    hsc_server_config_t init;
    hsc_server_config_init(&init);
    for (size_t i = 0; i < n; i++) {
        const hscd_flag_t *f = &t[i];
        if (f->handler != NULL || f->default_shown == NULL)
            continue;
        if (descriptive(f->default_shown)) {
            if (!field_is_zero(&init, f))
                fail_msg("--%s shows '%s' but is set by default", f->name, f->default_shown);
            checked++;
            continue;
        }
        hscd_flags_t fl;
        hscd_flags_init(&fl);
        if (hscd_flags_apply(&fl, f->name, f->default_shown) != 0)
            fail_msg("--%s: its default '%s' is refused", f->name, f->default_shown);
        if (f->arg == HSCD_ARG_STRING || f->arg == HSCD_ARG_TOKEN)
            assert_string_equal(string_field(&fl.cfg, f), string_field(&init, f));
        else if (memcmp(field_ptr(&fl.cfg, f), field_ptr(&init, f), f->size) != 0)
            fail_msg("--%s shows '%s', which is not hsc_server_config_init()'s", f->name,
                     f->default_shown);
        hscd_flags_dispose(&fl);
        checked++;
    }
    assert_true(checked >= 24);
    /* --log-level is the process's (hsc_log_set_level), not a field of the configuration. */
    hscd_flags_t fl;
    hscd_flags_init(&fl);
    hsc_log_level_t shown;
    for (size_t i = 0; i < n; i++)
        if (strcmp(t[i].name, "log-level") == 0)
            assert_int_equal(hsc_log_level_parse(t[i].default_shown, &shown), 0);
    assert_int_equal(fl.log_level, shown);
    hscd_flags_dispose(&fl);
}

static void test_apply_by_any_spelling(void **state)
{
    (void)state;
    hscd_flags_t fl;
    hscd_flags_init(&fl);
    assert_int_equal(hscd_flags_apply(&fl, "max_gen_len", "7"), 0);
    assert_int_equal(fl.cfg.max_gen_len, 7);
    assert_int_equal(hscd_flags_apply(&fl, "max-gen-len", "8"), 0);
    assert_int_equal(fl.cfg.max_gen_len, 8);
    assert_int_equal(hscd_flags_apply(&fl, "legacy-get", NULL), 0);
    assert_int_equal(fl.cfg.legacy_get, 1);
    assert_int_equal(hscd_flags_apply(&fl, "log-level", "debug"), 0);
    assert_int_equal(fl.log_level, HSC_LOG_DEBUG);
    assert_int_equal(hscd_flags_apply(&fl, "history", "5"), 0);
    assert_int_equal(fl.cfg.history, 5);
    assert_int_equal(hscd_flags_apply(&fl, "max-body-bytes", "2m"), 0);
    assert_int_equal(fl.cfg.max_body_bytes, 2 * 1024 * 1024);
    assert_int_equal(hscd_flags_apply(&fl, "idle-timeout", "1m"), 0);
    assert_int_equal(fl.cfg.idle_timeout_ms, 60000);
    assert_int_equal(hscd_flags_apply(&fl, "threads", "1"), 0);
    assert_int_equal(hscd_flags_apply(&fl, "threads", "256"), 0);
    assert_int_equal(fl.cfg.threads, 256);
    hscd_flags_dispose(&fl);
}

static void test_refused_values_change_nothing(void **state)
{
    (void)state;
    static const char *const bad[][2] = {
        {"threads", "0"},
        {"threads", "257"},
        {"threads", "+3"},
        {"threads", " 3"},
        {"threads", NULL},
        {"max-header-bytes", "255"},
        {"interval", "x"},
        {"header-timeout", "0"},
        {"legacy-get", "1"},
        {"no-such-flag", "1"},
        {"log-level", "loud"},
        {"publish-token", "a b"},
        {"exec", ""},
        {"cors-origin", "a\r\nb"},
        {"server_port", "65536"},
        {"max-queue-bytes", "5g"},
        {"threads", "99999999999999999999999"},
    };
    hscd_flags_t fl;
    hscd_flags_init(&fl);
    hsc_server_config_t before = fl.cfg;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (hscd_flags_apply(&fl, bad[i][0], bad[i][1]) != HSC_EINVAL)
            fail_msg("--%s '%s' was accepted", bad[i][0], bad[i][1] ? bad[i][1] : "(none)");
        assert_memory_equal(&fl.cfg, &before, sizeof before);
    }
    assert_string_equal(fl.port, "");
    hscd_flags_dispose(&fl);
}

static void test_strings_are_copied(void **state)
{
    (void)state;
    hscd_flags_t fl;
    hscd_flags_init(&fl);
    char line[] = "python3 responder.py";
    assert_int_equal(hscd_flags_apply(&fl, "exec", line), 0);
    line[0] = 'X'; /* a configuration file reader reuses its line buffer */
    assert_string_equal(fl.cfg.exec, "python3 responder.py");
    assert_int_equal(hscd_flags_apply(&fl, "exec", "./other"), 0); /* the first copy is freed */
    assert_string_equal(fl.cfg.exec, "./other");
    char tok[] = "s3cret";
    assert_int_equal(hscd_flags_apply(&fl, "stream-token", tok), 0);
    tok[0] = 'X';
    assert_string_equal(fl.cfg.stream_token, "s3cret");
    hscd_flags_dispose(&fl);
}

static void test_server_ip_and_port_replace_halves_of_listen(void **state)
{
    (void)state;
    hscd_flags_t fl;
    hscd_flags_init(&fl);
    assert_int_equal(hscd_flags_apply(&fl, "server_port", "9001"), 0);
    assert_int_equal(hscd_flags_finish(&fl), 0);
    assert_string_equal(fl.cfg.listen, "127.0.0.1:9001");
    hscd_flags_dispose(&fl);

    hscd_flags_init(&fl);
    assert_int_equal(hscd_flags_apply(&fl, "listen", "0.0.0.0:7000"), 0);
    assert_int_equal(hscd_flags_apply(&fl, "server-ip", "::1"), 0);
    assert_int_equal(hscd_flags_finish(&fl), 0);
    assert_string_equal(fl.cfg.listen, "[::1]:7000");
    hscd_flags_dispose(&fl);
}

static void test_cors_origins_add_up(void **state)
{
    (void)state;
    hscd_flags_t fl;
    hscd_flags_init(&fl);
    assert_null(fl.cfg.cors_origin);
    assert_int_equal(hscd_flags_apply(&fl, "cors-origin", "https://a.example"), 0);
    assert_int_equal(hscd_flags_apply(&fl, "cors-origin", "https://b.example,http://c"), 0);
    assert_string_equal(fl.cfg.cors_origin, "https://a.example,https://b.example,http://c");
    char big[4060]; /* with what is there, over the 4 KiB of --cors-origin */
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    assert_int_equal(hscd_flags_apply(&fl, "cors-origin", big), HSC_EINVAL);
    assert_string_equal(fl.cfg.cors_origin, "https://a.example,https://b.example,http://c");
    hscd_flags_dispose(&fl);
}

static void test_pool_needs_exec(void **state)
{
    (void)state;
    hscd_flags_t fl;
    hscd_flags_init(&fl);
    assert_int_equal(hscd_flags_apply(&fl, "pool", "2"), 0);
    assert_int_equal(hscd_flags_finish(&fl), HSC_EINVAL);
    assert_int_equal(hscd_flags_apply(&fl, "exec", "./worker"), 0);
    assert_int_equal(hscd_flags_finish(&fl), 0);
    hscd_flags_dispose(&fl);
}

static void test_environment(void **state)
{
    (void)state;
    hscd_flags_t fl;
    hscd_flags_init(&fl);
    setenv("HSC_SUBSCRIBE_TOKEN", "from-env", 1);
    setenv("HSC_STREAM_TOKEN", "", 1); /* empty: unset */
    assert_int_equal(hscd_flags_apply_env(&fl), 0);
    assert_string_equal(fl.cfg.subscribe_token, "from-env");
    assert_null(fl.cfg.stream_token);
    setenv("HSC_PUBLISH_TOKEN", "has space", 1);
    assert_int_equal(hscd_flags_apply_env(&fl), HSC_EINVAL);
    unsetenv("HSC_PUBLISH_TOKEN");
    unsetenv("HSC_SUBSCRIBE_TOKEN");
    unsetenv("HSC_STREAM_TOKEN");
    hscd_flags_dispose(&fl);
}

static void test_argv_twice(void **state)
{
    (void)state;
    char *ok[] = {"hscd",          "--max-gen",       "4", "--legacy-get",
                  "--interval=1s", "--server_port=0", NULL};
    hscd_flags_t fl;
    hscd_flags_init(&fl);
    assert_int_equal(hscd_flags_parse_argv(&fl, 6, ok), 0);
    assert_int_equal(fl.cfg.max_gen_len, 4);
    assert_int_equal(fl.cfg.legacy_get, 1);
    assert_int_equal(fl.cfg.interval_ms, 1000);
    assert_string_equal(fl.port, "0");
    hscd_flags_dispose(&fl);

    /* a second parse starts afresh (getopt's state is reset) */
    char *stray[] = {"hscd", "--threads", "2", "stray", NULL};
    hscd_flags_init(&fl);
    assert_int_equal(hscd_flags_parse_argv(&fl, 4, stray), HSC_EINVAL);
    assert_int_equal(fl.cfg.threads, 2);
    hscd_flags_dispose(&fl);
}

/* ---- the configuration file (conffile.c) --------------------------------------------------- */

/* Writes `text` to a new temporary file; its path goes to `path` (at least 32 bytes). */
static void write_file(char *path, const char *text)
{
    strcpy(path, "/tmp/hsc-conf-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *fp = fdopen(fd, "w");
    assert_non_null(fp);
    fputs(text, fp);
    fclose(fp);
}

/* A value the entry accepts, by its kind and range. */
static const char *good_value(const hscd_flag_t *f, char *buf, size_t cap)
{
    unsigned long long n = f->min > 0 ? (unsigned long long)f->min : 1;
    switch (f->arg) {
    case HSCD_ARG_NONE:
        return "on";
    case HSCD_ARG_STRING:
        return strcmp(f->name, "listen") == 0 ? "127.0.0.1:1" : "some text";
    case HSCD_ARG_TOKEN:
        return "tok";
    case HSCD_ARG_LOG_LEVEL:
        return "debug";
    case HSCD_ARG_DURATION:
        snprintf(buf, cap, "%llums", n);
        return buf;
    case HSCD_ARG_UNSIGNED:
    case HSCD_ARG_SIZE:
        snprintf(buf, cap, "%llu", n);
        return buf;
    }
    return NULL;
}

/* Every setting of the table can be written in a file, and sets what the flag sets. */
static void test_file_sets_what_flags_set(void **state)
{
    (void)state;
    size_t n;
    const hscd_flag_t *t = hscd_flags_table(&n);
    for (size_t i = 0; i < n; i++) {
        const hscd_flag_t *f = &t[i];
        if (f->cli_only || f->handler != NULL)
            continue;
        char buf[64], line[200], path[32];
        const char *v = good_value(f, buf, sizeof buf);
        snprintf(line, sizeof line, "# %s\n  %s   %s  \n", f->name, f->name, v);
        write_file(path, line);
        hscd_flags_t a, b;
        hscd_flags_init(&a);
        hscd_flags_init(&b);
        if (hscd_flags_load_file(&a, path) != 0)
            fail_msg("%s: the file refused '%s'", f->name, line);
        assert_int_equal(hscd_flags_apply(&b, f->name, f->arg == HSCD_ARG_NONE ? NULL : v), 0);
        if (f->arg == HSCD_ARG_STRING || f->arg == HSCD_ARG_TOKEN)
            assert_string_equal(string_field(&a.cfg, f), string_field(&b.cfg, f));
        else
            assert_memory_equal(field_ptr(&a.cfg, f), field_ptr(&b.cfg, f), f->size);
        unlink(path);
        hscd_flags_dispose(&a);
        hscd_flags_dispose(&b);
    }
}

static void test_file_syntax(void **state)
{
    (void)state;
    char path[32];
    write_file(path, "# a comment\n"
                     "\n"
                     "listen 127.0.0.1:9000\r\n"
                     "exec \"python3 r.py # not a comment\"  # a comment\n"
                     "publish-token \"a\\\"b\\\\c\"\n"
                     "history 7 # seven\n"
                     "max_gen_len 3\n"
                     "legacy-get\n"
                     "legacy-get off\n"
                     "cors-origin https://a.example\n"
                     "cors-origin https://b.example\n"
                     "log-level debug");
    hscd_flags_t fl;
    hscd_flags_init(&fl);
    assert_int_equal(hscd_flags_load_file(&fl, path), 0);
    assert_string_equal(fl.cfg.listen, "127.0.0.1:9000");
    assert_string_equal(fl.cfg.exec, "python3 r.py # not a comment");
    assert_string_equal(fl.cfg.publish_token, "a\"b\\c");
    assert_int_equal(fl.cfg.history, 7);
    assert_int_equal(fl.cfg.max_gen_len, 3);
    assert_int_equal(fl.cfg.legacy_get, 0);
    assert_string_equal(fl.cfg.cors_origin, "https://a.example,https://b.example");
    assert_int_equal(fl.log_level, HSC_LOG_DEBUG);
    unlink(path);
    hscd_flags_dispose(&fl);
}

static void test_file_errors(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "histroy 5\n",                   /* unknown */
        "\n\nhistory -5\n",              /* bad value */
        "history\n",                     /* no value */
        "help\n",                        /* an action */
        "config other.conf\n",           /* an action */
        "--history 5\n",                 /* the dashes */
        "history=5\n",                   /* not NAME VALUE */
        "exec \"unterminated\n",         /* quotes */
        "exec \"a\" b\n",                /* after the quotes */
        "legacy-get maybe\n",            /* a switch's value */
        "publish-token \"has space\"\n", /* a token's rules hold */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char path[32];
        write_file(path, bad[i]);
        hscd_flags_t fl;
        hscd_flags_init(&fl);
        if (hscd_flags_load_file(&fl, path) != HSC_EINVAL)
            fail_msg("accepted: %s", bad[i]);
        unlink(path);
        hscd_flags_dispose(&fl);
    }
    hscd_flags_t fl;
    hscd_flags_init(&fl);
    assert_int_equal(hscd_flags_load_file(&fl, "/nonexistent/hscd.conf"), HSC_EINVAL);
    hscd_flags_dispose(&fl);
}

/* Defaults, then the file, then the environment, then the command line. */
static void test_load_order(void **state)
{
    (void)state;
    char path[32];
    write_file(path, "history 5\nretry 3s\nmax-gen-len 4\ncors-origin https://file.example\n"
                     "subscribe-token from-file\n");
    setenv("HSC_SUBSCRIBE_TOKEN", "from-env", 1);
    char *argv[] = {
        "hscd", "--config", path, "--history", "6", "--cors-origin", "https://cli.example", NULL};
    hscd_flags_t fl;
    hscd_flags_init(&fl);
    assert_int_equal(hscd_flags_load(&fl, 7, argv), 0);
    assert_int_equal(fl.cfg.history, 6);     /* the command line wins */
    assert_int_equal(fl.cfg.retry_ms, 3000); /* the file's */
    assert_int_equal(fl.cfg.max_gen_len, 4);
    assert_string_equal(fl.cfg.cors_origin, "https://cli.example"); /* replaced, not added */
    assert_string_equal(fl.cfg.subscribe_token, "from-env");
    assert_int_equal(fl.check, 0);
    hscd_flags_dispose(&fl);
    unsetenv("HSC_SUBSCRIBE_TOKEN");

    char *check[] = {"hscd", "--check", "--config", path, NULL};
    hscd_flags_init(&fl);
    assert_int_equal(hscd_flags_load(&fl, 4, check), 0);
    assert_int_equal(fl.check, 1);
    assert_string_equal(fl.config, path);
    hscd_flags_dispose(&fl);
    unlink(path);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spellings_are_unique),
        cmocka_unit_test(test_entries_are_complete),
        cmocka_unit_test(test_shown_defaults_are_the_real_ones),
        cmocka_unit_test(test_apply_by_any_spelling),
        cmocka_unit_test(test_refused_values_change_nothing),
        cmocka_unit_test(test_strings_are_copied),
        cmocka_unit_test(test_server_ip_and_port_replace_halves_of_listen),
        cmocka_unit_test(test_cors_origins_add_up),
        cmocka_unit_test(test_pool_needs_exec),
        cmocka_unit_test(test_environment),
        cmocka_unit_test(test_argv_twice),
        cmocka_unit_test(test_file_sets_what_flags_set),
        cmocka_unit_test(test_file_syntax),
        cmocka_unit_test(test_file_errors),
        cmocka_unit_test(test_load_order),
    };
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
