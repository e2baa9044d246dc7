"""Whole models against torchvision's of the same design, each run as its toolbox runs it by
default, on the same random images and boxes, in one run (torchvision is a benchmark reference
only; dets never imports it).

    python bench/bench_vs_torchvision.py [--pair res50_fpn,fcos_r50] [--input_size 320]
        [--bs 2] [--steps 3] [--amp] [--device cpu] [--quick]

Pairs (ours → theirs): res50_fpn → fasterrcnn_resnet50_fpn, fcos_r50 → fcos_resnet50_fpn,
ssd_vgg16 → ssd300_vgg16. Both from scratch (no pretrained weights), the same number of classes
(20 + background for torchvision), the same input size (torchvision's transform gets
min_size = max_size = the input size, so neither resizes differently; ssd300_vgg16 fixes its
input at 300², so that pair always runs at 300² whatever ``--input_size`` says).

- training step: forward with targets, backward, optimizer step. Ours as ``trainval_net.py``
  runs it (``build_optimizer`` SGD, ``prepare_for_training``); theirs as torchvision's reference
  scripts (SGD momentum 0.9 over every parameter).
- inference: network and post-processing from raw 0..255 images of the input size. Ours as
  ``test_net.py`` runs it (test transforms, ``collate``, ``prepare_for_inference``, ``predict``);
  theirs as ``model.eval()(images)`` under ``torch.inference_mode`` (its transform normalises).

Settings aligned where the designs share them: Faster R-CNN samples 128 RoIs per image and keeps
300 test proposals on both sides (our defaults; torchvision is set to them); 100 detections per
image at most everywhere. Each SSD keeps its own toolbox's post-processing defaults (ours the
seed's score 0.01 and NMS 0.6, torchvision's score 0.01, NMS 0.45 and 400 candidates per class).
"""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dets.data import collate  # noqa: E402
from dets.data.transforms import Sample  # noqa: E402
from dets.engine.trainer import build_optimizer  # noqa: E402
from dets.models import build_detector, net_spec  # noqa: E402
from dets.models.inference import prepare_for_inference, prepare_for_training  # noqa: E402

from _timing import arg_parser, device_description, measure, print_table, random_scene  # noqa: E402

NUM_CLASSES = 20
BOXES_PER_IMAGE = 6
RCNN_ROIS_PER_IMAGE = 128
RCNN_TEST_PROPOSALS = 300
MAX_PER_IMAGE = 100
PAIRS = ("res50_fpn", "fcos_r50", "ssd_vgg16")
# torchvision's ssd300_vgg16 resizes every image to 300² whatever it is given.
FIXED_INPUT_SIZE = {"ssd_vgg16": 300}


def torchvision_model(net: str, size: int):
    from torchvision.models import detection

    common = {"weights": None, "weights_backbone": None, "num_classes": NUM_CLASSES + 1}
    if net == "res50_fpn":
        return detection.fasterrcnn_resnet50_fpn(
            **common,
            min_size=size,
            max_size=size,
            box_batch_size_per_image=RCNN_ROIS_PER_IMAGE,
            rpn_post_nms_top_n_test=RCNN_TEST_PROPOSALS,
            box_detections_per_img=MAX_PER_IMAGE,
        )
    if net == "fcos_r50":
        return detection.fcos_resnet50_fpn(**common, min_size=size, max_size=size, detections_per_img=MAX_PER_IMAGE)
    if net == "ssd_vgg16":
        return detection.ssd300_vgg16(**common, detections_per_img=MAX_PER_IMAGE)
    raise ValueError(f"no torchvision counterpart for {net!r}; choose from {', '.join(PAIRS)}")


