/*
 * pubsub/memory_int.h: what memory.c (the engine), memory_list.c (listings) and memory_journal.c
 * (the journal's side) share. Private to the three; all of it under the engine's mutex unless
 * said otherwise.
 */
#ifndef HSC_PUBSUB_MEMORY_INT_H
#define HSC_PUBSUB_MEMORY_INT_H

#include "pubsub/engine.h"
#include "pubsub/chantable.h"
#include "pubsub/journal.h" /* the persistence hook: journal.c */
#include "pubsub/pubsub.h"  /* the history rings */

typedef struct mchan_s mchan_t;

/* A least-recently-used list of channels with history: head the least recent. */
typedef struct lru_s {
    mchan_t *head, *tail;
} lru_t;

struct mchan_s {
    hsc_chan_t pub;     /* what hubs see: their slots */
    atomic_uint refs;   /* the table's, and one per delivery on its way */
    hsc_chanent_t hent; /* its chain in the table, and its name's hash */
    bool in_table;
    unsigned pins; /* requests working on it under the lock: on no list */
    lru_t *lru;    /* the list it is on (idle or busy), or NULL */
    mchan_t *lru_prev, *lru_next;
    hsc_history_t hist;
    uint64_t since;      /* the last sequence number assigned before this channel existed */
    uint64_t last_pub;   /* now_ms() of its newest publish; 0: none */
    unsigned total_subs; /* under the lock */
    unsigned pending;    /* publishes waiting for the journal, under the lock */
    unsigned *nsubs;     /* per hub, under the lock */
    size_t name_len;
    char name[];
};

typedef struct memory_s {
    hsc_engine_t base;
    uv_mutex_t mu;
    hsc_chantable_t chans;
    uint64_t seq;           /* the last sequence number assigned */
    uint64_t committed;     /* the last one in history and delivered: subscriptions' cut */
    uint64_t lost_upto;     /* a resume from below it crosses records the journal lost */
    hsc_journal_t *journal; /* NULL: memory only */
    uint64_t freed_upto;    /* newest number evicted from a channel that was then freed */
    uint64_t published;
    size_t hist_events, hist_bytes;
    uint64_t epoch;
    lru_t idle, busy; /* channels with history, without and with subscribers */
    uint64_t evicted_channels, evicted_events;
    unsigned char hash_key[HSC_SIPHASH_KEY];
    /* Limits, copied from the configuration. */
    size_t history, history_bytes, history_total;
    uint64_t history_age_ms;
    unsigned max_channels;
} memory_t;

static inline uint64_t now_ms(void)
{
    return uv_hrtime() / 1000000u;
}

static inline mchan_t *mchan(hsc_chan_t *c)
{
    return (mchan_t *)((char *)c - offsetof(mchan_t, pub));
}

/* The channel of a table entry; NULL for NULL. */
static inline mchan_t *ment(hsc_chanent_t *e)
{
    return e != NULL ? (mchan_t *)((char *)e - offsetof(mchan_t, hent)) : NULL;
}

/* memory.c */
void hsc_memory_lru_unlink(mchan_t *ch);
void hsc_memory_chan_unref(mchan_t *ch);
mchan_t *hsc_memory_table_find(memory_t *m, const char *name, size_t len, uint64_t h);
mchan_t *hsc_memory_chan_get(memory_t *m, const char *name, size_t len, hsc_create_check_t *check,
                             int *rc);
void hsc_memory_hist_account(memory_t *m, mchan_t *ch, size_t count0, size_t bytes0);
void hsc_memory_chan_expire(memory_t *m, mchan_t *ch, uint64_t now);
void hsc_memory_unpin(memory_t *m, mchan_t *ch);
void hsc_memory_keep_budget(memory_t *m, mchan_t *ch);
unsigned hsc_memory_chan_deliver(memory_t *m, mchan_t *ch, uint64_t seq, hsc_frame_t *f,
                                 uint64_t *wake);
void hsc_memory_flush_hubs(hsc_engine_t *e, uint64_t wake);
uint64_t hsc_memory_wall_ms(void);
void hsc_memory_sweep(hsc_engine_t *e);
/* memory_list.c */
void hsc_memory_channels(hsc_engine_t *e, hsc_channels_t *q);

#endif
