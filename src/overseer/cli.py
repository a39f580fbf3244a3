"""The ``overseer`` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from overseer.errors import InputError

if TYPE_CHECKING:
    from overseer.seismic.predict import SeismicModel
    from overseer.settings import Settings


def _predict(args: argparse.Namespace) -> None:
    if args.family == "seismic":
        _predict_seismic(args)
        return
    if args.family == "engraving":
        _predict_engraving(args)
        return
    from overseer.io import atomic_file
    from overseer.trackbed.predict import predict

    table = predict(
        args.model or "models/trackbed/export", args.paths, batch_size=args.batch_size, precision=args.precision
    )
    if args.out:
        with atomic_file(args.out) as tmp:
            table.to_csv(tmp, index=False)
    for row in table.itertuples(index=False):
        truth = f"\t(true {row.true_class})" if isinstance(row.true_class, str) else ""
        print(f"{row.item}\t{row[1]}\t{row.confidence:.3f}{truth}")


def _predict_seismic(args: argparse.Namespace) -> None:
    """Well-log tables → CSV (to --out, else standard output); attribute volumes → a facies folder."""
    from pathlib import Path

    from overseer.seismic.predict import is_table_path, is_volume_argument

    tables = [p for p in args.paths if is_table_path(p)]
    volumes = [p for p in args.paths if is_volume_argument(p)]
    other = [p for p in args.paths if p not in tables and p not in volumes]
    if other:
        raise InputError(
            "expected well-log tables (.csv, .parquet) or attribute volumes (.sgy, .segy, .npy; NAME=PATH names one)",
            path=other[0],
        )
    if tables and volumes:
        raise InputError(
            f"give well-log tables or attribute volumes, not both (tables {tables}, volumes {volumes})",
            path=tables[0],
        )
    if args.out and tables and Path(args.out).is_dir():
        raise InputError("--out is a folder; for well-log tables it names the CSV file to write", path=args.out)
    if volumes and not args.out:
        args.out = "facies"
    if volumes:  # before the model loads: a wrong --out costs nothing
        from overseer.seismic.predict import check_out_dir

        check_out_dir(args.out)

    from overseer.seismic.predict import load_seismic_model
    from overseer.settings import load_settings

    settings = load_settings()
    model = load_seismic_model(args.model or "models/seismic/export")  # once: every table and chunk uses it
    if tables:
        _predict_seismic_tables(model, tables, args.out, settings.progress)
    else:
        _predict_seismic_volumes(model, volumes, args, settings)


def _predict_seismic_tables(model: SeismicModel, tables: list[str], out: str | None, progress: bool) -> None:
    from overseer.io import atomic_file
    from overseer.seismic.predict import predict_tables

    table = predict_tables(model, tables, progress=progress)
    counts = table.groupby(["well", "facies"], sort=True).size()
    summary = [f"{well}: " + ", ".join(f"{name} {n}" for name, n in per.droplevel(0).items())
               for well, per in counts.groupby(level=0)]  # fmt: skip
    if out:
        with atomic_file(out) as tmp:
            table.to_csv(tmp, index=False)
        print(f"predicted {len(table)} samples of {table['well'].nunique()} wells into {out}")
        print("\n".join(summary))
    else:  # the CSV is the output; the summary goes to standard error
        table.to_csv(sys.stdout, index=False)
        print(f"predicted {len(table)} samples of {table['well'].nunique()} wells", file=sys.stderr)


def _predict_seismic_volumes(
    model: SeismicModel, volumes: list[str], args: argparse.Namespace, settings: Settings
) -> None:
    from overseer.seismic.predict import predict_volumes, volume_sources

    sources, ignored = volume_sources(volumes, model.features)
    for name in ignored:
        print(
            f"overseer: note: volume {name!r} is not one of the model's attributes {model.features}; ignored",
            file=sys.stderr,
        )
    result = predict_volumes(
        model, sources, args.out, probabilities=args.probabilities,
        chunk_voxels=settings.chunk_voxels, n_jobs=settings.n_jobs, progress=settings.progress,
        iline_byte=args.iline_byte, xline_byte=args.xline_byte,
    )  # fmt: skip
    counts = ", ".join(f"{name} {n}" for name, n in result["facies_counts"].items())
    print(f"predicted {result['voxels']} voxels ({result['grid']}): {counts}")
    print(f"  {result['facies_path']}")
    for path in result["probability_paths"].values():
        print(f"  {path}")
    print(f"  {result['legend_path']}")


def _predict_engraving(args: argparse.Namespace) -> None:
    """Score/MIDI files (or folders) → ``--out/<name>.musicxml`` each, through the engraving pyfunc model.

    A file that cannot be engraved is skipped with its reason; exit 0 when every file was engraved,
    1 when some were skipped, 2 when none could be (description).
    """
    from pathlib import Path

    import pandas as pd

    from overseer.engraving.engrave import batch_names, batch_sources
    from overseer.io import atomic_file
    from overseer.serving.engraving import ScoreError, engraving_predictor

    sources = batch_sources(args.paths)
    if not sources:
        raise InputError("no score or MIDI files to engrave", path=args.paths[0])
    out = Path(args.out or "engraved")
    if out.exists() and not out.is_dir():
        raise InputError("--out: the output folder is a file", path=out)
    predict = engraving_predictor(args.model or "models/engraving/export")  # once, before any file is read
    params = {"threshold": args.threshold, "min_clef_run": args.min_clef_run, "grid": args.grid or 0,
              "max_notes": args.max_notes or 0}  # fmt: skip
    engraved, skipped = 0, 0
    for (path, _), name in zip(sources, batch_names([rel for _, rel in sources]), strict=True):
        try:
            frame = pd.DataFrame({"score": [path.read_bytes()], "format": [path.suffix.lstrip(".").lower()]})
            row = predict(frame, params).iloc[0]
        except (OSError, ScoreError) as exc:
            skipped += 1
            reason = exc.reason if isinstance(exc, ScoreError) else f"cannot read ({exc.strerror or exc})"
            print(f"overseer: skipped {path}: {reason}", file=sys.stderr)
            continue
        out.mkdir(parents=True, exist_ok=True)
        target = out / f"{name}.musicxml"
        with atomic_file(target) as tmp:
            Path(tmp).write_text(row["musicxml"], encoding="utf-8")
        engraved += 1
        for warning in filter(None, str(row["warnings"]).split("; ")):
            print(f"overseer: warning: {path}: {warning}", file=sys.stderr)
        print(f"{path}\t{target}\t{int(row['n_notes'])} notes")
    if skipped:
        print(f"overseer: engraved {engraved} of {engraved + skipped} files ({skipped} skipped)", file=sys.stderr)
        raise SystemExit(2 if not engraved else 1)


def _tune(args: argparse.Namespace) -> None:
    from overseer.tuning.study import tune

    result = tune(
        args.model,
        trials=args.trials,
        timeout=args.timeout,
        storage=args.storage,
        study_name=args.study,
        params_file=args.params,
        write_back=not args.no_write,
    )
    summary = result.summary()
    print(
        f"study {summary['study']}: {summary['trials']} trials, best #{summary['best_trial']} "
        f"{summary['metric']}={summary['best_value']:.4f}"
    )
    for path, value in result.best_values.items():
        print(f"  {path} = {value!r}")
    where = args.params if result.written else f"{args.params} (already there)" if not args.no_write else "nowhere"
    print(f"written to {where}; report in {result.report_dir}")


def _compare(args: argparse.Namespace) -> None:
    from overseer.compare import ALL_STAGES, compare

    path = compare(
        args.out,
        tracking_uri=args.tracking_uri,
        families=[args.family] if args.family else None,
        last=args.last,
        stage=None if args.stage == ALL_STAGES else args.stage,
        baseline=args.baseline,
    )
    print(f"comparison report: {path}")


PREDICT_DESCRIPTION = """\
Classify new inputs with an exported model.

