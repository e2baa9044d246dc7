"""Speed of any net of the table: a training step, network-only inference (the seeds' FPS:
the forward pass alone) and full inference (pre-processing of raw images with the family's test
transforms, batching, the network and the post-processing of ``predict``) of the plain model and
of the model as test_net.py runs it (``prepare_for_inference``), images/s and latency, and the
share of each step spent in the dets ops.

    python bench/bench_detector.py --net res50_fpn [--input_size 160] [--bs 4] [--amp] [--device cpu]
        [--steps 3] [--option pooling_mode=align] [--option dcn=true] [--channels_last]
        [--parts voc:../shared/data/bccd/BCCD [--data_dir DIR] [--top 15]]

Images are random and the weights untrained (e.g. Faster R-CNN's RPN proposes its full quota and
its box head scores every class low), so test times are the model's, not a trained model's. The
op shares come from torch.profiler over separate calls: the time attributed to each dets op (self
and children) over the profiled call's wall time; on CUDA, kernel time over wall time.

``--parts DATASET`` adds the share of each part of a real training step on that dataset's
batches (the recipe's training transforms, ``collate``, the trainer's ``train_one_epoch`` with
SGD as trainval_net.py builds it): loading the batch in the main process (``--nw 0``: what a
data worker has to keep up with), the forward pass of each top-level child of the model, the rest
of the forward (targets, losses: the ``*_targets`` ops are listed too), the backward pass with
gradient clipping, the optimizer step, and the profile's top entries by self time.
"""

import copy
import sys
import time
from functools import partial
from pathlib import Path

import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dets.data import build_dataset, collate  # noqa: E402
from dets.data.transforms import Sample  # noqa: E402
from dets.engine.trainer import BACKWARD, FORWARD, OPTIMIZER, build_optimizer, train_one_epoch  # noqa: E402
from dets.models import build_detector, net_spec, prepare_for_inference, prepare_for_training  # noqa: E402

from _timing import _sync, arg_parser, device_description, measure, measure_interleaved, print_table, random_scene  # noqa: E402

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
    net: str,
    device: torch.device,
    input_size: int | None,
    bs: int,
    steps: int,
    amp: bool,
    options: dict,
    channels_last: bool = False,
    train: bool = True,
) -> tuple[list[list[str]], dict[str, dict[str, float]]]:
    """Rows of (measure, images/s, latency ms) and the op shares of the train (unless not `train`)
    and test steps."""
    recipe = net_spec(net).recipe
    size = input_size or recipe.input_size
    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model = prepare_for_training(build_detector(net, NUM_CLASSES, options=options), device)
    images, ground_truth = random_scene(bs, size, BOXES_PER_IMAGE, NUM_CLASSES, device, generator)
    transforms = recipe.test_transforms(size)
    raw = [torch.randint(0, 256, (3, size, round(size * RAW_ASPECT)), generator=generator).float() for _ in range(bs)]
    autocast = torch.autocast(device.type, dtype=torch.bfloat16 if device.type == "cpu" else torch.float16, enabled=amp)

    def training(detector):
        optimizer = torch.optim.SGD(detector.parameters(), lr=1e-4, momentum=0.9)

        def step():
            detector.train()
            with autocast:
                losses = detector(images, ground_truth)
            optimizer.zero_grad()
            losses["loss"].backward()
            optimizer.step()

        return step

    # Channels-last training is timed interleaved with the plain step, on a copy of the same weights.
    train_step = training(model)
    nhwc = prepare_for_training(copy.deepcopy(model), device, channels_last=True) if channels_last and train else None

    def network_only():
        model.eval()
        with torch.inference_mode(), autocast:
            model(images)

    def full_inference(detector=model):
        detector.eval()
        empty = torch.zeros(0, 4)
        samples = [transforms(Sample(image, empty, torch.zeros(0, dtype=torch.int64))) for image in raw]
        batch, _, _ = collate([(s.image, {}) for s in samples], detector.size_divisor)
        with torch.inference_mode(), autocast:
            detector.predict(batch.to(device), max_per_image=100)

    # A copy as test_net.py and demo.py run it: folded BatchNorms, channels-last.
    prepared = prepare_for_inference(copy.deepcopy(model), device)

    rows = []
    train_names = (["train step"] if train else []) + (
        ["train step, channels-last (interleaved)"] if nhwc is not None else []
    )
    train_fns = ([train_step] if train else []) + ([training(nhwc)] if nhwc is not None else [])
    for name, seconds in zip(train_names, measure_interleaved(train_fns, device, steps), strict=True):
        rows.append([f"{net}: {name}", f"{bs / seconds:.2f}", f"{1e3 * seconds:.1f}"])
    measures = (
        ("network only", network_only),
        ("full inference", full_inference),
        ("full inference, prepare_for_inference", lambda: full_inference(prepared)),
    )
    for name, fn in measures:
        seconds = measure(fn, device, repeats=steps, warmup=1, min_time=0)
        rows.append([f"{net}: {name}", f"{bs / seconds:.2f}", f"{1e3 * seconds:.1f}"])
    shares = {"train": op_shares(train_step, device, steps)} if train else {}
    shares["test"] = op_shares(full_inference, device, steps)
    return rows, shares


