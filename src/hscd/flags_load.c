/*
 * Where hscd's flags come from: the environment variables of the table's entries, the command
 * line (getopt_long()'s options built from the table), and hscd_flags_load(), which reads them
 * with the --config file (conffile.c) in order of precedence; then the checks that involve several
 * flags (hscd_flags_finish). Each value goes through hscd_flags_apply() (flags_apply.c).
 */
#include "flags_int.h"

#include <getopt.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* The aliases an entry may have: its array less the NULL that ends it. */
#define MAX_ALIASES                                                                                \
    (sizeof(((hscd_flag_t *)0)->aliases) / sizeof(((hscd_flag_t *)0)->aliases[0]) - 1)

/* ---- the environment ---------------------------------------------------------------------- */

int hscd_flags_apply_env(hscd_flags_t *fl)
{
    size_t n_flags;
    const hscd_flag_t *flags = hscd_flags_table(&n_flags);
    for (size_t i = 0; i < n_flags; i++) {
        if (flags[i].env == NULL)
            continue;
        const char *v = getenv(flags[i].env);
        if (v == NULL || v[0] == '\0')
            continue;
        char flag[80];
        snprintf(flag, sizeof flag, "$%s", flags[i].env);
        int rc = hscd_flags_apply_entry(fl, &flags[i], flag, v);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* ---- argv --------------------------------------------------------------------------------- */

/*
 * getopt_long() said '?': name the option the user typed and what was wrong with it. `opt` is
 * optopt: 256 + the entry's index for a known long option, a letter for a short one, 0 for an
 * unknown long option.
 */
static int option_error(char **argv, int opt)
{
    size_t n_flags;
    const hscd_flag_t *flags = hscd_flags_table(&n_flags);
    const char *typed = argv[optind - 1];
    if (opt >= 256 && (size_t)(opt - 256) < n_flags) {
        const hscd_flag_t *f = &flags[opt - 256];
        /* the spelling typed when it is a whole one, else the entry's name (an abbreviation) */
        const char *name = f->name;
        size_t len = strcspn(typed + 2, "=");
        for (size_t a = 0; f->aliases[a] != NULL; a++)
            if (strncmp(typed + 2, f->aliases[a], len) == 0 && f->aliases[a][len] == '\0')
                name = f->aliases[a];
        fprintf(hscd_flags_err(), "hscd: --%s %s\n", name,
                f->arg == HSCD_ARG_NONE ? "takes no value" : "needs a value");
    } else if (opt > 0 && opt < 256) {
        fprintf(hscd_flags_err(), "hscd: unknown option '-%c'\n", opt);
    } else {
        fprintf(hscd_flags_err(), "hscd: unknown option '%s'\n", typed);
    }
    fprintf(hscd_flags_err(), "Try 'hscd --help'.\n");
    return HSC_EINVAL;
}

int hscd_flags_parse_argv(hscd_flags_t *fl, int argc, char **argv)
{
    /* Every spelling of entry i returns 256 + i, so abbreviations resolve as they always did. */
    size_t n_flags;
    const hscd_flag_t *flags = hscd_flags_table(&n_flags);
    struct option opts[HSCD_FLAGS_MAX * (1 + MAX_ALIASES) + 1];
    char shorts[HSCD_FLAGS_MAX + 1];
    size_t o = 0, s = 0;
    for (size_t i = 0; i < n_flags; i++) {
        int has_arg = flags[i].arg == HSCD_ARG_NONE ? no_argument : required_argument;
        opts[o++] = (struct option){flags[i].name, has_arg, NULL, 256 + (int)i};
        for (size_t a = 0; flags[i].aliases[a] != NULL; a++)
            opts[o++] = (struct option){flags[i].aliases[a], has_arg, NULL, 256 + (int)i};
        if (flags[i].short_name != 0) /* switches only */
            shorts[s++] = flags[i].short_name;
    }
    opts[o] = (struct option){NULL, 0, NULL, 0};
    shorts[s] = '\0';

    opterr = 0;
    optind = 0; /* glibc and musl: start afresh, so that a second parse works too */
    int opt, longindex = -1;
    while ((opt = getopt_long(argc, argv, shorts, opts, &longindex)) != -1) {
        const char *name = NULL;
        if (opt == '?')
            return option_error(argv, optopt);
        if (opt >= 256) {
            name = opts[longindex].name;
        } else {
            for (size_t i = 0; i < n_flags && name == NULL; i++)
                if (flags[i].short_name == opt)
                    name = flags[i].name;
        }
        int rc = hscd_flags_apply(fl, name, optarg);
        if (rc != 0)
            return rc;
    }
    if (optind < argc) {
        fprintf(hscd_flags_err(), "hscd: unexpected argument '%s'\nTry 'hscd --help'.\n",
                argv[optind]);
        return HSC_EINVAL;
    }
    return 0;
}

int hscd_flags_load(hscd_flags_t *fl, int argc, char **argv)
{
    /* A first pass finds --config (and stops at --help or a bad flag), so that the file can be
     * read before the command line that overrides it. */
    hscd_flags_t first;
    hscd_flags_init(&first);
    int rc = hscd_flags_parse_argv(&first, argc, argv);
    snprintf(fl->config, sizeof fl->config, "%s", first.config);
    hscd_flags_dispose(&first);
    if (rc != 0)
        return rc;
    fl->source = 1;
    if (fl->config[0] != '\0' && (rc = hscd_flags_load_file(fl, fl->config)) != 0)
        return rc;
    fl->source = 2;
    if ((rc = hscd_flags_apply_env(fl)) != 0)
        return rc;
    fl->source = 3;
    if ((rc = hscd_flags_parse_argv(fl, argc, argv)) != 0)
        return rc;
    return hscd_flags_finish(fl);
}

/* ---- after all flags ---------------------------------------------------------------------- */

/* Whether a --cors-origin list names an origin other than "*". */
static bool has_exact_origin(const char *list)
{
    for (const char *p = list; p != NULL && *p != '\0';) {
        p += strspn(p, " \t,");
        size_t n = strcspn(p, ",");
        size_t k = n;
        while (k > 0 && (p[k - 1] == ' ' || p[k - 1] == '\t'))
            k--;
        if (k > 0 && !(k == 1 && *p == '*'))
            return true;
        p += n;
    }
    return false;
}

int hscd_flags_finish(hscd_flags_t *fl)
{
    hsc_server_config_t *cfg = &fl->cfg;
    if (cfg->pool > 0 && cfg->exec == NULL) {
        fprintf(hscd_flags_err(), "hscd: --pool needs --exec 'CMD' (the worker program)\n");
        return HSC_EINVAL;
    }
    if ((cfg->tls_cert == NULL) != (cfg->tls_key == NULL) ||
        (cfg->listen_tls != NULL && cfg->tls_cert == NULL)) {
        fprintf(hscd_flags_err(), "hscd: %s\n",
                cfg->listen_tls != NULL && cfg->tls_cert == NULL && cfg->tls_key == NULL
                    ? "--listen-tls needs --tls-cert FILE and --tls-key FILE"
                    : "--tls-cert and --tls-key go together: give both files");
        return HSC_EINVAL;
    }
    if (cfg->cors_credentials && !has_exact_origin(cfg->cors_origin)) {
        fprintf(hscd_flags_err(),
                "hscd: --cors-credentials needs --cors-origin with exact origins such as "
                "https://app.example (credentials are never allowed to *)\n");
        return HSC_EINVAL;
    }
    if (fl->ip[0] != '\0' || fl->port[0] != '\0') {
        /* The template's --server_ip / --server_port override the matching half of --listen. */
        const char *l = cfg->listen;
        const char *colon = strrchr(l, ':');
        char lhost[128];
        snprintf(lhost, sizeof lhost, "%.*s", colon ? (int)(colon - l) : 0, l);
        const char *h = fl->ip[0] ? fl->ip : lhost;
        const char *p = fl->port[0] ? fl->port : (colon ? colon + 1 : "8000");
        bool v6 = strchr(h, ':') != NULL && h[0] != '[';
        snprintf(fl->listen, sizeof fl->listen, v6 ? "[%s]:%s" : "%s:%s", h, p);
        cfg->listen = fl->listen;
    }
    return 0;
}

void hscd_flags_explain_bad_address(const hscd_flags_t *fl)
{
    if (fl->ip[0] != '\0') {
        const hscd_flag_t *f = hscd_flags_find("server-ip");
        hscd_flags_bad_value(fl->ip_flag, fl->ip, f->fix);
        return;
    }
    fprintf(hscd_flags_err(),
            "hscd: --listen: invalid address '%s' (use HOST:PORT with an IP address or "
            "localhost, e.g. 127.0.0.1:8000 or [::1]:8000)\n",
            fl->cfg.listen);
}