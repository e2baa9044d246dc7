"""The proof of the family architecture: a family defined only here (a tiny backbone, a trivial
head, its own recipe and option) joins the net table and goes through the real programs —
train, checkpoint, resume, evaluate, draw — with nothing of it in dets/engine/."""

import json
import runpy
import sys
from functools import partial
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dets.data.shapes import generate_shapes
from dets.data.transforms import ttfnet_test, ttfnet_train
from dets.models import NETS, Detector, NetSpec, Option, Recipe
from dets.models.backbones import build_backbone

ROOT = Path(__file__).resolve().parent.parent


class ToyDetector(Detector):
    """Scores every class from pooled features and proposes the whole image for each: enough
    to have losses, a prediction and an AP, nothing more."""

    def __init__(self, num_classes: int, width: int):
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(3, width, 3, stride=4, padding=1), nn.ReLU())
        self.classifier = nn.Linear(width, num_classes)
        self.num_classes = num_classes

    def forward(self, images, ground_truth=None):
        logits = self.classifier(self.backbone(images).mean(dim=(2, 3)))
        if ground_truth is None:
            return logits
        present = F.one_hot(ground_truth.labels, self.num_classes).float() * ground_truth.valid[..., None]
        loss = F.binary_cross_entropy_with_logits(logits.float(), present.amax(dim=1))
        return {"loss": loss, "loss_cls": loss.detach()}

    @torch.no_grad()
    def predict(self, images, max_per_image=100, score_thr=0.01):
        scores = torch.sigmoid(self(images).float())
        height, width = images.shape[-2:]
        whole = images.new_tensor([0.0, 0.0, width, height]).expand(self.num_classes, 4)
        results = []
        for s in scores:
            keep = (s > score_thr).nonzero().squeeze(1)[:max_per_image]
            results.append({"boxes": whole[keep], "scores": s[keep], "labels": keep})
        return results


def build_toy(num_classes, *, pretrained=None, frozen_stages=-1, frozen_bn=False, width=8):
    return ToyDetector(num_classes, width)


TOY = Recipe(
    family="Toy",
    input_size=64,
    input_size_help="side of the square input (default 64)",
    train_transforms=ttfnet_train,
    test_transforms=ttfnet_test,
    lr={"sgd": 0.01, "adam": 1e-3},
    weight_decay=1e-4,
    options=(Option("width", "--toy_width", "toy: channels of its one conv", default=8, type=int),),
)


@pytest.fixture
def toy_in_the_table(monkeypatch):
    monkeypatch.setitem(NETS, "toy_net", NetSpec(partial(build_toy), TOY))


def program(script: str, *argv: str, monkeypatch) -> None:
    monkeypatch.setattr(sys, "argv", [script, *argv])
    runpy.run_path(str(ROOT / script), run_name="__main__")


def test_a_family_defined_outside_the_package_trains_resumes_and_evaluates(toy_in_the_table, tmp_path, monkeypatch):
    root = tmp_path / "shapes"
    generate_shapes(str(root), num_train=4, num_test=2, image_size=64, seed=1)
    monkeypatch.chdir(tmp_path)
    common = ["--dataset", f"voc:{root}", "--net", "toy_net", "--bs", "2", "--nw", "0"]
    models = tmp_path / "models"
    train = [*common, "--save_dir", str(models), "--toy_width", "6", "--warmup_iters", "0", "--multiscale", "32,64"]
    program("trainval_net.py", *train, "--epochs", "1", monkeypatch=monkeypatch)
    first = sorted(models.rglob("*.pth"))
    assert [p.name for p in first] == ["toy_net_1_1_2.pth"]
    state = torch.load(first[0], weights_only=False)
    assert state["config"] == {"net": "toy_net", "num_classes": 4, "options": {"width": 6}}

    # Resume without --toy_width: the checkpoint's width is kept (it shaped the model).
    resume = ["--r", "--checksession", "1", "--checkepoch", "1", "--checkpoint", "2"]
    program("train.py", *common, "--save_dir", str(models), *resume, "--epochs", "2", monkeypatch=monkeypatch)
    second = torch.load(first[0].with_name("toy_net_1_2_2.pth"), weights_only=False)
    assert second["epoch"] == 2 and second["config"]["options"] == {"width": 6}
    assert second["model"]["backbone.0.weight"].shape[0] == 6

    out_dir = tmp_path / "out"
    weights = str(first[0].with_name("toy_net_1_2_2.pth"))
    program("test_net.py", *common, "--weights", weights, "--output_dir", str(out_dir), monkeypatch=monkeypatch)
    results = [json.loads(p.read_text()) for p in out_dir.rglob("results_*.json")]
    assert len(results) == 1 and "voc" in results[0] and results[0]["images_per_s"] > 0

    demo = tmp_path / "demo"
    image_dir = str(root / "JPEGImages")
    program(
        "demo.py",
        *common,
        "--weights",
        weights,
        "--image_dir",
        image_dir,
        "--output_dir",
        str(demo),
        monkeypatch=monkeypatch,
    )
    assert len(list(demo.glob("*.jpg"))) == len(list((root / "JPEGImages").glob("*.jpg")))


def test_the_toy_family_flag_is_refused_for_other_nets(toy_in_the_table, tmp_path, monkeypatch):
    with pytest.raises(SystemExit, match="--toy_width apply to Toy nets only, not to ttfnet_r18"):
        program("trainval_net.py", "--net", "ttfnet_r18", "--toy_width", "4", monkeypatch=monkeypatch)


def test_no_family_is_named_in_the_engine():
    engine = ROOT / "dets" / "engine"
    names = [*NETS, "is_two_stage", "TWO_STAGE", "ttfnet", "faster_rcnn", "TTFNet", "Faster R-CNN"]
    for path in engine.glob("*.py"):
        text = path.read_text()
        assert not [n for n in names if n in text], f"{path.name} names a family or net"


def test_backbone_helper_is_shared(toy_in_the_table):
    # A new family reuses the shared backbones through the one contract.
    trunk = build_backbone("resnet18", out_indices=(3,))
    assert trunk.out_strides == [32]


def test_diverged_weights_are_never_checkpointed(toy_in_the_table, tmp_path, monkeypatch):
    root = tmp_path / "shapes"
    generate_shapes(str(root), num_train=2, num_test=1, image_size=64, seed=1)
    monkeypatch.chdir(tmp_path)
    # A finite rate whose float32 product with the gradient overflows: the step writes inf.
    argv = ["--dataset", f"voc:{root}", "--net", "toy_net", "--bs", "2", "--nw", "0", "--warmup_iters", "0"]
    with pytest.raises(SystemExit, match="the model after epoch 1 holds non-finite weights .* no checkpoint written"):
        program("trainval_net.py", *argv, "--lr", "1e300", "--save_dir", str(tmp_path / "m"), monkeypatch=monkeypatch)
    assert not list((tmp_path / "m").rglob("*.pth"))


def test_an_unusable_save_dir_fails_before_training(toy_in_the_table, tmp_path, monkeypatch):
    root = tmp_path / "shapes"
    generate_shapes(str(root), num_train=2, num_test=1, image_size=64, seed=1)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("not a folder")
    argv = [
        "--dataset",
        f"voc:{root}",
        "--net",
        "toy_net",
        "--bs",
        "2",
        "--nw",
        "0",
        "--save_dir",
        str(tmp_path / "afile"),
    ]
    with pytest.raises(SystemExit, match="--save_dir .*afile cannot hold checkpoints"):
        program("trainval_net.py", *argv, monkeypatch=monkeypatch)
