"""Detections drawn on a video file or a camera stream (demo.py --video / --webcam), decoded and
encoded with PyAV (FFmpeg's libraries)."""

import time
from pathlib import Path

import torch

from dets.data import boxes_to_original, collate
from dets.data.transforms import Sample
from dets.visualize import draw_detections

# Encoders tried in order: H.264 where the FFmpeg build has it, else MPEG-4 part 2 (always there).
CODECS = ("libx264", "mpeg4")
DEFAULT_FPS = 25


def open_input(video: str | None, webcam: int | None):
    """The PyAV container of a video file or of camera N (Video4Linux on Linux)."""
    import av

    if video is not None:
        if not Path(video).is_file():
            raise FileNotFoundError(f"--video: no such file: {video}")
        try:
            return av.open(video)
        except av.error.FFmpegError as exc:
            raise RuntimeError(f"--video {video}: cannot decode it ({exc})") from exc
    device = f"/dev/video{webcam}"
    if not Path(device).exists():
        raise FileNotFoundError(f"--webcam {webcam}: no camera at {device}")
    try:
        return av.open(device, format="v4l2")
    except av.error.FFmpegError as exc:
        raise RuntimeError(f"--webcam {webcam}: cannot open {device} ({exc})") from exc


def _open_output(path: Path, width: int, height: int, fps: int):
    import av

    container = av.open(str(path), mode="w")
    for codec in CODECS:
        try:
            stream = container.add_stream(codec, rate=fps)
            break
        except (av.error.FFmpegError, ValueError):
            continue
    else:
        raise RuntimeError(f"none of the encoders {', '.join(CODECS)} is in this FFmpeg build")
    # Even sizes: the yuv420p encoders need them.
    stream.width, stream.height = width - width % 2, height - height % 2
    stream.pix_fmt = "yuv420p"
    return container, stream


def annotate_stream(
    model,
    source,
    output: Path,
    transforms,
    class_names: list[str],
    device: torch.device,
    *,
    batch_size: int = 1,
    score_thr: float = 0.3,
    max_per_image: int = 100,
    max_frames: int | None = None,
) -> dict:
    """Run `model` over every frame of the PyAV container `source` and write the annotated
    frames to `output`. Returns {"frames", "seconds", "frames_per_s", "output"}; the rate counts
    decoding, pre-processing, the network, post-processing, drawing and encoding."""
    import av

    stream_in = source.streams.video[0]
    fps = int(round(float(stream_in.average_rate))) if stream_in.average_rate else DEFAULT_FPS
    container = stream_out = None
    frames = 0
    start = time.perf_counter()

    def flush(batch: list) -> None:
        nonlocal container, stream_out
        samples = [
            transforms(Sample(image, torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64))) for image, _ in batch
        ]
        targets = [
            {
                "scale": s.scale,
                "offset": s.offset,
                "flipped": s.flipped,
                "orig_size": tuple(image.shape[1:]),
                "size": tuple(s.image.shape[1:]),
            }
            for s, (image, _) in zip(samples, batch, strict=True)
        ]
        images, _, _ = collate([(s.image, t) for s, t in zip(samples, targets, strict=True)], model.size_divisor)
        results = model.predict(images.to(device), max_per_image=max_per_image, score_thr=score_thr)
        for (_, picture), result, target in zip(batch, results, targets, strict=True):
            boxes = boxes_to_original(result["boxes"].cpu(), target)
            drawn = draw_detections(
                picture, boxes, result["labels"].cpu(), result["scores"].cpu(), class_names, score_threshold=score_thr
            )
            if container is None:
                container, stream_out = _open_output(output, drawn.width, drawn.height, fps)
            frame = av.VideoFrame.from_image(drawn.crop((0, 0, stream_out.width, stream_out.height)))
            for packet in stream_out.encode(frame):
                container.mux(packet)

    batch = []
    output.parent.mkdir(parents=True, exist_ok=True)
    try:
        for frame in source.decode(video=0):
            picture = frame.to_image()
            image = torch.from_numpy(frame.to_ndarray(format="rgb24").copy()).permute(2, 0, 1).float()
            batch.append((image, picture))
            frames += 1
            if len(batch) == batch_size:
                flush(batch)
                batch = []
            if max_frames is not None and frames >= max_frames:
                break
        if batch:
            flush(batch)
    except KeyboardInterrupt:
        print(f"dets: interrupted after {frames} frames; closing {output}")
    finally:
        if container is not None:
            for packet in stream_out.encode():
                container.mux(packet)
            container.close()
        source.close()
    seconds = time.perf_counter() - start
    if frames == 0:
        raise RuntimeError("the video has no frames to decode")
    return {"frames": frames, "seconds": seconds, "frames_per_s": frames / seconds, "output": str(output)}
