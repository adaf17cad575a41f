"""mrl_index.distributed: sharding, the manifest, and a sharded index on a local Ray cluster
(exact equals unsharded exact, recall of the default plan, ids, a killed actor, a missing or
damaged shard, a failed build, the command line and the Ray Serve deployment)."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

import mrl_index
from mrl_index import distributed as dist
from mrl_index.distributed import _manifest

DIM = 64
N = 4000
SHARDS = 3


def matryoshka_like(n, seed):
    rng = np.random.default_rng(seed)
    scale = 1.0 / np.sqrt(1.0 + np.arange(DIM) / 4.0)
    return (rng.standard_normal((n, DIM)) * scale).astype(np.float32)


def splitmix64_reference(x):
    """SplitMix64's output of state x + gamma, in Python integers."""
    mask = (1 << 64) - 1
    z = (x + 0x9E3779B97F4A7C15) & mask
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
    return z ^ (z >> 31)


# ---- without Ray ----------------------------------------------------------------------


def test_shard_of_is_splitmix64_and_balanced():
    from mrl_index.distributed._sharding import splitmix64

    # the first output of SplitMix64 seeded with 0 (its published test vector)
    assert int(splitmix64(np.array([0], dtype=np.uint64))[0]) == 0xE220A8397B1DCDAF
    ids = np.random.default_rng(3).integers(0, 2**63, 1000, dtype=np.uint64)
    ids[:3] = [0, 1, 2**64 - 2]
    got = splitmix64(ids)
    assert [int(g) for g in got] == [splitmix64_reference(int(i)) for i in ids]
    counts = np.bincount(dist.shard_of(np.arange(100_000, dtype=np.uint64), 4), minlength=4)
    assert counts.min() > 0.97 * 25_000 and counts.max() < 1.03 * 25_000
    with pytest.raises(ValueError, match="at least 1"):
        dist.shard_of(np.arange(3, dtype=np.uint64), 0)


def test_merge_top_k_orders_by_score_then_id_and_pads():
    pad = np.iinfo(np.uint64).max
    ids = np.array([[5, 9, pad, 2, 7, pad]], dtype=np.uint64)
    scores = np.array([[3.0, 1.0, -np.inf, 3.0, 2.0, -np.inf]], dtype=np.float32)
    top, s = dist.merge_top_k(ids, scores, 3)
    assert top.tolist() == [[2, 5, 7]] and s.tolist() == [[3.0, 3.0, 2.0]]
    top, s = dist.merge_top_k(ids, scores, 8)
    assert top[0, :4].tolist() == [2, 5, 7, 9] and all(t == pad for t in top[0, 4:])
    assert np.all(np.isneginf(s[0, 4:]))


def write_manifest(tmp_path, obj):
    (tmp_path / "shards.json").write_text(json.dumps(obj))
    return tmp_path


def good_manifest():
    return {
        "format": "mrl-index-shards",
        "version": 1,
        "build_id": "0123abcd",
        "sharding": {"scheme": "splitmix64", "shards": 1},
        "items": 5,
        "dim": 8,
        "widths": [8],
        "ids": "rows",
        "build": {},
        "shards": [
            {"shard": 0, "dir": "shard-0000-0123abcd", "items": 5, "manifest_sha256": "a" * 64}
        ],
    }


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda m: m.update(version=2), "version 2"),
        (lambda m: m.update(format="x"), "format"),
        (lambda m: m.update(items=6), "the shards hold 5"),
        (lambda m: m["sharding"].update(shards=2), "the list holds 1"),
        (lambda m: m["sharding"].update(scheme="range"), "unknown sharding scheme"),
        (lambda m: m["shards"][0].update(dir="../elsewhere"), "expected shard 0"),
        (lambda m: m["shards"][0].update(manifest_sha256="zz"), "checksum"),
        (lambda m: m["shards"][0].update(items="5"), "must be int"),
        (lambda m: m.pop("dim"), "missing field 'dim'"),
        (lambda m: m.update(ids="hash"), "ids is 'hash'"),
    ],
)
def test_manifest_is_checked(tmp_path, change, message):
    m = good_manifest()
    assert _manifest.read(write_manifest(tmp_path, m)).items == 5
    change(m)
    with pytest.raises(dist.ShardManifestError, match=message):
        _manifest.read(write_manifest(tmp_path, m))


