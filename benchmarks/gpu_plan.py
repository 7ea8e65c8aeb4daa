"""What the GPU check runs, in which order, at which sizes and under which caps: one place to adapt.

Order = value: the training step's MFU first (cheap, and needs no DALI), then the loader sweep, the
DAVIS timing, the `gpu`-marked tests, and last the compiled training step (its compiles are the
costliest minutes). CPU mode runs the same steps at toy sizes, so the procedure can be rehearsed
without a GPU; its figures only show that the steps run.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from benchmarks.environment import REPO
from benchmarks.gpu_steps import Step

Device = Literal["cuda", "cpu"]


@dataclass(frozen=True)
class LoaderRows:
    """siammae-bench row names the sweep measures: the loader, its in-memory ceiling (same decoder, same
    augmentation, JPEGs from memory) and the byte reader alone (no decoding). A row the installed
    siammae-bench does not know is left out and reported as such."""

    loader: str
    ceiling: str
    reader: str


ROWS: dict[str, LoaderRows] = {"cuda": LoaderRows("dali_gpu", "ceiling_gpu", "source"),
                               "cpu": LoaderRows("dali_cpu_parallel", "ceiling_parallel", "source")}

STEP_NAMES = ("env", "data", "train-eager", "loader-sweep", "davis-data", "davis", "gpu-tests", "train-compile")

# (cap, least time worth starting, item cap) per step after env (gpu_check.ENV_CAP_S), seconds. GPU: sized
# for one H100 and a 420 s budget (docs/gpu-check.md has the estimate each is sized from); CPU: the rehearsal.
CAPS: dict[str, dict[str, tuple[float, float, float | None]]] = {
    "cuda": {"data": (45, 10, None), "train-eager": (100, 15, 45),
             "loader-sweep": (130, 15, 30), "davis-data": (40, 10, None), "davis": (110, 20, None),
             "gpu-tests": (100, 20, None), "train-compile": (200, 30, 120)},
    "cpu": {"data": (30, 5, None), "train-eager": (60, 10, 40),
            "loader-sweep": (60, 10, 30), "davis-data": (30, 5, None), "davis": (60, 10, None),
            "gpu-tests": (90, 10, None), "train-compile": (150, 20, 120)},
}


@dataclass(frozen=True)
class CheckConfig:
    """Sizes of every step for one device (`for_device`); caps may be overridden per step."""

    device: Device
    data_args: tuple[str, ...]           # benchmarks.gpu_data options
    py_workers: tuple[int, ...]          # DALI parallel-source worker processes, swept
    threads: tuple[int, ...]             # DALI decoder threads, swept
    hw_loads: tuple[float, ...]          # DALI hw_decoder_load, swept
    sweep_args: tuple[str, ...]          # batch, crop, rounds, seconds of every sweep point
    batch_sizes: tuple[int, ...]         # training step, in this order
    train_args: tuple[str, ...]          # benchmarks.train_step_bench options common to every batch size
    davis_data_args: tuple[str, ...]     # tools/make_synthetic.py options of the DAVIS-sized set
    davis_args: tuple[str, ...]          # benchmarks.davis_timing options
    compile_args: tuple[str, ...] = ()   # train-compile's extra train_step_bench options
    caps: tuple[tuple[str, float], ...] = ()   # overrides: (step, cap seconds)

    @staticmethod
    def for_device(device: Device, cores: int) -> CheckConfig:
        """The H100 sizes (224², batch 256, ViT-S/16, a DAVIS-val-sized set), or toy sizes on a CPU."""
        if device == "cuda":
            return CheckConfig(
                "cuda", ("--clips", "1024", "--frames", "24", "--size", "320x240", "--scenes", "64"),
                (4, 2, 1), tuple(sorted({4, 8, cores}, reverse=True)), (0.65, 1.0),   # likely fastest first
                ("--batch-size", "256", "--crop-size", "224", "--rounds", "1", "--seconds", "1.0"),
                (256, 128, 64), ("--device", "cuda", "--model", "vit_small_patch16", "--input-size", "224",
                                 "--steps", "30", "--warmup", "5"),
                ("--sets", "davis", "--davis-seqs", "30", "--davis-size", "854x480", "--davis-frames", "66-67"),
                ("--model", "vit_small_patch16", "--device", "cuda"))
        return CheckConfig(
            "cpu", ("--clips", "16", "--frames", "12", "--size", "96x72", "--scenes", "4", "--clips-per-shard", "8"),
            (2, 1), (2, 1), (0.65,), ("--batch-size", "4", "--crop-size", "64", "--rounds", "1", "--seconds", "0.3"),
            (8, 4), ("--device", "cpu", "--model", "vit_micro_patch16", "--input-size", "64", "--steps", "3",
                     "--warmup", "1", "--torch-threads", "1"),
            ("--sets", "davis", "--davis-seqs", "2", "--davis-size", "128x96", "--davis-frames", "6-6"),
            ("--model", "vit_small_patch16", "--device", "cpu", "--size", "64x112"),
            ("--compile-backend", "aot_eager"))      # inductor's C++ compiles take minutes on 2 cores

    @property
    def rows(self) -> LoaderRows:
        return ROWS[self.device]

    def limits(self, step: str) -> tuple[float, float, float | None]:
        """(cap, min, item cap) of a step, with any override of its cap."""
        cap, least, item = CAPS[self.device][step]
        cap = dict(self.caps).get(step, cap)
        return cap, min(least, cap), None if item is None else min(item, cap)

    def with_caps(self, caps: dict[str, float]) -> CheckConfig:
        return replace(self, caps=tuple(sorted({**dict(self.caps), **caps}.items())))


@dataclass(frozen=True)
class Paths:
    """Where a check writes: results (archived), scratch (data, never archived), carried shards if any."""

    results: Path
    scratch: Path
    given_shards: Path | None

    @property
    def shards(self) -> Path:
        return self.given_shards or self.scratch / "shards"


def gpu_test_files(tests: Path = REPO / "tests") -> list[str]:
    """The test files holding `gpu`-marked tests (only these are collected: the others may import tools
    a GPU machine lacks, such as ffmpeg)."""
    mark = re.compile(r"pytest\.mark\.gpu\b")
    return sorted(str(p.relative_to(REPO)) for p in tests.glob("test_*.py") if mark.search(p.read_text()))


@dataclass(frozen=True)
class StepCommands:
    """Each step's command, built when its turn comes (from what the steps before it left), or the reason
    it cannot run."""

    cfg: CheckConfig
    paths: Paths

    @property
    def _py(self) -> str:
        return sys.executable

    def _ready_shards(self) -> Path | None:
        shards = self.paths.shards
        return shards if (shards / "manifest.json").is_file() else None

    def data(self) -> list[str] | str:
        if self.paths.given_shards is not None:
            return f"shards given: {self.paths.given_shards}"
        return [self._py, "-m", "benchmarks.gpu_data", str(self.paths.shards), *self.cfg.data_args,
                "--workers", str(os.cpu_count() or 1)]

    def train(self, mode: str, loader_options: tuple[str, ...]) -> list[str]:
        cfg, shards = self.cfg, self._ready_shards()
        loader = ["--shards", str(shards), *loader_options] if shards else []
        compiling = ["--compile", *cfg.compile_args] if mode == "compile" else ["--no-compile"]
        return [self._py, "-m", "benchmarks.gpu_items", "train", "--out", str(self.paths.results / f"train-{mode}"),
                "--batch-sizes", ",".join(map(str, cfg.batch_sizes)), *compiling, *cfg.train_args, *loader]

    def sweep(self) -> list[str] | str:
        cfg, shards, rows = self.cfg, self._ready_shards(), self.cfg.rows
        if shards is None:
            return "no shards (the data step did not make them)"
        return [self._py, "-m", "benchmarks.gpu_items", "sweep", "--shards", str(shards),
                "--out", str(self.paths.results / "loader-sweep"), "--rows", f"{rows.loader},{rows.ceiling},{rows.reader}",
                "--py-workers", ",".join(map(str, cfg.py_workers)), "--threads", ",".join(map(str, cfg.threads)),
                "--hw-loads", ",".join(f"{h:g}" for h in cfg.hw_loads), *cfg.sweep_args]

    def davis_data(self) -> list[str]:
        return [self._py, "tools/make_synthetic.py", str(self.paths.scratch / "davis"), *self.cfg.davis_data_args,
                "--workers", str(os.cpu_count() or 1)]

    def davis(self) -> list[str] | str:
        root = self.paths.scratch / "davis" / "DAVIS"
        if not (root / "ImageSets" / "2017" / "val.txt").is_file():
            return "no DAVIS-sized set (the davis-data step did not make it)"
        return [self._py, "-m", "benchmarks.davis_timing", "--davis-root", str(root), "--out",
                str(self.paths.scratch / "davis-results"), *self.cfg.davis_args,
                "--json", str(self.paths.results / "davis" / "davis.json")]

    def gpu_tests(self) -> list[str] | str:
        files = gpu_test_files()
        if not files:
            return "no test file holds a gpu-marked test"
        return [self._py, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider", "--continue-on-collection-errors",
                "-rA", "--junitxml", str(self.paths.results / "gpu-tests" / "junit.xml"), *files]


def plan(cfg: CheckConfig, paths: Paths, best_setting: Callable[[], tuple[str, ...]]) -> list[Step]:
    """The steps after `env`, in order. best_setting() -> siammae-train options of the sweep's fastest
    loader setting (read when train-compile starts), or () when there is none."""
    c = StepCommands(cfg, paths)

    def step(name: str, title: str, command: Callable[[], list[str] | str]) -> Step:
        cap, least, item = cfg.limits(name)
        return Step(name, title, cap, command, least, item)

    return [
        step("data", "clip shards of rendered frames (numpy + Pillow, make_shards' writer)", c.data),
        step("train-eager", "training step, eager: from memory, and fed by the loader at siammae-train's "
                            "defaults", lambda: c.train("eager", ())),
        step("loader-sweep", "DALI loader: source workers x decoder threads x hw_decoder_load, ceiling, "
                             "reader alone", c.sweep),
        step("davis-data", "a DAVIS-val-sized set (toy-sized on a CPU)", c.davis_data),
        step("davis", "DAVIS label propagation + scoring, default protocol", c.davis),
        step("gpu-tests", "the gpu-marked tests", c.gpu_tests),
        step("train-compile", "training step, torch.compile: from memory, and fed by the loader at the "
                              "sweep's fastest setting", lambda: c.train("compile", best_setting())),
    ]
