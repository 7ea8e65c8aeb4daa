"""The rules of a run folder (--out): a new run never replaces an old one unless asked (--overwrite),
--resume never silently starts over, any kept checkpoint can be resumed from (--resume-from), and what
an interrupted save left behind is cleaned up at the next start."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from model.checkpoint import remove_interrupted_saves
from siammae_common.console import UserError, info

if TYPE_CHECKING:
    from model.train_config import TrainConfig

RUN_MARKERS = ("config.json", "metrics.jsonl")
RUN_CONTENTS = ("config.json", "metrics.jsonl", "bad_frames.jsonl", "checkpoints", "tb", "recon")


def run_evidence(out: Path) -> list[str]:
    """What in `out` shows that a run lives there: its config, metrics, checkpoints ([] for none)."""
    if not out.is_dir():
        return []
    found = [name for name in RUN_MARKERS if (out / name).exists()]
    found += [f"checkpoints/{p.name}" for p in sorted((out / "checkpoints").glob("*.pt"))]
    return found


def kept_checkpoints(out: Path) -> list[Path]:
    """The run's kept epoch_NNNN.pt, oldest first."""
    return sorted((out / "checkpoints").glob("epoch_*.pt"))


def start_fields(run_dir: Path) -> dict[str, bool | Path]:
    """How a driver (the demo, siammae-ablate) re-enters its own run folder, as TrainConfig fields:
    resume from checkpoints/latest.pt, else from the newest kept checkpoint, else start afresh
    (overwrite: a run killed before its first checkpoint, or a fresh folder)."""
    if (run_dir / "checkpoints" / "latest.pt").is_file():
        return {"resume": True}
    kept = kept_checkpoints(run_dir)
    return {"resume_from": kept[-1]} if kept else {"overwrite": True}


def _writable_ancestor(path: Path) -> Path:
    """The nearest existing folder above (or at) `path`; raises UserError if that is a file or read-only."""
    probe = path.absolute()
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise UserError(f"--out {path}: {probe} is a file, not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise UserError(f"--out {path}: {probe} is not writable")
    return probe


def check_run_folder(cfg: TrainConfig) -> None:
    """Reject --out / --resume / --resume-from / --overwrite combinations that would lose or mix runs."""
    out = cfg.out
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: is a file, not a run folder")
    _writable_ancestor(out)
    if cfg.overwrite and (cfg.resume or cfg.resume_from is not None):
        raise UserError("--overwrite starts the run over; it cannot be combined with --resume or --resume-from")
    if cfg.resume_anyway and not (cfg.resume or cfg.resume_from is not None):
        raise UserError("--resume-anyway goes with --resume or --resume-from (it accepts their changes)")
    evidence = run_evidence(out)
    shown = ", ".join(evidence[:3]) + (", ..." if len(evidence) > 3 else "")
    if cfg.resume_from is not None:
        if not cfg.resume_from.is_file():
            raise UserError(f"--resume-from {cfg.resume_from}: no such checkpoint file")
        own = cfg.resume_from.resolve().parent == (out / "checkpoints").resolve()
        if evidence and not own:
            raise UserError(f"--out {out} holds another run ({shown}); --resume-from continues a run in its own "
                            "folder or in an empty one")
        return
    if cfg.resume:
        if cfg.latest_checkpoint.exists() or not evidence:
            return                        # continue, or start: the folder holds no run yet
        kept = kept_checkpoints(out)
        hint = f"resume from a kept checkpoint with --resume-from {kept[-1]}" if kept else "none was kept"
        raise UserError(f"--resume: {out} holds a run ({shown}) but no checkpoints/latest.pt; {hint}, or "
                        "start it over with --overwrite")
    if evidence and not cfg.overwrite:
        raise UserError(f"--out {out} already holds a run ({shown}); pass --resume to continue it, --overwrite "
                        "to replace it, or choose another --out")


def resume_source(cfg: TrainConfig) -> Path | None:
    """The checkpoint this run continues from, or None for a new run."""
    if cfg.resume_from is not None:
        return cfg.resume_from
    if cfg.resume and cfg.latest_checkpoint.exists():
        return cfg.latest_checkpoint
    return None


def prepare_run_folder(cfg: TrainConfig) -> None:
    """Before the first write (main process only): --overwrite removes the old run's files (only those),
    and temp files of saves that were killed midway are deleted."""
    if cfg.overwrite:
        for name in RUN_CONTENTS:
            path = cfg.out / name
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
    removed = remove_interrupted_saves(cfg.out / "checkpoints")
    if removed:
        info(f"removed {len(removed)} temp file(s) of an interrupted checkpoint save in {cfg.out / 'checkpoints'}")
