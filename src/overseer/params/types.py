"""Value types of the params schema: strict numbers, fractions, choices, and the ``Section`` base."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
)
from pydantic_core import PydanticCustomError

# --- value types -------------------------------------------------------------------------------------

# YAML 1.2 numbers that YAML 1.1 (PyYAML) reads as strings: 1e-3, 3E+5, .5e-2 (no dot needed in the mantissa)
_NUMBER_TEXT = re.compile(r"[-+]?(\d[\d_]*\.?[\d_]*|\.\d[\d_]*)([eE][-+]?\d+)?")


def _yaml_number(value: Any) -> Any:
    """A string in number syntax is judged as the number it spells (the code calls ``float()`` on it)."""
    if isinstance(value, str) and _NUMBER_TEXT.fullmatch(value.strip()):
        return float(value.replace("_", ""))
    return value


def _plain_number(value: Any) -> Any:
    """A string in number syntax is refused with the fix (the code uses the value as it is)."""
    match = _NUMBER_TEXT.fullmatch(value.strip()) if isinstance(value, str) else None
    if match:
        mantissa, exponent = match.groups()
        fix = f"write {mantissa}.0{exponent}" if exponent and "." not in mantissa else "write it without quotes"
        raise PydanticCustomError(
            "number_text", "must be a number, got {got} (a string to PyYAML: {fix})", {"got": repr(value), "fix": fix}
        )
    return value


def _check(condition: bool, kind: str, message: str, **context: Any) -> None:
    if not condition:
        raise PydanticCustomError(kind, message, context)


def _fraction_open(value: float) -> float:
    _check(0 < value < 1, "fraction", "must be a fraction in (0, 1), got {got}", got=_show(value))
    return value


def _fraction_right_open(value: float) -> float:
    _check(0 <= value < 1, "fraction", "must be in [0, 1), got {got}", got=_show(value))
    return value


def _fraction_closed(value: float) -> float:
    _check(0 <= value <= 1, "fraction", "must be in [0, 1], got {got}", got=_show(value))
    return value


def _unique(values: list) -> list:
    seen, repeated = set(), []
    for v in values:
        if v in seen and v not in repeated:
            repeated.append(v)
        seen.add(v)
    shown = ", ".join(map(repr, repeated))
    _check(not repeated, "unique", "must not repeat items, got {got} more than once", got=shown)
    return values


# Float: the code calls float() on it, so "3e-4" (what `dvc exp run -S key=3e-4` writes) is fine;
# Real: the code uses the value as it is, so only a YAML number is
Float = Annotated[float, BeforeValidator(_yaml_number)]
Real = Annotated[float, BeforeValidator(_plain_number)]
PositiveFloat = Annotated[Float, Field(gt=0)]
NonNegativeFloat = Annotated[Float, Field(ge=0)]
Fraction = Annotated[Float, AfterValidator(_fraction_open)]  # (0, 1)
Rate = Annotated[Float, AfterValidator(_fraction_right_open)]  # [0, 1)
RealRate = Annotated[Real, AfterValidator(_fraction_right_open)]
RealFraction = Annotated[Real, AfterValidator(_fraction_open)]
Share = Annotated[Float, AfterValidator(_fraction_closed)]  # [0, 1]
PositiveInt = Annotated[int, Field(ge=1)]
NonNegativeInt = Annotated[int, Field(ge=0)]
Seed = Annotated[int, Field(ge=0)]  # NumPy refuses negative seeds
Text = Annotated[str, Field(min_length=1)]
PathText = Text  # a file or folder, relative to the repository root
Names = Annotated[list[Text], Field(min_length=1), AfterValidator(_unique)]
ColumnNames = Annotated[list[Text], AfterValidator(_unique)]  # columns of a user's table (may be empty)


def _facies_codes(value: Any) -> Any:
    """``ingest.seismic.facies`` as a mapping from the file's codes to names (``{1: SS, 2: CSiS}``):
    judged here, then its names are judged as ``Names``; a list passes through to ``Names``."""
    if not isinstance(value, dict):
        return value
    _check(bool(value), "empty", "must name at least one facies, got {got}", got="{}")
    for code, name in value.items():
        ok = (isinstance(code, int) and not isinstance(code, bool)) or (isinstance(code, str) and code.strip())
        _check(ok, "facies_code", "facies code {got} must be a whole number or text", got=_show(code))
        _check(
            isinstance(name, str) and bool(name.strip()), "facies_name",
            "facies code {code}: the name must be non-empty text, got {got}", code=_show(code), got=_show(name),
        )  # fmt: skip
    lowered = [name.strip().lower() for name in value.values()]
    repeated = sorted({name for name in value.values() if lowered.count(name.strip().lower()) > 1})
    _check(
        not repeated, "unique",
        "each facies once: {got} named by more than one code (that would merge facies; recode the file instead)",
        got=", ".join(map(repr, repeated)),
    )  # fmt: skip
    return list(value.values())


# a list of names (the file holds the names) or a mapping code → name (the file holds the codes)
FaciesNames = Annotated[Names, BeforeValidator(_facies_codes)]
TraceByte = Annotated[int, Field(ge=1, le=240)]  # first byte of a SEG-Y trace header field (segy.py checks which)

# enumerations: the code that reads each key, and its constant
CvScheme = Literal["blocked", "random"]  # seismic.forest.SCHEMES
FeatureMode = Literal["validated", "selected", "all"]  # seismic.feature_choice.MODES
MissingLogs = Literal["error", "drop"]  # seismic.data.well_logs.MISSING
Duplicates = Literal["error", "first", "mean"]  # seismic.data.well_logs.DUPLICATES
Silence = Literal["gap", "rest"]  # engraving.data.graph.SILENCE_RULES
ExoticTuplets = Literal["unknown", "skip"]  # engraving.data.ingest.ingest_engraving
ConvAggr = Literal["mean", "sum", "add", "max", "min", "mul"]  # torch_geometric SAGEConv(aggr=...)
HeteroAggr = Literal["sum", "mean", "max", "min"]  # HeteroConv(aggr=...) that keeps the width ("cat" would not)
PairMode = Literal["cat", "cat_diff"]  # engraving.model.ModelConfig
ExportFormat = Literal["musicxml", "mei"]  # engraving.export.FORMATS
Estimator = Literal["random_forest", "hist_gradient_boosting"]  # seismic.forest.ESTIMATORS
GtmFeatureMode = Literal["selected", "all"]  # seismic.gtm_workflow.FEATURE_MODES
GtmLikelihood = Literal["bhattacharyya", "bayes"]  # seismic.gtm.LIKELIHOODS
CvGroups = Literal["auto", "shards", "sources", "folders", "stratified"]  # trackbed.cross_validation.fold_groups
ClassWeights = ("balanced", "balanced_subsample")  # seismic.forest.CLASS_WEIGHTS, + null / "none"
MaxFeatures = ("sqrt", "log2")  # scikit-learn's RandomForestClassifier(max_features=...)


def _class_weight(value: Any) -> Any:
    ok = value is None or value in ClassWeights or (isinstance(value, str) and value.lower() == "none")
    _check(ok, "choice", "must be balanced, balanced_subsample or null, got {got}", got=_show(value))
    return value


def _max_features(value: Any) -> Any:
    number = not isinstance(value, bool) and isinstance(value, int | float)
    ok = (
        value is None
        or value in MaxFeatures
        or (number and isinstance(value, int) and value >= 1)
        or (number and isinstance(value, float) and 0 < value <= 1)
    )
    _check(
        ok, "choice",
        "must be sqrt, log2, a fraction in (0, 1], a whole number >= 1 or null (all), got {got}", got=_show(value),
    )  # fmt: skip
    return value


def _n_jobs(value: Any) -> Any:
    ok = value is None or (isinstance(value, int) and not isinstance(value, bool) and value != 0)
    _check(ok, "n_jobs", "must be a whole number other than 0 (-1: all cores) or null, got {got}", got=_show(value))
    return value


def _odd_window(value: int) -> int:
    _check(value % 2 == 1, "odd", "must be an odd number of samples (1: off), got {got}", got=_show(value))
    return value


ClassWeight = Annotated[Any, AfterValidator(_class_weight)]
OddWindow = Annotated[int, Field(ge=1), AfterValidator(_odd_window)]  # seismic.well_features.check_window
MaxFeature = Annotated[Any, AfterValidator(_max_features)]
Jobs = Annotated[Any, AfterValidator(_n_jobs)]


def _missing(key: str, reason: str) -> PydanticCustomError:
    """A key required by another key's value (reported at ``key``; ``partial`` checks skip it)."""
    return PydanticCustomError("missing_when", "missing key; needed {reason}", {"at": key, "reason": reason})


class Section(BaseModel):
    """A params mapping: unknown keys and loose types are errors.

    A field without a default is required; ``= None`` on a field whose type does not admit null
    means "may be left out" (the code has a default), while an explicit ``null`` is still an error.
    """

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


def _show(value: Any) -> str:
    """A value as the user wrote it in YAML."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


# --- train_cnn (trackbed) ----------------------------------------------------------------------------
CnnClassWeight = Literal["none", "balanced"]  # trackbed.train.CLASS_WEIGHTS (null: none)
CnnLoss = Literal["categorical_crossentropy", "focal"]  # trackbed.model.LOSSES
