/*
 * hscd: the hsc server daemon. Reads the environment and the command line into an
 * hsc_server_config_t (src/hscd/flags.c holds the flags' table; --config FILE adds a file under
 * them, src/hscd/conffile.c), runs the server, maps the result to an exit status: 0 after a
 * clean shutdown (or --help, --version, --check of a good configuration), 1 when the server
 * cannot start (address in use...), 2 for a bad command line or file (the message names the
 * flag, or the file and line) or an unusable TLS certificate or key.
 */
#include "flags.h"
#include "handover.h"

#include "hsc/server.h"

#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct argv_s {
    int argc;
    char **argv;
} argv_t;

/*
 * SIGHUP: reads the configuration again as at start (the file, the environment, the command
 * line), and hands it to the server, which applies what can change while running. A mistake
 * leaves the running configuration as it is; the reason, with the file's line, is logged.
 */
static void on_sighup(hsc_server_t *srv, void *data)
{
    const argv_t *a = data;
    char *msg = NULL;
    size_t len = 0;
    FILE *err = open_memstream(&msg, &len);
    hscd_flags_set_err(err);
    hscd_flags_t fl;
    hscd_flags_init(&fl);
    int rc = hscd_flags_load(&fl, a->argc, a->argv);
    hscd_flags_set_err(NULL);
    if (err != NULL)
        fclose(err);
    if (msg != NULL) { /* one log line: "hscd: f.conf:3: history: invalid value..." */
        for (char *p = msg; *p != '\0'; p++)
            if (*p == '\n')
                *p = ' ';
        while (len > 0 && msg[len - 1] == ' ')
            msg[--len] = '\0';
    }
    if (rc != 0) {
        hsc_log_printf(HSC_LOG_ERROR, "SIGHUP: configuration refused, the running one stays: %s",
                       msg != NULL && msg[0] != '\0' ? msg : "(no reason given)");
    } else if ((rc = hsc_server_reload(srv, &fl.cfg)) != 0) {
        hsc_log_printf(HSC_LOG_ERROR, "SIGHUP: configuration refused, the running one stays: %s",
                       hsc_strerror(rc));
    } else {
        hsc_log_set_level(fl.log_level);
        hsc_log_set_format(fl.log_format);
        hsc_log_printf(HSC_LOG_NOTICE, "SIGHUP: configuration reloaded%s%s",
                       fl.config[0] != '\0' ? " from " : "", fl.config);
    }
    free(msg);
    hscd_flags_dispose(&fl);
}

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    signal(SIGXFSZ, SIG_IGN); /* a journal past RLIMIT_FSIZE: the write fails, publishes get 503 */
    /* Until hsc_server_run() handles them: their default action would end the process. In a
     * hand-over with a journal that is while the predecessor already drains and this process
     * waits for the data directory: a reload or hand-over asked meanwhile would leave nobody. */
    signal(SIGHUP, SIG_IGN);
    signal(SIGUSR2, SIG_IGN);
    int inherited[256], inherited_tls[256];
    pid_t old_pid;
    unsigned ninherited_tls;
    unsigned ninherited =
        hscd_inherited_fds(inherited, 256, inherited_tls, &ninherited_tls, &old_pid);
    hscd_flags_t fl;
    hscd_flags_init(&fl);
    int rc = hscd_flags_load(&fl, argc, argv);
    if (rc == 0 && fl.check && hsc_server_check_tls(&fl.cfg) != 0)
        rc = HSC_ETLS; /* the line above says which file and why */
    if (rc == 0 && fl.check) {
        printf("hscd: configuration OK%s%s\n", fl.config[0] ? ": " : "", fl.config);
        rc = HSCD_FLAGS_DONE;
    }
    if (rc != 0) {
        hscd_flags_dispose(&fl);
        return rc == HSCD_FLAGS_DONE ? 0 : 2;
    }

    hsc_log_set_level(fl.log_level);
    hsc_log_set_format(fl.log_format);
    hsc_server_t *srv;
    fl.cfg.listen_fds = inherited;
    fl.cfg.n_listen_fds = ninherited;
    fl.cfg.listen_tls_fds = inherited_tls;
    fl.cfg.n_listen_tls_fds = ninherited_tls;
    /* A hand-over with a journal: the data directory is the predecessor's until its drain ends,
     * so it is told to drain first and this process waits for the directory (its sockets keep
     * queueing connections meanwhile; docs/operations.md). */
    bool drained_first = false;
    if (ninherited > 0 && old_pid > 0 && fl.cfg.data_dir != NULL) {
        fl.cfg.data_dir_wait_ms = fl.cfg.drain_timeout_ms + 5000;
        hscd_handover_done(ninherited + ninherited_tls, old_pid);
        drained_first = true;
    }
    rc = hsc_server_new(&fl.cfg, &srv);
    if (rc != 0 && ninherited + ninherited_tls > 0) {
        fprintf(stderr, "hscd: cannot use the %u inherited listening socket%s: %s\n",
                ninherited + ninherited_tls, ninherited + ninherited_tls == 1 ? "" : "s",
                hsc_strerror(rc));
        hscd_flags_dispose(&fl);
        return 1;
    }
    if (rc == HSC_ETLS) { /* the log line above says which file and why */
        fprintf(stderr, "hscd: cannot start: the TLS certificate or key is unusable\n");
        hscd_flags_dispose(&fl);
        return 2;
    }
    if (rc == HSC_EINVAL) {
        hscd_flags_explain_bad_address(&fl);
        hscd_flags_dispose(&fl);
        return 2;
    }
    if (rc == HSC_ESTATE) { /* the data directory: the message above says why */
        fprintf(stderr, "hscd: cannot start: --data-dir %s is not usable\n", fl.cfg.data_dir);
        hscd_flags_dispose(&fl);
        return 1;
    }
    if (rc != 0) {
        fprintf(stderr, "hscd: cannot listen on %s: %s\n", fl.cfg.listen, hsc_strerror(rc));
        hscd_flags_dispose(&fl);
        return 1;
    }
    argv_t args = {argc, argv};
    hsc_server_on_sighup(srv, on_sighup, &args);
    hsc_server_on_sigusr2(srv, hscd_handover, argv);
    if (ninherited > 0 && !drained_first)
        hscd_handover_done(ninherited + ninherited_tls, old_pid);
    rc = hsc_server_run(srv);
    hsc_server_free(srv);
    hscd_flags_dispose(&fl);
    return rc == 0 ? 0 : 1;
}
