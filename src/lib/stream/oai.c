/*
 * The pure parts of the OpenAI-compatible front (oai.h, docs/openai.md): request parsing and
 * prompt rendering, the JSON string escape of the chunks, and the stop-sequence matcher.
 *
 * Rendering: a completions `prompt` is the text as it is. Chat `messages` become one line per
 * message, "ROLE: CONTENT", joined by "\n"; a content given as parts keeps its text parts,
 * joined, and drops the others (images, audio); a null content (an assistant's tool call) is
 * empty. A model wrapper that wants its own chat template reads the whole request instead.
 */
#include "stream/oai.h"

#include "hsc/hsc.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

/* ---- parsing ----------------------------------------------------------------------------------
 */

typedef struct text_s {
    char *p;
    size_t len, cap;
} text_t;

static int text_add(text_t *t, const char *s, size_t n)
{
    if (t->len + n + 1 > t->cap) {
        size_t cap = t->cap ? t->cap : 256;
        while (cap < t->len + n + 1)
            cap *= 2;
        char *p = realloc(t->p, cap);
        if (p == NULL)
            return HSC_ENOMEM;
        t->p = p;
        t->cap = cap;
    }
    memcpy(t->p + t->len, s, n);
    t->len += n;
    t->p[t->len] = '\0';
    return 0;
}

#define BAD(reason, field)                                                                         \
    do {                                                                                           \
        *why = (reason);                                                                           \
        *param = (field);                                                                          \
        return HSC_EINVAL;                                                                         \
    } while (0)

/* One message's content: a string, null, or an array of parts whose text parts are kept. */
static int add_content(text_t *t, const json_t *c, const char **why, const char **param)
{
    if (c == NULL || json_is_null(c))
        return 0;
    if (json_is_string(c))
        return text_add(t, json_string_value(c), json_string_length(c));
    if (!json_is_array(c))
        BAD("a message's content must be a string, an array of parts or null", "messages");
    size_t i;
    const json_t *part;
    json_array_foreach(c, i, part)
    {
        if (!json_is_object(part))
            BAD("each content part must be an object", "messages");
        const json_t *type = json_object_get(part, "type");
        if (!json_is_string(type))
            BAD("each content part needs a string type", "messages");
        if (strcmp(json_string_value(type), "text") != 0)
            continue; /* images, audio: not text for the responder; the request JSON has them */
        const json_t *tx = json_object_get(part, "text");
        if (!json_is_string(tx))
            BAD("a text part needs a string text", "messages");
        int rc = text_add(t, json_string_value(tx), json_string_length(tx));
        if (rc != 0)
            return rc;
    }
    return 0;
}

static int render_messages(text_t *t, const json_t *msgs, const char **why, const char **param)
{
    if (msgs == NULL)
        BAD("messages is required", "messages");
    if (!json_is_array(msgs))
        BAD("messages must be an array", "messages");
    if (json_array_size(msgs) == 0)
        BAD("messages must not be empty", "messages");
    size_t i;
    const json_t *m;
    json_array_foreach(msgs, i, m)
    {
        if (!json_is_object(m))
            BAD("each message must be an object", "messages");
        const json_t *role = json_object_get(m, "role");
        if (!json_is_string(role) || json_string_length(role) == 0)
            BAD("each message needs a string role", "messages");
        int rc = 0;
        if (i > 0)
            rc = text_add(t, "\n", 1);
        if (rc == 0)
            rc = text_add(t, json_string_value(role), json_string_length(role));
        if (rc == 0)
            rc = text_add(t, ": ", 2);
        if (rc == 0)
            rc = add_content(t, json_object_get(m, "content"), why, param);
        if (rc != 0)
            return rc;
    }
    return 0;
}

