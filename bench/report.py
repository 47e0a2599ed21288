#!/usr/bin/env python3
"""bench/report.py — turn one bench/run.sh output folder into results.json, results.md and plots.

    python3 bench/report.py OUT_DIR

Reads OUT_DIR/runs.jsonl (one object per wrk run, from bench/http_bench.sh), machine.json,
warm.jsonl and extra/*.txt (the printed output of the storage, dns and policy scripts, folded in
as raw text). Every comparison is a ratio against a peer measured in the same round of the same
run: arrow/peer for req/s, p99 and server CPU per request; the tables give the median over
rounds and the range. Plots (matplotlib when importable): req_per_s.png, p99.png,
cpu_per_req.png — one panel per scenario, one bar per peer (median, whiskers min–max).
"""

import json
import os
import statistics
import sys

SCENARIO_TITLES = {
    "hit1k": "1 KiB hits (1000 keys, cycled)",
    "hit1m": "1 MiB hits (200 keys, cycled)",
    "longtail": "1 MiB long tail (96% on 5 keys)",
    "miss": "misses to the origin (fresh keys, coalescing)",
}
PEER_TITLES = {
    "arrow": "Arrow",
    "nginx": "nginx proxy_cache",
    "varnish": "Varnish malloc",
    "ats": "Traffic Server (disk)",
}
PEER_ORDER = ["arrow", "nginx", "varnish", "ats"]


def load_jsonl(path):
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def rng(xs):
    xs = [x for x in xs if x is not None]
    return (min(xs), max(xs)) if xs else (None, None)


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def summarize(runs):
    """Per scenario: per-peer medians and per-round ratios against every other peer."""
    out = {}
    scenarios = [s for s in SCENARIO_TITLES if any(r["scenario"] == s for r in runs)]
    scenarios += sorted({r["scenario"] for r in runs} - set(scenarios))
    for s in scenarios:
        rs = [r for r in runs if r["scenario"] == s]
        peers = [p for p in PEER_ORDER if any(r["peer"] == p for r in rs)]
        peers += sorted({r["peer"] for r in rs} - set(peers))
        per_peer = {}
        for p in peers:
            pr = [r for r in rs if r["peer"] == p]
            field = lambda k: [r.get(k) for r in pr]  # noqa: E731
            per_peer[p] = {
                "runs": len(pr),
                "req_per_s": med(field("req_per_s")),
                "req_per_s_range": rng(field("req_per_s")),
                "p50_us": med(field("p50_us")),
                "p99_us": med(field("p99_us")),
                "p99_us_range": rng(field("p99_us")),
                "cpu_us_per_req": med(field("cpu_us_per_req")),
                "req_per_cpu_s": med(field("req_per_cpu_s")),
                "errors": sum(r["errors"] for r in pr),
                "origin_requests": sum(r["origin_requests"] for r in pr),
                "hits_proven": (all(r["hits_proven"] for r in pr) if s != "miss" else None),
                "origin_requests_per_key": med(field("origin_requests_per_key")),
                "origin_requests_per_key_max": rng(field("origin_requests_per_key"))[1],
                "load1_range": rng(field("load1_before") + field("load1_after")),
                "server_cpu_util": med(field("server_cpu_util")),
                "client_cpu_util": med(field("client_cpu_util")),
                "server_core_busy": med(field("server_core_busy")),
                "client_core_busy": med(field("client_core_busy")),
                "server_core_steal": med(field("server_core_steal")),
            }
        ratios = {}
        if "arrow" in peers:
            for p in peers:
                if p == "arrow":
                    continue
                per_round = []
                for rnd in sorted({r["round"] for r in rs}):
                    a = [r for r in rs if r["round"] == rnd and r["peer"] == "arrow"]
                    b = [r for r in rs if r["round"] == rnd and r["peer"] == p]
                    if not a or not b:
                        continue
                    a, b = a[0], b[0]
                    per_round.append({
                        "round": rnd,
                        "req_per_s": ratio(a["req_per_s"], b["req_per_s"]),
                        "p99": ratio(a["p99_us"], b["p99_us"]),
                        "cpu_per_req": ratio(a["cpu_us_per_req"], b["cpu_us_per_req"]),
                    })
                ratios[p] = {
                    "rounds": per_round,
                    "req_per_s": med([x["req_per_s"] for x in per_round]),
                    "req_per_s_range": rng([x["req_per_s"] for x in per_round]),
                    "p99": med([x["p99"] for x in per_round]),
                    "p99_range": rng([x["p99"] for x in per_round]),
                    "cpu_per_req": med([x["cpu_per_req"] for x in per_round]),
                    "cpu_per_req_range": rng([x["cpu_per_req"] for x in per_round]),
                }
        out[s] = {"peers": per_peer, "arrow_vs": ratios}
    return out


