"""A DAVIS challenge submission: the results of a subset as the evaluation server takes them.

The server (davis2017-evaluation's `evaluation_codalab.py`) unzips the upload and requires the sequence
folders directly at the top of the zip (no parent folder), each holding one indexed PNG per frame named
as the frame (`<seq>/00000.png`, ...), the object ids matching those of the first frame's annotation,
at the 480p size. The test sets (test-dev, test-challenge) annotate frame 0 only, so they can be scored
nowhere else.
"""

from __future__ import annotations

import zipfile
from collections.abc import Sequence
from pathlib import Path

from evaluation.davis_io import DavisSequence
from siammae_common.atomic import atomic_write
from siammae_common.console import UserError

TEST_SUBSETS = ("test-dev", "test-challenge")


def submission_name(subset: str, resolution: str) -> str:
    """The zip's file name inside the results folder."""
    return f"davis2017-{subset}-{resolution}-submission.zip"


def write_submission(results_dir: Path, sequences: Sequence[DavisSequence], name: str) -> tuple[Path, int]:
    """Zip `RESULTS/<seq>/<frame>.png` of every frame of every sequence into RESULTS/<name> (written
    atomically; a missing PNG is an error and leaves no zip). Returns (zip path, PNG count)."""
    results_dir = Path(results_dir)
    members = []
    for seq in sequences:
        for frame in seq.frames:
            png = results_dir / seq.name / f"{frame.stem}.png"
            if not png.is_file():
                raise UserError(f"{png}: missing, so no submission was written (every frame needs its PNG)")
            members.append((png, f"{seq.name}/{png.name}"))
    target = results_dir / name
    with atomic_write(target) as f, zipfile.ZipFile(f, "w", zipfile.ZIP_STORED) as archive:   # PNGs: compressed
        for png, arcname in members:
            archive.write(png, arcname)
    return target, len(members)
