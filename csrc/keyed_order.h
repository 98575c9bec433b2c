/*
 * An epoch plan's full batches computed from their number: the C twin of
 * fastload/plan/batch_formula.py and of the cycle-walking Feistel of fastload/plan/bijection.py
 * (splitmix64's finaliser as round function, ROUNDS rounds, alternating unbalanced halves).
 * The loader's C threads compute a batch's record indices with it before gathering the batch
 * (~0.5 us per 64 records, against ~5 us of NumPy in a Python thread); tests check it against
 * EpochPlan.batches() bit for bit. Plain C, no Python object.
 */
#ifndef FASTLOAD_KEYED_ORDER_H
#define FASTLOAD_KEYED_ORDER_H

#include <stdint.h>

#define KEYED_ROUNDS 8 /* bijection.ROUNDS */

/* feistel_passes is also built for AVX-512 and AVX2, picked when the module loads (GCC's function
 * clones, on x86-64 Linux with glibc; "arch=x86-64-v4" needs GCC 11); elsewhere, Clang included,
 * the one portable build */
#if defined(__x86_64__) && defined(__linux__) && defined(__GLIBC__) && defined(__GNUC__) && !defined(__clang__) \
    && __GNUC__ >= 11
#define KEYED_CLONES __attribute__((target_clones("arch=x86-64-v4", "avx2", "default")))
#else
#define KEYED_CLONES
#endif

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

/* One round: the low `low` bits move to the top, and the rest, mixed with their keyed hash, down. */
static inline uint64_t feistel_round(uint64_t x, unsigned low, unsigned high, uint64_t key) {
    uint64_t lo = x & ((1ULL << low) - 1);
    return ((x >> low) ^ (splitmix_finalise(lo ^ key) & ((1ULL << high) - 1))) | (lo << high);
}

#define KEYED_CHUNK 64 /* records taken through the network together */

/* One pass of the Feistel network on [0, 2**(low + high)) over v[0 .. m), m <= KEYED_CHUNK, round
 * by round across the records: their rounds are independent, so the CPU overlaps them, and the
 * loops vectorise (the halves' widths alternate, rounds taken in pairs). Built for AVX-512 and
 * AVX2 too where GCC can pick at load time: 64 records, one pass and its cycle-walking, in 0.44 /
 * 0.59 / 0.98 us here, against 1.76 us walking each record to its end in turn (a chain of
 * multiplies, and a mispredicted branch on whether it needs another pass). */
KEYED_CLONES static void feistel_passes(uint64_t *v, int m, unsigned low, unsigned high, const uint64_t *keys) {
    for (int r = 0; r < KEYED_ROUNDS; r += 2) {
        for (int i = 0; i < m; i++) v[i] = feistel_round(v[i], low, high, keys[r]);
        for (int i = 0; i < m; i++) v[i] = feistel_round(v[i], high, low, keys[r + 1]);
    }
}

/* Cycle-walking of out[0 .. m): the power of two is under 2n, so under 2 passes a record on
 * average; each pass takes the records still at or above n, listed without a branch. */
static inline void keyed_chunk(const KeyedOrder *o, int64_t *out, int m) {
    uint64_t v[KEYED_CHUNK];
    int at[KEYED_CHUNK], left = m;
    for (int i = 0; i < m; i++) {
        v[i] = (uint64_t)out[i];
        at[i] = i;
    }
    while (left > 0) {
        feistel_passes(v, left, o->low, o->high, o->keys);
        int still = 0;
        for (int j = 0; j < left; j++) {
            out[at[j]] = (int64_t)v[j];
            v[still] = v[j];
            at[still] = at[j];
            still += v[j] >= (uint64_t)o->n;
        }
        left = still;
    }
}

/* Batch k's record indices into out[0 .. batch_size). */
static inline void keyed_batch(const KeyedOrder *o, int64_t k, int64_t *out) {
    int64_t p = o->base + k * o->global_batch;
    for (int64_t i = 0; i < o->batch_size; i++, p += o->nodes) {
        int64_t q = p;
        if (o->pad && q >= o->n) {
            int64_t over = q - o->n;
            q = (over - over % o->nodes + q % o->nodes) % o->n;
        }
        out[i] = q;
    }
    for (int64_t i = 0; o->shuffled && i < o->batch_size; i += KEYED_CHUNK)
        keyed_chunk(o, out + i, (int)(o->batch_size - i < KEYED_CHUNK ? o->batch_size - i : KEYED_CHUNK));
}

#endif