def goals(summary):
    """The issue's goals, judged on the medians of the same-round ratios against nginx."""
    g = []
    h1k = summary.get("hit1k", {}).get("arrow_vs", {}).get("nginx")
    if h1k and h1k["req_per_s"] is not None:
        g.append({
            "goal": "1 KiB hits: req/s >= 1.5x nginx proxy_cache, p99 no worse",
            "req_per_s_ratio": h1k["req_per_s"], "p99_ratio": h1k["p99"],
            "met": h1k["req_per_s"] >= 1.5 and h1k["p99"] is not None and h1k["p99"] <= 1.0,
        })
    h1m = summary.get("hit1m", {}).get("arrow_vs", {}).get("nginx")
    if h1m and h1m["cpu_per_req"] is not None:
        g.append({
            "goal": "1 MiB hits: requests per CPU-second >= nginx's (CPU/request ratio <= 1)",
            "cpu_per_req_ratio": h1m["cpu_per_req"],
            "met": h1m["cpu_per_req"] <= 1.0,
        })
    return g


def fmt(x, nd=2):
    if x is None:
        return "–"
    if isinstance(x, float):
        if abs(x) >= 100:
            return f"{x:,.0f}"
        return f"{x:.{nd}f}"
    return f"{x:,}" if isinstance(x, int) else str(x)


def fmt_rng(r, nd=2):
    lo, hi = r
    if lo is None:
        return ""
    return f" ({fmt(lo, nd)}–{fmt(hi, nd)})"


def us_to_ms(x):
    return None if x is None else x / 1000.0


HEADLINE_ROWS = [
    ("hit1k", "1 KiB hits", ["req_per_s", "p99", "cpu_per_req"]),
    ("hit1m", "1 MiB hits", ["req_per_s", "cpu_per_req"]),
    ("miss", "misses, 16 viewers per fresh key", ["req_per_s", "p99"]),
]
HEADLINE_NAMES = {"req_per_s": "req/s", "p99": "p99", "cpu_per_req": "CPU/request"}


def headline(summary, machine):
    """The README's headline: every row from this one run, each a same-round ratio with its
    range over the rounds, against each peer measured in them."""
    peers = [p for p in PEER_ORDER if p != "arrow"
             and any(p in summary.get(s, {}).get("arrow_vs", {}) for s, _, _ in HEADLINE_ROWS)]
    if not peers:
        return []
    L = ["## Headline (one run: paste into README.md as is)", ""]
    L.append(f"`bench/run.sh` at {machine.get('started_utc', '?')}, tree "
             f"{machine.get('git_head', '?')}; {machine.get('rounds')} rounds × "
             f"{machine.get('duration_s')} s; Arrow ÷ peer, median of the same-round ratios "
             "(range over the rounds):")
    L.append("")
    L.append("| | " + " | ".join(f"÷ {PEER_TITLES.get(p, p)}" for p in peers) + " |")
    L.append("|---|" + "---|" * len(peers))
    for s, title, keys in HEADLINE_ROWS:
        vs = summary.get(s, {}).get("arrow_vs", {})
        if not vs:
            continue
        cells = []
        for p in peers:
            r = vs.get(p)
            if not r:
                cells.append("–")
                continue
            cells.append(", ".join(
                f"{HEADLINE_NAMES[k]} {fmt(r[k])}×{fmt_rng(r[k + '_range'])}" for k in keys
                if r.get(k) is not None))
        if s == "miss":
            opk = summary[s]["peers"].get("arrow", {}).get("origin_requests_per_key")
            title += f" (Arrow: {fmt(opk)} origin requests per key)"
        L.append(f"| {title} | " + " | ".join(cells) + " |")
    L.append("")
    if "miss" in summary and "nginx" in peers:
        L.append("Misses against nginx: nginx runs with `proxy_cache_lock on` (the setting its "
                 "operators use to coalesce); a request waiting on the lock re-checks the cache "
                 "every 500 ms (nginx's fixed lock poll, not configurable), which sets its miss "
                 "latency under concurrency. Varnish coalesces by its waiting list and Traffic "
                 "Server by its read-while-writer.")
        L.append("")
    return L


