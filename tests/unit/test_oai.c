/*
 * Unit tests for src/lib/stream/oai.c, the pure parts of the OpenAI-compatible front: request
 * parsing and prompt rendering, the JSON string escape of the chunks, and the stop-sequence
 * matcher fed piece by piece.
 */
#define _GNU_SOURCE /* strcasestr */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "hsc/hsc.h"
#include "stream/oai.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int parse(hsc_oai_req_t *r, hsc_oai_kind_t kind, const char *body, const char **why,
                 const char **param)
{
    return hsc_oai_req_parse(r, kind, body, strlen(body), why, param);
}

static void test_chat_renders_roles_and_contents(void **state)
{
    (void)state;
    hsc_oai_req_t r;
    const char *why, *param;
    assert_int_equal(parse(&r, HSC_OAI_CHAT,
                           "{\"model\":\"m1\",\"messages\":[{\"role\":\"system\",\"content\":\"Be "
                           "brief\"},{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":"
                           "\"Hi \"},{\"type\":\"image_url\",\"image_url\":{}},{\"type\":\"text\","
                           "\"text\":\"there\"}]},{\"role\":\"assistant\",\"content\":null}]}",
                           &why, &param),
                     0);
    assert_string_equal(r.prompt, "system: Be brief\nuser: Hi there\nassistant: ");
    assert_int_equal(r.prompt_len, strlen(r.prompt));
    assert_string_equal(r.model, "m1");
    assert_false(r.stream);
    assert_int_equal(r.max_tokens, 0);
    assert_int_equal(r.nstops, 0);
    hsc_oai_req_dispose(&r);
}

static void test_parameters(void **state)
{
    (void)state;
    hsc_oai_req_t r;
    const char *why, *param;
    assert_int_equal(parse(&r, HSC_OAI_COMPLETIONS,
                           "{\"prompt\":[\"once upon\"],\"stream\":true,\"stream_options\":{"
                           "\"include_usage\":true},\"max_tokens\":7,\"stop\":[\"\\n\\n\",\"\","
                           "\"END\"],\"temperature\":0.2,\"n\":1,\"whatever\":{\"x\":[1]}}",
                           &why, &param),
                     0);
    assert_string_equal(r.prompt, "once upon");
    assert_true(r.stream);
    assert_true(r.include_usage);
    assert_int_equal(r.max_tokens, 7);
    assert_int_equal(r.nstops, 2); /* the empty one matches nothing */
    assert_string_equal(r.stop[0], "\n\n");
    assert_string_equal(r.stop[1], "END");
    /* the whole request, unknown fields kept, one line */
    assert_null(r.json); /* made when asked for */
    const char *json = hsc_oai_req_json(&r, NULL);
    assert_ptr_equal(json, hsc_oai_req_json(&r, NULL));
    assert_non_null(strstr(json, "\"whatever\":{\"x\":[1]}"));
    assert_null(strchr(json, '\n'));
    hsc_oai_req_dispose(&r);
    /* max_completion_tokens wins over max_tokens; a single stop string */
    assert_int_equal(parse(&r, HSC_OAI_CHAT,
                           "{\"messages\":[{\"role\":\"user\",\"content\":\"é\"}],\"max_tokens\":9,"
                           "\"max_completion_tokens\":3,\"stop\":\"x\"}",
                           &why, &param),
                     0);
    assert_int_equal(r.max_tokens, 3);
    assert_int_equal(r.nstops, 1);
    /* ASCII only: non-ASCII text is escaped */
    assert_non_null(strcasestr(hsc_oai_req_json(&r, NULL), "\\u00e9"));
    hsc_oai_req_dispose(&r);
}

static void expect_bad(hsc_oai_kind_t kind, const char *body, const char *want_param)
{
    hsc_oai_req_t r;
    const char *why = NULL, *param = NULL;
    int rc = hsc_oai_req_parse(&r, kind, body, strlen(body), &why, &param);
    if (rc != HSC_EINVAL)
        fail_msg("accepted: %s", body);
    assert_non_null(why);
    if (want_param == NULL)
        assert_null(param);
    else
        assert_string_equal(param, want_param);
    assert_null(r.prompt);
    assert_null(r.root);
}

