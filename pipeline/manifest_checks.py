"""What a reader checks before it trusts a shard folder, beyond the manifest's own validity: that it is
complete (the trainer's rule: `check_manifest`, unless --allow-incomplete), and the commands a refusal
names. Every reader refuses a manifest that lists a shard twice (`duplicated_shard`, called by
`shard_reader.read_manifest`) and a shard whose size on disk is not the manifest's (checked once, where
its frame table is opened: `frame_index`). A refusal names the command that repairs the folder: the
make_shards command line recorded in the manifest's options, which resumes the run that wrote it.
"""

from __future__ import annotations

import shlex
from collections import Counter
from pathlib import Path
from typing import Any

from pipeline.shard_format import Manifest

# make_shards' options as the manifest records them -> its flags (None: a positional or not an option)
_VALUE_FLAGS = {"split": "--split", "name": "--name", "seed": "--seed", "shard_size": "--shard-size",
                "fps": "--fps", "short_side": "--short-side", "quality": "--quality",
                "max_frames": "--max-frames", "min_frames": "--min-frames"}
_SWITCHES = {"keep_damaged": "--keep-damaged", "strict": "--strict"}


class ShardSetError(ValueError):
    """A shard folder a reader must not use as it is; the message is one line and says what to run."""


def rerun_command(options: dict[str, Any], root: str | Path, *extra: str) -> str:
    """The make_shards command line that made (and resumes) the folder `root` with these recorded options."""
    argv = ["python", "tools/make_shards.py", str(options.get("source", "SRC")), "--out", str(root)]
    for key, flag in _VALUE_FLAGS.items():
        if options.get(key) is not None:
            argv += [flag, str(options[key])]
    argv += [flag for key, flag in _SWITCHES.items() if options.get(key)]
    if options.get("part", "1/1") != "1/1":
        argv += ["--part", str(options["part"])]
    return shlex.join([*argv, *extra])


def check_manifest(manifest: Manifest, root: str | Path, *, allow_incomplete: bool = False,
                   writer: str | None = None) -> None:
    """Raise ShardSetError unless make_shards finished the shard set `manifest` describes.

    allow_incomplete: accept a manifest make_shards has not finished (its listed shards are whole);
    writer: who holds the folder's write lock (siammae_common.folder_lock.writer_of), for the message.
    """
    path = Path(root) / "manifest.json"
    if not manifest.complete and not allow_incomplete:
        if writer is not None:
            raise ShardSetError(f"{path}: make_shards is still writing this folder ({writer}; {manifest.clips} "
                                "clips so far); wait until it ends")
        raise ShardSetError(f"{path}: incomplete ({manifest.clips} clips so far; make_shards stopped before the "
                            f"end); finish it with: {rerun_command(manifest.options, root)} (or pass "
                            "--allow-incomplete to use the clips it holds)")


def duplicated_shard(manifest: Manifest, root: str | Path) -> str | None:
    """One line saying which shard `manifest` lists more than once (its clips would count twice) and the
    command that rewrites the set, or None when every shard is listed once."""
    listed = Counter(s.tar.resolve() for s in manifest.shards)
    twice = next((tar for tar, n in listed.items() if n > 1), None)
    if twice is None:
        return None
    return (f"{Path(root) / 'manifest.json'}: lists {twice.name} {listed[twice]} times (its clips would count "
            f"twice); make the set again with: {repair_command(manifest, root)}")


def repair_command(manifest: Manifest, root: str | Path) -> str:
    """The command that rewrites a folder's shards and manifest from its videos."""
    if manifest.options.get("parts"):               # a merged folder: every part again, then the merge
        return (f"{rerun_command(manifest.options, root, '--overwrite', '--part', 'K/' + str(manifest.options['parts']))}"
                f" for each K, then python tools/make_shards.py --merge {shlex.quote(str(root))}")
    return rerun_command(manifest.options, root, "--overwrite")
