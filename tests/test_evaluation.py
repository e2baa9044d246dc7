"""VOC and COCO evaluation, reports and visualisation.

The VOC numbers in the toy cases are worked out by hand in the comments; random cases are
checked against a deliberately plain re-implementation of the devkit loop written here.
"""

import json
import math
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from dets.evaluation import (
    build_coco_ground_truth,
    coco_evaluate,
    detections_to_coco_json,
    format_coco_report,
    format_voc_report,
    voc_ap,
    voc_evaluate,
    write_coco_json,
)
from dets.visualize import class_color, draw_detections, save_image


def dets(boxes, scores, labels):
    return {
        "boxes": torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        "scores": torch.as_tensor(scores, dtype=torch.float32),
        "labels": torch.as_tensor(labels, dtype=torch.int64),
    }


def gts(boxes, labels, difficult=None):
    out = {"boxes": torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4), "labels": torch.as_tensor(labels)}
    if difficult is not None:
        out["difficult"] = torch.as_tensor(difficult)
    return out


A, B, C = [0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10]
FAR = [100, 100, 110, 110]


# --------------------------------------------------------------------------- VOC, by hand


def test_voc_hand_computed_ranking():
    # GTs A, B in image 0 and C in image 1. Detections ranked by score across both images:
    #   0.9 on A (TP), 0.8 far away (FP), 0.7 on B (TP), 0.6 on A shifted by one pixel
    #   (IoU 110/132 with +1 widths, but A is taken: FP), 0.5 on C (TP).
    # cumulative TP 1 1 2 2 3, FP 0 1 1 2 2:
    #   recall    1/3  1/3  2/3  2/3  1
    #   precision 1    1/2  2/3  1/2  3/5
    # precision envelope: 1 up to recall 1/3, 2/3 up to 2/3, 3/5 up to 1.
    # area AP = 1/3 * 1 + 1/3 * 2/3 + 1/3 * 3/5 = 34/45
    # 11-point: t = 0, .1, .2, .3 -> 1; t = .4, .5, .6 -> 2/3; t = .7, .8, .9, 1 -> 3/5
    #   AP = (4 * 1 + 3 * 2/3 + 4 * 3/5) / 11 = 8.4 / 11
    detections = [
        dets([[1, 0, 11, 10], A, FAR, B], [0.6, 0.9, 0.8, 0.7], [0, 0, 0, 0]),
        dets([C], [0.5], [0]),
    ]
    ground_truths = [gts([A, B], [0, 0]), gts([C], [0])]
    r = voc_evaluate(detections, ground_truths, ["thing"])
    np.testing.assert_allclose(r["recall"]["thing"], [1 / 3, 1 / 3, 2 / 3, 2 / 3, 1])
    np.testing.assert_allclose(r["precision"]["thing"], [1, 1 / 2, 2 / 3, 1 / 2, 3 / 5])
    assert r["ap_area"]["thing"] == pytest.approx(34 / 45, abs=1e-12)
    assert r["ap_11point"]["thing"] == pytest.approx(8.4 / 11, abs=1e-12)
    assert r["map_area"] == r["ap_area"]["thing"]
    assert r["counts"]["thing"] == {"gt": 3, "difficult": 0, "detections": 5, "tp": 3, "fp": 2}


def test_voc_ap_11_point_thresholds_are_the_devkit_floats():
    # Recall 0.1, 0.2, 0.3 at precision 1: thresholds 0, 0.1, 0.2 are reached, but 0.3 is
    # numpy.arange's 0.30000000000000004 > 3/10, so AP = 3/11, not 4/11.
    assert voc_ap([0.1, 0.2, 0.3], [1.0, 1.0, 1.0], use_07_metric=True) == pytest.approx(3 / 11)
    # The area under the same curve is 0.3.
    assert voc_ap([0.1, 0.2, 0.3], [1.0, 1.0, 1.0]) == pytest.approx(0.3)
    assert voc_ap([], [], use_07_metric=True) == 0.0 and voc_ap([], []) == 0.0


