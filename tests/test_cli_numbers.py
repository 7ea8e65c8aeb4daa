"""Every command checks its numbers at the edge: NaN, infinity and out-of-range values are one line naming
the option, exit status 2, before any work (siammae_common.cli_types)."""

from __future__ import annotations

import importlib

import pytest
from click.testing import CliRunner

PATHS = {"ablate": ["--shards", "s", "--davis-root", "d", "--out", "o"], "bench": [], "make_synthetic": ["o"],
         "demo": [], "make_shards": ["src"], "eval": ["davis", "--davis-root", ".", "--out", "o", "--pixels"]}
MODULES = {"ablate": "ablation.cli", "bench": "benchmarks.bench", "make_synthetic": "tools.make_synthetic",
           "demo": "tools.demo", "make_shards": "tools.make_shards", "eval": "evaluation.cli"}
CASES = [("ablate", "--blr", "nan"), ("ablate", "--warmup-epochs", "inf"), ("ablate", "--batch-size", "0"),
         ("ablate", "--seed", "-1"), ("bench", "--seconds", "nan"), ("bench", "--hw-decoder-load", "nan"),
         ("make_synthetic", "--speed", "nan"), ("make_synthetic", "--object-size", "inf"),
         ("make_synthetic", "--classes", "0"), ("make_synthetic", "--workers", "-2"), ("demo", "--steps", "0"),
         ("make_shards", "--fps", "nan"), ("make_shards", "--workers", "0"), ("eval", "--temperature", "nan"),
         ("eval", "--radius", "-inf"), ("eval", "--topk", "0")]


@pytest.mark.parametrize(("command", "option", "value"), CASES, ids=[" ".join(c) for c in CASES])
def test_a_bad_number_is_one_line_naming_the_option(command: str, option: str, value: str) -> None:
    main = importlib.import_module(MODULES[command]).main
    result = CliRunner().invoke(main, [*PATHS[command], option, value])
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1 and option in lines[0], result.output
