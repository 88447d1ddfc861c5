/*
 * Restarts without refusing anyone: the listening sockets outlive the process.
 *
 * Under systemd with socket activation (hscd.socket), systemd holds the socket and passes it as
 * descriptor 3 (LISTEN_FDS=1, LISTEN_PID=our pid): a restart never closes it, so connections
 * wait in its queue while hscd restarts. A socket named "tls" (FileDescriptorName=tls, in
 * LISTEN_FDNAMES) is a --listen-tls socket; the others are --listen sockets.
 *
 * Without systemd, SIGUSR2 starts a successor: hscd runs its own executable again (by path, so an
 * upgraded binary is the one that starts) with the same arguments and its listening sockets as
 * descriptors 3, 4... (HSC_LISTEN_FDS=N, HSC_HANDOVER_PID=the old pid), then its --listen-tls
 * sockets right after them (HSC_LISTEN_TLS_FDS=M: descriptors 3+N to 3+N+M-1; an older hscd
 * ignores the variable and binds --listen-tls through SO_REUSEPORT). The successor reads its
 * configuration, opens the sockets and, once its server exists, sends SIGTERM to the old process,
 * which drains as usual. The sockets are never closed in between: a connection the old process
 * did not accept waits in the kernel's queue, which the new process accepts from. If the
 * successor fails (a bad configuration, exit 2), the old process simply keeps serving.
 */
#include "handover.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static char exe_path[PATH_MAX];
static pid_t last_child;

enum { MAX_FDS = 256 };

/* A positive number from the environment variable, or 0. */
static long env_number(const char *name)
{
    const char *v = getenv(name);
    if (v == NULL || *v < '0' || *v > '9')
        return 0;
    char *end;
    errno = 0;
    long n = strtol(v, &end, 10);
    return *end == '\0' && errno == 0 && n > 0 ? n : 0;
}

/* Whether systemd's descriptor i is named "tls" in LISTEN_FDNAMES ("name:name:..."). */
static int named_tls(const char *names, long i)
{
    for (; names != NULL && i > 0; i--)
        if ((names = strchr(names, ':')) != NULL)
            names++;
    return names != NULL && strncmp(names, "tls", 3) == 0 && (names[3] == ':' || names[3] == '\0');
}

unsigned hscd_inherited_fds(int *fds, unsigned cap, int *tls_fds, unsigned *ntls,
                            pid_t *handover_pid)
{
    ssize_t n = readlink("/proc/self/exe", exe_path, sizeof exe_path - 1);
    exe_path[n > 0 ? n : 0] = '\0';
    char *deleted = strstr(exe_path, " (deleted)");
    if (deleted != NULL)
        *deleted = '\0';

    *handover_pid = 0;
    *ntls = 0;
    long count = 0, count_tls = 0;
    const char *names = NULL;
    if (env_number("HSC_LISTEN_FDS") > 0) {
        count = env_number("HSC_LISTEN_FDS");
        count_tls = env_number("HSC_LISTEN_TLS_FDS");
        *handover_pid = (pid_t)env_number("HSC_HANDOVER_PID");
    } else if (env_number("LISTEN_FDS") > 0 && env_number("LISTEN_PID") == (long)getpid()) {
        count = env_number("LISTEN_FDS");
        names = getenv("LISTEN_FDNAMES");
    }
    unsigned k = 0;
    for (long i = 0; i < count + count_tls && i < MAX_FDS; i++) {
        if (i >= count || named_tls(names, i)) {
            if (*ntls < cap)
                tls_fds[(*ntls)++] = 3 + (int)i;
        } else if (k < cap) {
            fds[k++] = 3 + (int)i;
        }
    }
    /* Responders and successors must not see them (names points into the environment, so the
     * variables go after it is read). */
    unsetenv("HSC_LISTEN_FDS");
    unsetenv("HSC_LISTEN_TLS_FDS");
    unsetenv("HSC_HANDOVER_PID");
    unsetenv("LISTEN_FDS");
    unsetenv("LISTEN_PID");
    unsetenv("LISTEN_FDNAMES");
    return k;
}

