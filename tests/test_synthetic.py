"""tools/make_synthetic.py: layouts of the four sets, exact labels, determinism."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import scipy.io
from conftest import REPO, tiny_synthetic_config
from PIL import Image

import tools.make_synthetic as make_synthetic_tool


def _digest(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_ucf_layout_and_split_lists(synthetic_root: Path) -> None:
    videos = sorted((synthetic_root / "UCF-101").glob("*/v_*_g*_c*.avi"))
    assert len(videos) == 6
    lists = synthetic_root / "ucfTrainTestlist"
    classes = [line.split() for line in (lists / "classInd.txt").read_text().splitlines()]
    assert [int(i) for i, _ in classes] == [1, 2, 3]
    train = [line.split() for line in (lists / "trainlist01.txt").read_text().splitlines()]
    test = (lists / "testlist01.txt").read_text().split()
    assert train and test
    listed = {t[0] for t in train} | set(test)
    assert listed == {v.relative_to(synthetic_root / "UCF-101").as_posix() for v in videos}
    name_of = {int(i): c for i, c in classes}
    assert all(path.split("/")[0] == name_of[int(label)] for path, label in train)


def test_ucf_videos_are_mpeg4_with_planned_lengths(synthetic_root: Path) -> None:
    synth = make_synthetic_tool
    specs = {s.name: s for s in synth.plan(synthetic_root, tiny_synthetic_config()) if s.kind == "ucf"}
    for name, spec in specs.items():
        with av.open(str(synthetic_root / "UCF-101" / name)) as container:
            stream = container.streams.video[0]
            assert stream.codec_context.name == "mpeg4"
            assert (stream.codec_context.width, stream.codec_context.height) == (64, 48)
            assert sum(1 for _ in container.decode(video=0)) == spec.n_frames


def test_davis_masks_are_palette_pngs_with_all_objects_in_frame0(synthetic_root: Path) -> None:
    davis = synthetic_root / "DAVIS"
    seqs = (davis / "ImageSets" / "2017" / "val.txt").read_text().split()
    assert len(seqs) == 2
    for k, seq in enumerate(seqs):
        jpgs = sorted((davis / "JPEGImages" / "480p" / seq).glob("*.jpg"))
        pngs = sorted((davis / "Annotations" / "480p" / seq).glob("*.png"))
        assert [p.stem for p in jpgs] == [p.stem for p in pngs] and jpgs[0].stem == "00000"
        first = Image.open(pngs[0])
        assert first.mode == "P"
        ids = np.unique(np.array(first))
        assert list(ids) == list(range(2 + k % 3))          # background + 1..3 objects


def test_davis_masks_are_exact(synthetic_root: Path) -> None:
    """The stored mask equals the renderer's id map for the same frame (no resampling, no blur)."""
    from tools.synthetic.datasets import scene_for
    synth = make_synthetic_tool
    spec = next(s for s in synth.plan(synthetic_root, tiny_synthetic_config()) if s.kind == "davis")
    scene = scene_for(spec, np.random.default_rng(list(spec.seed)))
    for t in (0, spec.n_frames - 1):
        stored = np.array(Image.open(synthetic_root / "DAVIS/Annotations/480p" / spec.name / f"{t:05d}.png"))
        np.testing.assert_array_equal(stored, scene.render(t)[1])


def test_jhmdb_layout_and_joints(synthetic_root: Path) -> None:
    jhmdb = synthetic_root / "JHMDB"
    split_files = sorted((jhmdb / "splits").glob("*_test_split1.txt"))
    assert len(split_files) == 2
    for split in split_files:
        action = split.name.replace("_test_split1.txt", "")
        for line in split.read_text().splitlines():
            video, flag = line.split()
            assert video.endswith(".avi") and flag in {"1", "2"}
            frames = sorted((jhmdb / "Rename_Images" / action / video[:-4]).glob("*.png"))
            assert frames[0].name == "00001.png"
            pos = scipy.io.loadmat(jhmdb / "joint_positions" / action / video[:-4] / "joint_positions.mat")["pos_img"]
            assert pos.shape == (2, 15, len(frames))
            width, height = Image.open(frames[0]).size
            inside = (pos[0] >= 1) & (pos[0] <= width) & (pos[1] >= 1) & (pos[1] <= height)
            assert inside.mean() > 0.8


