"""``shapes``: a generated detection dataset small enough to learn on a CPU in minutes.

Each image is a textured background (a colour gradient, low-frequency blotches, faint stripes and
pixel noise) with 1 to ``max_objects`` solid, brightly coloured shapes of four classes (circle,
rectangle, triangle, star), sides 12-40 % of the image, fully inside it. A shape may partly hide
an earlier one, but never more than 40 % of it; each box is the extent of the shape's visible
pixels. The result is written in VOC layout (JPEG + XML + ImageSets/Main/{trainval,test}.txt)
and read with ``VOCDetection(root, split, class_names=SHAPES_CLASSES)``.

Every image is drawn from its own generator seeded by (seed, split, index), so the files are a
function of the arguments alone.
"""

import json
import os
import shutil
import uuid
import xml.etree.ElementTree as ET

import numpy as np
from PIL import Image, ImageDraw

SHAPES_CLASSES = ("circle", "rectangle", "triangle", "star")
SPLITS = ("trainval", "test")
_MARKER = "shapes.json"  # written last: its presence means the dataset is complete
_FORMAT = 1  # bump when the drawing changes, so old folders are not taken as current


def generate_shapes(
    root: str, num_train: int = 500, num_test: int = 100, image_size: int = 256, seed: int = 0, max_objects: int = 6
) -> str:
    """Write the dataset to ``root`` unless a complete one with these arguments is there already.

    The files are written to a temporary sibling folder that is renamed to ``root`` only when
    complete, so an interrupted run never leaves a folder that looks finished (a killed process
    may leave a ``.<name>.incomplete-*`` sibling behind; it is safe to delete).

    Returns:
        root.

    Raises:
        FileExistsError: ``root`` exists but is not a complete shapes dataset.
        ValueError: ``root`` holds a shapes dataset generated with other arguments.
    """
    params = {
        "format": _FORMAT,
        "num_train": num_train,
        "num_test": num_test,
        "image_size": image_size,
        "seed": seed,
        "max_objects": max_objects,
        "classes": list(SHAPES_CLASSES),
    }
    if os.path.exists(root):
        _check_existing(root, params)
        return root
    parent = os.path.dirname(os.path.abspath(root))
    os.makedirs(parent, exist_ok=True)
    tmp = os.path.join(parent, f".{os.path.basename(os.path.abspath(root))}.incomplete-{uuid.uuid4().hex[:8]}")
    try:
        _write(tmp, params)
        try:
            os.rename(tmp, root)
        except OSError:
            # Another process finished first (e.g. another rank of the same job): use its copy.
            if not os.path.exists(root):
                raise
            _check_existing(root, params)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root


def _check_existing(root: str, params: dict) -> None:
    marker = os.path.join(root, _MARKER)
    if not os.path.isfile(marker):
        raise FileExistsError(f"{root} exists but is not a complete shapes dataset (no {_MARKER}); remove it")
    with open(marker) as f:
        found = json.load(f)
    if found != params:
        raise ValueError(
            f"{root} holds a shapes dataset made with {found}, not {params}; remove it or use another root"
        )


def _write(folder: str, params: dict) -> None:
    for sub in ("Annotations", "JPEGImages", os.path.join("ImageSets", "Main")):
        os.makedirs(os.path.join(folder, sub))
    counts = {"trainval": params["num_train"], "test": params["num_test"]}
    start = 0
    for split_index, split in enumerate(SPLITS):
        ids = [f"{start + i:06d}" for i in range(counts[split])]
        start += counts[split]
        for i, image_id in enumerate(ids):
            rng = np.random.default_rng([params["seed"], split_index, i])
            image, objects = draw_image(rng, params["image_size"], params["max_objects"])
            Image.fromarray(image).save(os.path.join(folder, "JPEGImages", f"{image_id}.jpg"), quality=90)
            _write_xml(os.path.join(folder, "Annotations", f"{image_id}.xml"), image_id, image.shape, objects)
        with open(os.path.join(folder, "ImageSets", "Main", f"{split}.txt"), "w") as f:
            f.writelines(f"{image_id}\n" for image_id in ids)
    with open(os.path.join(folder, _MARKER), "w") as f:
        json.dump(params, f, indent=1)


