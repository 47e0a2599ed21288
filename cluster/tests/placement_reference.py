#!/usr/bin/env python3
"""Independent reference implementation of Arrow's placement, following cluster/PLACEMENT.md
section by section (it shares no code with the Rust crate and never calls it), that writes the
test vectors in cluster/tests/placement_vectors.json.

Standard library only. Usage:

    python3 cluster/tests/placement_reference.py            # rewrite the JSON next to this file
    python3 cluster/tests/placement_reference.py --stdout   # print it instead

cluster/tests/placement_vectors.rs checks that the Rust placement agrees with every vector and
that this script's output equals the committed file.
"""

import hashlib
import json
import os
import struct
import sys

MASK64 = (1 << 64) - 1

# PLACEMENT.md §2: constants.
FNV_OFFSET = 0xCBF29CE484222325
FNV_PRIME = 0x00000100000001B3
NODE_SALT = 0x9E3779B97F4A7C15
FMIX_C1 = 0xFF51AFD7ED558CCD
FMIX_C2 = 0xC4CEB9FE1A85EC53
SPLITMIX_GAMMA = 0x9E3779B97F4A7C15
LN2 = 0.6931471805599453  # the f64 nearest ln 2: bits 0x3fe62e42fefa39ef
SQRT2 = 1.4142135623730951  # the f64 nearest sqrt 2: bits 0x3ff6a09e667f3bcd
TWO_POW_MINUS_53 = 1.0 / 9007199254740992.0  # exactly 2^-53


def f64_bits(x):
    return struct.unpack("<Q", struct.pack("<d", x))[0]


def f64_from_bits(b):
    return struct.unpack("<d", struct.pack("<Q", b))[0]


# --- §1 the cluster key -------------------------------------------------------------------------


def cluster_key(domain, hash_input):
    return domain + hashlib.md5(hash_input.encode("utf-8")).hexdigest()


# --- §2 hashes ----------------------------------------------------------------------------------


def fnv1a64(data):
    h = FNV_OFFSET
    for b in data:
        h = ((h ^ b) * FNV_PRIME) & MASK64
    return h


def fmix64(x):
    x ^= x >> 33
    x = (x * FMIX_C1) & MASK64
    x ^= x >> 33
    x = (x * FMIX_C2) & MASK64
    return x ^ (x >> 33)


def node_hash(name):
    return fmix64(fnv1a64(name.encode("utf-8")) ^ NODE_SALT)


def hrw_hash(key, name):
    return fmix64(fnv1a64(key.encode("utf-8")) ^ node_hash(name))


# --- §3 hash -> u -------------------------------------------------------------------------------


def unit(h):
    # float(h >> 11) is exact (< 2^53); "+ 0.5" rounds to nearest, ties to even, like any IEEE-754
    # double addition; the product with 2^-53 is exact.
    return (float(h >> 11) + 0.5) * TWO_POW_MINUS_53


# --- §4 the portable logarithm ------------------------------------------------------------------


def ln_portable(x):
    bits = f64_bits(x)
    e = ((bits >> 52) & 0x7FF) - 1023
    m = f64_from_bits((bits & 0x000FFFFFFFFFFFFF) | 0x3FF0000000000000)
    if m > SQRT2:
        m = m / 2.0
        e += 1
    s = (m - 1.0) / (m + 1.0)
    s2 = s * s
    term = s
    total = 0.0
    k = 1.0
    while k < 40.0:
        total = total + term / k
        term = term * s2
        k = k + 2.0
    return 2.0 * total + float(e) * LN2


# --- §5 score, ranking, designated --------------------------------------------------------------


def score(key, name, weight):
    ln_u = ln_portable(unit(hrw_hash(key, name)))
    if ln_u == 0.0:
        return float("-inf")  # u == 1.0: -w / 0.0 in IEEE-754
    return -float(weight) / ln_u


def ranked(nodes, key):
    cands = [n for n in nodes if n["in_service"] and n["weight"] > 0]
    # Higher score first; equal scores: smaller name (bytewise) first. Python's sort is stable.
    return sorted(cands, key=lambda n: (-score(key, n["name"], n["weight"]), n["name"].encode()))


