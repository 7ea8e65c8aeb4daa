"""What a benchmark result must say about where it ran: device, driver, library versions, date."""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def _run(cmd: list[str], cwd: Path | None = None) -> str | None:
    """A command's stripped stdout, or None when it is missing or fails."""
    if shutil.which(cmd[0]) is None:
        return None
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=cwd, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def _cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    found = re.search(r"^model name\s*:\s*(.+)$", text, re.MULTILINE)
    return found.group(1).strip() if found else platform.machine()


def gpus() -> list[dict[str, str]]:
    """One entry per GPU nvidia-smi lists (name, driver, memory, compute capability); [] without one."""
    out = _run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,compute_cap",
                "--format=csv,noheader"])
    rows = [[f.strip() for f in line.split(",")] for line in (out or "").splitlines() if line.strip()]
    return [dict(zip(("name", "driver", "memory", "compute_cap"), r)) for r in rows if len(r) == 4]


def versions() -> dict[str, Any]:
    """Python, torch (and its CUDA build), DALI (and its CUDA build) and the other libraries that matter."""
    import numpy
    import torch

    out: dict[str, Any] = {"python": sys.version.split()[0], "python_executable": sys.executable,
                           "torch": torch.__version__, "torch_cuda": torch.version.cuda, "numpy": numpy.__version__}
    try:
        from nvidia import dali
        out["dali"] = dali.__version__
        out["dali_cuda"] = int(dali.__cuda_version__)
    except ImportError as exc:
        out["dali"] = f"not importable: {exc}"
    for name in ("timm", "webdataset", "torchvision"):
        try:
            out[name] = __import__(name).__version__
        except ImportError:
            out[name] = None
    return out


def describe(command: str) -> dict[str, Any]:
    """Everything a result file records about its run, the command included."""
    import torch

    return {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "command": command,
            "host_platform": platform.platform(), "cpu": _cpu_model(), "cpu_cores": os.cpu_count(),
            "cuda_available": torch.cuda.is_available(), "gpus": gpus(), "versions": versions(),
            "pythonpath": os.environ.get("PYTHONPATH", ""),
            "git_commit": _run(["git", "rev-parse", "HEAD"], cwd=REPO),
            "git_dirty": bool(_run(["git", "status", "--porcelain"], cwd=REPO))}


def slug(env: dict[str, Any]) -> str:
    """A file-name-safe machine name: the GPU model, or cpu-<cores>core."""
    if env["gpus"]:
        name = env["gpus"][0]["name"].lower().replace("nvidia", "")
        return "-".join(re.findall(r"[a-z0-9]+", name)) + f"-x{len(env['gpus'])}"
    return f"cpu-{env['cpu_cores']}core"