def test_voc_difficult_is_neither_positive_nor_false_positive():
    # D is difficult. The 0.9 detection on D is ignored; 0.8 on A is TP; 0.7 far is FP.
    # Without the ignored one: recall 1, 1; precision 1, 1/2 -> AP 1 either way.
    D = [60, 60, 80, 80]
    detections = [dets([D, A, FAR], [0.9, 0.8, 0.7], [0, 0, 0])]
    r = voc_evaluate(detections, [gts([A, D], [0, 0], [False, True])], ["c"])
    assert r["ap_area"]["c"] == 1.0 and r["ap_11point"]["c"] == 1.0
    assert r["counts"]["c"] == {"gt": 1, "difficult": 1, "detections": 3, "tp": 1, "fp": 1}
    # The same objects, D not difficult: ranked TP (D), TP (A), FP -> AP 1 with 2 positives.
    r = voc_evaluate(detections, [gts([A, D], [0, 0], [False, False])], ["c"])
    assert r["counts"]["c"]["gt"] == 2 and r["counts"]["c"]["tp"] == 2
    # Two detections on a difficult GT are both ignored (no duplicate penalty), and a
    # detection whose best GT is difficult is ignored even if it overlaps another GT > 0.5
    # (the devkit looks only at the best one). Here A2 (difficult) is A shifted by one pixel
    # and the detection is exactly on A2.
    A2 = [1, 0, 11, 10]
    detections = [dets([A2, A2, A], [0.9, 0.8, 0.7], [0, 0, 0])]
    r = voc_evaluate(detections, [gts([A, A2], [0, 0], [False, True])], ["c"])
    assert r["counts"]["c"]["tp"] == 1 and r["counts"]["c"]["fp"] == 0 and r["ap_area"]["c"] == 1.0


def test_voc_duplicates_and_stable_ties():
    # One GT, two detections with equal scores: input order decides the rank.
    # On-target first: TP, FP -> precision 1 at recall 1, AP 1.
    r = voc_evaluate([dets([A, A], [0.5, 0.5], [0, 0])], [gts([A], [0])], ["c"])
    assert r["ap_area"]["c"] == 1.0 and r["counts"]["c"]["fp"] == 1
    # Far one first: FP, TP -> precision 1/2 at recall 1, AP 1/2 under both definitions.
    r = voc_evaluate([dets([FAR, A], [0.5, 0.5], [0, 0])], [gts([A], [0])], ["c"])
    assert r["ap_area"]["c"] == 0.5 and r["ap_11point"]["c"] == pytest.approx(0.5)
    # Ties across images: image order first.
    r = voc_evaluate([dets([FAR], [0.5], [0]), dets([A], [0.5], [0])], [gts([], []), gts([A], [0])], ["c"])
    assert r["ap_area"]["c"] == 0.5


def test_voc_class_without_detections_and_class_without_gt():
    detections = [dets([A, FAR], [0.9, 0.8], [0, 2])]
    ground_truths = [gts([A, B], [0, 1])]
    r = voc_evaluate(detections, ground_truths, ["a", "b", "c"])
    assert r["ap_area"]["a"] == 1.0
    assert r["ap_area"]["b"] == 0.0 and r["ap_11point"]["b"] == 0.0  # GT, no detection
    assert math.isnan(r["ap_area"]["c"]) and math.isnan(r["ap_11point"]["c"])  # detection, no GT
    assert r["counts"]["c"] == {"gt": 0, "difficult": 0, "detections": 1, "tp": 0, "fp": 1}
    assert r["map_area"] == 0.5 and r["map_11point"] == 0.5  # mean of a and b only
    assert "-" in format_voc_report(r)


def test_voc_empty_inputs():
    r = voc_evaluate([], [], ["a"])
    assert math.isnan(r["map_area"])
    r = voc_evaluate([dets([], [], [])], [gts([A], [0])], ["a"])
    assert r["ap_area"]["a"] == 0.0
    # Without "+1", a point box on a point GT has IoU 0/0: no match (and no warning).
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = voc_evaluate([dets([[5, 5, 5, 5]], [1.0], [0])], [gts([[5, 5, 5, 5]], [0])], ["a"], legacy_plus_one=False)
    assert r["ap_area"]["a"] == 0.0


def test_voc_rejects_bad_labels_and_lengths():
    with pytest.raises(ValueError, match="labels"):
        voc_evaluate([dets([A], [0.5], [3])], [gts([A], [0])], ["a"])
    with pytest.raises(ValueError, match="images"):
        voc_evaluate([dets([A], [0.5], [0])], [], ["a"])


# ------------------------------------------------------------- VOC, random vs plain loop


