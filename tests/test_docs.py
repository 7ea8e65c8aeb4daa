"""Every command in README.md and docs/ runs as written: the blocks marked `<!-- doc-test: run -->` (they
need no download) are run in a scratch folder; in every other shell block, each siammae command must
exist and every option it is given must be one of that command's (a renamed option fails here)."""

from __future__ import annotations

import importlib
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import click
import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), REPO / "shards" / "README.md",
        REPO / "benchmarks" / "README.md"]
RUN_MARK = "<!-- doc-test: run -->"
COMMANDS = {                              # how the docs call a command -> its click entry point
    "siammae-train": "model.train_cli", "siammae-eval": "evaluation.cli", "siammae-bench": "benchmarks.bench",
    "siammae-ablate": "ablation.cli", "siammae-export": "model.export",
    "tools/make_shards.py": "tools.make_shards", "tools/make_synthetic.py": "tools.make_synthetic",
    "tools/demo.py": "tools.demo", "benchmarks.train_step_bench": "benchmarks.train_step_bench",
}
SHELL_STOP = {">", ">>", "|", "&&", ";", "2>&1", "||", "&"}


@dataclass(frozen=True)
class Block:
    doc: Path
    line: int
    text: str
    run: bool


def shell_blocks(doc: Path) -> list[Block]:
    """The ```bash blocks of a markdown file, and whether the line before marks them to be run."""
    lines, blocks = doc.read_text().splitlines(), []
    i = 0
    while i < len(lines):
        if lines[i].strip() in ("```bash", "```sh"):
            end = next(j for j in range(i + 1, len(lines)) if lines[j].strip() == "```")
            marked = i > 0 and lines[i - 1].strip() == RUN_MARK
            blocks.append(Block(doc, i + 1, "\n".join(lines[i + 1:end]), marked))
            i = end
        i += 1
    return blocks


def invocations(text: str) -> list[tuple[str, list[str]]]:
    """(command, its arguments) for every siammae command in a shell block (`$(which x)` included)."""
    joined = re.sub(r"\\\n\s*", " ", text)
    found = []
    for line in joined.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        words = shlex.split(line.replace("$(which ", "").replace(")", " "), comments=True)
        for k, word in enumerate(words):
            name = word if word in COMMANDS else next((c for c in COMMANDS if c.endswith(".py") and
                                                      word.endswith(c)), None)
            if name is None and word == "-m" and k + 1 < len(words) and words[k + 1] in COMMANDS:
                continue
            if name is None and k > 0 and words[k - 1] == "-m" and word in COMMANDS:
                name = word
            if name is not None:
                args = []
                for arg in words[k + 1:]:
                    if arg in SHELL_STOP or arg.startswith((">", "2>")):
                        break
                    args.append(arg)
                found.append((name, args))
                break
    return found


def _command(name: str, args: list[str]) -> tuple[click.Command, list[str]]:
    command = importlib.import_module(COMMANDS[name]).main
    if isinstance(command, click.Group) and args and not args[0].startswith("-"):
        assert args[0] in command.commands, f"{name} has no subcommand {args[0]}"
        return command.commands[args[0]], args[1:]
    return command, args


def _check_options(name: str, args: list[str]) -> None:
    command, args = _command(name, args)
    options = {o: p for p in command.params if isinstance(p, click.Option) for o in (*p.opts, *p.secondary_opts)}
    for k, arg in enumerate(args):
        if not arg.startswith("--"):
            continue
        flag, _, value = arg.partition("=")
        assert flag in options, f"{name} {command.name}: no option {flag}"
        param = options[flag]
        if not value and not param.is_flag and k + 1 < len(args):
            value = args[k + 1]
        if isinstance(param.type, click.Choice) and value and "$" not in value:
            assert value in param.type.choices, f"{name} {flag} {value}: not one of {param.type.choices}"


ALL_BLOCKS = [b for doc in DOCS for b in shell_blocks(doc)]


def test_the_docs_hold_commands_and_a_block_to_run() -> None:
    assert sum(len(invocations(b.text)) for b in ALL_BLOCKS) > 20
    assert any(b.run for b in ALL_BLOCKS if b.doc.name == "README.md")


@pytest.mark.parametrize("block", ALL_BLOCKS, ids=lambda b: f"{b.doc.name}:{b.line}")
def test_every_command_and_option_in_the_docs_exists(block: Block) -> None:
    for name, args in invocations(block.text):
        _check_options(name, args)


@pytest.mark.parametrize("block", [b for b in ALL_BLOCKS if b.run], ids=lambda b: f"{b.doc.name}:{b.line}")
def test_the_blocks_that_need_no_download_run_as_written(block: Block, tmp_path: Path) -> None:
    (tmp_path / "tools").symlink_to(REPO / "tools")             # the commands are written from the repo root
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", block.text], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, f"{block.doc.name}:{block.line} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
