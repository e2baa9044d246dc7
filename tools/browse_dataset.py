"""Draw the ground truth of a dataset's images after the training transforms, to check
annotations and augmentation before training (and, for anchor-based nets, the anchors that
training matches to each box), e.g.

    python tools/browse_dataset.py --dataset voc:/data/MyVOC --net res50_fpn --num 8 --priors
    python tools/browse_dataset.py --dataset shapes --net ttfnet_r18 --input_size 128 --aug ssd

Pictures go to --output_dir (one JPEG per image, ground truth in the class colours; matched
anchors thin and grey).
"""

import argparse
import sys
from pathlib import Path

import torch
from PIL import ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dets.data import build_dataset, collate  # noqa: E402
from dets.data.transforms import Normalize  # noqa: E402
from dets.models import DEFAULT_NET, NETS, build_detector, net_spec  # noqa: E402
from dets.visualize import draw_detections, save_image  # noqa: E402

PRIOR_COLOUR = (160, 160, 160)


def main(argv=None) -> list[Path]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="shapes")
    parser.add_argument("--data_dir", default="data")
    parser.add_argument("--split", default="train")
    parser.add_argument("--net", default=DEFAULT_NET, choices=list(NETS), metavar="NET", help="whose transforms to use")
    parser.add_argument("--input_size", type=int, default=None, help="the net's --input_size (default: its recipe's)")
    parser.add_argument("--aug", choices=("flip", "ssd"), default="flip")
    parser.add_argument("--num", type=int, default=8, help="how many images")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random transforms")
    parser.add_argument("--priors", action="store_true", help="also draw the anchors matched to each box")
    parser.add_argument("--output_dir", default="output/browse")
    args = parser.parse_args(argv)

    recipe = net_spec(args.net).recipe
    size = args.input_size or recipe.input_size
    dataset = build_dataset(
        args.dataset, args.split, data_dir=args.data_dir, transforms=recipe.train_transforms(size, args.aug == "ssd")
    )
    model = build_detector(args.net, len(dataset.class_names)).eval() if args.priors else None
    torch.manual_seed(args.seed)
    written = []
    for i in range(min(args.num, len(dataset))):
        image, target = dataset[i]
        picture = Normalize().invert(image).round().byte().permute(1, 2, 0).numpy()
        drawn = draw_detections(picture, target["boxes"], target["labels"], None, dataset.class_names, 0.0)
        if model is not None:
            images, ground_truth, _ = collate([(image, target)], model.size_divisor)
            try:
                priors = model.matched_priors(images, ground_truth)[0]
            except NotImplementedError as exc:
                sys.exit(f"--priors: {exc}")
            pen = ImageDraw.Draw(drawn)
            for box in priors.tolist():
                pen.rectangle(box, outline=PRIOR_COLOUR, width=1)
        written.append(save_image(drawn, Path(args.output_dir) / f"{i:04d}_{Path(dataset.image_path(i)).stem}.jpg"))
    print(
        f"dets: {len(written)} pictures of {args.dataset} ({args.split}, {args.net}'s transforms) in {args.output_dir}"
    )
    return written


if __name__ == "__main__":
    main()
