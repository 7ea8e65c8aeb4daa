"""Checkpoints: written atomically (siammae_common.atomic) with the user's file mode, loaded safely
(`torch.load(weights_only=True)`: tensors and plain containers only, never code), loadable as a bare
model for evaluation.

A checkpoint is a dict: model (state dict), model_config (dict), and for training runs optimizer,
step, schedule, train_config, world_size, rng (one entry per rank, tensors and plain numbers),
bad_frames (one ledger per rank), format version. Every kept checkpoint (latest.pt, epoch_NNNN.pt)
holds all of it, so a run can resume from any of them.
"""

from __future__ import annotations

import pickle
import random
import re
import warnings
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch

from model.config import ModelConfig
from model.siammae import SiamMAE
from siammae_common.atomic import atomic_write
from siammae_common.console import UserError

CHECKPOINT_VERSION = 2          # 2: RNG state as tensors and plain numbers, kept checkpoints are complete
TEMP_GLOB = ".*.pt.*.tmp"       # what an interrupted save leaves behind (atomic.temp_path_for)


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message is one line naming the file and the problem."""


class _WriteErrorKept:
    """A file whose first failed write is kept: torch.save reports one as a RuntimeError without its cause."""

    def __init__(self, file: IO[bytes]) -> None:
        self.file, self.error = file, None

    def write(self, data: bytes) -> int:
        try:
            return self.file.write(data)
        except OSError as e:
            self.error = self.error or e
            raise

    def flush(self) -> None:
        self.file.flush()


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write `state` to `path` atomically: a reader never sees a half-written file. The file gets the
    mode a plain `open` would give it (0666 less the umask), not a temp file's 0600. A failed write (a
    full disk) raises its OSError and leaves the old file and no temp file."""
    with atomic_write(path) as f:
        out = _WriteErrorKept(f)
        try:
            torch.save({"version": CHECKPOINT_VERSION, **state}, out)
        except RuntimeError:
            if out.error is not None:
                raise out.error from None
            raise


def remove_interrupted_saves(folder: str | Path) -> list[Path]:
    """Delete the temp files that saves killed midway left in `folder`; returns them."""
    removed = sorted(Path(folder).glob(TEMP_GLOB)) if Path(folder).is_dir() else []
    for tmp in removed:
        tmp.unlink(missing_ok=True)
    return removed


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """A checkpoint's dict, read with torch.load(weights_only=True): code inside the file never runs.

    Raises FileNotFoundError if there is no file, CheckpointError (one line, naming the file) if it is
    empty, damaged, not a checkpoint, or holds objects that safe loading refuses.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: empty file (0 bytes), not a checkpoint (an interrupted copy?)")
    try:
        with warnings.catch_warnings():          # torch warns about pickle protocols before refusing them
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(f"{path}: {_unpickling_problem(path, exc)}") from None
    except Exception as exc:  # noqa: BLE001 (zip, pickle and storage errors come in many types)
        raise CheckpointError(f"{path}: damaged or not a PyTorch checkpoint "
                              f"({type(exc).__name__}: {_first_line(exc)})") from None
    if not isinstance(state, dict) or not isinstance(state.get("model"), dict) or "model_config" not in state:
        raise CheckpointError(f"{path}: not a siammae checkpoint (no model / model_config)")
    _check_finite(state["model"], path)
    return state


def _check_finite(weights: dict[str, Any], path: Path) -> None:
    """Refuse weights holding NaN or infinity: a diverged run's weights give meaningless features."""
    for name, tensor in weights.items():
        if isinstance(tensor, torch.Tensor) and tensor.is_floating_point() and not torch.isfinite(tensor).all():
            bad = int((~torch.isfinite(tensor)).sum())
            raise CheckpointError(f"{path}: the weights hold NaN or infinite values ({bad} in {name}): the run had "
                                  "diverged when it was saved; use an earlier checkpoint of the run (epoch_NNNN.pt)")


def load_weights(model: torch.nn.Module, weights: dict[str, Any], path: str | Path) -> None:
    """`model.load_state_dict(weights)`; a checkpoint whose tensors do not fit is one CheckpointError line
    naming the file and the first tensor that differs."""
    own = model.state_dict()
    for name in sorted(set(own) | set(weights)):
        problem = _weight_problem(weights.get(name), own.get(name))
        if problem is not None:
            raise CheckpointError(f"{path}: damaged or of another model: weight {name} is {problem}")
    model.load_state_dict(weights)


