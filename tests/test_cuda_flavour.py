"""torch and NVIDIA DALI are built for the same CUDA major: the pyproject extras pair them, the Makefile
picks one of them, and the environment running the tests holds a matching pair."""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

tomllib = pytest.importorskip("tomllib")

REPO = Path(__file__).resolve().parents[1]
FLAVOURS = {"cu12": 12, "cu13": 13}
# PyPI's torch wheels for Linux x86-64: CUDA 12 builds up to 2.10, CUDA 13 builds from 2.11 on.
LAST_PYPI_TORCH = {12: "2.10.0", 13: "2.14.1"}
FIRST_PYPI_TORCH = {12: "2.4.0", 13: "2.11.0"}
DALI_DIST = re.compile(r"nvidia-dali-cuda(\d+)0$")


def project() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def dali_majors(requirements: list[str]) -> list[int]:
    """CUDA majors of the DALI builds named in a requirement list (nvidia-dali-cuda130 -> 13)."""
    names = [Requirement(r).name for r in requirements]
    return [int(m.group(1)) for m in map(DALI_DIST.match, names) if m]


def torch_requirement(requirements: list[str]) -> Requirement:
    found = [Requirement(r) for r in requirements if Requirement(r).name == "torch"]
    assert len(found) == 1, requirements
    return found[0]


def test_dali_is_only_named_by_the_cuda_flavour_extras() -> None:
    assert dali_majors(project()["dependencies"]) == [], "DALI's CUDA build is chosen by an extra only"


@pytest.mark.parametrize("flavour", sorted(FLAVOURS))
def test_each_flavour_pairs_torch_and_dali_of_one_cuda_major(flavour: str) -> None:
    extras = project()["optional-dependencies"]
    major = FLAVOURS[flavour]
    assert dali_majors(extras[flavour]) == [major]
    torch_range = torch_requirement(extras[flavour]).specifier
    assert torch_range.contains(FIRST_PYPI_TORCH[major]) and torch_range.contains(LAST_PYPI_TORCH[major])
    other = next(m for m in FLAVOURS.values() if m != major)
    for version in (FIRST_PYPI_TORCH[other], LAST_PYPI_TORCH[other]):
        assert not torch_range.contains(version), f"{flavour} admits torch {version}, a CUDA {other} build"
    assert torch_requirement(project()["dependencies"]).specifier.contains(LAST_PYPI_TORCH[major])


def test_the_makefile_installs_one_flavour() -> None:
    makefile = (REPO / "Makefile").read_text()
    default = re.search(r"^CUDA \?= (\S+)$", makefile, re.MULTILINE)
    assert default and default.group(1) in FLAVOURS
    assert "'.[test,$(CUDA)]'" in makefile
    assert re.search(r"^OTHER_CUDA := .*$", makefile, re.MULTILINE)


def installed_dali_majors() -> list[int]:
    majors = []
    for dist in metadata.distributions():
        m = DALI_DIST.match((dist.metadata["Name"] or "").lower())
        if m:
            majors.append(int(m.group(1)))
    return sorted(set(majors))


def test_installed_torch_and_dali_share_a_cuda_major() -> None:
    torch = pytest.importorskip("torch")
    majors = installed_dali_majors()
    if not majors:
        pytest.skip("no DALI build installed")
    assert len(majors) == 1, f"several DALI CUDA builds installed: {majors}"
    import nvidia.dali

    assert int(nvidia.dali.__cuda_version__) // 1000 == majors[0]
    if torch.version.cuda is None:
        pytest.skip("CPU-only torch build: no CUDA runtime to clash with")
    assert int(torch.version.cuda.split(".")[0]) == majors[0], (
        f"torch is a CUDA {torch.version.cuda} build, DALI a CUDA {majors[0]} one")
