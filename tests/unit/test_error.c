/*
 * Unit tests for src/lib/core/error.c, hsc_strerror(): every code in include/hsc/hsc.h has its own
 * text, libuv's codes that pass through hsc's APIs (negated errno values, and libuv's own end of
 * file, unknown and getaddrinfo codes) are named, and anything else is "unknown error", never NULL.
 *
 * This test links only hsc_codec, the archive the client library (and so the hsc CLI) links, not
 * libhsc (tests/CMakeLists.txt): it proves hsc_strerror() is there for the client, without libuv.
 * libuv's values are therefore written out here rather than taken from uv.h.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "hsc/hsc.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

static const struct {
    int code;
    const char *name;
} HSC_CODES[] = {
    {HSC_ENOMEM, "HSC_ENOMEM"},   {HSC_ETOOBIG, "HSC_ETOOBIG"}, {HSC_EINVAL, "HSC_EINVAL"},
    {HSC_ECLOSED, "HSC_ECLOSED"}, {HSC_EFULL, "HSC_EFULL"},     {HSC_ENOTFOUND, "HSC_ENOTFOUND"},
    {HSC_EMETHOD, "HSC_EMETHOD"}, {HSC_ESTATE, "HSC_ESTATE"},   {HSC_ELIMIT, "HSC_ELIMIT"},
    {HSC_ETLS, "HSC_ETLS"},
};
#define NCODES (sizeof HSC_CODES / sizeof HSC_CODES[0])

/* A text that names something: not NULL, not empty, not the fallback. */
static void assert_named(int code, const char *what)
{
    const char *s = hsc_strerror(code);
    if (s == NULL || s[0] == '\0' || strcmp(s, "unknown error") == 0)
        fail_msg("hsc_strerror(%d) (%s) is \"%s\"", code, what, s ? s : "(null)");
}

static void test_every_hsc_code_has_its_own_text(void **state)
{
    (void)state;
    for (size_t i = 0; i < NCODES; i++) {
        assert_named(HSC_CODES[i].code, HSC_CODES[i].name);
        for (size_t j = 0; j < i; j++)
            if (strcmp(hsc_strerror(HSC_CODES[i].code), hsc_strerror(HSC_CODES[j].code)) == 0)
                fail_msg("%s and %s share the text \"%s\"", HSC_CODES[i].name, HSC_CODES[j].name,
                         hsc_strerror(HSC_CODES[i].code));
    }
    assert_string_equal(hsc_strerror(HSC_ENOMEM), "out of memory");
    assert_string_equal(hsc_strerror(HSC_ETOOBIG), "too big for its limit");
}

/* The list above is hsc.h's: every "HSC_Exxx = -n" there is in it, with that value. */
static void test_the_list_is_complete(void **state)
{
    (void)state;
    char path[1024];
    const char *slash = strrchr(__FILE__, '/');
    snprintf(path, sizeof path, "%.*s/../../include/hsc/hsc.h", slash ? (int)(slash - __FILE__) : 1,
             slash ? __FILE__ : ".");
    FILE *f = fopen(path, "r");
    if (f == NULL)
        fail_msg("cannot read %s", path);
    char line[512];
    size_t found = 0;
    while (fgets(line, sizeof line, f) != NULL) {
        char name[64];
        int value;
        if (sscanf(line, " %63[A-Z_] = %d", name, &value) != 2 || strncmp(name, "HSC_E", 5) != 0)
            continue;
        size_t i = 0;
        while (i < NCODES && strcmp(HSC_CODES[i].name, name) != 0)
            i++;
        if (i == NCODES)
            fail_msg("hsc.h has %s, which this test does not check", name);
        assert_int_equal(HSC_CODES[i].code, value);
        found++;
    }
    fclose(f);
    assert_int_equal(found, NCODES);
}

static void test_zero_is_success(void **state)
{
    (void)state;
    assert_string_equal(hsc_strerror(0), "success");
}

/* libuv passes errno values through negated: UV_EADDRINUSE is -EADDRINUSE (-98 on Linux). */
static void test_libuv_errno_codes_are_named(void **state)
{
    (void)state;
    assert_named(-EADDRINUSE, "UV_EADDRINUSE");
    assert_string_equal(hsc_strerror(-EADDRINUSE), strerror(EADDRINUSE));
    assert_named(-ECONNREFUSED, "UV_ECONNREFUSED");
    assert_named(-EACCES, "UV_EACCES");
    assert_named(-EPIPE, "UV_EPIPE");
    assert_named(-EMFILE, "UV_EMFILE");
    for (size_t i = 0; i < NCODES; i++) /* no errno text is taken for one of hsc's */
        assert_string_not_equal(hsc_strerror(-EADDRINUSE), hsc_strerror(HSC_CODES[i].code));
}

static void test_libuv_own_codes_are_named(void **state)
{
    (void)state;
    assert_string_equal(hsc_strerror(-4095), "end of file");           /* UV_EOF */
    assert_string_equal(hsc_strerror(-3008), "address lookup failed"); /* UV_EAI_NONAME */
    assert_string_equal(hsc_strerror(-3000), "address lookup failed"); /* UV_EAI_ADDRFAMILY */
    assert_non_null(hsc_strerror(-4094));                              /* UV_UNKNOWN */
}

static void test_unknown_codes(void **state)
{
    (void)state;
    /* Outside every range, a gap in hsc's own (-30008), positive values, the extremes. */
    static const int unknown[] = {-30008, -30000, -30012, -5000,   -4000,
                                  1,      98,     12345,  INT_MAX, INT_MIN};
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
        const char *s = hsc_strerror(unknown[i]);
        assert_non_null(s);
        if (strcmp(s, "unknown error") != 0)
            fail_msg("hsc_strerror(%d) is \"%s\", want \"unknown error\"", unknown[i], s);
    }
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_hsc_code_has_its_own_text),
        cmocka_unit_test(test_the_list_is_complete),
        cmocka_unit_test(test_zero_is_success),
        cmocka_unit_test(test_libuv_errno_codes_are_named),
        cmocka_unit_test(test_libuv_own_codes_are_named),
        cmocka_unit_test(test_unknown_codes),
    };
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
