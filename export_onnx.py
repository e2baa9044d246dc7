"""Export a trained detector to ONNX, network and post-processing, e.g.

    python export_onnx.py --net ttfnet_r18 --weights models/ttfnet_r18/shapes/ttfnet_r18_1_24_62.pth
    python export_onnx.py --net ttfnet_r18 --checksession 1 --checkepoch 24 --checkpoint 62 --output r18.onnx

The graph takes normalised images [B, 3, S, S] (S: --input_size, default the checkpoint's) and
gives boxes [B, K, 4] (input pixels), scores [B, K] and labels [B, K], best first (where the graph
holds NMS, slots past an image's detections have score 0). README shows how to run it with
onnxruntime alone, and what each family's graph holds.
"""

from dets.engine.export import cli

if __name__ == "__main__":
    cli()
