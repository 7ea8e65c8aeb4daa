"""DAVIS-2017 layout on disk: sequences, their annotations and result PNGs (file formats: dataset_io).

Layout (as davis2017-evaluation reads it): `DAVIS/JPEGImages/<res>/<seq>/*.jpg`,
`DAVIS/Annotations/<res>/<seq>/*.png` (palette PNGs, value = object id, 255 = void),
`DAVIS/ImageSets/2017/<subset>.txt`; results `RESULTS/<seq>/<frame>.png`, same size, ids as values.
The test sets (test-dev, test-challenge) annotate frame 0 only: their results are scored by the
challenge server (evaluation.davis_submission writes the zip it takes).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from evaluation.dataset_io import read_id_png
from evaluation.video_lists import choose_videos, own_list
from siammae_common.console import UserError

VOID_ID = 255
DOWNLOADS = ("DAVIS-2017-trainval-480p.zip: train, val; DAVIS-2017-test-dev-480p.zip: test-dev; "
             "DAVIS-2017-test-challenge-480p.zip: test-challenge")


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


def open_davis(root: Path, subset: str = "val", resolution: str = "480p", sequences: Sequence[str] | None = None,
               list_file: Path | None = None, all_videos: bool = False) -> list[DavisSequence]:
    """The sequences of a DAVIS folder: those named, else those of `list_file`, else `ImageSets/2017/<subset>.txt`,
    else (all_videos) every sequence folder; a missing subset list is an error (evaluation.video_lists)."""
    root = Path(root)
    images_dir = root / "JPEGImages" / resolution
    masks_dir = root / "Annotations" / resolution
    for folder in (root, images_dir, masks_dir):
        if not folder.is_dir():
            raise UserError(f"{folder}: no such folder (expected the DAVIS-2017 layout with resolution '{resolution}')")
    subset_list = root / "ImageSets" / "2017" / f"{subset}.txt"
    names = choose_videos(sequences, list_file, own_list(subset_list), str(subset_list), images_dir, all_videos,
                          "sequences", f"every DAVIS-2017 archive holds the lists of its subsets ({DOWNLOADS})")
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


def annotation_gap(seq: DavisSequence) -> str | None:
    """Why a sequence cannot be scored here (not every frame annotated: a test set), else None."""
    if len(seq.masks) == len(seq.frames):
        return None
    return (f"{seq.masks[0].parent}: {len(seq.masks)} annotation PNG(s) for {len(seq.frames)} frames, so it cannot be "
            "scored here; a test set (test-dev, test-challenge) is scored by the DAVIS challenge server: "
            "siammae-eval davis --no-score writes its submission zip")


def read_annotations(seq: DavisSequence) -> tuple[np.ndarray, int]:
    """GT ids [T, H, W] uint8 with void (255) set to background, and the object count of the first frame."""
    gap = annotation_gap(seq)
    if gap is not None:
        raise UserError(gap)
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
