/* Compiled by lib/tests/c_abi.rs with gcc against include/arrow.h and libarrow_cdn.a: prints
 * the layout and constants the header declares, then routes the keys given on the command
 * line through a real table. */
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "arrow.h"

#define SHOW(x) printf(#x "=%ld\n", (long)(x))

int main(int argc, char **argv) {
    SHOW(ARROW_ABI_VERSION);
    SHOW(arrow_abi_version());
    SHOW(sizeof(struct arrow_node));
    SHOW(sizeof(struct arrow_result));
    SHOW(sizeof(struct arrow_keys));
    SHOW(offsetof(struct arrow_node, name_len));
    SHOW(offsetof(struct arrow_node, port));
    SHOW(offsetof(struct arrow_result, node));
    SHOW(offsetof(struct arrow_result, mirrors));
    SHOW(offsetof(struct arrow_keys, cluster_key_len));
    SHOW(offsetof(struct arrow_keys, rule));
    SHOW(ARROW_E_ARG); SHOW(ARROW_E_CONFIG); SHOW(ARROW_E_NO_TABLE);
    SHOW(ARROW_E_TABLE_FOREIGN); SHOW(ARROW_E_TABLE_VERSION); SHOW(ARROW_E_STALE);
    SHOW(ARROW_E_NO_NODE); SHOW(ARROW_E_NO_RULE); SHOW(ARROW_E_BUFFER); SHOW(ARROW_E_INTERNAL);
    SHOW(ARROW_F_ERROR); SHOW(ARROW_F_OVERLOAD); SHOW(ARROW_F_SELF); SHOW(ARROW_F_MIRROR);
    SHOW(ARROW_ACT_SELF); SHOW(ARROW_ACT_PEER); SHOW(ARROW_ACT_MIRROR);
    SHOW(ARROW_ACT_OVERFLOW); SHOW(ARROW_ACT_LOCAL); SHOW(ARROW_Q_NEW_VIEWER);
    if (argc < 2) return 0;
    int err = 0;
    arrow_t *h = arrow_open(argv[1], &err);
    if (!h) { printf("open_error=%d %s\n", err, arrow_strerror(err)); return 1; }
    struct arrow_result r;
    for (int i = 2; i < argc; i++) {
        int st = arrow_lookup(h, argv[i], strlen(argv[i]), 0, &r);
        printf("route %s %d %u %u %s %s\n", argv[i], st, r.flags, r.action,
               r.node.name_len ? r.node.name : "-", r.node.addr_len ? r.node.addr : "-");
    }
    struct arrow_keys k;
    const char *path = "/assets3/matrix/manifest.mpd?a=b&c";
    arrow_route(h, "c.dx.claw.ac", 12, path, strlen(path), 0, &r, &k);
    printf("keys %s %u %.*s\n", k.cluster_key, k.domain_len, (int)k.hash_input_len,
           path + k.hash_input_offset);
    arrow_close(h);
    return 0;
}
