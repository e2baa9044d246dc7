"""Export entry point behind export_onnx.py."""

import sys
from pathlib import Path

import torch

from dets.export import export_onnx

from .args import test_parser
from .test import load_model, test_input_size


def export_parser():
    parser = test_parser()
    parser.description = "Export a trained detector (network and post-processing) to ONNX"
    parser.add_argument("--output", default=None, help="the .onnx file (default: next to the checkpoint)")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset")
    return parser


def main(args) -> Path:
    args.cuda = False  # exported on the CPU; the graph runs anywhere
    model, class_names, train_args, path = load_model(args, torch.device("cpu"))
    size = test_input_size(args, train_args)
    output = Path(args.output) if args.output else Path(path).with_suffix(".onnx")
    try:
        written = export_onnx(model, output, (size, size), opset=args.opset, max_per_image=args.max_per_image)
    except NotImplementedError as exc:
        sys.exit(f"dets: cannot export {args.net}: {exc}")
    print(f"dets: wrote {written}: images [B, 3, {size}, {size}] → boxes, scores, labels; classes {class_names}")
    return written


def cli(argv=None) -> None:
    main(export_parser().parse_args(argv))