def test_vip_layout_and_class_ids(synthetic_root: Path) -> None:
    vip = synthetic_root / "VIP"
    videos = (vip / "lists" / "val_videos.txt").read_text().split()
    assert videos == ["videos1", "videos2"]
    for video in videos:
        images = sorted((vip / "Images" / video).glob("*.jpg"))
        labels = sorted((vip / "Annotations" / "Category_ids" / video).glob("*.png"))
        assert [p.stem for p in images] == [p.stem for p in labels]
        ids = np.array(Image.open(labels[0]))
        assert ids.ndim == 2 and ids.max() < 20 and len(np.unique(ids)) >= 3


def test_same_seed_same_files_other_seed_other_files(tmp_path: Path) -> None:
    synth = make_synthetic_tool
    from dataclasses import replace
    cfg = replace(tiny_synthetic_config(), sets=("davis", "vip"))
    synth.make_synthetic(tmp_path / "a", cfg, workers=1)
    synth.make_synthetic(tmp_path / "b", cfg, workers=2)
    synth.make_synthetic(tmp_path / "c", replace(cfg, seed=1), workers=2)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert _digest(tmp_path / "a") != _digest(tmp_path / "c")


def test_cli_writes_a_set_and_rejects_bad_sizes(tmp_path: Path) -> None:
    tool = str(REPO / "tools" / "make_synthetic.py")
    ok = subprocess.run([sys.executable, tool, str(tmp_path / "s"), "--sets", "ucf", "--classes", "1",
                         "--clips", "1", "--size", "32x32", "--frames", "10"], capture_output=True, check=False, text=True)
    assert ok.returncode == 0, ok.stderr
    assert len(list((tmp_path / "s" / "UCF-101").rglob("*.avi"))) == 1
    bad = subprocess.run([sys.executable, tool, str(tmp_path / "t"), "--size", "big"], capture_output=True, check=False,
                         text=True)
    assert bad.returncode == 2 and "WIDTHxHEIGHT" in bad.stderr


def _scene(realism):
    from tools.synthetic.render import random_scene
    return random_scene(np.random.default_rng(3), 96, 64, 2, object_size=14, speed=0.03, n_frames=6,
                        distractors=1, realism=realism, effects_seed=(3,))


def test_realism_is_off_by_default_and_each_effect_changes_what_it_should():
    from tools.synthetic.realism import Realism
    plain = [_scene(Realism()).render(t) for t in (0, 5)]
    noisy = [_scene(Realism(noise=6)).render(t) for t in (0, 5)]
    shaded = [_scene(Realism(shading=0.4)).render(t) for t in (0, 5)]
    bent = [_scene(Realism(deform=0.2)).render(t) for t in (0, 5)]
    for (frame, ids), (frame_n, ids_n), (frame_s, ids_s) in zip(plain, noisy, shaded):
        assert np.array_equal(ids, ids_n) and np.array_equal(ids, ids_s)     # noise and light move nothing
        assert np.abs(frame.astype(int) - frame_n).mean() > 2                 # noise on every pixel
        inside = (ids_s > 0)
        assert not np.array_equal(frame[inside], frame_s[inside])            # shading on the objects ...
    assert not np.array_equal(plain[1][1], bent[1][1])                         # bending moves the outline
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(plain, [_scene(Realism()).render(t) for t in (0, 5)]))
    # the same seed and frame give the same noise
    assert np.array_equal(noisy[1][0], _scene(Realism(noise=6)).render(5)[0])
