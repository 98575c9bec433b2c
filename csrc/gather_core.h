/*
 * The bounds-checked row gather shared by fastload._native (one call per field, GIL released) and
 * fastload._gather_pool (worker threads that never hold the GIL). Plain C on int64 tables: no
 * Python objects, so a thread without the GIL may run it.
 *
 * Every copy reads [src, src + len) only after checking it lies inside [lo, hi), the bytes of the
 * block it belongs to, which the caller proved inside a mapping. The Python side validates the
 * shard index first, so these checks never fail for data fastload accepted; they keep a bug from
 * becoming a read outside the mapping (a crash, or another file's bytes), at the cost of a compare
 * per record, which no benchmark here can tell apart from noise (docs/format.md).
 */
#ifndef FASTLOAD_GATHER_CORE_H
#define FASTLOAD_GATHER_CORE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

static inline int inside(int64_t src, int64_t len, int64_t lo, int64_t hi) {
    return len >= 0 && src >= lo && src <= hi && hi - src >= len;
}

/* last index i in [lo, hi) with a[i] <= v (a sorted ascending, a[lo] <= v; lo when hi <= lo + 1),
 * without a branch on the comparisons (a conditional move): a batch's records land in random blocks,
 * so each step's branch was a coin toss, mispredicted half the time. The shard and block lookups of
 * 64 random records (7 shards of 73 blocks) took 3.2 us that way, 0.57 us this way. */
static inline ptrdiff_t last_le(const int64_t *a, ptrdiff_t lo, ptrdiff_t hi, int64_t v) {
    const int64_t *base = a + lo;
    for (ptrdiff_t n = hi - lo; n > 1;) { /* the answer lies in [base, base + n), and *base <= v */
        ptrdiff_t half = n / 2;
        base = base[half] <= v ? base + half : base;
        n -= half;
    }
    return base - a;
}

/* The source of record ``local`` of block b: block_addr[b] + (local - block_first[b]) * itemsize,
 * or -1 when that read would leave [block_lo[b], block_hi[b]) (or the arithmetic would wrap). */
static inline int64_t row_source(const int64_t *bf, const int64_t *ba, const int64_t *blo, const int64_t *bhi,
                                 ptrdiff_t b, int64_t local, ptrdiff_t itemsize) {
    int64_t pos = local - bf[b], off;
    if (pos < 0 || __builtin_mul_overflow(pos, (int64_t)itemsize, &off) || !inside(ba[b], 0, blo[b], bhi[b]) ||
        off > bhi[b] - ba[b] || !inside(ba[b] + off, itemsize, blo[b], bhi[b]))
        return -1;
    return ba[b] + off;
}

/* The global block tables of gather_multi: shard s's records start at ss[s] (ns + 1 entries), its
 * blocks are rows [slo[s], shi[s]) of the nb-row block tables (bf: first record, blo/bhi: bytes). */
typedef struct {
    const int64_t *ss, *slo, *shi, *bf, *blo, *bhi;
    ptrdiff_t ns, nb;
} BlockTables;

/* The first position of idx[0..n) outside [0, total records), or -1. */
static inline ptrdiff_t first_out_of_range(const BlockTables *t, const int64_t *idx, ptrdiff_t n) {
    int64_t total = t->ns >= 0 ? t->ss[t->ns] : 0;
    for (ptrdiff_t i = 0; i < n; i++)
        if (idx[i] < 0 || idx[i] >= total) return i;
    return -1;
}

/* Where record id (in range) lies: its shard in *s, its global block in *b (-1 for a shard with no
 * usable blocks), and the address of its itemsize bytes in the block's column ba[b], or -1 when
 * they would leave the block. */
static inline int64_t locate_row(const BlockTables *t, const int64_t *ba, int64_t id, ptrdiff_t itemsize,
                                 ptrdiff_t *s, ptrdiff_t *b) {
    *s = last_le(t->ss, 0, t->ns, id);
    *b = -1;
    int64_t local = id - t->ss[*s];
    if (!(0 <= t->slo[*s] && t->slo[*s] < t->shi[*s] && t->shi[*s] <= t->nb)) return -1;
    *b = last_le(t->bf, t->slo[*s], t->shi[*s], local);
    return row_source(t->bf, ba, t->blo, t->bhi, *b, local, itemsize);
}

#define GATHER_CHUNK 64    /* records located at once, before their copies */
#define PREFETCH_BYTES 256 /* of the next record, fetched while one is copied */

