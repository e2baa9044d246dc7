"""Evaluate a trained detector on a dataset's test split, e.g.

    python test_net.py --dataset shapes --net ttfnet_r18 --checksession 1 --checkepoch 12 --checkpoint 50 --vis
    python test_net.py --dataset coco:IMAGES:ANN.json --net ttfnet_r18 --weights models/ttfnet_r18_1_12_50.pth

Prints the per-class AP table and headline numbers, writes COCO-style detections (and
pictures with --vis) under --output_dir, and reports images per second.
"""

from dets.engine.test import cli

if __name__ == "__main__":
    cli()
