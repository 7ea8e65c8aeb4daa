#!/usr/bin/env python
"""Write a small, seeded synthetic video set in the layouts of UCF101, DAVIS-2017, JHMDB and VIP.

    python tools/make_synthetic.py OUT [--classes 4 --clips 3 --seed 0 ...]

OUT/UCF-101/<Class>/v_<Class>_gXX_cYY.avi (+ OUT/ucfTrainTestlist/), OUT/DAVIS/, OUT/JHMDB/, OUT/VIP/.
Content: textured objects over a textured panning background. With --motion wander (the default) they
wander with bursts of speed (up to ~3x the mean, e.g. 14 px / frame at 240 px high) and sudden turns,
cross and occlude each other, change scale, spin and brightness on their own, and share the scene with
unlabelled look-alike distractors; --motion smooth gives the older gentle Lissajous paths. Masks and
keypoints are exact. The same options always give the same files.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import click
import numpy as np

from siammae_common.cli_types import COUNT, NON_NEGATIVE, SEED, OneLineCommand, finite, width_height
from siammae_common.console import UserError, info, progress
from tools.synthetic.datasets import CLASS_NAMES, JHMDB_ACTIONS, VideoSpec, make_video
from tools.synthetic.realism import Realism

SETS = ("ucf", "davis", "jhmdb", "vip")
_SET_IDS = {name: i for i, name in enumerate(SETS)}


@dataclass(frozen=True)
class SyntheticConfig:
    """Sizes and counts of every set. Sizes are (width, height); frame ranges are inclusive."""

    seed: int = 0
    sets: tuple[str, ...] = SETS
    ucf_classes: int = 4
    ucf_clips_per_class: int = 3
    ucf_size: tuple[int, int] = (320, 240)
    ucf_frames: tuple[int, int] = (40, 200)
    ucf_fps: int = 25
    davis_sequences: int = 3
    davis_size: tuple[int, int] = (428, 240)
    davis_frames: tuple[int, int] = (30, 50)
    jhmdb_actions: int = 2
    jhmdb_videos_per_action: int = 2
    jhmdb_size: tuple[int, int] = (320, 240)
    jhmdb_frames: tuple[int, int] = (20, 40)
    vip_videos: int = 2
    vip_size: tuple[int, int] = (320, 240)
    vip_frames: tuple[int, int] = (20, 30)
    motion: str = "wander"                      # "wander" | "smooth" (see module docstring)
    speed: float = 0.02                         # DAVIS / JHMDB / VIP mean object speed (wander: of the short
                                                # side per frame); UCF classes span 0.5x..1.5x of it
    distractors: int = 1                        # most unlabelled look-alikes per video (0..this, by index)
    ucf_object_size: float = 0.16               # object radius, fraction of the frame's short side
    davis_object_size: float = 0.16
    shading: float = 0.0                        # every set: tools.synthetic.realism (0 = off)
    deform: float = 0.0
    noise: float = 0.0


def ucf_clip_names(n_clips: int) -> list[tuple[int, int]]:
    """(group, clip) numbers for a class; one clip per group below 4 clips so both splits get some."""
    per_group = 2 if n_clips >= 4 else 1
    return [(i // per_group + 1, i % per_group + 1) for i in range(n_clips)]


def ucf_test_groups(n_groups: int) -> int:
    """Groups 1..k form the test split (UCF101 split 1: 7 of 25 groups)."""
    return max(1, round(n_groups * 7 / 25)) if n_groups > 1 else 0


def plan(out: Path, cfg: SyntheticConfig) -> list[VideoSpec]:
    """Every video to make, each with its own seed derived from (seed, set, index)."""
    specs: list[VideoSpec] = []

    def length(set_name: str, i: int, frames: tuple[int, int]) -> int:
        rng = np.random.default_rng([cfg.seed, _SET_IDS[set_name], i, 1])
        return int(rng.integers(frames[0], frames[1] + 1))

    def seed(set_name: str, i: int) -> tuple[int, ...]:
        return (cfg.seed, _SET_IDS[set_name], i)

    smooth = cfg.motion == "smooth"
    motion = {"motion": cfg.motion, "realism": Realism(cfg.shading, cfg.deform, cfg.noise)}
    if "ucf" in cfg.sets:
        for c, cls in enumerate(CLASS_NAMES[:cfg.ucf_classes]):
            # classes differ in motion speed (smooth: the original 0.03..0.07 rad / frame)
            pace = c / max(1, cfg.ucf_classes - 1)
            speed = 0.03 + 0.04 * pace if smooth else cfg.speed * (0.5 + pace)
            for j, (g, k) in enumerate(ucf_clip_names(cfg.ucf_clips_per_class)):
                i = c * 1000 + j
                specs.append(VideoSpec("ucf", str(out), f"{cls}/v_{cls}_g{g:02d}_c{k:02d}.avi",
                                       *cfg.ucf_size, length("ucf", i, cfg.ucf_frames), seed("ucf", i),
                                       n_objects=1 + (c + j) % 3, speed=speed, fps=cfg.ucf_fps, audio=j % 2 == 1,
                                       distractors=(c + 2 * j) % (cfg.distractors + 1),
                                       object_size=cfg.ucf_object_size, **motion))
    speed = 0.05 if smooth else cfg.speed
    for i in range(cfg.davis_sequences if "davis" in cfg.sets else 0):
        specs.append(VideoSpec("davis", str(out), f"synth-{i:02d}", *cfg.davis_size,
                               length("davis", i, cfg.davis_frames), seed("davis", i), n_objects=1 + i % 3,
                               speed=speed, distractors=(i // 3) % (cfg.distractors + 1),
                               object_size=cfg.davis_object_size, **motion))
    for a in range(cfg.jhmdb_actions if "jhmdb" in cfg.sets else 0):
        for v in range(cfg.jhmdb_videos_per_action):
            i = a * 1000 + v
            specs.append(VideoSpec("jhmdb", str(out), f"{JHMDB_ACTIONS[a]}/{JHMDB_ACTIONS[a]}_synth_{v}",
                                   *cfg.jhmdb_size, length("jhmdb", i, cfg.jhmdb_frames), seed("jhmdb", i),
                                   n_objects=2, speed=speed, object_size=0.28, **motion))
    for i in range(cfg.vip_videos if "vip" in cfg.sets else 0):
        specs.append(VideoSpec("vip", str(out), f"videos{i + 1}", *cfg.vip_size,
                               length("vip", i, cfg.vip_frames), seed("vip", i), n_objects=3 + i % 2,
                               speed=speed, distractors=i % (cfg.distractors + 1), **motion))
    return specs


def write_lists(out: Path, cfg: SyntheticConfig, specs: list[VideoSpec]) -> None:
    """Split files of every set, in each dataset's own format."""
    if "ucf" in cfg.sets:
        lists = out / "ucfTrainTestlist"
        lists.mkdir(parents=True, exist_ok=True)
        classes = CLASS_NAMES[:cfg.ucf_classes]
        (lists / "classInd.txt").write_text("".join(f"{i + 1} {c}\n" for i, c in enumerate(classes)))
        n_groups = max(g for g, _ in ucf_clip_names(cfg.ucf_clips_per_class))
        train, test = [], []
        for s in (s for s in specs if s.kind == "ucf"):
            cls = s.name.split("/")[0]
            group = int(s.name.split("_g")[-1][:2])
            if group <= ucf_test_groups(n_groups):
                test.append(f"{s.name}\n")
            else:
                train.append(f"{s.name} {classes.index(cls) + 1}\n")
        for split in (1, 2, 3):       # one synthetic split, written under all three names UCF101 has
            (lists / f"trainlist0{split}.txt").write_text("".join(train))
            (lists / f"testlist0{split}.txt").write_text("".join(test))
    if "davis" in cfg.sets:
        sets = out / "DAVIS" / "ImageSets" / "2017"
        sets.mkdir(parents=True, exist_ok=True)
        names = "".join(f"{s.name}\n" for s in specs if s.kind == "davis")
        (sets / "val.txt").write_text(names)
        (sets / "train.txt").write_text(names)
    if "jhmdb" in cfg.sets:
        splits = out / "JHMDB" / "splits"
        splits.mkdir(parents=True, exist_ok=True)
        for a in range(cfg.jhmdb_actions):
            action = JHMDB_ACTIONS[a]
            videos = [s.name.split("/")[1] for s in specs if s.kind == "jhmdb" and s.name.startswith(action + "/")]
            # half train (1), half test (2); with one video it is a test video
            lines = [f"{v}.avi {2 if k % 2 == 0 else 1}\n" for k, v in enumerate(videos)]
            (splits / f"{action}_test_split1.txt").write_text("".join(lines))
    if "vip" in cfg.sets:
        lists = out / "VIP" / "lists"
        lists.mkdir(parents=True, exist_ok=True)
        (lists / "val_videos.txt").write_text("".join(f"{s.name}\n" for s in specs if s.kind == "vip"))


