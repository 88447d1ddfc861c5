/*
 * Unit tests for src/lib/core/frame.c: reference-counted frames. The leak and use-after-free checks
 * are ASan's: under the sanitizer build a frame that is not freed by its last unref, or freed
 * early, fails the test.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "core/core.h"

#include <string.h>

static void test_new_has_one_ref(void **state)
{
    (void)state;
    hsc_frame_t *f = hsc_frame_try_new(5);
    assert_non_null(f);
    assert_int_equal(atomic_load(&f->refs), 1);
    assert_int_equal(f->len, 5);
    memcpy(f->data, "hello", 5); /* the caller fills len bytes */
    assert_memory_equal(f->data, "hello", 5);
    hsc_frame_unref(f);
}

static void test_new_zero_length(void **state)
{
    (void)state;
    hsc_frame_t *f = hsc_frame_try_new(0);
    assert_non_null(f);
    assert_int_equal(f->len, 0);
    assert_int_equal(atomic_load(&f->refs), 1);
    hsc_frame_unref(f);
}

static void test_ref_returns_same_frame(void **state)
{
    (void)state;
    hsc_frame_t *f = hsc_frame_try_new(1);
    assert_non_null(f);
    assert_ptr_equal(hsc_frame_ref(f), f);
    assert_int_equal(atomic_load(&f->refs), 2);
    hsc_frame_unref(f);
    assert_int_equal(atomic_load(&f->refs), 1);
    hsc_frame_unref(f);
}

static void test_shared_frame_outlives_first_owner(void **state)
{
    (void)state;
    /* A history ring and two subscribers share one frame; it lives until the last lets go. */
    hsc_frame_t *f = hsc_frame_try_new(4);
    assert_non_null(f);
    memcpy(f->data, "data", 4);
    hsc_frame_t *ring = hsc_frame_ref(f);
    hsc_frame_t *sub1 = hsc_frame_ref(f);
    hsc_frame_t *sub2 = hsc_frame_ref(f);
    assert_int_equal(atomic_load(&f->refs), 4);
    hsc_frame_unref(f); /* the publisher */
    hsc_frame_unref(ring);
    assert_int_equal(atomic_load(&sub1->refs), 2);
    assert_memory_equal(sub1->data, "data", 4); /* still readable: ASan would catch a free */
    hsc_frame_unref(sub1);
    assert_int_equal(atomic_load(&sub2->refs), 1);
    assert_memory_equal(sub2->data, "data", 4);
    hsc_frame_unref(sub2); /* the last unref frees: ASan's leak check would catch a miss */
}

static void test_many_refs(void **state)
{
    (void)state;
    hsc_frame_t *f = hsc_frame_try_new(64);
    assert_non_null(f);
    for (int i = 0; i < 1000; i++)
        hsc_frame_ref(f);
    assert_int_equal(atomic_load(&f->refs), 1001);
    for (int i = 0; i < 1000; i++)
        hsc_frame_unref(f);
    assert_int_equal(atomic_load(&f->refs), 1);
    hsc_frame_unref(f);
}

static void test_many_frames(void **state)
{
    (void)state;
    hsc_frame_t *frames[100];
    for (size_t i = 0; i < 100; i++) {
        frames[i] = hsc_frame_try_new(i * 100);
        assert_non_null(frames[i]);
        memset(frames[i]->data, (int)i, i * 100);
    }
    for (size_t i = 0; i < 100; i++) {
        assert_int_equal(frames[i]->len, i * 100);
        for (size_t k = 0; k < frames[i]->len; k++)
            assert_int_equal((unsigned char)frames[i]->data[k], i);
        hsc_frame_unref(frames[i]);
    }
}

static void test_unref_null_is_harmless(void **state)
{
    (void)state;
    hsc_frame_unref(NULL);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_new_has_one_ref),
        cmocka_unit_test(test_new_zero_length),
        cmocka_unit_test(test_ref_returns_same_frame),
        cmocka_unit_test(test_shared_frame_outlives_first_owner),
        cmocka_unit_test(test_many_refs),
        cmocka_unit_test(test_many_frames),
        cmocka_unit_test(test_unref_null_is_harmless),
    };
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
