"""Generated well-log tables for the unit tests: layered facies that neighbouring samples help to classify."""

from __future__ import annotations

import numpy as np
import pandas as pd


def layered_wells(n_wells: int = 6, n: int = 60, seed: int = 0, shuffle: bool = True) -> pd.DataFrame:
    """Wells of beds (facies 0/1/2 in runs of 3..10 samples), noisy gr/pe that follow the facies, a
    one-hot formation column by depth; rows shuffled unless ``shuffle`` is False."""
    rng = np.random.default_rng(seed)
    parts = []
    for w in range(n_wells):
        facies = np.repeat(rng.integers(0, 3, n), rng.integers(3, 10, n))[:n]
        depth = 2000 + 0.5 * np.arange(n)
        parts.append(
            pd.DataFrame({
                "well": f"W{w}", "depth": depth, "facies": facies,
                "gr": (40 + 20 * facies + rng.normal(0, 15, n)).astype(np.float32),
                "pe": (3 + 0.3 * facies + rng.normal(0, 0.5, n)).astype(np.float32),
                "Formation:A": (depth > 2015).astype(np.float32),
            })
        )  # fmt: skip
    table = pd.concat(parts, ignore_index=True)
    return table.sample(frac=1.0, random_state=seed).reset_index(drop=True) if shuffle else table
