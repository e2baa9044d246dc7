"""Draw a trained detector's detections on every image of a folder, e.g.

    python demo.py --net ttfnet_r18 --dataset shapes --checksession 1 --checkepoch 12 --checkpoint 62 \
        --image_dir data/shapes/JPEGImages --output_dir output/demo
"""

from dets.engine.demo import cli

if __name__ == "__main__":
    cli()