def make_synthetic(out: Path, cfg: SyntheticConfig = SyntheticConfig(), workers: int | None = None,
                   show_progress: bool | None = None) -> dict[str, int]:
    """Write the whole set under `out`; returns videos and frames per set."""
    out.mkdir(parents=True, exist_ok=True)
    specs = plan(out, cfg)
    workers = workers or os.cpu_count() or 1
    counts = {f"{k}_{what}": 0 for k in cfg.sets for what in ("videos", "frames")}
    bar = progress(total=len(specs), desc="synthetic", unit="video", disable=None if show_progress else True)
    with ProcessPoolExecutor(max_workers=min(workers, max(1, len(specs)))) as pool:
        for spec, n in zip(specs, pool.map(make_video, specs)):
            counts[f"{spec.kind}_videos"] += 1
            counts[f"{spec.kind}_frames"] += n
            bar.update(1)
    bar.close()
    write_lists(out, cfg, specs)
    return counts


def _size(value: str) -> tuple[int, int]:
    w, h = width_height(value)
    if w < 16 or h < 16 or w % 2 or h % 2:
        raise click.BadParameter(f"{value!r}: width and height must be even and at least 16")
    return w, h


def _range(value: str) -> tuple[int, int]:
    try:
        lo, hi = (int(v) for v in value.split("-")) if "-" in value else (int(value),) * 2
    except ValueError:
        raise click.BadParameter(f"{value!r} is not MIN-MAX, e.g. 40-200") from None
    if not 1 <= lo <= hi:
        raise click.BadParameter(f"{value!r}: need 1 <= MIN <= MAX")
    return lo, hi


