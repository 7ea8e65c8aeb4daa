"""What ties a run to what made it: a fingerprint of its shard set, and the options that fix the sequence
of batches and the optimisation. Every checkpoint keeps both; `--resume` compares them with the command
line's and refuses a difference (one line listing it) unless `--resume-anyway`, which goes on and records
the change in config.json's history. Options that only change how the run is executed (workers, threads,
device, logging, where the shards lie) may change on a resume; the history notes them too.

The shard fingerprint is cheap: a SHA-256 of the manifest's description of the set (format, name,
make_shards options, classes, and every shard's file name, clips, frames and bytes), no tar is read; the
readers check separately that the shards on disk have the sizes the manifest lists
(pipeline.manifest_checks). A checkpoint written before fingerprints existed adopts the current one on
its first resume, and the history says so.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from pathlib import Path
from typing import Any

from pipeline.config import PairSamplingConfig
from pipeline.shard_format import Manifest

# options that change the batches (which pairs, in which order, how many) or what a step does with them
RUN_DEFINING = ("seed", "batch_size", "accum_steps", "epochs", "max_steps", "blr", "lr", "min_lr", "warmup_epochs",
                "warmup_steps", "weight_decay", "clip_grad",
                *(f.name for f in dataclasses.fields(PairSamplingConfig)))
# how a run is started, not what it is
NOT_COMPARED = ("out", "resume", "resume_from", "overwrite", "resume_anyway", "allow_incomplete")


def shard_fingerprint(manifest: Manifest, root: Path) -> dict[str, Any]:
    """The shard set's identity: sha256 of its manifest's description of the data, with its sizes."""
    doc = manifest.to_json(root)
    described = {key: doc[key] for key in ("format_version", "name", "options", "classes", "shards")}
    digest = hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()
    return {"manifest_sha256": digest, "shards": len(manifest.shards), "clips": manifest.clips,
            "bytes": sum(s.bytes for s in manifest.shards)}


def flat_settings(train: dict[str, Any]) -> dict[str, Any]:
    """A TrainConfig.to_dict() with the model's, the sampling's and DALI's settings at the top level."""
    flat = {k: v for k, v in train.items() if k not in ("model", "sampling", "dali")}
    for group in ("model", "sampling", "dali"):
        flat.update({("model" if group == "model" and k == "name" else k): v for k, v in train[group].items()})
    return {k: list(v) if isinstance(v, tuple) else v for k, v in flat.items() if k not in NOT_COMPARED}


def _flag(name: str, old: Any, new: Any) -> str:
    def shown(v: Any) -> str:
        return ",".join(map(str, v)) if isinstance(v, list) else str(v)
    return f"--{name.replace('_', '-')} {shown(old)} -> {shown(new)}"


def setting_changes(saved: dict[str, Any], now: dict[str, Any]) -> tuple[list[str], list[str]]:
    """Two flat_settings compared: (changes of RUN_DEFINING options, other changes), each '--seed 0 -> 1'."""
    changed = [k for k in sorted(set(saved) | set(now)) if saved.get(k) != now.get(k)]
    defining = [_flag(k, saved.get(k), now.get(k)) for k in changed if k in RUN_DEFINING]
    other = [_flag(k, saved.get(k), now.get(k)) for k in changed if k not in RUN_DEFINING]
    return defining, other


def data_change(saved: dict[str, Any] | None, now: dict[str, Any]) -> str | None:
    """'shards: another set (...)' when the fingerprints differ; None when equal or none was saved."""
    if saved is None or saved.get("manifest_sha256") == now["manifest_sha256"]:
        return None
    return (f"shards: another set ({saved.get('clips')} clips in {saved.get('shards')} shards, manifest "
            f"sha256 {str(saved.get('manifest_sha256'))[:12]} -> {now['clips']} clips in {now['shards']} shards, "
            f"{now['manifest_sha256'][:12]})")


def history_entry(step: int, source: Path, world_size: int, defining: list[str], other: list[str],
                  adopted: bool) -> dict[str, Any]:
    """One resume as config.json's history records it."""
    entry: dict[str, Any] = {"step": step, "resumed_from": str(source), "time": time.strftime("%Y-%m-%d %H:%M:%S"),
                             "world_size": world_size, "changed": other}
    if defining:
        entry["resume_anyway"] = defining
    if adopted:
        entry["adopted"] = "the checkpoint had no shard fingerprint or settings; the current ones were adopted"
    return entry