def random_scene(rng, num_images=25, num_classes=3, difficult_rate=0.15, grid=False):
    """Random GTs; detections are jittered GTs (some poor, some duplicated) plus strays.

    Scores are rounded to one decimal so that ties occur. With ``grid`` the GTs sit in
    separate cells of a 4x4 grid of 100-pixel cells, so no two GTs overlap.
    """
    detections, ground_truths = [], []
    for _ in range(num_images):
        m = int(rng.integers(0, 8))
        if grid:
            cells = rng.choice(16, size=m, replace=False)
            xy = np.stack([cells % 4, cells // 4], 1) * 100.0 + rng.uniform(0, 30, (m, 2))
            wh = rng.uniform(30, 65, (m, 2))
        else:
            xy = rng.uniform(0, 300, (m, 2))
            wh = rng.uniform(5, 120, (m, 2))
        g_boxes = np.concatenate([xy, xy + wh], 1)
        g_labels = rng.integers(0, num_classes, m)
        difficult = rng.random(m) < difficult_rate
        copies = rng.integers(0, 3, m)  # 0, 1 or 2 detections per GT
        src = np.repeat(np.arange(m), copies)
        jitter = (
            rng.normal(0, 1, (len(src), 4)) * np.repeat(wh[src], 2, axis=1) * rng.choice([0.05, 0.3], len(src))[:, None]
        )
        d_boxes = g_boxes[src] + jitter
        d_labels = g_labels[src]
        strays = int(rng.integers(0, 4))
        s_xy = rng.uniform(0, 350, (strays, 2))
        d_boxes = np.concatenate([d_boxes, np.concatenate([s_xy, s_xy + rng.uniform(5, 60, (strays, 2))], 1)])
        d_labels = np.concatenate([d_labels, rng.integers(0, num_classes, strays)])
        d_boxes[:, 2:] = np.maximum(d_boxes[:, 2:], d_boxes[:, :2] + 1)
        scores = np.round(rng.random(len(d_boxes)), 1)
        detections.append({"boxes": d_boxes, "scores": scores, "labels": d_labels})
        ground_truths.append({"boxes": g_boxes, "labels": g_labels, "difficult": difficult})
    return detections, ground_truths


def plain_voc_ap(detections, ground_truths, cls, iou_threshold, plus_one, use_07):
    """The devkit's loop, one detection at a time, kept as simple as possible."""
    one = 1.0 if plus_one else 0.0
    found = []  # (score, image, box)
    npos = 0
    taken = {}
    for i, (det, gt) in enumerate(zip(detections, ground_truths, strict=True)):
        keep = gt["labels"] == cls
        npos += int(np.sum(keep & ~gt["difficult"]))
        taken[i] = [False] * len(gt["labels"])
        for box, score, label in zip(det["boxes"], det["scores"], det["labels"], strict=True):
            if label == cls:
                found.append((score, i, box))
    found.sort(key=lambda t: -t[0])  # Python's sort is stable
    tp, fp = [], []
    for _, i, box in found:
        gt = ground_truths[i]
        best, best_j = -math.inf, -1
        for j, (g, label) in enumerate(zip(gt["boxes"], gt["labels"], strict=True)):
            if label != cls:
                continue
            iw = max(min(box[2], g[2]) - max(box[0], g[0]) + one, 0.0)
            ih = max(min(box[3], g[3]) - max(box[1], g[1]) + one, 0.0)
            inter = iw * ih
            union = (box[2] - box[0] + one) * (box[3] - box[1] + one) + (g[2] - g[0] + one) * (g[3] - g[1] + one)
            iou = inter / (union - inter)
            if iou > best:
                best, best_j = iou, j
        if best > iou_threshold:
            if gt["difficult"][best_j]:
                tp.append(0)
                fp.append(0)
            elif not taken[i][best_j]:
                taken[i][best_j] = True
                tp.append(1)
                fp.append(0)
            else:
                tp.append(0)
                fp.append(1)
        else:
            tp.append(0)
            fp.append(1)
    if npos == 0:
        return math.nan
    tp, fp = np.cumsum(tp), np.cumsum(fp)
    rec = tp / npos
    prec = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    if use_07:
        return sum((prec[rec >= t].max() if np.any(rec >= t) else 0.0) for t in np.arange(0.0, 1.1, 0.1)) / 11
    total, r_prev = 0.0, 0.0
    for k in range(len(rec)):
        if rec[k] > r_prev:
            total += (rec[k] - r_prev) * prec[k:].max()
            r_prev = rec[k]
    return total


@pytest.mark.parametrize("plus_one", [True, False])
@pytest.mark.parametrize("iou_threshold", [0.5, 0.7])
def test_voc_matches_plain_loop_on_random_data(gen, plus_one, iou_threshold):
    rng = np.random.default_rng(int(torch.randint(2**31, (1,), generator=gen)))
    detections, ground_truths = random_scene(rng)
    classes = ["a", "b", "c"]
    r = voc_evaluate(detections, ground_truths, classes, iou_threshold, legacy_plus_one=plus_one)
    for c, name in enumerate(classes):
        for key, use_07 in (("ap_area", False), ("ap_11point", True)):
            expected = plain_voc_ap(detections, ground_truths, c, iou_threshold, plus_one, use_07)
            np.testing.assert_allclose(r[key][name], expected, rtol=0, atol=1e-12, err_msg=f"{key} {name}")


def test_voc_perfect_detections_score_one(gen):
    rng = np.random.default_rng(int(torch.randint(2**31, (1,), generator=gen)))
    _, ground_truths = random_scene(rng, difficult_rate=0.0)
    perfect = [
        {"boxes": g["boxes"], "scores": rng.random(len(g["labels"])), "labels": g["labels"]} for g in ground_truths
    ]
    r = voc_evaluate(perfect, ground_truths, ["a", "b", "c"])
    assert r["map_area"] == 1.0 and r["map_11point"] == pytest.approx(1.0)


# --------------------------------------------------------------------------------- COCO


def toy_coco():
    """Image 1: a 100x100 object of class 0 (large); image 2: a 30x30 of class 1 (small)."""
    annotations = [gts([[0, 0, 100, 100]], [0]), gts([[10, 10, 40, 40]], [1])]
    return annotations, build_coco_ground_truth(annotations, [1, 2], ["big", "small"])


def test_coco_perfect_and_empty():
    annotations, gt = toy_coco()
    perfect = [dets(a["boxes"], [0.9] * len(a["labels"]), a["labels"]) for a in annotations]
    r = coco_evaluate(perfect, gt, [1, 2], [1, 2])
    for name in ("AP", "AP50", "AP75", "AR1", "AR100", "APl", "APs"):
        assert r[name] == pytest.approx(1.0, abs=1e-9), name
    assert math.isnan(r["APm"])  # no medium object (32^2 <= area < 96^2)
    assert r["per_class_ap"] == pytest.approx({"big": 1.0, "small": 1.0})
    empty = [dets([], [], []), dets([], [], [])]
    r = coco_evaluate(empty, gt, [1, 2], [1, 2])
    assert r["AP"] == 0.0 and r["AR100"] == 0.0 and r["per_class_ap"] == {"big": 0.0, "small": 0.0}
    assert "AP50" in format_coco_report(r)


def test_coco_toy_values():
    # Image 1: a false positive (0.9) ranks above a detection with IoU 62/100 (0.8); image 2:
    # nothing. Class "big": precision 1/2 at recall 1 for IoU thresholds .50, .55, .60,
    # and no true positive from .65 up: AP50 = 1/2, AP75 = 0, AP = 3/10 * 1/2.
    # Class "small" has no detection: AP 0. Means over the two classes.
    _, gt = toy_coco()
    detections = [dets([[200, 200, 260, 260], [0, 0, 100, 62]], [0.9, 0.8], [0, 0]), dets([], [], [])]
    r = coco_evaluate(detections, gt, [1, 2], {0: 1, 1: 2})
    assert r["per_class_ap50"]["big"] == pytest.approx(0.5)
    assert r["per_class_ap"]["big"] == pytest.approx(0.15)
    assert r["AP50"] == pytest.approx(0.25) and r["AP75"] == 0.0 and r["AP"] == pytest.approx(0.075)
    # Only image 2 scored: its object is missed, image 1's is not counted.
    r = coco_evaluate(detections[1:], gt, [2], [1, 2])
    assert math.isnan(r["per_class_ap"]["big"]) and r["per_class_ap"]["small"] == 0.0


def test_coco_json_round_trip(tmp_path):
    _, gt = toy_coco()
    detections = [dets([[1.5, 2.0, 11.0, 22.5], [3, 4, 5, 6]], [0.25, 0.75], [1, 0]), dets([], [], [])]
    records = detections_to_coco_json(detections, [1, 2], {0: 1, 1: 2})
    assert records == [
        {"image_id": 1, "category_id": 2, "bbox": [1.5, 2.0, 9.5, 20.5], "score": 0.25},
        {"image_id": 1, "category_id": 1, "bbox": [3.0, 4.0, 2.0, 2.0], "score": 0.75},
    ]
    path = write_coco_json(records, tmp_path / "out" / "results.json")
    assert json.loads(path.read_text()) == records
    assert [p.name for p in path.parent.iterdir()] == ["results.json"]  # no temporary left
    res = gt.loadRes(str(path))
    loaded = sorted(res.dataset["annotations"], key=lambda a: a["score"])
    for rec, ann in zip(records, loaded, strict=True):
        assert (ann["image_id"], ann["category_id"], ann["bbox"], ann["score"]) == (
            rec["image_id"],
            rec["category_id"],
            rec["bbox"],
            rec["score"],
        )
    assert loaded[0]["area"] == pytest.approx(9.5 * 20.5)
    with pytest.raises(ValueError, match="category"):
        detections_to_coco_json(detections, [1, 2], {0: 1})
    with pytest.raises(ValueError, match="not in the ground truth"):
        coco_evaluate(detections, gt, [1, 3], [1, 2])


def test_coco_gt_from_json_path_and_difficult_as_crowd(tmp_path):
    # The difficult object D is a crowd region: the detection on it is ignored, as in VOC.
    D = [60, 60, 80, 80]
    annotations = [gts([A, D], [0, 0], [False, True])]
    gt = build_coco_ground_truth(annotations, [7], ["c"], image_sizes=[(120, 100)])
    assert [a["iscrowd"] for a in gt.dataset["annotations"]] == [0, 1]
    assert gt.dataset["images"] == [{"id": 7, "height": 120, "width": 100}]
    path = write_coco_json(gt.dataset, tmp_path / "gt.json")
    r = coco_evaluate([dets([D, A], [0.9, 0.8], [0, 0])], path, [7], [1])
    assert r["AP50"] == pytest.approx(1.0)


def test_voc_and_coco_ap50_roughly_agree(gen):
    # Same detections, non-overlapping GTs and no "+1", so the matching is the same in both
    # but for COCO's ">= 0.5" against VOC's "> 0.5" (measure zero here) and crowd handling
    # (none here). What differs is the integral: VOC sums the exact area under the precision
    # envelope, COCO averages the envelope sampled at 101 recall points (each sample takes
    # the envelope at the first recall >= the point, an error up to one recall step per
    # sample). With tens of objects per class this stays within 0.02.
    rng = np.random.default_rng(int(torch.randint(2**31, (1,), generator=gen)))
    detections, ground_truths = random_scene(rng, num_images=40, difficult_rate=0.0, grid=True)
    classes = ["a", "b", "c"]
    voc = voc_evaluate(detections, ground_truths, classes, legacy_plus_one=False)
    gt = build_coco_ground_truth(ground_truths, list(range(1, 41)), classes)
    coco = coco_evaluate(detections, gt, list(range(1, 41)), [1, 2, 3])
    for name in classes:
        assert voc["ap_area"][name] == pytest.approx(coco["per_class_ap50"][name], abs=0.02), name
    assert voc["map_area"] == pytest.approx(coco["AP50"], abs=0.02)


# ------------------------------------------------------------------------ visualisation


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_draw_and_save(tmp_path, suffix):
    image = np.full((64, 80, 3), 128, dtype=np.uint8)
    boxes = [[10, 20, 50, 40], [60, 5, 75, 15]]
    drawn = draw_detections(image, boxes, [3, 7], [0.9, 0.1], ["c"] * 10, score_threshold=0.5, line_width=4)
    path = save_image(drawn, tmp_path / f"vis{suffix}")
    with Image.open(path) as im:
        assert im.size == (80, 64) and im.mode == "RGB"
        pixels = np.asarray(im.convert("RGB"), dtype=np.int16)
    tol = 0 if suffix == ".png" else 40  # JPEG is lossy
    # The bottom edge of the first box is in its class colour; its centre is untouched.
    assert np.abs(pixels[39, 30] - class_color(3)).max() <= tol
    assert np.abs(pixels[30, 30] - 128).max() <= tol
    # The second box scores under the threshold: not drawn.
    assert np.abs(pixels[10, 60:76] - 128).max() <= tol
    assert (np.asarray(image) == 128).all()  # the input is left as it was


def test_class_colors_are_distinct_for_many_classes():
    colors = [class_color(c) for c in range(500)]
    assert len(set(colors)) == len(colors)
    assert all(0 <= v <= 255 for c in colors for v in c)
