/*
 * Unit tests for src/lib/pubsub/engine.c, what every engine shares: the one encoding of an event
 * into a chunk-framed frame, the slice of it an HTTP/1.0 subscriber gets, and where a resume
 * starts from a client's last event id.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "pubsub/engine.h"

#include <stdio.h>
#include <string.h>

static void check_frame(const char *type, const char *data, const char *sse)
{
    hsc_frame_t *f = hsc_event_frame_new(type, "k1-7", data, strlen(data));
    assert_non_null(f);
    char want[256];
    int n = snprintf(want, sizeof want, "%zx\r\n%s\r\n", strlen(sse), sse);
    assert_int_equal(f->len, n);
    assert_memory_equal(f->data, want, (size_t)n);
    size_t off, end;
    hsc_event_frame_body(f, &off, &end);
    assert_int_equal(end - off, strlen(sse));
    assert_memory_equal(f->data + off, sse, strlen(sse));
    hsc_frame_unref(f);
}

static void test_frame_is_one_chunk_of_one_event(void **state)
{
    (void)state;
    check_frame(NULL, "hello", "id: k1-7\ndata: hello\n\n");
    check_frame("update", "a\nb", "event: update\nid: k1-7\ndata: a\ndata: b\n\n");
    check_frame(NULL, "", "id: k1-7\ndata: \n\n");
    char big[300];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    hsc_frame_t *f = hsc_event_frame_new(NULL, "k1-7", big, strlen(big));
    assert_non_null(f);
    size_t off, end;
    hsc_event_frame_body(f, &off, &end);
    assert_memory_equal(f->data, "13c\r\n", 5); /* 9 + 306 + 1 bytes of SSE */
    assert_int_equal(off, 5);
    assert_int_equal(end, f->len - 2);
    hsc_frame_unref(f);
}

static void test_resume_point(void **state)
{
    (void)state;
    const uint64_t epoch = HSC_EPOCH_MIN + 1000;
    char id[HSC_EVENT_ID_MAX];
    uint64_t after = 99;
    hsc_event_id_format(id, epoch, 5);
    assert_int_equal(hsc_resume_point(id, strlen(id), epoch, 9, &after), HSC_GAP_NONE);
    assert_int_equal(after, 5);
    hsc_event_id_format(id, epoch, 9); /* the cut itself */
    assert_int_equal(hsc_resume_point(id, strlen(id), epoch, 9, &after), HSC_GAP_NONE);
    assert_int_equal(after, 9);
    hsc_event_id_format(id, epoch, 10); /* ahead of the newest */
    assert_int_equal(hsc_resume_point(id, strlen(id), epoch, 9, &after), HSC_GAP_UNKNOWN);
    hsc_event_id_format(id, epoch - 1, 100); /* an earlier run */
    assert_int_equal(hsc_resume_point(id, strlen(id), epoch, 9, &after), HSC_GAP_EPOCH);
    assert_int_equal(after, 0);
    hsc_event_id_format(id, epoch + 1, 1); /* a later run */
    assert_int_equal(hsc_resume_point(id, strlen(id), epoch, 9, &after), HSC_GAP_UNKNOWN);
    hsc_event_id_format(id, HSC_EPOCH_MIN - 1, 1); /* before 2020 */
    assert_int_equal(hsc_resume_point(id, strlen(id), epoch, 9, &after), HSC_GAP_UNKNOWN);
    assert_int_equal(hsc_resume_point("nope", 4, epoch, 9, &after), HSC_GAP_UNKNOWN);
    assert_int_equal(hsc_resume_point("", 0, epoch, 9, &after), HSC_GAP_UNKNOWN);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_frame_is_one_chunk_of_one_event),
        cmocka_unit_test(test_resume_point),
    };
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
