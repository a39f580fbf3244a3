"""The Dask path of the volume-wide seismic steps equals the single-process path voxel for voxel,
on threads and on a LocalCluster of 2 worker processes; a failing chunk leaves no partial output."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
from params_defaults import section
from sklearn.ensemble import RandomForestClassifier

from overseer.errors import InputError
from overseer.seismic import dask_volume as dv
from overseer.seismic.data.grid import Grid
from overseer.seismic.data.kuwahara import kuwahara3d
from overseer.seismic.data.segy import read_segy, write_segy
from overseer.seismic.data.volumes import save_volumes
from overseer.seismic.data.zarr_store import is_zarr_store, open_zarr_store, save_volumes_zarr, segy_headers
from overseer.seismic.gtm_workflow import build_gtm
from overseer.seismic.predict_volume import predict_volume

SHAPE = (12, 10, 16)
CHUNKS = (5, 4, 16)  # 3 × 3 chunks, uneven at the edges
GTM_CFG = {"grid": [5, 5], "rbf_grid": [3, 3], "rbf_width": 1.0, "alpha": 1e-3, "max_iter": 15, "tol": 1e-2,
           "likelihood": "bhattacharyya", "seed": 0}  # fmt: skip


@pytest.fixture(scope="module")
def cluster():
    """One LocalCluster of 2 single-threaded worker processes for the whole module (CI has 2 cores)."""
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(
        n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None, memory_limit="1GiB"
    ) as local:
        yield local


@pytest.fixture
def client(cluster, monkeypatch):
    """The cluster reached the way users reach theirs: by address, from $DASK_SCHEDULER_ADDRESS."""
    monkeypatch.setenv(dv.SCHEDULER_ENV, cluster.scheduler_address)
    with dv.dask_scheduler(None) as connected:
        yield connected


def _survey(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    layers = np.repeat(np.arange(4), 4)[None, None, :] * np.ones(SHAPE)
    return {
        "a": (layers + rng.normal(0, 0.3, SHAPE) + 50.0).astype(np.float32),  # offset data, as real attributes
        "b": (np.cos(layers) + rng.normal(0, 0.3, SHAPE)).astype(np.float32),
    }


def _labels() -> np.ndarray:
    return (np.repeat(np.arange(4), 4)[None, None, :] * np.ones(SHAPE, dtype=np.int64)).astype(np.int64)


def _forest(vols: dict[str, np.ndarray]) -> RandomForestClassifier:
    x = np.stack([vols["a"].ravel(), vols["b"].ravel()], axis=1)
    return RandomForestClassifier(n_estimators=8, random_state=0, n_jobs=1).fit(x[::3], _labels().ravel()[::3])


def _dask(vols: dict[str, np.ndarray]) -> dict[str, da.Array]:
    return {k: da.from_array(v, chunks=CHUNKS) for k, v in vols.items()}


def test_kuwahara_on_threads_equals_the_whole_volume_filter():
    volume = _survey()["a"]
    with dv.dask_scheduler(None) as nothing:
        assert nothing is None
        chunked = dv.kuwahara(da.from_array(volume, chunks=CHUNKS), radius=2).compute()
    np.testing.assert_array_equal(chunked, kuwahara3d(volume, radius=2))


def test_kuwahara_and_forest_on_a_cluster_equal_the_single_process_path(client, tmp_path):
    vols = _survey()
    vols["b"][0, 0, :3] = np.nan  # undefined voxels: facies -1, probability NaN on both paths
    np.testing.assert_array_equal(
        dv.kuwahara(da.from_array(vols["a"], chunks=CHUNKS), radius=1).compute(), kuwahara3d(vols["a"], radius=1)
    )
    model = _forest({k: np.nan_to_num(v) for k, v in vols.items()})
    ref = predict_volume(model, vols, ["a", "b"], tmp_path / "ref.npy", chunk_voxels=300,
                         probabilities_dir=tmp_path / "ref_p", progress=False, engine="sklearn")  # fmt: skip
    stats = dv.predict_volume_dask(model, _dask(vols), ["a", "b"], tmp_path / "facies.npy",
                                   probabilities_dir=tmp_path / "p")  # fmt: skip
    np.testing.assert_array_equal(np.load(tmp_path / "facies.npy"), np.load(tmp_path / "ref.npy"))
    for c in model.classes_:
        np.testing.assert_array_equal(
            np.load(tmp_path / "p" / f"probability_{c}.npy"), np.load(tmp_path / "ref_p" / f"probability_{c}.npy")
        )
    assert stats["facies_counts"] == ref["facies_counts"]
    assert stats["undefined_voxels"] == ref["undefined_voxels"] == 3
    assert stats["chunks"] == 9


def test_gtm_probabilities_on_a_cluster_equal_predict_volume(client, tmp_path):
    vols = _survey(1)
    x = np.stack([vols["a"].ravel(), vols["b"].ravel()], axis=1)
    y = _labels().ravel().copy()
    y[1::2] = -1  # unlabelled voxels beside the picks, as train_gtm fits
    gtm = build_gtm(GTM_CFG, n_jobs=1).fit(x[::2], y[::2])
    predict_volume(gtm, vols, ["a", "b"], tmp_path / "ref.npy", chunk_voxels=500,
                   probabilities_dir=tmp_path / "ref_p", progress=False, engine="sklearn")  # fmt: skip
    dv.predict_volume_dask(gtm, _dask(vols), ["a", "b"], tmp_path / "g.zarr", probabilities_dir=tmp_path / "p")
    np.testing.assert_array_equal(da.from_zarr(str(tmp_path / "g.zarr")).compute(), np.load(tmp_path / "ref.npy"))
    for c in gtm.classes_:
        got = da.from_zarr(str(tmp_path / "p" / f"probability_{c}.zarr")).compute()
        np.testing.assert_array_equal(got, np.load(tmp_path / "ref_p" / f"probability_{c}.npy"))


def test_npy_and_zarr_stores_open_as_the_same_dask_arrays(tmp_path):
    vols = _survey()
    grid = Grid.regular(SHAPE, inline_start=100, crossline_start=300, sample_interval_ms=4.0)
    save_volumes(tmp_path / "npy", vols, grid)
    save_volumes_zarr(tmp_path / "zarr", vols, grid, chunks=CHUNKS, sources={"a": "a.npy"})
    assert is_zarr_store(tmp_path / "zarr") and not is_zarr_store(tmp_path / "npy")
    small, g1 = dv.open_volumes(tmp_path / "npy", chunks=CHUNKS)
    large, g2 = dv.open_volumes(tmp_path / "zarr", names=["b", "a"])
    assert g1.difference(g2) is None and list(large) == ["b", "a"]
    for name, volume in vols.items():
        assert isinstance(small[name], da.Array) and isinstance(large[name], da.Array)
        assert small[name].chunksize == large[name].chunksize == CHUNKS
        np.testing.assert_array_equal(small[name].compute(), volume)
        np.testing.assert_array_equal(large[name].compute(), volume)
    with pytest.raises(InputError, match="no volume named"):
        open_zarr_store(tmp_path / "zarr", names=["c"])


def test_segy_is_ingested_to_zarr_trace_block_by_trace_block_with_its_headers(tmp_path):
    volume = _survey()["a"]
    grid = Grid.regular(SHAPE, inline_start=100, crossline_start=300, sample_interval_ms=4.0)
    write_segy(volume, grid, tmp_path / "a.sgy")
    save_volumes_zarr(tmp_path / "store", {"a": tmp_path / "a.sgy"}, grid, chunks=CHUNKS,
                      segy=segy_headers(tmp_path / "a.sgy"))  # fmt: skip
    arrays, stored_grid, attrs = open_zarr_store(tmp_path / "store")
    np.testing.assert_array_equal(arrays["a"][:], read_segy(tmp_path / "a.sgy")[0])
    assert stored_grid.difference(grid) is None
    assert attrs["segy"]["binary"] and len(attrs["segy"]["text"][0]) == 3200


@pytest.mark.parametrize("suffix", [".npy", ".zarr"])
def test_a_nan_tile_under_the_filter_leaves_no_partial_output(tmp_path, suffix):
    volume = _survey()["a"]
    volume[10:, 8:, :] = np.nan  # the last tile
    target = tmp_path / f"filtered{suffix}"
    with pytest.raises(InputError, match="finite"):
        dv.store_results({target: dv.kuwahara(da.from_array(volume, chunks=CHUNKS), radius=1, centre=50.0)})
    assert not target.exists() and list(tmp_path.iterdir()) == []


def test_a_failing_task_on_the_cluster_leaves_the_previous_output(client, tmp_path):
    target = tmp_path / "facies.npy"
    np.save(target, np.zeros(SHAPE, np.int8))
    before = target.read_bytes()

    def fail_on_the_last_block(block, block_info=None):
        if block_info[0]["chunk-location"] == (2, 2, 0):
            raise RuntimeError("chunk failed")
        return block

    failing = da.from_array(_survey()["a"], chunks=CHUNKS).map_blocks(fail_on_the_last_block, dtype=np.float32)
    with pytest.raises(RuntimeError, match="chunk failed"):
        dv.store_results({target: failing})
    assert target.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["facies.npy"]


def test_the_scheduler_comes_from_params_else_the_environment(cluster, monkeypatch):
    monkeypatch.delenv(dv.SCHEDULER_ENV, raising=False)
    assert dv.scheduler_address(None) is None
    monkeypatch.setenv(dv.SCHEDULER_ENV, "tcp://elsewhere:8786")
    assert dv.scheduler_address(None) == "tcp://elsewhere:8786"
    assert dv.scheduler_address(cluster.scheduler_address) == cluster.scheduler_address  # params win
    with dv.dask_scheduler(cluster.scheduler_address) as connected:
        assert connected.scheduler.address == cluster.scheduler_address
        assert len(connected.scheduler_info()["workers"]) == 2
    monkeypatch.setenv(dv.SCHEDULER_ENV, "")
    assert dv.scheduler_address(None) is None


def test_ingest_writes_a_zarr_store_with_the_same_filtered_volumes_and_table(tmp_path):
    from overseer.seismic.data.ingest import ingest_seismic
    from overseer.seismic.data.volumes import load_volumes

    cfg = section("ingest", "seismic", kuwahara={"enabled": True, "radius": 1})
    cfg["default"] = {**cfg["default"], "shape": [16, 12, 24]}
    ingest_seismic({**cfg, "store": "npy"}, tmp_path / "npy")
    ingest_seismic({**cfg, "store": "zarr"}, tmp_path / "zarr")
    assert is_zarr_store(tmp_path / "zarr" / "volumes") and not is_zarr_store(tmp_path / "npy" / "volumes")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["npy", "zarr"]  # no scratch left behind
    small, grid = load_volumes(tmp_path / "npy" / "volumes")
    large, zgrid = load_volumes(tmp_path / "zarr" / "volumes")
    assert zgrid.difference(grid) is None and list(large) == list(small)
    for name, volume in small.items():
        np.testing.assert_array_equal(large[name][:], volume)
    for table in ("train.parquet", "holdout.parquet"):
        assert (tmp_path / "npy" / table).read_bytes() == (tmp_path / "zarr" / table).read_bytes()


def test_train_rfs_prediction_takes_the_dask_path_for_a_zarr_store(tmp_path, monkeypatch):
    from overseer.seismic.predict_volume import predict_prepared_survey

    monkeypatch.delenv(dv.SCHEDULER_ENV, raising=False)
    vols = _survey(2)
    model = _forest(vols)
    grid = Grid.regular(SHAPE)
    save_volumes(tmp_path / "npy", vols, grid)
    save_volumes_zarr(tmp_path / "zarr", vols, grid, chunks=CHUNKS)
    meta = {"has_volumes": True, "segy_template": None, "iline_byte": 189, "xline_byte": 193}
    cfg, dask_cfg = {"probabilities": True}, section("seismic", "dask")
    for store in ("npy", "zarr"):
        (tmp_path / f"out_{store}").mkdir()
        stats = predict_prepared_survey(model, tmp_path / store, meta, ["a", "b"], tmp_path / f"out_{store}", cfg,
                                        chunk_voxels=500, n_jobs=1, dask=dask_cfg)  # fmt: skip
        # npy: predict_volume's slabs of 500 voxels; zarr: seismic.dask.chunks (64 × 64 traces: one chunk here)
        assert stats["chunks"] == (4 if store == "npy" else 1)
    for name in ("facies.npy", "probabilities/probability_2.npy"):
        assert (tmp_path / "out_npy" / name).read_bytes() == (tmp_path / "out_zarr" / name).read_bytes()


def _shuffled_segy(path, volume: np.ndarray, seed: int = 0):
    """``volume`` as SEG-Y written with segyio directly, its traces in a shuffled order."""
    import segyio

    n_il, n_xl, n_s = volume.shape
    cells = [(il, xl) for il in range(n_il) for xl in range(n_xl)]
    spec = segyio.spec()
    spec.samples, spec.format, spec.tracecount = 4.0 * np.arange(n_s), 5, len(cells)
    with segyio.create(str(path), spec) as f:
        f.bin.update({segyio.BinField.Interval: 4000})
        for t, k in enumerate(np.random.default_rng(seed).permutation(len(cells))):
            il, xl = cells[k]
            f.header[t] = {189: 100 + il, 193: 300 + xl}
            f.trace[t] = volume[il, xl]
    return path


def test_a_segy_volume_reads_windows_and_gathers_only_where_sliced(tmp_path):
    from overseer.seismic.data.zarr_store import SegyVolume

    volume = _survey()["a"]
    path = _shuffled_segy(tmp_path / "a.sgy", volume)
    lazy = SegyVolume(path)
    assert lazy.shape == SHAPE and lazy.grid.inlines[0] == 100
    for index in [(slice(None),), (slice(2, 7), slice(1, None, 3), 4), (-1,), (Ellipsis, 5), (slice(9, 2, -2), 0)]:
        np.testing.assert_array_equal(lazy[index], volume[index])
    il, xl, s = (np.random.default_rng(1).integers(0, n, 40) for n in SHAPE)
    np.testing.assert_array_equal(lazy[il, xl, s], volume[il, xl, s])  # how picks are gathered
    with dv.dask_scheduler(None):
        np.testing.assert_array_equal(da.from_array(lazy, chunks=CHUNKS).compute(), volume)
    save_volumes_zarr(tmp_path / "store", {"a": path}, lazy.grid, chunks=CHUNKS)  # segy_to_zarr, block by block
    np.testing.assert_array_equal(open_zarr_store(tmp_path / "store")[0]["a"][:], volume)


def test_train_gtm_takes_the_dask_path_for_a_zarr_store_or_a_scheduler(cluster, tmp_path, monkeypatch):
    from overseer.seismic import gtm_workflow
    from overseer.seismic.data.volumes import load_volumes

    monkeypatch.delenv(dv.SCHEDULER_ENV, raising=False)
    vols = _survey(3)
    grid = Grid.regular(SHAPE, inline_start=100, crossline_start=300, sample_interval_ms=4.0)
    save_volumes(tmp_path / "npy", vols, grid)
    save_volumes_zarr(tmp_path / "zarr", vols, grid, chunks=CHUNKS)
    template = write_segy(vols["a"], grid, tmp_path / "a.sgy")
    meta = {"segy_template": str(template), "iline_byte": 189, "xline_byte": 193}
    maps, zarrs = load_volumes(tmp_path / "npy")[0], load_volumes(tmp_path / "zarr")[0]
    # train_gtm's voxel sample reads a Zarr store as it reads memory maps: the same rows
    np.testing.assert_array_equal(gtm_workflow.sample_voxels(zarrs, ["a", "b"], 400, seed=0),
                                  gtm_workflow.sample_voxels(maps, ["a", "b"], 400, seed=0))  # fmt: skip
    x = np.stack([vols["a"].ravel(), vols["b"].ravel()], axis=1)
    y = _labels().ravel().copy()
    y[1::2] = -1
    gtm = build_gtm(GTM_CFG, n_jobs=1).fit(x[::3], y[::3])  # picks and unlabelled voxels
    chunks, address = list(CHUNKS), cluster.scheduler_address
    runs = {"memmap": (maps, tmp_path / "npy", None), "zarr": (zarrs, tmp_path / "zarr", {"chunks": chunks}),
            "cluster": (maps, tmp_path / "npy", {"scheduler": address, "chunks": chunks})}  # fmt: skip
    stats = {}
    for name, (volumes, store, dask_cfg) in runs.items():
        if name != "memmap":  # the Dask runs must not take the memory-map path
            monkeypatch.setattr(gtm_workflow, "predict_volume", lambda *a, **k: pytest.fail("memmap path taken"))
        stats[name] = gtm_workflow.predict_gtm_survey(gtm, volumes, ["a", "b"], tmp_path / name, meta,
                                                      chunk_voxels=400, progress=False, volumes_dir=store,
                                                      dask=dask_cfg)  # fmt: skip
    assert stats["memmap"]["chunks"] == 6 and stats["zarr"]["chunks"] == stats["cluster"]["chunks"] == 9
    files = [p.relative_to(tmp_path / "memmap") for p in sorted((tmp_path / "memmap").rglob("*")) if p.is_file()]
    assert len(files) == 2 * (1 + len(gtm.classes_))  # facies and probabilities, .npy and .sgy
    for name in ("zarr", "cluster"):
        assert stats[name]["facies_counts"] == stats["memmap"]["facies_counts"]
        for file in files:
            assert (tmp_path / name / file).read_bytes() == (tmp_path / "memmap" / file).read_bytes(), (name, file)


class _KillOnce:
    """A model whose ``predict_proba`` ends the worker process it runs in, the first time on any
    worker (the marker file says it happened), and predicts as ``model`` ever after."""

    def __init__(self, model, marker):
        self.model, self.marker, self.classes_ = model, str(marker), model.classes_

    def predict_proba(self, x):
        import os

        from distributed import get_worker

        get_worker()  # only ever on a worker: raises ValueError in this process
        try:
            os.close(os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return self.model.predict_proba(x)
        os._exit(1)  # as a worker dies: no exception, no clean-up


def test_a_killed_worker_is_retried_else_no_partial_output(cluster, client, tmp_path):
    vols = _survey(4)
    model = _forest(vols)
    predict_volume(model, vols, ["a", "b"], tmp_path / "ref.npy", chunk_voxels=300, progress=False, engine="sklearn")
    out = tmp_path / "out"
    out.mkdir()
    # distributed reschedules the dead worker's task (allowed-failures: 3 by default); the nanny restarts it
    stats = dv.predict_volume_dask(_KillOnce(model, tmp_path / "killed"), _dask(vols), ["a", "b"], out / "facies.npy")
    assert (tmp_path / "killed").exists() and stats["chunks"] == 9
    assert (out / "facies.npy").read_bytes() == (tmp_path / "ref.npy").read_bytes()
    client.wait_for_workers(2, timeout=30)
    # a task that may not be retried: the graph fails and leaves nothing behind
    scheduler, allowed = cluster.scheduler, cluster.scheduler.allowed_failures
    scheduler.allowed_failures = 0
    try:
        (tmp_path / "killed").unlink()
        with pytest.raises(Exception, match=r"KilledWorker|worker"):
            dv.predict_volume_dask(_KillOnce(model, tmp_path / "killed"), _dask(vols), ["a", "b"], out / "again.npy",
                                   probabilities_dir=out / "p")  # fmt: skip
        assert (tmp_path / "killed").exists() and [p.name for p in out.iterdir()] == ["facies.npy"]
    finally:
        scheduler.allowed_failures = allowed
        client.wait_for_workers(2, timeout=30)
