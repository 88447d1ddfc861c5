/*
 * The pure parts of the OpenAI-compatible front (docs/openai.md), without a loop or a socket so
 * that unit tests and a fuzzer reach them: a request body turned into the responder's text and
 * the parameters hscd honours, the JSON string escape the chunks are built with, and the matcher
 * that finds stop sequences across piece boundaries. openai.c puts them on the wire.
 */
#ifndef HSC_STREAM_OAI_H
#define HSC_STREAM_OAI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/** At most this many stop sequences (as OpenAI), each at most HSC_OAI_STOP_MAX bytes. */
#define HSC_OAI_STOPS    4
#define HSC_OAI_STOP_MAX 256
/** The longest model name accepted in a request. */
#define HSC_OAI_MODEL_MAX 256

typedef enum hsc_oai_kind_e { HSC_OAI_CHAT, HSC_OAI_COMPLETIONS } hsc_oai_kind_t;

/** A parsed request: what hscd honours of it. Free with hsc_oai_req_dispose(). */
typedef struct hsc_oai_req_s {
    hsc_oai_kind_t kind;
    char *prompt; /* the rendered text for the responder: NUL-terminated, valid UTF-8, not empty */
    size_t prompt_len;
    void *root; /* the parsed request (a jansson json_t), for hsc_oai_req_json() */
    char *json; /* hsc_oai_req_json()'s encoding, once asked for; NULL before */
    size_t json_len;
    char model[HSC_OAI_MODEL_MAX + 1]; /* "" when the request names none */
    bool stream, include_usage;
    uint64_t max_tokens; /* max_completion_tokens, else max_tokens; 0: none */
    unsigned nstops;
    char stop[HSC_OAI_STOPS][HSC_OAI_STOP_MAX + 1];
    size_t stop_len[HSC_OAI_STOPS];
} hsc_oai_req_t;

/**
 * Parses a request body of `kind`. Returns 0, or HSC_EINVAL with `why` (a one-line reason, for a
 * 400) and `param` (the field at fault, or NULL) set, or HSC_ENOMEM. On failure nothing is held.
 */
int hsc_oai_req_parse(hsc_oai_req_t *r, hsc_oai_kind_t kind, const char *body, size_t len,
                      const char **why, const char **param);
void hsc_oai_req_dispose(hsc_oai_req_t *r);
/**
 * The whole request re-encoded as compact, ASCII-only JSON (one line; every field kept, unknown
 * ones included), made on the first call (most answers never need it: the demo does not) and
 * kept until dispose. NULL when out of memory.
 */
const char *hsc_oai_req_json(hsc_oai_req_t *r, size_t *len);

/**
 * Writes `n` bytes of text as the inside of a JSON string (no quotes): `"`, `\` and control
 * characters escaped, invalid UTF-8 replaced by U+FFFD. `out` needs HSC_OAI_ESCAPED_MAX(n) bytes.
 * Returns the length written.
 */
#define HSC_OAI_ESCAPED_MAX(n) ((n)*6)
size_t hsc_oai_escape(char *out, const char *in, size_t n);

/** Counts whitespace-separated words: the "tokens" of a prompt in `usage` (docs/openai.md). */
uint64_t hsc_oai_count_words(const char *s, size_t n);

/**
 * The stop-sequence matcher. Text goes in piece by piece; what may be sent comes out, and the
 * bytes that could still begin a stop sequence are held back until the next piece decides.
 */
typedef struct hsc_oai_stop_s {
    const hsc_oai_req_t *req; /* borrowed: its stop sequences */
    char held[HSC_OAI_STOP_MAX];
    size_t held_len;
    bool matched;
} hsc_oai_stop_t;

void hsc_oai_stop_init(hsc_oai_stop_t *m, const hsc_oai_req_t *req);
/**
 * Feeds `n` bytes. The text to send is `*out` (`*out_len` bytes; it points into `in` or into
 * `scratch`, which needs HSC_OAI_STOP_MAX + n bytes). Returns true when a stop sequence was
 * found: the text before it is the output, and nothing after it counts. The sequence that ends
 * the text is the one complete first (of two complete at the same byte, the longer), as a
 * model's stream meets them: the result does not depend on where the pieces are cut.
 */
bool hsc_oai_stop_feed(hsc_oai_stop_t *m, const char *in, size_t n, char *scratch, const char **out,
                       size_t *out_len);
/** At the end of the answer: the held bytes were not a stop sequence after all. */
const char *hsc_oai_stop_flush(hsc_oai_stop_t *m, size_t *len);

#endif
