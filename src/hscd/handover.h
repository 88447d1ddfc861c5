/**
 * Listening sockets that outlive a restart (handover.c): systemd socket activation and hscd's own
 * hand-over to a successor on SIGUSR2 (docs/operations.md, "Restart without refusing anyone").
 */
#ifndef HSCD_HANDOVER_H
#define HSCD_HANDOVER_H

#include "hsc/server.h"

#include <sys/types.h>

/**
 * The listening sockets this process was given (LISTEN_FDS from systemd, HSC_LISTEN_FDS from an
 * older hscd), as descriptors into `fds`; their number (0: bind as usual). `*handover_pid` gets
 * the older hscd's pid, or 0. Removes the variables from the environment. Call once, first.
 */
unsigned hscd_inherited_fds(int *fds, unsigned cap, int *tls_fds, unsigned *ntls,
                            pid_t *handover_pid);

/** The server exists with the `n` inherited sockets: tells the older hscd (`old`) to drain. */
void hscd_handover_done(unsigned n, pid_t old);

/** SIGUSR2 (hsc_server_on_sigusr2): starts a successor with this server's sockets. */
void hscd_handover(hsc_server_t *srv, void *argv);

#endif
