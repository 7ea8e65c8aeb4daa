"""Which videos siammae-eval evaluates, never a silently wrong set: DAVIS test sets as a submission zip,
missing JHMDB splits / VIP lists as errors, the list files of CRW, UVC and CropMAE, roots one folder up."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_eval_cli import run

from evaluation.davis_io import open_davis
from evaluation.video_lists import read_list_file
from siammae_common.console import UserError

FAST = ["--pixels", "--patch-size", "8", "--size", "64x96", "--device", "cpu"]


@pytest.fixture()
def test_dev(synthetic_root: Path, tmp_path: Path) -> Path:
    """The synthetic DAVIS set laid out as DAVIS-2017-test-dev-480p.zip is: frame 0 annotated only."""
    root = tmp_path / "DAVIS"
    shutil.copytree(synthetic_root / "DAVIS", root)
    for png in (root / "Annotations" / "480p").glob("*/*.png"):
        if png.stem != "00000":
            png.unlink()
    (root / "ImageSets" / "2017" / "val.txt").rename(root / "ImageSets" / "2017" / "test-dev.txt")
    return root


def test_a_test_dev_set_gives_a_submission_zip_in_the_challenge_layout_and_exit_0(test_dev: Path,
                                                                                   tmp_path: Path) -> None:
    out = tmp_path / "sub"
    code, output = run("davis", "--davis-root", test_dev, "--subset", "test-dev", "--out", out, *FAST)
    assert code == 0, output
    assert "challenge" in output and "server" in output
    sequences = open_davis(test_dev, "test-dev")
    archive = out / "davis2017-test-dev-480p-submission.zip"
    with zipfile.ZipFile(archive) as z:
        names = sorted(z.namelist())
        assert names == sorted(f"{s.name}/{f.stem}.png" for s in sequences for f in s.frames)
        assert {n.split("/")[0] for n in names} == {s.name for s in sequences}      # no parent folder
        with z.open(names[1]) as member:
            image = Image.open(member)
            image.load()
    assert image.mode == "P" and image.size == Image.open(sequences[0].frames[0]).size
    first_objects = int(np.array(Image.open(sequences[0].masks[0])).max())
    assert int(np.array(image).max()) <= first_objects
    summary = json.loads((out / "submission.json").read_text())
    assert summary["scored"] is False and summary["frames"] == len(names) and summary["protocol"] == "cropmae"
    assert not (out / "metrics.json").exists()


def test_scoring_a_test_set_stops_before_propagating_and_points_at_the_submission(test_dev: Path,
                                                                                   tmp_path: Path) -> None:
    code, output = run("davis", "--davis-root", test_dev, "--subset", "test-dev", "--sequences", "synth-00",
                       "--out", tmp_path / "x", *FAST)
    assert code == 0                                                  # a test subset is never scored
    shutil.copy(test_dev / "ImageSets" / "2017" / "test-dev.txt", test_dev / "ImageSets" / "2017" / "val.txt")
    code, output = run("davis", "--davis-root", test_dev, "--out", tmp_path / "y", *FAST)
    assert code == 2 and "--no-score" in output and "annotation PNG(s) for" in output
    assert not (tmp_path / "y").exists()                              # failed before any work


def test_no_score_on_an_annotated_subset_writes_the_zip_too(synthetic_root: Path, tmp_path: Path) -> None:
    code, output = run("davis", "--davis-root", synthetic_root / "DAVIS", "--no-score", "--out", tmp_path / "v", *FAST)
    assert code == 0, output
    assert (tmp_path / "v" / "davis2017-val-480p-submission.zip").is_file()
    code, output = run("davis", "--davis-root", synthetic_root / "DAVIS", "--no-score", "--score-on",
                       "protocol-size", "--out", tmp_path / "w", *FAST)
    assert code == 2 and "--score-on" in output


def test_missing_jhmdb_splits_or_vip_list_exit_2_naming_the_download_unless_all_videos(
        synthetic_root: Path, tmp_path: Path) -> None:
    jhmdb, vip = tmp_path / "JHMDB", tmp_path / "VIP"
    shutil.copytree(synthetic_root / "JHMDB", jhmdb)
    shutil.copytree(synthetic_root / "VIP", vip)
    shutil.rmtree(jhmdb / "splits")
    shutil.rmtree(vip / "lists")
    code, output = run("jhmdb", "--jhmdb-root", jhmdb, "--out", tmp_path / "j", *FAST)
    assert code == 2 and "splits.zip" in output and "--all-videos" in output and "--list" in output
    code, output = run("vip", "--vip-root", vip, "--out", tmp_path / "v", *FAST)
    assert code == 2 and "VIP_Fine.zip" in output and "val_videos.txt" in output
    assert not (tmp_path / "j").exists() and not (tmp_path / "v").exists()
    code, output = run("jhmdb", "--jhmdb-root", jhmdb, "--out", tmp_path / "j", "--all-videos", *FAST)
    videos = sorted(p.parent.name + "/" + p.name for p in (jhmdb / "Rename_Images").glob("*/*"))
    assert code == 0 and f"({len(videos)} videos)" in output, output
    code, output = run("vip", "--vip-root", vip, "--out", tmp_path / "v", "--all-videos", *FAST)
    assert code == 0 and "(2 videos)" in output, output


def test_the_list_formats_of_crw_uvc_and_cropmae_read_as_video_names(tmp_path: Path) -> None:
    crw_davis = tmp_path / "davis_vallist.txt"         # CRW, CropMAE: frames folder, then annotations folder
    crw_davis.write_text("/scratch/x/davis/JPEGImages/480p/bike-packing /scratch/x/davis/Annotations/480p/bike-packing\n"
                         "/scratch/x/davis/JPEGImages/480p/blackswan /scratch/x/davis/Annotations/480p/blackswan\n")
    cropmae_vip = tmp_path / "vip_vallist.txt"
    cropmae_vip.write_text("datasets/VIP/Images/videos338 datasets/VIP/Annotations/Category_ids/videos338\r\n\r\n")
    uvc_vip = tmp_path / "val_videos.txt"              # UVC's --val_txt, VIP's own list: a name per line
    uvc_vip.write_text("videos338\nvideos311\n")
    mat = "datasets/jhmdb/joint_positions/golf/Golf_swing_f_cm_np1_ri_goo_0/joint_positions.mat"
    frames = "datasets/jhmdb/Rename_Images/golf/Golf_swing_f_cm_np1_ri_goo_0"
    cropmae_jhmdb = tmp_path / "jhmdb_vallist.txt"     # CropMAE, UVC: labels first
    cropmae_jhmdb.write_text(f"{mat} {frames}\n")
    crw_jhmdb = tmp_path / "crw_jhmdb.txt"             # CRW: frames first
    crw_jhmdb.write_text(f"{frames}/ {mat}\n")
    assert read_list_file(crw_davis) == ["bike-packing", "blackswan"]
    assert read_list_file(cropmae_vip) == ["videos338"]
    assert read_list_file(uvc_vip) == ["videos338", "videos311"]
    assert read_list_file(cropmae_jhmdb, parts=2) == ["golf/Golf_swing_f_cm_np1_ri_goo_0"]
    assert read_list_file(crw_jhmdb, parts=2) == ["golf/Golf_swing_f_cm_np1_ri_goo_0"]
    mixed = tmp_path / "mixed.txt"
    mixed.write_text("JPEGImages/480p/dog Annotations/480p/cows\n")
    with pytest.raises(UserError, match=r"mixed.txt:1: the columns name different videos"):
        read_list_file(mixed)


def test_list_picks_the_videos_and_a_name_missing_under_the_root_is_an_error(synthetic_root: Path,
                                                                              tmp_path: Path) -> None:
    jhmdb = synthetic_root / "JHMDB"
    one = min((jhmdb / "Rename_Images").glob("*/*"))
    listing = tmp_path / "jhmdb_vallist.txt"
    listing.write_text(f"/elsewhere/JHMDB/joint_positions/{one.parent.name}/{one.name}/joint_positions.mat "
                       f"/elsewhere/JHMDB/Rename_Images/{one.parent.name}/{one.name}\n")
    code, output = run("jhmdb", "--jhmdb-root", jhmdb, "--out", tmp_path / "j", "--list", listing, *FAST)
    assert code == 0 and "(1 videos)" in output, output
    listing.write_text("/elsewhere/DAVIS/JPEGImages/480p/no-such-seq /elsewhere/DAVIS/Annotations/480p/no-such-seq\n")
    code, output = run("davis", "--davis-root", synthetic_root / "DAVIS", "--out", tmp_path / "d", "--list", listing,
                       *FAST)
    assert code == 2 and "no-such-seq" in output and str(listing) in output


def test_vip_and_davis_roots_are_found_one_folder_up(synthetic_root: Path, tmp_path: Path) -> None:
    shutil.copytree(synthetic_root / "VIP", tmp_path / "VIP" / "VIP_Fine")
    code, output = run("vip", "--vip-root", tmp_path / "VIP", "--out", tmp_path / "v", *FAST)
    assert code == 0 and "(2 videos)" in output, output
    shutil.copytree(synthetic_root / "DAVIS", tmp_path / "davis2017" / "DAVIS")
    code, output = run("davis", "--davis-root", tmp_path / "davis2017", "--out", tmp_path / "d", *FAST)
    assert code == 0 and "J&F-Mean" in output, output
    code, output = run("vip", "--vip-root", tmp_path, "--out", tmp_path / "n", *FAST)
    assert code == 2 and "not a VIP folder" in output
