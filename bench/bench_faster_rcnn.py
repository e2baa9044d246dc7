"""Faster R-CNN speed: training and test images/s per --net, and the share of the time spent in
the RoI ops (dets.ops.roi_align / roi_pool / roi_crop, forward and backward) and in NMS
(dets.ops.nms / batched_nms / soft_nms).

    python bench/bench_faster_rcnn.py [--device cpu|cuda] [--nets res50_fpn,detnet59]
        [--size 160] [--bs 4] [--pooling_mode align] [--steps 3] [--amp]

The images are random and the weights untrained: the RPN proposes its full post-NMS quota and
the box head scores every class low, so test time here is the model's, not a trained model's
(fewer regions survive the score threshold there). The shares come from torch.profiler over
separate steps, as the sum of the time attributed to the dets ops (self and children) over the
profiled step's wall time; on CUDA they are kernel time over the step's wall time.
"""

import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dets.models import build_detector  # noqa: E402

from _timing import _sync, arg_parser, device_description, measure, print_table, random_scene  # noqa: E402

ROI_OPS = ("roi_align", "_roi_align_backward", "roi_pool", "_roi_pool_backward", "roi_crop", "_roi_crop_backward")
NMS_OPS = ("nms", "batched_nms", "soft_nms")
NUM_CLASSES = 20
BOXES_PER_IMAGE = 6


def _op_shares(fn, device: torch.device, steps: int) -> tuple[float, float]:
    """(RoI share, NMS share) of the wall time of `steps` profiled calls of fn."""
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    fn()
    _sync(device)
    with torch.profiler.profile(activities=activities) as prof:
        start = time.perf_counter()
        for _ in range(steps):
            fn()
        _sync(device)
        wall_us = (time.perf_counter() - start) * 1e6
    spent = dict.fromkeys(ROI_OPS + NMS_OPS, 0.0)
    for event in prof.key_averages():
        name = event.key.removeprefix("dets::")
        if event.key.startswith("dets::") and name in spent:
            spent[name] += event.device_time_total if device.type == "cuda" else event.cpu_time_total
    return sum(spent[k] for k in ROI_OPS) / wall_us, sum(spent[k] for k in NMS_OPS) / wall_us


def _measure(net: str, device: torch.device, size: int, bs: int, steps: int, pooling_mode: str, amp: bool):
    """[net, train img/s, its RoI and NMS shares, test img/s, its RoI and NMS shares] as text."""
    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model = build_detector(net, NUM_CLASSES, options={"pooling_mode": pooling_mode}).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
    images, ground_truth = random_scene(bs, size, BOXES_PER_IMAGE, NUM_CLASSES, device, generator)

    def train_step():
        model.train()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            losses = model(images, ground_truth)
        optimizer.zero_grad()
        losses["loss"].backward()
        optimizer.step()

    def test_step():
        model.eval()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            model.predict(images, max_per_image=100)

    train = measure(train_step, device, repeats=steps, warmup=1, min_time=0)
    test = measure(test_step, device, repeats=steps, warmup=1, min_time=0)
    train_roi, train_nms = _op_shares(train_step, device, steps)
    test_roi, test_nms = _op_shares(test_step, device, steps)
    return [
        net,
        f"{bs / train:.2f}",
        f"{100 * train_roi:.2f}%",
        f"{100 * train_nms:.2f}%",
        f"{bs / test:.2f}",
        f"{100 * test_roi:.2f}%",
        f"{100 * test_nms:.2f}%",
    ]


def run(
    device: torch.device,
    quick: bool = False,
    nets: tuple[str, ...] = ("res50_fpn", "detnet59"),
    size: int = 160,
    bs: int = 4,
    steps: int = 3,
    pooling_mode: str = "align",
    amp: bool = False,
) -> None:
    if quick:
        size, bs, steps = 128, 2, 1
    rows = [_measure(net, device, size, bs, steps, pooling_mode, amp) for net in nets]
    print(f"\ndevice: {device_description(device)}")
    print_table(
        f"Faster R-CNN, {size}x{size}, batch {bs}, {NUM_CLASSES} classes, {pooling_mode} pooling"
        f"{', bf16 autocast' if amp else ''}",
        ["net", "train img/s", "train: RoI ops", "train: NMS", "test img/s", "test: RoI ops", "test: NMS"],
        rows,
    )


def main() -> None:
    parser = arg_parser(__doc__)
    parser.add_argument("--nets", default="res50_fpn,detnet59", help="comma-separated --net names")
    parser.add_argument("--size", type=int, default=160, help="square input side")
    parser.add_argument("--bs", type=int, default=4)
    parser.add_argument("--steps", type=int, default=3, help="timed calls after one warm-up (the median is reported)")
    parser.add_argument("--pooling_mode", default="align", choices=("align", "pool", "crop"))
    parser.add_argument("--amp", action="store_true", help="bf16 autocast")
    args = parser.parse_args()
    run(
        torch.device(args.device),
        args.quick,
        tuple(args.nets.split(",")),
        args.size,
        args.bs,
        args.steps,
        args.pooling_mode,
        args.amp,
    )


if __name__ == "__main__":
    main()
