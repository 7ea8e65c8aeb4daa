"""siammae-train and its input: the DALI pipeline is built once per run even when an epoch's micro-batches
do not divide into steps, a resumed run decodes no batch twice and still matches the uninterrupted run,
every row says how long the steps waited for data, and every DALI knob is an option recorded in
config.json."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from coded_shards import write_coded_shards

import pipeline.dali_loader
from model.train_cli import main
from pipeline.dali_source import PairSource
from pipeline.wds_batches import BatchMaker

N_FRAMES = [40, 10, 60, 3, 50, 2, 45]          # 14 pairs: 7 micro-batches of 2, 2 steps of 3 an epoch
TINY = ["--model", "vit_micro_patch16", "--input-size", "32", "--device", "cpu", "--warmup-steps", "1",
        "--blr", "0.01", "--log-every", "1", "--recon-every", "1000", "--torch-threads", "1", "--threads", "1",
        "--num-workers", "0", "--batch-size", "6", "--accum-steps", "3", "--max-steps", "6"]


@pytest.fixture(scope="module")
def coded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_coded_shards(tmp_path_factory.mktemp("coded"), N_FRAMES, clips_per_shard=3)


@pytest.fixture(autouse=True)
def keep_torch_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def train(shards: Path, out: Path, *extra: str) -> str:
    result = CliRunner().invoke(main, ["--shards", str(shards), "--out", str(out), *TINY, *extra])
    assert result.exit_code == 0, result.output
    return result.output


def rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


class Recorder:
    """Counts DALI pipeline builds and the global batches the byte sources were asked for."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.undo()                                  # one recorder at a time
        self.builds, self.batches = 0, []
        build, call, make = pipeline.dali_loader.build_pipeline, PairSource.__call__, BatchMaker.make

        def counting_build(*args, **kwargs):
            self.builds += 1
            return build(*args, **kwargs)

        def recording_call(source, info):
            self.batches.append(source.start_batch + info.iteration)
            return call(source, info)

        def recording_make(maker, g):
            self.batches.append(g)
            return make(maker, g)

        monkeypatch.setattr(pipeline.dali_loader, "build_pipeline", counting_build)
        monkeypatch.setattr(PairSource, "__call__", recording_call)
        monkeypatch.setattr(BatchMaker, "make", recording_make)


@pytest.mark.parametrize("loader", ["dali", "wds"])
def test_accumulation_that_does_not_divide_an_epoch_builds_the_pipeline_once_and_resumes_without_rereading(
        coded: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, loader: str) -> None:
    straight = Recorder(monkeypatch)
    train(coded, tmp_path / "straight", "--loader", loader)                 # 3 epochs of 2 steps
    assert [r["step"] for r in rows(tmp_path / "straight")] == [1, 2, 3, 4, 5, 6]
    if loader == "dali":
        assert straight.builds == 1
    assert straight.batches[:18] == list(range(18))         # 6 micro-batches an epoch, none skipped

    first = Recorder(monkeypatch)
    train(coded, tmp_path / "resumed", "--loader", loader, "--stop-at-step", "3")     # mid-epoch 1
    second = Recorder(monkeypatch)
    output = train(coded, tmp_path / "resumed", "--loader", loader, "--resume")
    assert "resumed from" in output
    assert second.batches[:9] == list(range(9, 18))          # starts at the batch it stopped before
    assert len(second.batches) == len(set(second.batches)) and min(second.batches) == 9
    assert max(first.batches) < 9 + 4                        # the stopped run read ahead at most its prefetch
    a, b = rows(tmp_path / "straight"), rows(tmp_path / "resumed")
    assert [(r["loss"], r["lr"]) for r in a] == [(r["loss"], r["lr"]) for r in b]


def test_every_row_says_how_long_the_steps_waited_for_data(coded: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """A loader made slow on purpose (0.3 s per micro-batch) must show up as input-bound."""
    output = train(coded, tmp_path / "fast")
    fast = rows(tmp_path / "fast")
    assert all(0 <= r["data_wait_frac"] <= 1 and r["data_wait_s"] >= 0 for r in fast)
    assert "input-bound" in output and "% of the time" in output

    real_iter = pipeline.dali_loader.DaliPairLoader.__iter__

    def slow_iter(loader):
        for batch in real_iter(loader):
            time.sleep(0.3)
            yield batch

    monkeypatch.setattr(pipeline.dali_loader.DaliPairLoader, "__iter__", slow_iter)
    output = train(coded, tmp_path / "slow")
    slow = rows(tmp_path / "slow")
    assert all(r["data_wait_s"] >= 0.9 and r["data_wait_frac"] > 0.5 for r in slow[1:])     # 3 x 0.3 s a step
    assert all(r["data_wait_frac"] > f["data_wait_frac"] for r, f in zip(slow[1:], fast[1:]))
    line = next(s for s in output.splitlines() if "input-bound" in s)
    assert int(line.split("input-bound ")[1].split("%")[0]) > 50


def test_every_dali_knob_is_an_option_and_recorded(coded: Path, tmp_path: Path) -> None:
    out = tmp_path / "knobs"
    train(coded, out, "--max-steps", "1", "--hw-decoder-load", "0.8", "--prefetch", "3", "--parallel-source", "on",
          "--py-num-workers", "2", "--source-prefetch", "5")
    config = json.loads((out / "config.json").read_text())
    decoder = config["loader"]["decoder"]
    assert decoder == {"hw_decoder_load": 0.8, "prefetch_queue_depth": 3, "num_threads": 1, "py_num_workers": 2,
                       "parallel_source": True, "source_prefetch": 5}
    assert config["loader"]["batches_per_step"] == 3 and config["train"]["dali"]["num_threads"] == 1


def test_decoder_threads_default_to_the_cores_each_process_may_use(monkeypatch: pytest.MonkeyPatch) -> None:
    from model import train_loader
    from model.train_config import TrainConfig

    monkeypatch.setattr(train_loader.os, "sched_getaffinity", lambda pid: set(range(32)))
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    cfg = TrainConfig.from_options(shards=Path("s"), out=Path("o"))
    gpu, cpu = torch.device("cuda", 0), torch.device("cpu")
    assert train_loader.source_workers(cfg) == 2                         # a quarter of the 8 cores
    assert train_loader.decoder_threads(cfg, gpu) == 8 - 1 - 2          # the loop's thread, the source workers
    off = TrainConfig.from_options(shards=Path("s"), out=Path("o"), parallel_source="off")
    assert train_loader.decoder_threads(off, gpu) == 7
    assert train_loader.decoder_threads(cfg, cpu) == 4 and train_loader.torch_threads(cfg, cpu) == 4
    set_by_user = TrainConfig.from_options(shards=Path("s"), out=Path("o"), num_threads=3)
    assert train_loader.decoder_threads(set_by_user, gpu) == 3 and train_loader.torch_threads(set_by_user, cpu) == 5


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_on_a_gpu_the_pipeline_is_built_once_and_the_wait_is_measured(coded: Path, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    recorder = Recorder(monkeypatch)
    args = [a for a in TINY if a not in ("cpu",)]
    args[args.index("--device") + 1:args.index("--device") + 1] = ["cuda"]
    result = CliRunner().invoke(main, ["--shards", str(coded), "--out", str(tmp_path / "gpu"), *args])
    assert result.exit_code == 0, result.output
    assert recorder.builds == 1 and "input-bound" in result.output
    assert all(0 <= r["data_wait_frac"] <= 1 for r in rows(tmp_path / "gpu"))