DATA = "data"


class LabelledLoader:
    """A DataLoader whose every batch is fetched inside the profiler label DATA."""

    def __init__(self, loader):
        self.loader = loader

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        batches = iter(self.loader)
        while True:
            with torch.profiler.record_function(DATA):
                batch = next(batches, None)
            if batch is None:
                return
            yield batch


def _labelled(forward, label: str):
    def run(*args, **kwargs):
        with torch.profiler.record_function(label):
            return forward(*args, **kwargs)

    return run


def step_parts(
    net: str,
    device: torch.device,
    dataset: str,
    data_dir: str | None,
    input_size: int | None,
    bs: int,
    steps: int,
    amp: bool,
    options: dict,
    channels_last: bool,
    top: int,
) -> tuple[list[list[str]], str]:
    """Rows of (part, ms per step, share of the step) over `steps` profiled training steps on
    `dataset`, and the profile's `top` entries by self CPU time as a table."""
    recipe = net_spec(net).recipe
    size = input_size or recipe.input_size
    data = build_dataset(dataset, "train", data_dir=data_dir, transforms=recipe.train_transforms(size, False))
    model = build_detector(net, data.num_classes, options=options)
    children = [name for name, _ in model.named_children()]
    for name, child in model.named_children():
        child.forward = _labelled(child.forward, f"part: {name}")
    model = prepare_for_training(model, device, channels_last=channels_last)
    optimizer = build_optimizer(model, "sgd", 1e-4, 1e-4)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    loader = LabelledLoader(
        torch.utils.data.DataLoader(
            data,
            batch_size=bs,
            shuffle=True,
            collate_fn=partial(collate, size_divisor=model.size_divisor),
            drop_last=True,
            generator=torch.Generator().manual_seed(0),
        )
    )
    amp_dtype = (torch.bfloat16 if device.type == "cpu" else torch.float16) if amp else None
    scaler = torch.amp.GradScaler("cuda") if amp and device.type == "cuda" else None

    def train(iters: int) -> None:
        train_one_epoch(
            model, loader, optimizer, scheduler, device, 1, scaler=scaler, amp_dtype=amp_dtype, max_iters=iters
        )

    train(1)
    _sync(device)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        train(steps)
        _sync(device)
        wall_ms = (time.perf_counter() - start) * 1e3 / steps
    spent = {event.key: event.cpu_time_total / 1e3 / steps for event in prof.key_averages()}
    targets = sum(ms for key, ms in spent.items() if key.startswith("dets::") and key.endswith("_targets"))
    parts = {f"{DATA} (main process)": spent.get(DATA, 0.0)}
    parts |= {f"forward: {name}": spent.get(f"part: {name}", 0.0) for name in children}
    parts["forward: the rest (targets, losses)"] = spent.get(FORWARD, 0.0) - sum(
        spent.get(f"part: {name}", 0.0) for name in children
    )
    parts["  of which the *_targets ops"] = targets
    parts["backward (with gradient clipping)"] = spent.get(BACKWARD, 0.0)
    parts["optimizer step"] = spent.get(OPTIMIZER, 0.0)
    accounted = sum(spent.get(key, 0.0) for key in (DATA, FORWARD, BACKWARD, OPTIMIZER))
    parts["other (trainer bookkeeping)"] = wall_ms - accounted
    rows = [[part, f"{ms:.1f}", f"{100 * ms / wall_ms:.1f}%"] for part, ms in parts.items()]
    rows.append(["step (wall)", f"{wall_ms:.1f}", "100%"])
    labels = {DATA, FORWARD, BACKWARD, OPTIMIZER} | {f"part: {name}" for name in children}
    ops = [event for event in prof.key_averages() if event.key not in labels]
    ops.sort(key=lambda event: -event.self_cpu_time_total)
    lines = []
    for event in ops[:top]:
        ms = event.self_cpu_time_total / 1e3 / steps
        lines.append(f"| {event.key} | {ms:.1f} | {100 * ms / wall_ms:.1f}% | {event.count // steps} |")
    table = "\n".join(lines)
    return rows, "| op | self ms per step | share | calls per step |\n|---|---|---|---|\n" + table


