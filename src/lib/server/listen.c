/*
 * The server's listening sockets.
 *
 * Each worker thread runs its own libuv loop and accepts on its own listening socket; all the
 * sockets share one address through SO_REUSEPORT, so the kernel spreads new connections across
 * workers and no lock is taken on the accept path. A connection never leaves the loop that
 * accepted it.
 *
 * SO_REUSEPORT would also let a second hscd on the same port silently share it, so before binding,
 * hsc_server_new() probes the address with an ordinary socket: if that bind fails the address is
 * really in use and the error is reported. With port 0 the probe also picks the port that every
 * worker then binds.
 *
 * A process that takes over from another (cfg.listen_fds, and cfg.listen_tls_fds for --listen-tls)
 * adopts the sockets it inherited instead: worker i takes socket i, or with one socket every
 * worker a duplicate of it.
 */
#include "server/server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Parses "HOST:PORT", "[V6]:PORT" or ":PORT"; "localhost" means 127.0.0.1. */
static int parse_address(const char *s, struct sockaddr_storage *addr, char *host_out,
                         size_t host_cap, int *port_out)
{
    char host[64];
    const char *colon;
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (close == NULL || close[1] != ':' || (size_t)(close - s - 1) >= sizeof host)
            return HSC_EINVAL;
        memcpy(host, s + 1, (size_t)(close - s - 1));
        host[close - s - 1] = '\0';
        colon = close + 1;
    } else {
        colon = strrchr(s, ':');
        if (colon == NULL || (size_t)(colon - s) >= sizeof host)
            return HSC_EINVAL;
        memcpy(host, s, (size_t)(colon - s));
        host[colon - s] = '\0';
    }
    char *end;
    errno = 0;
    long port = strtol(colon + 1, &end, 10);
    if (colon[1] == '\0' || *end != '\0' || errno != 0 || port < 0 || port > 65535)
        return HSC_EINVAL;
    if (host[0] == '\0')
        strcpy(host, "0.0.0.0");
    if (strcmp(host, "localhost") == 0)
        strcpy(host, "127.0.0.1");
    if (uv_ip4_addr(host, (int)port, (struct sockaddr_in *)addr) != 0 &&
        uv_ip6_addr(host, (int)port, (struct sockaddr_in6 *)addr) != 0)
        return HSC_EINVAL;
    snprintf(host_out, host_cap, "%s", host);
    *port_out = (int)port;
    return 0;
}

int hsc_server_parse_listen(hsc_server_t *srv, const char *s)
{
    return parse_address(s, &srv->addr, srv->host, sizeof srv->host, &srv->port);
}

static void set_port(struct sockaddr_storage *ss, int port)
{
    if (ss->ss_family == AF_INET6)
        ((struct sockaddr_in6 *)ss)->sin6_port = htons((uint16_t)port);
    else
        ((struct sockaddr_in *)ss)->sin_port = htons((uint16_t)port);
}

static socklen_t addr_len(const struct sockaddr_storage *ss)
{
    return ss->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
}

/* Binds an ordinary socket to the address: fails if anyone listens there; resolves port 0. */
static int probe(struct sockaddr_storage *addr, int *port)
{
    int fd = socket(addr->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return uv_translate_sys_error(errno);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    int rc = 0;
    if (bind(fd, (struct sockaddr *)addr, addr_len(addr)) != 0) {
        rc = uv_translate_sys_error(errno);
    } else if (*port == 0) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof ss;
        getsockname(fd, (struct sockaddr *)&ss, &len);
        *port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                               : ((struct sockaddr_in *)&ss)->sin_port);
        set_port(addr, *port);
    }
    close(fd);
    return rc;
}

int hsc_server_probe_address(hsc_server_t *srv)
{
    return probe(&srv->addr, &srv->port);
}

/*
 * The --listen-tls address. Inherited TLS sockets (cfg.listen_tls_fds) give it. A hand-over from
 * an hscd that did not pass them (before HSC_LISTEN_TLS_FDS) binds it without a probe: the
 * process before holds it, and both accept on it through SO_REUSEPORT until that one drains.
 */
int hsc_server_listen_tls_setup(hsc_server_t *srv)
{
    if (srv->cfg.tls_cert == NULL) {
        HSC_LOG(HSC_LOG_ERROR, "--listen-tls needs --tls-cert and --tls-key");
        return HSC_ETLS;
    }
    if (srv->n_inherited_tls > 0) /* hsc_server_adopt_tls_sockets() took the address */
        return 0;
    int rc = parse_address(srv->cfg.listen_tls, &srv->addr_tls, srv->host_tls, sizeof srv->host_tls,
                           &srv->port_tls);
    if (rc == 0 && srv->n_inherited == 0)
        rc = probe(&srv->addr_tls, &srv->port_tls);
    return rc;
}

