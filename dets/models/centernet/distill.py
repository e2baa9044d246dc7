"""CenterX's knowledge distillation: a CenterNet student trained against one or more frozen
CenterNet teachers (``modeling/losses/centernet_kdloss.py``, ``engine/defaults.py``).

Teacher i teaches a slice of the student's classes (CenterX's KD_CLS_INDEX): several teachers,
each trained on its own single-class or few-class dataset, merge into one student. Per teacher:

    kd_hm  = MSE(p_s[:, slice], p_t)                         p = sigmoid(heatmap logits)
    mask   = max over classes of p_t at its 3×3 peaks (0 elsewhere)
    kd_wh  = Σ |wh_s - wh_t| · mask / n  /  (Σ mask + 1e-4)   n = (w_t + h_t) / 2 with norm_wh, else 1
    kd_off = Σ |off_s - off_t| · mask    /  (Σ mask + 1e-4)

each scaled by weight × its term's weight. CenterX passes both heatmaps through a LeakyReLU
(and the mask's through a ReLU) after its head's sigmoid, where both are the identity; they are
left out here. With ``without_gt`` (CenterX's KD_WITHOUT_LABEL) the student learns from the
teachers alone.

The distiller is what trains; what it saves is the student: ``state_dict`` is the student's, and
``build_detector`` records the plain student's config (the distillation options are not kept), so
a distilled checkpoint evaluates, resumes and teaches as a plain CenterNet.
"""

import torch

from ..detector import Detector
from .losses import masked_l1_loss, peak_mask
from .model import CenterNet

# CenterX's KD defaults: KD_WEIGHT, KD_CLS_WEIGHT, KD_WH_WEIGHT, KD_REG_WEIGHT.
KD_WEIGHT = 10.0
KD_TERM_WEIGHTS = (1.0, 1.0, 0.1)


def load_teacher(path: str) -> CenterNet:
    """A frozen CenterNet (parameters without gradient, BatchNorms in eval mode) from one of our
    checkpoints."""
    # Imported here: dets.engine and dets.models import each other's modules at load time.
    from dets.engine.checkpoint import load_checkpoint
    from dets.models import build_detector

    state = load_checkpoint(path)
    if "config" not in state:
        raise ValueError(f"--teachers: {path} carries no model config")
    teacher = build_detector(**state["config"])
    if not isinstance(teacher, CenterNet):
        raise ValueError(f"--teachers: {path} holds a {state['config']['net']}, not a CenterNet")
    teacher.load_state_dict(state["model"])
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher.eval()


def default_class_slices(teachers) -> tuple[tuple[int, ...], ...]:
    """CenterX's default KD_CLS_INDEX: teacher i teaches the next teachers[i].num_classes classes."""
    slices, start = [], 0
    for teacher in teachers:
        slices.append(tuple(range(start, start + teacher.num_classes)))
        start += teacher.num_classes
    return tuple(slices)


