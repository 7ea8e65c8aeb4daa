"""Which videos a benchmark evaluates, and where its root is: never a silently wrong set.

The videos come from, in this order: names given on the command line; a list file (`--list FILE`); the
benchmark's own list (DAVIS `ImageSets/2017/<subset>.txt`, VIP `lists/val_videos.txt`, JHMDB
`splits/`); every video only when asked (`--all-videos`). A missing list is an error naming what to
download, since evaluating every folder mixes training videos into the result.

`--list` reads the list files the label-propagation codebases ship, one video per line:
- a name per line: DAVIS `ImageSets`, VIP `lists/val_videos.txt` (also UVC's `--val_txt`);
- two paths per line, frames first: CRW's `davis_vallist.txt`, CRW's JHMDB list, CropMAE's
  `davis_vallist_480_880.txt` and `vip_vallist.txt` (`.../Images/videos1 .../Annotations/Category_ids/videos1`);
- two paths per line, labels first: CropMAE's and UVC's JHMDB lists
  (`.../joint_positions/<action>/<video>/joint_positions.mat .../Rename_Images/<action>/<video>`).
Only the video names are taken from the paths (the last folder; `<action>/<video>` for JHMDB); they are
looked up under the root given, so lists written on another machine work as they are.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from siammae_common.console import UserError, info, warn


def _name_from_path(token: str, parts: int) -> str:
    """The video named by one column: its last `parts` folders (a joint_positions.mat names its folder)."""
    path = PurePosixPath(token.replace("\\", "/").rstrip("/"))
    if path.suffix == ".mat":
        path = path.parent
    return "/".join(path.parts[-parts:])


def read_list_file(path: Path, parts: int = 1) -> list[str]:
    """The video names of a list file in any of the formats above, in order, without repeats.

    parts: 1 for a video folder name (DAVIS, VIP), 2 for `<action>/<video>` (JHMDB).
    """
    try:
        text = Path(path).read_text(errors="replace")
    except OSError as err:
        raise UserError(f"{path}: cannot read the list ({err.strerror})") from None
    names: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        tokens = line.split()
        if not tokens or tokens[0].startswith("#"):
            continue
        found = {_name_from_path(t, parts) for t in tokens}
        if len(found) > 1:
            raise UserError(f"{path}:{number}: the columns name different videos ({', '.join(sorted(found))})")
        name = found.pop()
        if len(PurePosixPath(name).parts) < parts:
            raise UserError(f"{path}:{number}: {line.strip()!r} does not name an <action>/<video> folder")
        if name not in names:
            names.append(name)
    if not names:
        raise UserError(f"{path}: the list names no video")
    return names


def own_list(path: Path, parts: int = 1) -> list[str] | None:
    """A benchmark's own list file read as read_list_file does, or None when it is not there."""
    return read_list_file(path, parts) if Path(path).is_file() else None


def choose_videos(given: Sequence[str] | None, list_file: Path | None, own: list[str] | None, own_name: str,
                  folder: Path, all_videos: bool, what: str, download: str, parts: int = 1) -> list[str]:
    """The names to evaluate: `given`, else those of `list_file`, else the benchmark's own list `own`
    (None: missing, `own_name` says where it belongs), else with all_videos every folder under `folder`;
    otherwise a UserError saying what to `download`."""
    if given:
        return list(given)
    if list_file is not None:
        return _existing(read_list_file(list_file, parts), folder, list_file, what)
    if own is not None:
        return own
    if all_videos:
        pattern = "*/*" if parts == 2 else "*"
        names = sorted("/".join(p.parts[-parts:]) for p in folder.glob(pattern) if p.is_dir())
        warn(f"{own_name} not found; --all-videos: evaluating all {len(names)} {what} under {folder}, "
             "training videos included")
        return names
    raise UserError(f"{own_name}: not found, so the evaluation set is unknown; {download}, or give --list FILE, "
                    f"or --all-videos to evaluate every one of the {what} under {folder}")


def _existing(names: list[str], folder: Path, list_file: Path, what: str) -> list[str]:
    missing = [n for n in names if not (folder / n).is_dir()]
    if missing:
        raise UserError(f"{list_file}: {len(missing)} of its {len(names)} {what} are not under {folder} "
                        f"(first: {missing[0]})")
    return names


def find_root(root: Path, marker: str, prefer: Sequence[str], what: str) -> Path:
    """The benchmark folder: `root` itself if it holds `marker`, else the one sub-folder that does
    (those named in `prefer` first: a user may point at the folder an archive was extracted into)."""
    root = Path(root)
    if (root / marker).is_dir():
        return root
    inside = [p for p in sorted(root.iterdir()) if (p / marker).is_dir()] if root.is_dir() else []
    preferred = [p for name in prefer for p in inside if p.name == name]
    if preferred or len(inside) == 1:
        found = (preferred or inside)[0]
        info(f"{root}: using {found} (the {what} folder inside it)")
        return found
    if inside:
        raise UserError(f"{root}: several {what} folders inside ({', '.join(p.name for p in inside)}); "
                        "give the one to evaluate")
    raise UserError(f"{root}: not a {what} folder (no {marker}/ in it or in a folder inside it)")
