/*
 * Unit tests for src/lib/core/buf.c: the bounded buffer. The ceiling is the point: len never
 * exceeds max, and an append that would cross it fails without changing anything.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "core/core.h"

#include <string.h>

static void check_contents(const hsc_buf_t *b, const char *want)
{
    size_t n = strlen(want);
    assert_int_equal(b->len, n);
    assert_true(b->len <= b->cap);
    assert_true(b->cap <= b->max);
    if (n > 0)
        assert_memory_equal(b->data, want, n);
}

static void test_init_is_empty(void **state)
{
    (void)state;
    hsc_buf_t b;
    hsc_buf_init(&b, 100);
    assert_null(b.data);
    assert_int_equal(b.len, 0);
    assert_int_equal(b.cap, 0);
    assert_int_equal(b.max, 100);
    hsc_buf_dispose(&b);
    /* Disposing twice, or an untouched buffer, is harmless. */
    hsc_buf_dispose(&b);
    assert_null(b.data);
}

static void test_append_and_read(void **state)
{
    (void)state;
    hsc_buf_t b;
    hsc_buf_init(&b, 1024);
    assert_int_equal(hsc_buf_append(&b, "hello", 5), 0);
    assert_int_equal(hsc_buf_append(&b, ", ", 2), 0);
    assert_int_equal(hsc_buf_append(&b, "world", 5), 0);
    check_contents(&b, "hello, world");
    hsc_buf_dispose(&b);
    assert_null(b.data);
    assert_int_equal(b.len, 0);
    assert_int_equal(b.cap, 0);
}

static void test_append_zero_bytes(void **state)
{
    (void)state;
    hsc_buf_t b;
    hsc_buf_init(&b, 0);
    assert_int_equal(hsc_buf_append(&b, NULL, 0), 0);
    assert_int_equal(b.len, 0);
    hsc_buf_dispose(&b);
}

static void test_ceiling_exactly_reached(void **state)
{
    (void)state;
    hsc_buf_t b;
    hsc_buf_init(&b, 10);
    assert_int_equal(hsc_buf_append(&b, "0123456789", 10), 0);
    check_contents(&b, "0123456789");
    assert_int_equal(b.cap, 10); /* growth is clamped to the ceiling */
    assert_int_equal(hsc_buf_append(&b, "x", 1), HSC_ETOOBIG);
    check_contents(&b, "0123456789");
    hsc_buf_dispose(&b);
}

static void test_failed_append_leaves_buffer_unchanged(void **state)
{
    (void)state;
    hsc_buf_t b;
    hsc_buf_init(&b, 16);
    assert_int_equal(hsc_buf_append(&b, "abcdef", 6), 0);
    char *data = b.data;
    size_t cap = b.cap;
    assert_int_equal(hsc_buf_append(&b, "0123456789X", 11), HSC_ETOOBIG);
    assert_ptr_equal(b.data, data);
    assert_int_equal(b.cap, cap);
    assert_int_equal(b.max, 16);
    check_contents(&b, "abcdef");
    /* What does fit still goes in afterwards. */
    assert_int_equal(hsc_buf_append(&b, "0123456789", 10), 0);
    check_contents(&b, "abcdef0123456789");
    hsc_buf_dispose(&b);
}

static void test_append_larger_than_max_on_empty(void **state)
{
    (void)state;
    hsc_buf_t b;
    hsc_buf_init(&b, 4);
    assert_int_equal(hsc_buf_append(&b, "hello", 5), HSC_ETOOBIG);
    assert_null(b.data);
    assert_int_equal(b.len, 0);
    assert_int_equal(b.cap, 0);
    hsc_buf_dispose(&b);
}

static void test_zero_ceiling(void **state)
{
    (void)state;
    hsc_buf_t b;
    hsc_buf_init(&b, 0);
    assert_int_equal(hsc_buf_append(&b, "x", 1), HSC_ETOOBIG);
    assert_int_equal(hsc_buf_reserve(&b, 1), HSC_ETOOBIG);
    assert_int_equal(hsc_buf_reserve(&b, 0), 0);
    assert_int_equal(b.len, 0);
    hsc_buf_dispose(&b);
}

static void test_huge_append_does_not_wrap(void **state)
{
    (void)state;
    hsc_buf_t b;
    hsc_buf_init(&b, SIZE_MAX);
    assert_int_equal(hsc_buf_append(&b, "abc", 3), 0);
    /* len + extra would wrap around to a small number: must be refused, not accepted. */
    assert_int_equal(hsc_buf_reserve(&b, SIZE_MAX - 1), HSC_ETOOBIG);
    assert_int_equal(hsc_buf_reserve(&b, SIZE_MAX), HSC_ETOOBIG);
    check_contents(&b, "abc");
    hsc_buf_dispose(&b);
}

static void test_many_appends_grow(void **state)
{
    (void)state;
    hsc_buf_t b;
    hsc_buf_init(&b, 100000);
    char want[100000];
    for (size_t i = 0; i < sizeof want; i++) {
        char c = (char)('a' + i % 26);
        want[i] = c;
        assert_int_equal(hsc_buf_append(&b, &c, 1), 0);
    }
    assert_int_equal(b.len, sizeof want);
    assert_int_equal(b.cap, 100000);
    assert_memory_equal(b.data, want, sizeof want);
    assert_int_equal(hsc_buf_append(&b, "z", 1), HSC_ETOOBIG);
    assert_int_equal(b.len, sizeof want);
    hsc_buf_dispose(&b);
}

