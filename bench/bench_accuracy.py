"""Accuracy benchmark: train with the real training program, evaluate epochs with the real test
program, and print the wall-clock training time reached at each evaluated epoch beside its mAP@0.5.

    python bench/bench_accuracy.py --work_dir /tmp/acc --eval_epochs 6,12 -- \\
        --dataset shapes --net ttfnet_r18 --input_size 256 --bs 16 --o adam --lr 3e-3 --epochs 12

Everything after ``--`` goes to trainval_net.py unchanged (``--save_dir`` and ``--data_dir`` default
to folders under ``--work_dir``). The time at an epoch is measured from the start of training to the
moment that epoch's checkpoint was written, so it includes data loading, the optimiser and saving:
it is the time a user waits.
"""

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dets.engine import test as test_engine  # noqa: E402
from dets.engine import train as train_engine  # noqa: E402
from dets.engine.args import test_parser, train_parser  # noqa: E402
from dets.engine.checkpoint import checkpoint_path  # noqa: E402
from dets.evaluation import format_voc_report  # noqa: E402


def _epochs(text: str) -> list[int]:
    return sorted({int(v) for v in text.replace(",", " ").split()})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work_dir", default="bench_accuracy", help="where data, checkpoints and outputs go")
    parser.add_argument("--eval_epochs", type=_epochs, default=None, help="epochs to evaluate (default: the last)")
    own, train_argv = parser.parse_known_args()
    if train_argv[:1] == ["--"]:
        train_argv = train_argv[1:]
    work = Path(own.work_dir)
    train_args = train_parser().parse_args(
        ["--data_dir", str(work / "data"), "--save_dir", str(work / "models"), *train_argv]
    )
    eval_epochs = own.eval_epochs or [train_args.epochs]
    if any(e > train_args.epochs for e in eval_epochs):
        parser.error(f"--eval_epochs {eval_epochs} go past --epochs {train_args.epochs}")

    start = time.time()
    train_engine.main(train_args)
    directory = checkpoint_path(train_args.save_dir, train_args.net, train_args.dataset, 1, 1, 0).parent

    rows = []
    for epoch in eval_epochs:
        (weights,) = directory.glob(f"*_{train_args.session}_{epoch}_*.pth")
        test_argv = [
            *("--dataset", train_args.dataset, "--net", train_args.net, "--data_dir", train_args.data_dir),
            *("--weights", str(weights), "--output_dir", str(work / "output"), "--nw", str(train_args.nw)),
        ]
        results = test_engine.main(test_parser().parse_args(test_argv))
        voc = results["voc"]
        rows.append((epoch, weights.stat().st_mtime - start, voc, results["images_per_s"]))

    print(f"\ntrainval_net.py {' '.join(train_argv)}")
    for epoch, seconds, voc, images_per_s in rows:
        print(f"\nepoch {epoch}: {seconds / 60:.1f} min of training, test {images_per_s:.1f} images/s")
        print(format_voc_report(voc))


if __name__ == "__main__":
    main()
