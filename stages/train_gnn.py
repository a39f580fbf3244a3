"""train_gnn: EngravingGNN (hybrid heterogeneous GraphSAGE + GRU, multi-task heads) on the training pieces."""

from __future__ import annotations

from pathlib import Path

from overseer import stage
from overseer.io import atomic_dir, write_json
from overseer.plots import plot_training_curves
from overseer.tracking import log_artifacts, stage_run

PREPARED = Path("data/prepared/engraving")
MODEL_DIR = Path("models/engraving/train")
REPORT_DIR = Path("reports/engraving/train")


def main() -> None:
    from overseer.engraving.schema import load_split
    from overseer.engraving.train import save_model, train_gnn

    cfg = stage.load_params("train_gnn")
    _, train = load_split(PREPARED, "train")
    _, validation = load_split(PREPARED, "validation")  # early stopping watches this; the test split waits
    with stage_run("engraving", "train_gnn", inputs=[PREPARED / "train", PREPARED / "validation"]) as mlflow:

        def log_epoch(epoch: int, metrics: dict[str, float]) -> None:
            mlflow.log_metrics({k: float(v) for k, v in metrics.items() if k != "epoch"}, step=epoch)

        result = train_gnn(train, validation, cfg, on_epoch=log_epoch)
        summary = result.summary()
        with atomic_dir(MODEL_DIR) as tmp:
            save_model(result, tmp)
            write_json(tmp / "train_gnn.json", {"train_gnn": result.cfg, **summary})
        REPORT_DIR.mkdir(parents=True, exist_ok=True)
        result.history.to_csv(REPORT_DIR / "history.csv", index=False)
        curves = result.history.rename(columns={"train_loss": "loss"})
        plot_training_curves(
            curves[[c for c in ("epoch", "loss", "val_loss") if c in curves]], REPORT_DIR / "training_curves.png"
        )
        write_json(REPORT_DIR / "metrics.json", summary)
        # the shared names of validation scores in every family
        best = {"best_val_loss": summary["val_loss"]} if "val_loss" in summary else {}
        mlflow.log_metrics({**best, "n_train": summary["n_train"], "n_val": summary["n_val"]})
        mlflow.set_tag("stopped", summary["stopped"])
        log_artifacts(mlflow, [REPORT_DIR], artifact_path="train")
        print(
            f"gnn: {summary['epochs_run']} epochs ({summary['stopped']}), best epoch {summary['best_epoch']} "
            f"validation loss {summary['best_loss']:.4f}"
        )


if __name__ == "__main__":
    stage.run(main)
