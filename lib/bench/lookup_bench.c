/*
 * lookup_bench.c — lookups per second of libarrow_cdn from C, on one core.
 *
 *   gcc -O2 -I lib/include lib/bench/lookup_bench.c target/release/libarrow_cdn.a \
 *       -lpthread -ldl -lm -o lookup_bench
 *   taskset -c 1 ./lookup_bench CONFIG [SECONDS] [KEYS]
 *
 * Keys are `bench.test` + 32 hex digits, the same as `arrow-bench placement` (the node's
 * in-process placement, the peer measured in the same run by bench/lib_bench.sh), cycled
 * through KEYS distinct keys. Prints lookups/s of arrow_lookup (cluster key) and of
 * arrow_route (host + path: host rule, hash-input regex, md5, then the lookup).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "arrow.h"

static uint64_t fmix64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    return x ^ (x >> 33);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s CONFIG [SECONDS] [KEYS]\n", argv[0]);
        return 2;
    }
    double seconds = argc > 2 ? atof(argv[2]) : 2.0;
    unsigned nkeys = argc > 3 ? (unsigned)atoi(argv[3]) : 65536;
    if (arrow_abi_version() != ARROW_ABI_VERSION) {
        fprintf(stderr, "ABI %u, header %d\n", arrow_abi_version(), ARROW_ABI_VERSION);
        return 1;
    }
    int err = 0;
    arrow_t *h = arrow_open(argv[1], &err);
    if (!h) {
        fprintf(stderr, "arrow_open: %s\n", arrow_strerror(err));
        return 1;
    }
    char (*keys)[64] = malloc((size_t)nkeys * 64);
    char (*paths)[64] = malloc((size_t)nkeys * 64);
    for (unsigned i = 0; i < nkeys; i++) {
        uint64_t a = fmix64((uint64_t)i + 1), b = fmix64(a);
        snprintf(keys[i], 64, "bench.test%016llx%016llx", (unsigned long long)a,
                 (unsigned long long)b);
        snprintf(paths[i], 64, "/v/title-%u/seg-%u.ts?token=%u", i, i % 7, i * 31);
    }
    struct arrow_result r;
    struct arrow_keys k;
    int st = arrow_lookup(h, keys[0], strlen(keys[0]), 0, &r);
    if (st != ARROW_OK) {
        fprintf(stderr, "lookup: %s\n", arrow_strerror(st));
        return 1;
    }
    size_t klen = strlen(keys[0]);
    uint64_t n = 0, sink = 0;
    double start = now_s(), t;
    do {
        for (unsigned j = 0; j < 4096; j++, n++) {
            const char *key = keys[n % nkeys];
            arrow_lookup(h, key, klen, 0, &r);
            sink += r.node.name_len + (uint64_t)r.action;
        }
        t = now_s();
    } while (t - start < seconds);
    double lookups = n / (t - start);

    const char *host = "cdn.bench.test";
    uint64_t m = 0;
    start = now_s();
    do {
        for (unsigned j = 0; j < 4096; j++, m++) {
            const char *p = paths[m % nkeys];
            arrow_route(h, host, 14, p, strlen(p), 0, &r, &k);
            sink += r.node.name_len;
        }
        t = now_s();
    } while (t - start < seconds);
    double routes = m / (t - start);
    printf("lib_lookups_per_s=%.0f lib_routes_per_s=%.0f keys=%u (sink %llu)\n", lookups,
           routes, nkeys, (unsigned long long)sink);
    arrow_close(h);
    free(keys);
    free(paths);
    return 0;
}
