"""Seismic volume I/O: the grid, SEG-Y reading and writing, the memory-mapped volume store."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import segyio

from overseer.errors import InputError
from overseer.seismic.data.grid import Grid
from overseer.seismic.data.segy import read_segy, segy_grid, write_segy, write_segy_like
from overseer.seismic.data.volumes import (
    check_same_grid,
    load_volumes,
    nonfinite_report,
    read_volume,
    read_volumes,
    save_volumes,
    write_volume,
)

F3 = Path(__file__).resolve().parents[3] / "shared" / "data" / "seismic" / "f3_crop.sgy"


@pytest.fixture
def f3() -> Path:
    if not F3.is_file():
        pytest.skip(f"real SEG-Y development data not present ({F3}); it lives in the shared data folder")
    return F3


def _write_segy(
    path: Path, data: np.ndarray, fmt: int, ilines, xlines, trace_order=None, endian: str = "big", positions=None
) -> Path:
    """A small SEG-Y file written directly with segyio (not our writer): one trace per
    (inline, crossline) in ``positions`` (default the full grid, inline-sorted) in ``trace_order``."""
    if positions is None:
        positions = [(il, xl) for il in ilines for xl in xlines]
    order = range(len(positions)) if trace_order is None else trace_order
    spec = segyio.spec()
    spec.samples = 8.0 + 2.0 * np.arange(data.shape[-1])
    spec.format = fmt
    spec.tracecount = len(positions)
    spec.endian = endian
    with segyio.create(str(path), spec) as f:
        f.bin.update({segyio.BinField.Interval: 2000})
        for t, k in enumerate(order):
            il, xl = positions[k]
            f.header[t] = {189: il, 193: xl, segyio.TraceField.DelayRecordingTime: 8}
            f.trace[t] = data[k]
    return path


# ---------------------------------------------------------------------------- Grid
def test_grid_index_of_maps_survey_numbers_and_times():
    grid = Grid(np.arange(111, 134), np.arange(875, 893), 4.0, 4.0, 75)
    il, xl, s = grid.index_of([111, 133, 120], [875, 892, 880], time_ms=[4.0, 300.0, 41.0])
    assert il.tolist() == [0, 22, 9] and xl.tolist() == [0, 17, 5]
    assert s.tolist() == [0, 74, 9]  # 41 ms is nearest to sample 9 (40 ms)
    assert grid.index_of([111], [876], sample=[3])[2].tolist() == [3]
    assert grid.shape == (23, 18, 75) and grid.times_ms[[0, -1]].tolist() == [4.0, 300.0]


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"inline": [111, 140], "crossline": [875, 875], "sample": [0, 0]}, "inline 140"),
        ({"inline": [111, 111], "crossline": [875, 893], "sample": [0, 0]}, "crossline 893"),
        ({"inline": [111, 111], "crossline": [875, 875], "sample": [0, 75]}, "sample 75"),
        ({"inline": [111, 111], "crossline": [875, 875], "time_ms": [4, 310]}, "time_ms 310"),
    ],
)
def test_grid_index_of_names_the_offending_row(kwargs, expected):
    grid = Grid(np.arange(111, 134), np.arange(875, 893), 4.0, 4.0, 75)
    with pytest.raises(InputError, match=f"picks.csv, record line 3: {expected} is outside the grid"):
        grid.index_of(**kwargs, path="picks.csv", rows=["line 2", "line 3"])


def test_grid_json_round_trip_and_comparison():
    grid = Grid.regular((4, 5, 6), inline_start=100, inline_step=2, sample_start_ms=10.0, sample_interval_ms=2.0)
    assert grid.inlines.tolist() == [100, 102, 104, 106] and grid.crosslines.tolist() == [0, 1, 2, 3, 4]
    assert grid.inlines.dtype == np.int32 and not grid.inlines.flags.writeable
    back = Grid.from_json(json.loads(json.dumps(grid.to_json())))
    assert back.same_as(grid)
    other = Grid.regular((4, 5, 7), inline_start=100, inline_step=2, sample_start_ms=10.0, sample_interval_ms=2.0)
    assert grid.difference(other) == "samples 6 vs 7"
    with pytest.raises(InputError, match=r"g\.json: invalid grid description .*strictly increasing"):
        Grid.from_json({**grid.to_json(), "inlines": [3, 2, 1, 0]}, path="g.json")


# ---------------------------------------------------------------------------- SEG-Y: real data
def test_read_f3_crop(f3):
    data, grid = read_segy(f3)
    assert data.shape == (23, 18, 75) and data.dtype == np.float32
    assert grid.inlines.tolist() == list(range(111, 134)) and grid.crosslines.tolist() == list(range(875, 893))
    assert grid.sample_interval_ms == 4.0 and grid.sample_start_ms == 4.0 and grid.n_samples == 75
    with segyio.open(str(f3), iline=189, xline=193) as f:
        cube = segyio.tools.cube(f)  # int16 samples, inline-sorted
    np.testing.assert_array_equal(data, cube.astype(np.float32))
    assert segy_grid(f3).same_as(grid)


def test_write_segy_like_round_trip_keeps_headers(f3, tmp_path):
    data, grid = read_segy(f3)
    new = data * 0.5 + 0.25
    out = write_segy_like(f3, new, tmp_path / "out.sgy")
    back, back_grid = read_segy(out)
    np.testing.assert_array_equal(back, new)
    assert back_grid.same_as(grid)
    with segyio.open(str(f3), ignore_geometry=True) as a, segyio.open(str(out), ignore_geometry=True) as b:
        assert b.format == 5 or b.bin[segyio.BinField.Format] == 5
        assert a.text[0] == b.text[0]
        bin_a, bin_b = dict(a.bin), dict(b.bin)
        assert {k for k in bin_a if bin_a[k] != bin_b[k]} == {segyio.BinField.Format}
        assert all(a.header[t].buf == b.header[t].buf for t in range(a.tracecount))
        np.testing.assert_array_equal(b.attributes(189)[:], a.attributes(189)[:])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.sgy"]  # no temporary left behind


def test_write_segy_like_rejects_wrong_shape_and_writes_nothing(f3, tmp_path):
    with pytest.raises(InputError, match=r"f3_crop\.sgy: data of shape \(23, 18, 74\) does not fit"):
        write_segy_like(f3, np.zeros((23, 18, 74), np.float32), tmp_path / "out.sgy")
    assert list(tmp_path.iterdir()) == []


def test_write_segy_like_integer_facies(f3, tmp_path):
    facies = np.arange(23 * 18 * 75).reshape(23, 18, 75) % 4
    out = write_segy_like(f3, facies, tmp_path / "facies.sgy", dtype="int16")
    with segyio.open(str(out), ignore_geometry=True) as f:
        assert f.bin[segyio.BinField.Format] == 3
    np.testing.assert_array_equal(read_segy(out)[0], facies)
    with pytest.raises(InputError, match="expected whole numbers"):
        write_segy_like(f3, facies + 0.5, tmp_path / "bad.sgy", dtype="int16")


def test_truncated_file_names_the_file(f3, tmp_path):
    raw = f3.read_bytes()
    cut = tmp_path / "cut.sgy"
    cut.write_bytes(raw[:-100])
    with pytest.raises(InputError, match=r"cut\.sgy: not a readable SEG-Y file.*truncated"):
        read_segy(cut)
    # cut exactly at a trace boundary: the file is well-formed but one trace short
    trace_bytes = 240 + 2 * 75
    cut.write_bytes(raw[:-trace_bytes])
    with pytest.raises(InputError, match=r"cut\.sgy: inconsistent geometry: 413 traces do not fill .* 1 missing"):
        read_segy(cut)


def test_not_segy(tmp_path):
    path = tmp_path / "notes.sgy"
    path.write_text("inline,crossline\n1,2\n" * 50)
    with pytest.raises(InputError, match=r"notes\.sgy: not a readable SEG-Y file"):
        read_segy(path)
    with pytest.raises(InputError, match="SEG-Y file not found"):
        read_segy(tmp_path / "absent.sgy")


# ---------------------------------------------------------------------------- SEG-Y: sample formats and geometry
IL, XL = [10, 12, 14], [100, 101, 102, 103]


@pytest.mark.parametrize(
    ("fmt", "dtype"), [(1, np.float32), (5, np.float32), (3, np.int16), (2, np.int32), (8, np.int8)]
)
def test_sample_formats_read_as_float32(tmp_path, fmt, dtype):
    # values exactly representable in every format: halves for floats (IBM included), integers otherwise
    values = (np.arange(12 * 5).reshape(12, 5) - 30) * (0.5 if fmt in (1, 5) else 1)
    rng = np.random.default_rng(fmt)
    order = rng.permutation(12)  # traces in shuffled order: geometry comes from the headers
    path = _write_segy(tmp_path / f"f{fmt}.sgy", values.astype(dtype), fmt, IL, XL, trace_order=order)
    data, grid = read_segy(path)
    assert data.dtype == np.float32 and data.shape == (3, 4, 5)
    np.testing.assert_array_equal(data, values.reshape(3, 4, 5))
    assert grid.inlines.tolist() == IL and grid.crosslines.tolist() == XL
    assert (grid.sample_start_ms, grid.sample_interval_ms) == (8.0, 2.0)


def test_little_endian_file(tmp_path):
    values = np.arange(60, dtype=np.float32).reshape(12, 5)
    data, _ = read_segy(_write_segy(tmp_path / "le.sgy", values, 5, IL, XL, endian="little"))
    np.testing.assert_array_equal(data, values.reshape(3, 4, 5))


def test_duplicate_traces_are_an_error(tmp_path):
    positions = [(il, xl) for il in IL for xl in XL]
    positions[5] = positions[4]  # (12, 100) twice, (12, 101) missing
    values = np.zeros((12, 5), np.float32)
    path = _write_segy(tmp_path / "dup.sgy", values, 5, IL, XL, positions=positions)
    with pytest.raises(
        InputError,
        match=r"dup\.sgy, record trace 5: inconsistent geometry: inline 12 crossline 100 appears in 2 traces",
    ):
        read_segy(path)


def test_irregular_geometry_is_an_error(tmp_path):
    # inline 12 has crosslines 101..103 while the others have 100..102: not a rectangle
    positions = [(10, 100), (10, 101), (10, 102), (12, 101), (12, 102), (12, 103)]
    values = np.zeros((6, 5), np.float32)
    path = _write_segy(tmp_path / "irregular.sgy", values, 5, IL, XL, positions=positions)
    with pytest.raises(InputError, match=r"6 traces do not fill the grid of 2 inlines × 4 crosslines .* 2 missing"):
        read_segy(path)


def test_write_segy_without_template(tmp_path):
    grid = Grid.regular((3, 4, 5), inline_start=10, inline_step=2, crossline_start=100, sample_start_ms=8.0)
    data = np.random.default_rng(0).standard_normal(grid.shape).astype(np.float32)
    back, back_grid = read_segy(write_segy(data, grid, tmp_path / "new.sgy"))
    np.testing.assert_array_equal(back, data)
    assert back_grid.same_as(grid), grid.difference(back_grid)
    odd = Grid.regular((3, 4, 5), sample_start_ms=0.5)
    with pytest.raises(InputError, match="not a whole 16-bit ms"):
        write_segy(data, odd, tmp_path / "odd.sgy")
    assert not (tmp_path / "odd.sgy").exists()


# ---------------------------------------------------------------------------- the volume store
def test_save_load_volumes_memory_mapped(tmp_path):
    grid = Grid.regular((4, 5, 6), inline_start=100)
    rng = np.random.default_rng(1)
    volumes = {"amplitude": rng.standard_normal(grid.shape), "coherence": rng.random(grid.shape).astype(np.float32)}
    volumes["amplitude"][0, 0, 0] = np.nan
    store = tmp_path / "volumes"
    save_volumes(store, volumes, grid)
    loaded, loaded_grid = load_volumes(store)
    assert loaded_grid.same_as(grid) and list(loaded) == ["amplitude", "coherence"]
    for name, volume in loaded.items():
        assert isinstance(volume, np.memmap) and volume.dtype == np.float32 and not volume.flags.writeable
        np.testing.assert_array_equal(volume, volumes[name].astype(np.float32))
    manifest = json.loads((store / "manifest.json").read_text())
    entry = manifest["volumes"][0]
    assert entry["bytes"] == (store / "amplitude.npy").stat().st_size == 4 * 5 * 6 * 4 + 128
    assert entry["nonfinite"]["nan"] == 1 and entry["shape"] == [4, 5, 6]
    only, _ = load_volumes(store, names=["coherence"], mmap=False)
    assert list(only) == ["coherence"] and not isinstance(only["coherence"], np.memmap)
    with pytest.raises(InputError, match=r"no volume named \['envelope'\]"):
        load_volumes(store, names=["envelope"])


def test_save_volumes_is_atomic(tmp_path):
    grid = Grid.regular((4, 5, 6))
    store = tmp_path / "volumes"
    save_volumes(store, {"a": np.zeros(grid.shape)}, grid)
    with pytest.raises(InputError, match=r"volume 'b' has shape \(4, 5, 7\)"):
        save_volumes(store, {"a": np.ones(grid.shape), "b": np.ones((4, 5, 7))}, grid)
    loaded, _ = load_volumes(store)  # the old store is untouched
    assert list(loaded) == ["a"] and float(loaded["a"].max()) == 0.0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["volumes"]


def test_load_volumes_errors(tmp_path):
    with pytest.raises(InputError, match=r"manifest\.json: missing"):
        load_volumes(tmp_path)
    grid = Grid.regular((2, 2, 3))
    save_volumes(tmp_path / "s", {"a": np.zeros(grid.shape)}, grid)
    (tmp_path / "s" / "a.npy").write_bytes((tmp_path / "s" / "a.npy").read_bytes()[:-5])
    with pytest.raises(InputError, match=r"a\.npy: unreadable volume 'a'"):
        load_volumes(tmp_path / "s")


def test_read_volume_npy(tmp_path):
    path = tmp_path / "amp.npy"
    np.save(path, np.arange(24, dtype=np.float64).reshape(2, 3, 4))
    data, grid = read_volume(path)
    assert data.dtype == np.float32 and grid.same_as(Grid.regular((2, 3, 4)))
    np.save(path, np.arange(24, dtype=np.float32).reshape(2, 3, 4))
    hint = Grid.regular((2, 3, 4), inline_start=500, sample_interval_ms=4.0)
    data, grid = read_volume(path, grid_hint=hint)
    assert isinstance(data, np.memmap) and grid is hint
    with pytest.raises(InputError, match=r"amp\.npy: array shape \(2, 3, 4\) does not match"):
        read_volume(path, grid_hint=Grid.regular((2, 3, 5)))
    np.save(path, np.zeros((2, 3)))
    with pytest.raises(InputError, match="expected a 3-D"):
        read_volume(path)
    with pytest.raises(InputError, match=r"unsupported volume file type '\.txt'"):
        read_volume(tmp_path / "amp.txt")


def test_grid_mismatch_names_both_files(f3, tmp_path):
    other = tmp_path / "coherence.npy"
    np.save(other, np.zeros((23, 18, 75), np.float32))  # right shape, but no geometry: lines 0..22
    with pytest.raises(InputError, match=r"f3_crop\.sgy and .*coherence\.npy differ: inlines 23 \(111\.\.133\) vs"):
        read_volumes({"amplitude": f3, "coherence": other})
    # with the survey's grid as hint, the .npy volume fits
    volumes, grid = read_volumes({"amplitude": f3, "coherence": other}, grid_hint=segy_grid(f3))
    assert grid.shape == (23, 18, 75) and set(volumes) == {"amplitude", "coherence"}


def test_check_same_grid_sample_axis():
    a, b = Grid.regular((2, 2, 5), sample_interval_ms=4.0), Grid.regular((2, 2, 5), sample_interval_ms=2.0)
    assert check_same_grid({"a.sgy": a, "a2.sgy": a}) is a
    with pytest.raises(InputError, match=r"a\.sgy and b\.sgy differ: sample interval 4 ms vs 2 ms"):
        check_same_grid({"a.sgy": a, "b.sgy": b})


def test_nonfinite_report():
    volume = np.zeros((3, 2, 2), np.float32)
    volume[0, 0, 0], volume[1, 1, 1], volume[2, 0, 1] = np.nan, np.inf, -np.inf
    expected = {"nan": 1, "posinf": 1, "neginf": 1, "nonfinite": 3, "voxels": 12, "first": [0, 0, 0]}
    assert nonfinite_report(volume) == expected


def test_write_volume_dispatch(f3, tmp_path):
    data, grid = read_segy(f3)
    facies = (data > 0).astype(np.int16)
    out = write_volume(tmp_path / "facies.sgy", facies, grid, template=f3, dtype="int16")
    np.testing.assert_array_equal(read_segy(out)[0], facies)
    out = write_volume(tmp_path / "facies.npy", facies, grid, dtype="int16")
    assert np.load(out).dtype == np.int16
    with pytest.raises(InputError, match="does not fit the grid"):
        write_volume(tmp_path / "x.npy", facies[:, :, :10], grid)


def test_header_bytes_are_checked(tmp_path):
    path = _write_segy(tmp_path / "small.sgy", np.zeros((12, 5), np.float32), 5, IL, XL)
    with pytest.raises(InputError, match=r"small\.sgy: iline_byte=190 is not the first byte of a SEG-Y trace header"):
        read_segy(path, iline_byte=190)
    # crossline numbers read from an empty field: every inline's traces collapse onto crossline 0
    with pytest.raises(InputError, match=r"inline 10 crossline 0 appears in 4 traces.*bytes 189/29; are those right"):
        read_segy(path, xline_byte=29)
