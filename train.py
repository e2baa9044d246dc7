"""Train a detector with faster-rcnn.pytorch-style flags, e.g.

    python trainval_net.py --dataset voc:/path/to/VOC --net ttfnet_r18 --bs 8 --epochs 24 --s 1
    python trainval_net.py --dataset shapes --net ttfnet_r18 --r --checksession 1 --checkepoch 3 --checkpoint 50

trainval_net.py and train.py are the same program; `--help` lists every flag.
"""

from dets.engine.train import cli

if __name__ == "__main__":
    cli()
