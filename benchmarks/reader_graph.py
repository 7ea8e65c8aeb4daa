"""The benchmark's own in-graph reader (the `dali_cpu_reader` row, for comparison only; the loader has no
such variant): `fn.readers.webdataset` reads whole clips and the pair is chosen inside DALI. It needs no
Python per batch, but it copies every clip's whole `.frames` blob to use two frames, so its bytes per pair
are about n_frames / 2 times the pair's own JPEG bytes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nvidia.dali.math as dmath
from nvidia.dali import fn, pipeline_def, types

from pipeline.dali_graph import GraphSpec, augment, decode_frame
from pipeline.shard_format import FRAMES_EXT, OFFSETS_EXT


def reader_pair_graph(tars: list[Path], indexes: list[Path], spec: GraphSpec, *, seed: int) -> tuple[Any, ...]:
    """(f1 [B,3,S,S], f2 [B,3,S,S]) with one pair per clip read, all inside the graph; decoded and
    augmented by the loader's own functions."""
    s = spec.sampling
    blob, offs = fn.readers.webdataset(
        paths=[str(t) for t in tars], index_paths=[str(i) for i in indexes], ext=[FRAMES_EXT, OFFSETS_EXT],
        missing_component_behavior="error", random_shuffle=True, initial_fill=256, seed=seed,
        pad_last_batch=True, prefetch_queue_depth=spec.decoder.prefetch_queue_depth)
    offs = fn.cast(fn.reinterpret(offs, dtype=types.UINT32), dtype=types.INT64)   # n + 1 entries
    n = fn.cast(offs.shape()[0], dtype=types.INT64) - 1
    hi = dmath.min(n - 1, s.gap_max)
    lo = dmath.min(hi, s.gap_min)
    u = fn.random.uniform(range=[0.0, 1.0])
    gap = dmath.min(lo + fn.cast(dmath.floor(u * fn.cast(hi - lo + 1, dtype=types.FLOAT)), dtype=types.INT64), hi)
    u2 = fn.random.uniform(range=[0.0, 1.0])
    i = dmath.min(fn.cast(dmath.floor(u2 * fn.cast(n - gap, dtype=types.FLOAT)), dtype=types.INT64),
                  n - gap - 1)
    j = i + gap
    f1 = blob[offs[i]:offs[i + 1]]
    f2 = blob[offs[j]:offs[j + 1]]
    anchor, shape = fn.random_crop_generator(fn.peek_image_shape(f1), random_area=list(s.crop_scale),
                                             random_aspect_ratio=list(s.crop_ratio))
    flip = fn.random.coin_flip(probability=s.flip_probability)
    # random_crop_generator gives the window as (y, x) and (h, w)
    d1 = decode_frame(f1, anchor, shape, spec, axis_names="HW")
    d2 = decode_frame(f2, anchor, shape, spec, axis_names="HW")
    return augment(d1, flip, spec), augment(d2, flip, spec)


def build_reader_pipeline(tars: list[Path], indexes: list[Path], spec: GraphSpec, batch_size: int, *,
                          seed: int, device_id: int | None) -> Any:
    """A built pipeline around `reader_pair_graph`."""
    @pipeline_def(enable_conditionals=False)
    def _pipe():
        return reader_pair_graph(tars, indexes, spec, seed=seed)

    pipe = _pipe(batch_size=batch_size, num_threads=spec.decoder.num_threads, device_id=device_id,
                 seed=seed, prefetch_queue_depth=spec.decoder.prefetch_queue_depth, exec_dynamic=True)
    pipe.build()
    return pipe
