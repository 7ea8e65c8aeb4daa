"""SiamMAE training-step benchmark: step time and pairs/s on tensors already on the device, then the
same steps fed by the real loader (built exactly as siammae-train builds it, with the same options);
the difference is the loader's overhead, and the time the steps waited for it is reported as in
metrics.jsonl (data_wait_s, data_wait_frac). On CUDA also the model FLOP utilisation (FLOPs counted by
torch.utils.flop_counter over one forward + backward).

    python -m benchmarks.train_step_bench                                  # CPU: tiny model, random data
    python -m benchmarks.train_step_bench --shards shards/ucf101 \
        --json benchmarks/results/train-step-h100-<date>.json              # GPU: ViT-S/16, 224², bf16, 256
"""

from __future__ import annotations

import contextlib
import itertools
import json
import platform
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import click
import torch
from torch.utils.flop_counter import FlopCounterMode

from model.config import MODEL_NAMES, model_config
from model.masking import random_masking
from model.schedule import param_groups
from model.siammae import SiamMAE
from model.train_config import TrainConfig

# dense bf16 tensor-core peaks (TFLOP/s) for MFU; others: pass --peak-tflops
PEAK_BF16_TFLOPS = {"H100": 989.4, "H200": 989.4, "A100": 312.0}


def device_peak_tflops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)


def make_step(model: SiamMAE, device: torch.device, amp: bool) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    opt = torch.optim.AdamW(param_groups(model, 0.05), lr=1e-4, betas=(0.9, 0.95))
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if amp and device.type == "cuda"
                else contextlib.nullcontext())
    n = model.cfg.num_patches

    def step(f1: torch.Tensor, f2: torch.Tensor) -> torch.Tensor:
        masking = random_masking(f1.shape[0], n, model.cfg.mask_ratio, device)
        with autocast:
            loss = model(f1, f2, masking=masking).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.detach()

    return step


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(step: Callable, batches: Iterator[tuple[torch.Tensor, torch.Tensor]], steps: int, warmup: int,
               device: torch.device, waited: list[float] | None = None) -> tuple[float, float]:
    """(mean seconds per step over `steps` steps, seconds of the `warmup` untimed steps before them, in
    which a compiled model compiles). waited[0], when given, is reset when the timing starts, so it holds
    the timed steps' wait for data."""
    start = time.perf_counter()
    for _ in range(warmup):
        step(*next(batches))
    sync(device)
    warmup_s = time.perf_counter() - start
    if waited is not None:
        waited[0] = 0.0
    start = time.perf_counter()
    for _ in range(steps):
        loss = step(*next(batches))
    loss.item()                                    # waits for the last step
    return (time.perf_counter() - start) / steps, warmup_s


