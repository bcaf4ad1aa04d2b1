"""``predict`` on a video: decode, run the task's own predict on batches of frames, encode.

Every family's predict takes decoded frames (cvtool.data.video.Frame) where it takes
image paths, and returns each frame's record with a ``picture``: boxes drawn (detectors),
masks overlaid (segmenters), the top class written (classifiers), the stylised frame
(style networks). This module only streams frames through it: every Nth frame is run
(``every``), each output stands for the frames up to the next one, so the video keeps
its frame count, size and rate; one JSON line per processed frame. Style networks may
smooth their output over time (cvtool.ops.temporal), and report the flicker either way.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from cvtool.data import video
from cvtool.engine.progress import Reporter
from cvtool.errors import InputError
from cvtool.files import atomic_write, json_text
from cvtool.ops import temporal
from cvtool.tasks import outputs
from cvtool.tasks.registry import TaskSpec

WHAT = {"classify": "classes", "detect": "boxes", "segment": "overlay", "style": "styled"}
BATCH = 8  # frames per call of the task's predict


def targets(spec: TaskSpec, source: Path, out: Path, overwrite: bool) -> tuple[Path, Path]:
    """``out/<stem>_<what><suffix>`` and its ``.jsonl``; refused up front if there or not writable."""
    what = WHAT[spec.family]
    movie = out / f"{source.stem}_{what}{source.suffix.lower()}"
    lines = out / f"{source.stem}_{what}.jsonl"
    outputs.refuse_existing([movie, lines], overwrite)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = video.part_path(movie)
        probe.touch()
        probe.unlink()
    except OSError as exc:
        raise InputError(f"cannot write to --out {out}: {exc.strerror or exc}") from None
    return movie, lines


@dataclass
class Steadiness:
    """Optional temporal smoothing of style outputs, and the flicker with and without it."""

    strength: float | None
    previous: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None  # input, raw output, shown output
    raw: list[float] = field(default_factory=list)
    shown: list[float] = field(default_factory=list)

    def __call__(self, frame: video.Frame, picture: torch.Tensor) -> torch.Tensor:
        shown = picture
        if self.previous is not None:
            before_in, before_raw, before_shown = self.previous
            if self.strength:
                shown = temporal.blend(before_shown, picture,
                                       temporal.blend_weight(before_in, frame.pixels, self.strength))
            self.raw.append(temporal.flicker(before_raw, picture))
            self.shown.append(temporal.flicker(before_shown, shown))
        self.previous = (frame.pixels, picture, shown)
        return shown

    def report(self) -> dict[str, Any]:
        mean = lambda v: round(sum(v) / len(v), 4) if v else 0.0  # noqa: E731
        return {"raw": mean(self.raw), "smoothed": mean(self.shown) if self.strength else None,
                "strength": self.strength, "unit": "mean |frame t - frame t-1|, 0..255 levels"}


class Run:
    """One video through one model: queued frames out in order, each processed output held for
    the skipped frames after it."""

    def __init__(self, spec: TaskSpec, predict: Any, writer: video.Writer, every: int, smooth: float | None):
        self.spec, self.predict, self.writer, self.every = spec, predict, writer, every
        self.steady = Steadiness(smooth) if spec.family == "style" else None
        self.queue: list[video.Frame] = []
        self.lines: list[str] = []
        self.held: torch.Tensor | None = None
        self.processed = 0

    def add(self, frame: video.Frame) -> None:
        self.queue.append(frame)
        if sum(f.index % self.every == 0 for f in self.queue) >= BATCH:
            self.flush()

    def flush(self) -> None:
        chosen = [f for f in self.queue if f.index % self.every == 0]
        results = iter(self.predict(chosen) if chosen else [])
        for frame in self.queue:
            if frame.index % self.every == 0:
                result = next(results)
                picture = result.pop("picture")
                if self.steady is not None:
                    picture = self.steady(frame, picture)
                self.held = picture
                result.pop("image", None)
                self.lines.append(json_text({"frame": frame.index, "time": frame.time, **result}))
                self.processed += 1
            self.writer.write(self.held)
        self.queue = []


@dataclass
class Plan:
    """A video checked before any work: its header and the two files it will become."""

    info: video.Info
    movie: Path
    lines: Path


def plan(spec: TaskSpec, source: Path, out: Path, overwrite: bool) -> Plan:
    if spec.family not in WHAT:
        raise InputError(f"{spec.command} has no video predict")
    info = video.probe(source)
    return Plan(info, *targets(spec, source, out, overwrite))


def predict_video(spec: TaskSpec, model: Any, cfg: Any, metadata: dict[str, Any], planned: Plan,
                  device: torch.device, options: dict[str, Any], every: int = 1,
                  smooth: float | None = None, reporter: Reporter | None = None) -> dict[str, Any]:
    """Write ``out/<stem>_<what><suffix>`` and ``<stem>_<what>.jsonl`` for one planned video; the summary."""
    reporter = reporter or Reporter(quiet=True)
    info, movie, lines = planned.info, planned.movie, planned.lines
    source = info.path
    frame_options = {k: v for k, v in options.items() if k not in ("out", "overwrite")}
    predict = lambda frames: spec.predict(model, cfg, metadata, frames, device, frame_options)  # noqa: E731
    started = time.perf_counter()
    reporter.start_bar(source.name, info.frames or None, bar_width=20)  # type: ignore[arg-type]
    try:
        with video.Writer(movie, info) as writer:
            run = Run(spec, predict, writer, every, smooth)
            for frame in video.decode(info):
                run.add(frame)
                reporter.step(f"{(frame.index + 1) / max(time.perf_counter() - started, 1e-9):.1f} frames/s")
            run.flush()
            writer.close()
    finally:
        reporter.stop_bar()
    try:
        atomic_write(lines, "".join(line + "\n" for line in run.lines))
    except OSError as exc:
        os.unlink(movie)
        raise InputError(f"cannot write {lines}: {exc.strerror or exc}") from None
    seconds = time.perf_counter() - started
    result = {"video": str(source), "output": str(movie), "jsonl": str(lines), "frames": writer.written,
              "processed": run.processed, "every": every, "size": [info.height, info.width],
              "rate": float(info.rate), "audio": info.has_audio, "seconds": round(seconds, 3),
              "frames_per_second": round(writer.written / max(seconds, 1e-9), 2)}
    if run.steady is not None:
        result["flicker"] = run.steady.report()
    return result
