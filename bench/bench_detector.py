"""Speed of any net of the table: a training step, network-only inference (the seeds' FPS:
the forward pass alone) and full inference (pre-processing of raw images with the family's test
transforms, batching, the network and the post-processing of ``predict``), images/s and latency,
and the share of each step spent in the dets ops.

    python bench/bench_detector.py --net res50_fpn [--input_size 160] [--bs 4] [--amp] [--device cpu]
        [--steps 3] [--pooling_mode align]

Images are random and the weights untrained (e.g. Faster R-CNN's RPN proposes its full quota and
its box head scores every class low), so test times are the model's, not a trained model's. The
op shares come from torch.profiler over separate calls: the time attributed to each dets op (self
and children) over the profiled call's wall time; on CUDA, kernel time over wall time.
"""

import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dets.data import collate  # noqa: E402
from dets.data.transforms import Sample  # noqa: E402
from dets.models import build_detector, net_spec  # noqa: E402

from _timing import _sync, arg_parser, device_description, measure, print_table, random_scene  # noqa: E402

NUM_CLASSES = 20
BOXES_PER_IMAGE = 6
# Raw images before the test transforms: 4:3, as photos and VOC images mostly are.
RAW_ASPECT = 4 / 3
DEFAULT_NETS = ("ttfnet_r18", "res50_fpn")


def op_shares(fn, device: torch.device, steps: int) -> dict[str, float]:
    """{dets op: share of the wall time} over `steps` profiled calls of `fn`."""
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
    spent: dict[str, float] = {}
    for event in prof.key_averages():
        if event.key.startswith("dets::"):
            total = event.device_time_total if device.type == "cuda" else event.cpu_time_total
            spent[event.key.removeprefix("dets::")] = spent.get(event.key.removeprefix("dets::"), 0.0) + total
    return {name: us / wall_us for name, us in sorted(spent.items(), key=lambda kv: -kv[1]) if us > 0}


def measure_net(
    net: str, device: torch.device, input_size: int | None, bs: int, steps: int, amp: bool, options: dict
) -> tuple[list[list[str]], dict[str, dict[str, float]]]:
    """Rows of (measure, images/s, latency ms) and the op shares of the train and test steps."""
    recipe = net_spec(net).recipe
    size = input_size or recipe.input_size
    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model = build_detector(net, NUM_CLASSES, options=options).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
    images, ground_truth = random_scene(bs, size, BOXES_PER_IMAGE, NUM_CLASSES, device, generator)
    transforms = recipe.test_transforms(size)
    raw = [torch.randint(0, 256, (3, size, round(size * RAW_ASPECT)), generator=generator).float() for _ in range(bs)]
    autocast = torch.autocast(device.type, dtype=torch.bfloat16 if device.type == "cpu" else torch.float16, enabled=amp)

    def train_step():
        model.train()
        with autocast:
            losses = model(images, ground_truth)
        optimizer.zero_grad()
        losses["loss"].backward()
        optimizer.step()

    def network_only():
        model.eval()
        with torch.inference_mode(), autocast:
            model(images)

    def full_inference():
        model.eval()
        empty = torch.zeros(0, 4)
        samples = [transforms(Sample(image, empty, torch.zeros(0, dtype=torch.int64))) for image in raw]
        batch, _, _ = collate([(s.image, {}) for s in samples])
        with torch.inference_mode(), autocast:
            model.predict(batch.to(device), max_per_image=100)

    rows = []
    for name, fn in (("train step", train_step), ("network only", network_only), ("full inference", full_inference)):
        seconds = measure(fn, device, repeats=steps, warmup=1, min_time=0)
        rows.append([f"{net}: {name}", f"{bs / seconds:.2f}", f"{1e3 * seconds:.1f}"])
    shares = {"train": op_shares(train_step, device, steps), "test": op_shares(full_inference, device, steps)}
    return rows, shares


def run(
    device: torch.device,
    quick: bool = False,
    nets: tuple[str, ...] = DEFAULT_NETS,
    input_size: int | None = None,
    bs: int = 4,
    steps: int = 3,
    amp: bool = False,
    options: dict | None = None,
) -> None:
    if quick:
        input_size, bs, steps = input_size or 128, 2, 1
    print(f"\ndevice: {device_description(device)}")
    for net in nets:
        rows, shares = measure_net(net, device, input_size, bs, steps, amp, options or {})
        size = input_size or net_spec(net).recipe.input_size
        print_table(
            f"{net}, --input_size {size}, batch {bs}, {NUM_CLASSES} classes{', autocast' if amp else ''}",
            ["measure", "images/s", "latency (ms)"],
            rows,
        )
        for step, share in shares.items():
            listed = ", ".join(f"{op} {100 * v:.1f}%" for op, v in share.items()) or "none"
            print(f"{net} {step} step, share in dets ops: {listed}")


def main() -> None:
    parser = arg_parser(__doc__)
    parser.add_argument("--net", default=",".join(DEFAULT_NETS), help="comma-separated --net names")
    parser.add_argument(
        "--input_size", type=int, default=None, help="the family's --input_size (default: its recipe's)"
    )
    parser.add_argument("--bs", type=int, default=4)
    parser.add_argument("--steps", type=int, default=3, help="timed calls after one warm-up (the median is reported)")
    parser.add_argument("--amp", action="store_true", help="bf16 autocast on CPU, fp16 on CUDA")
    parser.add_argument("--pooling_mode", default=None, help="Faster R-CNN's RoI pooling (its option)")
    args = parser.parse_args()
    options = {"pooling_mode": args.pooling_mode} if args.pooling_mode else {}
    run(
        torch.device(args.device),
        args.quick,
        tuple(args.net.split(",")),
        args.input_size,
        args.bs,
        args.steps,
        args.amp,
        options,
    )


if __name__ == "__main__":
    main()
