"""`make_shards.py --merge OUT`: one manifest.json covering every `--part K/N` of a folder.

Refuses, with one line that says what to run, when a part is still running, missing, incomplete, made
with other options or from another input listing, lists a clip another part lists too, or names a shard
that is not on disk as recorded. The merge holds the folder's lock while it writes manifest.json.
"""

from __future__ import annotations

import json
from pathlib import Path

from pipeline.manifest_checks import rerun_command
from pipeline.shard_format import MANIFEST_NAME, Manifest
from pipeline.shard_reader import read_index_keys
from siammae_common.console import UserError
from siammae_common.folder_lock import folder_lock, writer_of
from tools.sharding.format_writer import write_manifest
from tools.sharding.writer import PART_MANIFEST, manifest_path, part_lock_name, read_run_manifest


def find_parts(out: Path) -> int:
    """N of the `manifest-partK-of-N.json` files in `out`; UserError if there are none or several N."""
    counts = {int(m.group(2)) for p in out.glob("manifest-part*-of-*.json") if (m := PART_MANIFEST.match(p.name))}
    if not counts:
        raise UserError(f"{out}: no part manifests (manifest-partK-of-N.json) to merge")
    if len(counts) > 1:
        raise UserError(f"{out}: part manifests of several runs (N = {sorted(counts)}); keep one per folder")
    return counts.pop()


def merge_parts(out: Path, parts: int | None = None, wait: bool = False) -> Manifest:
    """Write `out/manifest.json` from all part manifests; UserError (one line) if they do not make a whole.

    Holds the folder's lock while it merges: at once, or with `wait` (a part merging as it finishes)
    after a merge already under way; an explicit merge is also refused while a part is still running.
    """
    if not out.is_dir():
        raise UserError(f"--merge {out}: no such folder")
    with folder_lock(out, what="--merge", wait=wait):
        parts = parts or find_parts(out)
        manifests = [_finished_part(out, k, parts, running_ok=wait) for k in range(1, parts + 1)]
        _check_same_options(out, manifests, parts)
        _check_shards_and_keys(out, manifests, parts)
        options = {k: v for k, v in manifests[0].options.items() if k != "part"}
        merged = Manifest(name=manifests[0].name, options=options | {"parts": parts}, classes=manifests[0].classes,
                          complete=True, shards=sorted((s for m in manifests for s in m.shards), key=lambda s: s.tar.name),
                          failures=[f for m in manifests for f in m.failures],
                          warnings=[w for m in manifests for w in m.warnings])
        try:
            write_manifest(merged, out / MANIFEST_NAME)
        except OSError as e:
            raise UserError(f"{out / MANIFEST_NAME}: cannot write it ({e.strerror}); make {out} writable and "
                            f"run python tools/make_shards.py --merge {out} again") from None
    return merged


def merge_if_complete(out: Path, parts: int) -> Manifest | None:
    """Merge once every part is complete (the part that finishes last does it); None until then."""
    for k in range(1, parts + 1):
        path = manifest_path(out, k, parts)
        if not path.is_file() or not read_run_manifest(path).complete:
            return None
    return merge_parts(out, parts, wait=True)


def _finished_part(out: Path, k: int, parts: int, running_ok: bool) -> Manifest:
    """Part k's manifest; UserError if the part is running, missing or incomplete."""
    holder = None if running_ok else writer_of(out, part_lock_name(k, parts))
    if holder is not None:
        raise UserError(f"{out}: part {k}/{parts} is still running ({holder}); merge after it ends (the "
                        "part that finishes last merges by itself)")
    path = manifest_path(out, k, parts)
    if not path.is_file():
        raise UserError(f"{out}: part {k}/{parts} is missing ({path.name} does not exist); run it first")
    m = read_run_manifest(path)
    if not m.complete:
        raise UserError(f"{path}: part {k}/{parts} is incomplete ({m.clips} clips so far); finish it with: "
                        f"{rerun_command(m.options, out)}")
    return m


def _check_same_options(out: Path, manifests: list[Manifest], parts: int) -> None:
    """Every part must have been made with the options (and from the video listing) most parts share;
    the refusal gives the command that remakes an odd part with them."""
    options = [{k: v for k, v in m.options.items() if k != "part"} for m in manifests]
    keyed = [json.dumps(o, sort_keys=True) for o in options]
    common = max(keyed, key=lambda key: (keyed.count(key), -keyed.index(key)))
    odd = [k for k in range(parts) if keyed[k] != common]
    if not odd:
        return
    ref, part = options[keyed.index(common)], options[odd[0]]
    diff = sorted(key for key in set(ref) | set(part) if ref.get(key) != part.get(key))
    others = ", ".join(str(k + 1) for k in range(parts) if k not in odd)
    others = f"part{'s' if ',' in others else ''} {others}"
    if "inputs" in diff:
        raise UserError(f"{out}: the parts saw different video listings (part {odd[0] + 1}/{parts}: "
                        f"{part.get('inputs', {}).get('videos')} videos, {others}: "
                        f"{ref.get('inputs', {}).get('videos')}); the source changed while they ran: run every "
                        f"part again with --overwrite, then --merge")
    said = "; ".join(f"{key} {part.get(key)!r} there, {ref.get(key)!r} in {others}" for key in diff)
    command = rerun_command({**ref, "part": f"{odd[0] + 1}/{parts}"}, out, "--overwrite")
    also = f" (then likewise part(s) {', '.join(f'{k + 1}/{parts}' for k in odd[1:])})" if len(odd) > 1 else ""
    raise UserError(f"{out}: part {odd[0] + 1}/{parts} was made with other options than the others ({said}); "
                    f"remake it with theirs: {command}{also}; then --merge")


def _check_shards_and_keys(out: Path, manifests: list[Manifest], parts: int) -> None:
    owner: dict[str, int] = {}
    for k, m in enumerate(manifests, start=1):
        for shard in m.shards:
            if not shard.tar.is_file() or shard.tar.stat().st_size != shard.bytes or not shard.index.is_file():
                raise UserError(f"{shard.tar}: listed by part {k}/{parts} but missing or of another size; "
                                f"remake that part: {rerun_command(m.options, out, '--overwrite')}")
            for key in read_index_keys(shard.index):
                if key in owner:
                    raise UserError(f"{out}: clip {key} is in part {owner[key]}/{parts} and part {k}/{parts}; "
                                    "the parts saw different inputs")
                owner[key] = k
