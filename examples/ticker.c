/*
 * A program on hsc's C client API (include/hsc/client.h): follows a channel of hscd and prints
 * each event with its id, across disconnects and server restarts (the client reconnects with
 * Last-Event-ID, as a browser's EventSource does), until it has printed COUNT events. hscd's
 * hsc.gap notice (docs/api.md: history was lost, e.g. across a restart) is printed too, but it is
 * not one of the channel's events and does not count.
 *
 *   build/ticker http://127.0.0.1:8000 news 5
 *
 * Built by default (CMakeLists.txt) so that it never rots; tests/integration/test_client.py runs
 * it against hscd.
 */
#include "hsc/client.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static hsc_client_t *client;

typedef struct ticker_s {
    long left;
} ticker_t;

static int on_event(void *user, const hsc_sse_msg_t *msg)
{
    ticker_t *t = user;
    printf("%s %s: %.*s\n", msg->id, msg->type, (int)msg->data_len, msg->data);
    fflush(stdout);
    /* A type is byte-exact (it may hold a NUL): compare with its length. */
    if (msg->type_len == 7 && memcmp(msg->type, "hsc.gap", 7) == 0)
        return 0;          /* the server's notice, not an event of the channel */
    return --t->left <= 0; /* non-zero stops the run */
}

static void on_notice(void *user, const char *msg)
{
    (void)user;
    fprintf(stderr, "ticker: %s\n", msg);
}

static void on_signal(int sig)
{
    (void)sig;
    hsc_client_stop(client); /* safe in a signal handler */
}

int main(int argc, char **argv)
{
    if (argc != 4 || atol(argv[3]) <= 0) {
        fprintf(stderr, "usage: %s BASE_URL CHANNEL COUNT\n", argv[0]);
        return 2;
    }
    char url[1024];
    snprintf(url, sizeof url, "%s/v1/events?channel=%s", argv[1], argv[2]);
    ticker_t t = {.left = atol(argv[3])};

    hsc_client_config_t cfg;
    hsc_client_config_init(&cfg);
    cfg.url = url;
    cfg.sse = 1;
    cfg.reconnect = 1;
    cfg.on_event = on_event;
    cfg.on_notice = on_notice;
    cfg.user = &t;
    if (hsc_client_new(&cfg, &client) != 0) {
        fprintf(stderr, "ticker: cannot create the client\n");
        return 1;
    }
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    int result = hsc_client_run(client);
    int status = 0;
    if (result != HSC_CLIENT_STOPPED && result != HSC_CLIENT_OK) {
        fprintf(stderr, "ticker: %s\n", hsc_client_error(client));
        status = 1;
    }
    hsc_client_free(client);
    return status;
}
