"""dets.data: readers on real data (BCCD, coco128), the generated shapes, transforms, batching,
dataset names and the errors for bad files."""

import json
import os
import re
import warnings
from pathlib import Path

import pytest
import torch
from PIL import Image

from dets.data import (
    LABELS_FILE,
    SHAPES_CLASSES,
    VOC_CLASSES,
    COCODetection,
    Sample,
    VOCDetection,
    boxes_to_original,
    build_dataset,
    class_box_counts,
    collate,
    generate_shapes,
    open_rgb,
    read_class_names,
    shapes,
    ttfnet_test,
    ttfnet_train,
    two_stage_test,
    two_stage_train,
)
from dets.data import datasets as datasets_module
from dets.data.image_folder import ImageFolder
from dets.data.transforms import (
    Expand,
    MinIoURandomCrop,
    Normalize,
    PhotometricDistortion,
    RandomHorizontalFlip,
    Resize,
    hsv_to_rgb,
    rgb_to_hsv,
)

# The shared data sits beside the checkout (../shared/data), for CI and developers alike.
REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_ROOT = next((p for p in (REPO_ROOT.parent / "shared" / "data",) if p.is_dir()), None)
BCCD = DATA_ROOT / "bccd" / "BCCD" if DATA_ROOT else None
COCO128 = DATA_ROOT / "coco128" if DATA_ROOT else None
requires_data = pytest.mark.skipif(
    DATA_ROOT is None, reason="shared data not found at ../shared/data (beside the checkout)"
)


# ---------------------------------------------------------------------------------------------
# Real data


@pytest.fixture(scope="module")
def bccd():
    with pytest.warns(UserWarning, match=r"dropped 2 boxes with zero or negative size"):
        trainval = VOCDetection(str(BCCD), "trainval")
    test = VOCDetection(str(BCCD), "test", class_names=trainval.class_names)
    return trainval, test


@requires_data
def test_bccd_counts_classes_and_boxes(bccd):
    trainval, test = bccd
    assert (len(trainval), len(test)) == (292, 72)
    assert trainval.class_names == ["Platelets", "RBC", "WBC"]
    per_class = torch.zeros(3, dtype=torch.int64)
    for ds in (trainval, test):
        for i in range(len(ds)):
            ann = ds.annotations(i)
            assert ann["size"] == (480, 640)
            boxes = ann["boxes"]
            assert boxes.dtype == torch.float32 and ann["labels"].dtype == torch.int64
            assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= 640).all() and (boxes[:, 3] <= 480).all()
            assert (boxes[:, 2:] > boxes[:, :2]).all()
            assert not ann["difficult"].any()
            per_class += torch.bincount(ann["labels"], minlength=3)
    # 4888 boxes upstream, less the two zero-size RBC boxes.
    assert per_class.tolist() == [361, 4155 - 2, 372]


@requires_data
def test_bccd_coordinates_and_item(bccd):
    trainval, test = bccd
    index = (trainval.ids + test.ids).index("BloodImage_00000")
    ds = trainval if index < len(trainval) else test
    i = ds.ids.index("BloodImage_00000")
    # The first object of BloodImage_00000.xml: WBC, xmin 260 ymin 177 xmax 491 ymax 376 (1-based).
    ann = ds.annotations(i)
    assert ann["boxes"][0].tolist() == [259, 176, 491, 376]
    assert ds.class_names[ann["labels"][0]] == "WBC"
    ds.transforms = two_stage_test()
    try:
        image, target = ds[i]
    finally:
        ds.transforms = None
    assert image.shape == (3, 600, 800) and target["size"] == (600, 800) and target["orig_size"] == (480, 640)
    assert target["scale"] == (1.25, 1.25) and not target["flipped"]
    torch.testing.assert_close(target["boxes"], ann["boxes"] * 1.25)
    torch.testing.assert_close(boxes_to_original(target["boxes"], target), ann["boxes"])


@requires_data
def test_coco128():
    ds = COCODetection(str(COCO128 / "train2017"), str(COCO128 / "annotations" / "instances_train2017.json"))
    assert len(ds) == 128 and len(ds.class_names) == 80
    assert ds.class_names[0] == "person" and ds.category_ids[0] == 1 and ds.category_ids[-1] == 90
    crowd = boxes = 0
    empty = []
    for i in range(len(ds)):
        ann = ds.annotations(i)
        h, w = ann["size"]
        assert (ann["boxes"][:, :2] >= 0).all() and (ann["boxes"][:, 2] <= w).all() and (ann["boxes"][:, 3] <= h).all()
        assert (ann["labels"] >= 0).all() and (ann["labels"] < 80).all()
        crowd += int(ann["iscrowd"].sum())
        boxes += len(ann["boxes"])
        if len(ann["boxes"]) == 0:
            empty.append(ds.image_id(i))
    assert (boxes - crowd, crowd) == (929, 10)
    assert empty == [250, 508]
    # Image 9's first box: bowl (category 51) at xywh [1.08, 187.69, 611.59, 285.84].
    i = [ds.image_id(k) for k in range(len(ds))].index(9)
    ann = ds.annotations(i)
    torch.testing.assert_close(ann["boxes"][0], torch.tensor([1.08, 187.69, 1.08 + 611.59, 187.69 + 285.84]))
    assert ds.class_names[ann["labels"][0]] == "bowl" and ds.category_ids[ann["labels"][0]] == 51
    # Crowd boxes stay out of the training target; a grayscale image loads as RGB.
    i = [ds.image_id(k) for k in range(len(ds))].index(315)
    image, target = ds[i]
    ann = ds.annotations(i)
    assert ann["iscrowd"].sum() == 2 and len(target["boxes"]) == len(ann["boxes"]) - 2
    gray = [k for k in range(len(ds)) if ds.image_path(k).endswith("000000000086.jpg")][0]
    assert ds[gray][0].shape[0] == 3


