"""TTFNet-R18 speed: training and test images/s, and the share of a training step spent
building the Gaussian targets (dets.ops.ttf_targets).

    python bench/bench_ttfnet.py [--device cpu|cuda] [--size 512] [--bs 8]
"""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dets.models import build_detector  # noqa: E402
from dets.ops import ttf_targets  # noqa: E402

from _timing import arg_parser, device_description, measure, print_table, random_scene  # noqa: E402


def run(device: torch.device, quick: bool = False, size: int = 512, bs: int = 8, steps: int = 3) -> None:
    if quick:
        size, bs, steps = 256, 2, 2
    generator = torch.Generator().manual_seed(0)
    model = build_detector("ttfnet_r18", num_classes=80).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
    images, ground_truth = random_scene(bs, size, 20, 80, device, generator)

    def train_step():
        model.train()
        losses = model(images, ground_truth)
        optimizer.zero_grad()
        losses["loss"].backward()
        optimizer.step()

    def targets_only():
        ttf_targets(
            ground_truth.boxes, ground_truth.labels, 80, (size // 4, size // 4), num_boxes=ground_truth.num_boxes
        )

    step = measure(train_step, device, repeats=steps, warmup=1, min_time=0)
    target_time = measure(targets_only, device, repeats=steps * 3, warmup=1, min_time=0)
    model.eval()
    infer = measure(lambda: model.predict(images, max_per_image=100), device, repeats=steps, warmup=1, min_time=0)
    print(f"\ndevice: {device_description(device)}")
    print_table(
        f"TTFNet-R18, {size}x{size}, batch {bs}, 80 classes, 20 boxes per image",
        ["measure", "value"],
        [
            ["train step (s)", f"{step:.3f}"],
            ["train images/s", f"{bs / step:.2f}"],
            ["test images/s (model + decode)", f"{bs / infer:.2f}"],
            ["ttf_targets per step (ms)", f"{target_time * 1e3:.2f}"],
            ["share of the train step in targets", f"{100 * target_time / step:.2f}%"],
        ],
    )


def main() -> None:
    parser = arg_parser(__doc__)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--bs", type=int, default=8)
    args = parser.parse_args()
    run(torch.device(args.device), quick=args.quick, size=args.size, bs=args.bs)


if __name__ == "__main__":
    main()