def test_manifest_missing_or_not_json(tmp_path):
    with pytest.raises(dist.ShardManifestError, match="no shard manifest"):
        _manifest.read(tmp_path)
    (tmp_path / "shards.json").write_text("{")
    with pytest.raises(dist.ShardManifestError, match="not JSON"):
        _manifest.read(tmp_path)


def test_build_input_errors_before_any_cluster(tmp_path):
    items = tmp_path / "items.npy"
    np.save(items, matryoshka_like(10, 1))
    out = tmp_path / "out"
    cases = [
        (dict(items=str(tmp_path / "none.npy"), out=str(out), shards=2), "no such file"),
        (dict(items=str(items), out=str(out), shards=11), "cannot fill 11 shards"),
        (dict(items=str(items), out=str(out), shards=0), "at least 1"),
    ]
    np.save(tmp_path / "flat.npy", np.zeros(10, dtype=np.float32))
    cases.append((dict(items=str(tmp_path / "flat.npy"), out=str(out), shards=2), "2-D"))
    for name, ids, message in [
        ("short", np.arange(9), "expected shape \\(10,\\)"),
        ("dup", np.array([1, 2, 3, 4, 5, 6, 7, 8, 9, 9]), "id 9 appears more than once"),
        ("neg", np.arange(10) - 1, "negative id -1"),
        ("float", np.arange(10, dtype=np.float32), "expected integers"),
    ]:
        np.save(tmp_path / f"{name}.npy", ids)
        cases.append(
            (dict(items=str(items), out=str(out), shards=2, ids=str(tmp_path / f"{name}.npy")),
             message)
        )
    np.save(tmp_path / "q.npy", np.zeros((3, 8), dtype=np.float32))
    settings = dist.BuildSettings(sample_queries=str(tmp_path / "q.npy"))
    cases.append(
        (dict(items=str(items), out=str(out), shards=2, settings=settings), "dimension 8")
    )
    for kwargs, message in cases:
        with pytest.raises(dist.ShardBuildError, match=message):
            dist.build(**kwargs)
    assert not (out / "shards.json").exists()
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(dist.ShardBuildError, match="notes.txt"):
        dist.build(str(items), str(foreign), 2)
    assert (foreign / "notes.txt").read_text() == "mine"


# ---- on a local Ray cluster -----------------------------------------------------------


@pytest.fixture(scope="module")
def ray_cluster():
    try:
        import ray
    except ImportError:
        if os.environ.get("MRL_REQUIRE_RAY") == "1":
            pytest.fail("MRL_REQUIRE_RAY=1 but Ray is not installed (pip install 'ray>=2.9')")
        pytest.skip("Ray is not installed (pip install 'ray>=2.9'): sharded tests skipped")
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING", log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def sharded(ray_cluster, tmp_path_factory):
    root = tmp_path_factory.mktemp("sharded")
    items = matryoshka_like(N, 1)
    ids = np.arange(N, dtype=np.uint64) * 7 + 100
    np.save(root / "items.npy", items)
    np.save(root / "ids.npy", ids)
    settings = dist.BuildSettings(widths=[16, 32, 64], coarse_dim=16)
    manifest = dist.build(
        str(root / "items.npy"), str(root / "index"), SHARDS, ids=str(root / "ids.npy"),
        settings=settings,
    )
    whole = mrl_index.Index.build(
        root / "whole", items, ids, widths=[16, 32, 64], coarse_dim=16, threads=1
    )
    return {"root": root, "items": items, "ids": ids, "manifest": manifest, "whole": whole,
            "queries": matryoshka_like(100, 2), "settings": settings}