# ---------------------------------------------------------------------------------------------
# The generated shapes dataset


def _tree_bytes(root: Path) -> dict:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_shapes_deterministic_and_readable(tmp_path):
    a = generate_shapes(str(tmp_path / "a"), num_train=6, num_test=3, image_size=64, seed=3)
    b = generate_shapes(str(tmp_path / "b"), num_train=6, num_test=3, image_size=64, seed=3)
    assert _tree_bytes(Path(a)) == _tree_bytes(Path(b))
    c = generate_shapes(str(tmp_path / "c"), num_train=6, num_test=3, image_size=64, seed=4)
    assert _tree_bytes(Path(a)) != _tree_bytes(Path(c))
    train = VOCDetection(a, "trainval", SHAPES_CLASSES)
    test = VOCDetection(a, "test", SHAPES_CLASSES)
    assert (len(train), len(test)) == (6, 3) and set(train.ids).isdisjoint(test.ids)
    for ds in (train, test):
        for i in range(len(ds)):
            ann = ds.annotations(i)
            assert 1 <= len(ann["boxes"]) <= 6 and ann["size"] == (64, 64)
            assert (ann["boxes"] >= 0).all() and (ann["boxes"] <= 64).all()
            assert (ann["boxes"][:, 2:] > ann["boxes"][:, :2]).all()
    image, target = train[0]
    assert image.shape == (3, 64, 64) and len(target["labels"]) == len(train.annotations(0)["labels"])


def test_shapes_idempotent_and_atomic(tmp_path, monkeypatch):
    root = tmp_path / "shapes"
    generate_shapes(str(root), num_train=2, num_test=1, image_size=32)
    first = _tree_bytes(root)
    stamps = {p: p.stat().st_mtime_ns for p in root.rglob("*")}
    assert generate_shapes(str(root), num_train=2, num_test=1, image_size=32) == str(root)
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*")} == stamps and _tree_bytes(root) == first
    with pytest.raises(ValueError, match="made with"):
        generate_shapes(str(root), num_train=3, num_test=1, image_size=32)
    (tmp_path / "junk").mkdir()
    with pytest.raises(FileExistsError, match="junk"):
        generate_shapes(str(tmp_path / "junk"))

    # A run that dies half-way leaves neither the root nor its temporary folder.
    def dies(rng, size, max_objects):
        raise KeyboardInterrupt

    monkeypatch.setattr(shapes, "draw_image", dies)
    with pytest.raises(KeyboardInterrupt):
        generate_shapes(str(tmp_path / "interrupted"), num_train=2, num_test=1, image_size=32)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["junk", "shapes"]


# ---------------------------------------------------------------------------------------------
# Transforms


def _sample(gen, height=48, width=64, count=5):
    """A random image with ``count`` boxes whose labels are their indices (to follow them)."""
    image = torch.rand(3, height, width, generator=gen) * 255
    xy = torch.rand(count, 2, generator=gen) * torch.tensor([width - 8, height - 8])
    wh = 4 + torch.rand(count, 2, generator=gen) * 20
    boxes = torch.cat([xy, (xy + wh).minimum(torch.tensor([width, height]))], dim=1)
    return Sample(image, boxes, torch.arange(count))


def _assert_inside(sample):
    h, w = sample.height, sample.width
    assert sample.boxes.dtype == torch.float32 and sample.labels.dtype == torch.int64
    assert len(sample.boxes) == len(sample.labels)
    assert (sample.boxes[:, :2] >= 0).all() and (sample.boxes[:, 2] <= w).all() and (sample.boxes[:, 3] <= h).all()
    assert (sample.boxes[:, 2:] > sample.boxes[:, :2]).all()


def test_flip(gen):
    sample = Sample(torch.zeros(3, 4, 10), [[1, 2, 4, 3]], [7])
    flipped = RandomHorizontalFlip(p=1.0)(sample)
    assert flipped.boxes.tolist() == [[6, 2, 9, 3]] and flipped.flipped
    sample = _sample(gen)
    twice = RandomHorizontalFlip(p=1.0)(RandomHorizontalFlip(p=1.0)(sample))
    assert torch.equal(twice.image, sample.image)
    torch.testing.assert_close(twice.boxes, sample.boxes)
    assert not twice.flipped and twice.offset == (0.0, 0.0)
    assert RandomHorizontalFlip(p=0.0)(sample) is sample


def test_resize_hand_computed():
    sample = Sample(torch.zeros(3, 40, 60), [[6, 4, 30, 40]], [0])
    # Shorter side 20 would make the longer 30 > 25, so the longer becomes 25: 40x60 -> 17x25.
    out = Resize(min_size=20, max_size=25)(sample)
    assert out.image.shape == (3, 17, 25)
    assert out.scale == (17 / 40, 25 / 60)
    torch.testing.assert_close(out.boxes, torch.tensor([[6 * 25 / 60, 4 * 17 / 40, 30 * 25 / 60, 40 * 17 / 40]]))
    out = Resize(min_size=20)(sample)
    assert out.image.shape == (3, 20, 30) and out.boxes.tolist() == [[3, 2, 15, 20]]
    out = Resize((32, 64))(sample)
    assert out.image.shape == (3, 32, 64) and out.scale == (0.8, 64 / 60)
    torch.testing.assert_close(out.boxes, torch.tensor([[6.4, 3.2, 32, 32]]))
    # The presets' sizes: TTFNet ignores the aspect ratio, the two-stage ones keep it.
    assert ttfnet_test((64, 96))(sample).image.shape == (3, 64, 96)
    resized = two_stage_train(min_size=20, max_size=100)(sample, torch.Generator().manual_seed(0))
    assert resized.image.shape == (3, 20, 30)
    # A constant image stays constant.
    assert torch.allclose(Resize(13)(Sample(torch.full((3, 40, 60), 7.0), [], [])).image, torch.tensor(7.0))


