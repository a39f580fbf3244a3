"""EngravingGNN as an MLflow pyfunc model: a quantized score's bytes in, engraved MusicXML out.

:class:`EngravingModel` wraps the trained model folder (``config.json`` + ``model.pt``, written by
``engraving.train.save_model``), loaded once on the CPU in eval mode. ``predict`` takes a DataFrame
with one row per score:

- ``score`` (binary): the file's bytes, MusicXML (``.musicxml``/``.xml``/``.mxl``), MEI, kern or
  MIDI (base64 in a JSON request to ``mlflow models serve``: MLflow decodes binary columns);
- ``format`` (string, optional): the file's suffix, ``musicxml``, ``xml``, ``mxl``, ``mei``,
  ``krn`` (or ``kern``), ``mid`` or ``midi`` (a leading dot and case do not matter); empty or
  missing: guessed from the bytes.

Each row is read exactly as ``overseer engrave`` reads a file (:func:`overseer.engraving.engrave.read_piece`:
the bytes go into a temporary file with that suffix), predicted, post-processed and exported as
MusicXML (checked to read back with partitura). The result has one row per input row:

- ``musicxml`` (string): the engraved MusicXML document;
- ``notes`` (string): JSON, one object per written note (a note tied across a barline is two)
  in the piece's (onset, pitch) order — see :data:`NOTE_FIELDS`;
- ``n_notes`` (long): the number of those notes;
- ``warnings`` (string): what reading changed (MIDI notes snapped to a grid or dropped, a
  score's zero-length notes dropped), ``"; "``-joined; empty when nothing was.

``params`` (all optional): ``threshold`` (voice/chord edge probability, 0.5), ``min_clef_run``
(shorter clef regions are flicker, 4), ``grid`` (MIDI only: snap to 1/grid quarter; 0: the
file's own grid, sixteenths for performed timing), ``max_notes`` (predict longer pieces in
overlapping windows of this many notes; 0: whole pieces) and ``key_change_penalty`` (the cost of
a key signature change when the key is smoothed over the piece, :mod:`overseer.engraving.key_smoothing`;
0: the paper's per-bar key; by default the model's own, ``postprocess.json`` in its folder — the
value evaluate@gnn chose on validation pieces — else ``DEFAULT_KEY_CHANGE_PENALTY``; the logged
signature's default is that value).

A row that cannot be engraved raises :class:`ScoreError` (an ``MlflowException``, HTTP 400 when
served) whose message names the row and the reason in one line: ``row 1 (mid): not a Standard
MIDI File: ...``.

:func:`log_engraving_model` logs and registers the model (:func:`overseer.serving.pyfunc.log_pyfunc`)
with its signature, an input example (a small real MusicXML score, :data:`EXAMPLE_MUSICXML`, by
default) and exact pip requirements (:func:`pip_requirements`).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import shutil
import tempfile
import warnings
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

from overseer.engraving.key_smoothing import DEFAULT_KEY_CHANGE_PENALTY
from overseer.errors import InputError
from overseer.serving.pyfunc import log_pyfunc

if TYPE_CHECKING:
    from mlflow.models import ModelSignature

    from overseer.engraving.model import EngravingGNN

ARTIFACT = "model"  # the artifact key of the trained model folder
MODEL_FILES = ("config.json", "model.pt")  # engraving.train.CONFIG_FILE, WEIGHTS_FILE (not imported: torch)
INPUT_COLUMNS = ("score", "format")
OUTPUT_COLUMNS = ("musicxml", "notes", "n_notes", "warnings")
PARAM_DEFAULTS: dict[str, float | int] = {
    "threshold": 0.5, "min_clef_run": 4, "grid": 0, "max_notes": 0, "key_change_penalty": DEFAULT_KEY_CHANGE_PENALTY,
}  # fmt: skip
POSTPROCESS_FILE = "postprocess.json"  # engraving.engrave.POSTPROCESS_FILE: logged beside MODEL_FILES when present
# format names a row may give -> the file suffix the reader expects
FORMATS = {
    "musicxml": ".musicxml", "xml": ".xml", "mxl": ".mxl", "mei": ".mei", "krn": ".krn", "kern": ".krn",
    "mid": ".mid", "midi": ".midi",
}  # fmt: skip
NOTE_FIELDS = (
    "onset", "duration", "pitch", "bar", "tie_prev", "tie_next", "staff", "voice", "chord", "spelling",
    "octave", "key", "stem", "clef", "octave_shift", "note_type", "dots", "tuplet", "beam", "show_accidental",
)  # fmt: skip
"""Per note in ``notes``: onset/duration (quarters, as notated), MIDI pitch, bar (0-based), ties;
then the post-processed engraving: staff (1 upper, 2 lower), voice (1-based per bar and staff),
chord (id), spelling (``"C#"``) and octave, key (fifths of the key signature in force), stem
(``up``/``down``/``none``), clef (``G``/``F``/``C``), octave_shift (``none``/``8va``/``8vb``/``15ma``),
note_type (``quarter`` …), dots, tuplet (``none``, ``3``, ``5`` or a generic ``actual:normal``),
beam (id, -1: none) and show_accidental."""

# A real two-staff piano score of two bars (11 notes): the default input example.
EXAMPLE_MUSICXML = """<?xml version="1.0" encoding="UTF-8"?>
<score-partwise version="4.0">
<part-list><score-part id="P1"><part-name>Piano</part-name></score-part></part-list>
<part id="P1">
<measure number="1">
<attributes><divisions>2</divisions><key><fifths>0</fifths></key>
<time><beats>4</beats><beat-type>4</beat-type></time>
<staves>2</staves>
<clef number="1"><sign>G</sign><line>2</line></clef><clef number="2"><sign>F</sign><line>4</line></clef>
</attributes>
<note><pitch><step>C</step><octave>5</octave></pitch><duration>2</duration><voice>1</voice><type>quarter</type><staff>1</staff></note>
<note><pitch><step>D</step><octave>5</octave></pitch><duration>2</duration><voice>1</voice><type>quarter</type><staff>1</staff></note>
<note><pitch><step>E</step><octave>5</octave></pitch><duration>1</duration><voice>1</voice><type>eighth</type><staff>1</staff></note>
<note><pitch><step>F</step><octave>5</octave></pitch><duration>1</duration><voice>1</voice><type>eighth</type><staff>1</staff></note>
<note><pitch><step>G</step><octave>5</octave></pitch><duration>2</duration><voice>1</voice><type>quarter</type><staff>1</staff></note>
<backup><duration>8</duration></backup>
<note><pitch><step>C</step><octave>3</octave></pitch><duration>8</duration><voice>5</voice><type>whole</type><staff>2</staff></note>
<note><chord/><pitch><step>G</step><octave>3</octave></pitch><duration>8</duration><voice>5</voice><type>whole</type><staff>2</staff></note>
</measure>
<measure number="2">
<note><pitch><step>E</step><octave>5</octave></pitch><duration>4</duration><voice>1</voice><type>half</type><staff>1</staff></note>
<note><pitch><step>C</step><octave>5</octave></pitch><duration>4</duration><voice>1</voice><type>half</type><staff>1</staff></note>
<backup><duration>8</duration></backup>
<note><pitch><step>G</step><octave>2</octave></pitch><duration>4</duration><voice>5</voice><type>half</type><staff>2</staff></note>
<note><pitch><step>C</step><octave>3</octave></pitch><duration>4</duration><voice>5</voice><type>half</type><staff>2</staff></note>
</measure>
</part>
</score-partwise>
"""


class ScoreError(InputError, MlflowException):
    """A row that cannot be engraved: ``row`` (0-based position in the input), ``format`` and ``reason``
    (one line); the message is ``row R (FORMAT): REASON``. An :class:`InputError` for our CLI and an
    ``INVALID_PARAMETER_VALUE`` ``MlflowException``, so that ``mlflow models serve`` answers 400 with
    this message rather than its generic "unexpected error"."""

    def __init__(self, row: int, fmt: str, reason: str) -> None:
        text = f"row {row} ({fmt or 'format not given'}): {reason}"
        InputError.__init__(self, text)
        MlflowException.__init__(self, text, error_code=INVALID_PARAMETER_VALUE)
        self.record, self.row, self.format, self.reason = row, row, fmt, reason


class EngravingModel(mlflow.pyfunc.PythonModel):
    """The pyfunc face of a trained EngravingGNN (module docstring): score bytes → engraved MusicXML.

    ``model`` is the loaded :class:`~overseer.engraving.model.EngravingGNN` (after ``load_context``;
    ``PyFuncModel.unwrap_python_model().model``), so callers inside Overseer can still export MEI/SVG.
    """

    def __init__(self) -> None:
        self.model: EngravingGNN | None = None
        self.key_change_penalty: float = DEFAULT_KEY_CHANGE_PENALTY  # the model folder's (postprocess.json)

    def load_context(self, context: Any) -> None:
        """Load the model folder of the ``model`` artifact once, on the CPU, in eval mode, and its key
        change penalty (``postprocess.json``, when logged with it)."""
        from overseer.engraving.engrave import model_key_change_penalty
        from overseer.engraving.train import load_model

        self.model = load_model(context.artifacts[ARTIFACT], device="cpu")
        self.key_change_penalty = model_key_change_penalty(context.artifacts[ARTIFACT])

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        """Engrave every row of ``model_input`` (columns ``score``, ``format``); module docstring."""
        if self.model is None:
            raise MlflowException("EngravingModel.predict before load_context: no model loaded")
        options = _options(params, key_change_penalty=getattr(self, "key_change_penalty", DEFAULT_KEY_CHANGE_PENALTY))
        frame = pd.DataFrame(model_input)
        if "score" not in frame.columns:
            raise MlflowException.invalid_parameter_value(
                f"expected a column 'score' (the file's bytes) and a column 'format'; got {list(frame.columns)}"
            )
        formats = frame["format"] if "format" in frame.columns else pd.Series([None] * len(frame))
        rows = [
            self._engrave_row(k, score, fmt, options)
            for k, (score, fmt) in enumerate(zip(frame["score"], formats, strict=True))
        ]
        return pd.DataFrame(rows, columns=list(OUTPUT_COLUMNS)).astype({"n_notes": "int64"})

    def _engrave_row(self, row: int, score: Any, fmt: Any, options: dict[str, Any]) -> dict[str, Any]:
        given = "" if fmt is None or (isinstance(fmt, float) and np.isnan(fmt)) else str(fmt).strip()
        try:
            data = _as_bytes(score)
            suffix = _suffix(given, data)
            return _engrave_bytes(self.model, data, suffix, options)
        except ScoreError:
            raise
        except Exception as exc:  # any failure of one row: named, one line, chained
            raise ScoreError(row, given, _reason(exc)) from exc


def _options(
    params: dict[str, Any] | None, *, key_change_penalty: float = DEFAULT_KEY_CHANGE_PENALTY
) -> dict[str, Any]:
    """The prediction options: defaults (``key_change_penalty``: the model's), overridden by ``params``; checked."""
    import math

    from overseer.engraving.engrave import GRIDS

    given = {k: v for k, v in (params or {}).items() if v is not None}
    unknown = sorted(set(given) - set(PARAM_DEFAULTS))
    if unknown:
        raise MlflowException.invalid_parameter_value(
            f"unknown params {unknown}: expected some of {', '.join(PARAM_DEFAULTS)}"
        )
    out = {**PARAM_DEFAULTS, "key_change_penalty": key_change_penalty, **given}
    try:
        threshold, min_run = float(out["threshold"]), int(out["min_clef_run"])
        grid, max_notes, penalty = int(out["grid"]), int(out["max_notes"]), float(out["key_change_penalty"])
    except (TypeError, ValueError) as exc:
        raise MlflowException.invalid_parameter_value(f"params {out}: {exc}") from exc
    if not (math.isfinite(penalty) and penalty >= 0):
        raise MlflowException.invalid_parameter_value(
            f"key_change_penalty {penalty}: expected a number >= 0 (0: the key per bar)"
        )
    if not 0 < threshold < 1:
        raise MlflowException.invalid_parameter_value(f"threshold {threshold}: expected a probability in (0, 1)")
    if min_run < 1:
        raise MlflowException.invalid_parameter_value(f"min_clef_run {min_run}: expected 1 or more")
    if grid and grid not in GRIDS:
        raise MlflowException.invalid_parameter_value(
            f"grid {grid}: expected 0 (the file's own) or one of {', '.join(map(str, GRIDS))}"
        )
    if max_notes < 0:
        raise MlflowException.invalid_parameter_value(f"max_notes {max_notes}: expected 0 (no limit) or more")
    return {
        "threshold": threshold, "min_clef_run": min_run, "grid": grid or None, "max_notes": max_notes or None,
        "key_change_penalty": penalty,
    }  # fmt: skip


def _as_bytes(score: Any) -> bytes:
    """The bytes of a ``score`` cell: bytes as they are; a string is base64 (or the text of an XML/kern file)."""
    if isinstance(score, bytes | bytearray | memoryview):
        return bytes(score)
    if isinstance(score, str):
        text = score.strip()
        if text.startswith(("<", "!!", "**")):  # an XML or kern document sent as text
            return score.encode("utf-8")
        try:
            return base64.b64decode(text, validate=False)
        except (binascii.Error, ValueError) as exc:
            raise ValueError("score is a string but not base64 (send the file's bytes, base64 over JSON)") from exc
    if score is None or (isinstance(score, float) and np.isnan(score)):
        raise ValueError("no score (empty cell)")
    raise ValueError(f"score is {type(score).__name__}: expected the file's bytes")


def _suffix(fmt: str, data: bytes) -> str:
    """The file suffix for a row's ``format`` (module docstring), or guessed from ``data`` when not given."""
    if fmt:
        key = fmt.lower().removeprefix(".")
        if key not in FORMATS:
            raise ValueError(f"format {fmt!r}: expected one of {', '.join(FORMATS)}")
        return FORMATS[key]
    head = data[:4096].lstrip()
    if head.startswith(b"MThd"):
        return ".mid"
    if head.startswith(b"PK"):
        return ".mxl"
    if b"<mei" in head:
        return ".mei"
    if b"**kern" in head:
        return ".krn"
    if b"<score-partwise" in head or b"<score-timewise" in head:
        return ".musicxml"
    raise ValueError(f"no format given and the bytes are none of {', '.join(FORMATS)} (give the format column)")


def _reason(exc: BaseException) -> str:
    """One line: an input error's own text (its temporary path removed), any other error's type and text."""
    from overseer.engraving.data.scores import one_line
    from overseer.engraving.export import ExportError

    text = str(exc)
    path = getattr(exc, "path", None)
    if path is not None:
        text = text.removeprefix(f"{path}: ").replace(str(path), "the score")
    if isinstance(exc, ExportError):
        text = f"export failed (a bug: please report it): {text}"
    elif not isinstance(exc, InputError | ValueError):
        text = f"{type(exc).__name__}: {text}"
    return one_line(text or type(exc).__name__)


def _engrave_bytes(model: EngravingGNN, data: bytes, suffix: str, options: dict[str, Any]) -> dict[str, Any]:
    """Read, predict, post-process and export one score's bytes (module docstring)."""
    from overseer.engraving import export
    from overseer.engraving import postprocess as pp
    from overseer.engraving.engrave import check_predictions, read_piece
    from overseer.engraving.predict import predict_piece

    if not data.strip():
        raise ValueError("empty score (no bytes)")
    with tempfile.TemporaryDirectory(prefix="overseer-engrave-") as tmp:
        path = Path(tmp) / f"score{suffix}"
        path.write_bytes(data)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            piece = read_piece(path, grid=options["grid"])
        told = [_told(w.message, path) for w in caught if _is_input_warning(w.category)]
        pred = predict_piece(model, piece, max_notes=options["max_notes"])
        check_predictions(piece, pred)
        res = pp.postprocess(
            piece, pred, threshold=options["threshold"], min_clef_run=options["min_clef_run"],
            key_change_penalty=options["key_change_penalty"],
        )  # fmt: skip
        written = export.export_score(piece, res, Path(tmp) / "out", "engraved", formats=("musicxml",), pages=0)
        musicxml = Path(written["musicxml"]).read_text(encoding="utf-8")
    notes = note_records(piece, res)
    return {"musicxml": musicxml, "notes": json.dumps(notes), "n_notes": len(notes), "warnings": "; ".join(told)}


def _is_input_warning(category: type[Warning]) -> bool:
    from overseer.engraving.engrave import QuantizeWarning, ScoreWarning

    return issubclass(category, QuantizeWarning | ScoreWarning)


def _told(message: Warning | str, path: Path) -> str:
    return str(message).removeprefix(f"{path}: ").replace(str(path), "the score")


def note_records(piece: dict[str, np.ndarray], res: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    """One JSON-ready dict per note of ``piece`` (:data:`NOTE_FIELDS`) from its post-processed ``res``."""
    from overseer.engraving import notation as nt
    from overseer.engraving import schema

    tasks = schema.NODE_TASKS
    records = []
    for i in range(int(piece["onset"].size)):
        step, alter, octave = nt.spelled_pitch(int(res["spelling"][i]), int(piece["pitch"][i]))
        tuplet = int(res["tuplet"][i])
        records.append(
            {
                "onset": float(res["onset"][i]), "duration": float(res["duration"][i]),
                "pitch": int(piece["pitch"][i]), "bar": int(piece["bar"][i]),
                "tie_prev": bool(piece["tie_prev"][i]), "tie_next": bool(piece["tie_next"][i]),
                "staff": int(res["staff"][i]), "voice": int(res["voice"][i]), "chord": int(res["chord"][i]),
                "spelling": f"{step}{ {-2: 'bb', -1: 'b', 0: '', 1: '#', 2: 'x'}[alter] }", "octave": int(octave),
                "key": int(tasks["key"][int(res["key"][i])]), "stem": tasks["stem"][int(res["stem"][i])],
                "clef": tasks["clef"][int(res["clef"][i])],
                "octave_shift": tasks["octave_shift"][int(res["octave_shift"][i])],
                "note_type": tasks["note_type"][int(res["note_type"][i])], "dots": int(res["dots"][i]),
                "tuplet": tasks["tuplet"][tuplet] if tuplet >= 0
                else f"{int(res['tuplet_actual'][i])}:{int(res['tuplet_normal'][i])}",
                "beam": int(res["beam"][i]), "show_accidental": bool(res["show_accidental"][i]),
            }
        )  # fmt: skip
    return records


# --- logging ------------------------------------------------------------------------------------------------


def signature(key_change_penalty: float | None = None) -> ModelSignature:
    """Input ``score`` (binary) and ``format`` (string, optional); output :data:`OUTPUT_COLUMNS`; the params,
    ``key_change_penalty``'s default the model's (None: :data:`PARAM_DEFAULTS`')."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

    inputs = Schema([ColSpec("binary", "score"), ColSpec("string", "format", required=False)])
    outputs = Schema(
        [ColSpec("string", "musicxml"), ColSpec("string", "notes"), ColSpec("long", "n_notes"),
         ColSpec("string", "warnings")]
    )  # fmt: skip
    defaults = {**PARAM_DEFAULTS, **({} if key_change_penalty is None else {"key_change_penalty": key_change_penalty})}
    params = ParamSchema(
        [ParamSpec(name, "double" if isinstance(value, float) else "long", value) for name, value in defaults.items()]
    )
    return ModelSignature(inputs=inputs, outputs=outputs, params=params)


def input_example(score: bytes | None = None, fmt: str = "musicxml") -> pd.DataFrame:
    """One row: ``score`` (bytes; :data:`EXAMPLE_MUSICXML` by default) and its ``format``."""
    data = EXAMPLE_MUSICXML.encode("utf-8") if score is None else bytes(score)
    return pd.DataFrame({"score": [data], "format": [fmt]})


def pip_requirements() -> list[str]:
    """Exact versions of what loading and predicting import: torch (no local build tag), PyTorch
    Geometric, partitura (reading and writing scores), verovio (MEI import, read-back), lxml, mido
    (MIDI), numpy, pandas, scipy (post-processing), tqdm and cloudpickle (the pickled PythonModel)."""
    from overseer.engraving.predict import pip_requirements as torch_requirements

    names = ("partitura", "verovio", "lxml", "mido", "numpy", "pandas", "scipy", "tqdm", "cloudpickle")
    return [*torch_requirements(), *(f"{name}=={metadata.version(name)}" for name in names)]


def log_engraving_model(
    model_dir: str | os.PathLike,
    registered_name: str,
    example_score: bytes | None = None,
    example_format: str = "musicxml",
) -> Any:
    """Log the trained model in ``model_dir`` (``config.json`` + ``model.pt``, and ``postprocess.json``
    when there: the key change penalty, also the signature's default; other files there, such as
    engraved pieces, are not logged) as an :class:`EngravingModel` under the active MLflow
    run, registered as a new version of ``registered_name``; returns MLflow's ``ModelInfo``.

    The input example is ``example_score`` (a file's bytes, ``example_format`` its suffix), by
    default :data:`EXAMPLE_MUSICXML`. The model folder must load (an ``InputError`` otherwise),
    before anything is logged.
    """
    from overseer.engraving.engrave import model_key_change_penalty, model_predict_fn

    src = Path(model_dir)
    missing = [name for name in MODEL_FILES if not (src / name).is_file()]
    if missing:
        raise InputError(f"not a trained EngravingGNN folder (no {', '.join(missing)})", path=src)
    model_predict_fn(src, device="cpu")  # loads back, or nothing is logged
    penalty = model_key_change_penalty(src)  # a bad postprocess.json: an InputError, nothing logged
    with tempfile.TemporaryDirectory(prefix="overseer-engraving-model-") as tmp:
        folder = Path(tmp) / "model"
        folder.mkdir()
        for name in (*MODEL_FILES, POSTPROCESS_FILE):
            if name in MODEL_FILES or (src / name).is_file():
                shutil.copy2(src / name, folder / name)
        return log_pyfunc(
            EngravingModel,
            registered_name,
            artifacts={ARTIFACT: folder},
            signature=signature(penalty),
            input_example=input_example(example_score, example_format),
            pip_requirements=pip_requirements(),
        )


def engraving_predictor(model: str | os.PathLike) -> Any:
    """``predict(frame, params) -> DataFrame`` of an engraving model: an MLflow model (URI or a folder
    with an ``MLmodel`` file) through ``mlflow.pyfunc`` (its signature enforced), or a trained model
    folder (``config.json`` + ``model.pt``) wrapped in :class:`EngravingModel` in process. Loads once;
    an ``InputError`` naming ``model`` when it cannot be loaded."""
    from overseer.serving.pyfunc import is_model_uri, load_pyfunc

    if is_model_uri(model) or (Path(model) / "MLmodel").is_file():
        loaded = load_pyfunc(model)
        return lambda frame, params=None: loaded.predict(frame, params=params)
    from overseer.engraving.train import load_model

    if not (Path(model) / MODEL_FILES[0]).is_file():
        raise InputError("no trained EngravingGNN here (no config.json) and not an MLflow model", path=model)
    from overseer.engraving.engrave import model_key_change_penalty

    wrapped = EngravingModel()
    try:
        wrapped.model = load_model(model, device="cpu")
    except Exception as exc:  # json, the config, the state dict: re-raised with the reason
        raise InputError(f"cannot load the engraving model ({_reason(exc)})", path=model) from exc
    wrapped.key_change_penalty = model_key_change_penalty(model)
    return lambda frame, params=None: wrapped.predict(None, frame, params=params)
