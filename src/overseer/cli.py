"""The ``overseer`` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from overseer.errors import InputError


def _predict(args: argparse.Namespace) -> None:
    if args.family != "trackbed":
        raise InputError(f"predict: no exported model family {args.family!r} yet (families: trackbed)")
    from overseer.io import atomic_file
    from overseer.trackbed.predict import predict

    table = predict(args.model, args.paths, batch_size=args.batch_size)
    if args.out:
        with atomic_file(args.out) as tmp:
            table.to_csv(tmp, index=False)
    for row in table.itertuples(index=False):
        truth = f"\t(true {row.true_class})" if isinstance(row.true_class, str) else ""
        print(f"{row.item}\t{row[1]}\t{row.confidence:.3f}{truth}")


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


def _engrave(args: argparse.Namespace) -> None:
    from pathlib import Path

    from overseer.engraving.engrave import engrave

    model = Path(args.model)
    if not (model / "config.json").exists():
        raise InputError("no trained EngravingGNN here; run `dvc repro export@gnn` or pass --model", path=model)
    out = Path(args.out) if args.out else Path("engraved") / Path(args.score).stem
    result = engrave(args.score, model, out, pages=args.pages, formats=tuple(args.formats))
    written = [result[f] for f in args.formats if result.get(f)] + list(result.get("svg") or [])
    print(f"engraved {result['notes']} notes in {result['bars']} bars:")
    for path in written:
        print(f"  {path}")


def _check(args: argparse.Namespace) -> None:
    from overseer.params import check_params_file

    sections = check_params_file(args.params)
    print(f"{args.params}: ok ({sections} sections)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="overseer", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    predict = commands.add_parser("predict", help="classify inputs with an exported model")
    predict.add_argument("family", choices=["trackbed"])
    predict.add_argument("paths", nargs="+", help="image files, image folders or TFRecord files")
    predict.add_argument("--model", default="models/trackbed/export", help="exported model folder")
    predict.add_argument("--out", help="also write the predictions as CSV")
    predict.add_argument("--batch-size", type=int, default=32)
    predict.set_defaults(handler=_predict)

    engrave = commands.add_parser(
        "engrave", help="engrave a score or quantized MIDI file with the trained EngravingGNN"
    )
    engrave.add_argument("score", help="MusicXML (.musicxml/.xml/.mxl), MEI, kern or MIDI (.mid) file")
    engrave.add_argument("--model", default="models/engraving/export", help="exported (or trained) model folder")
    engrave.add_argument("--out", help="output folder (default: engraved/<score name>)")
    engrave.add_argument("--pages", type=int, default=2, help="SVG pages to render (0: none)")
    engrave.add_argument("--formats", nargs="+", default=["musicxml", "mei"], choices=["musicxml", "mei"])
    engrave.set_defaults(handler=_engrave)

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