def test_expand_moves_pixels_with_boxes(gen):
    sample = _sample(gen)
    out = Expand(ratio=(2, 3), p=1.0)(sample, gen)
    ty, tx = (int(v) for v in out.offset)
    assert out.height >= 2 * sample.height and out.width >= 2 * sample.width
    assert torch.equal(out.image[:, ty : ty + sample.height, tx : tx + sample.width], sample.image)
    torch.testing.assert_close(out.boxes, sample.boxes + torch.tensor([tx, ty, tx, ty], dtype=torch.float32))
    torch.testing.assert_close(out.image[:, 0, 0], torch.tensor([0.485, 0.456, 0.406]) * 255)


def test_min_iou_crop_keeps_boxes_inside(gen):
    crop = MinIoURandomCrop()
    cropped = 0
    for _ in range(40):
        sample = _sample(gen, count=int(torch.randint(1, 8, (), generator=gen)))
        out = crop(sample, gen)
        _assert_inside(out)
        cropped += out.image.shape != sample.image.shape
        # The image is a window of the input, and boxes moved with it.
        ty, tx = (int(-v) for v in out.offset)
        assert torch.equal(out.image, sample.image[:, ty : ty + out.height, tx : tx + out.width])
        kept = sample.boxes[out.labels] - torch.tensor([tx, ty, tx, ty], dtype=torch.float32)
        torch.testing.assert_close(out.boxes, kept.clamp(min=0).minimum(torch.tensor([out.width, out.height] * 2)))
    assert cropped > 10
    empty = Sample(torch.zeros(3, 8, 8), [], [])
    assert crop(empty, gen) is empty


def test_photometric_and_normalize(gen):
    rgb = torch.rand(3, 16, 16, generator=gen)
    torch.testing.assert_close(hsv_to_rgb(rgb_to_hsv(rgb)), rgb, atol=1e-5, rtol=0)
    hsv = rgb_to_hsv(torch.tensor([1.0, 0.0, 0.0]).view(3, 1, 1))  # pure red
    assert hsv.flatten().tolist() == [0.0, 1.0, 1.0]
    sample = _sample(gen)
    for _ in range(5):
        out = PhotometricDistortion()(sample, gen)
        assert torch.equal(out.boxes, sample.boxes) and 0 <= out.image.min() and out.image.max() <= 255
    mean = Sample(torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1).expand(3, 4, 4) * 255, [], [])
    assert Normalize()(mean).image.abs().max() < 1e-5


def test_two_stage_pipeline_with_ssd_augmentation(gen):
    pipeline = two_stage_train(64, 100, augment=True)
    for _ in range(10):
        sample = _sample(gen, count=4)
        seed = int(torch.randint(2**31, (), generator=gen))
        out = pipeline(sample, torch.Generator().manual_seed(seed))
        again = pipeline(sample, torch.Generator().manual_seed(seed))
        assert torch.equal(out.image, again.image) and torch.equal(out.boxes, again.boxes)
        assert min(out.image.shape[1:]) == 64 or max(out.image.shape[1:]) == 100
        _assert_inside(out)


def test_pipeline_deterministic_and_invertible(gen):
    pipeline = ttfnet_train(96, augment=True)
    seed = int(torch.randint(2**31, (), generator=gen))
    for _ in range(15):
        sample = _sample(gen, count=4)
        out = pipeline(sample, torch.Generator().manual_seed(seed))
        again = pipeline(sample, torch.Generator().manual_seed(seed))
        assert torch.equal(out.image, again.image) and torch.equal(out.boxes, again.boxes)
        assert out.image.shape == (3, 96, 96)
        _assert_inside(out)
        # Mapped back, each box lies within the box it came from (equal unless the crop cut it).
        target = {"scale": out.scale, "offset": out.offset, "flipped": out.flipped, "orig_size": (48, 64)}
        back = boxes_to_original(out.boxes, target)
        source = sample.boxes[out.labels]
        assert (back[:, :2] >= source[:, :2] - 1e-3).all() and (back[:, 2:] <= source[:, 2:] + 1e-3).all()
        seed += 1
    # PIL input gives the same as the equivalent tensor.
    array = (torch.rand(20, 30, 3, generator=gen) * 255).to(torch.uint8)
    from_pil = Sample(Image.fromarray(array.numpy()), [[1, 2, 3, 4]], [0])
    assert torch.equal(from_pil.image, array.permute(2, 0, 1).float())


# ---------------------------------------------------------------------------------------------
# Batching


def test_collate_pads_to_multiple_of_32(gen):
    a, b = torch.randn(3, 50, 70, generator=gen), torch.randn(3, 64, 33, generator=gen)
    targets = [
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64), "size": (50, 70)},
        {"boxes": torch.tensor([[1.0, 2.0, 3.0, 4.0]]), "labels": torch.tensor([2]), "size": (64, 33)},
    ]
    images, ground_truth, out_targets = collate([(a, targets[0]), (b, targets[1])])
    assert images.shape == (2, 3, 64, 96) and out_targets == targets
    assert torch.equal(images[0, :, :50, :70], a) and torch.equal(images[1, :, :64, :33], b)
    assert images[0, :, 50:].abs().sum() == 0 and images[0, :, :, 70:].abs().sum() == 0
    assert images[1, :, :, 33:].abs().sum() == 0
    assert collate([(torch.zeros(3, 64, 32), {})])[0].shape == (1, 3, 64, 32)
    # The ground truth, padded once: the empty image's slot is padding.
    assert ground_truth.boxes.shape == (2, 1, 4) and ground_truth.num_boxes.tolist() == [0, 1]
    assert ground_truth.labels.tolist() == [[0], [2]] and ground_truth.valid.tolist() == [[False], [True]]
    assert torch.equal(ground_truth.boxes[1, 0], targets[1]["boxes"][0])
    assert ground_truth.image_sizes.tolist() == [[50, 70], [64, 33]]


