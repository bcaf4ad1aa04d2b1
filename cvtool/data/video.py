"""Video files in and out with PyAV (FFmpeg ships in its wheels): frames as uint8 tensors.

Decoding yields every frame with its index and time; a file that is not a video, has no
frames or ends early (fewer frames than its header declares, or a decoder error mid-stream)
is an InputError naming it. Writing goes to a hidden ``.part`` file in the destination
folder, renamed over the final name only when the last frame and the audio are in, so a
failure never leaves half a video under that name. The output has the input's container,
size, average frame rate and frame count (H.264, or VP9 for .webm); an audio stream is
copied packet for packet, untouched.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torchvision.transforms.v2.functional import pil_to_tensor, to_pil_image

from cvtool.data.images import load_rgb
from cvtool.errors import InputError

VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".webm", ".mkv")
MUXERS = {".mp4": "mp4", ".mov": "mov", ".avi": "avi", ".webm": "webm", ".mkv": "matroska"}


@dataclass(frozen=True)
class Frame:
    """A decoded frame standing where a task's predict takes an image path: uint8 (3, H, W) pixels."""

    video: str
    index: int
    time: float
    pixels: torch.Tensor

    def __str__(self) -> str:
        return f"{self.video}#{self.index}"


def is_video(path: str | Path) -> bool:
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def pixels_of(source: str | Path | Frame) -> torch.Tensor:
    """uint8 (3, H, W) pixels of an image file or a decoded frame."""
    return source.pixels if isinstance(source, Frame) else pil_to_tensor(load_rgb(source))


def image_of(source: str | Path | Frame) -> Image.Image:
    """The RGB picture of an image file or a decoded frame."""
    return to_pil_image(source.pixels) if isinstance(source, Frame) else load_rgb(source)


@dataclass
class Info:
    """What a video's header says."""

    path: Path
    width: int
    height: int
    rate: Fraction
    frames: int  # 0 when the container does not say
    has_audio: bool
    duration: float = 0.0  # seconds, from the container's header; 0 when it does not say


def _av() -> Any:
    import av

    return av


def _open(path: Path) -> Any:
    av = _av()
    if not path.is_file():
        raise InputError(f"video {path} does not exist" if not path.exists() else f"video {path} is not a file")
    try:
        container = av.open(str(path))
    except (av.FFmpegError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"cannot read video {path}: {exc}") from None
    if not container.streams.video:
        container.close()
        raise InputError(f"{path} holds no video stream")
    return container


def probe(path: str | Path) -> Info:
    path = Path(path)
    container = _open(path)
    try:
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate or Fraction(25)
        if not stream.width or not stream.height:
            raise InputError(f"video {path} does not say its frame size")
        return Info(path, stream.width, stream.height, Fraction(rate), int(stream.frames or 0),
                    bool(container.streams.audio), (container.duration or 0) / 1_000_000)
    finally:
        container.close()


def decode(info: Info) -> Iterator[Frame]:
    """Every frame in order; the checks of the module docstring on the way and at the end."""
    av = _av()
    container = _open(info.path)
    count, end = 0, 0.0
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for frame in container.decode(stream):
            rgb = frame.to_ndarray(format="rgb24")
            if rgb.shape[:2] != (info.height, info.width):
                raise InputError(f"video {info.path} changes its frame size at frame {count} "
                                 f"({rgb.shape[1]}x{rgb.shape[0]} after {info.width}x{info.height})")
            time = float(frame.time) if frame.time is not None else count / float(info.rate)
            yield Frame(str(info.path), count, round(time, 6), torch.from_numpy(rgb).permute(2, 0, 1).contiguous())
            count, end = count + 1, time + 1 / float(info.rate)
    except av.FFmpegError as exc:
        raise InputError(f"video {info.path} is damaged after frame {count}: {exc}") from None
    finally:
        container.close()
    if count == 0:
        raise InputError(f"video {info.path} holds no frames")
    if info.frames and count < info.frames:
        raise InputError(f"video {info.path} is truncated: its header declares {info.frames} frames, "
                         f"only {count} could be decoded")
    # Without a frame count (Matroska, WebM) the header's duration tells; audio may outlast the picture.
    if not info.frames and not info.has_audio and end < info.duration - max(1.0, 0.05 * info.duration):
        raise InputError(f"video {info.path} is truncated: its header says {info.duration:.2f} s, "
                         f"its frames end at {end:.2f} s")


def part_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.part")


class Writer:
    """A video like ``info``'s at ``path``: frames with :meth:`write`, then :meth:`close` (audio, rename)
    or :meth:`abort`. Use it as a context manager: an exception aborts."""

    def __init__(self, path: Path, info: Info):
        av = _av()
        self.path, self.info, self.part = Path(path), info, part_path(Path(path))
        suffix = self.path.suffix.lower()
        if suffix not in MUXERS:
            raise InputError(f"cannot write video {path}: use one of {', '.join(VIDEO_SUFFIXES)}")
        try:
            self.container = av.open(str(self.part), "w", format=MUXERS[suffix])
        except (av.FFmpegError, OSError) as exc:
            raise InputError(f"cannot write video {path}: {exc}") from None
        self.source, self.audio, self.written = None, None, 0
        try:
            self.stream = self.add_video(suffix)
            if info.has_audio:
                self.source = _open(info.path)
                self.audio = self.container.add_stream_from_template(self.source.streams.audio[0])
        except BaseException:
            self.abort()
            raise

    def add_video(self, suffix: str) -> Any:
        info = self.info
        even = info.width % 2 == 0 and info.height % 2 == 0
        codec = "libvpx-vp9" if suffix == ".webm" else "libx264"
        stream = self.container.add_stream(codec, rate=info.rate)
        stream.width, stream.height = info.width, info.height
        stream.pix_fmt = "yuv420p" if even else "yuv444p"  # 4:2:0 needs even sides
        stream.options = {"crf": "18", "preset": "veryfast"} if codec == "libx264" else {"crf": "24", "b:v": "0"}
        return stream

    def write(self, pixels: torch.Tensor) -> None:
        """One uint8 (3, H, W) picture as the next frame."""
        av = _av()
        frame = av.VideoFrame.from_ndarray(pixels.permute(1, 2, 0).contiguous().numpy(), format="rgb24")
        frame.pts = self.written
        for packet in self.stream.encode(frame):
            self.container.mux(packet)
        self.written += 1

    def close(self) -> Path:
        """Flush the encoder, copy the audio packets, and rename into place."""
        for packet in self.stream.encode():
            self.container.mux(packet)
        if self.audio is not None:
            for packet in self.source.demux(self.source.streams.audio[0]):
                if packet.dts is None:
                    continue
                packet.stream = self.audio
                self.container.mux(packet)
            self.source.close()
        self.container.close()
        os.replace(self.part, self.path)
        return self.path

    def abort(self) -> None:
        for handle in (self.container, self.source):
            try:
                if handle is not None:
                    handle.close()
            except Exception:  # noqa: BLE001 - closing after a failure must not hide it
                pass
        self.part.unlink(missing_ok=True)

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, kind: Any, *_: Any) -> None:
        if kind is not None:
            self.abort()
