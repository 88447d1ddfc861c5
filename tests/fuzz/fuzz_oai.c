/*
 * Fuzz target for src/lib/stream/oai.c: the OpenAI front's request JSON -> responder text path,
 * the chunk escape and the stop-sequence matcher.
 *
 * Properties checked (abort() on a violation):
 *  - hsc_oai_req_parse() either refuses (HSC_EINVAL with a reason, nothing held) or gives a
 *    non-empty, NUL-terminated, valid UTF-8 prompt, a one-line ASCII request JSON that parses
 *    back, at most 4 stop sequences of 1..256 bytes, and a model name of at most 256 bytes;
 *  - hsc_oai_escape() of the prompt, between quotes, is a JSON string equal to the prompt; of any
 *    bytes, it is a JSON string all the same, within HSC_OAI_ESCAPED_MAX;
 *  - the stop matcher fed the text in pieces (cut where the input says) gives out exactly the
 *    text up to the stop sequence complete first (ending first; of two ending together, the
 *    longer), all of it when there is none, and says whether it stopped as a search of the
 *    whole text does: the result does not depend on where the pieces are cut.
 *
 * Input layout: byte 0: bit 0 chooses chat or completions, bits 1..7 the piece size for the
 * matcher (1..128); the rest is the request body. The matcher's text is the body itself, so the
 * stop sequences a body lists are often found in it.
 */
#include "hsc/hsc.h"
#include "stream/oai.h"

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, #cond);                             \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static bool utf8_valid(const char *s, size_t n)
{
    json_t *j = json_stringn(s, n); /* jansson validates */
    bool ok = j != NULL;
    json_decref(j);
    return ok;
}

/* Escapes, parses back, and returns the decoded string (or NULL when `in` was not UTF-8). */
static void check_escape(const char *in, size_t n, bool must_equal)
{
    char *out = malloc(HSC_OAI_ESCAPED_MAX(n) + 3);
    CHECK(out != NULL);
    out[0] = '"';
    size_t len = hsc_oai_escape(out + 1, in, n);
    CHECK(len <= HSC_OAI_ESCAPED_MAX(n));
    out[len + 1] = '"';
    json_t *j = json_loadb(out, len + 2, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
    CHECK(j != NULL && json_is_string(j));
    if (must_equal)
        CHECK(json_string_length(j) == n && memcmp(json_string_value(j), in, n) == 0);
    json_decref(j);
    free(out);
}

static void check_stops(const hsc_oai_req_t *r, const char *text, size_t len, size_t step)
{
    /* the reference: the stop sequence complete first (ending first; then the longer) */
    size_t want = len, best_end = SIZE_MAX;
    for (unsigned i = 0; i < r->nstops; i++)
        for (size_t p = 0; p + r->stop_len[i] <= len; p++)
            if (memcmp(text + p, r->stop[i], r->stop_len[i]) == 0) {
                size_t end = p + r->stop_len[i];
                if (end < best_end || (end == best_end && p < want)) {
                    best_end = end;
                    want = p;
                }
                break;
            }
    char *out = malloc(len + HSC_OAI_STOP_MAX + 1);
    char *scratch = malloc(HSC_OAI_STOP_MAX + step);
    CHECK(out != NULL && scratch != NULL);
    hsc_oai_stop_t m;
    hsc_oai_stop_init(&m, r);
    size_t o = 0;
    bool stopped = false;
    for (size_t i = 0; i < len && !stopped; i += step) {
        size_t n = len - i < step ? len - i : step;
        const char *p;
        size_t pn;
        stopped = hsc_oai_stop_feed(&m, text + i, n, scratch, &p, &pn);
        CHECK(o + pn <= len);
        memcpy(out + o, p, pn);
        o += pn;
        CHECK(m.held_len < HSC_OAI_STOP_MAX);
    }
    size_t hn;
    const char *h = hsc_oai_stop_flush(&m, &hn);
    CHECK(!stopped || hn == 0);
    memcpy(out + o, h, hn);
    o += hn;
    CHECK(stopped == (want < len));
    CHECK(o == want);
    CHECK(memcmp(out, text, want) == 0);
    free(out);
    free(scratch);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    hsc_oai_kind_t kind = (data[0] & 1) ? HSC_OAI_CHAT : HSC_OAI_COMPLETIONS;
    size_t step = (size_t)(data[0] >> 1) + 1;
    const char *body = (const char *)data + 1;
    size_t len = size - 1;

    check_escape(body, len, utf8_valid(body, len));

    hsc_oai_req_t r;
    const char *why = NULL, *param = NULL;
    int rc = hsc_oai_req_parse(&r, kind, body, len, &why, &param);
    if (rc != 0) {
        CHECK(rc == HSC_EINVAL || rc == HSC_ENOMEM);
        CHECK(rc != HSC_EINVAL || why != NULL);
        CHECK(r.prompt == NULL && r.root == NULL && r.json == NULL);
        return 0;
    }
    CHECK(r.prompt != NULL && r.prompt_len > 0 && r.prompt[r.prompt_len] == '\0');
    CHECK(utf8_valid(r.prompt, r.prompt_len));
    size_t jlen;
    const char *js = hsc_oai_req_json(&r, &jlen);
    CHECK(js != NULL && jlen == strlen(js) && strchr(js, '\n') == NULL);
    for (size_t i = 0; i < jlen; i++)
        CHECK((unsigned char)js[i] < 0x80);
    json_t *back = json_loadb(js, jlen, 0, NULL);
    CHECK(json_is_object(back));
    json_decref(back);
    CHECK(strlen(r.model) <= HSC_OAI_MODEL_MAX);
    CHECK(r.nstops <= HSC_OAI_STOPS);
    for (unsigned i = 0; i < r.nstops; i++)
        CHECK(r.stop_len[i] >= 1 && r.stop_len[i] <= HSC_OAI_STOP_MAX &&
              r.stop[i][r.stop_len[i]] == '\0');
    check_escape(r.prompt, r.prompt_len, true);
    check_stops(&r, body, len, step);
    check_stops(&r, r.prompt, r.prompt_len, step);
    hsc_oai_req_dispose(&r);
    return 0;
}