def parse_option(text: str, parser) -> tuple[str, object]:
    """'name=value' → (name, value), the value read as YAML (true, 3, 0.5, align)."""
    name, sep, value = text.partition("=")
    if not sep or not name:
        parser.error(f"--option takes NAME=VALUE, got {text!r}")
    return name, yaml.safe_load(value)


def run(
    device: torch.device,
    quick: bool = False,
    nets: tuple[str, ...] = DEFAULT_NETS,
    input_size: int | None = None,
    bs: int = 4,
    steps: int = 3,
    amp: bool = False,
    options: dict | None = None,
    channels_last: bool = False,
    parts: str | None = None,
    data_dir: str | None = None,
    top: int = 15,
    train: bool = True,
) -> None:
    if quick:
        input_size, bs, steps = input_size or 128, 2, 1
    print(f"\ndevice: {device_description(device)}")
    for net in nets:
        rows, shares = measure_net(net, device, input_size, bs, steps, amp, options or {}, channels_last, train)
        size = input_size or net_spec(net).recipe.input_size
        settings = ", autocast" if amp else ""
        print_table(
            f"{net}, --input_size {size}, batch {bs}, {NUM_CLASSES} classes{settings}",
            ["measure", "images/s", "latency (ms)"],
            rows,
        )
        for step, share in shares.items():
            listed = ", ".join(f"{op} {100 * v:.1f}%" for op, v in share.items()) or "none"
            print(f"{net} {step} step, share in dets ops: {listed}")
        if parts:
            rows, top_table = step_parts(
                net, device, parts, data_dir, input_size, bs, steps, amp, options or {}, channels_last, top
            )
            print_table(f"{net}: the parts of a training step on {parts}", ["part", "ms per step", "share"], rows)
            print(f"\n{net}: the profile's top {top} entries of a training step (self CPU time)\n{top_table}")


def main() -> None:
    parser = arg_parser(__doc__)
    parser.add_argument("--net", default=",".join(DEFAULT_NETS), help="comma-separated --net names")
    parser.add_argument(
        "--input_size", type=int, default=None, help="the family's --input_size (default: its recipe's)"
    )
    parser.add_argument("--bs", type=int, default=4)
    parser.add_argument("--steps", type=int, default=3, help="timed calls after one warm-up (the median is reported)")
    parser.add_argument("--amp", action="store_true", help="bf16 autocast on CPU, fp16 on CUDA")
    parser.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a family option of the net (its builder keyword, e.g. pooling_mode=align, dcn=true); repeatable",
    )
    parser.add_argument(
        "--channels_last",
        action="store_true",
        help="also time channels-last training (prepare_for_training), interleaved with the plain step;"
        " --parts then profiles the channels-last step",
    )
    parser.add_argument("--parts", default=None, metavar="DATASET", help="add the parts of a training step on DATASET")
    parser.add_argument("--data_dir", default=None, help="--parts' data folder (e.g. where `shapes` is made)")
    parser.add_argument("--top", type=int, default=15, help="--parts: how many profile entries to list")
    parser.add_argument(
        "--no_train",
        action="store_true",
        help="time inference only (at batch 1 a net whose last map is 1x1 cannot train: BatchNorm needs two values)",
    )
    args = parser.parse_args()
    options = dict(parse_option(text, parser) for text in args.option)
    run(
        torch.device(args.device),
        args.quick,
        tuple(args.net.split(",")),
        args.input_size,
        args.bs,
        args.steps,
        args.amp,
        options,
        args.channels_last,
        args.parts,
        args.data_dir,
        args.top,
        not args.no_train,
    )


if __name__ == "__main__":
    main()