def test_build_publishes_a_manifest_of_ordinary_indexes(sharded):
    m = sharded["manifest"]
    index_dir = sharded["root"] / "index"
    assert dist.read_manifest(index_dir) == m
    assert len(m.shards) == SHARDS and m.items == N and m.ids == "given"
    assert m.widths == [16, 32, 64] and m.dim == DIM
    owner = dist.shard_of(sharded["ids"], SHARDS)
    for s in m.shards:
        shard = mrl_index.Index.open(index_dir / s.dir)
        shard.verify()
        assert len(shard) == s.items == int((owner == s.shard).sum())
    assert all(r["ok"] for r in dist.verify(index_dir))


def test_sharded_exact_equals_unsharded_exact(sharded):
    q = sharded["queries"]
    with dist.ShardedIndex.open(sharded["root"] / "index") as index:
        for width in (None, 32):
            ids, scores = index.search(q, 10, exact=True, width=width)
            truth, truth_scores = sharded["whole"].exact_search(q, 10, width)
            np.testing.assert_array_equal(ids, truth)
            np.testing.assert_array_equal(scores, truth_scores)


def test_sharded_recall_with_the_default_plan(sharded):
    q = sharded["queries"]
    with dist.ShardedIndex.open(sharded["root"] / "index") as index:
        found, _ = index.search(q, 10)
    truth, _ = sharded["whole"].exact_search(q, 10)
    recall = mrl_index.recall_at_k(found, truth)
    assert recall >= 0.95, recall


def test_ids_round_trip(sharded, tmp_path):
    q = sharded["queries"][:20]
    items, ids = sharded["items"], sharded["ids"]
    row = {int(i): r for r, i in enumerate(ids)}
    with dist.ShardedIndex.open(sharded["root"] / "index") as index:
        found, scores = index.search(q, 5, exact=True)
        # filters travel to every shard
        banned = [int(x) for x in found[:, 0]]
        again, _ = index.search(q, 5, exclude=banned)
        allowed = [int(x) for x in ids[:300]]
        only, _ = index.search(q, 5, allow=allowed)
    for qi in range(20):
        rows = [row[int(i)] for i in found[qi]]
        np.testing.assert_allclose(scores[qi], items[rows] @ q[qi], rtol=1e-4, atol=1e-4)
    assert not set(again.ravel().tolist()) & set(banned)
    assert set(only.ravel().tolist()) <= set(allowed)
    # without ids, the ids are the input's row numbers
    dist.build(str(sharded["root"] / "items.npy"), str(tmp_path / "rows"), 2,
               settings=sharded["settings"])
    assert dist.read_manifest(tmp_path / "rows").ids == "rows"
    with dist.ShardedIndex.open(tmp_path / "rows") as index:
        found, scores = index.search(q, 5, exact=True)
    for qi in range(20):
        np.testing.assert_allclose(
            scores[qi], items[found[qi].astype(np.int64)] @ q[qi], rtol=1e-4, atol=1e-4
        )


def test_a_killed_shard_actor_is_restarted_and_its_query_retried(sharded, ray_cluster):
    q = sharded["queries"][:30]
    with dist.ShardedIndex.open(sharded["root"] / "index") as index:
        before, _ = index.search(q, 10, exact=True)
        actor = index.actor(1)
        pid = ray_cluster.get(actor.pid.remote())
        os.kill(pid, signal.SIGKILL)
        after, _ = index.search(q, 10, exact=True)  # sent while the actor restarts
        new_pid = ray_cluster.get(actor.pid.remote())
    assert new_pid != pid
    np.testing.assert_array_equal(before, after)


def test_a_shard_actor_that_stays_dead_fails_the_query(sharded, ray_cluster):
    q = sharded["queries"][:10]
    with dist.ShardedIndex.open(sharded["root"] / "index", max_restarts=0) as index:
        os.kill(ray_cluster.get(index.actor(2).pid.remote()), signal.SIGKILL)
        with pytest.raises(dist.ShardUnavailable, match="shard 2: "):
            index.search(q, 10)
        ids, _, missing = index.search_partial(q, 10, exact=True)
    assert list(missing) == [2]
    assert not (dist.shard_of(ids.ravel(), SHARDS) == 2).any()