static int render_prompt(text_t *t, const json_t *prompt, const char **why, const char **param)
{
    if (prompt == NULL)
        BAD("prompt is required", "prompt");
    if (json_is_array(prompt)) {
        if (json_array_size(prompt) != 1 || !json_is_string(json_array_get(prompt, 0)))
            BAD("prompt must be a string (an array of one string at most; no batches, no token "
                "arrays)",
                "prompt");
        prompt = json_array_get(prompt, 0);
    }
    if (!json_is_string(prompt))
        BAD("prompt must be a string", "prompt");
    return text_add(t, json_string_value(prompt), json_string_length(prompt));
}

static int parse_stop(hsc_oai_req_t *r, const json_t *stop, const char **why, const char **param)
{
    if (stop == NULL || json_is_null(stop))
        return 0;
    const json_t *one[1] = {stop};
    size_t n = 1;
    if (json_is_array(stop)) {
        n = json_array_size(stop);
        if (n > HSC_OAI_STOPS)
            BAD("stop takes at most 4 sequences", "stop");
    } else if (!json_is_string(stop)) {
        BAD("stop must be a string or an array of strings", "stop");
    }
    for (size_t i = 0; i < n; i++) {
        const json_t *s = json_is_array(stop) ? json_array_get(stop, i) : one[0];
        if (!json_is_string(s))
            BAD("stop must be a string or an array of strings", "stop");
        size_t len = json_string_length(s);
        if (len > HSC_OAI_STOP_MAX)
            BAD("a stop sequence is longer than 256 bytes", "stop");
        if (len == 0)
            continue; /* matches nothing */
        memcpy(r->stop[r->nstops], json_string_value(s), len);
        r->stop[r->nstops][len] = '\0';
        r->stop_len[r->nstops++] = len;
    }
    return 0;
}

static int parse_tokens(uint64_t *out, const json_t *v, const char *name, const char **why,
                        const char **param)
{
    if (v == NULL || json_is_null(v))
        return 0;
    if (!json_is_integer(v) || json_integer_value(v) < 1)
        BAD("max_tokens and max_completion_tokens must be integers of 1 or more", name);
    *out = (uint64_t)json_integer_value(v);
    return 0;
}

static int parse_fields(hsc_oai_req_t *r, const json_t *root, text_t *t, const char **why,
                        const char **param)
{
    if (!json_is_object(root))
        BAD("the request body must be a JSON object", NULL);
    const json_t *v = json_object_get(root, "model");
    if (v != NULL && !json_is_null(v)) {
        if (!json_is_string(v))
            BAD("model must be a string", "model");
        if (json_string_length(v) > HSC_OAI_MODEL_MAX ||
            memchr(json_string_value(v), '\0', json_string_length(v)) != NULL)
            BAD("model is not a model name", "model");
        memcpy(r->model, json_string_value(v), json_string_length(v) + 1);
    }
    v = json_object_get(root, "stream");
    if (v != NULL && !json_is_null(v) && !json_is_boolean(v))
        BAD("stream must be a boolean", "stream");
    r->stream = json_is_true(v);
    v = json_object_get(root, "stream_options");
    if (v != NULL && !json_is_null(v)) {
        if (!json_is_object(v))
            BAD("stream_options must be an object", "stream_options");
        const json_t *u = json_object_get(v, "include_usage");
        if (u != NULL && !json_is_null(u) && !json_is_boolean(u))
            BAD("stream_options.include_usage must be a boolean", "stream_options");
        r->include_usage = json_is_true(u);
    }
    v = json_object_get(root, "n");
    if (v != NULL && !json_is_null(v) && (!json_is_integer(v) || json_integer_value(v) != 1))
        BAD("only n = 1 is supported", "n");
    int rc =
        parse_tokens(&r->max_tokens, json_object_get(root, "max_tokens"), "max_tokens", why, param);
    if (rc == 0)
        rc = parse_tokens(&r->max_tokens, json_object_get(root, "max_completion_tokens"),
                          "max_completion_tokens", why, param);
    if (rc == 0)
        rc = parse_stop(r, json_object_get(root, "stop"), why, param);
    if (rc == 0)
        rc = r->kind == HSC_OAI_CHAT
                 ? render_messages(t, json_object_get(root, "messages"), why, param)
                 : render_prompt(t, json_object_get(root, "prompt"), why, param);
    if (rc != 0)
        return rc;
    if (t->len == 0)
        BAD(r->kind == HSC_OAI_CHAT ? "the messages render to an empty text"
                                    : "the prompt is empty",
            r->kind == HSC_OAI_CHAT ? "messages" : "prompt");
    return 0;
}