def admits(n, guarantee):
    return guarantee == 0 or n["capacity_bps"] // (n["users"] + 1) >= guarantee


def designated(nodes, key, guarantee):
    for n in ranked(nodes, key):
        if admits(n, guarantee):
            return n
    return None


# --- §6 headroom pick ---------------------------------------------------------------------------


def splitmix64(seed):
    return fmix64((seed + SPLITMIX_GAMMA) & MASK64)


def pick_by_headroom_bounded(nodes, seed, guarantee):
    eligible = [n for n in nodes if n["in_service"] and admits(n, guarantee)]

    def headroom(n):
        per_user = n["capacity_bps"] // (n["users"] + 1)
        return max(per_user - guarantee, 0) + 1

    total = sum(headroom(n) for n in eligible)
    if total == 0:
        return None
    point = (splitmix64(seed) * total) >> 64
    for n in eligible:
        h = headroom(n)
        if point < h:
            return n
        point -= h
    raise AssertionError("unreachable: point < total")


# --- vector generation --------------------------------------------------------------------------

TIB = 1 << 40
GBPS = 1_000_000_000


def node(name, weight, capacity_bps=10 * GBPS, users=0, in_service=True):
    return {
        "name": name,
        "weight": weight,
        "in_service": in_service,
        "capacity_bps": capacity_bps,
        "users": users,
    }