def copy_index(sharded, tmp_path):
    dst = tmp_path / "copy"
    shutil.copytree(sharded["root"] / "index", dst)
    return dst, dist.read_manifest(dst)


def test_a_missing_shard_fails_loudly_or_is_named(sharded, tmp_path):
    index_dir, m = copy_index(sharded, tmp_path)
    shutil.rmtree(index_dir / m.shards[1].dir)
    with pytest.raises(dist.ShardUnavailable, match="shard 1: .*shard missing"):
        dist.ShardedIndex.open(index_dir, max_restarts=0)
    q = sharded["queries"][:20]
    with dist.ShardedIndex.open(index_dir, max_restarts=0, allow_partial=True) as index:
        with pytest.raises(dist.ShardUnavailable, match="1 shard\\(s\\) unavailable"):
            index.search(q, 10)
        ids, scores, missing = index.search_partial(q, 10, exact=True)
    assert list(missing) == [1] and "shard missing" in missing[1]
    # the answer is exact search over the shards that answered
    truth, _ = sharded["whole"].exact_search(q, 200)
    for qi in range(20):
        kept = [int(t) for t in truth[qi] if dist.shard_of(np.array([t]), SHARDS)[0] != 1]
        assert ids[qi].tolist() == kept[:10]


def test_a_damaged_shard_is_refused(sharded, tmp_path):
    index_dir, m = copy_index(sharded, tmp_path)
    # shard 2's MANIFEST replaced by shard 0's: a whole, valid index, but not the one named
    shutil.copy(index_dir / m.shards[0].dir / "MANIFEST", index_dir / m.shards[2].dir / "MANIFEST")
    with pytest.raises(dist.ShardUnavailable, match="shard 2: .*SHA-256"):
        dist.ShardedIndex.open(index_dir, max_restarts=0)
    reports = dist.verify(index_dir)
    assert [r["ok"] for r in reports] == [True, True, False]


def test_a_failed_shard_task_publishes_nothing(sharded, tmp_path):
    items = sharded["items"].copy()
    items[17, 3] = np.nan  # the shard holding row 17 fails to build
    bad_shard = int(dist.shard_of(sharded["ids"][17:18], SHARDS)[0])
    np.save(tmp_path / "bad.npy", items)
    out = tmp_path / "out"
    with pytest.raises(dist.ShardBuildError, match=f"shard {bad_shard} .*failed: .*"):
        dist.build(str(tmp_path / "bad.npy"), str(out), SHARDS, ids=str(sharded["root"] / "ids.npy"))
    assert sorted(os.listdir(out)) == ["LOCK"]
    # over a published index: it stays published and whole
    good = dist.build(str(sharded["root"] / "items.npy"), str(out), 2,
                      settings=sharded["settings"])
    with pytest.raises(dist.ShardBuildError, match="already holds a sharded index"):
        dist.build(str(sharded["root"] / "items.npy"), str(out), 2)
    with pytest.raises(dist.ShardBuildError, match="failed"):
        dist.build(str(tmp_path / "bad.npy"), str(out), 2, force=True,
                   settings=sharded["settings"])
    assert dist.read_manifest(out) == good
    assert all(r["ok"] for r in dist.verify(out))
    assert sorted(os.listdir(out)) == sorted(["LOCK", "shards.json"] + [s.dir for s in good.shards])
    # force replaces it, and the old shards go
    new = dist.build(str(sharded["root"] / "items.npy"), str(out), 3, force=True,
                     settings=sharded["settings"])
    assert new.build_id != good.build_id
    assert sorted(os.listdir(out)) == sorted(["LOCK", "shards.json"] + [s.dir for s in new.shards])


def run_cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "mrl_index.distributed", *map(str, args)],
        capture_output=True, text=True, timeout=600,
    )


