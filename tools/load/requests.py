"""Request files for tools/load/run.sh, from real Beauty users: one request per line,
METHOD<TAB>PATH[<TAB>JSON BODY].

    python requests.py --queries Q.npy --sequences sequential_data.txt --out DIR

search.tsv       POST /v1/search {"vector": one real user query, "k": 10}
recommend.tsv    POST /v1/recommend {"history": a real test history (its last 50 items), "k": 10}
recommend50.tsv  the same with histories of exactly 50 items (a real history followed by the
                 next users' items): the re-encoding a streamed update is compared with
events.tsv       POST /v1/users/u<i>/events {"items": [next item]}: users' histories streamed one
                 item per request, users interleaved
recs.tsv         GET /v1/users/u<i>/recommendations?k=10 for the users events.tsv streams
"""
import argparse
import json
import os

import numpy as np


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--queries", required=True)
    ap.add_argument("--sequences", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--users", type=int, default=2000)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    q = np.load(a.queries).astype(np.float32)
    with open(os.path.join(a.out, "search.tsv"), "w") as f:
        for row in q:
            body = json.dumps({"vector": [round(float(x), 6) for x in row], "k": 10})
            f.write(f"POST\t/v1/search\t{body}\n")
    histories = []
    with open(a.sequences) as f:
        for line in f:
            ids = [int(x) for x in line.split()[1:]]
            if len(ids) >= 2:
                histories.append(ids[:-1])
            if len(histories) >= a.users:
                break
    with open(os.path.join(a.out, "recommend.tsv"), "w") as f:
        for h in histories:
            f.write(f"POST\t/v1/recommend\t{json.dumps({'history': h[-50:], 'k': 10})}\n")
    flat = [i for h in histories for i in h]
    with open(os.path.join(a.out, "recommend50.tsv"), "w") as f:
        at = 0
        for h in histories:
            h50 = (h + flat[at:at + 50])[:50]
            at = (at + 50) % max(1, len(flat) - 50)
            f.write(f"POST\t/v1/recommend\t{json.dumps({'history': h50, 'k': 10})}\n")
    longest = max(len(h) for h in histories)
    with open(os.path.join(a.out, "events.tsv"), "w") as f:
        for t in range(longest):
            for u, h in enumerate(histories):
                if t < len(h):
                    f.write(f"POST\t/v1/users/u{u}/events\t{json.dumps({'items': [h[t]]})}\n")
    with open(os.path.join(a.out, "recs.tsv"), "w") as f:
        for u in range(len(histories)):
            f.write(f"GET\t/v1/users/u{u}/recommendations?k=10\n")


if __name__ == "__main__":
    main()
