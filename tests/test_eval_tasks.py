"""Readers round-trip the synthetic DAVIS / JHMDB / VIP sets; each task runs end to end on raw pixels."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from evaluation import dataset_io, davis, davis_io, jhmdb, vip
from evaluation.davis_score import score_results
from evaluation.features import PixelFeatures
from evaluation.nearest import resize_ids
from evaluation.settings import protocol_settings

SMALL = protocol_settings("cropmae", fixed_size=None, size_multiple=8, batch_size=4)  # patch 8: 8x12 grid


def test_davis_reader_and_palette_writer_round_trip(synthetic_root: Path, tmp_path: Path) -> None:
    sequences = davis_io.open_davis(synthetic_root / "DAVIS")
    assert sequences and all(len(s.frames) == len(s.masks) for s in sequences)
    gt, n_objects = davis_io.read_annotations(sequences[0])
    assert gt.ndim == 3 and n_objects >= 1 and gt.shape[1:] == dataset_io.read_frame(sequences[0].frames[0]).shape[:2]
    dataset_io.write_id_png(tmp_path / "x.png", gt[0])
    with Image.open(tmp_path / "x.png") as image:
        assert image.mode == "P" and image.getpalette()[:6] == [0, 0, 0, 128, 0, 0]
    assert (dataset_io.read_id_png(tmp_path / "x.png", gt.shape[1:]) == gt[0]).all()


def test_ground_truth_as_results_scores_one(synthetic_root: Path, tmp_path: Path) -> None:
    shutil.copytree(synthetic_root / "DAVIS" / "Annotations" / "480p", tmp_path / "gt")
    metrics = score_results(synthetic_root / "DAVIS", tmp_path / "gt", workers=2)
    assert metrics["J&F-Mean"] == 1.0 and metrics["J-Recall"] == 1.0 and metrics["F-Decay"] == 0.0
    assert metrics == score_results(synthetic_root / "DAVIS", tmp_path / "gt", workers=1)


def test_davis_propagation_writes_every_frame_and_scores_it(synthetic_root: Path, tmp_path: Path) -> None:
    metrics = davis.run_davis(PixelFeatures(8), synthetic_root / "DAVIS", tmp_path / "out", SMALL)
    for seq in davis_io.open_davis(synthetic_root / "DAVIS"):
        written = sorted(p.name for p in (tmp_path / "out" / seq.name).glob("*.png"))
        assert written == [f.stem + ".png" for f in seq.frames]
        assert dataset_io.read_id_png(tmp_path / "out" / seq.name / written[1]).shape == (64, 96)
    assert 0.2 < metrics["J&F-Mean"] <= 1.0
    assert metrics["settings"]["topk"] == 7 and metrics["features"] == "pixels-flatten"
    assert metrics["protocol"] == "cropmae" and metrics["score_on"] == "native"
    assert metrics == {**score_results(synthetic_root / "DAVIS", tmp_path / "out"), "features": metrics["features"],
                       "protocol": "cropmae", "score_on": "native", "settings": metrics["settings"]}


def test_protocol_size_scoring_writes_and_scores_at_the_input_size(synthetic_root: Path, tmp_path: Path) -> None:
    settings = protocol_settings("cropmae", fixed_size=(48, 80), batch_size=4)
    metrics = davis.run_davis(PixelFeatures(8), synthetic_root / "DAVIS", tmp_path / "out", settings,
                              score_on="protocol-size")
    seq = davis_io.open_davis(synthetic_root / "DAVIS")[0]
    assert dataset_io.read_id_png(tmp_path / "out" / seq.name / f"{seq.frame_ids[1]}.png").shape == (48, 80)
    assert metrics["score_on"] == "protocol-size" and 0.0 < metrics["J&F-Mean"] <= 1.0
    resized = tmp_path / "gt"                   # annotations resized as the protocol resizes them score 1
    for s in davis_io.open_davis(synthetic_root / "DAVIS"):
        for mask in s.masks:
            dataset_io.write_id_png(resized / s.name / mask.name, resize_ids(dataset_io.read_id_png(mask), (48, 80),
                                                                           "nearest"))
    assert score_results(synthetic_root / "DAVIS", resized, score_on="protocol-size")["J&F-Mean"] == 1.0


def test_jhmdb_reader_takes_the_split_one_test_videos(synthetic_root: Path) -> None:
    videos = jhmdb.open_jhmdb(synthetic_root / "JHMDB")
    splits = (synthetic_root / "JHMDB" / "splits").glob("*_test_split1.txt")
    n_test = sum(line.split()[1] == "2" for f in splits for line in f.read_text().splitlines() if line.strip())
    assert len(videos) == n_test
    for video in videos:
        assert video.joints.shape[:2] == (2, 15) and video.joints.shape[2] == len(video.frames)


def test_gaussian_label_maps_decode_back_to_their_points() -> None:
    points = np.array([[3.0, 10.2, 0.0], [4.0, 7.6, 0.0]])                   # (x, y) per joint, in cells
    maps = jhmdb.gaussian_maps(points, (12, 16), placement="floor")
    assert maps.shape == (4, 12, 16)
    assert maps[1, 4, 3] == 1.0 and maps[1].max() == 1.0                     # peak on the point
    assert maps[0, 0, 15] == 1.0 and maps[0, 4, 3] == 0.0                    # background where no joint
    decoded = jhmdb.decode_joints(torch.from_numpy(maps), topk=5)
    assert np.abs(decoded - np.floor(points + 0.5)).max() <= 0.5
    # CRW/CropMAE place the corner with int(), which truncates toward zero: a joint at cell 0 peaks at 1
    crw = jhmdb.gaussian_maps(points, (12, 16), placement="int")
    assert np.array_equal(crw[1:3], maps[1:3]) and crw[3, 1, 1] == 1.0 and maps[3, 0, 0] == 1.0


def test_pck_is_per_joint_then_averaged_and_skips_frame_zero() -> None:
    gt = np.zeros((2, 2, 3))
    gt[:, 1, :] = [[30.0], [40.0]]                                           # box diagonal 50 → norm 30
    pred = gt.copy()
    pred[:, 0, 0] = 1000.0                                                   # frame 0: ignored
    pred[0, 0, 1:] = 2.0                                                     # joint 0 off by 2 px (0.067)
    pred[0, 1, 1] = 30.0 + 5.0                                               # joint 1 off by 5 px (0.167)
    distances = jhmdb.pck_distances(pred, gt)
    assert [len(d) for d in distances] == [2, 2]
    assert jhmdb.pck(distances, 0.1) == (pytest.approx(0.75), [1.0, 0.5])
    assert jhmdb.pck(distances, 0.2)[0] == 1.0


def test_jhmdb_runs_on_pixels(synthetic_root: Path, tmp_path: Path) -> None:
    settings = protocol_settings("cropmae", task="jhmdb", fixed_size=(64, 96), batch_size=4)
    metrics = jhmdb.run_jhmdb(PixelFeatures(16), synthetic_root / "JHMDB", tmp_path, settings)
    assert 0.0 <= metrics["PCK@0.1"] <= metrics["PCK@0.2"] <= 1.0
    assert len(metrics["per_joint"]) == 15 and metrics["settings"]["fixed_size"] == (64, 96)
    assert list((tmp_path / "joints").rglob("*.npy"))


def test_vip_confusion_and_miou() -> None:
    gt = np.array([[0, 0, 1, 1], [2, 2, 255, 1]])
    pred = np.array([[0, 1, 1, 1], [2, 0, 0, 1]], dtype=np.uint8)
    hist = vip.confusion(gt, pred, n=3)
    assert hist.sum() == 7                                                   # 255 ignored
    mean, per_class = vip.miou(hist)
    assert per_class.tolist() == pytest.approx([1 / 3, 3 / 4, 1 / 2])
    assert mean == pytest.approx((1 / 3 + 3 / 4 + 1 / 2) / 3)


def test_vip_reader_and_run_on_pixels(synthetic_root: Path, tmp_path: Path) -> None:
    videos = vip.open_vip(synthetic_root / "VIP")
    assert videos and all(v.labels[0] is not None for v in videos)
    metrics = vip.run_vip(PixelFeatures(8), synthetic_root / "VIP", tmp_path / "a", SMALL)
    assert 0.0 < metrics["mIoU"] <= 1.0 and len(metrics["per_class"]) == 20 and metrics["protocol"] == "cropmae"
    first = videos[0]
    truth = dataset_io.read_id_png(first.labels[0])
    round_trip = dataset_io.read_id_png(tmp_path / "a" / first.name / f"{first.frames[0].stem}.png")
    assert round_trip.shape == truth.shape and 0.5 < (round_trip == truth).mean() < 1.0  # CRW: through the grid
    exact = dataclasses.replace(SMALL, first_frame_output="ground-truth")
    vip.run_vip(PixelFeatures(8), synthetic_root / "VIP", tmp_path / "b", exact)
    assert (dataset_io.read_id_png(tmp_path / "b" / first.name / f"{first.frames[0].stem}.png") == truth).all()


@pytest.mark.gpu
@pytest.mark.parametrize("protocol", ["cropmae", "dino"])
def test_davis_on_the_gpu_matches_the_cpu(synthetic_davis: Path, tmp_path: Path, protocol: str) -> None:
    settings = protocol_settings(protocol, fixed_size=(64, 96), short_side=None, batch_size=4)
    cpu = davis.run_davis(PixelFeatures(8), synthetic_davis, tmp_path / "cpu", settings)
    gpu = davis.run_davis(PixelFeatures(8), synthetic_davis, tmp_path / "gpu",
                          dataclasses.replace(settings, device="cuda"))
    assert gpu["J&F-Mean"] == pytest.approx(cpu["J&F-Mean"], abs=2e-3)
    seq = davis_io.open_davis(synthetic_davis)[0]
    same = [(dataset_io.read_id_png(tmp_path / "cpu" / seq.name / f"{f}.png")
             == dataset_io.read_id_png(tmp_path / "gpu" / seq.name / f"{f}.png")).mean() for f in seq.frame_ids]
    assert min(same) > 0.99