# ---------------------------------------------------------------------------------------------
# Small VOC/COCO folders made on the spot


def _make_voc(root: Path, images: dict, splits: dict) -> Path:
    """images: id -> list of (name, (xmin, ymin, xmax, ymax) 1-based); every image 20x30 (h x w)."""
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for image_id, objects in images.items():
        Image.new("RGB", (30, 20), (90, 120, 150)).save(root / "JPEGImages" / f"{image_id}.jpg")
        body = "".join(
            f"<object><name>{name}</name><difficult>{int(name == 'dog')}</difficult><bndbox><xmin>{b[0]}</xmin>"
            f"<ymin>{b[1]}</ymin><xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>"
            for name, b in objects
        )
        xml = f"<annotation><size><width>30</width><height>20</height></size>{body}</annotation>"
        (root / "Annotations" / f"{image_id}.xml").write_text(xml)
    for split, ids in splits.items():
        (root / "ImageSets" / "Main" / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids))
    return root


def _make_coco(root: Path, annotations=None, edit=None) -> tuple[str, str]:
    """Images a.jpg (id 5) and b.jpg (id 2), 20x30, categories 7 "seven" and 3 "three"; `edit`
    may change the JSON's dict in place before it is written."""
    (root / "images").mkdir(parents=True)
    for name in ("a.jpg", "b.jpg"):
        Image.new("RGB", (30, 20)).save(root / "images" / name)
    if annotations is None:
        annotations = [
            {"id": 1, "image_id": 5, "category_id": 7, "bbox": [1, 2, 3, 4], "iscrowd": 0, "area": 12},
            {"id": 2, "image_id": 5, "category_id": 3, "bbox": [0, 0, 0, 4], "iscrowd": 0, "area": 0},
        ]
    data = {
        "images": [
            {"id": 5, "file_name": "a.jpg", "height": 20, "width": 30},
            {"id": 2, "file_name": "b.jpg", "height": 20, "width": 30},
        ],
        "annotations": annotations,
        "categories": [{"id": 7, "name": "seven"}, {"id": 3, "name": "three"}],
    }
    if edit is not None:
        edit(data)
    path = root / "instances.json"
    path.write_text(json.dumps(data))
    return str(root / "images"), str(path)


def test_small_voc_and_coco(tmp_path):
    voc = _make_voc(
        tmp_path / "voc",
        {"a": [("dog", (1, 1, 10, 5)), ("cat", (3, 3, 3, 9)), ("dog", (31, 1, 40, 5))], "b": []},
        {"s": ["a", "b"]},
    )
    # The 1-pixel-wide click and the box beyond the right edge (the image is 30 wide) go.
    with pytest.warns(UserWarning, match="dropped 2 boxes"):
        ds = VOCDetection(str(voc), "s")
    assert ds.class_names == ["cat", "dog"] and len(ds) == 2  # a dropped box still names a class
    ann = ds.annotations(0)
    assert ann["boxes"].tolist() == [[0, 0, 10, 5]] and ann["labels"].tolist() == [1]
    assert ann["difficult"].tolist() == [True]
    ann["boxes"] += 1  # callers get their own tensors
    assert ds.annotations(0)["boxes"].tolist() == [[0, 0, 10, 5]]
    image, target = ds[1]
    assert image.shape == (3, 20, 30) and target["boxes"].shape == (0, 4) and target["labels"].shape == (0,)

    images, annotations = _make_coco(tmp_path / "coco")
    with pytest.warns(UserWarning, match="dropped 1 boxes"):
        ds = COCODetection(images, annotations)
    assert ds.class_names == ["three", "seven"] and ds.category_ids == [3, 7]
    assert [ds.image_id(i) for i in range(len(ds))] == [2, 5]
    assert ds.annotations(0)["boxes"].shape == (0, 4)
    assert ds.annotations(1)["boxes"].tolist() == [[1, 2, 4, 6]] and ds.annotations(1)["labels"].tolist() == [1]


# ---------------------------------------------------------------------------------------------
# Datasets by name


