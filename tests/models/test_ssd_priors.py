"""SSD priors: counts and hand-computed values for SSD300 (the paper's 8732 priors and the
seed's VGG16 configuration), a YOLO configuration with [w, h] priors, free image size, clip."""

import math

import pytest
import torch

from dets.models.ssd.config import PriorSpec
from dets.models.ssd.priors import anchors_per_position, make_priors, spec_for_size

SSD300_MAPS = [(38, 38), (19, 19), (10, 10), (5, 5), (3, 3), (1, 1)]
SSD300_STEPS = (8, 16, 32, 64, 100, 300)
SSD300_SIZES = (30, 60, 111, 162, 213, 264, 315)
# The paper's SSD300 (4, 6, 6, 6, 4, 4 priors per position).
PAPER_SSD300 = PriorSpec(SSD300_STEPS, SSD300_SIZES, ((1, 2), (1, 2, 3), (1, 2, 3), (1, 2, 3), (1, 2), (1, 2)))
# ssds.pytorch's ssd_vgg16_train_voc.yml: 6 priors on conv4_3 too.
SEED_VGG16 = PriorSpec(SSD300_STEPS, SSD300_SIZES, ((1, 2, 3),) * 4 + ((1, 2),) * 2)
# ssds.pytorch's yolo_v3_darknet53_voc.yml (416², coarsest level first, no steps, K sizes).
YOLO_V3 = PriorSpec(
    None,
    ((416, 416),) * 3,
    (
        ((0.278, 0.216), (0.375, 0.475), (0.896, 0.783)),
        ((0.072, 0.146), (0.146, 0.108), (0.141, 0.286)),
        ((0.024, 0.031), (0.038, 0.072), (0.079, 0.055)),
    ),
)


def test_ssd300_counts():
    assert make_priors(PAPER_SSD300, SSD300_MAPS, 300).shape == (8732, 4)
    assert make_priors(SEED_VGG16, SSD300_MAPS, 300).shape == (11620, 4)
    assert [anchors_per_position(r) for r in PAPER_SSD300.aspect_ratios] == [4, 6, 6, 6, 4, 4]


def test_ssd300_literals():
    priors = make_priors(PAPER_SSD300, SSD300_MAPS, 300).double()
    root2, root3 = math.sqrt(2), math.sqrt(3)
    expected = {
        # level 0, position (0, 0): 30 px, sqrt(30·60) px, ratio 2 both ways
        0: (4 / 300, 4 / 300, 0.1, 0.1),
        1: (4 / 300, 4 / 300, math.sqrt(0.02), math.sqrt(0.02)),
        2: (4 / 300, 4 / 300, 0.1 * root2, 0.1 / root2),
        3: (4 / 300, 4 / 300, 0.1 / root2, 0.1 * root2),
        # level 0, position (y 0, x 1)
        4: (12 / 300, 4 / 300, 0.1, 0.1),
        # level 0, position (y 1, x 0): rows before columns
        38 * 4: (4 / 300, 12 / 300, 0.1, 0.1),
        # level 1 (38·38·4 priors before it): 60 px, then ratio 3 (the 1:3 and 3:1 priors)
        5776: (8 / 300, 8 / 300, 0.2, 0.2),
        5776 + 4: (8 / 300, 8 / 300, 0.2 * root3, 0.2 / root3),
        5776 + 5: (8 / 300, 8 / 300, 0.2 / root3, 0.2 * root3),
        # level 5, the one 1×1 position: 264 px, sqrt(264·315) px, ratio 2 clipped to 1
        8728: (0.5, 0.5, 0.88, 0.88),
        8729: (0.5, 0.5, math.sqrt(0.88 * 1.05), math.sqrt(0.88 * 1.05)),
        8730: (0.5, 0.5, 1.0, 0.88 / root2),
        8731: (0.5, 0.5, 0.88 / root2, 1.0),
    }
    for index, value in expected.items():
        torch.testing.assert_close(priors[index], torch.tensor(value, dtype=torch.float64), msg=f"prior {index}")


def test_clip_off_keeps_large_priors():
    unclipped = PriorSpec(SSD300_STEPS, SSD300_SIZES, PAPER_SSD300.aspect_ratios, clip=False)
    priors = make_priors(unclipped, SSD300_MAPS, 300)
    assert priors[8730, 2].item() == pytest.approx(0.88 * math.sqrt(2))
    assert priors.max() > 1
    assert make_priors(PAPER_SSD300, SSD300_MAPS, 300).max() <= 1