@click.command(cls=OneLineCommand, context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--seed", type=SEED, default=0, show_default=True, help="Everything derives from it.")
@click.option("--sets", default=",".join(SETS), show_default=True, help="Which sets to write.")
@click.option("--classes", "ucf_classes", type=click.IntRange(1, len(CLASS_NAMES)), default=4, show_default=True, help=f"UCF classes (max {len(CLASS_NAMES)}).")
@click.option("--clips", "ucf_clips_per_class", type=COUNT, default=3, show_default=True, help="UCF clips per class.")
@click.option("--size", "ucf_size", default="320x240", show_default=True, help="UCF frame size.")
@click.option("--frames", "ucf_frames", default="40-200", show_default=True, help="UCF clip lengths.")
@click.option("--fps", "ucf_fps", type=COUNT, default=25, show_default=True, help="UCF frame rate.")
@click.option("--davis-seqs", "davis_sequences", type=COUNT, default=3, show_default=True)
@click.option("--davis-size", default="428x240", show_default=True)
@click.option("--davis-frames", default="30-50", show_default=True)
@click.option("--jhmdb-actions", type=click.IntRange(1, len(JHMDB_ACTIONS)), default=2, show_default=True, help=f"max {len(JHMDB_ACTIONS)}")
@click.option("--jhmdb-videos", "jhmdb_videos_per_action", type=COUNT, default=2, show_default=True, help="per action")
@click.option("--jhmdb-size", default="320x240", show_default=True)
@click.option("--jhmdb-frames", default="20-40", show_default=True)
@click.option("--vip-videos", type=COUNT, default=2, show_default=True)
@click.option("--vip-size", default="320x240", show_default=True)
@click.option("--vip-frames", default="20-30", show_default=True)
@click.option("--motion", type=click.Choice(["wander", "smooth"]), default="wander", show_default=True,
              help="wander: bursts, sudden turns, crossings, look-alike distractors; smooth: gentle paths.")
@click.option("--speed", type=NON_NEGATIVE, default=0.02, show_default=True,
              help="Mean object speed (wander), fraction of the short side per frame; UCF classes 0.5x..1.5x.")
@click.option("--distractors", type=click.IntRange(0, 5), default=1, show_default=True,
              help="Most unlabelled look-alike objects per video (wander).")
@click.option("--object-size", "ucf_object_size", type=finite(0.02, 0.5), default=0.16, show_default=True,
              help="UCF object radius, fraction of the short side.")
@click.option("--davis-object-size", type=finite(0.02, 0.5), default=0.16, show_default=True,
              help="DAVIS object radius, fraction of the short side.")
@click.option("--shading", type=finite(0, 0.9), default=0.0, show_default=True,
              help="Light falling across each object from a turning direction: brightness swing (0.3 = +-30%).")
@click.option("--deform", type=finite(0, 0.5), default=0.0, show_default=True,
              help="Objects bend and flex: amplitude as a fraction of their radius.")
@click.option("--noise", type=finite(0, 50), default=0.0, show_default=True,
              help="Sensor noise, new every frame: standard deviation in 8-bit levels.")
@click.option("--num-workers", "--workers", "workers", type=COUNT, default=None, help="Processes (default: all cores).")
def main(out: Path, workers: int | None, sets: str, **opts) -> None:
    """Write a synthetic UCF101 / DAVIS-2017 / JHMDB / VIP set under OUT."""
    chosen = tuple(s.strip() for s in sets.split(",") if s.strip())
    if unknown := [s for s in chosen if s not in SETS]:
        raise UserError(f"--sets: unknown set(s) {', '.join(unknown)}; choose from {', '.join(SETS)}")
    if not 1 <= opts["ucf_classes"] <= len(CLASS_NAMES):
        raise UserError(f"--classes must be 1..{len(CLASS_NAMES)}")
    if not 1 <= opts["jhmdb_actions"] <= len(JHMDB_ACTIONS):
        raise UserError(f"--jhmdb-actions must be 1..{len(JHMDB_ACTIONS)}")
    for key in ("ucf_size", "davis_size", "jhmdb_size", "vip_size"):
        opts[key] = _size(opts[key])
    for key in ("ucf_frames", "davis_frames", "jhmdb_frames", "vip_frames"):
        opts[key] = _range(opts[key])
    cfg = replace(SyntheticConfig(), sets=chosen, **opts)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"{out}: cannot create output folder ({e.strerror})") from None
    start = time.perf_counter()
    counts = make_synthetic(out, cfg, workers)
    summary = ", ".join(f"{k} {counts[k + '_videos']} videos / {counts[k + '_frames']} frames" for k in cfg.sets)
    info(f"{out}: {summary} in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
