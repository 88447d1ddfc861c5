/*
 * Unit tests for src/lib/http/framing.c: the strict reading of message framing that runs before
 * llhttp (line ends, obs-fold, chunk sizes, the CRLF after chunk data, trailers), fed whole and
 * one byte at a time, with its stops after a head and after a message.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "http/conn.h"

#include <string.h>

#define HEAD_TE "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"

enum { BODY_NONE, BODY_CHUNKED, BODY_LENGTH };

/*
 * Runs the checker over `in` as conn.c does, `step` bytes at a time (0: all at once), telling it
 * the body's framing after the head. Returns the bytes taken by the first message, or -1 when
 * refused (*why gets the reason).
 */
static ssize_t run(const char *in, size_t len, size_t step, int body, uint64_t length,
                   const char **why)
{
    hsc_framing_t f;
    hsc_framing_start(&f);
    size_t off = 0;
    *why = NULL;
    while (off < len) {
        size_t n = step == 0 || len - off < step ? len - off : step;
        ssize_t k = hsc_framing_scan(&f, in + off, n);
        if (k < 0) {
            assert_int_equal(k, HSC_EINVAL);
            assert_non_null(f.error);
            *why = f.error;
            return -1;
        }
        assert_true((size_t)k <= n);
        off += (size_t)k;
        if (hsc_framing_done(&f))
            return (ssize_t)off;
        if (hsc_framing_head_done(&f)) {
            assert_int_equal(hsc_framing_scan(&f, in + off, len - off), 0); /* waits */
            hsc_framing_body(&f, body == BODY_CHUNKED, body == BODY_LENGTH ? length : 0);
        } else {
            assert_int_equal((size_t)k, n); /* only a stop takes less than it was given */
        }
    }
    return hsc_framing_done(&f) ? (ssize_t)off : -2; /* -2: not complete yet */
}

/* Every way of feeding `in` takes exactly its first `want` bytes as one message. */
static void accepts(const char *in, int body, uint64_t length, size_t want)
{
    size_t len = strlen(in);
    for (size_t step = 0; step <= 3; step++) {
        const char *why;
        ssize_t got = run(in, len, step, body, length, &why);
        if (got != (ssize_t)want)
            fail_msg("step %zu: %zd instead of %zu (%s) for %s", step, got, want, why ? why : "-",
                     in);
    }
}

/* Every way of feeding `in` refuses it, with a reason containing `reason`. */
static void refuses(const char *in, int body, const char *reason)
{
    size_t len = strlen(in);
    for (size_t step = 0; step <= 3; step++) {
        const char *why;
        ssize_t got = run(in, len, step, body, 0, &why);
        if (got != -1 || strstr(why, reason) == NULL)
            fail_msg("step %zu: %zd (%s) instead of a refusal (%s) for %s", step, got,
                     why ? why : "-", reason, in);
    }
}

static void test_heads(void **state)
{
    (void)state;
    const char *get = "GET / HTTP/1.1\r\nHost: x\r\nX-A: a b\tc\r\n\r\n";
    accepts(get, BODY_NONE, 0, strlen(get));
    const char *empty_first = "\r\n\r\nGET / HTTP/1.1\r\n\r\n";
    accepts(empty_first, BODY_NONE, 0, strlen(empty_first));
    accepts("GET /\r\n\r\n", BODY_NONE, 0, 9);
    /* A message stops the checker: what follows is the next one. */
    accepts("GET / HTTP/1.1\r\n\r\nGET /next HTTP/1.1\r\n\r\n", BODY_NONE, 0, 18);
    const char *odd = "GET / HTTP/1.1\r\nX: \xc3\xa9\x01\r\n\r\n"; /* llhttp's job */
    accepts(odd, BODY_NONE, 0, strlen(odd));
}

static void test_heads_refused(void **state)
{
    (void)state;
    refuses("GET / HTTP/1.1\nHost: x\r\n\r\n", BODY_NONE, "bare LF");
    refuses("GET / HTTP/1.1\r\nHost: x\n\r\n", BODY_NONE, "bare LF");
    refuses("GET / HTTP/1.1\r\nHost: x\r\n\n", BODY_NONE, "bare LF");
    refuses("\nGET / HTTP/1.1\r\n\r\n", BODY_NONE, "bare LF");
    refuses("GET / HTTP/1.1\r\nHost: x\rX: y\r\n\r\n", BODY_NONE, "CR without LF");
    refuses("GET / HTTP/1.1\rX\r\n\r\n", BODY_NONE, "CR without LF");
    refuses("GET / HTTP/1.1\r\nHost: x\r\n\rX", BODY_NONE, "CR without LF");
    refuses("\rGET / HTTP/1.1\r\n\r\n", BODY_NONE, "CR without LF");
    refuses("GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n", BODY_NONE, "obs-fold");
    refuses("GET / HTTP/1.1\r\nX: a\r\n\tb\r\n\r\n", BODY_NONE, "obs-fold");
    refuses("GET / HTTP/1.1\r\n Host: x\r\n\r\n", BODY_NONE, "obs-fold");
}

static void test_content_length(void **state)
{
    (void)state;
    accepts("POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nab\r\ncGET", BODY_LENGTH, 5, 43);
    accepts("POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\n\n\n\n\n\n", BODY_LENGTH, 5, 43);
}