static void test_refusals(void **state)
{
    (void)state;
    expect_bad(HSC_OAI_CHAT, "", NULL);
    expect_bad(HSC_OAI_CHAT, "{", NULL);
    expect_bad(HSC_OAI_CHAT, "[]", NULL);
    expect_bad(HSC_OAI_CHAT, "{\"messages\":\"hi\"}", "messages");
    expect_bad(HSC_OAI_CHAT, "{}", "messages");
    expect_bad(HSC_OAI_CHAT, "{\"messages\":[]}", "messages");
    expect_bad(HSC_OAI_CHAT, "{\"messages\":[{\"content\":\"x\"}]}", "messages");
    expect_bad(HSC_OAI_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":5}]}", "messages");
    expect_bad(HSC_OAI_CHAT, "{\"messages\":[{\"role\":\"\",\"content\":\"x\"}]}", "messages");
}

static void test_refusals_of_parameters(void **state)
{
    (void)state;
    const char *m = "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]";
    char body[512];
#define BAD_WITH(field, param)                                                                     \
    snprintf(body, sizeof body, "{%s,%s}", m, field);                                              \
    expect_bad(HSC_OAI_CHAT, body, param)
    BAD_WITH("\"model\":7", "model");
    BAD_WITH("\"stream\":\"yes\"", "stream");
    BAD_WITH("\"stream_options\":1", "stream_options");
    BAD_WITH("\"stream_options\":{\"include_usage\":1}", "stream_options");
    BAD_WITH("\"max_tokens\":0", "max_tokens");
    BAD_WITH("\"max_tokens\":1.5", "max_tokens");
    BAD_WITH("\"max_completion_tokens\":\"3\"", "max_completion_tokens");
    BAD_WITH("\"stop\":5", "stop");
    BAD_WITH("\"stop\":[\"a\",\"b\",\"c\",\"d\",\"e\"]", "stop");
    BAD_WITH("\"stop\":[\"a\",1]", "stop");
    BAD_WITH("\"n\":2", "n");
    expect_bad(HSC_OAI_COMPLETIONS, "{\"prompt\":\"\"}", "prompt");
    expect_bad(HSC_OAI_COMPLETIONS, "{\"prompt\":[\"a\",\"b\"]}", "prompt");
    expect_bad(HSC_OAI_COMPLETIONS, "{\"prompt\":[1,2,3]}", "prompt");
    expect_bad(HSC_OAI_COMPLETIONS, "{}", "prompt");
    /* not UTF-8, and a NUL character */
    expect_bad(HSC_OAI_COMPLETIONS, "{\"prompt\":\"\xff\xfe\"}", NULL);
    expect_bad(HSC_OAI_COMPLETIONS, "{\"prompt\":\"a\\u0000b\"}", NULL);
    /* a stop sequence longer than 256 bytes */
    char longstop[400];
    memset(longstop, 'x', 300);
    longstop[300] = '\0';
    snprintf(body, sizeof body, "{\"prompt\":\"p\",\"stop\":\"%s\"}", longstop);
    expect_bad(HSC_OAI_COMPLETIONS, body, "stop");
#undef BAD_WITH
}

