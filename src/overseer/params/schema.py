"""One pydantic model per ``params.yaml`` section (the choices mirror the code that consumes each key)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    Field,
    model_validator,
)
from pydantic_core import PydanticCustomError

from overseer.params.types import (
    ClassWeight,
    CnnClassWeight,
    CnnLoss,
    ColumnNames,
    ConvAggr,
    CvGroups,
    CvScheme,
    Duplicates,
    Estimator,
    ExoticTuplets,
    ExportFormat,
    FaciesNames,
    FeatureMode,
    Fraction,
    GtmFeatureMode,
    GtmLikelihood,
    HeteroAggr,
    MaxFeature,
    MissingLogs,
    NonNegativeFloat,
    NonNegativeInt,
    PairMode,
    PathText,
    PositiveFloat,
    PositiveInt,
    Rate,
    Real,
    RealFraction,
    RealRate,
    Section,
    Seed,
    Share,
    Silence,
    Text,
    TraceByte,
    _check,
    _missing,
    _show,
    _unique,
    _yaml_number,
)

# --- ingest ------------------------------------------------------------------------------------------


class TrackbedDefault(Section):
    train_per_class: PositiveInt
    eval_per_class: PositiveInt


class IngestTrackbed(Section):
    source: Text = None  # "default", an image folder or TFRecord file(s)
    eval_source: PathText | None = None
    eval_fraction: Fraction = None
    shard_size: PositiveInt
    seed: Seed = None
    default: TrackbedDefault = None

    @model_validator(mode="after")
    def _default_set(self) -> IngestTrackbed:
        if (self.source or "default") == "default" and self.default is None:
            raise _missing("default", "with source: default (train_per_class, eval_per_class)")
        return self


class Kuwahara(Section):
    enabled: bool = None
    radius: PositiveInt = None

    @model_validator(mode="after")
    def _radius_set(self) -> Kuwahara:
        if self.enabled and self.radius is None:
            raise _missing("radius", "with enabled: true")
        return self


class Holdout(Section):
    block_size: PositiveInt
    fraction: Rate  # 0: nothing held out (holdout.parquet empty)
    wells: ColumnNames | None = None  # well logs: these wells are held out (fraction unused)
    seed: Seed


class LogColumns(Section):
    """``ingest.seismic.columns``: the well-log table's columns (matched case-insensitively)."""

    well: Text = None
    depth: Text = None
    facies: Text = None


class SeismicDefault(Section):
    shape: Annotated[list[Annotated[int, Field(ge=8)]], Field(min_length=3, max_length=3)]
    dt_ms: PositiveFloat
    noise: NonNegativeFloat
    seed: Seed


class IngestSeismic(Section):
    source: Literal["default", "volumes"]
    volumes: dict[Text, PathText] | None = None
    amplitude: PathText | None = None
    iline_byte: TraceByte
    xline_byte: TraceByte
    facies: FaciesNames = None
    picks: PathText | None = None
    well_logs: PathText | None = None
    missing_logs: MissingLogs = None
    columns: LogColumns | None = None
    categorical: ColumnNames | None = None
    drop: ColumnNames | None = None
    duplicates: Duplicates = None
    kuwahara: Kuwahara | None = None
    store: Literal["auto", "npy", "zarr"] = "auto"  # seismic.data.zarr_store: zarr for surveys beyond RAM
    holdout: Holdout
    default: SeismicDefault = None

    @model_validator(mode="after")
    def _source_complete(self) -> IngestSeismic:
        if self.source == "default" and self.well_logs:
            raise PydanticCustomError(
                "ignored", "given while source: default (the synthetic survey ignores it): set source: volumes "
                "to train on the well logs, or well_logs: null", {"at": "well_logs"},
            )  # fmt: skip
        if self.holdout.wells and not self.well_logs:
            raise PydanticCustomError(
                "ignored", "names held-out wells, but there are no well_logs (picks are held out by blocks of "
                "inlines: holdout.block_size, holdout.fraction)", {"at": "holdout.wells"},
            )  # fmt: skip
        both = {c.strip().lower() for c in self.categorical or ()} & {c.strip().lower() for c in self.drop or ()}
        if both:
            raise PydanticCustomError(
                "overlap", "columns {got} are in both categorical and drop", {"at": "categorical", "got": sorted(both)}
            )
        if self.source == "default":
            if self.default is None:
                raise _missing("default", "with source: default (shape, dt_ms, noise, seed)")
            return self
        if self.facies is None:
            raise _missing("facies", "with source: volumes (the facies names, in label order)")
        if self.well_logs:
            if self.missing_logs is None:
                raise _missing("missing_logs", "with well_logs (error | drop)")
        elif not self.volumes:
            raise _missing("volumes", "with source: volumes and no well_logs (attribute name: path)")
        elif not self.picks:
            raise _missing("picks", "with volumes and no well_logs (a picks CSV or a folder of polygons)")
        return self