trackbed: images (files, folders) or TFRecord files -> class and confidence per image.

seismic (--model models/seismic/export by default):
  well-log tables (CSV or Parquet) -> CSV of well, depth, facies and p_<facies> per facies; the
    model's logs are found by name (any order, case-insensitive; other columns are ignored).
  attribute volumes (SEG-Y or .npy, one grid, one per attribute named by its file stem or
    NAME=PATH) -> the --out folder (default facies/): facies.npy (int8 ids) or facies.sgy (the
    input's headers), with --probabilities p_<facies>.npy/.sgy (float32), and the legend
    facies.json; predicted in bounded-memory chunks (OVERSEER_CHUNK_VOXELS, OVERSEER_N_JOBS).

Bad input (a missing log or volume, volumes on different grids, NaN voxels, ...) is reported with
the file and exit status 2; on any failure nothing is written.

engraving (--model: an MLflow model URI such as models:/NAME@champion, an MLflow model folder, or
  a trained model folder; default models/engraving/export): score or MIDI files (folders searched
  recursively) -> --out/<name>.musicxml each (default engraved/), through the pyfunc model that
  `mlflow models serve` serves (names as in `overseer engrave`'s batches). A file that cannot be
  engraved is skipped with its reason; exit status 1 when some were skipped, 2 when none was engraved.
"""


MIDI_GRIDS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 48)  # overseer.engraving.engrave.GRIDS (not imported: numpy, torch)
ENGRAVE_DESCRIPTION = """\
Engrave a piano score or MIDI file: the trained EngravingGNN predicts staves, voices, spelling,
key, clefs, stems and octave signs; the result is written as MusicXML and MEI (each read back
and checked) and the first pages as SVG.

MIDI timing: a quantized file keeps its own grid (sixteenths, 32nds, their triplets ... down
to 1/48 quarter, within one MIDI tick). A file with performed timing (onsets on no such grid)
is quantized: every onset and offset is snapped to the nearest sixteenth (--grid D for 1/D
quarter instead), so an onset moves by at most half a grid step (a repeated note that would
merge with the previous one takes the next grid point), and a warning says how many notes moved
and how far at most. A note ends no later than the next onset of its pitch. Every note of the
file is written (its tied parts read back as one note) except notes doubled at one onset and
pitch, and note-ons without a note-off (both told).

Bad input (an unreadable file, no notes, not two staves, ...) is reported with the file and
exit status 2; on any failure nothing is written to the output folder. A score's zero-length
notes are dropped with a warning; a note no single symbol writes (16 quarters in a cadenza bar)
is written as tied notes.

Several files, or a folder (searched recursively for scores and MIDI files), are a batch: the
model is loaded once and each piece goes to --out/<name>/ (default engraved/<name>/), <name>
made from the file's path relative to the folder given (or to the files' common folder): a/b.mxl
-> a__b, so files that share a name in different folders do not collide. A piece that fails is
skipped with its reason and the batch goes on; --out/batch.json lists what was engraved and
what was skipped. Exit status of a batch: 0 when every piece was engraved, 1 when some were
skipped (the others are written), 2 when none could be (or on bad arguments: no model, no files).
"""


def _pages(text: str) -> int:
    """argparse type of --pages: a whole number >= 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number (0 or more; 0: no SVG pages)") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value}: expected 0 or more SVG pages (0: none)")
    return value


