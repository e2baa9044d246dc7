"""Timing helpers shared by the benchmark scripts (bench/bench_<op>.py).

Times are medians over repeats after warm-up; CUDA work is synchronised before the clock
is read. Results are meant to be compared as ratios measured in one run.
"""

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable

import torch

from dets.ground_truth import GroundTruth


def device_description(device: torch.device) -> str:
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        return f"{props.name} (sm {props.major}.{props.minor}), torch {torch.__version__}, CUDA {torch.version.cuda}"
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"CPU {cpu}, {torch.get_num_threads()} threads, torch {torch.__version__}"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(
    fn: Callable[[], object], device: torch.device, repeats: int = 10, warmup: int = 2, min_time: float = 0.2
) -> float:
    """Median seconds per call of `fn` (at least `repeats` calls and `min_time` seconds)."""
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    start_all = time.perf_counter()
    while len(times) < repeats or time.perf_counter() - start_all < min_time:
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
        if len(times) >= 200:
            break
    return statistics.median(times)


def measure_interleaved(fns: list[Callable[[], object]], device: torch.device, repeats: int = 3, warmup: int = 1):
    """Median seconds per call of each of `fns`, called in turn (A B A B ...), so that the load
    changes of a shared machine fall on all of them alike: the basis of a same-run ratio."""
    for fn in fns:
        for _ in range(warmup):
            fn()
    _sync(device)
    times = [[] for _ in fns]
    for _ in range(repeats):
        for fn, own in zip(fns, times, strict=True):
            start = time.perf_counter()
            fn()
            _sync(device)
            own.append(time.perf_counter() - start)
    return [statistics.median(own) for own in times]


def random_scene(
    bs: int, size: int, boxes_per_image: int, num_classes: int, device: torch.device, generator: torch.Generator
) -> tuple[torch.Tensor, GroundTruth]:
    """A detector's training batch of noise on `device`: images [bs, 3, size, size] and their
    padded ground truth, boxes_per_image boxes (xyxy, 8 px to 0.3 size a side) per image."""
    images = torch.randn(bs, 3, size, size, generator=generator).to(device)
    targets = []
    for _ in range(bs):
        xy = torch.rand(boxes_per_image, 2, generator=generator) * size * 0.7
        wh = 8 + torch.rand(boxes_per_image, 2, generator=generator) * size * 0.3
        boxes = torch.cat([xy, (xy + wh).clamp(max=size - 1)], dim=1)
        labels = torch.randint(0, num_classes, (boxes_per_image,), generator=generator)
        targets.append({"boxes": boxes, "labels": labels, "size": (size, size)})
    return images, GroundTruth.from_targets(targets, (size, size)).to(device)


def memory_bandwidth(device: torch.device, nbytes: int = 256 << 20) -> float:
    """Measured copy bandwidth in bytes/s (read + write counted) on `device`."""
    src = torch.empty(nbytes // 4, dtype=torch.float32, device=device).fill_(1.0)
    dst = torch.empty_like(src)
    seconds = measure(lambda: dst.copy_(src), device, repeats=5)
    return 2 * nbytes / seconds


def print_table(title: str, header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    print(f"\n## {title}\n")
    print("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        print("| " + " | ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)) + " |")


def fmt_ms(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{seconds * 1e3:.3f}"


def torchvision_ops():
    """torchvision.ops if installed (a reference only, never a runtime dependency)."""
    try:
        import torchvision.ops

        return torchvision.ops
    except Exception:  # noqa: BLE001  (absent or built against another torch)
        return None


def arg_parser(doc: str) -> argparse.ArgumentParser:
    """The options every bench script takes, --device and --quick; a script may add its own."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="smaller sizes, fewer repeats")
    return parser


def main(run: Callable[..., None], doc: str) -> None:
    """Command line of a script with no options of its own: run(device, quick=...)."""
    args = arg_parser(doc).parse_args()
    run(torch.device(args.device), quick=args.quick)


def triton_on(device: torch.device) -> bool:
    """Whether the Triton backend is worth timing on `device` (the interpreter is not)."""
    return device.type == "cuda" or os.environ.get("DETS_BENCH_INTERPRETED") == "1"
