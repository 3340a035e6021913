/* The live handles: every context, variable and optimizer handed out and not yet freed, by
 * address. A destroy, or a call, on a handle that is gone (destroyed twice, or freed with its
 * context) is recognised here without reading the freed memory. An address that a later
 * allocation reuses looks live again: the check catches what it can, not everything. */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include "core_internal.h"

#define TOMBSTONE ((const void *)1)

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static const void **slots; /* open addressing, linear probing; NULL empty */
static size_t cap, used;   /* used: live entries and tombstones */
static uint64_t removals;  /* handles removed so far: clopt__handles_epoch */

static size_t slot_of(const void *h, size_t n) {
    uint64_t x = (uint64_t)(uintptr_t)h;
    return (size_t)((x >> 4) * 0x9e3779b97f4a7c15ULL >> 20) & (n - 1);
}

/* The slot holding h, or (when absent) the empty slot that ends its probe; -1 if none. */
static long find(const void *h) {
    if (!cap) return -1;
    for (size_t i = slot_of(h, cap), k = 0; k < cap; i = (i + 1) & (cap - 1), k++)
        if (!slots[i] || slots[i] == h) return (long)i;
    return -1;
}

static int grow(void) {
    size_t ncap = cap ? 2 * cap : 256;
    const void **ns = calloc(ncap, sizeof *ns);
    if (!ns) return -1;
    size_t live = 0;
    for (size_t i = 0; i < cap; i++) {
        if (!slots[i] || slots[i] == TOMBSTONE) continue;
        size_t j = slot_of(slots[i], ncap);
        while (ns[j]) j = (j + 1) & (ncap - 1);
        ns[j] = slots[i];
        live++;
    }
    free(slots);
    slots = ns;
    cap = ncap;
    used = live;
    return 0;
}

int clopt__handle_add(const void *h) {
    pthread_mutex_lock(&lock);
    int r = 0;
    if (2 * (used + 1) > cap) r = grow();
    if (r == 0) {
        long i = find(h);
        if (i >= 0 && !slots[i]) {
            slots[i] = h;
            used++;
        }
    }
    pthread_mutex_unlock(&lock);
    return r;
}

void clopt__handle_remove(const void *h) {
    pthread_mutex_lock(&lock);
    long i = find(h);
    if (i >= 0 && slots[i] == h) {
        slots[i] = TOMBSTONE;
        removals++;
    }
    pthread_mutex_unlock(&lock);
}

int clopt__handle_live(const void *h) {
    if (!h) return 0;
    pthread_mutex_lock(&lock);
    long i = find(h);
    int live = i >= 0 && slots[i] == h;
    pthread_mutex_unlock(&lock);
    return live;
}

size_t clopt__handles_first_dead(const void *const *h, size_t n) {
    pthread_mutex_lock(&lock);
    size_t i = 0;
    for (; i < n; i++) {
        if (!h[i]) continue;
        long k = find(h[i]);
        if (k < 0 || slots[k] != h[i]) break;
    }
    pthread_mutex_unlock(&lock);
    return i;
}

uint64_t clopt__handles_epoch(void) {
    pthread_mutex_lock(&lock);
    const uint64_t e = removals;
    pthread_mutex_unlock(&lock);
    return e;
}