int hsc_oai_req_parse(hsc_oai_req_t *r, hsc_oai_kind_t kind, const char *body, size_t len,
                      const char **why, const char **param)
{
    memset(r, 0, sizeof *r);
    r->kind = kind;
    *why = NULL;
    *param = NULL;
    if (len == 0) {
        *why = "the request body is empty: send a JSON object";
        return HSC_EINVAL;
    }
    json_error_t err;
    json_t *root = json_loadb(body, len, 0, &err);
    if (root == NULL) {
        /* jansson refuses invalid UTF-8 and NUL characters too */
        *why = "the request body is not valid JSON (UTF-8)";
        return HSC_EINVAL;
    }
    text_t t = {0};
    int rc = parse_fields(r, root, &t, why, param);
    if (rc != 0) {
        json_decref(root);
        free(t.p);
        return rc;
    }
    r->root = root;
    r->prompt = t.p;
    r->prompt_len = t.len;
    return 0;
}

void hsc_oai_req_dispose(hsc_oai_req_t *r)
{
    json_decref(r->root);
    free(r->prompt);
    free(r->json);
    r->root = NULL;
    r->prompt = r->json = NULL;
}

const char *hsc_oai_req_json(hsc_oai_req_t *r, size_t *len)
{
    if (r->json == NULL && r->root != NULL) {
        r->json = json_dumps(r->root, JSON_COMPACT | JSON_ENSURE_ASCII);
        r->json_len = r->json ? strlen(r->json) : 0;
    }
    if (len != NULL)
        *len = r->json_len;
    return r->json;
}

/* ---- the JSON string escape ------------------------------------------------------------------ */

/*
 * Byte classes for the escape: 0 printable ASCII (copied), 1 escaped ('"', '\\', controls),
 * 2, 3, 4 the lead of a sequence of that length, 5 never valid (a stray continuation byte, C0,
 * C1, F5..FF).
 */
static const unsigned char cls[256] = {
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5,
    5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5,
    5, 5, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 4, 4, 4, 4, 4, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5,
};

/* The length of the valid sequence whose lead (class 2..4) is s[0], with n > 0 bytes left; or 0,
 * after setting `bad` to the length of the maximal invalid subpart (what one U+FFFD replaces). */
static size_t utf8_seq(const unsigned char *s, size_t n, size_t need, size_t *bad)
{
    unsigned char lo = 0x80, hi = 0xBF;
    if (s[0] == 0xE0)
        lo = 0xA0;
    else if (s[0] == 0xED)
        hi = 0x9F;
    else if (s[0] == 0xF0)
        lo = 0x90;
    else if (s[0] == 0xF4)
        hi = 0x8F;
    for (size_t i = 1; i < need; i++) {
        if (i >= n || s[i] < lo || s[i] > hi) {
            *bad = i;
            return 0;
        }
        lo = 0x80, hi = 0xBF;
    }
    return need;
}

