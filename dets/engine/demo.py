"""Draw a trained detector's detections on every image of a folder (demo.py)."""

import argparse
import sys
from pathlib import Path

import torch

from dets.data import open_rgb
from dets.data.image_folder import ImageFolder
from dets.models import net_spec
from dets.visualize import draw_detections, save_image

from .args import test_parser
from .inference import run_inference
from .test import load_model, test_input_size
from .video import annotate_stream, open_input


def demo_parser() -> argparse.ArgumentParser:
    parser = test_parser()
    parser.description = "Draw a trained detector's detections on the images of a folder, a video or a camera"
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--image_dir", help="folder of images to run the detector on")
    source.add_argument("--video", help="a video file: writes <output_dir>/<name>_dets.mp4 and reports frames/s")
    source.add_argument("--webcam", type=int, help="camera N (/dev/videoN): writes <output_dir>/webcam_N.mp4")
    parser.add_argument("--max_frames", type=int, default=None, help="stop a video or camera after this many frames")
    parser.set_defaults(output_dir="output/demo", score_thr=0.3)
    return parser


def main(args) -> list[Path]:
    if args.cuda and not torch.cuda.is_available():
        sys.exit("--cuda given but no GPU is visible")
    device = torch.device("cuda" if args.cuda else "cpu")
    model, class_names, train_args, path = load_model(args, device)
    transforms = net_spec(args.net).recipe.test_transforms(test_input_size(args, train_args))
    if args.image_dir is None:
        return [_annotate_video(args, model, transforms, class_names, device)]
    images = ImageFolder(args.image_dir, class_names, transforms=transforms)
    detections, images_per_s = run_inference(
        model, images, device, args.bs, args.nw, args.max_per_image, args.score_thr
    )
    out_dir = Path(args.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for i, det in enumerate(detections):
        picture = draw_detections(
            open_rgb(images.image_path(i)),
            det["boxes"],
            det["labels"],
            det["scores"],
            class_names,
            score_threshold=args.score_thr,
        )
        written.append(save_image(picture, out_dir / f"{Path(images.image_path(i)).stem}.jpg"))
        print(f"{images.image_path(i)}: {len(det['scores'])} detections → {written[-1]}")
    print(f"dets: {len(written)} pictures in {out_dir} ({images_per_s:.2f} images/s)")
    return written


def _annotate_video(args, model, transforms, class_names, device) -> Path:
    name = f"{Path(args.video).stem}_dets.mp4" if args.video is not None else f"webcam_{args.webcam}.mp4"
    try:
        source = open_input(args.video, args.webcam)
        report = annotate_stream(
            model,
            source,
            Path(args.output_dir) / name,
            transforms,
            class_names,
            device,
            batch_size=args.bs,
            score_thr=args.score_thr,
            max_per_image=args.max_per_image,
            max_frames=args.max_frames,
        )
    except (FileNotFoundError, RuntimeError) as exc:
        sys.exit(f"dets: {exc}")
    print(
        f"dets: {report['frames']} frames in {report['seconds']:.1f} s ({report['frames_per_s']:.2f} frames/s, "
        f"decoding to encoding) → {report['output']}"
    )
    return Path(report["output"])


def cli(argv=None) -> None:
    main(demo_parser().parse_args(argv))