def _check_model(model: str) -> None:
    """--model: a trained model folder (config.json), an MLflow model folder (MLmodel) or a model URI
    (``models:/NAME@champion``, ``runs:/ID/model``; loaded, and checked, when it is used)."""
    from pathlib import Path

    from overseer.serving.pyfunc import is_model_uri

    if is_model_uri(model) or (Path(model) / "MLmodel").is_file():
        return
    if not (Path(model) / "config.json").is_file():
        raise InputError(
            "--model: no trained EngravingGNN here (no config.json, no MLmodel); run `dvc repro export@gnn` "
            "or pass --model (a folder or an MLflow model URI such as models:/NAME@champion)",
            path=model,
        )


def _show_warnings(caught: list) -> None:
    """Our input warnings as one 'overseer: warning:' line each; any other warning as Python shows it."""
    import warnings

    from overseer.engraving.engrave import QuantizeWarning, ScoreWarning

    for w in caught:
        if issubclass(w.category, QuantizeWarning | ScoreWarning):
            print(f"overseer: warning: {w.message}", file=sys.stderr)
        else:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)


def _engrave(args: argparse.Namespace) -> None:
    import warnings
    from pathlib import Path

    _check_model(args.model)
    if len(args.scores) > 1 or Path(args.scores[0]).is_dir():
        _engrave_batch(args)
        return
    from overseer.engraving.engrave import QuantizeWarning, ScoreWarning, engrave
    from overseer.engraving.export import ExportError

    score = args.scores[0]
    out = Path(args.out) if args.out else Path("engraved") / Path(score).stem
    formats = tuple(dict.fromkeys(args.formats))
    caught: list[warnings.WarningMessage] = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", QuantizeWarning)
            warnings.simplefilter("always", ScoreWarning)
            result = engrave(score, args.model, out, pages=args.pages, formats=formats, grid=args.grid)
    except ExportError as exc:  # not the user's input: our exporter wrote what partitura does not read back
        print(f"overseer: error: {exc}", file=sys.stderr)
        print(f"overseer: nothing was written to {out}; this is an export bug, please report it", file=sys.stderr)
        raise SystemExit(1) from exc
    finally:
        _show_warnings(caught)
    written = [result[f] for f in formats if result.get(f)] + list(result.get("svg") or [])
    heads = f" ({result['notes']} noteheads with tied parts)" if result["notes"] != result["sounding_notes"] else ""
    print(f"engraved {result['sounding_notes']} notes{heads} in {result['bars']} bars:")
    for path in written:
        print(f"  {path}")