def _weight_problem(theirs: Any, own: torch.Tensor | None) -> str | None:
    if own is None:
        return "not in the model"
    if theirs is None:
        return "missing"
    if not isinstance(theirs, torch.Tensor):
        return f"a {type(theirs).__name__}, not a tensor"
    if theirs.shape != own.shape:
        return f"{list(theirs.shape)}, the model's is {list(own.shape)}"
    return None


def _first_line(exc: BaseException) -> str:
    line = next((s.strip() for s in str(exc).splitlines() if s.strip()), type(exc).__name__)
    return line.split(". ")[0]


def _unpickling_problem(path: Path, exc: pickle.UnpicklingError) -> str:
    """torch's weights_only refusal is a page of advice; keep what it refused and why."""
    text = str(exc)
    if "Weights only load failed" not in text:
        return f"damaged or not a PyTorch checkpoint (UnpicklingError: {_first_line(exc)})"
    imported = re.search(r"unsupported global:? (?:GLOBAL )?([\w.]+)", text, re.IGNORECASE)
    if imported:
        name = imported.group(1)
        hint = (" (a checkpoint of an older siammae kept numpy RNG state in latest.pt; its epoch_*.pt load)"
                if name.startswith("numpy") else "")
        return (f"refused: loading it would import {name}; siammae loads checkpoints with "
                f"torch.load(weights_only=True), which builds tensors and plain containers only and never runs "
                f"what a file contains{hint}")
    operand = re.search(r"Unsupported operand \d+", text)
    what = operand.group(0) if operand else "weights_only refused it"
    with path.open("rb") as f:
        head = f.read(4)
    if head[:1] == b"\x80" or head == b"PK\x03\x04":       # a pickle, or torch's zip format
        return f"refused: pickle instructions that safe loading does not run ({what}); not a siammae checkpoint"
    return f"damaged or not a PyTorch checkpoint ({what})"


def model_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The bare SiamMAE's weights, whether `model` is wrapped in DDP and/or torch.compile or not."""
    inner = getattr(model, "_orig_mod", model)
    inner = getattr(inner, "module", inner)
    inner = getattr(inner, "_orig_mod", inner)
    return inner.state_dict()


def load_model(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[SiamMAE, ModelConfig]:
    """The trained network and its config, in eval mode, on `map_location`. Raises FileNotFoundError, or
    CheckpointError (one line naming the file) for a file that is not a usable checkpoint."""
    state = load_checkpoint(path, map_location)
    try:
        cfg = ModelConfig.from_dict(state["model_config"])
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise CheckpointError(f"{path}: damaged model_config ({type(e).__name__}: {e})") from None
    model = SiamMAE(cfg)
    load_weights(model, state["model"], path)
    return model.to(map_location).eval(), cfg


def model_for_command(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[SiamMAE, ModelConfig]:
    """load_model for a command line (siammae-eval, siammae-export): any problem with the file is one
    UserError line that names it once."""
    try:
        return load_model(path, map_location)
    except (FileNotFoundError, CheckpointError) as e:
        raise UserError(str(e)) from None


def capture_rng() -> dict[str, Any]:
    """This process's random state as tensors and plain numbers: python, numpy, torch CPU and (if in use)
    the current CUDA device."""
    _, keys, pos, has_gauss, cached = np.random.get_state()
    rng: dict[str, Any] = {
        "python": random.getstate(),                                 # (version, tuple of 625 ints, None)
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        rng["cuda"] = torch.cuda.get_rng_state()
    return rng


def restore_rng(rng: dict[str, Any]) -> None:
    """The inverse of capture_rng."""
    random.setstate(_as_tuple(rng["python"]))
    np_state = rng["numpy"]
    np.random.set_state(("MT19937", np_state["keys"].cpu().numpy().astype(np.uint32), np_state["pos"],
                         np_state["has_gauss"], np_state["cached_gaussian"]))
    torch.set_rng_state(rng["torch"].cpu())
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state(rng["cuda"].cpu())


def _as_tuple(value: Any) -> Any:
    """Lists back to the nested tuples random.setstate wants."""
    return tuple(_as_tuple(v) for v in value) if isinstance(value, (list, tuple)) else value