def realistic_keys(count, salt):
    """Cluster keys as the server derives them: domain + md5 hex of the hash input."""
    domains = ["claw.ac", "foo.com", "video.example.net", "cdn-test.org", "127.0.0.1"]
    shapes = [
        "/assets{a}/title-{i}",
        "/vod/{i:06d}",
        "/live/ch{a}-{i}",
        "/assets3/matrix-{i}",
        "/{a}/{i}",
    ]
    keys = []
    for i in range(count):
        a = (i * 7 + salt) % 11
        domain = domains[(i + salt) % len(domains)]
        hash_input = shapes[(i // 5 + salt) % len(shapes)].format(a=a, i=i + 1000 * salt)
        keys.append(cluster_key(domain, hash_input))
    return keys


# Keys every set also carries: the seed example, an empty key, odd but legal strings.
EXTRA_KEYS = [
    "claw.acaa22fad1ed4a441d54fa664f53d5b0ee",
    "",
    "a",
    "foo.com",
    "foo.com00000000000000000000000000000000",
    "foo.comffffffffffffffffffffffffffffffff",
]


def key_list(salt, count=250):
    return EXTRA_KEYS + realistic_keys(count - len(EXTRA_KEYS), salt)


def node_sets():
    sets = []
    sets.append(
        {
            "name": "one node",
            "nodes": [node("n01.fra.hw.hyvd.net", 4 * TIB)],
            "guarantees": [0, 10 * GBPS, 10 * GBPS + 1],
        }
    )
    sets.append(
        {
            "name": "two nodes, equal weights",
            "nodes": [node("a.example", 1), node("b.example", 1, users=3)],
            "guarantees": [0, 2 * GBPS, 3 * GBPS],
        }
    )
    sets.append(
        {
            "name": "the placement.txt fixture set",
            "nodes": [
                node("n01.lax.hw.bar.net", 4 * TIB),
                node("n02.lax.hw.bar.net", 4 * TIB),
                node("n03.lax.hw.bar.net", 8 * TIB),
                node("n04.lax.hw.bar.net", 2 * TIB),
                node("n05.lax.hw.bar.net", 16 * TIB),
            ],
            "guarantees": [0],
        }
    )
    sets.append(
        {
            "name": "seven nodes: weight 0, out of service, loaded",
            "nodes": [
                node("n01.ams.hw.hyvd.net", 3 * TIB, users=10),
                node("n02.ams.hw.hyvd.net", 0),
                node("n03.ams.hw.hyvd.net", 3 * TIB, in_service=False),
                node("n04.ams.hw.hyvd.net", 1 * TIB, capacity_bps=40 * GBPS, users=7),
                node("n05.ams.hw.hyvd.net", 6 * TIB, users=1999),
                node("n06.ams.hw.hyvd.net", 3 * TIB, capacity_bps=1 * GBPS),
                node("n07.ams.hw.hyvd.net", 0, in_service=False),
            ],
            "guarantees": [0, 5_000_000, 500_000_000, 1 * GBPS, 5 * GBPS, 6 * GBPS],
        }
    )
    sets.append(
        {
            "name": "twelve nodes, all weights equal",
            "nodes": [
                node(f"edge{i:02d}.par.example.com", 2 * TIB, users=(i * 37) % 50)
                for i in range(1, 13)
            ],
            "guarantees": [0, 200_000_000, 250_000_000, 400_000_000],
        }
    )
    twenty = []
    pops = ["lax", "fra", "sin", "gru"]
    for i in range(20):
        w = [1, 2, 4, 8, 0][i % 5] * TIB + (i * 123_456_789)
        if i % 5 == 4:
            w = 0
        twenty.append(
            node(
                f"n{i + 1:02d}.{pops[i % 4]}.hw.hyvd.net",
                w,
                capacity_bps=[10, 25, 40, 100][i % 4] * GBPS,
                users=50 + (i * 997) % 3000,
                in_service=(i % 7 != 3),
            )
        )
    sets.append(
        {
            "name": "twenty nodes, mixed weights, capacities and load",
            "nodes": twenty,
            "guarantees": [0, 3_000_000, 8_000_000, 20_000_000, 60_000_000],
        }
    )
    sets.append(
        {
            "name": "weights beyond 2^53 (rounded to f64) and capacities near u64::MAX",
            "nodes": [
                node("big1.example", MASK64, capacity_bps=MASK64),
                node("big2.example", MASK64 - 1, capacity_bps=MASK64, users=1),
                node("big3.example", (1 << 53) + 1, capacity_bps=MASK64 - 5),
                node("small.example", 1),
            ],
            "guarantees": [0, 1 << 62, 1 << 63],
        }
    )
    sets.append(
        {
            "name": "headroom at the margin: tiny capacities, per-user rate equal to the guarantee",
            "nodes": [
                node("h1.example", 1, capacity_bps=1),
                node("h2.example", 2, capacity_bps=2),
                node("h3.example", 3, capacity_bps=6, users=2),
                node("h4.example", 0, capacity_bps=9, users=2),
                node("h5.example", 5, capacity_bps=7, users=1),
                node("h6.example", 4, capacity_bps=0),
            ],
            "guarantees": [0, 1, 2, 3, 4],
        }
    )
    sets.append(
        {
            "name": "nothing eligible: weight 0 or out of service",
            "nodes": [
                node("z1.example", 0),
                node("z2.example", 5 * TIB, in_service=False),
                node("z3.example", 0, users=5),
            ],
            "guarantees": [0, 1 * GBPS],
        }
    )
    return sets


HEADROOM_SEEDS = list(range(0, 64)) + [
    0x5EED,
    1 << 32,
    (1 << 63) - 1,
    1 << 63,
    MASK64 - 0x9E3779B97F4A7C15,  # splitmix64 input wraps to 0
    MASK64 - 1,
    MASK64,
]


def index_or_none(nodes, n):
    return None if n is None else nodes.index(n)


def build_set(s, salt):
    nodes = s["nodes"]
    vectors = []
    for key in key_list(salt):
        vectors.append(
            {
                "key": key,
                "order": [nodes.index(n) for n in ranked(nodes, key)],
                "designated": [index_or_none(nodes, designated(nodes, key, g)) for g in s["guarantees"]],
            }
        )
    picks = []
    for g in s["guarantees"]:
        picks.append(
            {
                "guarantee_bps": g,
                "picks": [
                    index_or_none(nodes, pick_by_headroom_bounded(nodes, seed, g)) for seed in HEADROOM_SEEDS
                ],
            }
        )
    return {
        "name": s["name"],
        "nodes": nodes,
        "guarantees_bps": s["guarantees"],
        "vectors": vectors,
        "headroom_seeds": HEADROOM_SEEDS,
        "headroom": picks,
    }


def tie_cases():
    """Node pairs whose scores are exactly equal for one key, so the name decides (§5).

    Equal scores for distinct names need `w_a / ln(u_a) == w_b / ln(u_b)` in f64. With weights
    near 2^52 the integers are dense enough that some `w_b` reproduces `w_a`'s score exactly.
    """
    cases = []
    keys = [cluster_key("claw.ac", f"/assets/tie-{i}") for i in range(40)]
    names = [("m1.tie.example", "m2.tie.example"), ("zz.example", "aa.example")]
    for ki, key in enumerate(keys):
        a_name, b_name = names[ki % 2]
        w_a = (1 << 52) + 12345 * (ki + 1)
        target = score(key, a_name, w_a)
        ln_b = ln_portable(unit(hrw_hash(key, b_name)))
        guess = int(round(target * -ln_b))
        for w_b in range(guess - 4, guess + 5):
            if 0 < w_b < (1 << 53) and score(key, b_name, w_b) == target:
                nodes = [node(a_name, w_a), node(b_name, w_b)]
                order = [n["name"] for n in ranked(nodes, key)]
                assert order == sorted([a_name, b_name])
                cases.append(
                    {
                        "key": key,
                        "nodes": nodes,
                        "score_bits": f"{f64_bits(target):016x}",
                        "order": order,
                    }
                )
                break
        if len(cases) == 12:
            break
    assert len(cases) >= 6, len(cases)
    return cases


def hash_vectors():
    out = []
    pairs = [
        ("", ""),
        ("a", "n01.lax.hw.hyvd.net"),
        ("claw.acaa22fad1ed4a441d54fa664f53d5b0ee", "n01.lax.hw.hyvd.net"),
        ("claw.acaa22fad1ed4a441d54fa664f53d5b0ee", "n02.lax.hw.hyvd.net"),
        ("foo.coma4d765bdd15f9069d0fc0f755a8e83f9", "n01.lax.hw.bar.net"),
        ("foo.coma4d765bdd15f9069d0fc0f755a8e83f9", "n05.lax.hw.bar.net"),
    ]
    for i in range(24):
        pairs.append((cluster_key("claw.ac", f"/assets/{i}"), f"n{i % 7:02d}.x.example"))
    weights = [1, 2 * TIB, 16 * TIB, (1 << 53) + 1, MASK64]
    for i, (key, name) in enumerate(pairs):
        h = hrw_hash(key, name)
        u = unit(h)
        w = weights[i % len(weights)]
        out.append(
            {
                "key": key,
                "name": name,
                "weight": w,
                "fnv1a64_key": f"{fnv1a64(key.encode()):016x}",
                "node_hash": f"{node_hash(name):016x}",
                "hrw_hash": f"{h:016x}",
                "u_bits": f"{f64_bits(u):016x}",
                "ln_u_bits": f"{f64_bits(ln_portable(u)):016x}",
                "score_bits": f"{f64_bits(score(key, name, w)):016x}",
                "score": repr(score(key, name, w)),
            }
        )
    return out


def unit_vectors():
    """The hash -> u mapping at its edges, including the rounding of h >> 11 >= 2^52."""
    hashes = [
        0,
        (1 << 11) - 1,
        1 << 11,
        (1 << 63) - 1,
        1 << 63,
        (1 << 63) + (1 << 11),
        (1 << 63) + (2 << 11),
        (1 << 63) + (3 << 11),
        MASK64 - (1 << 11),
        MASK64,
        0x0123456789ABCDEF,
        0xFEDCBA9876543210,
    ]
    out = []
    for h in hashes:
        u = unit(h)
        ln_u = ln_portable(u)
        out.append(
            {
                "hash": f"{h:016x}",
                "u_bits": f"{f64_bits(u):016x}",
                "u": repr(u),
                "ln_u_bits": f"{f64_bits(ln_u):016x}",
            }
        )
    return out


def ln_vectors():
    xs = [2.0**-54, 1e-16, 1e-9, 0.001, 0.1, 0.25, 0.5, 0.7071067811865475, 0.7071067811865476]
    xs += [0.75, 0.9, 0.999999, 1.0 - 2.0**-53, 1.0, 1.4142135623730951, 1.4142135623730954, 2.0]
    xs += [10.0, 12345.678]
    return [
        {"x_bits": f"{f64_bits(x):016x}", "x": repr(x), "ln_bits": f"{f64_bits(ln_portable(x)):016x}"}
        for x in xs
    ]


def fmix_vectors():
    xs = [0, 1, 2, NODE_SALT, 1 << 63, MASK64, 0x0123456789ABCDEF]
    out = [{"fmix64_in": f"{x:016x}", "fmix64_out": f"{fmix64(x):016x}"} for x in xs]
    for x in [0, 1, 0x5EED, MASK64]:
        out.append({"splitmix64_in": f"{x:016x}", "splitmix64_out": f"{splitmix64(x):016x}"})
    return out


def key_derivations():
    cases = [
        ("claw.ac", "/assets3/matrix"),
        ("foo.com", "/assets/matrix"),
        ("foo.com", "/assets/title-0"),
        ("foo.com", ""),
        ("127.0.0.1", "/a/b"),
        ("video.example.net", "/vod/000042"),
        ("claw.ac", "/live/ch3 space/%20x"),
    ]
    return [{"domain": d, "hash_input": h, "cluster_key": cluster_key(d, h)} for d, h in cases]


def document():
    sets = [build_set(s, salt) for salt, s in enumerate(node_sets())]
    return {
        "about": "Arrow placement test vectors; spec: cluster/PLACEMENT.md. Generated by "
        "cluster/tests/placement_reference.py (an independent Python implementation). "
        "Hashes are 16 lowercase hex digits; f64 values are given by their IEEE-754 bits "
        "(*_bits, hex) and, for reading, their shortest decimal form. In 'sets', nodes are "
        "named by their index in the set's 'nodes' list: 'order' is the full placement "
        "order (home first); 'designated'[i] is the designated node at guarantees_bps[i] "
        "(null: overflow); headroom[i].picks[j] is pick_by_headroom_bounded(nodes, "
        "headroom_seeds[j], headroom[i].guarantee_bps) (null: overflow).",
        "key_derivations": key_derivations(),
        "fmix_vectors": fmix_vectors(),
        "ln_vectors": ln_vectors(),
        "unit_vectors": unit_vectors(),
        "hash_vectors": hash_vectors(),
        "tie_cases": tie_cases(),
        "sets": sets,
    }


def render(doc):
    # One vector per line keeps the file reviewable and its diffs meaningful.
    lines = ["{"]
    items = list(doc.items())
    for i, (k, v) in enumerate(items):
        comma = "," if i + 1 < len(items) else ""
        if k == "sets":
            lines.append(f'  "{k}": [')
            for j, s in enumerate(v):
                lines.append("    {")
                sitems = list(s.items())
                for si, (sk, sv) in enumerate(sitems):
                    scomma = "," if si + 1 < len(sitems) else ""
                    if sk in ("vectors", "nodes", "headroom"):
                        lines.append(f'      "{sk}": [')
                        for vi, vec in enumerate(sv):
                            vcomma = "," if vi + 1 < len(sv) else ""
                            lines.append("        " + json.dumps(vec) + vcomma)
                        lines.append("      ]" + scomma)
                    else:
                        lines.append(f'      "{sk}": {json.dumps(sv)}{scomma}')
                lines.append("    }" + ("," if j + 1 < len(v) else ""))
            lines.append("  ]" + comma)
        elif isinstance(v, list):
            lines.append(f'  "{k}": [')
            for vi, vec in enumerate(v):
                vcomma = "," if vi + 1 < len(v) else ""
                lines.append("    " + json.dumps(vec) + vcomma)
            lines.append("  ]" + comma)
        else:
            lines.append(f'  "{k}": {json.dumps(v)}{comma}')
    lines.append("}")
    return "\n".join(lines) + "\n"


def main():
    text = render(document())
    json.loads(text)  # well-formed
    if "--stdout" in sys.argv[1:]:
        sys.stdout.write(text)
        return
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "placement_vectors.json")
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)
    total = sum(len(s["vectors"]) for s in document()["sets"])
    print(f"wrote {path}: {total} placement vectors")


if __name__ == "__main__":
    main()
