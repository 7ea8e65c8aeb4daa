"""make_shards' input layouts as users have them: a renamed UCF101 tree with --split, and a Kinetics
download (split folders train/ val/ test/ replacement/) read per split or refused, never as classes."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

import tools.make_shards as make_shards_tool
from pipeline import shard_reader as sr
from siammae_common.console import UserError

TOOL = str(REPO / "tools" / "make_shards.py")


def _keys_and_labels(out: Path) -> dict[str, tuple[str, int]]:
    return {c.key: (c.meta["class_name"], c.meta["label"]) for s in sr.list_shards(out) for c in sr.iter_clips(s.tar)}


@pytest.mark.parametrize("give", ["parent", "renamed"])
def test_split_finds_the_lists_beside_a_renamed_ucf101_tree(synthetic_root: Path, synthetic_shards: Path,
                                                            tmp_path: Path, give: str) -> None:
    ucf = tmp_path / "ucf101"
    shutil.copytree(synthetic_root / "UCF-101", ucf / "videos")            # UCF-101/ renamed
    shutil.copytree(synthetic_root / "ucfTrainTestlist", ucf / "ucfTrainTestlist")
    src = ucf if give == "parent" else ucf / "videos"
    wanted = make_shards_tool.find_inputs(synthetic_root, "trainlist01")
    found = make_shards_tool.find_inputs(src, "trainlist01")
    assert [(v.key, v.class_name, v.label) for v in found.videos] == \
           [(v.key, v.class_name, v.label) for v in wanted.videos]
    assert found.classes == wanted.classes and not found.problems
    if give == "renamed":                                                  # and it shards as the original does
        make_shards_tool.make_shards(src, tmp_path / "out", split="trainlist01", shard_size="2clips", workers=2)
        listed = {Path(line.split()[0]).stem for line in
                  (synthetic_root / "ucfTrainTestlist" / "trainlist01.txt").read_text().splitlines()}
        clips = _keys_and_labels(tmp_path / "out")
        assert set(clips) == listed
        assert all(clips[k] == v for k, v in _keys_and_labels(synthetic_shards).items() if k in clips)


def _kinetics(root: Path, video: Path) -> Path:
    """A miniature of the CVDF Kinetics-400 download: flat split folders, CSV labels, replacements."""
    k400 = root / "k400"
    names = {"train": ["abcdefghij0_000010_000020", "ABCDEFGHIJ1_000002_000012", "a-b_c-d_e-2_000000_000010"],
             "val": ["valvalval00_000005_000015"], "test": ["testtesttes_000001_000011"]}
    for split, stems in names.items():
        (k400 / split).mkdir(parents=True)
        for stem in stems:
            shutil.copy(video, k400 / split / f"{stem}.mp4")
    (k400 / "annotations").mkdir()
    (k400 / "annotations" / "train.csv").write_text(
        "label,youtube_id,time_start,time_end,split,is_cc\n"
        "abseiling,abcdefghij0,10,20,train,0\n\"passing American football (in game)\",ABCDEFGHIJ1,2,12,train,0\n"
        "yoga,a-b_c-d_e-2,0,10,train,0\n")
    spare = k400 / "replacement" / "replacement_for_corrupted_k400"
    spare.mkdir(parents=True)
    shutil.copy(video, spare / "ABCDEFGHIJ1_000002_000012.mp4")
    return k400


def test_a_kinetics_root_is_refused_without_subset_and_read_per_split_with_it(video_dir: Path,
                                                                              tmp_path: Path) -> None:
    k400 = _kinetics(tmp_path, video_dir / "A" / "h264.mp4")
    r = subprocess.run([sys.executable, TOOL, str(k400), "--out", str(tmp_path / "o")], capture_output=True,
                       check=False, text=True)
    assert r.returncode == 2 and "--subset" in r.stderr and "not classes" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not (tmp_path / "o").exists()
    train = make_shards_tool.find_inputs(k400, None, "train")
    by_key = {v.key: v for v in train.videos}
    assert set(by_key) == {"abcdefghij0_000010_000020", "ABCDEFGHIJ1_000002_000012", "a-b_c-d_e-2_000000_000010"}
    assert train.classes == ["abseiling", "passing American football (in game)", "yoga"]
    assert by_key["ABCDEFGHIJ1_000002_000012"].class_name == "passing American football (in game)"
    assert by_key["ABCDEFGHIJ1_000002_000012"].source.startswith("replacement/")      # the re-downloaded copy
    assert by_key["abcdefghij0_000010_000020"].source == "train/abcdefghij0_000010_000020.mp4"
    val = make_shards_tool.find_inputs(k400, None, "val")
    assert [(v.key, v.label) for v in val.videos] == [("valvalval00_000005_000015", -1)]   # no val.csv: unlabelled
    with pytest.raises(UserError, match="no such split folder"):
        shutil.rmtree(k400 / "test")
        make_shards_tool.find_inputs(k400, None, "test")


def test_a_rearranged_kinetics_split_takes_its_class_folders(video_dir: Path, tmp_path: Path) -> None:
    root = tmp_path / "videos"
    for split, cls in (("train", "abseiling"), ("train", "yoga"), ("val", "yoga")):
        (root / split / cls).mkdir(parents=True)
        shutil.copy(video_dir / "A" / "h264.mp4", root / split / cls / f"{cls}_clip.mp4")
    train = make_shards_tool.find_inputs(root, None, "train")
    assert train.classes == ["abseiling", "yoga"]
    assert sorted(v.source for v in train.videos) == ["train/abseiling/abseiling_clip.mp4", "train/yoga/yoga_clip.mp4"]