def _engrave_batch(args: argparse.Namespace) -> None:
    """Several files or folders: one folder per piece under --out; skipped pieces listed, exit 0/1/2 (description)."""
    import warnings
    from pathlib import Path

    from overseer.engraving.engrave import QuantizeWarning, ScoreWarning, engrave_batch
    from overseer.settings import load_settings

    out = Path(args.out) if args.out else Path("engraved")
    caught: list[warnings.WarningMessage] = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", QuantizeWarning)
            warnings.simplefilter("always", ScoreWarning)
            batch = engrave_batch(
                args.scores, args.model, out, pages=args.pages, formats=tuple(dict.fromkeys(args.formats)),
                grid=args.grid, progress=load_settings().progress,
            )  # fmt: skip
    finally:
        _show_warnings(caught)
    total = len(batch.engraved) + len(batch.skipped)
    print(f"engraved {len(batch.engraved)} of {total} pieces into {out} ({len(batch.skipped)} skipped):")
    for piece in batch.engraved:
        print(f"  {piece['path']} -> {piece['folder']} ({piece['notes']} notes, {piece['bars']} bars)")
    for skip in batch.skipped:
        print(f"overseer: skipped {skip['source']}: {skip['reason']}", file=sys.stderr)
    print(f"list: {out / 'batch.json'}")
    if batch.skipped:
        raise SystemExit(2 if not batch.engraved else 1)


def _evaluate(args: argparse.Namespace) -> None:
    from pathlib import Path

    from overseer.engraving.corpus_eval import evaluate_corpus
    from overseer.settings import load_settings

    _check_model(args.model)
    corpus = Path(args.corpus)
    if not corpus.is_dir():
        raise InputError("CORPUS_DIR: not a folder of scores", path=corpus)
    out = Path(args.out) if args.out else Path("evaluated") / (corpus.resolve().name or "corpus")
    if out.exists() and not out.is_dir():
        raise InputError("--out: the output folder is a file", path=out)
    settings = load_settings()
    evaluation, info = evaluate_corpus(
        args.model, corpus, out, threshold=args.threshold, min_clef_run=args.min_clef_run,
        max_notes=args.max_notes, silence=args.silence, exotic_tuplets=args.exotic_tuplets,
        cache_dir=settings.cache_dir, progress=settings.progress,
    )  # fmt: skip
    print(evaluation.table.to_string())
    print(f"evaluated {info['pieces']} pieces ({info['notes']} notes) of {info['scores']} scores in {corpus}")
    if info["zero_length_notes"]:
        print(f"overseer: warning: {info['zero_length_notes']} zero-length notes dropped", file=sys.stderr)
    for skip in evaluation.skipped:
        print(f"overseer: skipped {skip['path'] or skip['piece']} ({skip['step']}): {skip['reason']}", file=sys.stderr)
    print(f"written to {out}: metrics.json, table1.md, pieces.csv, skipped.csv, corpus.json, tasks/")


def _promote(args: argparse.Namespace) -> None:
    from overseer.registry import promote
    from overseer.tracking import open_store

    client, _ = open_store(args.tracking_uri)
    print(promote(client, args.model, args.version, args.force).message)


def _positive(text: str) -> int:
    """argparse type of --max-notes: a whole number >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value}: expected 1 or more")
    return value


def _fraction(text: str) -> float:
    """argparse type of --threshold: a number in (0, 1)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"{value}: expected a probability between 0 and 1")
    return value