static void on_connection(uv_stream_t *listener, int status)
{
    hsc_worker_t *w = listener->data;
    if (status < 0) {
        HSC_LOG(HSC_LOG_WARN, "accept: %s", uv_strerror(status));
        return;
    }
    bool tls = listener == (uv_stream_t *)&w->listener_tls || w->srv->tls_main;
    if (tls && w->snap->tls_ctx != NULL) /* this loop's snapshot: the latest certificate */
        hsc_http_accept_tls(&w->http, listener, w->snap->tls_ctx);
    else
        hsc_http_accept(&w->http, listener);
}

/*
 * An inherited socket into `listener`: with as many sockets as workers, worker i takes socket i;
 * otherwise each worker a duplicate of socket i modulo their number (one: all share it).
 */
static int worker_adopt(hsc_worker_t *w, uv_tcp_t *listener, int *fds, unsigned n)
{
    int rc = uv_tcp_init(&w->loop, listener);
    if (rc != 0)
        return rc;
    listener->data = w;
    int fd;
    if (n > 1 && n == w->srv->nworkers) {
        fd = fds[w->index];
        fds[w->index] = -1;
    } else if ((fd = fcntl(fds[w->index % n], F_DUPFD_CLOEXEC, 3)) < 0) {
        return uv_translate_sys_error(errno);
    }
    if ((rc = uv_tcp_open(listener, fd)) != 0) {
        close(fd);
        return rc;
    }
    return uv_listen((uv_stream_t *)listener, 1024, on_connection);
}

/* Checks that fd is a listening TCP socket and gives its address; marks it close-on-exec. */
static int check_inherited(int fd, struct sockaddr_storage *ss)
{
    int type = 0, listening = 0;
    socklen_t len = sizeof type, slen = sizeof *ss;
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0 || type != SOCK_STREAM ||
        getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &(socklen_t){sizeof listening}) !=
            0 ||
        !listening || getsockname(fd, (struct sockaddr *)ss, &slen) != 0 ||
        (ss->ss_family != AF_INET && ss->ss_family != AF_INET6)) {
        HSC_LOG(HSC_LOG_ERROR, "inherited descriptor %d is not a listening TCP socket", fd);
        return HSC_EINVAL;
    }
    fcntl(fd, F_SETFD, FD_CLOEXEC);
    return 0;
}

/* Copies the n inherited sockets into *out and takes the address (host, port) from the first. */
static int adopt(const int *fds, unsigned n, int **out, unsigned *nout,
                 struct sockaddr_storage *addr, char *host, size_t host_cap, int *port)
{
    if ((*out = malloc(n * sizeof **out)) == NULL)
        return HSC_ENOMEM;
    *nout = n;
    memcpy(*out, fds, n * sizeof **out);
    for (unsigned i = 0; i < n; i++) {
        struct sockaddr_storage ss;
        if (check_inherited(fds[i], &ss) != 0)
            return HSC_EINVAL;
        if (i == 0)
            *addr = ss;
    }
    bool v6 = addr->ss_family == AF_INET6;
    void *a = v6 ? (void *)&((struct sockaddr_in6 *)addr)->sin6_addr
                 : (void *)&((struct sockaddr_in *)addr)->sin_addr;
    inet_ntop(addr->ss_family, a, host, (socklen_t)host_cap);
    *port = ntohs(v6 ? ((struct sockaddr_in6 *)addr)->sin6_port
                     : ((struct sockaddr_in *)addr)->sin_port);
    return 0;
}

int hsc_server_adopt_sockets(hsc_server_t *srv, const hsc_server_config_t *cfg)
{
    return adopt(cfg->listen_fds, cfg->n_listen_fds, &srv->inherited, &srv->n_inherited, &srv->addr,
                 srv->host, sizeof srv->host, &srv->port);
}

int hsc_server_adopt_tls_sockets(hsc_server_t *srv, const hsc_server_config_t *cfg)
{
    if (cfg->listen_tls == NULL) { /* --listen-tls was dropped from the configuration */
        HSC_LOG(HSC_LOG_WARN, "no --listen-tls: closing %u inherited TLS socket%s",
                cfg->n_listen_tls_fds, cfg->n_listen_tls_fds == 1 ? "" : "s");
        for (unsigned i = 0; i < cfg->n_listen_tls_fds; i++)
            close(cfg->listen_tls_fds[i]);
        return 0;
    }
    return adopt(cfg->listen_tls_fds, cfg->n_listen_tls_fds, &srv->inherited_tls,
                 &srv->n_inherited_tls, &srv->addr_tls, srv->host_tls, sizeof srv->host_tls,
                 &srv->port_tls);
}

