"""Time nms, batched_nms and soft_nms on every backend against torchvision.

    python bench/bench_nms.py [--device cpu|cuda] [--quick] [--threads 2]

Inputs (like torchvision's NMS benchmarks): N boxes with (x1, y1) uniform in a 1000 x 1000
image and (w, h) uniform in [0, 250); scores uniform in [0, 1); batched_nms categories uniform
over 80; IoU threshold 0.5 (soft_nms: its defaults, linear). Two floors: "sort", one stable descending
sort of the scores, which every NMS pays; and "pairs", the IoU tests any greedy NMS without a
spatial index must make (every pair of kept boxes of one category: sum K_c (K_c - 1) / 2) at
the rate the dets kernel itself tests pairs (measured with nothing suppressed, threshold 1).
"""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dets.ops import _backend, batched_nms, nms, soft_nms  # noqa: E402

from _timing import arg_parser, device_description, fmt_ms, measure, print_table, torchvision_ops, triton_on  # noqa: E402

IMAGE = 1000.0
MAX_SIDE = 250.0
CATEGORIES = 80
THRESHOLD = 0.5
REFERENCE_MAX_N = 1000


def make_inputs(n: int, device: torch.device, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * IMAGE
    wh = torch.rand(n, 2, generator=g) * MAX_SIDE
    boxes = torch.cat([xy, xy + wh], dim=1)
    scores = torch.rand(n, generator=g)
    idxs = torch.randint(0, CATEGORIES, (n,), generator=g)
    return boxes.to(device), scores.to(device), idxs.to(device)


def backends_for(device: torch.device) -> list[str]:
    names = ["cpu"] if device.type == "cpu" else []
    if device.type == "cuda" and _backend.cuda_kernels_for(device):
        names.append("cuda")
    if _backend.triton_available() and triton_on(device):
        names.append("triton")
    return names


def timed(backend: str, fn, device: torch.device, quick: bool) -> float:
    with _backend.backend(backend):
        return measure(fn, device, repeats=3 if quick else 10, min_time=0.05 if quick else 0.2)


def pair_rate(device: torch.device, main: str) -> float:
    """IoU tests per second of the main backend's nms: all N (N - 1) / 2 pairs are tested
    when nothing is suppressed."""
    n = 4000
    boxes, scores, _ = make_inputs(n, device, seed=1)
    # The best of a few medians: a rate measured during a burst of load would flatter the ratio.
    with _backend.backend(main):
        seconds = min(measure(lambda: nms(boxes, scores, 1.0), device, repeats=5) for _ in range(3))
    return n * (n - 1) / 2 / seconds


def kept_pairs(out: torch.Tensor, idxs: torch.Tensor | None) -> float:
    counts = torch.bincount(idxs[out].cpu()) if idxs is not None else torch.tensor([out.numel()])
    return float((counts * (counts - 1) / 2).sum())


def bench_case(
    op: str, n: int, device: torch.device, tv, backends: list[str], main: str, quick: bool, rate: float
) -> list:
    boxes, scores, idxs = make_inputs(n, device)
    calls = {
        "nms": lambda: nms(boxes, scores, THRESHOLD),
        "batched_nms": lambda: batched_nms(boxes, scores, idxs, THRESHOLD),
        "soft_nms": lambda: soft_nms(boxes, scores),
    }
    call = calls[op]
    with _backend.backend(main):
        out = call()
    kept = (out[0] if op == "soft_nms" else out).numel()
    repeats = 3 if quick else 10
    sort = measure(lambda: torch.sort(scores, descending=True, stable=True), device)
    tv_time = None
    if tv is not None and op == "nms":
        tv_time = measure(lambda: tv.nms(boxes, scores, THRESHOLD), device, repeats=repeats)
    elif tv is not None and op == "batched_nms":
        tv_time = measure(lambda: tv.batched_nms(boxes, scores, idxs, THRESHOLD), device, repeats=repeats)
    times = {b: timed(b, call, device, quick) for b in backends}
    ref = timed("torch", call, device, True) if n <= REFERENCE_MAX_N else None
    ours = times.get(main)
    ratio = "n/a" if tv_time is None or ours is None else f"{tv_time / ours:.1f}x"
    floor = "n/a" if ours is None else f"{ours / sort:.1f}x"
    pairs = None if op == "soft_nms" else kept_pairs(out, idxs if op == "batched_nms" else None) / rate
    vs_pairs = "n/a" if ours is None or pairs is None else f"{ours / max(pairs, sort):.1f}x"
    per_backend = [fmt_ms(times[b]) for b in backends]
    return [
        op,
        n,
        kept,
        fmt_ms(sort),
        fmt_ms(pairs),
        fmt_ms(tv_time),
        *per_backend,
        fmt_ms(ref),
        ratio,
        floor,
        vs_pairs,
    ]


def run(device: torch.device, quick: bool = False) -> None:
    device = torch.device(device)
    tv = torchvision_ops()
    if (
        tv is not None
        and device.type == "cuda"
        and not torch.ops.torchvision.nms.default.has_kernel_for_dispatch_key(torch._C.DispatchKey.CUDA)
    ):
        tv = None
    backends = backends_for(device)
    main = _backend.choose("nms", device)
    print(f"\nNMS family on {device_description(device)}; the ratio is torchvision / dets ({main} backend)")
    cases = [("nms", n) for n in ([1000, 5000] if quick else [1000, 5000, 20000])]
    cases += [("batched_nms", n) for n in ([1000, 5000] if quick else [1000, 5000, 20000])]
    cases += [("soft_nms", n) for n in ([1000] if quick else [1000, 5000])]
    header = ["op", "N", "kept", "sort", "pairs", "torchvision", *backends, "reference", "tv / dets", "dets / sort"]
    header.append("dets / max(sort, pairs)")
    rate = pair_rate(device, main)
    print(f"pair rate of the {main} nms kernel: {rate / 1e9:.2f} G IoU tests/s")
    rows = [bench_case(op, n, device, tv, backends, main, quick, rate) for op, n in cases]
    print_table("NMS family (ms, median)", header, rows)


def main() -> None:
    parser = arg_parser(__doc__)
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    run(torch.device(args.device), quick=args.quick)


if __name__ == "__main__":
    main()
