"""Time every op on every backend, then the detectors' steps: runs each bench/bench_<name>.py in
turn (not bench_accuracy.py, which trains for minutes to hours).

    python bench/bench_ops.py [--device cpu|cuda] [--quick]

Each script prints a Markdown table (the device, sizes, milliseconds, ratios); the
figures go into BENCHMARKS.md with the date and the command.
"""

import argparse
import importlib.util
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
NOT_TIMINGS = ("ops", "accuracy")  # this script, and the training runs of bench_accuracy.py


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="smaller sizes, fewer repeats")
    parser.add_argument("--only", nargs="*", help="op names to run (default: all)")
    args = parser.parse_args()
    sys.path.insert(0, str(HERE.parent))
    sys.path.insert(0, str(HERE))
    for script in sorted(HERE.glob("bench_*.py")):
        name = script.stem.removeprefix("bench_")
        if name in NOT_TIMINGS or (args.only and name not in args.only):
            continue
        spec = importlib.util.spec_from_file_location(script.stem, script)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        module.run(torch.device(args.device), quick=args.quick)


if __name__ == "__main__":
    main()