def test_build_dataset_names(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="unknown dataset"):
        build_dataset("imagenet", "train", str(tmp_path))
    with pytest.raises(ValueError, match="split"):
        build_dataset("shapes", "val", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="VOCdevkit2007/VOC2007 and .*VOCdevkit/VOC2007"):
        build_dataset("pascal_voc", "train", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="instances_val2017.json"):
        (tmp_path / "coco" / "images" / "val2017").mkdir(parents=True)
        build_dataset("coco", "test", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="nowhere"):
        build_dataset(f"voc:{tmp_path}/nowhere", "train")
    with pytest.raises(ValueError, match="voc:ROOT"):
        build_dataset(f"voc:{tmp_path}:train", "train")
    with pytest.raises(ValueError, match="coco:IMAGES:JSON"):
        build_dataset("coco:only_images", "train")

    # Both devkit layouts; 07+12 concatenates the two trainval lists.
    objects = {"1": [("dog", (1, 1, 9, 9))], "2": [("cat", (2, 2, 8, 8))], "3": [("dog", (3, 3, 9, 9))]}
    _make_voc(tmp_path / "VOCdevkit2007" / "VOC2007", objects, {"trainval": ["1", "2"], "test": ["3"]})
    _make_voc(tmp_path / "VOCdevkit" / "VOC2012", objects, {"trainval": ["1", "2", "3"]})
    train = build_dataset("pascal_voc", "train", str(tmp_path))
    assert len(train) == 2 and tuple(train.class_names) == VOC_CLASSES
    assert len(build_dataset("pascal_voc", "test", str(tmp_path))) == 1
    both = build_dataset("pascal_voc_0712", "train", str(tmp_path), transforms=two_stage_test())
    assert len(both) == 5 and [both.image_id(i) for i in range(5)] == list(range(5))
    assert both.annotations(3)["labels"].tolist() == [VOC_CLASSES.index("cat")]
    assert both[3][0].shape == (3, 600, 900)

    # User datasets: the default splits, explicit splits, and the class names of all annotations.
    user = _make_voc(tmp_path / "user", {"1": [("b", (1, 1, 9, 9))], "2": [("a", (2, 2, 8, 8))]}, {})
    _make_voc(user, {}, {"trainval": ["1"], "test": ["2"], "x": ["1", "2"]})
    assert build_dataset(f"voc:{user}", "train").class_names == ["a", "b"]
    assert len(build_dataset(f"voc:{user}:x:test", "train")) == 2
    assert build_dataset(f"voc:{user}:x:test", "test").ids == ["2"]
    box = {"id": 1, "image_id": 2, "category_id": 3, "bbox": [1, 2, 3, 4], "iscrowd": 0, "area": 12}
    images, annotations = _make_coco(tmp_path / "c2", annotations=[box])
    assert len(build_dataset(f"coco:{images}:{annotations}", "test")) == 2
    with pytest.raises(FileNotFoundError, match="missing.json"):
        build_dataset(f"coco:{images}:{annotations}:{images}:{tmp_path}/missing.json", "test")

    # shapes is generated on first use (small here) and then read back.
    real = datasets_module.generate_shapes
    monkeypatch.setattr(datasets_module, "generate_shapes", lambda root: real(root, 3, 2, 32))
    assert len(build_dataset("shapes", "train", str(tmp_path))) == 3
    assert build_dataset("shapes", "test", str(tmp_path)).class_names == list(SHAPES_CLASSES)


@requires_data
def test_build_dataset_real_paths():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert len(build_dataset(f"voc:{BCCD}:train:val", "train")) == 205
        assert len(build_dataset(f"voc:{BCCD}:train:val", "test")) == 87
    images, annotations = COCO128 / "train2017", COCO128 / "annotations" / "instances_train2017.json"
    assert len(build_dataset(f"coco:{images}:{annotations}", "test").class_names) == 80


# ---------------------------------------------------------------------------------------------
# Bad files


def test_voc_bad_files(tmp_path):
    root = _make_voc(tmp_path / "voc", {"a": [("dog", (1, 1, 9, 9))], "b": [("dog", (1, 1, 9, 9))]}, {"s": ["a", "b"]})
    (root / "ImageSets" / "Main" / "ghost.txt").write_text("a\nghost\n")
    with pytest.raises(FileNotFoundError, match=r"Annotations/ghost\.xml"):
        VOCDetection(str(root), "ghost")
    with pytest.raises(FileNotFoundError, match=r"ImageSets/Main/nope\.txt"):
        VOCDetection(str(root), "nope")
    with pytest.raises(ValueError, match=r"a\.xml: class 'dog' is not one of"):
        VOCDetection(str(root), "s", class_names=["cat"])

    (root / "JPEGImages" / "b.jpg").write_bytes(b"not a jpeg")
    ds = VOCDetection(str(root), "s")
    with pytest.raises(OSError, match=r"cannot read image .*b\.jpg"):
        ds[1]
    (root / "JPEGImages" / "b.jpg").unlink()
    with pytest.raises(FileNotFoundError, match=r"JPEGImages/b\.jpg"):
        VOCDetection(str(root), "s")

    (root / "Annotations" / "a.xml").write_text("<annotation><object><name>dog</name>")
    with pytest.raises(ValueError, match=r"malformed VOC annotation .*a\.xml"):
        VOCDetection(str(root), "s")
    (root / "Annotations" / "a.xml").write_text(
        "<annotation><object><name>dog</name><bndbox><xmin>1</xmin></bndbox></object></annotation>"
    )
    with pytest.raises(ValueError, match=r"a\.xml: <bndbox> has no <ymin>"):
        VOCDetection(str(root), "s")


def test_coco_bad_files(tmp_path):
    orphan = {"id": 9, "image_id": 77, "category_id": 7, "bbox": [1, 2, 3, 4], "iscrowd": 0, "area": 12}
    images, annotations = _make_coco(tmp_path / "orphan", annotations=[orphan])
    with pytest.raises(ValueError, match=r"instances\.json: annotation 9 refers to image id 77"):
        COCODetection(images, annotations)

    images, annotations = _make_coco(tmp_path / "missing", annotations=[])
    os.remove(os.path.join(images, "b.jpg"))
    with pytest.raises(FileNotFoundError, match=r"images/b\.jpg"):
        COCODetection(images, annotations)
    with pytest.raises(FileNotFoundError, match="nothing.json"):
        COCODetection(images, str(tmp_path / "nothing.json"))
    Path(annotations).write_text("{ not json")
    with pytest.raises(ValueError, match=r"malformed COCO annotation file .*instances\.json"):
        COCODetection(images, annotations)

    # An image whose pixels disagree with the size the annotation gives.
    images, annotations = _make_coco(tmp_path / "size", annotations=[])
    Image.new("RGB", (31, 20)).save(os.path.join(images, "a.jpg"))
    ds = COCODetection(images, annotations)
    with pytest.raises(ValueError, match=r"a\.jpg is 20x31 .* annotation says 20x30"):
        ds[1]


