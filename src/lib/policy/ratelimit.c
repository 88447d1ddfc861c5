/*
 * Per-client token buckets (docs/security.md, "Channel squatting"): how many channels one client
 * may create, `rate` a second with bursts of `burst`. The engine takes tokens under its lock
 * when a request would create channels (pubsub/engine.h, hsc_create_check_t); a request on
 * existing channels never comes here.
 *
 * A client is a 64-bit SipHash, under a key drawn per process, of its identity
 * (hsc_client_id_t: a JWT's subject, else the peer's address): no one outside can make two
 * clients share a bucket on purpose. The table is bounded: `clients` entries, preallocated,
 * indexed by an open hash of chains and ordered on a least-recently-used list; a new client past
 * that takes the least recently seen entry, whose client starts again with a full bucket. Tokens
 * are kept in thousandths so that a refill is integer arithmetic on the milliseconds elapsed.
 *
 * One mutex: any loop's requests may reach the engine, and the engine's lock is held when this
 * is called (lock order: engine, then this; nothing here calls out).
 */
#include "policy/policy.h"

#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <uv.h>

#define NIL UINT32_MAX

typedef struct bucket_s {
    uint64_t client;
    uint64_t milli;      /* tokens x 1000 at `last_ms` */
    uint64_t last_ms;    /* the last refill */
    uint32_t hnext;      /* the hash chain */
    uint32_t prev, next; /* the LRU list: head the least recently seen */
} bucket_t;

struct hsc_ratelimit_s {
    uv_mutex_t mu;
    uint64_t rate, burst; /* tokens a second; the most a bucket holds */
    uint32_t cap, used, nheads;
    uint32_t head, tail;
    uint32_t *heads; /* nheads chains (a power of two) */
    bucket_t *b;
    unsigned char key[HSC_SIPHASH_KEY];
};

int hsc_ratelimit_new(unsigned rate, unsigned burst, size_t clients, hsc_ratelimit_t **out)
{
    *out = NULL;
    if (rate == 0)
        return 0;
    if (clients == 0 || clients >= NIL)
        return HSC_EINVAL;
    hsc_ratelimit_t *rl = calloc(1, sizeof *rl);
    if (rl == NULL)
        return HSC_ENOMEM;
    rl->nheads = 1;
    while (rl->nheads < clients)
        rl->nheads *= 2;
    rl->heads = malloc(rl->nheads * sizeof *rl->heads);
    rl->b = malloc(clients * sizeof *rl->b);
    if (rl->heads == NULL || rl->b == NULL) {
        free(rl->heads);
        free(rl->b);
        free(rl);
        return HSC_ENOMEM;
    }
    for (uint32_t i = 0; i < rl->nheads; i++)
        rl->heads[i] = NIL;
    rl->cap = (uint32_t)clients;
    rl->head = rl->tail = NIL;
    rl->rate = rate;
    rl->burst = burst > 0 ? burst : 1;
    if (getrandom(rl->key, sizeof rl->key, GRND_NONBLOCK) != (ssize_t)sizeof rl->key) {
        uint64_t a = uv_hrtime() ^ (uint64_t)(uintptr_t)rl;
        memcpy(rl->key, &a, 8);
        memcpy(rl->key + 8, &a, 8);
    }
    uv_mutex_init(&rl->mu);
    *out = rl;
    return 0;
}

void hsc_ratelimit_free(hsc_ratelimit_t *rl)
{
    if (rl == NULL)
        return;
    uv_mutex_destroy(&rl->mu);
    free(rl->heads);
    free(rl->b);
    free(rl);
}

uint64_t hsc_ratelimit_key(const hsc_ratelimit_t *rl, const hsc_client_id_t *who)
{
    return hsc_siphash(rl->key, who->b, who->len);
}

static void lru_unlink(hsc_ratelimit_t *rl, uint32_t i)
{
    bucket_t *e = &rl->b[i];
    if (e->prev != NIL)
        rl->b[e->prev].next = e->next;
    else
        rl->head = e->next;
    if (e->next != NIL)
        rl->b[e->next].prev = e->prev;
    else
        rl->tail = e->prev;
}

static void lru_append(hsc_ratelimit_t *rl, uint32_t i)
{
    bucket_t *e = &rl->b[i];
    e->prev = rl->tail;
    e->next = NIL;
    if (rl->tail != NIL)
        rl->b[rl->tail].next = i;
    else
        rl->head = i;
    rl->tail = i;
}

/* The client's bucket, made (full) when it has none; the most recently seen from now on. */
static bucket_t *bucket_of(hsc_ratelimit_t *rl, uint64_t client, uint64_t now_ms)
{
    uint32_t *chain = &rl->heads[client & (rl->nheads - 1)];
    for (uint32_t i = *chain; i != NIL; i = rl->b[i].hnext) {
        if (rl->b[i].client == client) {
            lru_unlink(rl, i);
            lru_append(rl, i);
            return &rl->b[i];
        }
    }
    uint32_t i;
    if (rl->used < rl->cap) {
        i = rl->used++;
    } else { /* forget the least recently seen client */
        i = rl->head;
        lru_unlink(rl, i);
        uint32_t *pp = &rl->heads[rl->b[i].client & (rl->nheads - 1)];
        while (*pp != i)
            pp = &rl->b[*pp].hnext;
        *pp = rl->b[i].hnext;
    }
    rl->b[i] =
        (bucket_t){.client = client, .milli = rl->burst * 1000, .last_ms = now_ms, .hnext = *chain};
    *chain = i;
    lru_append(rl, i);
    return &rl->b[i];
}

uint64_t hsc_ratelimit_take(hsc_ratelimit_t *rl, uint64_t client, size_t n, uint64_t now_ms)
{
    if (rl == NULL)
        return 0;
    uint64_t need = (n < rl->burst ? n : rl->burst) * 1000; /* more than a burst: a full one */
    uv_mutex_lock(&rl->mu);
    bucket_t *e = bucket_of(rl, client, now_ms);
    if (now_ms > e->last_ms) {
        uint64_t add = (now_ms - e->last_ms) * rl->rate; /* thousandths: rate per 1000 ms */
        e->milli = e->milli + add < rl->burst * 1000 ? e->milli + add : rl->burst * 1000;
        e->last_ms = now_ms;
    }
    uint64_t wait = 0;
    if (e->milli >= need)
        e->milli -= need;
    else
        wait = (need - e->milli + rl->rate - 1) / rl->rate; /* ms until enough have come */
    uv_mutex_unlock(&rl->mu);
    return wait;
}