/* A listener of worker w bound to `addr` with SO_REUSEPORT. */
static int worker_bind(hsc_worker_t *w, uv_tcp_t *listener, const struct sockaddr_storage *addr)
{
    int rc = uv_tcp_init_ex(&w->loop, listener, addr->ss_family);
    if (rc != 0)
        return rc;
    listener->data = w;
    uv_os_fd_t fd;
    int one = 1;
    if ((rc = uv_fileno((uv_handle_t *)listener, &fd)) != 0)
        return rc;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0)
        return uv_translate_sys_error(errno);
    if ((rc = uv_tcp_bind(listener, (const struct sockaddr *)addr, 0)) != 0)
        return rc;
    return uv_listen((uv_stream_t *)listener, 1024, on_connection);
}

int hsc_worker_listen(hsc_worker_t *w)
{
    hsc_server_t *srv = w->srv;
    int rc = srv->n_inherited > 0 ? worker_adopt(w, &w->listener, srv->inherited, srv->n_inherited)
                                  : worker_bind(w, &w->listener, &srv->addr);
    if (rc == 0 && srv->cfg.listen_tls != NULL)
        rc = srv->n_inherited_tls > 0
                 ? worker_adopt(w, &w->listener_tls, srv->inherited_tls, srv->n_inherited_tls)
                 : worker_bind(w, &w->listener_tls, &srv->addr_tls);
    return rc;
}

/* The workers' cleartext (or TLS) listeners; with one shared inherited socket, that one. */
static unsigned listener_fds(const hsc_server_t *srv, bool tls, int *fds, unsigned cap)
{
    unsigned n = 0;
    bool shared = (tls ? srv->n_inherited_tls : srv->n_inherited) == 1 ||
                  (tls && srv->n_inherited_tls > 1 && srv->n_inherited_tls != srv->nworkers);
    unsigned limit = tls && srv->n_inherited_tls > 1 ? srv->n_inherited_tls : 1;
    for (unsigned i = 0; i < srv->nworkers && n < cap && (!shared || n < limit); i++) {
        const uv_tcp_t *l = tls ? &srv->workers[i].listener_tls : &srv->workers[i].listener;
        uv_os_fd_t fd;
        if (l->type == UV_TCP && !uv_is_closing((const uv_handle_t *)l) &&
            uv_fileno((const uv_handle_t *)l, &fd) == 0)
            fds[n++] = fd;
    }
    return n;
}

unsigned hsc_server_listen_fds(const hsc_server_t *srv, int *fds, unsigned cap)
{
    return listener_fds(srv, false, fds, cap);
}

unsigned hsc_server_listen_tls_fds(const hsc_server_t *srv, int *fds, unsigned cap)
{
    return srv->cfg.listen_tls != NULL ? listener_fds(srv, true, fds, cap) : 0;
}

/* Whether the address is reachable from this machine only: 127.0.0.0/8, ::1, ::ffff:127.x. */
static bool is_loopback(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET)
        return ntohl(((const struct sockaddr_in *)ss)->sin_addr.s_addr) >> 24 == 127;
    const struct in6_addr *a = &((const struct sockaddr_in6 *)ss)->sin6_addr;
    return IN6_IS_ADDR_LOOPBACK(a) || (IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127);
}

/*
 * Everything is open by default (docs/security.md), which is what the demo on 127.0.0.1 wants;
 * on an address other machines can reach, say so once, before the "listening on" line.
 */
void hsc_server_warn_if_open(const hsc_server_t *srv)
{
    const hsc_server_config_t *c = &srv->cfg;
    if (is_loopback(&srv->addr) || c->publish_token != NULL || c->subscribe_token != NULL ||
        c->stream_token != NULL || c->jwt_key_len > 0)
        return;
    bool any = strcmp(srv->host, "0.0.0.0") == 0 || strcmp(srv->host, "::") == 0;
    HSC_LOG(HSC_LOG_WARN,
            "%s%s is not loopback and no token or JWT key is set: anyone who can reach port %d "
            "may publish, subscribe to every channel and ask the responder (/v1/stream). "
            "Protect them with --publish-token, --subscribe-token and --stream-token, or "
            "--jwt-key-file (docs/security.md), or listen on 127.0.0.1; /metrics stays open "
            "either way (keep the port private or put it behind a proxy)",
            srv->host, any ? " (every interface)" : "", srv->port);
}
