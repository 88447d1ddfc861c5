/*
 * The channel table both engines keep (chantable.h): chains of intrusive entries, found by the
 * name's hash, then its length and bytes.
 */
#include "pubsub/chantable.h"
#include "hsc/hsc.h" /* HSC_ENOMEM */

#include <stdlib.h>
#include <string.h>

int hsc_chantable_init(hsc_chantable_t *t, size_t name_off, size_t len_off)
{
    t->cap = 64;
    t->n = 0;
    t->name_off = name_off;
    t->len_off = len_off;
    t->slots = calloc(t->cap, sizeof *t->slots);
    return t->slots != NULL ? 0 : HSC_ENOMEM;
}

void hsc_chantable_free(hsc_chantable_t *t)
{
    free(t->slots);
    t->slots = NULL;
}

hsc_chanent_t *hsc_chantable_find(const hsc_chantable_t *t, const char *name, size_t len,
                                  uint64_t hash)
{
    for (hsc_chanent_t *e = t->slots[hash & (t->cap - 1)]; e != NULL; e = e->next) {
        const char *base = (const char *)e;
        if (e->hash == hash && *(const size_t *)(base + t->len_off) == len &&
            memcmp(base + t->name_off, name, len) == 0)
            return e;
    }
    return NULL;
}

int hsc_chantable_reserve(hsc_chantable_t *t)
{
    if (t->n + 1 <= t->cap / 4 * 3)
        return 0;
    size_t cap = t->cap * 2;
    hsc_chanent_t **s = calloc(cap, sizeof *s);
    if (s == NULL)
        return HSC_ENOMEM;
    for (size_t i = 0; i < t->cap; i++) {
        for (hsc_chanent_t *e = t->slots[i], *next; e != NULL; e = next) {
            next = e->next;
            e->next = s[e->hash & (cap - 1)];
            s[e->hash & (cap - 1)] = e;
        }
    }
    free(t->slots);
    t->slots = s;
    t->cap = cap;
    return 0;
}

void hsc_chantable_insert(hsc_chantable_t *t, hsc_chanent_t *e)
{
    e->next = t->slots[e->hash & (t->cap - 1)];
    t->slots[e->hash & (t->cap - 1)] = e;
    t->n++;
}

void hsc_chantable_remove(hsc_chantable_t *t, hsc_chanent_t *e)
{
    hsc_chanent_t **pp = &t->slots[e->hash & (t->cap - 1)];
    while (*pp != e)
        pp = &(*pp)->next;
    *pp = e->next;
    t->n--;
}