def count_flops(model: SiamMAE, f1: torch.Tensor, f2: torch.Tensor, amp: bool) -> int:
    """FLOPs of one forward + backward (the optimizer's are negligible)."""
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if amp and f1.is_cuda else contextlib.nullcontext())
    counter = FlopCounterMode(display=False)
    with counter, autocast:
        model(f1, f2).loss.backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def loader_batches(train_cfg: TrainConfig, device: torch.device, waited: list[float]
                   ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Batches from the loader siammae-train builds for these options (model.train_loader), across
    epochs; the host's wait for each batch is added to waited[0]."""
    from model.distributed import DistInfo
    from model.train_loader import build_loader, loader_config

    loader = build_loader(loader_config(train_cfg, DistInfo(), device))
    epoch = 0
    try:
        while True:
            loader.set_epoch(epoch)
            batches = iter(loader)
            while True:
                t0 = time.perf_counter()
                b = next(batches, None)
                waited[0] += time.perf_counter() - t0
                if b is None:
                    break
                yield b.f1, b.f2
            epoch += 1
    finally:                                       # closing the generator stops the loader's workers
        loader.close()


@click.command()
@click.option("--device", type=click.Choice(["auto", "cuda", "cpu"]), default="auto", show_default=True)
@click.option("--model", "model_name", type=click.Choice(MODEL_NAMES), default=None,
              help="[default: vit_small_patch16 on CUDA, vit_micro_patch16 on CPU]")
@click.option("--input-size", type=int, default=None, help="[default: 224 on CUDA, 64 on CPU]")
@click.option("--batch-size", type=int, default=None, help="[default: 256 on CUDA, 16 on CPU]")
@click.option("--steps", type=int, default=None, help="Timed steps [default: 50 on CUDA, 10 on CPU].")
@click.option("--warmup", type=int, default=5, show_default=True, help="Untimed steps first.")
@click.option("--amp/--no-amp", default=True, show_default=True, help="bf16 autocast (CUDA only).")
@click.option("--compile/--no-compile", "compile_", default=False, show_default=True)
@click.option("--compile-backend", default="inductor", show_default=True,
              help="torch.compile backend (aot_eager traces without generating code: a quick stand-in on a CPU).")
@click.option("--shards", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Also time steps fed by the real loader from these shards.")
@click.option("--loader", type=click.Choice(["dali", "wds"]), default="dali", show_default=True)
@click.option("--num-threads", "--threads", "num_threads", type=click.IntRange(min=0), default=0, show_default=True,
              help="DALI threads, as siammae-train's --num-threads (0: the cores per process minus the trainer's).")
@click.option("--num-workers", type=click.IntRange(min=0), default=2, show_default=True,
              help="DataLoader workers (--loader wds).")
@click.option("--hw-decoder-load", type=click.FloatRange(0, 1), default=0.65, show_default=True,
              help="Share of the JPEGs DALI sends to the hardware decoder (GPU only).")
@click.option("--prefetch-queue-depth", "--prefetch", "prefetch_queue_depth", type=click.IntRange(min=1), default=2,
              show_default=True, help="DALI prefetch depth.")
@click.option("--parallel-source", type=click.Choice(["auto", "on", "off"]), default="auto", show_default=True)
@click.option("--py-num-workers", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--source-prefetch", type=click.IntRange(min=0), default=0, show_default=True,
              help="The parallel source's own prefetch depth (0: 2 per worker).")
@click.option("--torch-threads", type=click.IntRange(min=1), default=None,
              help="torch's intra-op threads [default: torch's own]; on a shared CPU 1 avoids spin-waiting.")
@click.option("--peak-tflops", type=float, default=None, help="Device peak for MFU [default: known GPUs].")
@click.option("--json", "json_path", type=click.Path(path_type=Path), default=None, help="Write the result here.")
def main(device: str, model_name: str | None, input_size: int | None, batch_size: int | None, steps: int | None,
         warmup: int, amp: bool, compile_: bool, compile_backend: str, shards: Path | None, torch_threads: int | None,
         peak_tflops: float | None, json_path: Path | None, **feed: Any) -> None:
    """Time SiamMAE training steps on random tensors and with the real loader."""
    dev = torch.device("cuda" if device == "cuda" or (device == "auto" and torch.cuda.is_available()) else "cpu")
    gpu = dev.type == "cuda"
    cfg = model_config(model_name or ("vit_small_patch16" if gpu else "vit_micro_patch16"),
                       input_size=input_size or (224 if gpu else 64))
    batch = batch_size or (256 if gpu else 16)
    steps = steps or (50 if gpu else 10)
    if torch_threads is not None:
        torch.set_num_threads(torch_threads)
    torch.manual_seed(0)
    model = SiamMAE(cfg).to(dev).train()
    s = cfg.input_size
    f1, f2 = torch.randn(batch, 3, s, s, device=dev), torch.randn(batch, 3, s, s, device=dev)   # [B, 3, S, S]
    flops = count_flops(model, f1, f2, amp)
    net = torch.compile(model, backend=compile_backend) if compile_ else model
    step = make_step(net, dev, amp)  # type: ignore[arg-type]
    result: dict = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                    "device": torch.cuda.get_device_name(dev) if gpu else platform.processor() or "cpu",
                    "torch": torch.__version__, "model": cfg.to_dict(), "batch_size": batch, "amp_bf16": amp and gpu,
                    "compile": compile_ and compile_backend, "steps": steps, "torch_threads": torch.get_num_threads(),
                    "flops_per_step": flops}
    t, warmup_s = time_steps(step, itertools.repeat((f1, f2)), steps, warmup, dev)
    result["tensors_on_device"] = {"step_s": t, "pairs_per_s": batch / t, "warmup_s": warmup_s}
    peak = peak_tflops or device_peak_tflops(dev)
    if peak:
        result["mfu"] = flops / t / (peak * 1e12)
        result["peak_tflops"] = peak
    if shards is not None:
        options = {"shards": shards, "model": cfg.name, "input_size": s, "batch_size": batch,
                   "torch_threads": torch.get_num_threads(), **feed}
        try:
            result["with_loader"] = time_with_loader(step, t, options, dev, (steps, warmup))
        except Exception as exc:  # noqa: BLE001 (the loader may be missing or broken: keep the figures above)
            result["with_loader"] = {"error": f"{type(exc).__name__}: {exc}"}
    text = json.dumps(result, indent=1)
    click.echo(text)
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(text + "\n")


def time_with_loader(step: Callable, t_memory: float, options: dict[str, Any], dev: torch.device,
                     steps_warmup: tuple[int, int]) -> dict[str, Any]:
    """The same steps fed by the loader siammae-train builds from these options: step time, overhead over
    t_memory (the step on tensors already on the device), and the share of the step spent waiting for data."""
    from model.train_loader import decoder_threads

    steps, warmup = steps_warmup
    waited = [0.0]
    with tempfile.TemporaryDirectory(prefix="siammae-step-bench-") as out:
        train_cfg = TrainConfig.from_options(out=Path(out), **options)
        batches = loader_batches(train_cfg, dev, waited)
        try:
            tl, warmup_s = time_steps(step, batches, steps, warmup, dev, waited)
        finally:
            batches.close()
    feed = {k: v for k, v in options.items() if k not in ("shards", "model", "input_size", "torch_threads")}
    return {**feed, "threads": decoder_threads(train_cfg, dev), "step_s": tl, "pairs_per_s": options["batch_size"] / tl,
            "overhead": tl / t_memory - 1, "warmup_s": warmup_s, "data_wait_s": waited[0] / steps,
            "data_wait_frac": waited[0] / steps / tl}


if __name__ == "__main__":
    main()
