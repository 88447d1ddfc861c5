/*
 * hscd: the hsc server daemon. Reads the environment and the command line into an
 * hsc_server_config_t (src/hscd/flags.c holds the flags' table), runs the server, maps the
 * result to an exit status: 0 after a clean shutdown (or --help, --version), 1 when the server
 * cannot start (address in use...), 2 for a bad command line (the message names the flag).
 */
#include "flags.h"

#include "hsc/server.h"

#include <signal.h>
#include <stdio.h>

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    signal(SIGXFSZ, SIG_IGN); /* a journal past RLIMIT_FSIZE: the write fails, publishes get 503 */
    hscd_flags_t fl;
    hscd_flags_init(&fl);
    int rc = hscd_flags_apply_env(&fl);
    if (rc == 0)
        rc = hscd_flags_parse_argv(&fl, argc, argv);
    if (rc == 0)
        rc = hscd_flags_finish(&fl);
    if (rc != 0) {
        hscd_flags_dispose(&fl);
        return rc == HSCD_FLAGS_DONE ? 0 : 2;
    }

    hsc_log_set_level(fl.log_level);
    hsc_server_t *srv;
    rc = hsc_server_new(&fl.cfg, &srv);
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
    rc = hsc_server_run(srv);
    hsc_server_free(srv);
    hscd_flags_dispose(&fl);
    return rc == 0 ? 0 : 1;
}
