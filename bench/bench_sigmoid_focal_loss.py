"""Time sigmoid_focal_loss, forward and forward + backward, on every backend against the plain
formula (the reference, written as torchvision writes it) and torchvision itself.

    python bench/bench_sigmoid_focal_loss.py [--device cpu|cuda] [--quick]

FCOS's training shape: batch 2, 22 400 locations (800 × 1333 input, P3-P7), 80 classes, about
1% positives; the loss summed, as FCOS does.
"""

import torch

from dets.ops import _backend, backend, sigmoid_focal_loss

from _timing import device_description, fmt_ms, main, measure, print_table, torchvision_ops, triton_on

LOCATIONS, CLASSES = 22400, 80


def _forward(fn, logits, targets):
    def call():
        with torch.no_grad():
            fn(logits, targets)

    return call


def _forward_backward(fn, logits, targets):
    x = logits.clone().requires_grad_()

    def call():
        x.grad = None
        fn(x, targets).backward()

    return call


def run(device: torch.device, quick: bool = False) -> None:
    device = torch.device(device)
    batch = 1 if quick else 2
    repeats = 3 if quick else 20
    gen = torch.Generator().manual_seed(0)
    logits = (torch.randn(batch, LOCATIONS, CLASSES, generator=gen) * 3 - 4).to(device)
    targets = (torch.rand(batch, LOCATIONS, CLASSES, generator=gen) < 0.01).float().to(device)
    contenders = {}
    for name in ("cpu", "cuda", "triton"):
        if _backend._can_serve(name, device) is None and (name != "triton" or triton_on(device)):

            def fn(x, t, name=name):
                with backend(name):
                    return sigmoid_focal_loss(x, t, reduction="sum")

            contenders[name] = fn

    def formula(x, t):
        with backend("torch"):
            return sigmoid_focal_loss(x, t, reduction="sum")

    contenders["plain formula"] = formula
    ops = torchvision_ops()
    if ops is not None:
        contenders["torchvision"] = lambda x, t: ops.sigmoid_focal_loss(x, t, reduction="sum")
    print(f"\n{device_description(device)}")
    rows = []
    fast = next(iter(contenders))
    for label, make in (("forward", _forward), ("forward + backward", _forward_backward)):
        times = {n: measure(make(fn, logits, targets), device, repeats) for n, fn in contenders.items()}
        row = [label, *[fmt_ms(t) for t in times.values()], f"{times['plain formula'] / times[fast]:.1f}"]
        rows.append(row)
    header = ["pass", *[f"{n} ms" for n in contenders], f"plain formula / {fast}"]
    print_table(f"sigmoid_focal_loss, [{batch}, {LOCATIONS}, {CLASSES}] float32, reduction sum", header, rows)


if __name__ == "__main__":
    main(run, __doc__)
