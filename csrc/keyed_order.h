/*
 * An epoch plan's full batches computed from their number: the C twin of
 * fastload/plan/batch_formula.py and of the cycle-walking Feistel of fastload/plan/bijection.py
 * (splitmix64's finaliser as round function, ROUNDS rounds, alternating unbalanced halves).
 * The loader's C threads compute a batch's record indices with it before gathering the batch
 * (~1 us per 64 records, against ~5 us of NumPy in a Python thread); tests check it against
 * EpochPlan.batches() bit for bit. Plain C, no Python object.
 */
#ifndef FASTLOAD_KEYED_ORDER_H
#define FASTLOAD_KEYED_ORDER_H

#include <stdint.h>

#define KEYED_ROUNDS 8 /* bijection.ROUNDS */

typedef struct {
    int64_t count, batch_size, base, global_batch, nodes, n;
    int pad;       /* positions >= n repeat the epoch's start, keeping their residue modulo nodes */
    int shuffled;  /* 0: the record at position p is p */
    unsigned low, high;
    uint64_t keys[KEYED_ROUNDS];
} KeyedOrder;

static inline uint64_t splitmix_finalise(uint64_t x) {
    x ^= x >> 30;
    x *= 0xBF58476D1CE4E5B9ULL;
    x ^= x >> 27;
    x *= 0x94D049BB133111EBULL;
    return x ^ (x >> 31);
}

/* One pass of the Feistel network on [0, 2**(low + high)). */
static inline uint64_t feistel_pass(uint64_t x, unsigned low, unsigned high, const uint64_t *keys) {
    for (int r = 0; r < KEYED_ROUNDS; r++) {
        uint64_t lo = x & ((1ULL << low) - 1);
        x >>= low; /* the high half */
        x ^= splitmix_finalise(lo ^ keys[r]) & ((1ULL << high) - 1);
        x |= lo << high; /* the halves swap, and their widths with them */
        unsigned t = low;
        low = high;
        high = t;
    }
    return x;
}

/* Batch k's record indices into out[0 .. batch_size). */
static inline void keyed_batch(const KeyedOrder *o, int64_t k, int64_t *out) {
    const uint64_t n = (uint64_t)o->n;
    int64_t p = o->base + k * o->global_batch;
    for (int64_t i = 0; i < o->batch_size; i++, p += o->nodes) {
        int64_t q = p;
        if (o->pad && q >= o->n) {
            int64_t over = q - o->n;
            q = (over - over % o->nodes + q % o->nodes) % o->n;
        }
        uint64_t x = (uint64_t)q;
        if (o->shuffled) {
            do /* cycle-walking: the power of two is under 2n, under 2 passes on average */
                x = feistel_pass(x, o->low, o->high, o->keys);
            while (x >= n);
        }
        out[i] = (int64_t)x;
    }
}

#endif