def markdown(summary, machine, warm, extras, goal_list):
    L = headline(summary, machine)
    L.append("## Machine")
    L.append("")
    cpu = f" ({machine['cpu_model']})" if machine.get("cpu_model") else ""
    mem = f", {machine['mem_gib']} GiB" if machine.get("mem_gib") else ""
    L.append(f"- {machine.get('nproc')} CPUs{cpu}{mem}, kernel {machine.get('kernel')}")
    if machine.get("git_head"):
        L.append(f"- arrow: {machine.get('arrow_bin')} built {machine.get('arrow_bin_built_utc')}, "
                 f"tree at {machine['git_head']}")
    end = machine.get("loadavg_end")
    L.append(f"- load average at start {' '.join(machine.get('loadavg_start', []))}"
             + (f", at end {' '.join(end)}" if end else ""))
    if summary:
        L.append(f"- servers confined to core {machine.get('server_core')}; wrk (1 thread, "
                 f"{machine.get('connections')} connections) and the origin on core "
                 f"{machine.get('client_core')}; {machine.get('rounds')} rounds × "
                 f"{machine.get('duration_s')} s per run, peers alternating within each round")
        L.append("- server / wrk CPU util: the process tree's CPU-seconds per second of run; core busy:")
        L.append("  the whole core's non-idle share from /proc/stat (other tenants and softirq included).")
        L.append("  A core near 1.0 busy while its process is far below 1.0 means the run was contended.")
    L.append("")
    if warm:
        L.append("Warm-up (every key requested twice; hits on the second pass): " + ", ".join(
            f"{w['peer']} {w['keys']} {w['second_pass_hits']}/{w['keys_total']}" for w in warm))
        L.append("")
    if goal_list:
        L.append("## Goals")
        L.append("")
        for g in goal_list:
            parts = [f"{k.replace('_', ' ')} {fmt(v)}" for k, v in g.items() if k.endswith("ratio")]
            L.append(f"- {g['goal']}: {', '.join(parts)} → **{'met' if g['met'] else 'not met'}**")
        L.append("")
    for s, data in summary.items():
        L.append(f"## {SCENARIO_TITLES.get(s, s)}")
        L.append("")
        miss = s == "miss"
        head = ["peer", "req/s (range)", "p50 ms", "p99 ms (range)", "server CPU µs/req",
                "req per CPU-s", "server / wrk CPU util", "core busy srv / cli", "errors",
                "origin reqs" + (" per key, median (max)" if miss else " (proof)")]
        L.append("| " + " | ".join(head) + " |")
        L.append("|" + "---|" * len(head))
        for p, d in data["peers"].items():
            if miss:
                origin = (f"{fmt(d['origin_requests_per_key'])} "
                          f"(max {fmt(d['origin_requests_per_key_max'])})")
            else:
                origin = f"{d['origin_requests']} ({'all hits' if d['hits_proven'] else 'NOT all hits'})"
            p99r = tuple(us_to_ms(x) for x in d["p99_us_range"])
            L.append("| " + " | ".join([
                PEER_TITLES.get(p, p),
                fmt(d["req_per_s"]) + fmt_rng(d["req_per_s_range"]),
                fmt(us_to_ms(d["p50_us"])),
                fmt(us_to_ms(d["p99_us"])) + fmt_rng(p99r),
                fmt(d["cpu_us_per_req"]),
                fmt(d["req_per_cpu_s"]),
                f"{fmt(d['server_cpu_util'])} / {fmt(d['client_cpu_util'])}",
                f"{fmt(d['server_core_busy'])} / {fmt(d['client_core_busy'])}",
                str(d["errors"]),
                origin,
            ]) + " |")
        L.append("")
        if data["arrow_vs"]:
            L.append("| Arrow ÷ peer, same round (median, range) | req/s (>1 better) | "
                     "p99 (<1 better) | CPU per request (<1 better) |")
            L.append("|---|---|---|---|")
            for p, r in data["arrow_vs"].items():
                L.append(f"| ÷ {PEER_TITLES.get(p, p)} | {fmt(r['req_per_s'])}{fmt_rng(r['req_per_s_range'])} | "
                         f"{fmt(r['p99'])}{fmt_rng(r['p99_range'])} | "
                         f"{fmt(r['cpu_per_req'])}{fmt_rng(r['cpu_per_req_range'])} |")
            L.append("")
    for name, text in extras.items():
        L.append(f"## {name} (raw output)")
        L.append("")
        L.append("```")
        L.append(text.rstrip())
        L.append("```")
        L.append("")
    return "\n".join(L) + "\n"


