/*
 * Unit tests for src/lib/codec/chunked.c: the chunk-size line and the one-buffer chunk encoder.
 * Sizes are checked around every hex-digit boundary, and the "snprintf" contract is checked with
 * guard bytes: a capacity that is too small returns the needed length and writes nothing.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "hsc/codec.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Calls hsc_chunked_header() on a buffer of guard bytes and checks the result is `want`. */
static void check_header(size_t len, const char *want)
{
    char out[HSC_CHUNK_HEADER_MAX + 8];
    memset(out, '#', sizeof out);
    size_t n = hsc_chunked_header(out, len);
    assert_int_equal(n, strlen(want));
    assert_memory_equal(out, want, n);
    assert_true(n <= HSC_CHUNK_HEADER_MAX);
    for (size_t i = n; i < sizeof out; i++)
        assert_int_equal(out[i], '#');
}

static void test_header_small_sizes(void **state)
{
    (void)state;
    check_header(1, "1\r\n");
    check_header(9, "9\r\n");
    check_header(10, "a\r\n");
    check_header(15, "f\r\n");
}

static void test_header_digit_boundaries(void **state)
{
    (void)state;
    check_header(16, "10\r\n");
    check_header(255, "ff\r\n");
    check_header(256, "100\r\n");
    check_header(4095, "fff\r\n");
    check_header(4096, "1000\r\n");
    check_header(65535, "ffff\r\n");
    check_header(65536, "10000\r\n");
    check_header(0x1a2b3c, "1a2b3c\r\n");
}

static void test_header_lowercase_hex(void **state)
{
    (void)state;
    check_header(0xabcdef, "abcdef\r\n");
}

static void test_header_largest_size(void **state)
{
    (void)state;
    if (sizeof(size_t) >= 8) {
        check_header(SIZE_MAX, "ffffffffffffffff\r\n");
        char out[HSC_CHUNK_HEADER_MAX];
        assert_int_equal(hsc_chunked_header(out, SIZE_MAX), HSC_CHUNK_HEADER_MAX);
    } else {
        check_header(SIZE_MAX, "ffffffff\r\n");
    }
}

static void test_header_matches_printf(void **state)
{
    (void)state;
    for (size_t len = 1; len < 70000; len += 37) {
        char want[32];
        snprintf(want, sizeof want, "%zx\r\n", len);
        check_header(len, want);
    }
}

/* Encodes `len` bytes of a pattern and checks the full chunk byte for byte, plus guard bytes. */
static void check_encode(size_t len)
{
    char *data = malloc(len);
    assert_non_null(data);
    for (size_t i = 0; i < len; i++)
        data[i] = (char)('a' + i % 26);
    char head[32];
    int hl = snprintf(head, sizeof head, "%zx\r\n", len);
    size_t total = (size_t)hl + len + 2;

    char *out = malloc(total + 8);
    assert_non_null(out);
    memset(out, '#', total + 8);
    size_t n = hsc_chunked_encode(out, total, data, len);
    assert_int_equal(n, total);
    assert_memory_equal(out, head, (size_t)hl);
    assert_memory_equal(out + hl, data, len);
    assert_memory_equal(out + hl + len, "\r\n", 2);
    for (size_t i = total; i < total + 8; i++)
        assert_int_equal(out[i], '#');
    free(out);
    free(data);
}

static void test_encode_size_1(void **state)
{
    (void)state;
    char out[16];
    size_t n = hsc_chunked_encode(out, sizeof out, "x", 1);
    assert_int_equal(n, 6);
    assert_memory_equal(out, "1\r\nx\r\n", 6);
    check_encode(1);
}

static void test_encode_size_15(void **state)
{
    (void)state;
    char out[32];
    size_t n = hsc_chunked_encode(out, sizeof out, "0123456789abcde", 15);
    assert_int_equal(n, 20);
    assert_memory_equal(out, "f\r\n0123456789abcde\r\n", 20);
    check_encode(15);
}

static void test_encode_size_16(void **state)
{
    (void)state;
    char out[32];
    size_t n = hsc_chunked_encode(out, sizeof out, "0123456789abcdef", 16);
    assert_int_equal(n, 22);
    assert_memory_equal(out, "10\r\n0123456789abcdef\r\n", 22);
    check_encode(16);
}

static void test_encode_size_255(void **state)
{
    (void)state;
    check_encode(255);
}

