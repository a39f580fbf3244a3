"""Seeded, stratified hold-out splits and per-class subsamples shared by every family."""

from __future__ import annotations

import numpy as np
import pandas as pd


def stratified_split(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Boolean mask of the held-out items: ``fraction`` of every class (at least one, and at least
    one kept), drawn with ``seed``."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"hold-out fraction must be in (0, 1), got {fraction}")
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    held_out = np.zeros(labels.size, dtype=bool)
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        n = min(len(members) - 1, max(1, round(fraction * len(members))))
        if n > 0:
            held_out[rng.choice(members, size=n, replace=False)] = True
    return held_out


def cap_per_class(table: pd.DataFrame, column: str, max_rows: int, seed: int) -> pd.DataFrame:
    """At most ``max_rows`` rows of each ``column`` value, drawn with ``seed`` (a shuffled table, cut)."""
    shuffled = table.sample(frac=1.0, random_state=seed)
    return shuffled[shuffled.groupby(column).cumcount() < max_rows]
