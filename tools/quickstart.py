"""The main job of `make demo`: generate `shapes`, train TTFNet-R18 on it (about ten minutes on a 2-core CPU),
evaluate it, and draw its detections. Every step is the same program a user runs by hand.

    python tools/quickstart.py [--epochs N] [--cuda]
"""

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dets.engine import test as test_engine  # noqa: E402
from dets.engine import train as train_engine  # noqa: E402
from dets.engine.args import test_parser, train_parser  # noqa: E402

# The recipe of the shapes accuracy benchmark (BENCHMARKS.md): 128x128 input, AdamW 2e-3, flips only.
EPOCHS = 24


def _cpu_has_bf16() -> bool:
    """bf16 autocast pays off only where the CPU computes in bf16 natively (AVX512-BF16 or AMX);
    elsewhere it is emulated and slower than float32."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--cuda", action="store_true", default=torch.cuda.is_available())
    parser.add_argument("--work_dir", default=str(ROOT))
    args = parser.parse_args()
    work = Path(args.work_dir)
    common = ["--dataset", "shapes", "--net", "ttfnet_r18", "--data_dir", str(work / "data"), "--input_size", "128"]
    if args.cuda:
        common.append("--cuda")
    amp = ["--amp"] if args.cuda or _cpu_has_bf16() else []
    train_args = train_parser().parse_args(
        [
            *common,
            "--bs",
            "8",
            "--o",
            "adam",
            "--lr",
            "2e-3",
            "--wd",
            "1e-4",
            "--warmup_iters",
            "100",
            "--aug",
            "flip",
            "--epochs",
            str(args.epochs),
            "--s",
            "1",
            "--save_dir",
            str(work / "models"),
            "--nw",
            "1",
            *amp,
        ]
    )
    train_engine.main(train_args)
    checkpoints = sorted((work / "models" / "ttfnet_r18" / "shapes").glob(f"ttfnet_r18_1_{args.epochs}_*.pth"))
    test_args = test_parser().parse_args(
        [
            *common,
            "--weights",
            str(checkpoints[-1]),
            "--vis",
            "--output_dir",
            str(work / "output"),
            "--nw",
            "2",
        ]
    )
    results = test_engine.main(test_args)
    pictures = sorted(Path(results["vis_dir"]).glob("*.jpg"))
    print(f"\ndets: mAP@0.5 (area) {results['voc']['map_area']:.3f}; a picture of the detections: {pictures[0]}")


if __name__ == "__main__":
    main()