class EngravingSplit(Section):
    validation: Rate = None
    test: Rate = None
    seed: Seed = None

    @model_validator(mode="after")
    def _sum_below_one(self) -> EngravingSplit:
        validation = 0.15 if self.validation is None else self.validation  # ingest.DEFAULTS["split"]
        test = 0.15 if self.test is None else self.test
        _check(
            validation + test < 1, "fraction", "validation + test must be < 1 (a train split is left), got {got}",
            got=_show(validation + test),
        )  # fmt: skip
        return self


class IngestEngraving(Section):
    source: Text = None  # "default" or a folder of scores
    test_source: PathText | None = None  # a folder (or "default") that is the whole test split; null: split source
    silence: Silence = None
    exotic_tuplets: ExoticTuplets = None
    split: EngravingSplit | None = None


class Ingest(Section):
    trackbed: IngestTrackbed = None
    seismic: IngestSeismic = None
    engraving: IngestEngraving = None


# --- validate ----------------------------------------------------------------------------------------


class ValidateTrackbed(Section):
    min_per_class: NonNegativeInt


class ValidateSeismic(Section):
    min_per_facies: NonNegativeInt
    max_nonfinite_fraction: Share


class MinPieces(Section):
    train: NonNegativeInt = None
    validation: NonNegativeInt = None
    test: NonNegativeInt = None


class ValidateEngraving(Section):
    min_pieces: MinPieces


class Validate(Section):
    trackbed: ValidateTrackbed = None
    seismic: ValidateSeismic = None
    engraving: ValidateEngraving = None


# --- select_attributes, train_* --------------------------------------------------------------------


class SelectAttributes(Section):
    max_clusters: PositiveInt
    sem_iter: NonNegativeInt
    cem_iter: PositiveInt
    exhaustive_max_n: PositiveInt
    beam_width: PositiveInt
    variance_floor: Annotated[Real, Field(ge=1e-9, le=1)]
    tolerance: RealRate
    max_rows_per_facies: PositiveInt
    seed: Seed


def _neighbours(value: Any) -> Any:
    whole = isinstance(value, int) and not isinstance(value, bool)
    ok = value == "auto" or (whole and value >= 0)
    _check(ok, "auto_or", "must be auto or a whole number >= 0 (0: off), got {got}", got=_show(value))
    return value


def _gradients(value: Any) -> Any:
    ok = value == "auto" or isinstance(value, bool)
    _check(ok, "auto_or", "must be true, false or auto, got {got}", got=_show(value))
    return value


def _window(value: Any) -> Any:
    whole = isinstance(value, int) and not isinstance(value, bool)
    ok = value == "auto" or (whole and value >= 1 and value % 2 == 1)
    _check(ok, "auto_or", "must be auto or an odd number of samples >= 1 (1: off), got {got}", got=_show(value))
    return value


class WellFeatures(Section):  # seismic.well_features.WellSequenceFeatures (well logs only); auto: seismic.well_choice
    neighbours: Annotated[Any, AfterValidator(_neighbours)] = None
    gradients: Annotated[Any, AfterValidator(_gradients)] = None


class Smooth(Section):  # seismic.well_features.smooth_per_well; auto: seismic.well_choice
    window: Annotated[Any, AfterValidator(_window)] = None


class Hgb(Section):  # seismic.forest.HGB_DEFAULTS: HistGradientBoostingClassifier
    max_iter: Annotated[list[PositiveInt], Field(min_length=1), AfterValidator(_unique)] = None
    learning_rate: PositiveFloat = None
    max_leaf_nodes: Annotated[int, Field(ge=2)] = None
    l2_regularization: NonNegativeFloat = None


