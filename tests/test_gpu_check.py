"""benchmarks/gpu_check.sh keeps to its budget and always leaves exactly one archive: a step over its cap is
killed with its children, a step that no longer fits is skipped, a stalled item does not end its step,
SIGTERM still packs; in CPU mode the check runs its steps under a short budget; the gpu-marked tests
and their data need no video tools (a GPU machine may have none)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from benchmarks.gpu_plan import STEP_NAMES, gpu_test_files
from benchmarks.gpu_steps import Step, StepRunner, pack

REPO = Path(__file__).resolve().parents[1]
CHECK = str(REPO / "benchmarks" / "gpu_check.sh")
PY = sys.executable


def runner(tmp_path: Path, budget: float) -> StepRunner:
    results = tmp_path / "results"
    results.mkdir()
    return StepRunner(results, budget, reserve_s=0.0, started=time.time())


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


def only_archive(out: Path) -> dict[str, bytes]:
    """The one file in out, a tar.gz: {member path below its top folder: content}."""
    files = list(out.iterdir())
    assert len(files) == 1 and files[0].name.endswith(".tar.gz"), files
    with tarfile.open(files[0]) as tar:
        return {m.name.split("/", 1)[1]: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}


def test_a_step_over_its_cap_is_killed_with_its_children_and_the_next_step_runs(tmp_path: Path) -> None:
    r = runner(tmp_path, budget=60)
    pid_file = tmp_path / "child.pid"
    hang = Step("hang", "", 1.0, lambda: ["bash", "-c", f"sleep 60 & echo $! > {pid_file}; wait"], min_s=0.5)
    after = Step("after", "", 10.0, lambda: [PY, "-c", "print('after ran')"], min_s=0.5)
    first, second = r.run(hang), r.run(after)
    assert first.status == "timeout" and first.seconds < 10
    assert not alive(int(pid_file.read_text()))                  # the step's child went with it
    assert second.status == "ok" and "after ran" in (r.results / "after" / "output.txt").read_text()
    saved = json.loads((r.results / "steps.json").read_text())
    assert [s["status"] for s in saved["steps"]] == ["timeout", "ok"]


def test_a_step_gets_no_more_than_the_budget_left_and_one_that_no_longer_fits_is_skipped(tmp_path: Path) -> None:
    r = runner(tmp_path, budget=2.5)
    slow = r.run(Step("slow", "", 100.0, lambda: ["sleep", "30"], min_s=0.5))
    late = r.run(Step("late", "", 100.0, lambda: ["true"], min_s=1.0))
    assert slow.status == "timeout" and slow.timeout_s <= 2.5
    assert late.status == "skipped" and late.reason.startswith("budget")


def test_a_stalled_item_is_given_up_and_the_step_goes_on_with_the_next(tmp_path: Path) -> None:
    script = ("import sys, time; from pathlib import Path; from benchmarks.gpu_items import run_items\n"
              "def ok(path): path.write_text('{}')\n"
              "run_items(Path(sys.argv[1]), [('a', ok), ('b', lambda path: time.sleep(60)), ('c', ok)])\n")
    r = runner(tmp_path, budget=60)
    out = r.results / "items"
    rec = r.run(Step("items", "", 40.0, lambda: [PY, "-c", script, str(out)], min_s=1.0, item_cap_s=3.0))
    assert rec.items == {"a": "done", "b": "stalled", "c": "done"}
    assert rec.restarts == 1 and rec.status == "partial"


def test_packing_again_replaces_the_archive(tmp_path: Path) -> None:
    results, out = tmp_path / "gpu-check-x", tmp_path / "out"
    results.mkdir()
    out.mkdir()
    for text in ("first", "second"):
        (results / "log.txt").write_text(text)
        pack(results, out / "gpu-check-x.tar.gz")
    assert only_archive(out) == {"log.txt": b"second"}


def test_without_a_python_the_wrapper_still_leaves_one_archive_with_the_error(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHON": str(tmp_path / "no-such-python")}
    done = subprocess.run([CHECK, "--out", str(tmp_path / "out")], env=env, capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode != 0
    log = only_archive(tmp_path / "out")["log.txt"].decode()
    assert "no-such-python" in log and "command: benchmarks/gpu_check.sh --out" in log


@pytest.mark.slow
def test_sigterm_stops_the_running_step_and_the_check_still_packs_one_archive(tmp_path: Path) -> None:
    out, work = tmp_path / "out", tmp_path / "work"
    work.mkdir()
    proc = subprocess.Popen([CHECK, "--device", "cpu", "--only", "train-eager", "--budget", "300", "--out", str(out)],
                            env={**os.environ, "PYTHON": PY, "TMPDIR": str(work)}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and not list(work.glob("siammae-gpu-check-*/*/train-eager/output.txt")):
        time.sleep(0.2)
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    output = proc.communicate(timeout=60)[0]
    assert proc.returncode == 143, output
    files = only_archive(out)
    steps = {s["name"]: s["status"] for s in json.loads(files["steps.json"])["steps"]}
    assert steps["env"] == "ok" and steps["train-eager"] == "interrupted", steps
    assert {steps[n] for n in STEP_NAMES if n not in ("env", "train-eager")} == {"not selected"}
    assert "train-eager/output.txt" in files and "summary.md" in files
    assert not any(str(work) in Path(f"/proc/{p}/cmdline").read_text(errors="replace")     # no step left running
                   for p in os.listdir("/proc") if p.isdigit() and Path(f"/proc/{p}/cmdline").exists())


@pytest.mark.slow
def test_in_cpu_mode_the_check_runs_its_steps_within_a_short_budget(tmp_path: Path) -> None:
    out, budget = tmp_path / "out", 60
    done = subprocess.run([CHECK, "--device", "cpu", "--budget", str(budget), "--out", str(out)],
                          env={**os.environ, "PYTHON": PY}, capture_output=True, text=True, timeout=budget + 60,
                          check=False)
    files = only_archive(out)
    env = json.loads(files["env.json"])
    assert env["command"].startswith("benchmarks/gpu_check.sh --device cpu") and env["date"]
    assert env["versions"]["torch"] and env["versions"]["python_executable"] == PY and env["cpu_cores"] >= 1
    saved = json.loads(files["steps.json"])
    steps = {s["name"]: s["status"] for s in saved["steps"]}
    assert list(steps) == list(STEP_NAMES) and saved["elapsed_s"] <= budget
    assert steps["env"] == steps["data"] == "ok" and "failed" not in steps.values(), steps
    ran = [n for n in STEP_NAMES if steps[n] != "skipped"]
    assert all(f"{n}/output.txt" in files for n in ran)
    assert any(name.startswith("train-eager/train-eager-b") and name.endswith(".json") for name in files)
    assert "## Steps" in done.stdout and "summary.md" in files
    assert done.returncode == (0 if set(steps.values()) == {"ok"} else 1)


BLOCK_VIDEO_TOOLS = """import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("imageio_ffmpeg", "av", "ffmpeg"):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)")
sys.meta_path.insert(0, Block())
"""


@pytest.mark.slow
def test_the_gpu_tests_and_their_data_need_no_video_tools(tmp_path: Path) -> None:
    (tmp_path / "sitecustomize.py").write_text(BLOCK_VIDEO_TOOLS)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO), str(REPO / "tests")])}
    files = gpu_test_files()
    assert "tests/test_eval_tasks.py" in files and "tests/test_make_shards.py" not in files
    collect = subprocess.run([PY, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", "-m", "gpu",
                              *files], cwd=REPO, env=env, capture_output=True, text=True, timeout=240, check=False)
    assert collect.returncode == 0 and "test_davis_on_the_gpu_matches_the_cpu" in collect.stdout, collect.stdout
    make = ("import sys; from dataclasses import replace; from pathlib import Path; import conftest\n"
            "from coded_shards import write_coded_shards\n"
            "import tools.make_synthetic as m\n"
            "root = Path(sys.argv[1])\n"
            "m.make_synthetic(root / 's', replace(conftest.tiny_synthetic_config(), sets=('davis',)), workers=1)\n"
            "write_coded_shards(root / 'c', [10, 12])\n")
    done = subprocess.run([PY, "-c", make, str(tmp_path)], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=240, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "s" / "DAVIS" / "ImageSets" / "2017" / "val.txt").is_file()
    assert (tmp_path / "c" / "manifest.json").is_file()