/* Parses `"` + out + `"` back with jansson: the escape is a JSON string. */
static void check_escape(const char *in, size_t n, const char *want)
{
    char *out = malloc(HSC_OAI_ESCAPED_MAX(n) + 3);
    out[0] = '"';
    size_t len = hsc_oai_escape(out + 1, in, n);
    out[len + 1] = '"';
    json_error_t err;
    json_t *j = json_loadb(out, len + 2, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
    if (j == NULL)
        fail_msg("not a JSON string: %.*s (%s)", (int)len + 2, out, err.text);
    assert_int_equal(json_string_length(j), strlen(want));
    assert_memory_equal(json_string_value(j), want, strlen(want));
    json_decref(j);
    free(out);
}

static void test_escape(void **state)
{
    (void)state;
    check_escape("plain text", 10, "plain text");
    check_escape("a\"b\\c\n\t\r\x01", 9, "a\"b\\c\n\t\r\x01");
    check_escape("回声 ✓ 😀", strlen("回声 ✓ 😀"), "回声 ✓ 😀");
    /* invalid bytes become U+FFFD: a lone continuation, a cut sequence, a surrogate, 0xFF */
    check_escape("a\x80"
                 "b",
                 3,
                 "a\xEF\xBF\xBD"
                 "b");
    check_escape("\xE2\x82", 2, "\xEF\xBF\xBD");
    check_escape("\xED\xA0\x80", 3, "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");
    check_escape("\xff", 1, "\xEF\xBF\xBD");
    char nul[3] = {'x', '\0', 'y'};
    char esc[32];
    size_t n = hsc_oai_escape(esc, nul, 3);
    assert_int_equal(n, 8);
    assert_memory_equal(esc, "x\\u0000y", 8);
}

static void test_count_words(void **state)
{
    (void)state;
    assert_int_equal(hsc_oai_count_words("", 0), 0);
    assert_int_equal(hsc_oai_count_words("  one two\n three\t", 17), 3);
}

/* Feeds `text` cut into pieces of `step` bytes; returns what went out, and whether it stopped. */
static bool run_stop(const hsc_oai_req_t *r, const char *text, size_t step, char *out, size_t cap)
{
    hsc_oai_stop_t m;
    hsc_oai_stop_init(&m, r);
    size_t o = 0, len = strlen(text);
    bool stopped = false;
    for (size_t i = 0; i < len && !stopped; i += step) {
        size_t n = len - i < step ? len - i : step;
        char *scratch = malloc(HSC_OAI_STOP_MAX + n);
        const char *p;
        size_t pn;
        stopped = hsc_oai_stop_feed(&m, text + i, n, scratch, &p, &pn);
        assert_true(o + pn < cap);
        memcpy(out + o, p, pn);
        o += pn;
        free(scratch);
    }
    size_t hn;
    const char *h = hsc_oai_stop_flush(&m, &hn);
    if (stopped)
        assert_int_equal(hn, 0);
    memcpy(out + o, h, hn);
    out[o + hn] = '\0';
    return stopped;
}

static void test_stop_across_pieces(void **state)
{
    (void)state;
    hsc_oai_req_t r;
    const char *why, *param;
    assert_int_equal(parse(&r, HSC_OAI_COMPLETIONS,
                           "{\"prompt\":\"p\",\"stop\":[\"STOP\",\"\\n\\n\",\"aab\"]}", &why,
                           &param),
                     0);
    char out[256];
    for (size_t step = 1; step <= 12; step++) {
        assert_true(run_stop(&r, "hello STOP world", step, out, sizeof out));
        assert_string_equal(out, "hello ");
        assert_true(run_stop(&r, "one\ntwo\n\nthree", step, out, sizeof out));
        assert_string_equal(out, "one\ntwo");
        /* a prefix that fails, then the real one overlapping it */
        assert_true(run_stop(&r, "xaaab tail", step, out, sizeof out));
        assert_string_equal(out, "xa");
        /* prefixes held back and then given out: nothing lost, nothing doubled */
        assert_false(run_stop(&r, "STO STOp aa\n a", step, out, sizeof out));
        assert_string_equal(out, "STO STOp aa\n a");
        /* a text ending in a prefix: flushed at the end */
        assert_false(run_stop(&r, "ends in ST", step, out, sizeof out));
        assert_string_equal(out, "ends in ST");
    }
    /* the earliest of two sequences wins, whichever is listed first */
    assert_true(run_stop(&r, "a\n\nbSTOP", 100, out, sizeof out));
    assert_string_equal(out, "a");
    hsc_oai_req_dispose(&r);
}

static void test_no_stops_passes_through(void **state)
{
    (void)state;
    hsc_oai_req_t r;
    const char *why, *param;
    assert_int_equal(parse(&r, HSC_OAI_COMPLETIONS, "{\"prompt\":\"p\"}", &why, &param), 0);
    char out[64];
    assert_false(run_stop(&r, "anything at all", 3, out, sizeof out));
    assert_string_equal(out, "anything at all");
    hsc_oai_req_dispose(&r);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chat_renders_roles_and_contents),
        cmocka_unit_test(test_parameters),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_refusals_of_parameters),
        cmocka_unit_test(test_escape),
        cmocka_unit_test(test_count_words),
        cmocka_unit_test(test_stop_across_pieces),
        cmocka_unit_test(test_no_stops_passes_through),
    };
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
