/*
 * What the files of the hsc command (src/hsc/) share: the exit statuses docs/cli.md lists, the
 * usage error every command reports the same way, the options every command that talks to a
 * server takes, and the helpers main.c holds for all of them. send.c, listen.c, publish.c and
 * token.c hold one command each; admin.c the three of the admin API.
 */
#ifndef HSC_CLI_H
#define HSC_CLI_H

#include "hsc/client.h"

#include <getopt.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum {
    EXIT_OK = 0,
    EXIT_FAILED = 1,   /* the answer failed or was cut short; out of memory */
    EXIT_USAGE = 2,    /* a bad command line */
    EXIT_CONNECT = 3,  /* the server could not be reached */
    EXIT_REFUSED = 4,  /* the server answered with an error status */
    EXIT_PROTOCOL = 5, /* not an event stream, or over a limit */
    EXIT_INTERRUPTED = 130
};

/* The client a command is running, which Ctrl-C (SIGINT, SIGTERM) stops; NULL when none is. A
 * command sets it with hsc_client_new() and frees and clears it before returning. */
extern hsc_client_t *g_client;

/* Set when SIGINT or SIGTERM (Ctrl-C) arrives; the handler also stops g_client. */
extern volatile sig_atomic_t g_interrupted;

/* Says "hsc CMD: " and what is wrong (fmt with one %s, `arg`) on stderr, an access_token in an
 * echoed URL redacted, then how to get help. Returns EXIT_USAGE. */
int usage_error(const char *cmd, const char *fmt, const char *arg);

/* An unknown option, or one missing its value, named without what follows a '=': that may be a
 * secret (--tokn=SECRET). Returns EXIT_USAGE. */
int bad_option(const char *cmd, const char *arg);

/* ---- the server and the credentials: options every command takes ----------------------------- */

#define MAX_HEADERS 64

typedef struct server_opts_s {
    const char *url;                      /* --url, or NULL */
    const char *token;                    /* --token, or NULL */
    const char *headers[MAX_HEADERS + 1]; /* -H, NULL-terminated */
    unsigned nheaders;
    bool parsing; /* next_option() has begun on this command's argv */
} server_opts_t;

/* The long options of server_opts_t, for each command's table. */
/* clang-format off */
#define SERVER_OPTIONS                                                                             \
    {"url", required_argument, NULL, 'u'},                                                         \
    {"token", required_argument, NULL, 'T'},                                                       \
    {"header", required_argument, NULL, 'H'}
/* clang-format on */

/* Takes option `o` when it is one of SERVER_OPTIONS: returns 0, or EXIT_USAGE after saying what
 * is wrong (never echoing a token or a header's value), or -1 when `o` is not one of them. */
int server_option(const char *cmd, int o, server_opts_t *so);

/* next_option()'s answer for a SERVER_OPTIONS value it refused (after saying why). */
#define OPT_REFUSED (-2)

/*
 * getopt_long() over a command's argv (`so` zeroed, the first call starts at argv[1]), taking
 * the SERVER_OPTIONS into `so` on the way: returns the command's next own option, -1 at the end,
 * or OPT_REFUSED (exit with EXIT_USAGE).
 */
int next_option(const char *cmd, int argc, char **argv, const char *shortopts,
                const struct option *opts, server_opts_t *so);

/* Puts the token and headers into `cfg`. $HSC_TOKEN, when --token is not given, goes only to the
 * server of --url or $HSC_URL (`to_base`), whose credential it is, never to a URL given to
 * `listen`. Returns 0, or EXIT_USAGE for a bad $HSC_TOKEN. */
int server_apply(const char *cmd, server_opts_t *so, bool to_base, hsc_client_config_t *cfg);

/* The server: --url (`flag`) when given, else $HSC_URL, else http://127.0.0.1:8000. */
const char *base_url(const char *flag);

/* `base` (its trailing slashes dropped) followed by `path`, into `out`. */
void build_url(char *out, size_t cap, const char *base, const char *path);

/* Percent-encodes a query value (RFC 3986 unreserved characters pass) onto the end of `out`. */
void append_encoded(char *out, size_t cap, const char *s);

/* ---- the rest of a command line -------------------------------------------------------------- */

/* A duration (10s, 5m) into milliseconds. Returns 0, or -1 when `s` is not one. */
int parse_seconds(const char *s, uint64_t *ms);

/*
 * Refuses an option written after the text (`hsc publish -c news hello --token T`) or the URL
 * (`what`): getopt stops at the first word of the text, so the option would be sent as words of
 * it, a token included, to everyone on the channel. A word that is one of `opts` ("--token",
 * "--token=...") or one of the short options in `shorts` ("-H") is an error; after an explicit "--"
 * the words are sent as they are. Returns 0, or EXIT_USAGE after naming the option (never its
 * value).
 */
int check_words(const char *cmd, const char *what, int argc, char **argv, const struct option *opts,
                const char *shorts);

/* The words argv[from..argc), joined with single spaces, as a shell user expects from
 * `hsc send hello world`. Returns NULL when out of memory; free with free(). */
char *join_args(int argc, char **argv, int from);

/* ---- results --------------------------------------------------------------------------------- */

/* Setting up (hsc_client_new(), a parser) failed with the hsc code `rc`: says why on stderr.
 * Returns EXIT_FAILED. */
int start_failed(const char *cmd, int rc);

/* Maps a result of hsc_client_run(g_client) to an exit status, saying why on stderr after
 * "hsc CMD: " (CMD may name more: "publish: line 3"). */
int report(const char *cmd, int result);

/* The event's type is `t`, byte for byte: a type may hold a NUL, which strcmp() would stop at. */
bool type_is(const hsc_sse_msg_t *m, const char *t);

/* ---- the commands: each returns an exit status ----------------------------------------------- */

int cmd_send(int argc, char **argv);       /* src/hsc/send.c */
int cmd_listen(int argc, char **argv);     /* src/hsc/listen.c */
int cmd_publish(int argc, char **argv);    /* src/hsc/publish.c */
int cmd_token(int argc, char **argv);      /* src/hsc/token.c */
int cmd_channels(int argc, char **argv);   /* src/hsc/admin.c */
int cmd_info(int argc, char **argv);       /* src/hsc/admin.c */
int cmd_disconnect(int argc, char **argv); /* src/hsc/admin.c */

#endif