void hscd_handover_done(unsigned n, pid_t old)
{
    if (old <= 0)
        return;
    if (getppid() != old) { /* a stale variable: never signal a process that did not start us */
        hsc_log_printf(HSC_LOG_WARN, "hand-over: pid %ld is not our parent; not stopping it",
                       (long)old);
        return;
    }
    hsc_log_printf(HSC_LOG_NOTICE, "hand-over: pid %ld took over %u socket%s from pid %ld",
                   (long)getpid(), n, n == 1 ? "" : "s", (long)old);
    kill(old, SIGTERM);
}

/* Whether the environment entry is one of the variables hscd sets for its successor. */
static int handover_var(const char *e)
{
    static const char *const names[] = {
        "HSC_LISTEN_FDS=", "HSC_LISTEN_TLS_FDS=", "HSC_HANDOVER_PID=",
        "LISTEN_FDS=",     "LISTEN_PID=",         "LISTEN_FDNAMES="};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strncmp(e, names[i], strlen(names[i])) == 0)
            return 1;
    return 0;
}

void hscd_handover(hsc_server_t *srv, void *data)
{
    char **argv = data;
    if (last_child > 0 && waitpid(last_child, NULL, WNOHANG) == last_child)
        last_child = 0; /* a successor that failed earlier */
    int fds[MAX_FDS];
    unsigned nclear = hsc_server_listen_fds(srv, fds, MAX_FDS);
    unsigned ntls = nclear > 0 ? hsc_server_listen_tls_fds(srv, fds + nclear, MAX_FDS - nclear) : 0;
    unsigned n = nclear + ntls; /* the --listen ones, then the --listen-tls ones */
    if (nclear == 0 || exe_path[0] == '\0') {
        hsc_log_printf(HSC_LOG_ERROR, "SIGUSR2: no socket or executable to hand over");
        return;
    }
    /* Everything the child needs is prepared here: after fork() it only calls dup2 and execve. */
    size_t nenv = 0;
    while (environ[nenv] != NULL)
        nenv++;
    char **envp = calloc(nenv + 4, sizeof *envp);
    int high[MAX_FDS];
    unsigned nhigh = 0;
    char count_var[40], tls_var[40], pid_var[40];
    snprintf(count_var, sizeof count_var, "HSC_LISTEN_FDS=%u", nclear);
    snprintf(tls_var, sizeof tls_var, "HSC_LISTEN_TLS_FDS=%u", ntls);
    snprintf(pid_var, sizeof pid_var, "HSC_HANDOVER_PID=%ld", (long)getpid());
    if (envp == NULL) {
        hsc_log_printf(HSC_LOG_ERROR, "SIGUSR2: out of memory");
        return;
    }
    size_t k = 0;
    for (size_t i = 0; i < nenv; i++)
        if (!handover_var(environ[i]))
            envp[k++] = environ[i];
    envp[k++] = count_var;
    if (ntls > 0)
        envp[k++] = tls_var;
    envp[k++] = pid_var;
    /* Copies above 3 + n, so that placing them at 3.. never overwrites one not yet placed. */
    for (; nhigh < n; nhigh++)
        if ((high[nhigh] = fcntl(fds[nhigh], F_DUPFD_CLOEXEC, 3 + (int)n)) < 0)
            break;
    pid_t pid = nhigh == n ? fork() : -1;
    if (pid == 0) {
        for (unsigned i = 0; i < n; i++)
            if (dup2(high[i], 3 + (int)i) < 0) /* dup2 clears close-on-exec on the copy */
                _exit(127);
        execve(exe_path, argv, envp);
        _exit(127);
    }
    int err = errno;
    for (unsigned i = 0; i < nhigh; i++)
        close(high[i]);
    free(envp);
    if (pid < 0) {
        hsc_log_printf(HSC_LOG_ERROR, "SIGUSR2: cannot start a successor: %s", strerror(err));
        return;
    }
    last_child = pid;
    hsc_log_printf(HSC_LOG_NOTICE,
                   "SIGUSR2: started pid %ld (%s) with %u listening socket%s (%u TLS); it stops "
                   "this process once it has them",
                   (long)pid, exe_path, n, n == 1 ? "" : "s", ntls);
}
