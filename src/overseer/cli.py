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
