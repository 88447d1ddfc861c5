/*
 * pubsub/chantable.h: the channel table both engines keep (memory.c, redis.c): an intrusive hash
 * table of channels by name. A channel embeds an hsc_chanent_t (its chain link and its name's
 * hash); the table is told where, from that link, the channel keeps its name (char[]) and the
 * name's length (size_t). Chains grow by doubling and rehashing when three quarters full. The
 * hash is the caller's (SipHash under the engine's key); the table only masks it. Not locked:
 * the engine's lock or loop guards it.
 */
#ifndef HSC_PUBSUB_CHANTABLE_H
#define HSC_PUBSUB_CHANTABLE_H

#include <stddef.h>
#include <stdint.h>

typedef struct hsc_chanent_s {
    struct hsc_chanent_s *next;
    uint64_t hash;
} hsc_chanent_t;

typedef struct hsc_chantable_s {
    hsc_chanent_t **slots;
    size_t cap, n;
    size_t name_off, len_off; /* an entry's name and its length, from its hsc_chanent_t */
} hsc_chantable_t;

/* 64 empty chains: 0 or HSC_ENOMEM. */
int hsc_chantable_init(hsc_chantable_t *t, size_t name_off, size_t len_off);
/* Frees the chains, not the entries. */
void hsc_chantable_free(hsc_chantable_t *t);
hsc_chanent_t *hsc_chantable_find(const hsc_chantable_t *t, const char *name, size_t len,
                                  uint64_t hash);
/* Room for one more entry (the chains doubled when past three quarters): 0 or HSC_ENOMEM. */
int hsc_chantable_reserve(hsc_chantable_t *t);
/* Adds `e` (not in the table, hash set) at the head of its chain. */
void hsc_chantable_insert(hsc_chantable_t *t, hsc_chanent_t *e);
/* Takes `e` (in the table) out. */
void hsc_chantable_remove(hsc_chantable_t *t, hsc_chanent_t *e);

#endif