def test_multiscale_collate_draws_one_size_per_batch_and_scales_the_boxes():
    from dets.data import MultiScaleCollate

    def item(i):
        target = {
            "boxes": torch.tensor([[8.0, 16.0, 40.0, 64.0]]),
            "labels": torch.tensor([1]),
            "image_id": i,
            "size": (96, 128),
            "scale": (0.5, 0.5),
            "offset": (0.0, 0.0),
            "flipped": False,
            "orig_size": (192, 256),
        }
        return torch.rand(3, 96, 128), target

    batcher = MultiScaleCollate([48, 96], seed=3)
    seen = set()
    for start in range(0, 40, 2):
        batch = [item(start), item(start + 1)]
        size = batcher.size_of([t for _, t in batch])
        assert size == batcher.size_of([t for _, t in batch])  # the same batch, the same draw
        images, gt, targets = batcher(batch)
        factor = size / 96
        assert gt.image_sizes.tolist() == [[round(96 * factor), round(128 * factor)]] * 2
        torch.testing.assert_close(gt.boxes[0, 0], torch.tensor([8.0, 16.0, 40.0, 64.0]) * factor)
        # boxes_to_original still maps back to the image on disk.
        torch.testing.assert_close(
            boxes_to_original(gt.boxes[0, :1], targets[0]), torch.tensor([[16.0, 32.0, 80.0, 128.0]])
        )
        seen.add(size)
    assert seen == {48, 96}
    with pytest.raises(ValueError, match="positive ints"):
        MultiScaleCollate([0, 32])


# ---------------------------------------------------------------------------------------------
# Hostile inputs: empty lists, no objects, broken JSON, 16-bit images, misspelt classes


def test_an_empty_split_list_is_named(tmp_path):
    root = _make_voc(tmp_path / "voc", {"a": [("dog", (1, 1, 9, 9))]}, {"empty": [], "blank": []})
    (root / "ImageSets" / "Main" / "blank.txt").write_text("\n  \n")
    for split in ("empty", "blank"):
        with pytest.raises(ValueError, match=rf"ImageSets/Main/{split}\.txt lists no image ids"):
            VOCDetection(str(root), split)
        with pytest.raises(ValueError, match=rf"{split}\.txt lists no image ids"):
            build_dataset(f"voc:{root}:{split}:{split}", "train")


def test_a_dataset_without_objects_is_named(tmp_path):
    # No <object> anywhere: a user dataset finds no classes.
    empty = _make_voc(tmp_path / "empty", {"a": [], "b": []}, {"trainval": ["a", "b"], "test": ["b"]})
    with pytest.raises(ValueError, match=r"VOC .*empty \(trainval\) has no classes: no <object> in .*trainval\.txt"):
        build_dataset(f"voc:{empty}", "train")
    # Fixed classes (pascal_voc) but no box in the split, or only boxes that are dropped.
    objects = {"a": [], "b": [("dog", (5, 5, 5, 9))], "c": [("dog", (2, 2, 8, 8))]}
    _make_voc(tmp_path / "VOCdevkit" / "VOC2007", objects, {"trainval": ["a", "b"], "test": ["c"]})
    with pytest.warns(UserWarning, match="dropped 1 boxes"):
        with pytest.raises(ValueError, match=r"Main/trainval\.txt: none of its 2 images has an object box of its 20"):
            build_dataset("pascal_voc", "train", str(tmp_path))
    assert class_box_counts(build_dataset("pascal_voc", "test", str(tmp_path)))["dog"] == 1
    # COCO: a JSON with images but no annotations, and one with no categories.
    images, annotations = _make_coco(tmp_path / "coco", annotations=[])
    with pytest.raises(ValueError, match=r"instances\.json: none of its 2 images has an object box of its 2 classes"):
        build_dataset(f"coco:{images}:{annotations}", "train")
    crowd = {"id": 1, "image_id": 5, "category_id": 7, "bbox": [1, 2, 3, 4], "iscrowd": 1}
    images, annotations = _make_coco(tmp_path / "crowd", annotations=[crowd])
    with pytest.raises(ValueError, match="none of its 2 images has an object box"):
        build_dataset(f"coco:{images}:{annotations}", "test")
    images, annotations = _make_coco(tmp_path / "nocat", annotations=[], edit=lambda d: d.update(categories=[]))
    with pytest.raises(ValueError, match=r"COCO .*nocat/instances\.json has no categories"):
        COCODetection(images, annotations)


def _drop(key: str, index: int, field: str):
    return lambda data: data[key][index].pop(field)