EVALUATE_DESCRIPTION = """\
Evaluate a trained EngravingGNN on any folder of scores (MusicXML/.mxl, MEI, kern; searched
recursively), as evaluate@gnn does on the held-out split: each score is read as ingest@engraving
reads it (the same parse cache, OVERSEER_CACHE_DIR), predicted, post-processed and scored.

Writes --out (default evaluated/<corpus folder name>), whole or not at all: metrics.json and
table1.md (the paper's Table 1 layout, raw and post-processed rows), pieces.csv (per piece: its
notes and every metric), skipped.csv (the scores refused on reading and the pieces that failed,
with their reasons), corpus.json (counts, options) and tasks/<task>/ (per-class scores, confusion
matrices). A bad score is skipped and listed, never the end of the evaluation.

--silence and --exotic-tuplets read the scores as ingest.engraving does: give the values the model
was trained with (params.yaml's defaults are gap and unknown).
"""


def _check(args: argparse.Namespace) -> None:
    from overseer.params import check_params_file

    sections = check_params_file(args.params)
    print(f"{args.params}: ok ({sections} sections)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="overseer", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    predict = commands.add_parser(
        "predict",
        help="classify inputs with an exported model",
        description=PREDICT_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    predict.add_argument("family", choices=["trackbed", "seismic", "engraving"])
    predict.add_argument(
        "paths",
        nargs="+",
        metavar="PATH",
        help="trackbed: image files, image folders or TFRecord files; seismic: well-log tables (.csv, .parquet) "
        "or attribute volumes (.sgy, .segy, .npy; NAME=PATH when the file stem is not the attribute's name); "
        "engraving: score or MIDI files (.musicxml, .xml, .mxl, .mei, .krn, .mid, .midi) or folders of them",
    )
    predict.add_argument(
        "--model", metavar="DIR", help="exported model folder (default models/<family>/export); engraving: also an "
        "MLflow model URI (models:/NAME@champion)",
    )  # fmt: skip
    predict.add_argument(
        "--out",
        help="trackbed: also write the predictions as CSV; seismic tables: the CSV (default: standard output); "
        "seismic volumes: the output folder (default: facies); engraving: the output folder (default: engraved)",
    )
    predict.add_argument("--batch-size", type=int, default=32, help="trackbed: images per batch")
    predict.add_argument(
        "--precision", choices=["fp32", "int8"], default="fp32",
        help="trackbed: model.onnx (fp32) or its int8 build model.int8.onnx (about 2x Keras on AVX-512 VNNI CPUs)",
    )  # fmt: skip
    predict.add_argument(
        "--probabilities",
        action="store_true",
        help="seismic volumes: also one float32 probability volume per facies (tables always have p_<facies> columns)",
    )
    predict.add_argument(
        "--iline-byte",
        type=int,
        help="seismic SEG-Y: trace header byte of inline numbers (default: as trained, or 189)",
    )
    predict.add_argument(
        "--xline-byte",
        type=int,
        help="seismic SEG-Y: trace header byte of crossline numbers (default: as trained, or 193)",
    )
    predict.add_argument(
        "--threshold", type=_fraction, default=0.5, help="engraving: voice/chord edge probability (0.5)"
    )
    predict.add_argument(
        "--min-clef-run", type=_positive, default=4, help="engraving: shorter clef regions are flicker (4)"
    )
    predict.add_argument(
        "--grid", type=int, choices=MIDI_GRIDS, metavar="D",
        help="engraving, MIDI only: snap onsets and offsets to 1/D quarter (as `overseer engrave --grid`)",
    )  # fmt: skip
    predict.add_argument("--max-notes", type=_positive, help="engraving: predict longer pieces in overlapping windows")
    predict.set_defaults(handler=_predict)

    engrave = commands.add_parser(
        "engrave",
        help="engrave a score or MIDI file with the trained EngravingGNN",
        description=ENGRAVE_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    engrave.add_argument(
        "scores",
        nargs="+",
        metavar="score",
        help="MusicXML (.musicxml/.xml/.mxl), MEI, kern or MIDI (.mid/.midi) file; several, or a folder: a batch",
    )
    engrave.add_argument(
        "--model", default="models/engraving/export",
        help="exported (or trained) model folder, or an MLflow model URI (models:/NAME@champion)",
    )  # fmt: skip
    engrave.add_argument(
        "--out",
        help="output folder (default: engraved/<score name>; a batch: engraved, one folder per piece in it); "
        "other files in it stay",
    )
    engrave.add_argument("--pages", type=_pages, default=2, help="SVG pages to render, 0 or more (0: none; default 2)")
    engrave.add_argument(
        "--formats", nargs="+", default=["musicxml", "mei"], choices=["musicxml", "mei"], help="scores to write"
    )
    engrave.add_argument(
        "--grid",
        type=int,
        choices=MIDI_GRIDS,
        metavar="D",
        help=f"MIDI only: snap onsets and offsets to 1/D quarter, D one of {', '.join(map(str, MIDI_GRIDS))} "
        "(default: a quantized file's own grid; 4, sixteenths, for performed timing)",
    )
    engrave.set_defaults(handler=_engrave)

    evaluate = commands.add_parser(
        "evaluate",
        help="evaluate a trained EngravingGNN on a folder of scores (Table 1, per piece)",
        description=EVALUATE_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    evaluate.add_argument("family", choices=["engraving"])
    evaluate.add_argument("corpus", metavar="CORPUS_DIR", help="folder of scores (searched recursively)")
    evaluate.add_argument(
        "--model", metavar="DIR", default="models/engraving/export", help="exported (or trained) model folder"
    )
    evaluate.add_argument(
        "--out", metavar="DIR", help="output folder (default: evaluated/<corpus folder name>); replaced whole"
    )
    evaluate.add_argument("--threshold", type=_fraction, default=0.5, help="voice/chord edge probability (0.5)")
    evaluate.add_argument("--min-clef-run", type=_positive, default=4, help="shorter clef regions are flicker (4)")
    evaluate.add_argument("--max-notes", type=_positive, help="predict longer pieces in overlapping windows")
    evaluate.add_argument("--silence", choices=["gap", "rest"], default="gap", help="silence edges, as trained (gap)")
    evaluate.add_argument(
        "--exotic-tuplets", choices=["unknown", "skip"], default="unknown", help="as ingest.engraving (unknown)"
    )
    evaluate.set_defaults(handler=_evaluate)

    tune = commands.add_parser("tune", help="Optuna study over a model's search space in params.yaml")
    tune.add_argument("model", help="cnn | rf | gnn")
    tune.add_argument("--trials", type=int, default=20, help="trials this process runs (default 20)")
    tune.add_argument("--timeout", type=float, help="stop starting trials after this many seconds")
    tune.add_argument("--storage", help="Optuna storage URL (default sqlite:///<repo>/optuna.db; postgresql://...)")
    tune.add_argument("--study", help="study name (default: the model name); re-running continues it")
    tune.add_argument("--params", default="params.yaml", help="params file with the tune section")
    tune.add_argument("--no-write", action="store_true", help="do not write the best trial into params.yaml")
    tune.set_defaults(handler=_tune)
    compare = commands.add_parser("compare", help="static HTML comparison of tracked runs (no MLflow server)")
    compare.add_argument("--family", help="trackbed | seismic | engraving (default: all)")
    compare.add_argument("--last", type=int, default=5, help="last N finished runs per family (default 5)")
    compare.add_argument("--stage", default="evaluate", help="stage, e.g. evaluate, evaluate@cnn, train_rf, or all")
    compare.add_argument("--baseline", help="run id to compute deltas against (default: the oldest selected run)")
    compare.add_argument("--out", default="reports/compare/index.html", help="HTML file to write")
    compare.add_argument("--tracking-uri", help="MLflow store (default: MLFLOW_TRACKING_URI or <repo>/mlflow.db)")
    compare.set_defaults(handler=_compare)

    promote = commands.add_parser(
        "promote",
        help="move a registered model's `champion` alias to a version (default: its challenger), if not worse",
        description="Checks the version's held-out primary metric (tag heldout.<metric>, set at export) against "
        "the current champion's and moves the alias `champion` to it; a worse version is refused unless --force. "
        "Serve the result with `mlflow models serve -m models:/NAME@champion`.",
    )
    promote.add_argument("model", help="trackbed | seismic | engraving, or a model key: cnn | rf | gtm | gnn")
    promote.add_argument("--version", type=_positive, help="registered version (default: the challenger)")
    promote.add_argument("--force", action="store_true", help="promote even if its held-out metric is worse")
    promote.add_argument("--tracking-uri", help="MLflow store (default: MLFLOW_TRACKING_URI or <repo>/mlflow.db)")
    promote.set_defaults(handler=_promote)

    check = commands.add_parser(
        "check", help="check params.yaml (every section's keys, types, ranges) and the data it names; runs nothing"
    )
    check.add_argument("--params", default="params.yaml", help="params file to check (default params.yaml)")
    check.set_defaults(handler=_check)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.handler(args)
    except InputError as exc:
        print(f"overseer: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
