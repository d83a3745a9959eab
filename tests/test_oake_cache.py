"""pipeline.formats.feature_cache: HDF5 feature shards (CSR layout, int8 mode, verification, resume after SIGKILL)."""

from __future__ import annotations

import itertools
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from pipeline.formats import feature_cache as cache
from pipeline.formats.feature_cache import CacheError, ShardReader, ShardWriter, shard_image_ids, verify_shard

REPO = Path(__file__).resolve().parents[1]
DIM = 32
ATTRS = {
    "clip_model": "ViT-B/32",
    "weights_sha256": "ab12",
    "preprocess": "resize-224",
    "stage_version": 3,
    "block_scale": 0.5,
    "dry_run": False,
}
IDS = shard_image_ids(range(1, 401), 2, 1)  # 200 ids: 2, 4, ..., 400
SKIP_EVERY = 37


def unit_rows(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    x = rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def rows_for(image_id: int, kind: str, dim: int = DIM) -> dict | None:
    """Deterministic rows of one image (seeded by its id; 0..4 rows for blocks/objects); None = skip the image."""
    if image_id % SKIP_EVERY == 0:
        return None
    rng = np.random.default_rng(image_id)
    n = 1 if kind == "globals" else image_id % 5
    out = {"embeddings": unit_rows(rng, n, dim)}
    if kind != "globals":
        xy, wh = rng.uniform(0, 400, (n, 2)), rng.uniform(1, 200, (n, 2))
        out["boxes"] = np.concatenate([xy, xy + wh], axis=1).astype(np.float32)
    if kind == "objects":
        out["objectness"] = rng.uniform(size=n).astype(np.float32)
    return out


def write_shard(
    path, ids=IDS, kind="objects", storage="float16", attrs=ATTRS, commit_every=64, stop_after=None, hook=None
) -> list[int]:
    """Write or resume (and finalize) a shard; returns the pending ids the writer found.

    ``stop_after``: leave the ``with`` block after that many images (commit + close, no finalize);
    ``hook(count)`` runs after each image (the killed writers use it to SIGKILL themselves).
    """
    with ShardWriter(path, ids, kind, DIM, attrs, storage=storage, commit_every=commit_every) as writer:
        pending = writer.pending
        for count, image_id in enumerate(pending, 1):
            rows = rows_for(image_id, kind)
            if rows is None:
                writer.skip(image_id, "unreadable image")
            else:
                writer.add(image_id, **rows)
            if hook is not None:
                hook(count)
            if count == stop_after:
                return pending
        writer.finalize(ids)
    return pending


def _killed_child(job: dict, announce: int) -> None:
    """Forked child of ``run_killed_writers``: write the job's shard until it is killed."""

    def suicide() -> None:
        os.kill(os.getpid(), signal.SIGKILL)

    if "kill_at_sync" in job:
        calls, sync = itertools.count(1), ShardWriter._sync
        ShardWriter._sync = lambda self: suicide() if next(calls) == job["kill_at_sync"] else sync(self)

    def hook(count: int) -> None:
        if count == job.get("kill_after"):
            suicide()
        if count == 20 and "delay" in job:
            os.write(announce, b"x")

    write_shard(job["path"], storage=job["storage"], commit_every=job["commit_every"], hook=hook)


def run_killed_writers(jobs: list[dict]) -> None:
    """Subprocess side (imports once): each job runs in a forked child that is SIGKILLed; prints name -> exit code.

    Job keys: name, path, storage, commit_every and one of kill_after (images; the child kills itself),
    kill_at_sync (the child kills itself before its n-th ``ShardWriter._sync``: inside commits),
    delay (the parent kills the child that long after it wrote image 20: any moment, also inside HDF5 calls).
    """
    status = {}
    for job in jobs:
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            try:
                _killed_child(job, w)
                os._exit(0)
            except BaseException:
                import traceback

                traceback.print_exc()
                os._exit(1)
        os.close(w)
        if "delay" in job:
            os.read(r, 1)
            time.sleep(job["delay"])
            os.kill(pid, signal.SIGKILL)
        os.close(r)
        status[job["name"]] = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    print(json.dumps(status))


def read_shard(path) -> dict:
    with h5py.File(path, "r") as f:
        out = {name: f[name][:] for name in f}
        out["attrs"] = {k: v for k, v in f.attrs.items()}
    return out


def assert_same_shard(a, b) -> None:
    x, y = read_shard(a), read_shard(b)
    assert x.keys() == y.keys()
    for name in x:
        if name == "attrs":
            assert x[name] == y[name]
        else:
            assert x[name].dtype == y[name].dtype and x[name].tobytes() == y[name].tobytes(), name


def only_final(path: Path) -> None:
    assert path.exists() and not Path(f"{path}.partial").exists()


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict[str, Path]:
    """Uninterrupted shards of IDS: objects in float16 and int8 storage."""
    root = tmp_path_factory.mktemp("reference")
    out = {}
    for storage in cache.STORAGES:
        out[storage] = root / f"{storage}.h5"
        write_shard(out[storage], storage=storage)
        assert verify_shard(out[storage], IDS) == []
    return out


# --------------------------------------------------------------------------------------------------------------------
def test_shard_image_ids_partition():
    ids = np.random.default_rng(0).choice(10_000, 101, replace=False).tolist()  # unsorted
    parts = [shard_image_ids(ids, 4, i) for i in range(4)]
    assert sorted(itertools.chain(*parts)) == sorted(ids)
    assert sum(len(p) for p in parts) == len(ids)  # disjoint
    ordered = sorted(ids)
    for i, part in enumerate(parts):
        assert part == [x for pos, x in enumerate(ordered) if pos % 4 == i]
    assert shard_image_ids(ids, 1, 0) == ordered
    with pytest.raises(CacheError):
        shard_image_ids(ids, 4, 4)
    with pytest.raises(CacheError):
        shard_image_ids([1, 2, 2], 2, 0)


@pytest.mark.parametrize("kind", cache.KINDS)
def test_round_trip(tmp_path, kind):
    ids = [74, 3, 10, 7, 2]  # unsorted; 10: 0 rows for blocks/objects; 74: skipped
    path = tmp_path / f"{kind}.h5"
    with ShardWriter(path, ids, kind, DIM, ATTRS, commit_every=2) as writer:
        assert writer.pending == sorted(ids)
        for image_id in writer.pending:
            rows = rows_for(image_id, kind)
            if rows is None:
                writer.skip(image_id, "bad jpeg")
            else:
                writer.add(image_id, **{k: torch.from_numpy(v) if image_id == 3 else v for k, v in rows.items()})
        writer.finalize(ids)
    only_final(path)
    counts = [0 if rows_for(i, kind) is None else len(rows_for(i, kind)["embeddings"]) for i in sorted(ids)]
    data = read_shard(path)
    assert data["image_ids"].tolist() == sorted(ids) and data["image_ids"].dtype == np.int64
    assert data["offsets"].tolist() == np.concatenate([[0], np.cumsum(counts)]).tolist()
    assert data["embeddings"].dtype == np.float16 and data["embeddings"].shape == (sum(counts), DIM)
    assert data["done"].dtype == np.uint8 and data["done"].tolist() == [1] * len(ids)
    assert ("boxes" in data) == (kind != "globals") and ("objectness" in data) == (kind == "objects")
    if kind != "globals":
        assert data["boxes"].dtype == np.float32 and data["boxes"].shape == (sum(counts), 4)
    if kind == "objects":
        assert data["objectness"].dtype == np.float16
    attrs = data["attrs"]
    assert {k: attrs[k] for k in ATTRS} == ATTRS
    assert (attrs["kind"], attrs["dim"], attrs["storage"], attrs["format_version"]) == (kind, DIM, "float16", 1)
    assert json.loads(attrs["skipped"]) == [{"image_id": 74, "reason": "bad jpeg"}]
    with h5py.File(path) as f:
        assert f["embeddings"].chunks is None  # final shards are repacked contiguous
    assert not path.with_name(path.name + ".final").exists()
    assert verify_shard(path, ids) == []

    reader = ShardReader(path)
    assert reader.image_ids.tolist() == sorted(ids) and reader.attrs["clip_model"] == "ViT-B/32"
    for image_id in sorted(ids):
        if image_id == 74:
            assert image_id not in reader
            with pytest.raises(KeyError, match="74"):
                reader.get(image_id)
            continue
        assert image_id in reader
        got, want = reader.get(image_id), rows_for(image_id, kind)
        assert set(got) == set(want) and all(v.dtype == np.float32 for v in got.values())
        for name in want:
            np.testing.assert_allclose(got[name], want[name], atol=1e-3, rtol=1e-3)
    assert 5 not in reader
    with pytest.raises(KeyError, match="image 5 "):
        reader.get(5)
    assert isinstance(reader._rows["embeddings"], np.memmap)  # the fast path is the one in use
    reader.close()


def test_int8_storage_matches_float16_at_half_the_bytes(tmp_path):
    dim, ids = 512, list(range(1, 101))
    rows = {i: unit_rows(np.random.default_rng(i), 3, dim) for i in ids}
    paths = {s: tmp_path / f"{s}.h5" for s in cache.STORAGES}
    for storage, path in paths.items():
        with ShardWriter(path, ids, "objects", dim, ATTRS, storage=storage) as writer:
            for i in ids:
                writer.add(i, rows[i], np.zeros((3, 4)), np.ones(3))
            writer.finalize(ids)
        assert verify_shard(path, ids) == []
    fp16, int8 = ShardReader(paths["float16"]), ShardReader(paths["int8"])
    for i in ids:
        a, b = fp16.get(i)["embeddings"], int8.get(i)["embeddings"]
        cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
        assert cos.min() > 0.999 and np.abs(np.linalg.norm(b, axis=1) - 1).max() < cache.NORM_TOL
    with h5py.File(paths["float16"]) as f16, h5py.File(paths["int8"]) as f8:
        assert f8["embeddings"].dtype == np.int8 and f8["scales"].dtype == np.float32 and f8["scales"].shape == (300,)
        ratio = f8["embeddings"].id.get_storage_size() / f16["embeddings"].id.get_storage_size()
        assert 0.45 < ratio < 0.55
        assert f8.attrs["storage"] == "int8" and "scales" not in f16


@pytest.mark.parametrize("problem", ["nan", "inf", "not_unit", "wrong_ids", "missing"])
def test_finalize_refuses_bad_shards(tmp_path, problem):
    ids, path = [1, 2, 3, 4], tmp_path / "bad.h5"
    writer = ShardWriter(path, ids, "blocks", DIM, ATTRS)
    for image_id in ids[:3] if problem == "missing" else ids:
        rows = rows_for(image_id, "blocks")
        if image_id == 3 and problem == "not_unit":
            rows["embeddings"][1] *= 1.05
        elif image_id == 3 and problem in ("nan", "inf"):
            rows["embeddings"][1, 5] = {"nan": np.nan, "inf": np.inf}[problem]
        writer.add(image_id, **rows)
    with pytest.raises(CacheError) as err:
        writer.finalize(ids + [99] if problem == "wrong_ids" else ids)
    message = str(err.value)
    assert str(path) in message
    if problem == "wrong_ids":
        assert "99" in message
    elif problem == "missing":
        assert "image 4" in message
    else:
        assert "[3]" in message
        assert ("not unit-norm" if problem == "not_unit" else "non-finite") in message
    assert not path.exists()
    # bad rows are never resumed; a partial that only lacks images (or got the wrong expected ids) is kept
    assert Path(f"{path}.partial").exists() == (problem in ("wrong_ids", "missing"))


def test_add_validates_inputs(tmp_path):
    rows = rows_for(1, "objects")
    with pytest.raises(CacheError, match="reserved"):
        ShardWriter(tmp_path / "a.h5", [1], "objects", DIM, {"kind": "x"})
    with pytest.raises(CacheError, match="str/int/float/bool"):
        ShardWriter(tmp_path / "a.h5", [1], "objects", DIM, {"x": [1, 2]})
    with pytest.raises(CacheError):
        ShardWriter(tmp_path / "a.h5", [1], "regions", DIM, ATTRS)
    with ShardWriter(tmp_path / "g.h5", [1, 2], "globals", DIM, ATTRS) as globals_writer:
        with pytest.raises(CacheError, match="exactly 1 row"):
            globals_writer.add(1, unit_rows(np.random.default_rng(0), 2, DIM))
        with pytest.raises(CacheError, match="not the next pending"):
            globals_writer.add(2, unit_rows(np.random.default_rng(0), 1, DIM))
    with ShardWriter(tmp_path / "o.h5", [1, 2], "objects", DIM, ATTRS) as writer:
        with pytest.raises(CacheError, match="boxes"):
            writer.add(1, rows["embeddings"], rows["boxes"])
        with pytest.raises(CacheError, match="boxes must be"):
            writer.add(1, rows["embeddings"], rows["boxes"][:, :3], rows["objectness"])
        with pytest.raises(CacheError, match=f"\\[n, {DIM}\\]"):
            writer.add(1, rows["embeddings"][:, :5], rows["boxes"], rows["objectness"])
        writer.add(1, **rows)
        with pytest.raises(CacheError, match="not the next pending"):
            writer.add(1, **rows)
        assert writer.pending == [2]


def test_empty_shard(tmp_path):
    path = tmp_path / "empty.h5"
    with ShardWriter(path, [], "objects", DIM, ATTRS) as writer:
        writer.finalize([])
    assert verify_shard(path, []) == [] and len(ShardReader(path)) == 0


# --------------------------------------------------------------------------------------------------------------------
def test_resume_after_close_equals_uninterrupted_run(tmp_path, reference, caplog):
    path = tmp_path / "shard.h5"
    assert write_shard(path, stop_after=100) == IDS
    assert not path.exists() and Path(f"{path}.partial").exists()
    with ShardWriter(path, IDS, "objects", DIM, ATTRS) as writer:
        assert writer.pending == IDS[100:]
    assert write_shard(path) == IDS[100:]
    only_final(path)
    assert_same_shard(path, reference["float16"])


@pytest.mark.parametrize(
    "change",
    [
        {"attrs": {**ATTRS, "weights_sha256": "cd34"}},
        {"attrs": {**ATTRS, "stage_version": "3"}},
        {"ids": IDS[:-1]},
        {"storage": "int8"},
    ],
)
def test_resume_with_different_identity_restarts(tmp_path, caplog, change):
    path = tmp_path / "shard.h5"
    write_shard(path, stop_after=100)
    kwargs = {"attrs": ATTRS, "ids": IDS, "storage": "float16", **change}
    with caplog.at_level(logging.WARNING, logger=cache.__name__):
        writer = ShardWriter(path, kwargs["ids"], "objects", DIM, kwargs["attrs"], storage=kwargs["storage"])
    assert writer.pending == kwargs["ids"]
    writer.close()
    assert "starting fresh" in caplog.text
    if "attrs" in change:
        assert "stage_version" in caplog.text or "weights_sha256" in caplog.text


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_damaged_partial_restarts_cleanly(tmp_path, reference, caplog, damage):
    path = tmp_path / "shard.h5"
    write_shard(path, stop_after=100)
    partial = Path(f"{path}.partial")
    data = partial.read_bytes()
    partial.write_bytes({"truncate": data[: len(data) // 2], "garbage": os.urandom(len(data)), "empty": b""}[damage])
    with caplog.at_level(logging.WARNING, logger=cache.__name__):
        assert write_shard(path) == IDS
    assert "starting fresh" in caplog.text
    only_final(path)
    assert_same_shard(path, reference["float16"])


# Killed writers: (name, storage, job keys, possible numbers of images done when reopened); see run_killed_writers.
KILLS = [(f"after-{k}", "float16", {"kill_after": k}, {64 * (k // 64)}) for k in (1, 63, 64, 65, 150)] + [
    (f"sync-{j}", "int8", {"kill_at_sync": j}, done)  # sync 1: create; 2-4: rows, done/offsets, state of commit 1
    for j, done in [(1, {0}), (2, {0}), (3, {0}), (4, {0, 64}), (5, {64}), (7, {64, 128}), (14, {200})]
]
RANDOM_KILLS = [0.0, 0.003, 0.01, 0.03]  # seconds after image 20, writing with commit_every=1


@pytest.fixture(scope="module")
def killed(tmp_path_factory) -> dict[str, Path]:
    """Run every killed writer in one subprocess; name -> shard path (only its .partial exists)."""
    root = tmp_path_factory.mktemp("killed")
    jobs = [{"name": name, "storage": storage, "commit_every": 64, **kw} for name, storage, kw, _ in KILLS]
    jobs += [{"name": f"random-{d}", "storage": "int8", "commit_every": 1, "delay": d} for d in RANDOM_KILLS]
    jobs = [{**job, "path": str(root / f"{job['name']}.h5")} for job in jobs]
    script = "import json, sys; from tests.test_oake_cache import run_killed_writers as r; r(json.loads(sys.argv[1]))"
    done = subprocess.run(
        [sys.executable, "-c", script, json.dumps(jobs)], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    status = json.loads(done.stdout.splitlines()[-1])
    assert status == {job["name"]: -signal.SIGKILL for job in jobs}, done.stderr
    return {job["name"]: Path(job["path"]) for job in jobs}


@pytest.mark.parametrize("name, storage, kwargs, done", KILLS, ids=[k[0] for k in KILLS])
def test_sigkill_then_resume_equals_uninterrupted_run(killed, reference, name, storage, kwargs, done):
    path = killed[name]
    assert not path.exists() and Path(f"{path}.partial").exists()
    pending = write_shard(path, storage=storage)
    assert len(IDS) - len(pending) in done
    assert pending == IDS[len(IDS) - len(pending) :]
    only_final(path)
    assert_same_shard(path, reference[storage])


@pytest.mark.parametrize("delay", RANDOM_KILLS)
def test_sigkill_at_a_random_moment_then_resume(killed, reference, delay):
    path = killed[f"random-{delay}"]
    assert not path.exists() and Path(f"{path}.partial").exists()
    assert len(write_shard(path, storage="int8")) <= len(IDS)
    only_final(path)
    assert_same_shard(path, reference["int8"])


# --------------------------------------------------------------------------------------------------------------------
READER_SCRIPT = """
import json, sys
from pipeline.formats.feature_cache import CacheError, ShardReader
for line in sys.stdin:  # one JSON list of paths per line; answers path -> image 4's embeddings or the CacheError
    out = {}
    for p in json.loads(line):
        try:
            out[p] = ShardReader(p).get(4)["embeddings"].tolist()
        except CacheError as exc:
            out[p] = "CacheError: " + str(exc)
    print(json.dumps(out), flush=True)
"""


def test_reader_in_another_process_never_opens_incomplete_shards(tmp_path):
    path, partial = tmp_path / "shard.h5", tmp_path / "shard.h5.partial"
    other = subprocess.Popen(
        [sys.executable, "-c", READER_SCRIPT], cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )

    def read_elsewhere(*paths: Path) -> dict:
        other.stdin.write(json.dumps([str(p) for p in paths]) + "\n")
        other.stdin.flush()
        return json.loads(other.stdout.readline())

    try:
        with ShardWriter(path, IDS[:10], "objects", DIM, ATTRS) as writer:
            for image_id in IDS[:5]:
                writer.add(image_id, **rows_for(image_id, "objects"))
            writer.commit()
            for p in (path, partial):
                with pytest.raises(CacheError):
                    ShardReader(p)
            got = read_elsewhere(path, partial)
            assert all(v.startswith("CacheError") for v in got.values()), got
            for image_id in writer.pending:
                writer.add(image_id, **rows_for(image_id, "objects"))
            writer.finalize()
        got = read_elsewhere(path)
        np.testing.assert_allclose(got[str(path)], rows_for(4, "objects")["embeddings"], atol=1e-3)
    finally:
        other.stdin.close()
        other.wait(timeout=60)


def test_reader_reopens_in_forked_dataloader_workers(tmp_path, reference):
    reader = ShardReader(reference["int8"])
    main = [reader.get(i)["embeddings"] for i in IDS[:20] if i in reader]  # opens the file in this process

    class Rows(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return 20

        def __getitem__(self, k: int):
            return reader.get(IDS[k])["embeddings"] if IDS[k] in reader else None

    loader = torch.utils.data.DataLoader(Rows(), batch_size=None, num_workers=2, multiprocessing_context="fork")
    workers = [x.numpy() for x in loader if x is not None]
    assert len(workers) == len(main) and all(np.array_equal(a, b) for a, b in zip(main, workers, strict=True))
    reader.close()


def test_verify_shard_reports_corruption(tmp_path, reference):
    path = tmp_path / "shard.h5"
    path.write_bytes(reference["float16"].read_bytes())
    assert verify_shard(path, IDS) == []
    with h5py.File(path, "r+") as f:
        k = int(np.searchsorted(f["image_ids"][:], 46))
        f["embeddings"][f["offsets"][k]] = np.nan  # image 46 has 1 row
    problems = verify_shard(path, IDS)
    assert any("non-finite" in p and "46" in p for p in problems), problems
    assert any("checksum" in p for p in problems)
    assert any("missing [999]" in p for p in verify_shard(reference["float16"], IDS + [999]))
    with h5py.File(path, "r+") as f:
        del f["offsets"]
    assert verify_shard(path) and "unreadable" in verify_shard(tmp_path / "nope.h5")[0]


def test_gzip_final_shard_round_trips(tmp_path):
    rng = np.random.default_rng(5)
    ids = list(range(1, 41))
    rows = {}
    path = tmp_path / "shard-000.h5"
    with ShardWriter(path, ids, "objects", 64, {"m": 1}, compression="gzip") as w:
        for image_id in ids:
            e = rng.normal(size=(7, 64)).astype(np.float32)
            e /= np.linalg.norm(e, axis=1, keepdims=True)
            rows[image_id] = e
            w.add(image_id, e, rng.uniform(0, 9, size=(7, 4)), rng.uniform(size=7))
        w.finalize(ids)
    with h5py.File(path) as f:
        assert f["embeddings"].compression == "gzip" and f["embeddings"].chunks == (256, 64)
    assert verify_shard(path, ids) == []
    reader = ShardReader(path)
    for image_id in (1, 17, 40):
        np.testing.assert_allclose(reader.get(image_id)["embeddings"], rows[image_id], atol=1e-3)
    assert not isinstance(reader._rows["embeddings"], np.memmap)  # compressed rows are read through HDF5
