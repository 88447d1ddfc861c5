/*
 * hscd's flags table, rendered twice from the same entries: `--help` (wrapped at 80 columns,
 * grouped under headings, the template's aliases listed last under their heading) and the
 * Markdown tables of docs/hscd.md (`--help-markdown`, checked by tests/integration/test_flags.py).
 * Nothing here decides what a flag does: that is flags.c's table and flags_apply.c.
 */
#include "flags.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

/* --help's headings, in order; `note` follows the title in parentheses. */
static const struct {
    const char *title, *note;
} groups[HSCD_GROUP_COUNT] = {
    [HSCD_GROUP_LISTEN] = {"Listening", "TLS 1.2 and 1.3 with --tls-cert, docs/tls.md"},
    [HSCD_GROUP_RESPONDERS] = {"Responders", "default: the built-in demo"},
    [HSCD_GROUP_CHANNELS] = {"Channels", "/v1/events, docs/api.md"},
    [HSCD_GROUP_DURABILITY] = {"Durability", "the journal, docs/internals/journal.md"},
    [HSCD_GROUP_AUTH] = {"Authorization",
                         "docs/security.md; none by default: everyone may do everything"},
    [HSCD_GROUP_LIMITS] = {"Limits", NULL},
    [HSCD_GROUP_COMPAT] = {"Compatibility with the Python HTTP-Stream-Communicator template", NULL},
    [HSCD_GROUP_OTHER] = {"Other", NULL},
};

static const char units_note[] =
    "Sizes take k, m or g (1024-based); durations ms, s, m or h (bare numbers are seconds).";

static const char usage_head[] =
    "Usage: hscd [OPTIONS]\n"
    "\n"
    "hsc's server: streams answers piece by piece over HTTP or HTTPS (chunked or\n"
    "Server-Sent Events) and serves the demo page at /. HTTP/1.1, and HTTP/2 to\n"
    "clients that open with its preface (docs/http2.md).\n";

/* ---- --help ------------------------------------------------------------------------------- */

enum { HELP_TEXT_COLUMN = 27, HELP_WIDTH = 80 };

/*
 * Writes `text` word by word from column `col` (the cursor's), wrapping before HELP_WIDTH to
 * column `indent`. Returns the column after the last word.
 */
static int wrap(FILE *out, const char *text, int col, int indent)
{
    const char *p = text;
    bool first = true;
    while (*p != '\0') {
        int n = (int)strcspn(p, " ");
        if (!first && col + 1 + n > HELP_WIDTH) {
            col = fprintf(out, "\n%*s", indent, "") - 1;
        } else if (!first) {
            fputc(' ', out);
            col++;
        }
        col += fprintf(out, "%.*s", n, p);
        first = false;
        p += n;
        while (*p == ' ')
            p++;
    }
    return col;
}

/* The default as shown: the entry's, else its environment variable's. NULL when neither. */
static const char *shown_default(const hscd_flag_t *f, char *buf, size_t cap)
{
    if (f->default_shown != NULL)
        return f->default_shown;
    if (f->env != NULL) {
        snprintf(buf, cap, "$%s", f->env);
        return buf;
    }
    return NULL;
}

/*
 * One entry: "  -x, --name METAVAR" (`short_name` 0: no "-x, "), the text from column 27, the
 * default right-aligned.
 */
static void help_entry(FILE *out, char short_name, const char *spelling, const hscd_flag_t *f,
                       const char *text, const char *def)
{
    int col;
    if (short_name != 0)
        col = fprintf(out, "  -%c, --%s", short_name, spelling);
    else
        col = fprintf(out, "  --%s", spelling);
    if (f->metavar != NULL)
        col += fprintf(out, " %s", f->metavar);
    if (col + 2 > HELP_TEXT_COLUMN) {
        fputc('\n', out);
        col = 0;
    }
    col += fprintf(out, "%*s", HELP_TEXT_COLUMN - col, "");
    col = wrap(out, text, col, HELP_TEXT_COLUMN);
    if (def != NULL) {
        char d[128];
        int n = snprintf(d, sizeof d, "(default %s)", def);
        if (col + 1 + n > HELP_WIDTH) {
            fputc('\n', out);
            col = 0;
        }
        fprintf(out, "%*s%s", HELP_WIDTH - n - col, "", d);
    }
    fputc('\n', out);
}

