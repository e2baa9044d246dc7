"""The ground truth of a batch, padded once: the form every family and every target op reads.

``collate`` builds it on the CPU from the per-image targets; the trainer moves it to the device
once (``ground_truth.to(device)``); models read it as it is, with no further padding or copying.
"""

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class GroundTruth:
    """Padded ground truth of B images.

    boxes        float32 [B, M, 4] (x1, y1, x2, y2) in input pixels (``dets.boxes`` convention)
    labels       int64 [B, M], 0-based classes
    num_boxes    int64 [B]: slots j >= num_boxes[b] of image b are padding (zero boxes, label 0)
    image_sizes  int64 [B, 2], (h, w) of each image before the batch's padding

    M is the most boxes of any image, and at least 1 so that per-image maxima exist.
    """

    boxes: torch.Tensor
    labels: torch.Tensor
    num_boxes: torch.Tensor
    image_sizes: torch.Tensor

    @classmethod
    def from_targets(cls, targets: list[dict], padded_size: tuple[int, int]) -> "GroundTruth":
        """From per-image dicts with 'boxes' [M_i, 4], 'labels' [M_i] and 'size' (h, w); an image
        without 'boxes' has none, one without 'size' is `padded_size`."""
        boxes = [torch.as_tensor(t.get("boxes", torch.zeros(0, 4)), dtype=torch.float32) for t in targets]
        labels = [torch.as_tensor(t.get("labels", torch.zeros(0)), dtype=torch.int64) for t in targets]
        most = max([1, *(len(b) for b in boxes)])
        out_boxes = torch.zeros((len(targets), most, 4), dtype=torch.float32)
        out_labels = torch.zeros((len(targets), most), dtype=torch.int64)
        for i, (b, lab) in enumerate(zip(boxes, labels, strict=True)):
            if b.dim() != 2 or b.shape[-1] != 4 or lab.shape != b.shape[:1]:
                raise ValueError(
                    f"image {i}: boxes must be [M, 4] with labels [M], got {tuple(b.shape)} and {tuple(lab.shape)}"
                )
            out_boxes[i, : len(b)] = b
            out_labels[i, : len(b)] = lab
        return cls(
            out_boxes,
            out_labels,
            torch.tensor([len(b) for b in boxes], dtype=torch.int64),
            torch.tensor([tuple(t.get("size", padded_size)) for t in targets], dtype=torch.int64).view(-1, 2),
        )

    def to(self, device, non_blocking: bool = False) -> "GroundTruth":
        return GroundTruth(*(t.to(device, non_blocking=non_blocking) for t in self._fields()))

    def pin_memory(self) -> "GroundTruth":
        """Called by the DataLoader with pin_memory=True."""
        return GroundTruth(*(t.pin_memory() for t in self._fields()))

    def _fields(self) -> tuple[torch.Tensor, ...]:
        return self.boxes, self.labels, self.num_boxes, self.image_sizes

    def __len__(self) -> int:
        return self.boxes.shape[0]

    @property
    def valid(self) -> torch.Tensor:
        """bool [B, M]: which slots hold a real box."""
        slots = torch.arange(self.boxes.shape[1], device=self.boxes.device)
        return slots[None, :] < self.num_boxes[:, None]
