/*
 * hsc token: mints a JWT for an hscd started with --jwt-key-file or --jwt-key-env, and prints it
 * on stdout (hsc_token_mint() in include/hsc/client.h does the minting). The key is read as hscd
 * reads it, from a file (its final line end dropped) or an environment variable, never from the
 * command line, which every user of the machine sees in ps; it is wiped from memory after use.
 */
#include "cli.h"
#include "hsc/client.h"

#include <errno.h>
#include <getopt.h>
#include <openssl/crypto.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_PATTERNS 64
#define KEY_MAX      4096

static void token_usage(FILE *out)
{
    fputs("Usage: hsc token (--key-file FILE | --key-env VAR) [OPTIONS]\n"
          "\n"
          "Mints a token (an HS256 JWT) for an hscd started with the same key\n"
          "(--jwt-key-file, --jwt-key-env), allowing what the options say, and prints it.\n"
          "\n"
          "  --publish PATTERN    may publish to the channels PATTERN covers; repeatable\n"
          "  --subscribe PATTERN  may subscribe to them; repeatable\n"
          "  --stream             may ask the responder (/v1/stream)\n"
          "  --subject ID         who the token is for (the sub claim; hscd's presence\n"
          "                       lists subscriptions under it)\n"
          "  --ttl DUR            valid for DUR from now, e.g. 15m, 24h     (default 1h)\n"
          "  --key-file FILE      the key, from a file (its final line end dropped)\n"
          "  --key-env VAR        the key, from the environment variable VAR\n"
          "  -h, --help           show this help\n"
          "\n"
          "A PATTERN is a channel name (news), the start of one followed by * (user.42.*),\n"
          "or * (every channel). The key (32 to 4096 bytes) is never taken from the command\n"
          "line, which other users see in ps.\n"
          "\n"
          "  TOKEN=\"$(hsc token --key-file /etc/hsc/jwt.key --subscribe news --ttl 8h)\"\n"
          "\n"
          "Exit status: 0 printed, 1 out of memory, 2 usage (a key that cannot be read or\n"
          "is not 32 to 4096 bytes included).\n",
          out);
}

/* Reads the key into `key` (KEY_MAX + 1 bytes) as hscd does. Returns its length, or -1 after a
 * usage error. */
static long read_key(const char *file, const char *env, char *key)
{
    size_t n;
    const char *flag = file != NULL ? "--key-file" : "--key-env";
    if (file != NULL) {
        FILE *fp = fopen(file, "rb");
        if (fp == NULL) {
            char what[1200];
            snprintf(what, sizeof what, "cannot read '%s': %s", file, strerror(errno));
            usage_error("token", "--key-file: %s", what);
            return -1;
        }
        n = fread(key, 1, KEY_MAX + 1, fp);
        fclose(fp);
        while (n > 0 && (key[n - 1] == '\n' || key[n - 1] == '\r'))
            n--;
    } else {
        const char *v = getenv(env);
        if (v == NULL) {
            usage_error("token", "--key-env: the environment variable '%s' is not set", env);
            return -1;
        }
        n = strlen(v);
        memcpy(key, v, n <= KEY_MAX ? n : KEY_MAX + 1);
    }
    if (n < 32 || n > KEY_MAX) {
        char what[64];
        snprintf(what, sizeof what, "%s%zu", n > KEY_MAX ? "over " : "", n > KEY_MAX ? KEY_MAX : n);
        char msg[128];
        snprintf(msg, sizeof msg, "%s: the key must be 32 to 4096 bytes (it is %%s)", flag);
        usage_error("token", msg, what);
        return -1;
    }
    return (long)n;
}

/* Adds a --publish or --subscribe pattern. Returns 0 or EXIT_USAGE after a message. */
static int add_pattern(const char **list, unsigned *n, const char *flag, const char *pattern)
{
    char msg[160];
    if (*n == MAX_PATTERNS) {
        snprintf(msg, sizeof msg, "%s: at most %d patterns%%s", flag, MAX_PATTERNS);
        return usage_error("token", msg, "");
    }
    if (!hsc_token_pattern_valid(pattern)) {
        snprintf(msg, sizeof msg,
                 "%s: '%%s' is not a channel pattern (a channel name, the start of one "
                 "followed by *, or *)",
                 flag);
        return usage_error("token", msg, pattern);
    }
    list[(*n)++] = pattern;
    return 0;
}