def test_command_line(sharded, ray_cluster, tmp_path):
    address = ray_cluster.get_runtime_context().gcs_address
    q = sharded["queries"][:12]
    np.save(tmp_path / "q.npy", q)
    r = run_cli("search", "--address", address, "--index", sharded["root"] / "index",
                "--queries", tmp_path / "q.npy", "-k", 5, "--exact", "--json")
    assert r.returncode == 0, r.stderr
    lines = [json.loads(line) for line in r.stdout.splitlines()]
    truth, truth_scores = sharded["whole"].exact_search(q, 5)
    assert [line["query"] for line in lines] == list(range(12))
    assert [line["ids"] for line in lines] == truth.tolist()
    np.testing.assert_allclose([line["scores"] for line in lines], truth_scores, rtol=1e-6)
    assert "queries/s" in r.stderr

    index_dir, m = copy_index(sharded, tmp_path)
    shutil.rmtree(index_dir / m.shards[0].dir)
    r = run_cli("search", "--address", address, "--index", index_dir, "--queries",
                tmp_path / "q.npy", "--max-restarts", 0)
    assert r.returncode == 1 and "error: 1 shard(s) unavailable" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and r.stdout == ""
    r = run_cli("search", "--address", address, "--index", index_dir, "--queries",
                tmp_path / "q.npy", "--max-restarts", 0, "--allow-partial", "--json", "-k", 3)
    assert r.returncode == 0, r.stderr
    assert all(json.loads(line)["missing_shards"] == [0] for line in r.stdout.splitlines())
    assert "warning: partial answers, 1 shard(s) missing (shard 0:" in r.stderr

    np.save(tmp_path / "wide.npy", np.zeros((2, DIM + 1), dtype=np.float32))
    r = run_cli("search", "--index", sharded["root"] / "index", "--queries", tmp_path / "wide.npy")
    assert r.returncode == 1 and "expected float [n, 64]" in r.stderr
    r = run_cli("info", "--index", tmp_path, "--json")
    assert r.returncode == 1 and "no shard manifest" in r.stderr
    r = run_cli("build", "--address", address, "--input", sharded["root"] / "items.npy",
                "--shards", 2, "--out", tmp_path / "cli", "--widths", "16,64",
                "--coarse-dim", 16, "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["sharding"] == {"scheme": "splitmix64", "shards": 2}
    r = run_cli("verify", "--index", tmp_path / "cli")
    assert r.returncode == 0 and r.stdout.count(": ok") == 2


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(port, body, path="/v1/search"):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data,
                                 headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_ray_serve_deployment_answers_like_mrl_index_serve(sharded, ray_cluster):
    try:
        from ray import serve
    except ImportError as e:
        if os.environ.get("MRL_REQUIRE_RAY") == "1":
            pytest.fail(f"MRL_REQUIRE_RAY=1 but Ray Serve cannot be imported: {e}")
        pytest.skip(f"Ray Serve is not installed (pip install 'ray[serve]'): {e}")
    from mrl_index.distributed import serve as sharded_serve

    q = sharded["queries"][:3]
    with dist.ShardedIndex.open(sharded["root"] / "index") as index:
        want, want_scores = index.search(q, 4)
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    try:
        # the deployment's shard actors take the cluster's CPUs while it runs
        serve.run(sharded_serve.deployment(str(sharded["root"] / "index"), max_k=50),
                  route_prefix="/", name="mrl-index-test")
        status, one = post(port, {"vector": q[0].tolist(), "k": 4})
        assert status == 200 and one["ids"] == want[0].tolist()
        np.testing.assert_allclose(one["scores"], want_scores[0], rtol=1e-6)
        status, many = post(port, {"vectors": q.tolist(), "k": 4})
        assert status == 200 and [r["ids"] for r in many["results"]] == want.tolist()
        for body, message in [
            ({"vector": q[0].tolist(), "kk": 1}, "unknown field `kk`"),
            ({"vector": [1.0, 2.0]}, "expected 64 numbers"),
            ({"vector": q[0].tolist(), "k": 51}, "k: must be an integer in 1..=50"),
            ({"vector": q[0].tolist(), "plan": "bogus"}, "bogus"),
            (b"{not json", "not JSON"),
        ]:
            status, err = post(port, body)
            assert status == 400 and message in err["error"], (status, err)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=60) as r:
            health = json.loads(r.read())
        assert health == {"status": "ok", "shards": SHARDS, "items": N}
    finally:
        serve.shutdown()
