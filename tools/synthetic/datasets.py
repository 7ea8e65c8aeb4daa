"""Writers of the synthetic sets in the real datasets' layouts: UCF101, DAVIS-2017, JHMDB and VIP.

Each writer renders one video from its own seed, so videos can be made in parallel, in any order,
and always come out the same.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.io
from PIL import Image

from evaluation.dataset_io import write_id_png
from tools.synthetic.realism import NO_REALISM, Realism
from tools.synthetic.render import random_scene

CLASS_NAMES = [
    "BouncingBlobs", "DriftingStripes", "OrbitingShapes", "ZoomingDisks", "SpinningBoxes", "CrossingPairs",
    "SlowPanning", "FastChase", "WobblyCrowd", "DancingDots", "RollingEggs", "SlidingTiles",
    "FloatingLeaves", "HoppingStones", "TwirlingRings", "WavingFlags", "SwayingReeds", "CirclingBirds",
    "GlidingBoats", "JugglingBalls",
]
JHMDB_ACTIONS = ["brush_hair", "catch", "clap", "climb_stairs", "golf", "jump", "kick_ball", "pick", "pour",
                 "pullup", "push", "run", "shoot_ball", "shoot_bow", "shoot_gun", "sit", "stand",
                 "swing_baseball", "throw", "walk", "wave"]
N_JOINTS = 15
VIP_CLASSES = 20


@dataclass(frozen=True)
class VideoSpec:
    """One video to make: which set, its output path(s), size, length, seed and set-specific extras."""

    kind: str                     # "ucf" | "davis" | "jhmdb" | "vip"
    root: str                     # OUT
    name: str                     # relative name inside the set (class/file, sequence, action/video)
    width: int
    height: int
    n_frames: int
    seed: tuple[int, ...]
    n_objects: int = 2
    speed: float = 0.02           # wander: mean speed, fraction of the short side / frame; smooth: rad / frame
    fps: int = 25
    audio: bool = False
    motion: str = "wander"        # "wander" (bursts, turns, crossings) | "smooth" (gentle Lissajous paths)
    distractors: int = 0          # unlabelled look-alikes of the labelled objects (wander only)
    object_size: float = 0.16     # object radius, fraction of the short side
    realism: Realism = NO_REALISM  # shading, bending, sensor noise (all off by default)


def scene_for(spec: VideoSpec, rng: np.random.Generator):
    """The scene a spec describes, drawn from `rng` (seeded with spec.seed)."""
    wander = spec.motion == "wander"
    return random_scene(rng, spec.width, spec.height, spec.n_objects, speed=spec.speed,
                        object_size=min(spec.width, spec.height) * spec.object_size,
                        n_frames=spec.n_frames if wander else None,
                        distractors=spec.distractors if wander else 0, pan_speed=1.5 if wander else 0.6,
                        realism=spec.realism, effects_seed=spec.seed)


def make_video(spec: VideoSpec) -> int:
    """Render and write one video of any kind; returns its frame count."""
    rng = np.random.default_rng(list(spec.seed))
    scene = scene_for(spec, rng)
    writer = {"ucf": _write_ucf, "davis": _write_davis, "jhmdb": _write_jhmdb, "vip": _write_vip}[spec.kind]
    writer(spec, scene, rng)
    return spec.n_frames


def _write_ucf(spec: VideoSpec, scene, rng: np.random.Generator) -> None:
    """An mpeg4 AVI (like UCF101's DivX files), optionally with an audio track."""
    import imageio_ffmpeg  # here, not at the top: the other sets need no ffmpeg (a GPU machine may lack it)

    out = Path(spec.root) / "UCF-101" / spec.name
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-v", "error", "-f", "rawvideo", "-pix_fmt", "rgb24",
           "-s", f"{spec.width}x{spec.height}", "-r", str(spec.fps), "-i", "pipe:0"]
    if spec.audio:
        cmd += ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=22050:duration={spec.n_frames / spec.fps}"]
    cmd += ["-map", "0:v"] + (["-map", "1:a", "-c:a", "aac", "-b:a", "32k"] if spec.audio else [])
    cmd += ["-c:v", "mpeg4", "-vtag", "XVID", "-q:v", "4", "-g", "25", "-pix_fmt", "yuv420p", str(out)]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    for t in range(spec.n_frames):
        proc.stdin.write(scene.render(t)[0].tobytes())
    _, err = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"ffmpeg failed writing {out}: {err.decode(errors='replace').strip()}")


