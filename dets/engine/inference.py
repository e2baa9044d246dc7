"""Run a detector over a dataset and return detections in original-image pixels."""

import time
from functools import partial

import torch
from torch.utils.data import DataLoader

from dets.data import boxes_to_original, collate


@torch.no_grad()
def run_inference(
    model,
    dataset,
    device: torch.device,
    batch_size: int = 1,
    num_workers: int = 0,
    max_per_image: int = 100,
    score_thr: float = 0.01,
    progress=None,
) -> tuple[list[dict], float]:
    """Detections for every image of `dataset`, in dataset order.

    Returns (detections, images per second): detections[i] holds 'boxes' [D, 4] (xyxy, pixels
    of the original image i), 'scores' [D] and 'labels' [D] (0-based), all on the CPU. The
    rate counts the model and decoding only, not image loading. Batches are padded to the
    model's ``size_divisor``.
    """
    model.eval()
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=partial(collate, size_divisor=model.size_divisor),
    )
    detections: list[dict] = []
    model_seconds = 0.0
    for images, _, targets in loader:
        images = images.to(device)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        results = model.predict(images, max_per_image=max_per_image, score_thr=score_thr)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        model_seconds += time.perf_counter() - start
        for result, target in zip(results, targets, strict=True):
            detections.append(
                {
                    "boxes": boxes_to_original(result["boxes"].cpu(), target),
                    "scores": result["scores"].cpu(),
                    "labels": result["labels"].cpu(),
                }
            )
        if progress is not None:
            progress.update(len(targets))
    return detections, len(detections) / model_seconds if model_seconds > 0 else float("nan")