class TrainRf(Section):
    features: FeatureMode
    normalise: bool = None
    max_depth: PositiveInt | None = None
    tree_counts: Annotated[list[PositiveInt], Field(min_length=1)] = None
    folds: Annotated[int, Field(ge=2)] = None
    cv_scheme: CvScheme = None
    block_size: PositiveInt = None
    class_weight: ClassWeight = None
    max_features: MaxFeature = None
    min_samples_leaf: PositiveInt = None
    probabilities: bool
    seed: Seed = None
    estimator: Estimator = None
    hgb: Hgb = None
    well_features: WellFeatures = None
    smooth: Smooth = None


class FineTune(Section):
    enabled: bool = None
    unfreeze_from: Text = None
    learning_rate: PositiveFloat = None
    epochs: PositiveInt = None

    @model_validator(mode="after")
    def _complete_when_enabled(self) -> FineTune:
        for key in ("unfreeze_from", "learning_rate", "epochs"):
            if self.enabled and getattr(self, key) is None:
                raise _missing(key, "with enabled: true")
        return self


class Augment(Section):  # trackbed.train.AUGMENT_DEFAULTS, trackbed.model.build_augmentation
    enabled: bool = None
    flip: bool = None
    rotation: Share = None  # × 2π either way
    brightness: Share = None
    contrast: Share = None
    copies: NonNegativeInt = None  # augmented copies of each training image for the head on embeddings


class TrainCnn(Section):
    weights: str | None  # imagenet | none (or null, random, "") | the path of a local weights file
    learning_rate: PositiveFloat
    batch_size: PositiveInt
    epochs: PositiveInt
    early_stopping_patience: NonNegativeInt
    val_fraction: Fraction
    decay_steps: PositiveInt
    decay_rate: PositiveFloat
    dropout: Rate
    head_units: list[PositiveInt]
    standardize_embeddings: bool = None
    seed: Seed
    class_weight: CnnClassWeight | None = None
    loss: CnnLoss = None
    focal_gamma: NonNegativeFloat = None
    augment: Augment | None = None
    fine_tune: FineTune | None = None


class Transpose(Section):  # engraving.train.DEFAULTS["transpose"], engraving.transpose.Transposer
    enabled: bool = None
    max_fifths: Annotated[int, Field(ge=0, le=14)] = None  # keys stay in -7..+7, so 14 fifths at most
    probability: Share = None  # the chance that a training window is transposed


class TrainGnn(Section):
    hidden: PositiveInt = None
    layers: PositiveInt = None
    gru_layers: NonNegativeInt = None
    bidirectional: bool = None
    dropout: RealRate = None  # ModelConfig takes it as it is
    conv_aggr: ConvAggr = None
    hetero_aggr: HeteroAggr = None
    pair_mode: PairMode = None
    pair_features: bool = None
    lr: PositiveFloat = None
    weight_decay: NonNegativeFloat = None
    epochs: PositiveInt = None
    patience: NonNegativeInt = None  # 0: never stop early
    min_delta: NonNegativeFloat = None
    window: PositiveInt = None
    batch_windows: PositiveInt = None
    pos_weight_voice: PositiveFloat = None
    pos_weight_chord: PositiveFloat = None
    grad_clip: NonNegativeFloat = None  # 0: off
    precision: Literal["auto", "fp32", "bf16"] = None  # engraving.precision.PRECISIONS
    transpose: Transpose = None
    seed: Seed = None

    @model_validator(mode="after")
    def _even_hidden(self) -> TrainGnn:
        hidden = 256 if self.hidden is None else self.hidden  # engraving.model.ModelConfig defaults
        bidirectional = True if self.bidirectional is None else self.bidirectional
        if bidirectional and (self.gru_layers is None or self.gru_layers > 0) and hidden % 2:
            raise PydanticCustomError(
                "even", "must be even with bidirectional: true (half per GRU direction), got {got}",
                {"at": "hidden", "got": hidden},
            )  # fmt: skip
        return self


LatentGrid = Annotated[list[Annotated[int, Field(ge=2)]], Field(min_length=2, max_length=2)]  # (rows, columns)


class TrainGtm(Section):  # seismic.gtm.GTMClassifier, seismic.gtm_workflow.train_gtm
    features: GtmFeatureMode
    grid: LatentGrid
    rbf_grid: LatentGrid
    rbf_width: PositiveFloat
    alpha: NonNegativeFloat
    max_iter: PositiveInt
    tol: NonNegativeFloat
    max_voxels: PositiveInt
    likelihood: GtmLikelihood
    seed: Seed


