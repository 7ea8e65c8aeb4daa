"""Which videos to shard: a UCF101 tree (with split lists) or any folder of videos; keys, labels, order, parts.

Folders that cannot be read, broken symbolic links and split-list entries that do not exist are listed as
problems (they become failures in the manifest), never a crash and never silently skipped.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.shard_format import MAX_KEY_LENGTH

VIDEO_EXTENSIONS = (".avi", ".mp4", ".mkv", ".webm", ".mov")
# folders that split a dataset (the Kinetics downloads), never classes: reading them as classes is refused
SPLIT_FOLDERS = ("train", "val", "test", "replacement")


@dataclass(frozen=True)
class VideoInput:
    """One input video: where it is, its clip key, class and label (-1 when unlabelled)."""

    path: Path
    source: str              # path relative to SRC, as recorded in the manifest
    key: str
    class_name: str
    label: int


@dataclass(frozen=True)
class InputSet:
    videos: list[VideoInput]
    classes: list[str]
    problems: list[tuple[str, str]]    # (source, reason): unreadable folders, broken links, absent split entries


def _class_names(lists: Path) -> set[str]:
    """The class names of a UCF101 split-list folder (`classInd.txt`: `1 ApplyEyeMakeup` lines)."""
    try:
        lines = (lists / "classInd.txt").read_text().splitlines()
    except OSError:
        return set()
    return {parts[1] for parts in (line.split() for line in lines) if len(parts) == 2}


def _holds_classes(folder: Path, classes: set[str]) -> int:
    """How many of the classes are sub-folders of `folder`."""
    return sum((folder / c).is_dir() for c in classes)


def find_ucf_layout(src: Path) -> tuple[Path, Path | None] | None:
    """(video root, split-list folder or None) if SRC is a UCF101 tree, else None.

    The tree as extracted (a folder holding `UCF-101/` and `ucfTrainTestlist/`, or `UCF-101/` itself), or
    renamed: `ucfTrainTestlist/` beside or inside SRC, the video root being the folder (SRC or one inside
    it) that holds the class folders `classInd.txt` names.
    """
    if (src / "UCF-101").is_dir():
        lists = src / "ucfTrainTestlist"
        return src / "UCF-101", lists if lists.is_dir() else None
    if src.name == "UCF-101":
        lists = src.parent / "ucfTrainTestlist"
        return src, lists if lists.is_dir() else None
    for lists, candidates in ((src / "ucfTrainTestlist", [src, *_subfolders(src)]),
                              (src.parent / "ucfTrainTestlist", [src])):
        classes = _class_names(lists) if lists.is_dir() else set()
        scored = sorted(((_holds_classes(c, classes), str(c)) for c in candidates if c != lists), reverse=True)
        if scored and scored[0][0] > 0:
            return Path(scored[0][1]), lists
    return None


def _subfolders(folder: Path) -> list[Path]:
    try:
        return sorted(p for p in folder.iterdir() if p.is_dir())
    except OSError:
        return []


def split_folders(src: Path) -> list[str]:
    """The Kinetics-style split folders (train/, val/, test/, replacement/) directly inside SRC."""
    return [name for name in SPLIT_FOLDERS if (src / name).is_dir()]


def sanitize_key(text: str) -> str:
    """A clip key DALI and WebDataset accept: [A-Za-z0-9_-] only, at most MAX_KEY_LENGTH chars."""
    key = re.sub(r"[^A-Za-z0-9_-]", "_", text).strip("_") or "clip"
    if len(key) > MAX_KEY_LENGTH:
        key = key[:MAX_KEY_LENGTH - 9] + "_" + hashlib.sha1(text.encode()).hexdigest()[:8]
    return key


def unique_keys(sources: list[str], keys: list[str]) -> list[str]:
    """Keys that collide after sanitising get a hash of their source appended (deterministically)."""
    seen: dict[str, int] = {}
    for k in keys:
        seen[k] = seen.get(k, 0) + 1
    return [k if seen[k] == 1 else sanitize_key(k[:MAX_KEY_LENGTH - 9]) + "_" +
            hashlib.sha1(s.encode()).hexdigest()[:8] for s, k in zip(sources, keys)]


def list_videos(root: Path) -> tuple[list[Path], list[tuple[str, str]]]:
    """Videos under root, sorted (symbolic links followed, loops cut), and (source, reason) problems."""
    videos, problems, seen, stack = [], [], set(), [root]
    while stack:
        folder = stack.pop()
        try:
            info = folder.stat()
            if (info.st_dev, info.st_ino) in seen:
                continue
            seen.add((info.st_dev, info.st_ino))
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name, reverse=True)   # the same walk on every machine
        except OSError as e:
            reason = f"folder not readable ({e.strerror}): the videos in it are not listed"
            problems.append((_source(folder, root) + "/", reason))
            continue
        for entry in entries:
            path = Path(entry.path)
            if _is_dir(entry):
                stack.append(path)
            elif path.suffix.lower() in VIDEO_EXTENSIONS:
                if entry.is_symlink() and not path.exists():
                    problems.append((_source(path, root), f"broken symbolic link (to {os.readlink(path)})"))
                else:
                    videos.append(path)
    return sorted(videos), sorted(problems)


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False


def _class_folders(root: Path) -> list[str]:
    """The folder names under a UCF-101 root (every split sees the same classes, so the same labels)."""
    return [p.name for p in _subfolders(root)]


def _source(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix() if path != root else "."


def _read_split(lists: Path, split: str) -> list[str]:
    name = split if split.endswith(".txt") else split + ".txt"
    path = lists / name
    if not path.is_file():
        available = ", ".join(sorted(p.stem for p in lists.glob("*list*.txt")))
        raise FileNotFoundError(f"{path}: no such split list (available: {available})")
    return [line.split()[0] for line in path.read_text().splitlines() if line.strip()]


def collect_inputs(src: Path, split: str | None) -> InputSet:
    """All input videos under SRC, sorted by path; `split` names a UCF101 list (e.g. trainlist01)."""
    ucf = find_ucf_layout(src)
    splits = split_folders(src) if ucf is None else []
    if splits:
        raise ValueError(f"{src}: holds the split folders {', '.join(s + '/' for s in splits)} of a Kinetics-style "
                         f"download, not classes; give --subset {splits[0]} to shard one split")
    if ucf is None:
        if split:
            raise FileNotFoundError(f"{src}: --split needs a UCF101 tree (ucfTrainTestlist/ beside or inside SRC, "
                                    "next to the folder of class folders)")
        root = src
        paths, problems = list_videos(src)
        rel = [p.relative_to(root).as_posix() for p in paths]
        classes = sorted({r.split("/")[0] for r in rel if "/" in r})
        keys = [sanitize_key(r.rsplit(".", 1)[0].replace("/", "__")) for r in rel]
        class_of = [r.split("/")[0] if "/" in r else "" for r in rel]
    else:
        root, lists = ucf
        if split and lists is None:
            raise FileNotFoundError(f"{src}: --split given but there is no ucfTrainTestlist/ folder")
        paths, problems = list_videos(root)
        if split:
            wanted = _read_split(lists, split)
            have = {p.relative_to(root).as_posix(): p for p in paths}
            listed = set(wanted) | {s for s, _ in problems if s.endswith("/")}
            problems = [(s, r) for s, r in problems if s in listed]
            paths = sorted(have[w] for w in wanted if w in have)
            problems += [(w, f"listed in {split} but not found under {root}") for w in wanted
                         if w not in have and w not in {s for s, _ in problems}]
        rel = [p.relative_to(root).as_posix() for p in paths]
        class_of = [r.split("/")[0] for r in rel]                 # the folder, not the file name
        class_ind = lists / "classInd.txt" if lists else None
        if class_ind and class_ind.is_file():
            classes = [line.split()[1] for line in class_ind.read_text().splitlines() if line.strip()]
        else:
            classes = _class_folders(root)
        keys = [sanitize_key(Path(r).stem) for r in rel]
    keys = unique_keys(rel, keys)
    label = {c: i for i, c in enumerate(classes)}
    videos = [VideoInput(p, r, k, c, label.get(c, -1)) for p, r, k, c in zip(paths, rel, keys, class_of)]
    return InputSet(videos, classes, problems)


def shuffled_part(videos: list[VideoInput], seed: int, part: int, parts: int) -> list[VideoInput]:
    """Shuffle with `seed` (the same for every part), then take every `parts`-th video from `part` - 1.

    Parts are disjoint, cover the input exactly, and their clip orders are already shuffled.
    """
    order = np.random.default_rng(seed).permutation(len(videos))
    return [videos[i] for i in order[part - 1::parts]]
