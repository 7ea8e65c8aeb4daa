"""DAVIS-2017 layout on disk: sequences, their annotations and result PNGs (file formats: dataset_io).

Layout (as davis2017-evaluation reads it): `DAVIS/JPEGImages/<res>/<seq>/*.jpg`,
`DAVIS/Annotations/<res>/<seq>/*.png` (palette PNGs, value = object id, 255 = void),
`DAVIS/ImageSets/2017/<subset>.txt`; results `RESULTS/<seq>/<frame>.png`, same size, ids as values.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from evaluation.dataset_io import listed_names, read_id_png
from siammae_common.console import UserError

VOID_ID = 255


@dataclass(frozen=True)
class DavisSequence:
    """One sequence: its sorted frame JPEGs and annotation PNGs."""

    name: str
    frames: tuple[Path, ...]
    masks: tuple[Path, ...]

    @property
    def frame_ids(self) -> list[str]:
        """Frame names without extension ('00000', ...), from the annotations as the official code takes them."""
        return [p.stem for p in self.masks]


def open_davis(root: Path, subset: str = "val", resolution: str = "480p",
               sequences: Sequence[str] | None = None) -> list[DavisSequence]:
    """The sequences of a DAVIS folder: those named, else `ImageSets/2017/<subset>.txt`, else every folder."""
    root = Path(root)
    images_dir = root / "JPEGImages" / resolution
    masks_dir = root / "Annotations" / resolution
    for folder in (root, images_dir, masks_dir):
        if not folder.is_dir():
            raise UserError(f"{folder}: no such folder (expected the DAVIS-2017 layout with resolution '{resolution}')")
    names = listed_names(sequences, root / "ImageSets" / "2017" / f"{subset}.txt", images_dir, "sequences")
    out = []
    for name in names:
        frames = tuple(sorted((images_dir / name).glob("*.jpg")))
        masks = tuple(sorted((masks_dir / name).glob("*.png")))
        if not frames:
            raise UserError(f"{images_dir / name}: sequence '{name}' has no JPEG frames")
        if not masks:
            raise UserError(f"{masks_dir / name}: sequence '{name}' has no annotation PNGs")
        out.append(DavisSequence(name, frames, masks))
    if not out:
        raise UserError(f"{root}: no sequences to evaluate")
    return out


def read_annotations(seq: DavisSequence) -> tuple[np.ndarray, int]:
    """GT ids [T, H, W] uint8 with void (255) set to background, and the object count of the first frame."""
    if len(seq.masks) != len(seq.frames):
        raise UserError(f"{seq.masks[0].parent}: {len(seq.masks)} annotation PNGs for {len(seq.frames)} frames")
    first = read_id_png(seq.masks[0])
    masks = np.stack([first] + [read_id_png(p, first.shape) for p in seq.masks[1:]])
    masks[masks == VOID_ID] = 0
    return masks, int(masks[0].max())


def read_results(results_dir: Path, seq: DavisSequence, frame_ids: Sequence[str],
                 shape: tuple[int, int], n_objects: int) -> np.ndarray:
    """Result ids [T, H, W] for the given frames; every file must exist, match `shape`, use ids ≤ n_objects."""
    folder = Path(results_dir) / seq.name
    if not folder.is_dir():
        raise UserError(f"{folder}: missing results for sequence '{seq.name}'")
    out = np.zeros((len(frame_ids), *shape), dtype=np.uint8)
    for i, frame_id in enumerate(frame_ids):
        path = folder / f"{frame_id}.png"
        ids = read_id_png(path, shape)
        if ids.max() > n_objects:
            raise UserError(f"{path}: object id {int(ids.max())} but the sequence has {n_objects} object(s) "
                            "in its first annotated frame")
        out[i] = ids
    return out
