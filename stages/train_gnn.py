"""train_gnn: EngravingGNN (hybrid heterogeneous GraphSAGE + GRU, multi-task heads) on the training pieces.

One process by default. Under torchrun (or with ``OVERSEER_TORCHRUN`` set, which restarts this script
under torchrun with those arguments) every process trains its shard with DistributedDataParallel and
rank 0 alone opens the MLflow run and writes the model and reports (``overseer.engraving.distributed``).
"""

from __future__ import annotations

import os
import sys

from overseer import stage
from overseer.engraving.distributed import is_main_process, torchrun_command
from overseer.io import atomic_dir, is_run_time, numbers_only, split_run_time, write_artifacts, write_json
from overseer.paths import ENGRAVING
from overseer.plots import plot_training_curves
from overseer.settings import load_settings
from overseer.tracking import epoch_logger, log_artifacts, log_run_time, stage_run


def main() -> None:
    from overseer.engraving.schema import load_split
    from overseer.engraving.train import save_model, train_gnn

    cfg, settings, prepared = stage.load_params("train_gnn"), load_settings(), ENGRAVING.prepared
    run_options = {"threads": settings.torch_threads, "progress": settings.progress}  # not params: no result changes
    _, train = load_split(prepared, "train")
    _, validation = load_split(prepared, "validation")  # early stopping watches this; the test split waits
    if not is_main_process():  # a torchrun worker: trains its shard; rank 0 logs and writes
        train_gnn(train, validation, {**cfg, **run_options})
        return
    inputs, tags = [prepared / "train", prepared / "validation"], settings.tags("progress", "torch_threads")
    with stage_run("engraving", "train_gnn", inputs=inputs, tags=tags) as mlflow:
        result = train_gnn(train, validation, {**cfg, **run_options}, on_epoch=epoch_logger(mlflow))
        summary, run_time = split_run_time(result.summary())
        log_run_time(mlflow, "train_gnn", run_time)
        with atomic_dir(ENGRAVING.trained_model) as tmp:
            save_model(result, tmp)
            write_json(tmp / "train_gnn.json", {"train_gnn": result.cfg, **summary})
        curves = result.history.rename(columns={"train_loss": "loss"})
        curves = plot_training_curves(curves[[c for c in ("epoch", "loss", "val_loss") if c in curves]])
        history = result.history[[c for c in result.history if not is_run_time(c)]].to_csv(index=False)
        report = {"history.csv": history, "training_curves.png": curves, "summary.json": summary}
        write_artifacts(ENGRAVING.train_report, {**report, "metrics.json": numbers_only(summary)})
        # the shared names of validation scores in every family
        best = {"best_val_loss": summary["val_loss"]} if "val_loss" in summary else {}
        mlflow.log_metrics({**best, "n_train": summary["n_train"], "n_val": summary["n_val"]})
        mlflow.set_tag("stopped", summary["stopped"])
        log_artifacts(mlflow, [ENGRAVING.train_report], artifact_path="train")
        print(f"gnn: {summary['epochs_run']} epochs ({summary['stopped']}), best epoch {summary['best_epoch']} "
              f"validation loss {summary['best_loss']:.4f}")  # fmt: skip


if __name__ == "__main__":
    if command := torchrun_command(__file__, sys.argv[1:]):  # OVERSEER_TORCHRUN: the same stage, N processes
        os.execv(command[0], command)
    stage.run(main)
