"""Evaluation entry point behind test_net.py."""

import json
import sys
from pathlib import Path

import numpy as np
import torch

from dets.data import build_dataset, open_rgb
from dets.evaluation import (
    coco_evaluate,
    detections_to_coco_json,
    format_coco_report,
    format_voc_report,
    voc_evaluate,
    write_coco_json,
)
from dets.models import net_spec, prepare_for_inference
from dets.plots import plot_pr_curves
from dets.visualize import draw_detections, save_image

from .args import test_parser
from .checkpoint import MODEL_FIELDS, CheckpointError, checkpoint_path, dataset_dirname, load_checkpoint
from .inference import run_inference
from .model_config import model_for_testing
from .progress import Progress

VIS_SCORE = 0.3


def load_model(args, device: torch.device):
    """The checkpoint's model on `device`, its class names and its training arguments."""
    if args.weights:
        path = Path(args.weights)
    else:
        path = checkpoint_path(
            args.load_dir, args.net, args.dataset, args.checksession, args.checkepoch, args.checkpoint
        )
    try:
        state = load_checkpoint(path, required=MODEL_FIELDS)
    except (CheckpointError, FileNotFoundError) as exc:
        sys.exit(f"dets: {exc}")
    model = model_for_testing(args, state, path)
    model.load_state_dict(state["model"])
    model = prepare_for_inference(model, device, compile=args.compile)
    return model, state["class_names"], state.get("args", {}), path


def test_input_size(args, train_args: dict) -> int:
    """--input_size, else the checkpoint's training input size, else the recipe's."""
    return args.input_size or train_args.get("input_size") or net_spec(args.net).recipe.input_size


def evaluate(
    model, dataset, device, batch_size: int, num_workers: int, max_per_image: int, score_thr: float, json_path: Path
) -> tuple[list[dict], dict]:
    """Detections of `model` on every image of `dataset`, written as COCO-style JSON to
    `json_path`, and the evaluation: VOC AP@0.5 both ways, COCO's numbers for COCO data, the
    images/s of model + decoding. Prints the AP tables."""
    progress = Progress(len(dataset), "test", interval=max(1, len(dataset) // 10))
    detections, images_per_s = run_inference(
        model, dataset, device, batch_size, num_workers, max_per_image, score_thr, progress
    )
    progress.close()
    class_names = list(dataset.class_names)
    ground_truths = [dataset.annotations(i) for i in range(len(dataset))]
    image_ids = [dataset.image_id(i) for i in range(len(dataset))]
    # VOC-layout data has no category ids: number the classes from 1, as COCO does.
    label_to_category = getattr(dataset, "category_ids", None) or list(range(1, len(class_names) + 1))
    write_coco_json(detections_to_coco_json(detections, image_ids, label_to_category), json_path)
    results = {"images_per_s": images_per_s, "detections_json": str(json_path)}
    if getattr(dataset, "coco", None) is not None:
        results["coco"] = coco_evaluate(detections, dataset.coco, image_ids, label_to_category)
    # dets.data already turned VOC's 1-based inclusive pixels into 0-based xyxy, so no "+1" here.
    results["voc"] = voc_evaluate(detections, ground_truths, class_names, legacy_plus_one=False)
    print(format_voc_report(results["voc"]))
    if "coco" in results:
        print(format_coco_report(results["coco"]))
    print(f"dets: {images_per_s:.2f} images/s (model + decoding), detections in {json_path}", flush=True)
    return detections, results


def main(args) -> dict:
    if args.cuda and not torch.cuda.is_available():
        sys.exit("--cuda given but no GPU is visible")
    device = torch.device("cuda" if args.cuda else "cpu")
    model, class_names, train_args, path = load_model(args, device)
    transforms = net_spec(args.net).recipe.test_transforms(test_input_size(args, train_args))
    dataset = build_dataset(
        args.dataset, args.split or "test", data_dir=args.data_dir, transforms=transforms, classes_file=args.classes
    )
    if list(dataset.class_names) != list(class_names):
        sys.exit(f"{path} was trained on {class_names}, but {args.dataset} has {list(dataset.class_names)}")
    print(f"dets: evaluating {path} on {args.dataset} ({len(dataset)} images) on {device}")

    out_dir = Path(args.output_dir) / args.net / dataset_dirname(args.dataset)
    out_dir.mkdir(parents=True, exist_ok=True)
    tag = path.stem
    detections, results = evaluate(
        model, dataset, device, args.bs, args.nw, args.max_per_image, args.score_thr, out_dir / f"detections_{tag}.json"
    )
    results["pr_curves"] = str(plot_pr_curves(results["voc"], out_dir / f"pr_{tag}.png"))
    print(f"dets: precision-recall curves in {results['pr_curves']}")

    if args.vis:
        vis_dir = out_dir / f"vis_{tag}"
        vis_dir.mkdir(exist_ok=True)
        for i, det in enumerate(detections):
            picture = draw_detections(
                open_rgb(dataset.image_path(i)),
                det["boxes"],
                det["labels"],
                det["scores"],
                class_names,
                score_threshold=VIS_SCORE,
            )
            save_image(picture, vis_dir / f"{Path(dataset.image_path(i)).stem}.jpg")
        print(f"dets: pictures of the detections in {vis_dir}")
        results["vis_dir"] = str(vis_dir)
    (out_dir / f"results_{tag}.json").write_text(json.dumps(_jsonable(results), indent=2))
    return results


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (torch.Tensor, np.ndarray)):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value != value:
        return None
    return value


def cli(argv=None) -> None:
    main(test_parser().parse_args(argv))
