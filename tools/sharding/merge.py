"""`make_shards.py --merge OUT`: one manifest.json covering every `--part K/N` of a folder.

Refuses, with one line, when a part is missing, incomplete, made with other options or from another
input listing, lists a clip another part lists too, or names a shard that is not on disk as recorded.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.shard_format import MANIFEST_NAME, Manifest
from pipeline.shard_reader import read_index_keys, read_manifest
from siammae_common.console import UserError
from tools.sharding.format_writer import write_manifest
from tools.sharding.writer import PART_MANIFEST, manifest_path


def find_parts(out: Path) -> int:
    """N of the `manifest-partK-of-N.json` files in `out`; UserError if there are none or several N."""
    counts = {int(m.group(2)) for p in out.glob("manifest-part*-of-*.json") if (m := PART_MANIFEST.match(p.name))}
    if not counts:
        raise UserError(f"{out}: no part manifests (manifest-partK-of-N.json) to merge")
    if len(counts) > 1:
        raise UserError(f"{out}: part manifests of several runs (N = {sorted(counts)}); keep one per folder")
    return counts.pop()


def merge_parts(out: Path, parts: int | None = None) -> Manifest:
    """Write `out/manifest.json` from all part manifests; UserError (one line) if they do not make a whole."""
    parts = parts or find_parts(out)
    manifests = []
    for k in range(1, parts + 1):
        path = manifest_path(out, k, parts)
        if not path.is_file():
            raise UserError(f"{out}: part {k}/{parts} is missing ({path.name} does not exist); run it first")
        m = read_manifest(path)
        if not m.complete:
            raise UserError(f"{path}: part {k}/{parts} is incomplete ({m.clips} clips so far); "
                            "rerun it with the same command")
        manifests.append(m)
    options = [{k: v for k, v in m.options.items() if k != "part"} for m in manifests]
    for k, opts in enumerate(options[1:], start=2):
        if opts != options[0]:
            diff = sorted(key for key in set(opts) | set(options[0]) if opts.get(key) != options[0].get(key))
            raise UserError(f"{out}: part {k}/{parts} was made with other options or inputs than part 1 "
                            f"({', '.join(diff)}); rerun it with the same command")
    _check_shards_and_keys(out, manifests, parts)
    merged = Manifest(name=manifests[0].name, options=options[0] | {"parts": parts}, classes=manifests[0].classes,
                      complete=True, shards=sorted((s for m in manifests for s in m.shards), key=lambda s: s.tar.name),
                      failures=[f for m in manifests for f in m.failures],
                      warnings=[w for m in manifests for w in m.warnings])
    write_manifest(merged, out / MANIFEST_NAME)
    return merged


def merge_if_complete(out: Path, parts: int) -> Manifest | None:
    """Merge once every part is complete (the part that finishes last does it); None until then."""
    for k in range(1, parts + 1):
        path = manifest_path(out, k, parts)
        if not path.is_file() or not read_manifest(path).complete:
            return None
    return merge_parts(out, parts)


def _check_shards_and_keys(out: Path, manifests: list[Manifest], parts: int) -> None:
    owner: dict[str, int] = {}
    for k, m in enumerate(manifests, start=1):
        for shard in m.shards:
            if not shard.tar.is_file() or shard.tar.stat().st_size != shard.bytes or not shard.index.is_file():
                raise UserError(f"{shard.tar}: listed by part {k}/{parts} but missing or of another size; "
                                "rerun that part")
            for key in read_index_keys(shard.index):
                if key in owner:
                    raise UserError(f"{out}: clip {key} is in part {owner[key]}/{parts} and part {k}/{parts}; "
                                    "the parts saw different inputs")
                owner[key] = k