/* Copy itemsize bytes of each record idx[i] (in range: see first_out_of_range) from its block's
 * column (ba: the field's column address in every block) to dst + i * itemsize; blocks_out (or
 * NULL) gets each record's global block. Returns the first position whose read would leave its
 * block (nothing copied from there on), or -1. The records of a chunk are located first, then
 * copied, each copy starting the next record's first cache lines on their way (a non-temporal
 * prefetch: they are read once): a 64 x 4 KB batch of random records in 39 us against 49 us
 * copying each as soon as it is located, whose first lines were then a cache miss waited for. */
static inline ptrdiff_t gather_rows_multi(const BlockTables *t, const int64_t *ba, const int64_t *idx, ptrdiff_t n,
                                          ptrdiff_t itemsize, char *dst, int64_t *blocks_out) {
    int64_t src[GATHER_CHUNK];
    ptrdiff_t blk[GATHER_CHUNK];
    for (ptrdiff_t c = 0; c < n; c += GATHER_CHUNK) {
        ptrdiff_t m = n - c < GATHER_CHUNK ? n - c : GATHER_CHUNK, bad = -1, s;
        for (ptrdiff_t i = 0; i < m; i++) {
            src[i] = locate_row(t, ba, idx[c + i], itemsize, &s, &blk[i]);
            if (src[i] < 0) {
                bad = m = i;
                break;
            }
        }
        for (ptrdiff_t i = 0; i < m; i++) {
            for (ptrdiff_t line = 0; i + 1 < m && line < itemsize && line < PREFETCH_BYTES; line += 64)
                __builtin_prefetch((const void *)(intptr_t)(src[i + 1] + line), 0, 0);
            memcpy(dst + (c + i) * itemsize, (const void *)(intptr_t)src[i], (size_t)itemsize);
            if (blocks_out != NULL) blocks_out[c + i] = blk[i];
        }
        if (bad >= 0) return c + bad;
    }
    return -1;
}

/* A variable-size field's rows idx[0..n) (in range) from raw blocks whose column (ba) holds
 * block_n + 1 uint32 payload offsets, then the payloads: offsets[0..n] get the batch's offsets
 * from 0, *total their sum, and the payloads are copied back to back into dst only when *total
 * <= cap (else nothing is copied: the caller makes room). blocks_out (or NULL) gets each row's
 * global block; scratch holds 3 * n int64. Three passes, so the cache misses of many records
 * overlap (each record's pair and payload lie at random places of the mapping; one pass waits on
 * two misses per record in turn): locate every pair and prefetch it, read the pairs and prefetch
 * the payloads, copy. Returns the first position whose pair or payload would leave its block, or
 * -1. */
static inline ptrdiff_t gather_var_rows_multi(const BlockTables *t, const int64_t *ba, const int64_t *idx,
                                              ptrdiff_t n, int64_t *offsets, char *dst, int64_t cap,
                                              int64_t *blocks_out, int64_t *scratch, int64_t *total) {
    const int64_t *ss = t->ss, *shi = t->shi, *bf = t->bf, *blo = t->blo, *bhi = t->bhi;
    int64_t *src = scratch, *blk = scratch + n, *shard = scratch + 2 * n, sum = 0;
    *total = 0;
    for (ptrdiff_t i = 0; i < n; i++) {
        ptrdiff_t s, b;
        int64_t pair = locate_row(t, ba, idx[i], 4, &s, &b);
        if (pair < 0 || !inside(pair, 8, blo[b], bhi[b])) return i;
        __builtin_prefetch((const void *)(intptr_t)pair, 0, 0);
        src[i] = pair;
        blk[i] = b;
        shard[i] = s;
    }
    offsets[0] = 0;
    for (ptrdiff_t i = 0; i < n; i++) {
        ptrdiff_t b = blk[i], s = shard[i];
        uint32_t lo32, hi32;
        memcpy(&lo32, (const void *)(intptr_t)src[i], 4);
        memcpy(&hi32, (const void *)(intptr_t)(src[i] + 4), 4);
        int64_t block_n = (b + 1 < shi[s] ? bf[b + 1] : ss[s + 1] - ss[s]) - bf[b];
        int64_t start = ba[b] + (block_n + 1) * 4 + lo32, len = (int64_t)hi32 - (int64_t)lo32;
        if (block_n < 1 || !inside(start, len, blo[b], bhi[b])) return i;
        for (int64_t line = 0; line < len && line < 512; line += 64)
            __builtin_prefetch((const void *)(intptr_t)(start + line), 0, 0);
        src[i] = start;
        sum += len;
        offsets[i + 1] = sum;
        if (blocks_out != NULL) blocks_out[i] = b;
    }
    *total = sum;
    if (sum <= cap) {
        for (ptrdiff_t i = 0; i < n; i++) {
            int64_t len = offsets[i + 1] - offsets[i];
            memcpy(dst, (const void *)(intptr_t)src[i], (size_t)len);
            dst += len;
        }
    }
    return -1;
}

#endif