static void test_reserve(void **state)
{
    (void)state;
    hsc_buf_t b;
    hsc_buf_init(&b, 4096);
    assert_int_equal(hsc_buf_reserve(&b, 1000), 0);
    assert_non_null(b.data);
    assert_true(b.cap >= 1000);
    assert_true(b.cap <= 4096);
    assert_int_equal(b.len, 0); /* reserving adds room, not bytes */
    /* The room is usable without another allocation. */
    char *data = b.data;
    memset(b.data, 'x', 1000);
    b.len = 1000;
    assert_int_equal(hsc_buf_append(&b, "", 0), 0);
    assert_ptr_equal(b.data, data);
    /* Up to the ceiling, not past it. */
    assert_int_equal(hsc_buf_reserve(&b, 3096), 0);
    assert_int_equal(b.cap, 4096);
    assert_int_equal(hsc_buf_reserve(&b, 3097), HSC_ETOOBIG);
    assert_int_equal(b.len, 1000);
    assert_int_equal(b.cap, 4096);
    hsc_buf_dispose(&b);
}

static void test_reserve_when_room_exists_keeps_storage(void **state)
{
    (void)state;
    hsc_buf_t b;
    hsc_buf_init(&b, 4096);
    assert_int_equal(hsc_buf_append(&b, "abc", 3), 0);
    char *data = b.data;
    size_t cap = b.cap;
    assert_int_equal(hsc_buf_reserve(&b, cap - 3), 0);
    assert_ptr_equal(b.data, data);
    assert_int_equal(b.cap, cap);
    check_contents(&b, "abc");
    hsc_buf_dispose(&b);
}

static void test_consume_front(void **state)
{
    (void)state;
    hsc_buf_t b;
    hsc_buf_init(&b, 64);
    assert_int_equal(hsc_buf_append(&b, "GET / HTTP/1.1\r\n", 16), 0);
    hsc_buf_consume(&b, 4);
    check_contents(&b, "/ HTTP/1.1\r\n");
    hsc_buf_consume(&b, 0);
    check_contents(&b, "/ HTTP/1.1\r\n");
    hsc_buf_consume(&b, 11);
    check_contents(&b, "\n");
    hsc_buf_dispose(&b);
}

static void test_consume_all(void **state)
{
    (void)state;
    hsc_buf_t b;
    hsc_buf_init(&b, 64);
    assert_int_equal(hsc_buf_append(&b, "abc", 3), 0);
    hsc_buf_consume(&b, 3);
    assert_int_equal(b.len, 0);
    assert_int_equal(hsc_buf_append(&b, "def", 3), 0);
    hsc_buf_consume(&b, 1000);
    assert_int_equal(b.len, 0);
    hsc_buf_consume(&b, 1); /* on an empty buffer */
    assert_int_equal(b.len, 0);
    hsc_buf_dispose(&b);

    hsc_buf_init(&b, 64);
    hsc_buf_consume(&b, 5); /* never allocated */
    assert_int_equal(b.len, 0);
    hsc_buf_dispose(&b);
}

static void test_consume_frees_room_under_ceiling(void **state)
{
    (void)state;
    hsc_buf_t b;
    hsc_buf_init(&b, 8);
    assert_int_equal(hsc_buf_append(&b, "12345678", 8), 0);
    assert_int_equal(hsc_buf_append(&b, "9", 1), HSC_ETOOBIG);
    hsc_buf_consume(&b, 3);
    assert_int_equal(hsc_buf_append(&b, "9ab", 3), 0);
    check_contents(&b, "456789ab");
    assert_int_equal(hsc_buf_append(&b, "c", 1), HSC_ETOOBIG);
    check_contents(&b, "456789ab");
    hsc_buf_dispose(&b);
}

static void test_shrink_keeps_content_then_grows_again(void **state)
{
    (void)state;
    hsc_buf_t b;
    hsc_buf_init(&b, 1000);
    hsc_buf_shrink(&b); /* empty: nothing to do */
    assert_null(b.data);
    assert_int_equal(hsc_buf_append(&b, "GET / HTTP/1.1", 14), 0);
    assert_true(b.cap >= 256);
    hsc_buf_shrink(&b);
    assert_int_equal(b.cap, 14);
    check_contents(&b, "GET / HTTP/1.1");
    hsc_buf_shrink(&b); /* already tight */
    assert_int_equal(b.cap, 14);
    assert_int_equal(hsc_buf_append(&b, "!", 1), 0);
    assert_true(b.cap >= 15);
    check_contents(&b, "GET / HTTP/1.1!");
    /* the ceiling still holds after a shrink */
    char big[1000] = {0};
    assert_int_equal(hsc_buf_append(&b, big, sizeof big - 15), 0);
    assert_int_equal(hsc_buf_append(&b, "x", 1), HSC_ETOOBIG);
    hsc_buf_dispose(&b);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_init_is_empty),
        cmocka_unit_test(test_append_and_read),
        cmocka_unit_test(test_append_zero_bytes),
        cmocka_unit_test(test_ceiling_exactly_reached),
        cmocka_unit_test(test_failed_append_leaves_buffer_unchanged),
        cmocka_unit_test(test_append_larger_than_max_on_empty),
        cmocka_unit_test(test_zero_ceiling),
        cmocka_unit_test(test_huge_append_does_not_wrap),
        cmocka_unit_test(test_many_appends_grow),
        cmocka_unit_test(test_reserve),
        cmocka_unit_test(test_reserve_when_room_exists_keeps_storage),
        cmocka_unit_test(test_consume_front),
        cmocka_unit_test(test_consume_all),
        cmocka_unit_test(test_consume_frees_room_under_ceiling),
        cmocka_unit_test(test_shrink_keeps_content_then_grows_again),
    };
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