def draw_image(rng: np.random.Generator, size: int, max_objects: int):
    """One image and its objects.

    Returns:
        image: uint8 [size, size, 3] RGB.
        objects: list of (class name, (x0, y0, x1, y1)) with inclusive 0-based pixel bounds of
            the visible part of the shape.
    """
    image = _background(rng, size)
    owner = np.full((size, size), -1, dtype=np.int64)  # index of the shape seen at each pixel
    areas, visible, names = [], [], []
    wanted = int(rng.integers(1, max_objects + 1))
    for _ in range(20 * wanted):
        if len(names) == wanted:
            break
        name = SHAPES_CLASSES[int(rng.integers(len(SHAPES_CLASSES)))]
        mask = _shape_mask(rng, name, size)
        # Reject a shape that would leave less than 60 % of an earlier one in sight.
        hidden = np.bincount(owner[mask & (owner >= 0)], minlength=len(names))
        if any(visible[k] - hidden[k] < 0.6 * areas[k] for k in range(len(names))):
            continue
        visible = [v - h for v, h in zip(visible, hidden, strict=True)]
        owner[mask] = len(names)
        areas.append(int(mask.sum()))
        visible.append(areas[-1])
        names.append(name)
        image[mask] = _vivid_colour(rng)
    image += 4 * rng.standard_normal(image.shape, dtype=np.float32)
    objects = []
    for k, name in enumerate(names):
        ys, xs = np.nonzero(owner == k)
        objects.append((name, (int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max()))))
    return np.clip(image, 0, 255).round().astype(np.uint8), objects


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """float32 [size, size, 3] in 30..220, muted so the shapes stand out."""
    # float32 and a row x a column of coordinates (broadcast): this is most of the drawing time.
    x = np.arange(size, dtype=np.float32)[None, :] / size
    y = np.arange(size, dtype=np.float32)[:, None] / size
    angle = rng.uniform(0, 2 * np.pi)
    ramp = (x * np.cos(angle) + y * np.sin(angle))[..., None]
    ramp = (ramp - ramp.min()) / (ramp.max() - ramp.min())
    start, end = rng.uniform(50, 200, (2, 3)).astype(np.float32)
    image = start + (end - start) * ramp
    # Low-frequency blotches: a coarse random grid, smoothly upsampled.
    grid = rng.uniform(0, 255, (6, 6, 3)).astype(np.uint8)
    blotches = np.asarray(Image.fromarray(grid).resize((size, size), Image.BICUBIC), dtype=np.float32)
    image += 0.25 * (blotches - 128)
    stripe_angle = rng.uniform(0, np.pi)
    period = rng.uniform(0.03, 0.15)
    stripes = np.sin(2 * np.pi * (x * np.cos(stripe_angle) + y * np.sin(stripe_angle)) / period)
    image += np.float32(rng.uniform(0, 15)) * stripes[..., None]
    return np.clip(image, 30, 220)


def _vivid_colour(rng: np.random.Generator) -> np.ndarray:
    """An RGB colour of random hue, high saturation and value."""
    hue = rng.uniform(0, 6)
    saturation, value = rng.uniform(0.6, 1.0), rng.uniform(0.75, 1.0)
    k = (np.array([5, 3, 1]) + hue) % 6
    return 255 * (value - value * saturation * np.clip(np.minimum(k, 4 - k), 0, 1))


def _shape_mask(rng: np.random.Generator, name: str, size: int) -> np.ndarray:
    """bool [size, size]: a shape of the class, inside the image."""
    side = rng.uniform(0.12, 0.4) * size
    if name == "rectangle":
        aspect = np.exp(rng.uniform(np.log(0.5), np.log(2)))
        half = np.array([side * np.sqrt(aspect), side / np.sqrt(aspect)]).clip(max=0.45 * size) / 2
    else:
        half = np.array([side, side]) / 2
    centre = rng.uniform(half, size - half)
    canvas = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(canvas)
    if name == "circle":
        draw.ellipse([*(centre - half), *(centre + half)], fill=255)
    elif name == "rectangle":
        draw.rectangle([*(centre - half), *(centre + half)], fill=255)
    else:
        points = 3 if name == "triangle" else 5
        angles = rng.uniform(0, 2 * np.pi) + np.arange(2 * points) * np.pi / points
        # A star alternates outer and inner vertices; a triangle uses the outer ones only.
        radii = np.where(np.arange(2 * points) % 2 == 0, 1.0, 0.45) * half[0]
        vertices = centre + np.stack([np.cos(angles), np.sin(angles)], axis=1) * radii[:, None]
        if name == "triangle":
            vertices = vertices[::2]
        draw.polygon([tuple(v) for v in vertices], fill=255)
    return np.asarray(canvas) > 0


def _write_xml(path: str, image_id: str, shape: tuple, objects) -> None:
    root = ET.Element("annotation")
    ET.SubElement(root, "filename").text = f"{image_id}.jpg"
    size = ET.SubElement(root, "size")
    for tag, value in zip(("height", "width", "depth"), shape, strict=True):
        ET.SubElement(size, tag).text = str(value)
    for name, bounds in objects:
        obj = ET.SubElement(root, "object")
        ET.SubElement(obj, "name").text = name
        ET.SubElement(obj, "difficult").text = "0"
        bndbox = ET.SubElement(obj, "bndbox")
        # VOC is 1-based and inclusive.
        for tag, value in zip(("xmin", "ymin", "xmax", "ymax"), bounds, strict=True):
            ET.SubElement(bndbox, tag).text = str(value + 1)
    ET.indent(root)
    ET.ElementTree(root).write(path)