def _write_davis(spec: VideoSpec, scene, rng: np.random.Generator) -> None:
    """JPEG frames + palette PNG masks (ids 1..n_objects) named 00000.jpg / 00000.png."""
    img_dir = Path(spec.root) / "DAVIS" / "JPEGImages" / "480p" / spec.name
    ann_dir = Path(spec.root) / "DAVIS" / "Annotations" / "480p" / spec.name
    img_dir.mkdir(parents=True, exist_ok=True)
    ann_dir.mkdir(parents=True, exist_ok=True)
    for t in range(spec.n_frames):
        frame, ids = scene.render(t)
        Image.fromarray(frame).save(img_dir / f"{t:05d}.jpg", quality=90)
        write_id_png(ann_dir / f"{t:05d}.png", ids)     # the DAVIS writer: palette PNG of object ids


def joint_points(rng: np.random.Generator, radius_x: float, radius_y: float) -> np.ndarray:
    """15 'joints' at fixed places on the carrying object's surface, object coordinates [15, 2]."""
    angle = rng.uniform(0, 2 * np.pi, N_JOINTS)
    r = np.sqrt(rng.uniform(0.0, 0.7, N_JOINTS))
    return np.stack([r * radius_x * np.cos(angle), r * radius_y * np.sin(angle)], axis=1)


def _write_jhmdb(spec: VideoSpec, scene, rng: np.random.Generator) -> None:
    """PNG frames 00001.png.. + joint_positions.mat (pos_img 2x15xT, MATLAB 1-based pixel coordinates)."""
    action, video = spec.name.split("/")
    root = Path(spec.root) / "JHMDB"
    img_dir = root / "Rename_Images" / action / video
    pos_dir = root / "joint_positions" / action / video
    img_dir.mkdir(parents=True, exist_ok=True)
    pos_dir.mkdir(parents=True, exist_ok=True)
    body = scene.objects[0]                      # drawn first: later objects may occlude it
    body.damp(0.5)                               # keep the joints mostly inside the frame
    points = joint_points(rng, body.radius_x, body.radius_y)
    pos = np.zeros((2, N_JOINTS, spec.n_frames))
    for t in range(spec.n_frames):
        Image.fromarray(scene.render(t)[0]).save(img_dir / f"{t + 1:05d}.png")
        pos[:, :, t] = body.to_image(points, t).T + 1.0
    world = pos / np.array([spec.width, spec.height])[:, None, None]
    scipy.io.savemat(pos_dir / "joint_positions.mat",
                     {"pos_img": pos, "pos_world": world, "scale": np.ones((1, spec.n_frames)),
                      "viewpoint": np.array(["E"] * spec.n_frames, dtype=object)})


def _write_vip(spec: VideoSpec, scene, rng: np.random.Generator) -> None:
    """JPEG frames + single-channel PNGs of class ids 0..19 (0 = background), VIP_Fine's layout."""
    root = Path(spec.root) / "VIP"
    img_dir = root / "Images" / spec.name
    ann_dir = root / "Annotations" / "Category_ids" / spec.name
    img_dir.mkdir(parents=True, exist_ok=True)
    ann_dir.mkdir(parents=True, exist_ok=True)
    lut = np.zeros(256, np.uint8)
    lut[1:spec.n_objects + 1] = rng.choice(np.arange(1, VIP_CLASSES), spec.n_objects, replace=False)
    for t in range(spec.n_frames):
        frame, ids = scene.render(t)
        Image.fromarray(frame).save(img_dir / f"{t + 1:012d}.jpg", quality=90)
        Image.fromarray(lut[ids], mode="L").save(ann_dir / f"{t + 1:012d}.png")