class CenterNetDistiller(Detector):
    """A student CenterNet and frozen teachers; a Detector whose losses are the distillation's.

    Args:
        student: the CenterNet being trained.
        teachers: frozen CenterNets (``load_teacher``). They are held outside the module tree:
            not in ``parameters()`` (the optimizer never sees them), ``state_dict()``, ``.to()``
            or ``.train()``; they follow the student's device at each forward.
        class_slices: per teacher, the student classes its heatmap channels teach, in order
            (None: consecutive blocks, ``default_class_slices``).
        without_gt: train on the teachers alone (no ground-truth losses).
        weight, term_weights: each teacher's losses are scaled by weight × (heatmap, size,
            offset) term weight (CenterX: 10 × (1, 1, 0.1)).
        norm_wh: the size term divided by the teacher's (w + h) / 2.
    """

    def __init__(
        self,
        student: CenterNet,
        teachers,
        class_slices=None,
        *,
        without_gt: bool = False,
        weight: float = KD_WEIGHT,
        term_weights=KD_TERM_WEIGHTS,
        norm_wh: bool = False,
    ):
        super().__init__()
        teachers = tuple(teachers)
        if not teachers:
            raise ValueError("CenterNetDistiller needs at least one teacher")
        if class_slices is None:
            class_slices = default_class_slices(teachers)
        class_slices = tuple(tuple(int(c) for c in s) for s in class_slices)
        _check_class_slices(class_slices, teachers, student.num_classes)
        self.student = student
        self._teachers = teachers
        self._teacher_device = None
        self.class_slices = class_slices
        self.without_gt = without_gt
        self.weights = {kind: weight * w for kind, w in zip(("hm", "wh", "off"), term_weights, strict=True)}
        self.norm_wh = norm_wh

    @property
    def teachers(self) -> tuple[CenterNet, ...]:
        return self._teachers

    def forward(self, images: torch.Tensor, ground_truth=None):
        """As ``CenterNet.forward``; the training losses are the student's ground-truth losses
        (none with ``without_gt``) and, per teacher i, 'loss_kd_hm{i}', 'loss_kd_wh{i}' and
        'loss_kd_off{i}'."""
        outputs = self.student(images)
        if ground_truth is None:
            return outputs
        if self._teacher_device != images.device:
            for teacher in self._teachers:
                teacher.to(images.device)
            self._teacher_device = images.device
        with torch.no_grad():
            taught = [teacher(images) for teacher in self._teachers]
        return self.losses_in_float32(self.loss, outputs, taught, ground_truth)

    def loss(self, outputs, taught, ground_truth) -> dict[str, torch.Tensor]:
        terms = {} if self.without_gt else self.student.ground_truth_losses(outputs, ground_truth)
        hm, wh, offset = (o.float() for o in outputs)
        p_student = torch.sigmoid(hm)
        for i, (classes, (t_hm, t_wh, t_offset)) in enumerate(zip(self.class_slices, taught, strict=True)):
            p_teacher = torch.sigmoid(t_hm.float())
            index = torch.tensor(classes, device=hm.device)
            mask = peak_mask(p_teacher)
            kd_hm = torch.nn.functional.mse_loss(p_student.index_select(1, index), p_teacher)
            kd_wh = masked_l1_loss(wh, t_wh.float(), mask, self.norm_wh)
            kd_off = masked_l1_loss(offset, t_offset.float(), mask)
            terms[f"loss_kd_hm{i}"] = ("hm", self.weights["hm"] * kd_hm)
            terms[f"loss_kd_wh{i}"] = ("wh", self.weights["wh"] * kd_wh)
            terms[f"loss_kd_off{i}"] = ("off", self.weights["off"] * kd_off)
        # The student's communism, if any, pins the distillation terms too, as CenterX's trainer.
        return self.student.combine(terms)

    @torch.no_grad()
    def predict(self, images: torch.Tensor, max_per_image: int = 100, score_thr: float = 0.01) -> list[dict]:
        return self.student.predict(images, max_per_image, score_thr)

    def state_dict(self, *args, **kwargs):
        """The student's: a distilled checkpoint is a plain CenterNet checkpoint."""
        return self.student.state_dict(*args, **kwargs)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """Into the student (a plain CenterNet checkpoint, e.g. when resuming)."""
        return self.student.load_state_dict(state_dict, strict, assign)


def _check_class_slices(class_slices, teachers, num_classes: int) -> None:
    if len(class_slices) != len(teachers):
        raise ValueError(f"--kd_cls_index gives {len(class_slices)} class slices for {len(teachers)} teachers")
    taught: set[int] = set()
    for i, (classes, teacher) in enumerate(zip(class_slices, teachers, strict=True)):
        if len(classes) != teacher.num_classes:
            raise ValueError(
                f"--kd_cls_index: teacher {i} has {teacher.num_classes} classes but is given {len(classes)}: {classes}"
            )
        if len(set(classes)) != len(classes):
            raise ValueError(f"--kd_cls_index: teacher {i} is given a class twice: {classes}")
        outside = [c for c in classes if not 0 <= c < num_classes]
        if outside:
            raise ValueError(f"--kd_cls_index: classes {outside} of teacher {i} are not among the {num_classes}")
        if taught & set(classes):
            raise ValueError(f"--kd_cls_index: classes {sorted(taught & set(classes))} have two teachers")
        taught |= set(classes)