def _set(key: str, index: int, field: str, value):
    return lambda data: data[key][index].__setitem__(field, value)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.pop("images"), r"it has no 'images' list"),
        (lambda d: d.pop("annotations"), r"it has no 'annotations' list"),
        (lambda d: d.pop("categories"), r"it has no 'categories' list"),
        (lambda d: d.update(images={}), r"it has a dict as its 'images' list"),
        (_drop("images", 1, "height"), r"images\[1\] \(id 2\) has no 'height'"),
        (_drop("images", 0, "width"), r"images\[0\] \(id 5\) has no 'width'"),
        (_drop("images", 0, "file_name"), r"images\[0\] \(id 5\) has no 'file_name'"),
        (_set("images", 0, "height", 0), r"images\[0\] \(id 5\) has 'height' 0; it must be a positive int"),
        (_set("images", 0, "width", "30"), r"images\[0\] \(id 5\) has 'width' '30'; it must be a positive int"),
        (_set("images", 1, "id", True), r"images\[1\] \(id True\) has 'id' True; it must be an int"),
        (_set("images", 1, "id", 5), r"images id 5 appears twice"),
        (_drop("categories", 1, "name"), r"categories\[1\] \(id 3\) has no 'name'"),
        (_drop("annotations", 0, "bbox"), r"annotations\[0\] \(id 1\) has no 'bbox'"),
        (_drop("annotations", 0, "category_id"), r"annotations\[0\] \(id 1\) has no 'category_id'"),
        (_drop("annotations", 0, "id"), r"annotations\[0\] \(id None\) has no 'id'"),
        (
            _set("annotations", 0, "bbox", [1, 2, 3]),
            r"annotations\[0\] \(id 1\) has 'bbox' \[1, 2, 3\]; it must be 4 finite numbers \[x, y, w, h\]",
        ),
        (_set("annotations", 0, "bbox", "1 2 3 4"), r"annotations\[0\] .* 'bbox' '1 2 3 4'; it must be 4 finite"),
        (_set("annotations", 0, "bbox", [1, 2, "3", 4]), r"annotations\[0\] \(id 1\) has 'bbox' \[1, 2, '3', 4\]"),
        (
            _set("annotations", 0, "bbox", [1, 2, float("nan"), 4]),
            r"annotations\[0\] \(id 1\) has 'bbox' \[1, 2, nan, 4\]",
        ),
        (lambda d: d["annotations"].append(7), r"annotations\[1\] is not an object"),
    ],
)
def test_a_malformed_coco_json_is_named(tmp_path, edit, message):
    box = {"id": 1, "image_id": 5, "category_id": 7, "bbox": [1, 2, 3, 4], "iscrowd": 0}
    images, annotations = _make_coco(tmp_path / "c", annotations=[box], edit=edit)
    with pytest.raises(ValueError, match=r"malformed COCO annotation file .*c/instances\.json: " + message):
        COCODetection(images, annotations)


def test_coco_json_top_level_and_missing_area(tmp_path):
    images, annotations = _make_coco(tmp_path / "c", annotations=[])
    Path(annotations).write_text("[1, 2]")
    with pytest.raises(ValueError, match=r"instances\.json: expected a JSON object, got list"):
        COCODetection(images, annotations)
    # Without 'area', the box's w * h (COCOeval's size ranges read it).
    box = {"id": 1, "image_id": 5, "category_id": 7, "bbox": [1, 2, 3, 4]}
    images, annotations = _make_coco(tmp_path / "area", annotations=[box])
    assert COCODetection(images, annotations).coco.anns[1]["area"] == 12


def _write_16_bit_png(path: Path, values) -> None:
    import numpy as np

    image = Image.fromarray(np.asarray(values, dtype=np.uint16))
    assert image.mode == "I;16"
    image.save(path)


def test_16_bit_images_are_scaled_by_their_bit_depth(tmp_path, gen):
    import numpy as np

    # Hand-computed: v / 257 rounded (65535 / 257 = 255, 32896 / 257 = 128, 1000 / 257 = 3.89).
    _write_16_bit_png(tmp_path / "literal.png", [[0, 257, 65535, 32896, 1000, 128]])
    image = open_rgb(str(tmp_path / "literal.png"))
    assert image.mode == "RGB" and np.asarray(image)[0, :, 0].tolist() == [0, 1, 255, 128, 4, 0]
    assert (np.asarray(image) == np.asarray(image)[..., :1]).all()  # grey: R = G = B

    # A random 16-bit picture through the dataset's loader: no longer all white. Values from
    # 255 up, so that a plain convert (which clips at 255) surely gives white everywhere.
    values = torch.randint(255, 65536, (20, 30), generator=gen).numpy()
    _write_16_bit_png(tmp_path / "photo.png", values)
    with Image.open(tmp_path / "photo.png") as raw:
        assert (np.asarray(raw.convert("RGB")) == 255).all()  # what a plain convert gives
    loaded = ImageFolder(str(tmp_path), ["x"]).load_image(1)  # sorted: literal, photo
    assert loaded.shape == (3, 20, 30)
    expected = torch.from_numpy(np.round(values / 257.0)).float()
    torch.testing.assert_close(loaded, expected.expand(3, 20, 30), rtol=0, atol=0)

    # 32-bit integer and float pixels have no known range: refused by name.
    Image.fromarray(values.astype(np.int32)).save(tmp_path / "deep.tif")
    with pytest.raises(OSError, match=r"cannot read image .*deep\.tif: its pixels are 32-bit integer \(mode I\)"):
        open_rgb(str(tmp_path / "deep.tif"))
    Image.fromarray(values.astype(np.float32)).save(tmp_path / "float.tif")
    with pytest.raises(OSError, match=r"float\.tif: its pixels are 32-bit float \(mode F\)"):
        open_rgb(str(tmp_path / "float.tif"))
    # 8-bit modes convert as before.
    Image.new("L", (3, 2), 77).save(tmp_path / "grey.png")
    Image.new("RGBA", (3, 2), (10, 20, 30, 0)).save(tmp_path / "alpha.png")
    assert np.asarray(open_rgb(str(tmp_path / "grey.png"))).tolist() == [[[77] * 3] * 3] * 2
    assert np.asarray(open_rgb(str(tmp_path / "alpha.png"))).tolist() == [[[10, 20, 30]] * 3] * 2


