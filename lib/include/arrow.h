/*
 * arrow.h — Arrow's routing for C, LuaJIT FFI (nginx + lua module) and PowerDNS (lua2).
 *
 * Link with -larrow_cdn (lib/ builds libarrow_cdn.so and libarrow_cdn.a). See lib/README.md.
 *
 *   arrow_t *h = arrow_open("/etc/arrow/arrow.toml", &err);   // the node's own config
 *   struct arrow_result r;
 *   arrow_route(h, host, host_len, uri, uri_len, 0, &r, NULL);
 *   switch (r.action) { case ARROW_ACT_PEER: proxy to r.node.addr; ... }
 *
 * Threads: a handle belongs to one thread at a time (open one per thread; opening is cheap).
 * Any number of processes and handles may read the same table at once: lookups take no lock,
 * make no system call and allocate nothing once warm (the table's records are seqlocked).
 * Strings in results are NUL-terminated and also carry their lengths.
 */
#ifndef ARROW_CDN_H
#define ARROW_CDN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The ABI this header describes; compare with arrow_abi_version() at run time. */
#define ARROW_ABI_VERSION 1

/* Status codes: 0 or negative. */
#define ARROW_OK               0
#define ARROW_E_ARG           -1  /* null pointer, non-UTF-8 host/path, bad argument */
#define ARROW_E_CONFIG        -2  /* config file unreadable or invalid (arrow_open) */
#define ARROW_E_NO_TABLE      -3  /* cluster table missing or unreadable */
#define ARROW_E_TABLE_FOREIGN -4  /* not a cluster table (foreign or truncated file) */
#define ARROW_E_TABLE_VERSION -5  /* table of a newer layout version than this library */
#define ARROW_E_STALE         -6  /* no record updated within the liveness window */
#define ARROW_E_NO_NODE       -7  /* no node with storage in service */
#define ARROW_E_NO_RULE       -8  /* no [[host]] rule serves the host */
#define ARROW_E_BUFFER        -9  /* output buffer too small */
#define ARROW_E_INTERNAL     -10  /* a bug, caught at the boundary */

/* Flags of a result. */
#define ARROW_F_ERROR    1u  /* a fallback answer; status says why */
#define ARROW_F_OVERLOAD 2u  /* the brpu guarantee would break: the answer is the overflow */
#define ARROW_F_SELF     4u  /* this node serves it (self-serving) */
#define ARROW_F_MIRROR   8u  /* this node mirrors: local copy filled from the designated node */

/* Actions. */
#define ARROW_ACT_SELF     1u  /* serve here: this node is designated */
#define ARROW_ACT_PEER     2u  /* proxy to node.addr (the designated node) */
#define ARROW_ACT_MIRROR   3u  /* serve here, fill from node.addr */
#define ARROW_ACT_OVERFLOW 4u  /* 302 to arrow_overflow_base() + request URI */
#define ARROW_ACT_LOCAL    5u  /* serve here, not designated (fallback without a CDN) */

/* Query options. */
#define ARROW_Q_NEW_VIEWER 1u  /* first request of a viewer's connection: check admission */

#define ARROW_NAME_BYTES   256
#define ARROW_ADDR_BYTES    48
#define ARROW_MIRRORS_MAX    8
#define ARROW_KEY_BYTES    288

typedef struct arrow arrow_t;

struct arrow_node {
    char     name[ARROW_NAME_BYTES];   /* node name */
    char     addr[ARROW_ADDR_BYTES];   /* "10.0.0.2:8080" or "[2001:db8::2]:8080"; "" if unknown */
    uint16_t name_len;
    uint16_t addr_len;
    uint16_t port;
    uint16_t reserved;
};

struct arrow_result {
    int32_t  status;          /* ARROW_OK or why ARROW_F_ERROR is set */
    uint32_t flags;           /* ARROW_F_* */
    uint32_t action;          /* ARROW_ACT_* */
    uint32_t mirrors_total;   /* in-service mirroring nodes besides the designated one */
    uint32_t mirrors_listed;  /* of which listed in mirrors[] (at most ARROW_MIRRORS_MAX) */
    uint32_t reserved;
    struct arrow_node node;   /* the designated node (empty for OVERFLOW and errors) */
    struct arrow_node mirrors[ARROW_MIRRORS_MAX];
};

struct arrow_keys {
    char     cluster_key[ARROW_KEY_BYTES]; /* domain + 32 hex digits of md5(hash input) */
    uint32_t cluster_key_len;
    uint32_t domain_len;         /* the domain is the key's first domain_len bytes */
    uint32_t hash_input_offset;  /* the hash input is path[offset .. offset + len] */
    uint32_t hash_input_len;
    uint32_t rule;               /* index of the [[host]] rule that matched */
};

uint32_t    arrow_abi_version(void);
const char *arrow_strerror(int code);

/* A handle over the node's config file (its [node] name, [[host]] rules, [cluster] table and
 * guarantee, [overflow] and [dns] zones). NULL with *err = ARROW_E_CONFIG on a bad file. A
 * missing or bad table is reported by lookups, not here. */
arrow_t *arrow_open(const char *config_path, int *err);
void     arrow_close(arrow_t *h);

/* ARROW_OK, or why lookups fall back right now. */
int arrow_state(arrow_t *h);

/* The route of a cluster key (any bytes, any length). Returns out->status. */
int arrow_lookup(arrow_t *h, const char *key, size_t key_len, uint32_t opts,
                 struct arrow_result *out);

/* The route of a request: host (the Host header) and path (the raw request target, query
 * included) through the node's host rules. keys may be NULL. Returns out->status. */
int arrow_route(arrow_t *h, const char *host, size_t host_len, const char *path,
                size_t path_len, uint32_t opts, struct arrow_result *out,
                struct arrow_keys *keys);

/* "scheme://cdn_host" of the overflow CDN; returns its length, 0 if none, or ARROW_E_BUFFER. */
int arrow_overflow_base(arrow_t *h, char *buf, size_t cap);
/* The name of the node this library runs beside; its length or ARROW_E_BUFFER. */
int arrow_self_name(arrow_t *h, char *buf, size_t cap);
/* 1 when the node's config has debug_headers = true, else 0. */
int arrow_debug_headers(arrow_t *h);
/* The node's cache key of a request (debug header only: this call allocates). */
int arrow_cache_key(arrow_t *h, const char *host, size_t host_len, const char *path,
                    size_t path_len, char *buf, size_t cap);

/* The records Arrow's own DNS responder answers for qname (class IN): lines
 * "TYPE\tTTL\tCONTENT\n" in buf. Returns the RCODE (0 NOERROR, 2 SERVFAIL, 3 NXDOMAIN,
 * 5 REFUSED) or a negative error. qtype 255 (ANY): every RRset of the name. Allocates. */
int arrow_dns_answer(arrow_t *h, const char *qname, size_t qname_len, uint16_t qtype,
                     char *buf, size_t cap);

#ifdef __cplusplus
}
#endif
#endif /* ARROW_CDN_H */
