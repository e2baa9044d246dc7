"""Plots with matplotlib (off-screen, the Agg backend): training curves beside the checkpoints
and precision-recall curves beside an AP table."""

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def plot_training_curves(records: list[dict], path: Path) -> Path:
    """One PNG of the run in `records` (``MetricsLog`` lines): each loss term and the learning
    rate against the epoch (per logged iteration), and mAP@0.5 per evaluated epoch."""
    iters = [r for r in records if r["kind"] == "iter"]
    evals = [r for r in records if r["kind"] == "eval"]
    losses = sorted({k for r in iters for k in r if k.startswith("loss")})
    panels = [*losses, "lr"] + (["mAP@0.5"] if evals else [])
    columns = min(3, len(panels))
    rows = math.ceil(len(panels) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4.5 * columns, 3.2 * rows), squeeze=False)
    for ax, name in zip(axes.flat, panels, strict=False):
        if name == "mAP@0.5":
            ax.plot([r["epoch"] for r in evals], [r["map50"] for r in evals], "o-", color="tab:green")
            ax.set_ylim(0, 1)
        else:
            xs = [r["epoch"] - 1 + r["iteration"] / r["iters_per_epoch"] for r in iters if r.get(name) is not None]
            ys = [r[name] for r in iters if r.get(name) is not None]
            ax.plot(xs, ys, color="tab:orange" if name == "lr" else "tab:blue", linewidth=1)
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    figure.tight_layout()
    return _save(figure, path)


def plot_pr_curves(voc_result: dict, path: Path) -> Path:
    """Precision against recall per class from ``voc_evaluate``'s result, with each class's AP
    (area method) in the legend."""
    figure, ax = plt.subplots(figsize=(6, 5))
    for name, recall in voc_result["recall"].items():
        precision = voc_result["precision"][name]
        ap = voc_result["ap_area"][name]
        if len(recall) == 0 or math.isnan(ap):
            continue
        ax.plot(recall, precision, label=f"{name} {100 * ap:.1f}")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title(f"IoU > {voc_result['iou_threshold']:g}: mAP {100 * voc_result['map_area']:.1f} (area)")
    ax.grid(alpha=0.3)
    if ax.lines:
        ax.legend(loc="lower left", fontsize="small")
    figure.tight_layout()
    return _save(figure, path)


def _save(figure, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.png")
    figure.savefig(tmp, dpi=100)
    plt.close(figure)
    tmp.replace(path)
    return path