size_t hsc_oai_escape(char *out, const char *in, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *s = (const unsigned char *)in;
    size_t o = 0, i = 0;
    while (i < n) {
        unsigned char c = s[i];
        unsigned k = cls[c];
        if (k == 0) { /* most text: one load, one test, one store */
            out[o++] = (char)c;
            i++;
            continue;
        }
        if (k >= 2) {
            size_t bad = 1, len = k < 5 ? utf8_seq(s + i, n - i, k, &bad) : 0;
            if (len > 0) {
                out[o] = (char)s[i]; /* fixed copies: a memcpy of 2..4 bytes costs more */
                out[o + 1] = (char)s[i + 1];
                if (len > 2)
                    out[o + 2] = (char)s[i + 2];
                if (len > 3)
                    out[o + 3] = (char)s[i + 3];
                o += len;
                i += len;
            } else {
                memcpy(out + o, "\xEF\xBF\xBD", 3);
                o += 3;
                i += bad;
            }
            continue;
        }
        out[o++] = '\\';
        switch (c) {
        case '"':
        case '\\':
            out[o++] = (char)c;
            break;
        case '\n':
            out[o++] = 'n';
            break;
        case '\r':
            out[o++] = 'r';
            break;
        case '\t':
            out[o++] = 't';
            break;
        default:
            memcpy(out + o, "u00", 3);
            o += 3;
            out[o++] = hex[c >> 4];
            out[o++] = hex[c & 15];
        }
        i++;
    }
    return o;
}

uint64_t hsc_oai_count_words(const char *s, size_t n)
{
    uint64_t words = 0;
    bool in = false;
    for (size_t i = 0; i < n; i++) {
        bool space = s[i] == ' ' || s[i] == '\n' || s[i] == '\t' || s[i] == '\r';
        if (!space && !in)
            words++;
        in = !space;
    }
    return words;
}

/* ---- stop sequences -------------------------------------------------------------------------- */

void hsc_oai_stop_init(hsc_oai_stop_t *m, const hsc_oai_req_t *req)
{
    memset(m, 0, sizeof *m);
    m->req = req;
}

static const char *find(const char *hay, size_t n, const char *needle, size_t k)
{
    if (k > n)
        return NULL;
    for (const char *p = hay; (p = memchr(p, needle[0], n - (size_t)(p - hay) - k + 1)) != NULL;
         p++) {
        if (memcmp(p, needle, k) == 0)
            return p;
        if ((size_t)(p - hay) + k >= n)
            break;
    }
    return NULL;
}

bool hsc_oai_stop_feed(hsc_oai_stop_t *m, const char *in, size_t n, char *scratch, const char **out,
                       size_t *out_len)
{
    const hsc_oai_req_t *r = m->req;
    const char *w = in;
    size_t wl = n;
    if (m->matched) {
        *out = in;
        *out_len = 0;
        return true;
    }
    if (m->held_len > 0) {
        memcpy(scratch, m->held, m->held_len);
        memcpy(scratch + m->held_len, in, n);
        w = scratch;
        wl = m->held_len + n;
        m->held_len = 0;
    }
    *out = w;
    /*
     * The stop sequence complete first, as a model's stream would meet it (the one ending first;
     * of two ending together, the longer): the same whatever the pieces. Only an occurrence
     * ending before the best so far can win, so each search is bounded by it.
     */
    const char *first = NULL;
    size_t first_end = wl;
    for (unsigned i = 0; i < r->nstops; i++) {
        size_t k = r->stop_len[i];
        const char *p = find(w, first ? first_end : wl, r->stop[i], k);
        if (p == NULL)
            continue;
        size_t end = (size_t)(p - w) + k;
        if (first == NULL || end < first_end || (end == first_end && p < first)) {
            first = p;
            first_end = end;
        }
    }
    if (first != NULL) {
        m->matched = true;
        *out_len = (size_t)(first - w);
        return true;
    }
    /* Hold back the longest end that begins some stop sequence. */
    size_t hold = 0;
    for (unsigned i = 0; i < r->nstops; i++) {
        size_t k = r->stop_len[i] - 1 < wl ? r->stop_len[i] - 1 : wl;
        for (; k > hold; k--)
            if (memcmp(w + wl - k, r->stop[i], k) == 0)
                break;
        if (k > hold)
            hold = k;
    }
    memcpy(m->held, w + wl - hold, hold);
    m->held_len = hold;
    *out_len = wl - hold;
    return false;
}

const char *hsc_oai_stop_flush(hsc_oai_stop_t *m, size_t *len)
{
    *len = m->matched ? 0 : m->held_len;
    m->held_len = 0;
    return m->held;
}
