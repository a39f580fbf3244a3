"""Every artifact path of the pipeline, named once (a catalogue in the spirit of Kedro's).

Paths are relative to the repository root, where DVC runs each stage. ``dvc.yaml`` spells the
same paths as ``deps``/``outs``; ``tests/unit/test_paths.py`` checks that the two agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class FamilyPaths:
    """The folders one family's stages read and write, in pipeline order."""

    family: str

    @property
    def raw(self) -> Path:
        return Path("data/raw") / self.family

    @property
    def prepared(self) -> Path:
        return Path("data/prepared") / self.family

    @property
    def ingest_report(self) -> Path:
        return Path("reports") / self.family / "ingest.json"

    @property
    def validation_report(self) -> Path:
        return Path("reports") / self.family / "validation"

    @property
    def trained_model(self) -> Path:
        return Path("models") / self.family / "train"

    @property
    def train_report(self) -> Path:
        return Path("reports") / self.family / "train"

    @property
    def eval_report(self) -> Path:
        return Path("reports") / self.family / "eval"

    @property
    def exported_model(self) -> Path:
        return Path("models") / self.family / "export"

    @property
    def export_report(self) -> Path:
        return Path("reports") / self.family / "export.json"


TRACKBED = FamilyPaths("trackbed")
SEISMIC = FamilyPaths("seismic")
ENGRAVING = FamilyPaths("engraving")
FAMILY_PATHS = {paths.family: paths for paths in (TRACKBED, SEISMIC, ENGRAVING)}

# trackbed: TFRecord shards per split
TRACKBED_TRAIN_FILES = TRACKBED.prepared / "train"
TRACKBED_EVAL_FILES = TRACKBED.prepared / "eval"
TRACKBED_PROVENANCE = TRACKBED.prepared / "provenance.csv"  # prepared shard + record -> source file and record
TRACKBED_CV_REPORT = Path("reports/trackbed/cv")  # cv_cnn: folds, mean ± std of the head's macro-F1

# seismic: the training table, its hold-out, the selection and the predicted volumes
SEISMIC_META = SEISMIC.prepared / "meta.json"
SEISMIC_TRUTH = SEISMIC.prepared / "truth.json"
SEISMIC_TRAIN_TABLE = SEISMIC.prepared / "train.parquet"
SEISMIC_HOLDOUT_TABLE = SEISMIC.prepared / "holdout.parquet"
SEISMIC_VOLUMES = SEISMIC.prepared / "volumes"
SEISMIC_SELECTION = Path("reports/seismic/selection")
SEISMIC_SELECTION_JSON = SEISMIC_SELECTION / "selection.json"
SEISMIC_FACIES = Path("models/seismic/facies")

# seismic GTM (train_gtm, evaluate@gtm, export@gtm): beside the forest, under gtm/
SEISMIC_GTM_MODEL = Path("models/seismic/gtm/train")  # model.skops, config.json and the probability volumes
SEISMIC_GTM_VOLUMES = SEISMIC_GTM_MODEL / "volumes"  # facies.npy (-1: undefined), probabilities/probability_<id>.npy
SEISMIC_GTM_EXPORT = Path("models/seismic/gtm/export")
SEISMIC_GTM_TRAIN_REPORT = Path("reports/seismic/gtm/train")
SEISMIC_GTM_EVAL_REPORT = Path("reports/seismic/gtm/eval")
SEISMIC_GTM_EXPORT_REPORT = Path("reports/seismic/gtm/export.json")
SEISMIC_EVAL_METRICS = SEISMIC.eval_report / "metrics.json"  # the forest's held-out numbers, beside the GTM's
