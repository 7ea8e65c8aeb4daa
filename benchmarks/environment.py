"""What a benchmark result must say about where it ran: device, driver, library versions, date; on a
GPU also the rates it can reach (a large bf16 matrix product, a device-to-device copy), the ceilings
MFU and bandwidth figures are read against.

    python -m benchmarks.environment --json env.json [--nvidia-smi nvidia-smi.txt] [--command TEXT]
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import click

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
    except Exception as exc:  # noqa: BLE001 (ImportError, or OSError from a library DALI cannot load)
        out["dali"] = f"not importable: {exc}"
    for name, module in (("timm", "timm"), ("webdataset", "webdataset"), ("torchvision", "torchvision"),
                         ("pillow", "PIL"), ("opencv", "cv2"), ("scipy", "scipy"), ("tqdm", "tqdm"),
                         ("click", "click"), ("pytest", "pytest")):
        try:
            out[name] = getattr(__import__(module), "__version__", "?")
        except ImportError:                  # recorded, so a machine missing one shows at once
            out[name] = None
    return out


def gpu_rates() -> dict[str, Any]:
    """Measured on GPU 0: bf16 matrix-product TFLOP/s (8192^3, random data) and device-to-device copy
    GB/s (bytes read + written), each the median of 10 timed runs after 3 warm-ups; its properties."""
    import torch

    def median_ms(fn: Any) -> float:
        for _ in range(3):
            fn()
        times = []
        for _ in range(10):
            begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            begin.record()
            fn()
            end.record()
            end.synchronize()
            times.append(begin.elapsed_time(end))
        return sorted(times)[len(times) // 2]

    n = 8192
    a, b = (torch.randn(n, n, device="cuda", dtype=torch.bfloat16) for _ in range(2))
    src = torch.empty(1 << 30, device="cuda", dtype=torch.uint8).random_(0, 256)       # 1 GiB, not zeros
    dst = torch.empty_like(src)
    props = torch.cuda.get_device_properties(0)
    return {"bf16_matmul_tflops": 2 * n ** 3 / median_ms(lambda: a @ b) / 1e9,
            "copy_gb_per_s": 2 * src.numel() / median_ms(lambda: dst.copy_(src)) / 1e6,
            "multiprocessors": props.multi_processor_count, "memory_gib": props.total_memory / 2 ** 30,
            "capability": f"{props.major}.{props.minor}"}


def describe(command: str) -> dict[str, Any]:
    """Everything a result file records about its run, the command included."""
    import torch

    return {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "command": command,
            "host_platform": platform.platform(), "cpu": _cpu_model(), "cpu_cores": os.cpu_count(),
            "cuda_available": torch.cuda.is_available(), "gpus": gpus(), "versions": versions(),
            "torch_devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
            "pythonpath": os.environ.get("PYTHONPATH", ""),
            "git_commit": _run(["git", "rev-parse", "HEAD"], cwd=REPO),
            "git_dirty": bool(_run(["git", "status", "--porcelain"], cwd=REPO))}


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--json", "json_path", type=click.Path(path_type=Path, dir_okay=False), required=True)
@click.option("--nvidia-smi", "smi_path", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Also write nvidia-smi's whole report here (where it exists).")
@click.option("--command", default="", help="The command the results belong to (recorded).")
@click.option("--rates/--no-rates", default=True, show_default=True, help="On a GPU, measure its rates.")
def main(json_path: Path, smi_path: Path | None, command: str, rates: bool) -> None:
    """Describe this machine (and measure a GPU's matrix and copy rates) into a JSON file."""
    env = describe(command)
    if env["cuda_available"] and rates:
        env["gpu_rates"] = gpu_rates()
    if smi_path is not None:
        smi_path.write_text((_run(["nvidia-smi"]) or "nvidia-smi: not found or failed") + "\n")
    json_path.write_text(json.dumps(env, indent=1) + "\n")
    click.echo(json.dumps(env, indent=1))


def slug(env: dict[str, Any]) -> str:
    """A file-name-safe machine name: the GPU model, or cpu-<cores>core."""
    if env["gpus"]:
        name = env["gpus"][0]["name"].lower().replace("nvidia", "")
        return "-".join(re.findall(r"[a-z0-9]+", name)) + f"-x{len(env['gpus'])}"
    return f"cpu-{env['cpu_cores']}core"


if __name__ == "__main__":
    main()
