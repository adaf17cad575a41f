#!/usr/bin/env python3
"""Per family, the fastest configuration (1-thread qps) that reaches each recall@10 target.

    python summarize.py rows.jsonl [more.jsonl ...] [--targets 0.9,0.95] [--markdown]

Reads rows in the shared schema (peers' and mrl-index's alike) and prints one line per
(dataset, family, target): the label, recall@10, qps 1 thread / all threads, p50/p99,
the cost of one query per call over a one-thread batch (us/call), build seconds, index bytes
and RSS. Families that never reach a target say so.
"""
import argparse
import json
import sys


def fmt_bytes(b):
    if b is None:
        return "-"
    return f"{b / 2**20:.1f} MiB"


def fmt(v, nd=1):
    return "-" if v is None else f"{v:.{nd}f}"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("rows", nargs="+")
    ap.add_argument("--targets", default="0.9,0.95")
    ap.add_argument("--markdown", action="store_true")
    a = ap.parse_args(argv)
    targets = [float(t) for t in a.targets.split(",")]
    rows = []
    for path in a.rows:
        with open(path) as f:
            rows += [json.loads(ln) for ln in f if ln.strip()]
    groups = {}
    for r in rows:
        groups.setdefault((r["dataset"], r["family"]), []).append(r)
    head = ["dataset", "family", "target R@10", "best config", "R@10", "R@100", "qps 1 thr",
            "qps all", "p50 us", "p99 us", "us/call", "build s", "index", "RSS"]
    lines = []
    for (ds, fam), rs in groups.items():
        for t in targets:
            ok = [r for r in rs if r.get("recall_at_10") is not None and r["recall_at_10"] >= t]
            if not ok:
                best_r = max((r.get("recall_at_10") or 0.0) for r in rs)
                lines.append([ds, fam, f">={t}", f"not reached (max R@10 {best_r:.4f})"] + ["-"] * 10)
                continue
            b = max(ok, key=lambda r: r["qps_1_thread"])
            lines.append([ds, fam, f">={t}", b["label"], f"{b['recall_at_10']:.4f}",
                          "-" if b.get("recall_at_100") is None else f"{b['recall_at_100']:.4f}",
                          fmt(b["qps_1_thread"]), f"{fmt(b['qps_all_threads'])} ({b['threads_all']})",
                          fmt(b["p50_us"]), fmt(b["p99_us"]), fmt(b.get("call_overhead_us")),
                          fmt(b.get("build_seconds"), 2),
                          fmt_bytes(b.get("index_bytes")), fmt_bytes(b.get("rss_bytes"))])
    if a.markdown:
        print("| " + " | ".join(head) + " |")
        print("|" + "---|" * len(head))
        for ln in lines:
            print("| " + " | ".join(ln) + " |")
    else:
        w = [max(len(str(x)) for x in col) for col in zip(head, *lines)]
        for ln in [head] + lines:
            print("  ".join(str(x).ljust(n) for x, n in zip(ln, w)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