typedef void (*row_fn)(FILE *out, char short_name, const char *spelling, const hscd_flag_t *f,
                       const char *text, const char *def);

/* One row per flag of group `g`, in table order; the aliases' group ends with every alias. */
static void group_rows(FILE *out, const hscd_flag_t *t, size_t n, unsigned g, row_fn row)
{
    char buf[64];
    for (size_t i = 0; i < n; i++)
        if (t[i].group == g && !t[i].hidden)
            row(out, t[i].short_name, t[i].name, &t[i], t[i].help,
                shown_default(&t[i], buf, sizeof buf));
    if (g != HSCD_GROUP_COMPAT)
        return;
    for (size_t i = 0; i < n; i++) {
        char text[96];
        snprintf(text, sizeof text, "alias of --%s", t[i].name);
        for (size_t a = 0; t[i].aliases[a] != NULL; a++)
            row(out, 0, t[i].aliases[a], &t[i], text, NULL);
    }
}

void hscd_flags_print_help(FILE *out)
{
    size_t n;
    const hscd_flag_t *t = hscd_flags_table(&n);
    fputs(usage_head, out);
    for (unsigned g = 0; g < HSCD_GROUP_COUNT; g++) {
        fprintf(out, "\n%s", groups[g].title);
        if (groups[g].note != NULL)
            fprintf(out, " (%s)", groups[g].note);
        fputc('\n', out);
        group_rows(out, t, n, g, help_entry);
    }
    char epilogue[256];
    snprintf(epilogue, sizeof epilogue, "%s See docs/api.md for the HTTP API.", units_note);
    fputc('\n', out);
    wrap(out, epilogue, 0, 0);
    fputc('\n', out);
}

/* ---- --help-markdown ---------------------------------------------------------------------- */

/* Help text as Markdown: "--flag" becomes code, characters Markdown would act on are escaped. */
static void md_text(FILE *out, const char *s)
{
    for (const char *p = s; *p != '\0'; p++) {
        bool word_start = p == s || p[-1] == ' ' || p[-1] == '(';
        if (word_start && p[0] == '-' && p[1] == '-' && p[2] >= 'a' && p[2] <= 'z') {
            size_t n = 2 + strspn(p + 2, "abcdefghijklmnopqrstuvwxyz0123456789-_");
            fprintf(out, "`%.*s`", (int)n, p);
            p += n - 1;
        } else if (strchr("\\`*_[]<>|", *p) != NULL) {
            fprintf(out, "\\%c", *p);
        } else {
            fputc(*p, out);
        }
    }
}

/* A code span in a table cell: only '|' needs escaping there. */
static void md_code(FILE *out, const char *s)
{
    fputc('`', out);
    for (const char *p = s; *p != '\0'; p++)
        fprintf(out, *p == '|' ? "\\%c" : "%c", *p);
    fputc('`', out);
}

static void md_row(FILE *out, char short_name, const char *spelling, const hscd_flag_t *f,
                   const char *text, const char *def)
{
    fputs("| ", out);
    if (short_name != 0)
        fprintf(out, "`-%c`, ", short_name);
    fprintf(out, "`--%s` | ", spelling);
    if (f->metavar != NULL)
        md_code(out, f->metavar);
    fputs(" | ", out);
    if (def != NULL)
        md_code(out, def);
    fputs(" | ", out);
    md_text(out, text);
    fputs(" |\n", out);
}

void hscd_flags_print_markdown(FILE *out)
{
    size_t n;
    const hscd_flag_t *t = hscd_flags_table(&n);
    fputs("<!-- hscd-flags:begin -->\n"
          "<!-- Generated from src/hscd/flags.c by scripts/gen-flag-docs.sh (hscd "
          "--help-markdown); edit the table there, not here. -->\n",
          out);
    for (unsigned g = 0; g < HSCD_GROUP_COUNT; g++) {
        fputs("\n**", out);
        md_text(out, groups[g].title);
        fputs("**", out);
        if (groups[g].note != NULL) {
            fputs(" (", out);
            md_text(out, groups[g].note);
            fputs(")", out);
        }
        fputs("\n\n| flag | value | default | what it does |\n| --- | --- | --- | --- |\n", out);
        group_rows(out, t, n, g, md_row);
    }
    fputc('\n', out);
    md_text(out, units_note);
    fputs("\n<!-- hscd-flags:end -->\n", out);
}