class CvCnn(Section):  # trackbed.cross_validation.cross_validate_trackbed
    folds: Annotated[int, Field(ge=2)]
    groups: CvGroups
    seed: Seed


# --- evaluate, export ------------------------------------------------------------------------------


class EvaluateCnn(Section):
    batch_size: PositiveInt


class EvaluateRf(Section):
    slice_inline: int | None  # an inline number of the survey
    slice_sample: NonNegativeInt | None


class EvaluateGtm(EvaluateRf):
    calibration_bins: Annotated[int, Field(ge=2)]


def _key_change_penalty(value: Any) -> Any:
    """``auto`` (chosen on the validation pieces: engraving.evaluate.choose_key_penalty) or a number >= 0
    (the cost of one key change, engraving.key_smoothing; 0: the per-bar key); "4" is read as 4."""
    import math

    number = _yaml_number(value)
    ok = value == "auto" or (
        isinstance(number, int | float) and not isinstance(number, bool) and math.isfinite(number) and number >= 0
    )
    _check(ok, "choice", "must be auto or a number >= 0 (0: the key per bar), got {got}", got=_show(value))
    return value


class EvaluateGnn(Section):
    threshold: Fraction
    min_clef_run: PositiveInt
    max_notes: PositiveInt | None = None
    key_change_penalty: Annotated[Any, AfterValidator(_key_change_penalty)] = "auto"


class Evaluate(Section):
    cnn: EvaluateCnn = None
    rf: EvaluateRf = None
    gtm: EvaluateGtm = None
    gnn: EvaluateGnn = None


class ExportRf(Section):
    registered_model_name: Text


class ExportGtm(Section):
    registered_model_name: Text


class ExportCnn(Section):
    check_images: PositiveInt
    quantize: bool
    calibration_images: PositiveInt
    int8_check_images: PositiveInt
    registered_model_name: Text


class ExportGnn(Section):
    registered_model_name: Text
    pieces: NonNegativeInt
    formats: Annotated[list[ExportFormat], Field(min_length=1), AfterValidator(_unique)] = None
    pages: NonNegativeInt = None
    threshold: RealFraction = None
    min_clef_run: PositiveInt = None


class Export(Section):
    rf: ExportRf = None
    gtm: ExportGtm = None
    cnn: ExportCnn = None
    gnn: ExportGnn = None


# --- tune --------------------------------------------------------------------------------------------


class Pruner(Section):
    """Keyword arguments of optuna's MedianPruner."""

    n_startup_trials: NonNegativeInt = None
    n_warmup_steps: NonNegativeInt = None
    interval_steps: PositiveInt = None
    n_min_trials: PositiveInt = None


class TuneModel(Section):
    """``tune.<model>``: what tuning/study.py reads. ``space`` is checked by tuning/space.py."""

    seed: Seed = None
    pruner: Pruner | None = None
    space: Any = None
    storage: Text | None = None
    study: Text | None = None
    heartbeat_seconds: PositiveInt = None


class SeismicDask(Section):  # seismic.dask_volume: where and in what chunks the volume-wide steps run
    scheduler: Text | None = None  # null: threads ($DASK_SCHEDULER_ADDRESS when set) | local | an address
    workers: PositiveInt = None  # scheduler: local: LocalCluster worker processes
    memory_limit: Text = None  # scheduler: local: per worker, e.g. 2GiB
    chunks: Annotated[list[Annotated[int, Field(ge=-1)]], Field(min_length=3, max_length=3)] = None


class Seismic(Section):
    dask: SeismicDask = None


class ParamsFile(Section):
    """The whole ``params.yaml``; a section may be left out (a stage that needs it says so)."""

    ingest: Ingest = None
    seismic: Seismic = None
    validate_: Validate = Field(None, alias="validate")  # BaseModel.validate is taken
    select_attributes: SelectAttributes = None
    train_rf: TrainRf = None
    train_gtm: TrainGtm = None
    train_cnn: TrainCnn = None
    cv_cnn: CvCnn = None
    train_gnn: TrainGnn = None
    evaluate: Evaluate = None
    export: Export = None
    tune: dict[Text, TuneModel] = None