int cmd_token(int argc, char **argv)
{
    static const struct option opts[] = {{"publish", required_argument, NULL, 'p'},
                                         {"subscribe", required_argument, NULL, 's'},
                                         {"stream", no_argument, NULL, 'S'},
                                         {"subject", required_argument, NULL, 'j'},
                                         {"ttl", required_argument, NULL, 't'},
                                         {"key-file", required_argument, NULL, 'f'},
                                         {"key-env", required_argument, NULL, 'e'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *pub[MAX_PATTERNS + 1] = {0}, *sub[MAX_PATTERNS + 1] = {0};
    unsigned npub = 0, nsub = 0;
    hsc_token_claims_t claims = {0};
    const char *key_file = NULL, *key_env = NULL;
    uint64_t ttl_ms = 3600 * 1000;
    int o, rc;
    opterr = 0;
    optind = 1;
    while ((o = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
        switch (o) {
        case 'p':
            if ((rc = add_pattern(pub, &npub, "--publish", optarg)) != 0)
                return rc;
            break;
        case 's':
            if ((rc = add_pattern(sub, &nsub, "--subscribe", optarg)) != 0)
                return rc;
            break;
        case 'S':
            claims.stream = 1;
            break;
        case 'j':
            if (!hsc_utf8_valid(optarg, strlen(optarg)))
                return usage_error("token", "--subject: %s", "not valid UTF-8");
            claims.subject = optarg;
            break;
        case 't':
            if (hsc_parse_duration(optarg, &ttl_ms) != 0 || ttl_ms < 1000 ||
                ttl_ms > 100ull * 366 * 86400 * 1000)
                return usage_error("token",
                                   "--ttl: '%s' is not a duration from 1s to 100 years "
                                   "(e.g. 15m, 8h, 720h)",
                                   optarg);
            break;
        case 'f':
            key_file = optarg;
            break;
        case 'e':
            key_env = optarg;
            break;
        case 'h':
            token_usage(stdout);
            return EXIT_OK;
        default:
            return bad_option("token", argv[optind - 1]);
        }
    }
    if (optind < argc)
        return usage_error("token", "unexpected argument '%s'", argv[optind]);
    if ((key_file == NULL) == (key_env == NULL))
        return usage_error("token", "%s",
                           "give the key with one of --key-file FILE or --key-env VAR");
    if (npub == 0 && nsub == 0 && !claims.stream)
        return usage_error("token", "%s",
                           "the token would allow nothing: give --publish, --subscribe or "
                           "--stream");
    claims.publish = npub > 0 ? pub : NULL;
    claims.subscribe = nsub > 0 ? sub : NULL;
    /* exp is a whole second, refused from its start on: rounded up, so that the token lasts at
     * least --ttl (minted at 10.9 s with --ttl 1s, it expires at 12, not at 11). */
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    uint64_t now_ms = (uint64_t)now.tv_sec * 1000u + (uint64_t)now.tv_nsec / 1000000u;
    claims.expires = (now_ms + ttl_ms + 999) / 1000;

    static char key[KEY_MAX + 1];
    long key_len = read_key(key_file, key_env, key);
    if (key_len < 0) {
        OPENSSL_cleanse(key, sizeof key);
        return EXIT_USAGE;
    }
    char *token = NULL;
    rc = hsc_token_mint(&claims, key, (size_t)key_len, &token);
    OPENSSL_cleanse(key, sizeof key);
    if (rc != 0) { /* HSC_ENOMEM: the claims and the key were checked above */
        fprintf(stderr, "hsc token: %s\n", hsc_strerror(rc));
        return EXIT_FAILED;
    }
    printf("%s\n", token);
    free(token);
    return fflush(stdout) == 0 ? EXIT_OK : EXIT_FAILED;
}