def plots(summary, out_dir):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("report: matplotlib not importable; no plots", file=sys.stderr)
        return []
    made = []
    specs = [
        ("req_per_s.png", "req/s", "req_per_s", "req_per_s_range", 1.0),
        ("p99.png", "p99 latency (ms)", "p99_us", "p99_us_range", 1e-3),
        ("cpu_per_req.png", "server CPU µs per request", "cpu_us_per_req", None, 1.0),
    ]
    colors = {"arrow": "#d62728", "nginx": "#2ca02c", "varnish": "#1f77b4", "ats": "#9467bd"}
    scen = list(summary)
    if not scen:
        return []
    for fname, ylabel, key, rkey, scale in specs:
        fig, axes = plt.subplots(1, len(scen), figsize=(3.2 * len(scen), 3.4), squeeze=False)
        for ax, s in zip(axes[0], scen):
            peers = list(summary[s]["peers"])
            vals, lo, hi = [], [], []
            for p in peers:
                d = summary[s]["peers"][p]
                v = (d[key] or 0) * scale
                vals.append(v)
                if rkey and d[rkey][0] is not None:
                    lo.append(max(0, v - d[rkey][0] * scale))
                    hi.append(max(0, d[rkey][1] * scale - v))
                else:
                    lo.append(0)
                    hi.append(0)
            ax.bar(range(len(peers)), vals, yerr=[lo, hi], capsize=3,
                   color=[colors.get(p, "grey") for p in peers])
            ax.set_xticks(range(len(peers)))
            ax.set_xticklabels(peers, rotation=30, fontsize=8)
            ax.set_title(SCENARIO_TITLES.get(s, s), fontsize=8)
            ax.tick_params(axis="y", labelsize=7)
        axes[0][0].set_ylabel(ylabel, fontsize=8)
        fig.tight_layout()
        path = os.path.join(out_dir, fname)
        fig.savefig(path, dpi=80)
        plt.close(fig)
        made.append(fname)
    return made


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    out_dir = sys.argv[1]
    runs = load_jsonl(os.path.join(out_dir, "runs.jsonl"))
    warm = load_jsonl(os.path.join(out_dir, "warm.jsonl"))
    machine = {}
    mpath = os.path.join(out_dir, "machine.json")
    if os.path.exists(mpath):
        with open(mpath, encoding="utf-8") as f:
            machine = json.load(f)
    if not machine:  # no HTTP run: describe the machine as it is now
        machine = {"nproc": os.cpu_count(), "kernel": os.uname().release,
                   "loadavg_start": open("/proc/loadavg").read().split()[:3]}
    extras = {}
    edir = os.path.join(out_dir, "extra")
    if os.path.isdir(edir):
        for name in sorted(os.listdir(edir)):
            if name.endswith(".txt") and name != "http.txt":
                with open(os.path.join(edir, name), encoding="utf-8", errors="replace") as f:
                    extras[name[:-4]] = f.read()
    summary = summarize(runs)
    goal_list = goals(summary)
    made = plots(summary, out_dir)
    result = {"machine": machine, "warm": warm, "summary": summary, "goals": goal_list,
              "runs": runs, "extra_raw": extras, "plots": made}
    with open(os.path.join(out_dir, "results.json"), "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1)
    with open(os.path.join(out_dir, "results.md"), "w", encoding="utf-8") as f:
        f.write(markdown(summary, machine, warm, extras, goal_list))
    return 0


if __name__ == "__main__":
    sys.exit(main())