static void test_chunked(void **state)
{
    (void)state;
    const char *in[] = {
        HEAD_TE "3\r\nabc\r\n0\r\n\r\n",
        HEAD_TE "3\r\na\nc\r\n0\r\n\r\n", /* data is data */
        HEAD_TE "A\r\n0123456789\r\n0\r\n\r\n",
        HEAD_TE "a;x=1\r\n0123456789\r\n000\r\n\r\n",
        HEAD_TE "3;name=\"q\t v\"\r\nabc\r\n0;last\r\n\r\n",
        HEAD_TE "0000000000000003\r\nabc\r\n0\r\n\r\n", /* 16 digits */
        HEAD_TE "3\r\nabc\r\n0\r\nX-T: 1\r\nX-U: 2\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof in / sizeof in[0]; i++)
        accepts(in[i], BODY_CHUNKED, 0, strlen(in[i]));
    accepts(HEAD_TE "3\r\nabc\r\n0\r\n\r\nGET / HTTP/1.1\r\n\r\n", BODY_CHUNKED, 0,
            strlen(HEAD_TE "3\r\nabc\r\n0\r\n\r\n"));
}

static void test_chunked_refused(void **state)
{
    (void)state;
    refuses(HEAD_TE "3\r\nabcXX0\r\n\r\n", BODY_CHUNKED, "chunk data not followed by CRLF");
    refuses(HEAD_TE "2\r\nxx\nf0\r\n", BODY_CHUNKED, "chunk data not followed by CRLF");
    refuses(HEAD_TE "3\r\nabc\r0\r\n\r\n", BODY_CHUNKED, "chunk data not followed by CRLF");
    refuses(HEAD_TE "3\nabc\r\n0\r\n\r\n", BODY_CHUNKED, "bare LF");
    refuses(HEAD_TE "3\rXabc\r\n0\r\n\r\n", BODY_CHUNKED, "CR without LF");
    refuses(HEAD_TE "3;a=b\nabc\r\n0\r\n\r\n", BODY_CHUNKED, "bare LF");
    refuses(HEAD_TE "3;a\x01\r\nabc\r\n0\r\n\r\n", BODY_CHUNKED, "control character");
    refuses(HEAD_TE "0\n\r\n", BODY_CHUNKED, "bare LF");
    refuses(HEAD_TE "0\r\n\n", BODY_CHUNKED, "bare LF");
    refuses(HEAD_TE "0\r\n\rX", BODY_CHUNKED, "CR without LF");
    refuses(HEAD_TE "0\r\nX-T: y\n\r\n", BODY_CHUNKED, "bare LF");
    refuses(HEAD_TE "0\r\nX-T: y\r\n\n", BODY_CHUNKED, "bare LF");
    refuses(HEAD_TE "0\r\nX-T: y\r\n z\r\n\r\n", BODY_CHUNKED, "obs-fold");
    refuses(HEAD_TE "\r\n3\r\nabc\r\n0\r\n\r\n", BODY_CHUNKED, "without a size");
    refuses(HEAD_TE ";a\r\n", BODY_CHUNKED, "without a size");
    refuses(HEAD_TE "3 \r\nabc\r\n0\r\n\r\n", BODY_CHUNKED, "bad character");
    refuses(HEAD_TE "0x3\r\nabc\r\n0\r\n\r\n", BODY_CHUNKED, "bad character");
    refuses(HEAD_TE "-3\r\nabc\r\n0\r\n\r\n", BODY_CHUNKED, "without a size");
    refuses(HEAD_TE "00000000000000003\r\n", BODY_CHUNKED, "16 hex digits");
}

/* The checker stops after a head until it is told the body, and after a message until restarted. */
static void test_stops(void **state)
{
    (void)state;
    hsc_framing_t f;
    hsc_framing_start(&f);
    const char in[] = "GET / HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n";
    assert_int_equal(hsc_framing_scan(&f, in, sizeof in - 1), 18);
    assert_true(hsc_framing_head_done(&f));
    assert_int_equal(hsc_framing_scan(&f, in + 18, sizeof in - 19), 0);
    hsc_framing_body(&f, false, 0);
    assert_true(hsc_framing_done(&f));
    assert_int_equal(hsc_framing_scan(&f, in + 18, sizeof in - 19), 0);
    hsc_framing_start(&f);
    assert_int_equal(hsc_framing_scan(&f, in + 18, sizeof in - 19), sizeof in - 19);
    /* A refusal sticks. */
    hsc_framing_start(&f);
    assert_int_equal(hsc_framing_scan(&f, "\n", 1), HSC_EINVAL);
    assert_int_equal(hsc_framing_scan(&f, "GET", 3), HSC_EINVAL);
    /* A chunk of 2^64 - 1 bytes is counted, not overflowed. */
    hsc_framing_start(&f);
    assert_int_equal(hsc_framing_scan(&f, HEAD_TE, sizeof HEAD_TE - 1), sizeof HEAD_TE - 1);
    hsc_framing_body(&f, true, 0);
    assert_int_equal(hsc_framing_scan(&f, "ffffffffffffffff\r\nab", 20), 20);
    assert_int_equal(f.left, UINT64_MAX - 2);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_heads),           cmocka_unit_test(test_heads_refused),
        cmocka_unit_test(test_content_length),  cmocka_unit_test(test_chunked),
        cmocka_unit_test(test_chunked_refused), cmocka_unit_test(test_stops),
    };
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
