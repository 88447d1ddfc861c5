/*
 * What the files of the hsc command (src/hsc/) share: the exit statuses docs/cli.md lists, and
 * the usage error every command reports the same way.
 */
#ifndef HSC_CLI_H
#define HSC_CLI_H

enum {
    EXIT_OK = 0,
    EXIT_FAILED = 1,   /* the answer failed or was cut short; out of memory */
    EXIT_USAGE = 2,    /* a bad command line */
    EXIT_CONNECT = 3,  /* the server could not be reached */
    EXIT_REFUSED = 4,  /* the server answered with an error status */
    EXIT_PROTOCOL = 5, /* not an event stream, or over a limit */
    EXIT_INTERRUPTED = 130
};

/* Says "hsc CMD: " and what is wrong (fmt with one %s, `arg`) on stderr, an access_token in an
 * echoed URL redacted, then how to get help. Returns EXIT_USAGE. */
int usage_error(const char *cmd, const char *fmt, const char *arg);

/* An unknown option, or one missing its value, named without what follows a '=': that may be a
 * secret (--tokn=SECRET). Returns EXIT_USAGE. */
int bad_option(const char *cmd, const char *arg);

/* hsc token (src/hsc/token.c). Returns an exit status. */
int cmd_token(int argc, char **argv);

#endif