def measure_pair(net: str, device: torch.device, size: int, bs: int, steps: int, amp: bool) -> list[list[str]]:
    size = FIXED_INPUT_SIZE.get(net, size)
    label = f"{net} ({size}²)" if net in FIXED_INPUT_SIZE else net
    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    images, ground_truth = random_scene(bs, size, BOXES_PER_IMAGE, NUM_CLASSES, device, generator)
    raw = [torch.randint(0, 256, (3, size, size), generator=generator).float() for _ in range(bs)]
    autocast = torch.autocast(device.type, dtype=torch.bfloat16 if device.type == "cpu" else torch.float16, enabled=amp)

    ours = prepare_for_training(build_detector(net, NUM_CLASSES), device)
    our_optimizer = build_optimizer(ours, "sgd", 1e-4, 1e-4)

    def our_train():
        with autocast:
            losses = ours(images, ground_truth)
        our_optimizer.zero_grad(set_to_none=True)
        losses["loss"].backward()
        our_optimizer.step()

    theirs = torchvision_model(net, size).to(device)
    their_optimizer = torch.optim.SGD(theirs.parameters(), lr=1e-4, momentum=0.9, weight_decay=1e-4)
    # torchvision wants images in [0, 1] and 1-based labels (0 is its background).
    their_images = [(image - image.min()) / (image.max() - image.min()) for image in images]
    their_targets = [
        {"boxes": ground_truth.boxes[i, : int(n)], "labels": ground_truth.labels[i, : int(n)] + 1}
        for i, n in enumerate(ground_truth.num_boxes.tolist())
    ]

    def their_train():
        theirs.train()
        with autocast:
            losses = theirs(their_images, their_targets)
        their_optimizer.zero_grad(set_to_none=True)
        sum(losses.values()).backward()
        their_optimizer.step()

    rows = []
    train_ours = measure(our_train, device, repeats=steps, warmup=1, min_time=0)
    train_theirs = measure(their_train, device, repeats=steps, warmup=1, min_time=0)
    rows.append(
        [
            f"{label}: train step",
            f"{bs / train_ours:.2f}",
            f"{bs / train_theirs:.2f}",
            f"{train_theirs / train_ours:.2f}",
        ]
    )

    transforms = net_spec(net).recipe.test_transforms(size)
    inference_model = prepare_for_inference(ours, device)
    empty_boxes, empty_labels = torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64)

    def our_inference():
        samples = [transforms(Sample(image, empty_boxes, empty_labels)) for image in raw]
        batch, _, _ = collate([(s.image, {}) for s in samples], inference_model.size_divisor)
        with torch.inference_mode(), autocast:
            inference_model.predict(batch.to(device), max_per_image=MAX_PER_IMAGE)

    theirs.eval()
    their_raw = [(image / 255).to(device) for image in raw]

    def their_inference():
        with torch.inference_mode(), autocast:
            theirs(their_raw)

    test_ours = measure(our_inference, device, repeats=steps, warmup=1, min_time=0)
    test_theirs = measure(their_inference, device, repeats=steps, warmup=1, min_time=0)
    rows.append(
        [f"{label}: inference", f"{bs / test_ours:.2f}", f"{bs / test_theirs:.2f}", f"{test_theirs / test_ours:.2f}"]
    )
    return rows


def run(
    device: torch.device,
    quick: bool = False,
    pairs: tuple[str, ...] = PAIRS,
    input_size: int = 320,
    bs: int = 2,
    steps: int = 3,
    amp: bool = False,
) -> None:
    if quick:
        input_size, bs, steps = 128, 1, 1
    print(f"\ndevice: {device_description(device)}")
    rows = []
    for net in pairs:
        rows += measure_pair(net, device, input_size, bs, steps, amp)
    print_table(
        f"--input_size {input_size}, batch {bs}, {NUM_CLASSES} classes{', autocast' if amp else ', float32'}",
        ["measure", "ours images/s", "torchvision images/s", "ours / torchvision"],
        rows,
    )


def main() -> None:
    parser = arg_parser(__doc__)
    parser.add_argument("--pair", default=",".join(PAIRS), help="comma-separated nets of ours with a counterpart")
    parser.add_argument("--input_size", type=int, default=320, help="square input side for both")
    parser.add_argument("--bs", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3, help="timed calls after one warm-up (median)")
    parser.add_argument("--amp", action="store_true", help="bf16 autocast on CPU, fp16 on CUDA, on both sides")
    args = parser.parse_args()
    run(
        torch.device(args.device),
        args.quick,
        tuple(args.pair.split(",")),
        args.input_size,
        args.bs,
        args.steps,
        args.amp,
    )


if __name__ == "__main__":
    main()