static void test_encode_size_256(void **state)
{
    (void)state;
    check_encode(256);
}

static void test_encode_size_4096(void **state)
{
    (void)state;
    check_encode(4096);
}

static void test_encode_large(void **state)
{
    (void)state;
    check_encode(1u << 20);
    check_encode((1u << 20) + 1);
    check_encode(5 * 1000 * 1000 + 3);
}

static void test_encode_binary_data(void **state)
{
    (void)state;
    const char data[] = {'\0', '\r', '\n', '0', '\r', '\n', '\r', '\n', (char)0xff};
    char out[32];
    size_t n = hsc_chunked_encode(out, sizeof out, data, sizeof data);
    assert_int_equal(n, 3 + sizeof data + 2);
    assert_memory_equal(out, "9\r\n", 3);
    assert_memory_equal(out + 3, data, sizeof data);
    assert_memory_equal(out + 3 + sizeof data, "\r\n", 2);
}

static void test_encode_len_zero_writes_nothing(void **state)
{
    (void)state;
    char out[16];
    memset(out, '#', sizeof out);
    assert_int_equal(hsc_chunked_encode(out, sizeof out, "abc", 0), 0);
    for (size_t i = 0; i < sizeof out; i++)
        assert_int_equal(out[i], '#');
}

static void test_encode_exact_capacity(void **state)
{
    (void)state;
    char out[8];
    memset(out, '#', sizeof out);
    assert_int_equal(hsc_chunked_encode(out, 8, "abc", 3), 8);
    assert_memory_equal(out, "3\r\nabc\r\n", 8);
}

static void test_encode_cap_too_small_returns_needed(void **state)
{
    (void)state;
    /* Every capacity below the needed 8 bytes: returns 8 and leaves the buffer untouched. */
    for (size_t cap = 0; cap < 8; cap++) {
        char out[16];
        memset(out, '#', sizeof out);
        assert_int_equal(hsc_chunked_encode(out, cap, "abc", 3), 8);
        for (size_t i = 0; i < sizeof out; i++)
            assert_int_equal(out[i], '#');
    }
}

static void test_encode_cap_too_small_large(void **state)
{
    (void)state;
    size_t len = 4096;
    char *data = calloc(1, len);
    char *out = malloc(len + 16);
    assert_non_null(data);
    assert_non_null(out);
    memset(out, '#', len + 16);
    /* "1000\r\n" + data + "\r\n" = 4104 bytes; one short must write nothing. */
    assert_int_equal(hsc_chunked_encode(out, len + 7, data, len), len + 8);
    for (size_t i = 0; i < len + 16; i++)
        assert_int_equal(out[i], '#');
    free(out);
    free(data);
}

static void test_encode_null_out_with_zero_cap(void **state)
{
    (void)state;
    /* The snprintf idiom: measure first with no buffer at all. */
    assert_int_equal(hsc_chunked_encode(NULL, 0, "hello", 5), 10);
}

static void test_constants(void **state)
{
    (void)state;
    assert_int_equal(HSC_CHUNK_HEADER_MAX, 18);
    assert_string_equal(HSC_CHUNK_CRLF, "\r\n");
    assert_string_equal(HSC_CHUNK_LAST, "0\r\n\r\n");
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_header_small_sizes),
        cmocka_unit_test(test_header_digit_boundaries),
        cmocka_unit_test(test_header_lowercase_hex),
        cmocka_unit_test(test_header_largest_size),
        cmocka_unit_test(test_header_matches_printf),
        cmocka_unit_test(test_encode_size_1),
        cmocka_unit_test(test_encode_size_15),
        cmocka_unit_test(test_encode_size_16),
        cmocka_unit_test(test_encode_size_255),
        cmocka_unit_test(test_encode_size_256),
        cmocka_unit_test(test_encode_size_4096),
        cmocka_unit_test(test_encode_large),
        cmocka_unit_test(test_encode_binary_data),
        cmocka_unit_test(test_encode_len_zero_writes_nothing),
        cmocka_unit_test(test_encode_exact_capacity),
        cmocka_unit_test(test_encode_cap_too_small_returns_needed),
        cmocka_unit_test(test_encode_cap_too_small_large),
        cmocka_unit_test(test_encode_null_out_with_zero_cap),
        cmocka_unit_test(test_constants),
    };
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
