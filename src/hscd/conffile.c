/*
 * hscd's configuration file (--config FILE): the flags table's settings, one per line, so that a
 * file can set exactly what the command line can and nothing drifts.
 *
 *     # comment                      blank lines and lines starting with # are skipped
 *     listen 0.0.0.0:8000            NAME VALUE: NAME is a flag's long name without "--"
 *     history 500                    (an alias works too), VALUE the rest of the line
 *     exec "python3 r.py --fast"     a value may be quoted: "..." keeps spaces and #, and takes
 *     publish-token "a\"b"           \" and \\ as escapes
 *     legacy-get                     a switch alone turns it on; `NAME on|off|yes|no|true|false`
 *     cors-origin https://a.example  a repeated NAME replaces the value, except cors-origin,
 *     cors-origin https://b.example  which adds to the list as on the command line
 *     retry 2s   # comment           after an unquoted value, " #" starts a comment
 *
 * Each line goes through hscd_flags_apply_as() with "FILE:LINE: NAME" as its spelling, so a bad
 * value's message names the file, the line and what a good value looks like. The actions
 * (--help, --config, --check...) are refused in a file. Nothing is kept from a file that fails:
 * the caller throws the whole hscd_flags_t away (at start, exit 2; on SIGHUP, the running
 * configuration stays).
 */
#include "flags.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

enum { LINE_MAX_BYTES = 8192 };

/* The file's name as messages show it, and the line number. */
typedef struct where_s {
    const char *path;
    unsigned line;
} where_t;

static int line_error(const where_t *w, const char *what)
{
    fprintf(hscd_flags_err(), "hscd: %s:%u: %s\n", w->path, w->line, what);
    return HSC_EINVAL;
}

/* A quoted value from `p` (just past the opening quote) into `out`; returns what follows it. */
static const char *unquote(const char *p, char *out, bool *ok)
{
    size_t n = 0;
    *ok = false;
    for (; *p != '\0'; p++) {
        if (*p == '"') {
            out[n] = '\0';
            *ok = true;
            return p + 1;
        }
        if (*p == '\\' && (p[1] == '"' || p[1] == '\\'))
            p++;
        out[n++] = *p;
    }
    return p;
}

/* "on", "yes", "true", "1": 1; "off", "no", "false", "0": 0; anything else -1. */
static int switch_value(const char *v)
{
    static const char *const on[] = {"on", "yes", "true", "1"};
    static const char *const off[] = {"off", "no", "false", "0"};
    for (size_t i = 0; i < 4; i++) {
        if (strcmp(v, on[i]) == 0)
            return 1;
        if (strcmp(v, off[i]) == 0)
            return 0;
    }
    return -1;
}

/* One line, without its line end. */
static int load_line(hscd_flags_t *fl, const where_t *w, char *line)
{
    char *p = line + strspn(line, " \t");
    if (*p == '\0' || *p == '#')
        return 0;
    char *name = p;
    p += strspn(p, "abcdefghijklmnopqrstuvwxyz0123456789-_");
    if (p == name || (*p != '\0' && *p != ' ' && *p != '\t'))
        return line_error(w, "expected 'NAME VALUE' with NAME a flag's name without --, e.g. "
                             "'listen 127.0.0.1:8000'");
    if (*p != '\0')
        *p++ = '\0';
    p += strspn(p, " \t");

    char msg[300];
    const hscd_flag_t *f = hscd_flags_find(name);
    if (f == NULL) {
        snprintf(msg, sizeof msg, "unknown setting '%.80s' ('hscd --help' lists them)", name);
        return line_error(w, msg);
    }
    if (f->cli_only) {
        snprintf(msg, sizeof msg, "'%.80s' is a command-line action, not a setting", name);
        return line_error(w, msg);
    }

    char *value = NULL;
    char quoted[LINE_MAX_BYTES];
    if (*p == '"') {
        bool ok;
        const char *rest = unquote(p + 1, quoted, &ok);
        rest += strspn(rest, " \t");
        if (!ok || (*rest != '\0' && *rest != '#'))
            return line_error(w, "a quoted value must end with \" (then nothing but a # comment)");
        value = quoted;
    } else if (*p != '\0' && *p != '#') {
        value = p;
        for (char *c = p; *c != '\0'; c++)
            if (*c == '#' && (c[-1] == ' ' || c[-1] == '\t')) {
                *c = '\0';
                break;
            }
        size_t n = strlen(value);
        while (n > 0 && (value[n - 1] == ' ' || value[n - 1] == '\t'))
            value[--n] = '\0';
    }

    char spelled[200];
    snprintf(spelled, sizeof spelled, "%.120s:%u: %.60s", w->path, w->line, name);
    if (f->arg == HSCD_ARG_NONE) {
        int on = value == NULL ? 1 : switch_value(value);
        if (on < 0) {
            snprintf(msg, sizeof msg, "%.60s is a switch: write it alone, or with on or off", name);
            return line_error(w, msg);
        }
        if (on == 0) {
            hscd_flags_clear_switch(fl, f);
            return 0;
        }
        return hscd_flags_apply_as(fl, name, NULL, spelled);
    }
    if (value == NULL) {
        snprintf(msg, sizeof msg, "%.60s needs a value (write \"\" for an empty one)", name);
        return line_error(w, msg);
    }
    return hscd_flags_apply_as(fl, name, value, spelled);
}

int hscd_flags_load_file(hscd_flags_t *fl, const char *path)
{
    FILE *fp = fopen(path, "r");
    if (fp == NULL) {
        fprintf(hscd_flags_err(), "hscd: --config: cannot read '%s': %s\n", path, strerror(errno));
        return HSC_EINVAL;
    }
    char *line = malloc(LINE_MAX_BYTES + 2);
    if (line == NULL)
        abort();
    where_t w = {path, 0};
    int rc = 0;
    while (rc == 0 && fgets(line, LINE_MAX_BYTES + 2, fp) != NULL) {
        w.line++;
        size_t n = strlen(line);
        if (n > 0 && line[n - 1] == '\n')
            line[--n] = '\0';
        else if (!feof(fp)) {
            rc = line_error(&w, "line too long (at most 8192 bytes)");
            break;
        }
        if (n > 0 && line[n - 1] == '\r')
            line[--n] = '\0';
        if (strlen(line) != n) {
            rc = line_error(&w, "a NUL byte in the line");
            break;
        }
        rc = load_line(fl, &w, line);
    }
    if (rc == 0 && ferror(fp)) {
        fprintf(hscd_flags_err(), "hscd: --config: error reading '%s'\n", path);
        rc = HSC_EINVAL;
    }
    free(line);
    fclose(fp);
    return rc;
}