def test_yolo_priors():
    priors = make_priors(YOLO_V3, [(13, 13), (26, 26), (52, 52)], 416).double()
    assert priors.shape == ((169 + 676 + 2704) * 3, 4)
    torch.testing.assert_close(priors[0], torch.tensor([0.5 / 13, 0.5 / 13, 0.278, 0.216], dtype=torch.float64))
    torch.testing.assert_close(priors[2], torch.tensor([0.5 / 13, 0.5 / 13, 0.896, 0.783], dtype=torch.float64))
    # Level 1 starts after the 13·13·3 priors: step 1/26, first of its priors.
    torch.testing.assert_close(priors[507], torch.tensor([0.5 / 26, 0.5 / 26, 0.072, 0.146], dtype=torch.float64))
    assert [anchors_per_position(r) for r in YOLO_V3.aspect_ratios] == [3, 3, 3]


def test_fraction_sizes():
    spec = PriorSpec(None, (0.2, 0.9), ((1,), (1,), (1,)))
    priors = make_priors(spec, [(4, 4), (2, 2), (1, 1)], 128).double()
    # scales 0.2, 0.55, 0.9 and s_K = 1
    torch.testing.assert_close(priors[0], torch.tensor([0.125, 0.125, 0.2, 0.2], dtype=torch.float64))
    torch.testing.assert_close(priors[32], torch.tensor([0.25, 0.25, 0.55, 0.55], dtype=torch.float64))
    torch.testing.assert_close(priors[-1, 2].item(), math.sqrt(0.9))


def reference_priors(spec: PriorSpec, maps, height, width):
    """The seed's loop: level, row, column, ratio."""
    scales = [min(s / height, s / width) for s in spec.sizes]
    out = []
    for k, (fh, fw) in enumerate(maps):
        sy, sx = (1 / fh, 1 / fw) if spec.steps is None else (spec.steps[k] / height, spec.steps[k] / width)
        for i in range(fh):
            for j in range(fw):
                cx, cy = j * sx + sx / 2, i * sy + sy / 2
                for ratio in spec.aspect_ratios[k]:
                    if ratio == 1:
                        out += [[cx, cy, scales[k], scales[k]]]
                        between = math.sqrt(scales[k] * scales[k + 1])
                        out += [[cx, cy, between, between]]
                    else:
                        r = math.sqrt(ratio)
                        out += [[cx, cy, scales[k] * r, scales[k] / r], [cx, cy, scales[k] / r, scales[k] * r]]
    return torch.tensor(out, dtype=torch.float64).clamp(0, 1)


def test_free_image_size_follows_the_maps():
    # A 320×480 input: the maps the network gives, steps image / map, sizes scaled from 300.
    maps = [(40, 60), (20, 30), (10, 15), (5, 8), (3, 6), (1, 4)]
    spec = spec_for_size({300: SEED_VGG16}, (320, 480))
    assert spec.steps is None
    priors = make_priors(spec, maps, (320, 480)).double()
    scaled = PriorSpec(None, SSD300_SIZES, SEED_VGG16.aspect_ratios)
    # s_k = min(size·320/300 / 320, size·480/300 / 480) = size / 300: the seed's fractions.
    torch.testing.assert_close(priors, reference_priors(scaled, maps, 300, 300))
    assert priors.shape[0] == sum(h * w for h, w in maps[:4]) * 6 + sum(h * w for h, w in maps[4:]) * 4
    # A configured square size takes its spec unchanged.
    assert spec_for_size({300: SEED_VGG16}, 300) is SEED_VGG16


def test_against_the_seed_loop():
    torch.testing.assert_close(
        make_priors(SEED_VGG16, SSD300_MAPS, 300).double(), reference_priors(SEED_VGG16, SSD300_MAPS, 300, 300)
    )


def test_bad_inputs():
    with pytest.raises(ValueError, match="aspect_ratios"):
        make_priors(PAPER_SSD300, SSD300_MAPS[:5], 300)
    with pytest.raises(ValueError, match="steps"):
        make_priors(PriorSpec((8,), SSD300_SIZES[:3], ((1,), (1,))), [(2, 2), (1, 1)], 16)
    with pytest.raises(ValueError, match="sizes"):
        make_priors(PriorSpec(None, (30, 60, 90, 120), ((1,), (1,))), [(2, 2), (1, 1)], 300)
    with pytest.raises(ValueError, match="sizes"):
        make_priors(PriorSpec(None, (30, 60), ((1,), (1,))), [(2, 2), (1, 1)], 300)
    with pytest.raises(ValueError, match="aspect_ratios"):
        anchors_per_position((1, 0.5))
    with pytest.raises(ValueError, match="aspect_ratios"):
        anchors_per_position(((0.1, 0.2, 0.3),))
