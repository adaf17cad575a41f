"""The Markdown table of a tools/load/run.sh run (results.jsonl), with the targets' ratios."""
import json
import re
import sys


def main():
    rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
    exit_code = sys.argv[2] if len(sys.argv) > 2 else "?"
    lib = next(r for r in rows if r["endpoint"].startswith("library"))
    lib_qps = float(re.search(r"\(([\d.]+) queries/s\)", lib["line"]).group(1))
    runs = [r for r in rows if "rps" in r]
    print("| endpoint | clients | req/s | p50 ms | p95 ms | p99 ms | failed |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in runs:
        failed = r["non2xx"] + r["socket_errors"]
        note = " (reload mid-run)" if r.get("reload") else ""
        print(f"| {r['endpoint']}{note} | {r['clients']} | {r['rps']:.0f} | {r['p50_ms']:.2f} | "
              f"{r['p95_ms']:.2f} | {r['p99_ms']:.2f} | {failed} |")
    get = {(r["endpoint"], r["clients"]): r for r in runs}
    s8 = get[("search", 8)]
    print()
    print(f"- library batch search, 2 threads, same index and queries: {lib_qps:.0f} q/s "
          f"(`{lib['line']}`)")
    print(f"- /v1/search at 8 clients / library: {s8['rps'] / lib_qps:.2f} (target >= 0.70)")
    ev, rc, rec = get[("events", 1)], get[("recommendations", 1)], get[("recommend50", 1)]
    stream = ev["p50_ms"] + rc["p50_ms"]
    print(f"- one streamed item + recommendations (p50 {ev['p50_ms']:.2f} + {rc['p50_ms']:.2f} ms) "
          f"/ /v1/recommend of a 50-item history (p50 {rec['p50_ms']:.2f} ms), 1 client: "
          f"{stream / rec['p50_ms']:.2f} (target <= 0.10)")
    total_failed = sum(r["non2xx"] + r["socket_errors"] for r in runs)
    print(f"- failed requests over all runs (a reload mid-run included): {total_failed}; "
          f"exit status after SIGTERM: {exit_code}")


if __name__ == "__main__":
    main()
