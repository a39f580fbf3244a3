"""train_gtm: the GTM half of the AASPI attribute-selection workflow, on a prepared survey.

The notes (``attribute_selection``, first pages): "The filtered attributes are then mapped onto
the GTM latent space to generate unsupervised PDFs of all voxels. The picked voxels of each facies
associated with the selected attributes are then mapped onto the latent space to generate
supervised PDFs of training voxels. Then, we compute the likelihood between training and all
voxels, which results in probability volume of training facies."

Here that is :class:`overseer.seismic.gtm.GTMClassifier` (it standardises the attributes first):

* **rows** — a seeded uniform sample of ``max_voxels`` defined voxels of the whole survey
  (unlabelled, ``y = -1``) plus every training pick (labelled); EM fits the map to all of them
  (labels play no part in it), the supervised PDFs come from the picks only. A well-log survey has
  no volume: its training rows are the map's data and the PDFs' too.
* **filtering** — the notes filter the attributes first with the 3-D adaptive Kuwahara filter;
  that is ingest's ``ingest.seismic.kuwahara`` switch (the picks and the volumes are then read from
  the filtered attributes), so the GTM and the forest see the same data. The report says which.
* **volumes** — every voxel is projected in bounded-memory chunks by
  :func:`overseer.seismic.predict_volume.predict_volume` (the forest's chunked writer: int8 facies,
  -1 where an attribute is undefined, one float32 probability volume per facies; SEG-Y with the
  input's headers beside the ``.npy`` files when the survey came as SEG-Y) — or, for a Zarr store
  or a Dask scheduler in ``seismic.dask``, as one Dask graph with the same voxels, as the forest's.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from overseer.errors import InputError
from overseer.seismic.gtm import GTMClassifier, latent_grid
from overseer.seismic.predict_volume import predict_volume, write_facies_segy

FEATURE_MODES = ("selected", "all")  # params train_gtm.features
FACIES_COLUMN = "facies"
UNLABELLED = -1  # scikit-learn's semi-supervised convention


def gtm_features(mode: str, selection: Mapping[str, Any] | None, attributes: Sequence[str]) -> list[str]:
    """The attributes the GTM maps: the GMM winner (``"selected"``, the notes' workflow) or all candidates."""
    if mode not in FEATURE_MODES:
        raise InputError(f"train_gtm.features must be one of {list(FEATURE_MODES)}, got {mode!r}")
    if mode == "all":
        return [str(a) for a in attributes]
    if not selection or not selection.get("best_combination"):
        raise InputError("train_gtm.features: selected needs the winner of select_attributes (selection.json)")
    return [str(a) for a in selection["best_combination"]]


def sample_voxels(volumes: Mapping[str, np.ndarray], features: Sequence[str], n: int, seed: int) -> np.ndarray:
    """A seeded uniform sample of at most ``n`` voxels whose attributes are all finite (rows × features,
    float32), read from the (memory-mapped or Zarr) volumes at sorted flat indices, so only those pages
    or chunks are read."""
    arrays = [volumes[f] for f in features]
    shape = tuple(arrays[0].shape)
    total = int(np.prod(shape))
    rng = np.random.default_rng(seed)
    index = np.unravel_index(np.sort(rng.choice(total, size=min(int(n), total), replace=False)), shape)
    rows = np.column_stack([np.asarray(a[index], dtype=np.float32) for a in arrays])  # a gather: Zarr has no reshape
    return rows[np.isfinite(rows).all(axis=1)]


def build_gtm(cfg: Mapping[str, Any], n_jobs: int | None = None, facies: Sequence[str] | None = None) -> GTMClassifier:
    """The ``train_gtm`` params as a :class:`GTMClassifier` (it standardises the attributes itself: the
    map's noise is isotropic, so attributes in different units need one scale)."""
    return GTMClassifier(
        grid=tuple(cfg["grid"]), rbf_grid=tuple(cfg["rbf_grid"]), rbf_width=float(cfg["rbf_width"]),
        alpha=float(cfg["alpha"]), max_iter=int(cfg["max_iter"]), tol=float(cfg["tol"]),
        likelihood=cfg["likelihood"], random_state=int(cfg["seed"]), n_jobs=n_jobs, facies_names=facies,
    )  # fmt: skip


@dataclass
class GtmResult:
    """What :func:`train_gtm` returns."""

    model: GTMClassifier
    features: list[str]
    history: pd.DataFrame  # iteration, log_likelihood
    rows: dict[str, int]  # unlabelled voxels and labelled picks the map was fitted to

    def summary(self, facies: Sequence[str]) -> dict[str, Any]:
        """The training summary: EM's course, the map's size, and how well each facies' PDF stands apart."""
        gtm, fit = self.model, self.model.gtm_
        names = [facies[int(c)] for c in gtm.classes_]
        overlap = pdf_overlap(gtm.facies_pdfs_)
        return {
            "features": self.features,
            "rows": self.rows,
            "latent_nodes": int(np.prod(gtm.grid)),
            "basis_functions": int(np.prod(gtm.rbf_grid)),
            "em_iterations": int(fit.n_iter_),
            "converged": bool(fit.converged_),
            "log_likelihood": float(self.history["log_likelihood"].iloc[-1]),
            "log_likelihood_per_row": float(self.history["log_likelihood"].iloc[-1]) / max(sum(self.rows.values()), 1),
            "beta": float(fit.beta_),  # noise precision, in standardised attribute units
            "likelihood": gtm.likelihood,
            "picks_per_facies": {n: int(k) for n, k in zip(names, gtm.class_counts_, strict=True)},
            # Bhattacharyya coefficient between facies PDFs on the map: 1 = indistinguishable, 0 = apart
            "pdf_overlap": {a: {b: float(overlap[i, j]) for j, b in enumerate(names)} for i, a in enumerate(names)},
        }


def training_rows(
    table: pd.DataFrame, features: Sequence[str], voxels: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """(X, y) of the fit: the sampled voxels unlabelled (``-1``), then the picks with their facies ids."""
    missing = [f for f in features if f not in table.columns]
    if missing:
        raise InputError(f"the training table has no column for {missing}; it has {list(table.columns)}")
    picks = table[list(features)].to_numpy(dtype=np.float32)
    labels = table[FACIES_COLUMN].to_numpy(dtype=np.int64)
    if voxels is None or not len(voxels):
        return picks, labels
    x = np.concatenate([voxels.astype(np.float32), picks])
    y = np.concatenate([np.full(len(voxels), UNLABELLED, dtype=np.int64), labels])
    return x, y


def train_gtm(
    table: pd.DataFrame,
    volumes: Mapping[str, np.ndarray] | None,
    features: Sequence[str],
    cfg: Mapping[str, Any],
    n_jobs: int | None = None,
    facies: Sequence[str] | None = None,
) -> GtmResult:
    """Fit :func:`build_gtm` to a voxel sample of ``volumes`` (None: a well-log survey, the table only)
    plus the picks of ``table`` — EM on all of those rows; its log-likelihood per iteration comes back
    as ``history``. ``n_jobs``: threads of the model's later predictions (never its result); ``facies``:
    the names its messages use (facies id = position)."""
    voxels = None if volumes is None else sample_voxels(volumes, features, cfg["max_voxels"], cfg["seed"])
    x, y = training_rows(table, features, voxels)
    flat = [f for f, spread in zip(features, np.ptp(x, axis=0), strict=True) if not spread > 0]
    if flat:
        raise InputError(f"attributes {flat} are constant over the voxels and picks the GTM is fitted to (after "
                         "ingest's Kuwahara filter, when it is on): they carry no information; leave them out "
                         "(train_gtm.features: all → selected) or check their volumes")  # fmt: skip
    model = (
        build_gtm(cfg, n_jobs, facies).set_params(max_samples=max(len(x), 10)).fit(x, y)
    )  # the sample is drawn above
    history = pd.DataFrame({
        "iteration": np.arange(len(model.gtm_.log_likelihood_)), "log_likelihood": model.gtm_.log_likelihood_,
    })  # fmt: skip  # iteration 0: the PCA initialisation
    rows = {"voxels": 0 if voxels is None else len(voxels), "picks": len(table)}
    return GtmResult(model, list(features), history, rows)


def gtm_config(cfg: Mapping[str, Any], result: GtmResult, meta: Mapping[str, Any]) -> dict[str, Any]:
    """The trained model's ``config.json``, in the layout ``overseer predict seismic`` reads (``features``,
    ``facies``, ``inputs``), with the ``train_gtm`` params and the training summary."""
    return {
        "method": "gtm", "train_gtm": dict(cfg), "features": result.features, "facies": list(meta["facies"]),
        "inputs": meta.get("inputs"), "kuwahara": meta.get("kuwahara"), **result.summary(meta["facies"]),
    }  # fmt: skip


def pdf_overlap(pdfs: np.ndarray) -> np.ndarray:
    """Bhattacharyya coefficients Σ_k sqrt(p_a(k) p_b(k)) between every two PDFs on the latent nodes (rows)."""
    root = np.sqrt(np.asarray(pdfs, dtype=np.float64))
    return root @ root.T


# ---------------------------------------------------------------------------- volumes
def predict_gtm_survey(
    model: GTMClassifier,
    volumes: Mapping[str, Any],
    features: Sequence[str],
    out_dir: Path,
    meta: Mapping[str, Any],
    *,
    chunk_voxels: int,
    progress: bool = True,
    volumes_dir: str | os.PathLike | None = None,
    dask: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Project every voxel: ``out_dir/facies.npy`` (int8, -1 undefined) and ``out_dir/probabilities/
    probability_<id>.npy`` (float32, NaN undefined), each also as SEG-Y with the input's headers when
    the survey came as SEG-Y; returns the numeric stats of :func:`predict_volume`.

    The forest's rule decides the path (:func:`overseer.seismic.dask_volume.use_dask`): the store
    ``volumes_dir`` (where ``volumes`` were loaded from) is Zarr, or ``dask`` (``seismic.dask``) or
    ``$DASK_SCHEDULER_ADDRESS`` names a scheduler → one Dask graph
    (:func:`~overseer.seismic.dask_volume.predict_volume_dask`, ``seismic.dask.chunks``); else the
    memory maps in slabs of ``chunk_voxels``. The same voxels either way."""
    from overseer.seismic.dask_volume import use_dask

    if use_dask(volumes_dir, dask):
        stats = _project_dask(model, volumes, features, out_dir, volumes_dir, dict(dask or {}))
    else:
        stats = predict_volume(
            model, volumes, features, out_dir / "facies.npy", int(chunk_voxels),
            probabilities_dir=out_dir / "probabilities", engine="sklearn", progress=progress,
        )  # fmt: skip
    template = meta.get("segy_template")
    if template is not None:
        options = {"iline_byte": meta["iline_byte"], "xline_byte": meta["xline_byte"]}
        write_facies_segy(out_dir / "facies.npy", template, segy_options={**options, "dtype": "int16"})
        for path in stats["probability_paths"].values():
            write_facies_segy(path, template, segy_options={**options, "dtype": "float32"})
    return {k: v for k, v in stats.items() if not isinstance(v, str | Path | dict) or k == "facies_counts"}


def _project_dask(
    model: GTMClassifier, volumes: Mapping[str, Any], features: Sequence[str], out_dir: Path,
    volumes_dir: str | os.PathLike | None, dask: Mapping[str, Any],
) -> dict[str, Any]:  # fmt: skip
    """:func:`predict_gtm_survey`'s volumes as one Dask graph on the scheduler ``dask`` names: read
    from the store ``volumes_dir`` (the workers open it themselves), else from ``volumes`` in this process."""
    import dask.array as da

    from overseer.seismic.dask_volume import open_volumes, params_scheduler, predict_volume_dask
    from overseer.seismic.data.zarr_store import DEFAULT_CHUNKS, chunk_shape

    with params_scheduler(dask):
        if volumes_dir is not None:
            arrays, _ = open_volumes(volumes_dir, names=features, chunks=dask.get("chunks"))
        else:
            block = chunk_shape(tuple(volumes[features[0]].shape), dask.get("chunks") or DEFAULT_CHUNKS)
            arrays = {f: da.from_array(volumes[f], chunks=block) for f in features}
        return predict_volume_dask(model, arrays, features, out_dir / "facies.npy",
                                   probabilities_dir=out_dir / "probabilities")  # fmt: skip


# ---------------------------------------------------------------------------- pictures
def plot_latent_map(gtm: GTMClassifier, facies: Sequence[str]) -> plt.Figure:
    """The figure interpreters look at first: the unsupervised PDF of all voxels on the latent grid,
    with each facies' supervised PDF drawn over it (contours at half its peak, its peak marked)."""
    a, b = (int(v) for v in gtm.grid)  # node (u_i, v_j) is entry [i, j] of a map (gtm.latent_grid)
    nodes = latent_grid((a, b))
    u, v = nodes[::b, 0], nodes[:b, 1]
    fig, ax = plt.subplots(figsize=(7.5, 6.5))
    image = ax.imshow(np.asarray(gtm.unsupervised_pdf_).reshape(a, b).T, origin="lower", extent=(-1, 1, -1, 1),
                      cmap="Greys")  # fmt: skip
    fig.colorbar(image, ax=ax, label="unsupervised PDF: mean responsibility of all voxels")
    cmap = plt.get_cmap("tab10", len(facies))
    for label, facies_pdf in zip(gtm.classes_, gtm.facies_pdfs_, strict=True):
        grid = np.asarray(facies_pdf).reshape(a, b)
        colour = cmap(int(label))
        if grid.max() > grid.min():
            ax.contour(u, v, grid.T, levels=[0.5 * grid.max()], colors=[colour], linewidths=2)
        i, j = np.unravel_index(int(np.argmax(grid)), grid.shape)
        ax.plot(u[i], v[j], "o", color=colour, markersize=9, markeredgecolor="white", label=facies[int(label)])
    ax.set(title="GTM latent space: all voxels (grey)\nfacies PDFs of the picks (contours at half peak, peak ●)",
           xlabel="latent u1", ylabel="latent u2")  # fmt: skip
    ax.legend(loc="upper left", bbox_to_anchor=(1.25, 1.0), fontsize=8)
    return fig
