"""Propagation settings and the named protocols that fix them: `cropmae` (CRW / CropMAE) and `dino`.

A protocol is the complete recipe of a reference implementation: context, affinity, label handling,
input size and the resizes around the propagation. `protocol_settings(name, task=...)` returns it for
DAVIS, JHMDB or VIP; keyword overrides change single settings (and are recorded like the rest).

cropmae: the evaluation code of CRW (ajabri/videowalk) as adapted to ViTs by CropMAE, the code the
    SiamMAE lineage reports with. The video is padded in front with copies of the first frame, so the
    context of target t is frame 0 (unrestricted) plus the `queue` frames before t, frame 0 standing in
    for those before the start; a circular window of radius 20 patches on the short-term frames; top-7;
    softmax(cosine / 0.7). Labels: the annotation resized to the input size (nearest), one-hot,
    bilinear to the feature grid. Output: soft labels bilinear to the input size, argmax, nearest
    resize to the annotation's size. DAVIS at 480x880, JHMDB at 320x320 (Gaussians placed with int(),
    joints decoded from the top-5 cells), VIP with the long side at 880 and top-10.
dino: DINO's eval_video_segmentation.py. Context = frame 0 + the 7 previous frames; a square window of
    ±12 patches on every context frame; top-5 (with every affinity tied with the 5th); temperature 0.1; short side 480 with the long side
    floored to a multiple of 64, frames resized as 8-bit images, std 0.228 for red as in its script;
    the annotation downsampled to the grid by centre-sampled nearest (PIL's NEAREST); output bilinear
    to the input size, each label channel min-max normalised, argmax, centre-sampled nearest resize.
    DINO's script covers DAVIS only; on JHMDB and VIP the same rules apply.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import asdict, dataclass
from typing import Any

from evaluation.nearest import NEAREST_RULES
from siammae_common.console import UserError
from siammae_common.constants import IMAGENET_STD

PROTOCOLS: tuple[str, ...] = ("cropmae", "dino")
TASKS: tuple[str, ...] = ("davis", "jhmdb", "vip")
DEFAULT_PROTOCOL = "cropmae"
LABEL_DOWNSAMPLES: tuple[str, ...] = ("bilinear", "nearest", "nearest-centre", "area")


@dataclass(frozen=True)
class PropagationSettings:
    """Everything that changes a propagation result; recorded beside every metric.

    Resize rules: "nearest" takes source pixel floor(i · in/out) (cv2 INTER_NEAREST); "nearest-centre"
    samples the cell centre, floor((i + ½) · in/out) (PIL NEAREST); bilinear is half-pixel, no antialias.
    """

    protocol: str = DEFAULT_PROTOCOL
    queue: int = 20                 # short-term context frames (plus the first frame, always)
    pad_first_frame: bool = True    # CRW: before the start, copies of frame 0 fill the short-term context
    radius: float = 20.0            # local window, in patches
    window: str = "circle"          # "circle": distance < radius (CRW/CropMAE); "square": |Δ| ≤ radius (DINO)
    window_on_first_frame: bool = False  # CRW/CropMAE leave the first frame unrestricted; DINO restricts it
    topk: int = 7                   # affinities kept per target patch, over all context frames jointly
    keep_ties: bool = False         # also keep every affinity equal to the k-th (DINO thresholds at it)
    temperature: float = 0.7        # softmax(top-k cosine / temperature)
    labels_at_input_size: bool = True   # annotation resized ("nearest") to the input size before one-hot
    label_downsample: str = "bilinear"  # one-hot labels → feature grid: bilinear | nearest | nearest-centre | area
    norm_mask: bool = False         # min-max normalise each upsampled label channel before the argmax (DINO)
    output_resize: str = "nearest"  # argmax at the input size → annotation size: nearest | nearest-centre
    first_frame_output: str = "round-trip"  # frame 0's output: its labels through the grid, or "ground-truth"
    pose_placement: str = "int"     # JHMDB Gaussian corner: int() truncation (CRW) or floor
    pose_topk: int = 5              # JHMDB: cells averaged per joint when decoding
    short_side: int | None = None   # input resize: short side to this ...
    long_side: int | None = None    # ... or long side to this (VIP) ...
    fixed_size: tuple[int, int] | None = (480, 880)  # ... or exactly (H, W); all None: native size
    size_multiple: int = 64         # the free side(s) floored to a multiple of this
    resize_uint8: bool = False      # resized frames rounded to whole 8-bit levels (DINO resizes uint8 images)
    input_std: tuple[float, float, float] = IMAGENET_STD  # DINO's script uses 0.228 for red
    batch_size: int = 8             # frames per encoder call
    device: str = "cpu"

    def __post_init__(self) -> None:
        choices = {"window": ("circle", "square"), "label_downsample": LABEL_DOWNSAMPLES,
                   "output_resize": NEAREST_RULES, "first_frame_output": ("round-trip", "ground-truth"),
                   "pose_placement": ("int", "floor")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} {getattr(self, name)!r}: expected one of {', '.join(allowed)}")
        for name, low in (("queue", 0), ("topk", 1), ("pose_topk", 1), ("batch_size", 1), ("size_multiple", 1)):
            if getattr(self, name) < low:
                raise ValueError(f"{name} {getattr(self, name)}: must be at least {low}")
        for name in ("temperature", "radius"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) > 0):   # NaN fails both
                raise ValueError(f"{name} {getattr(self, name)}: must be a finite number above 0")
        sides = {"short_side": self.short_side, "long_side": self.long_side, "fixed_size": self.fixed_size}
        for name, value in sides.items():
            if value is not None and min(value if isinstance(value, tuple) else (value,)) < 1:
                raise ValueError(f"{name} {value}: sizes must be at least 1 pixel")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_DINO: dict[str, Any] = {
    "queue": 7, "pad_first_frame": False, "radius": 12.0, "window": "square", "window_on_first_frame": True,
    "topk": 5, "keep_ties": True, "temperature": 0.1, "labels_at_input_size": False, "label_downsample": "nearest-centre",
    "norm_mask": True, "output_resize": "nearest-centre", "first_frame_output": "ground-truth",
    "short_side": 480, "long_side": None, "fixed_size": None, "size_multiple": 64, "resize_uint8": True,
    "input_std": (0.228, 0.224, 0.225),
}
_PROTOCOL_TASKS: dict[str, dict[str, dict[str, Any]]] = {
    "cropmae": {
        "davis": {},
        "jhmdb": {"fixed_size": (320, 320)},
        # CRW's eval_vip.py brings predictions to the annotation's size with PIL's NEAREST
        "vip": {"fixed_size": None, "long_side": 880, "topk": 10, "output_resize": "nearest-centre"},
    },
    "dino": {"davis": _DINO, "jhmdb": _DINO, "vip": _DINO},
}


def protocol_settings(name: str = DEFAULT_PROTOCOL, task: str = "davis", **overrides: Any) -> PropagationSettings:
    """The settings of protocol `name` ("cropmae" or "dino") for `task` (davis, jhmdb, vip), with overrides.

    Raises ValueError for an unknown protocol, task or setting value, TypeError for an unknown setting.
    """
    if name not in _PROTOCOL_TASKS:
        raise ValueError(f"unknown protocol {name!r}: expected one of {', '.join(PROTOCOLS)}")
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}: expected one of {', '.join(TASKS)}")
    known = {f.name for f in dataclasses.fields(PropagationSettings)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise TypeError(f"unknown propagation setting(s): {', '.join(unknown)}")
    return PropagationSettings(**{"protocol": name, **_PROTOCOL_TASKS[name][task], **overrides})


def eval_size(height: int, width: int, settings: PropagationSettings, patch: int) -> tuple[int, int]:
    """The encoder's input size (H, W) for a frame of `height × width`; both divisible by `patch`.

    fixed_size wins, then long_side, then short_side (the other side scaled and floored to
    size_multiple, as DINO and CropMAE compute it); with none of them the native size, floored.
    """
    multiple = max(patch, settings.size_multiple // patch * patch)

    def floor(x: float) -> int:
        return max(multiple, int(x // multiple) * multiple)

    if settings.fixed_size is not None:
        h, w = settings.fixed_size
        if h % patch or w % patch:
            raise UserError(f"input size {h}x{w} is not divisible by the patch size {patch}")
        return h, w
    if settings.long_side is not None:
        side = settings.long_side
        if side % patch:
            raise UserError(f"long side {side} is not divisible by the patch size {patch}")
        # the other side as CropMAE computes it: other * long / side, floored
        return (side, floor(width * side / height)) if height >= width else (floor(height * side / width), side)
    if settings.short_side is None:
        return floor(height), floor(width)
    side = settings.short_side // patch * patch
    # the other side as DINO's read_frame computes it: (short * other) / side, floored
    return (side, floor(settings.short_side * width / height)) if height <= width else \
        (floor(settings.short_side * height / width), side)
