"""One split of a Kinetics-style download (`make_shards.py SRC --subset train`).

The CVDF download of Kinetics-400 (k400_downloader.sh + k400_extractor.sh) extracts to
`k400/{train,val,test}/<youtube_id>_<start>_<end>.mp4` (flat: no class folders), the labels in
`k400/annotations/<split>.csv` (older scripts: `k400/<split>.csv`; columns label, youtube_id,
time_start, time_end, split), and replacements for train videos that were corrupted in
`k400/replacement/replacement_for_corrupted_k400/`. Re-arranged copies hold `<split>/<class>/*.mp4`.
Both are read here: classes from the class folders, else from the split's CSV by YouTube id (without a
CSV the clips are unlabelled: SiamMAE does not use labels); with `--subset train`, a replacement video
stands in for the train video with the same YouTube id.
"""

from __future__ import annotations

import csv
from pathlib import Path

from siammae_common.console import info
from tools.sharding.inputs import (
    SPLIT_FOLDERS,
    VIDEO_EXTENSIONS,
    InputSet,
    VideoInput,
    list_videos,
    sanitize_key,
    split_folders,
    unique_keys,
)

YOUTUBE_ID = 11          # characters of a YouTube id: the file names start with it


def _labels(src: Path, subset: str) -> dict[str, str] | None:
    """YouTube id -> class name from the split's annotation CSV, or None if there is none."""
    for path in (src / "annotations" / f"{subset}.csv", src / f"{subset}.csv"):
        if path.is_file():
            with path.open(newline="") as f:
                rows = csv.DictReader(f)
                if not {"label", "youtube_id"} <= set(rows.fieldnames or ()):
                    raise ValueError(f"{path}: expected the columns label and youtube_id (a Kinetics annotation CSV)")
                return {row["youtube_id"]: row["label"] for row in rows}
    return None


def _replacements(src: Path, subset: str, paths: list[Path]) -> tuple[list[Path], int]:
    """Train videos swapped for their replacements (same YouTube id), and how many were swapped."""
    folder = src / "replacement"
    if subset != "train" or not folder.is_dir():
        return paths, 0
    spare = {p.stem[:YOUTUBE_ID]: p for p in sorted(folder.rglob("*")) if p.suffix.lower() in VIDEO_EXTENSIONS}
    swapped = [spare.get(p.stem[:YOUTUBE_ID], p) for p in paths]
    return swapped, sum(a != b for a, b in zip(paths, swapped))


def collect_subset(src: Path, subset: str) -> InputSet:
    """The videos of SRC/<subset>, labelled by class folder or by the split's CSV."""
    if subset == "replacement" or subset not in SPLIT_FOLDERS:
        raise ValueError(f"--subset {subset!r}: expected one of train, val, test")
    root = src / subset
    if not root.is_dir():
        found = ", ".join(s + "/" for s in split_folders(src)) or "none"
        raise FileNotFoundError(f"{root}: no such split folder (split folders in {src}: {found})")
    paths, problems = list_videos(root)
    rel = [p.relative_to(root).as_posix() for p in paths]
    if any("/" in r for r in rel):                       # re-arranged: <subset>/<class>/<video>
        class_of = [r.split("/")[0] if "/" in r else "" for r in rel]
        classes = sorted({c for c in class_of if c})
        keys = [sanitize_key(r.rsplit(".", 1)[0].replace("/", "__")) for r in rel]
        rel = [f"{subset}/{r}" for r in rel]             # sources are relative to SRC, as in the flat case
    else:                                                # the download: flat, labels in the CSV
        labels = _labels(src, subset)
        if labels is None:
            info(f"{src}: no annotations/{subset}.csv; the clips are unlabelled (pretraining does not use labels)")
        paths, swapped = _replacements(src, subset, paths)
        if swapped:
            info(f"{src / 'replacement'}: {swapped} train video(s) replaced by their re-downloaded copies")
        class_of = [(labels or {}).get(p.stem[:YOUTUBE_ID], "") for p in paths]
        classes = sorted(set((labels or {}).values()))
        keys = [sanitize_key(p.stem) for p in paths]
        rel = [p.relative_to(src).as_posix() for p in paths]
    keys = unique_keys(rel, keys)
    label = {c: i for i, c in enumerate(classes)}
    videos = [VideoInput(p, r, k, c, label.get(c, -1)) for p, r, k, c in zip(paths, rel, keys, class_of)]
    return InputSet(videos, classes, problems)