def test_a_classes_file_turns_a_misspelt_class_into_an_error(tmp_path):
    objects = {"a": [("dog", (1, 1, 9, 9)), ("cat", (2, 2, 5, 5))], "b": [("dgo", (1, 1, 9, 9))], "c": []}
    root = _make_voc(tmp_path / "voc", objects, {"trainval": ["a", "b"], "test": ["a", "c"], "good": ["a"]})
    # Without a classes file, the misspelling is a class of its own.
    assert build_dataset(f"voc:{root}", "train").class_names == ["cat", "dgo", "dog"]

    (root / LABELS_FILE).write_text("dog\ncat\n\n")
    with pytest.raises(
        ValueError, match=r"Annotations/b\.xml: class 'dgo' is not one of the 2 classes of .*voc/labels\.txt"
    ):
        build_dataset(f"voc:{root}", "train")
    with pytest.raises(ValueError, match=r"b\.xml: class 'dgo' is not one of the 2 classes of .*labels\.txt"):
        VOCDetection(str(root), "trainval")
    # The file's order gives the labels, in both splits.
    test = build_dataset(f"voc:{root}", "test")
    assert test.class_names == ["dog", "cat"] and test.annotations(0)["labels"].tolist() == [0, 1]
    # An explicit classes file wins over labels.txt.
    other = tmp_path / "classes.txt"
    other.write_text("cat\ndog\ndgo\n")
    assert build_dataset(f"voc:{root}", "train", classes_file=str(other)).class_names == ["cat", "dog", "dgo"]
    with pytest.raises(ValueError, match="give class_names or classes_file, not both"):
        VOCDetection(str(root), "good", class_names=["dog"], classes_file=str(other))
    with pytest.raises(ValueError, match=r"a classes file applies to voc: and coco: datasets, not 'shapes'"):
        build_dataset("shapes", "train", str(tmp_path), classes_file=str(other))

    # The file itself.
    for text, message in [("", r"names no class"), ("a\nb\na\n", r"names 'a' twice")]:
        other.write_text(text)
        with pytest.raises(ValueError, match=rf"classes file .*classes\.txt {message}"):
            read_class_names(str(other))
    with pytest.raises(FileNotFoundError, match=r"classes file not found: .*nowhere\.txt"):
        build_dataset(f"voc:{root}", "train", classes_file=str(tmp_path / "nowhere.txt"))

    # COCO: the file names exactly the categories and orders the labels.
    box = {"id": 1, "image_id": 5, "category_id": 7, "bbox": [1, 2, 3, 4], "iscrowd": 0, "area": 12}
    images, annotations = _make_coco(tmp_path / "coco", annotations=[box])
    other.write_text("seven\nthree\n")
    ds = build_dataset(f"coco:{images}:{annotations}", "train", classes_file=str(other))
    assert ds.class_names == ["seven", "three"] and ds.category_ids == [7, 3]
    assert ds.annotations(1)["labels"].tolist() == [0]  # category 7 is label 0 now
    other.write_text("seven\n")
    with pytest.raises(
        ValueError, match=r"instances\.json: category 'three' is not one of the classes of .*classes\.txt"
    ):
        COCODetection(images, annotations, classes_file=str(other))
    other.write_text("seven\nthree\neight\n")
    with pytest.raises(ValueError, match=r"classes\.txt: class 'eight' is not a category of .*instances\.json"):
        COCODetection(images, annotations, classes_file=str(other))


def test_class_box_counts_reads_no_image(tmp_path):
    objects = {"a": [("dog", (1, 1, 9, 9)), ("cat", (2, 2, 5, 5)), ("dog", (3, 3, 9, 9))], "b": [("dog", (1, 1, 4, 4))]}
    root = _make_voc(tmp_path / "voc", objects, {"s": ["a", "b"]})
    (root / LABELS_FILE).write_text("bird\ndog\ncat\n")
    ds = VOCDetection(str(root), "s")
    for image in (root / "JPEGImages").iterdir():
        image.unlink()
    assert class_box_counts(ds) == {"bird": 0, "dog": 3, "cat": 1}
    # COCO: crowd boxes are not trained on, so not counted.
    anns = [
        {"id": 1, "image_id": 5, "category_id": 7, "bbox": [1, 2, 3, 4], "iscrowd": 0},
        {"id": 2, "image_id": 5, "category_id": 7, "bbox": [1, 2, 9, 9], "iscrowd": 1},
        {"id": 3, "image_id": 2, "category_id": 3, "bbox": [0, 0, 5, 5], "iscrowd": 0},
        {"id": 4, "image_id": 2, "category_id": 7, "bbox": [4, 4, 5, 5]},
    ]
    images, annotations = _make_coco(tmp_path / "coco", annotations=anns)
    assert class_box_counts(COCODetection(images, annotations)) == {"three": 1, "seven": 2}


def test_image_folder_skips_unreadable_images(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.new("RGB", (30, 20), (200, 10, 10)).save(folder / "a.jpg")
    Image.new("RGB", (16, 12), (10, 200, 10)).save(folder / "b.png")
    (folder / "broken.jpg").write_bytes(b"not an image")
    whole = (folder / "b.png").read_bytes()
    (folder / "cut.png").write_bytes(whole[: len(whole) // 2])
    (folder / "notes.txt").write_text("not listed")
    with pytest.warns(UserWarning) as caught:
        ds = ImageFolder(str(folder), ["x"])
    messages = [str(w.message) for w in caught]
    assert len(messages) == 2
    assert re.search(r"skipping cannot read image .*broken\.jpg", messages[0])
    assert re.search(r"skipping cannot read image .*cut\.png", messages[1])
    assert [Path(ds.image_path(i)).name for i in range(len(ds))] == ["a.jpg", "b.png"]
    assert [Path(p).name for p in ds.skipped] == ["broken.jpg", "cut.png"]
    assert ds.annotations(1)["size"] == (12, 16)
    image, target = ds[1]
    assert image.shape == (3, 12, 16) and image[:, 0, 0].tolist() == [10, 200, 10]

    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x.png").write_bytes(b"nothing")
    with pytest.warns(UserWarning, match="x.png"):
        with pytest.raises(FileNotFoundError, match=r"no readable images .* in .*bad: 1 unreadable files"):
            ImageFolder(str(bad), ["x"])
