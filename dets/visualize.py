"""Drawing detections on images with Pillow (no matplotlib or OpenCV).

Boxes are (x1, y1, x2, y2) in the pixels of the image drawn on. Each class gets its own
colour (``class_color``), for any number of classes; labels read "name 0.87".
"""

import colorsys
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

# Successive multiples of the golden ratio's fractional part spread over [0, 1) as evenly
# as any sequence can, so nearby labels get far-apart hues however many classes there are.
_GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0


def class_color(label: int) -> tuple[int, int, int]:
    """RGB colour [0, 255] of a class: hue from the golden-ratio sequence, two saturations."""
    hue = (label * _GOLDEN) % 1.0
    # Alternate two saturations so that hues that do come close (many classes) still differ.
    saturation = 0.85 if label % 2 == 0 else 0.6
    r, g, b = colorsys.hsv_to_rgb(hue, saturation, 0.95)
    return round(255 * r), round(255 * g), round(255 * b)


def _array(value, dtype) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    return np.asarray(value, dtype=dtype)


def _to_pil(image) -> Image.Image:
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    array = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"image must be a PIL image or a uint8 array [H, W, 3], got {array.dtype} {array.shape}")
    return Image.fromarray(array)


def draw_detections(
    image,
    boxes,
    labels,
    scores=None,
    class_names: Sequence[str] | None = None,
    score_threshold: float = 0.5,
    line_width: int | None = None,
    font_size: int | None = None,
) -> Image.Image:
    """A copy of ``image`` with the detections scoring >= ``score_threshold`` drawn on it.

    Args:
        image: PIL image, or uint8 [H, W, 3] RGB array (numpy or torch).
        boxes: float [D, 4] xyxy pixels of this image.
        labels: int [D] 0-based class indices.
        scores: float [D], or None to draw every box without a score.
        class_names: names indexed by label (the label number is printed without them).
        score_threshold: lower scores are not drawn.
        line_width, font_size: in pixels; by default they grow with the image size.

    Returns:
        RGB PIL image of the input's size. Higher-scoring boxes are drawn last (on top).
    """
    canvas = _to_pil(image).copy()
    boxes = _array(boxes, np.float64).reshape(-1, 4)
    labels = _array(labels, np.int64).reshape(-1)
    shown = np.ones(len(boxes)) if scores is None else _array(scores, np.float64).reshape(-1)
    if not len(boxes) == len(labels) == len(shown):
        raise ValueError(f"got {len(boxes)} boxes, {len(labels)} labels and {len(shown)} scores")
    side = min(canvas.size)
    line_width = line_width or max(1, round(side / 200))
    font = ImageFont.load_default(size=font_size or max(10, round(side / 40)))
    draw = ImageDraw.Draw(canvas)
    for i in np.argsort(shown, kind="stable"):
        if shown[i] < score_threshold or not np.isfinite(boxes[i]).all():
            continue
        x1, x2 = sorted(boxes[i, 0::2])
        y1, y2 = sorted(boxes[i, 1::2])
        label = int(labels[i])
        color = class_color(label)
        draw.rectangle((x1, y1, x2, y2), outline=color, width=line_width)
        name = class_names[label] if class_names is not None else str(label)
        text = name if scores is None else f"{name} {shown[i]:.2f}"
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        tw, th = right - left + 2 * line_width, bottom - top + 2 * line_width
        # The label sits above the box, or just inside its top edge when that would leave the
        # image, and moves left rather than run off the right edge.
        ty = y1 - th if y1 - th >= 0 else y1
        tx = max(0, min(x1, canvas.width - tw))
        draw.rectangle((tx, ty, tx + tw, ty + th), fill=color)
        # Dark text on light colours, white on dark ones (ITU-R BT.601 luma).
        luma = 0.299 * color[0] + 0.587 * color[1] + 0.114 * color[2]
        draw.text(
            (x1 + line_width - left, ty + line_width - top), text, fill="black" if luma > 128 else "white", font=font
        )
    return canvas


def save_image(image: Image.Image, path: str | Path, quality: int = 95) -> Path:
    """Save ``image``; the format follows the suffix (.jpg/.jpeg, .png, ...). Returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() in (".jpg", ".jpeg"):
        image.convert("RGB").save(path, quality=quality)
    else:
        image.save(path)
    return path
