/**
 * hscd's flags as one table. Each entry says how a flag is spelled (its long name, the aliases
 * the Python template's users type, an optional short letter), what value it takes and in which
 * range, where the value goes (a field of hsc_server_config_t, or a small handler for the few
 * that combine or read something), and how --help and docs/hscd.md show it.
 *
 * Everything that knows about flags reads this table: the argv parser (getopt_long's options are
 * built from it), `--help`, `--help-markdown` (the section of docs/hscd.md that a test keeps
 * identical), and hscd_flags_apply(), which sets one flag by name and is what a configuration
 * file reader calls for each `name value` line. Messages name the flag as the user spelled it
 * and what a good value looks like; they go to stderr and the caller maps the result to an exit
 * status (2 for a bad flag).
 */
#ifndef HSCD_FLAGS_H
#define HSCD_FLAGS_H

#include "hsc/server.h"

#include <stdint.h>
#include <stdio.h>

/* What a flag takes, and how its text is checked. */
typedef enum hscd_arg_e {
    HSCD_ARG_NONE,      /* a switch: no value; sets its field to 1 */
    HSCD_ARG_STRING,    /* any text; min and max bound its length */
    HSCD_ARG_UNSIGNED,  /* a decimal number from min to max */
    HSCD_ARG_SIZE,      /* bytes: k, m or g are 1024-based (hsc_parse_size); min to max */
    HSCD_ARG_DURATION,  /* ms, s, m or h, bare numbers are seconds (hsc_parse_duration); min to
                           max milliseconds */
    HSCD_ARG_LOG_LEVEL, /* error, warn, notice, info or debug (hsc_log_level_parse) */
    HSCD_ARG_TOKEN      /* a bearer token: 1-4096 printable ASCII characters, no spaces */
} hscd_arg_t;

typedef struct hscd_flags_s hscd_flags_t;
typedef struct hscd_flag_s hscd_flag_t;

/*
 * A handler for a flag that is not one field: called after the value passed its kind's check,
 * with `flag` as the user spelled it ("--server_port", "$HSC_PUBLISH_TOKEN"), the text, and
 * the number it parsed to (0 for strings). Returns 0, HSCD_FLAGS_DONE, or HSC_EINVAL after
 * printing why.
 */
typedef int (*hscd_flag_fn)(hscd_flags_t *fl, const hscd_flag_t *f, const char *flag,
                            const char *value, uint64_t n);

/* The headings flags are listed under in --help and docs/hscd.md, in order (help.c). */
enum {
    HSCD_GROUP_LISTEN,
    HSCD_GROUP_RESPONDERS,
    HSCD_GROUP_CHANNELS,
    HSCD_GROUP_DURABILITY,
    HSCD_GROUP_AUTH,
    HSCD_GROUP_LIMITS,
    HSCD_GROUP_COMPAT,
    HSCD_GROUP_OTHER,
    HSCD_GROUP_COUNT
};

struct hscd_flag_s {
    const char *name;          /* without "--"; also the configuration file's key */
    const char *aliases[3];    /* other accepted spellings, NULL-terminated */
    char short_name;           /* 'h' for -h; 0 for none */
    hscd_arg_t arg;            /* what it takes */
    const char *metavar;       /* the value's name in --help ("N", "SIZE"); NULL for a switch */
    unsigned group;            /* the --help heading it is listed under (flags.c's groups) */
    const char *help;          /* what it does, one line; --help wraps it */
    const char *default_shown; /* as --help shows it; NULL: none (a switch, an action) */
    const char *env;           /* an environment variable read before the flags; NULL: none */
    size_t offset, size;       /* its field of hsc_server_config_t, unless `handler` is set */
    uint64_t min, max;         /* the accepted range; max 0 means no upper bound */
    const char *fix;           /* what a good value looks like, for the error message */
    hscd_flag_fn handler;      /* stores the value instead of the field; NULL: the field */
    int hidden;                /* left out of --help and the Markdown table */
};

/* Where hscd keeps its journal unless --data-dir says otherwise (relative: the working dir). */
#define HSCD_DATA_DIR_DEFAULT "hsc-data"

/* hscd_flags_apply() and the others: --help, --version or --help-markdown printed; exit 0. */
#define HSCD_FLAGS_DONE 1

/* Room for the strings a flags object copies: at least the table's entries. */
#define HSCD_FLAGS_MAX 64

/*
 * The flags as parsed so far. `cfg` is the result; its strings and the JWT key point into this
 * object (or into the table), so it must outlive every use of `cfg`. Caller-owned memory:
 * hscd_flags_init() then hscd_flags_dispose().
 */
struct hscd_flags_s {
    hsc_server_config_t cfg;
    char *copies[HSCD_FLAGS_MAX]; /* string values, one per table entry */
    char ip_flag[40];             /* --server-ip as spelled, to name it in an error */
    char ip[128];                 /* --server-ip's value; "" when not given */
    char port[8];                 /* --server-port's value; "" when not given */
    char listen[160];             /* --listen with --server-ip / --server-port merged in */
    hsc_log_level_t log_level;    /* --log-level, for hsc_log_set_level() */
    char cors[4096];              /* every --cors-origin, comma-separated */
    char jwt_key[4097];           /* the key read by --jwt-key-file or --jwt-key-env */
    char jwt_key_env[256];        /* --jwt-key-env's variable, kept from responders */
};

/** The table, in --help order; `*count` gets its length. */
const hscd_flag_t *hscd_flags_table(size_t *count);

/** The entry spelled `name` (its long name or an alias, without "--"); NULL when none is. */
const hscd_flag_t *hscd_flags_find(const char *name);

/** Fills `fl` with hsc_server_config_init()'s defaults. */
void hscd_flags_init(hscd_flags_t *fl);

/** Frees the strings `fl` copied; `fl->cfg` must not be used afterwards. */
void hscd_flags_dispose(hscd_flags_t *fl);

/**
 * Applies the environment variables of the table's entries (an unset or empty one is skipped).
 * Returns 0 or HSC_EINVAL after printing which variable is wrong (not its value: it may be a
 * secret).
 */
int hscd_flags_apply_env(hscd_flags_t *fl);

/**
 * Sets one flag: `name` without "--" (any spelling), `value` NULL for a switch. Borrows both:
 * a string that is kept is copied. Returns 0, HSCD_FLAGS_DONE after --help or --version, or
 * HSC_EINVAL after printing a message that names the flag and the fix.
 */
int hscd_flags_apply(hscd_flags_t *fl, const char *name, const char *value);

/**
 * Applies a command line (argv[0] is the program) through hscd_flags_apply(). Long options may
 * be abbreviated and written --name=value, as getopt_long() allows. Returns 0,
 * HSCD_FLAGS_DONE, or HSC_EINVAL after a message (an unknown flag, a missing value, a stray
 * argument...).
 */
int hscd_flags_parse_argv(hscd_flags_t *fl, int argc, char **argv);

/**
 * The checks that involve several flags, once all are applied: --pool needs --exec, and
 * --server-ip / --server-port replace their half of --listen. Returns 0 or HSC_EINVAL.
 */
int hscd_flags_finish(hscd_flags_t *fl);

/** After hsc_server_new() refused the address (HSC_EINVAL): says which flag made it. */
void hscd_flags_explain_bad_address(const hscd_flags_t *fl);

/** `hscd --help`: the usage line, the flags by group with their defaults, the units. */
void hscd_flags_print_help(FILE *out);

/** `hscd --help-markdown`: the section of docs/hscd.md between its markers, markers included. */
void hscd_flags_print_markdown(FILE *out);

#endif
