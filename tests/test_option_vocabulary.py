"""One option vocabulary across siammae-train, siammae-bench and the tools, old spellings still accepted,
and help texts that name only options that exist."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest

import tools.make_shards as make_shards_tool
import tools.make_synthetic as make_synthetic_tool
from benchmarks import bench, train_step_bench
from evaluation import cli as eval_cli
from model import train_cli

LOADER_WORDS = ("--num-threads", "--num-workers", "--prefetch-queue-depth", "--py-num-workers", "--source-prefetch",
                "--hw-decoder-load")


def _flags(command: click.Command) -> set[str]:
    return {name.split("/")[0] for p in command.params for name in (*p.opts, *p.secondary_opts)}


def test_the_loader_options_have_one_name_in_training_and_both_benchmarks() -> None:
    for command in (train_cli.main, bench.main, train_step_bench.main):
        assert set(LOADER_WORDS) <= _flags(command), command.name


def test_worker_processes_are_num_workers_everywhere_and_the_old_names_still_parse(tmp_path: Path) -> None:
    for command in (make_shards_tool.main, make_synthetic_tool.main, eval_cli.main.commands["davis-score"]):
        assert "--num-workers" in _flags(command) and "--workers" in _flags(command), command.name
    old = {"--workers": "3", "--prefetch": "4", "--py-workers": "2"}
    ctx = bench.main.make_context("siammae-bench", ["--shards", str(tmp_path), *[a for kv in old.items() for a in kv]])
    new = bench.main.make_context("siammae-bench", ["--shards", str(tmp_path), "--num-workers", "3",
                                                    "--prefetch-queue-depth", "4", "--py-num-workers", "2"])
    assert ctx.params == new.params and ctx.params["workers"] == 3 and ctx.params["threads"] is None
    train = train_cli.main.make_context("siammae-train", ["--shards", "s", "--threads", "5", "--prefetch", "3"])
    assert train.params["num_threads"] == 5 and train.params["prefetch_queue_depth"] == 3


@pytest.mark.parametrize("command", [train_cli.main, bench.main, make_shards_tool.main,
                                     *eval_cli.main.commands.values()], ids=lambda c: c.name)
def test_help_texts_name_only_options_that_exist(command: click.Command) -> None:
    flags = _flags(command) | {f"--no-{f[2:]}" for f in _flags(command)}
    for param in command.params:
        for named in re.findall(r"--[a-z][a-z0-9-]*", getattr(param, "help", None) or ""):
            assert named in flags, f"{command.name} {param.opts[0]}: its help names {named}, which is no option"


def test_latest_every_and_torch_threads_help_say_what_the_code_does() -> None:
    helps = {p.name: p.help for p in train_cli.main.params}
    assert "epoch end" not in helps["latest_every"] and "--save-every" in helps["latest_every"]
    assert "--threads" not in helps["torch_threads"] and "--num-threads" in helps["torch_threads"]
