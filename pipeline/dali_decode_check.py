"""Which frames of a failed DALI batch the decoder cannot decode: each is decoded alone, with the same
decoder, device and crop window as in the training graph.

DALI cannot drop one sample of a batch (a decoder error fails the whole batch, and its prefetch queue
already holds later ones), so the loader calls `decoder_failures` on the failed batch's frames, records
the culprits as known bad and restarts its pipeline at that batch. Only runs after a failure.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from nvidia.dali import fn, pipeline_def

from pipeline.dali_graph import GraphSpec, decode_frame


class _OneFrame:
    """External source feeding the frame under test: (jpeg, anchor (x, y), shape (w, h))."""

    def __init__(self) -> None:
        self.sample: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def __call__(self) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
        jpeg, anchor, shape = self.sample
        return [jpeg], [anchor], [shape]


def _build(feed: _OneFrame, spec: GraphSpec, device_id: int | None) -> Any:
    @pipeline_def(enable_conditionals=False)
    def _pipe():
        jpeg, anchor, shape = fn.external_source(feed, num_outputs=3, batch=True)
        return decode_frame(jpeg, anchor, shape, spec)

    pipe = _pipe(batch_size=1, num_threads=1, device_id=device_id, prefetch_queue_depth=1, exec_dynamic=True)
    pipe.build()
    return pipe


def dali_error_line(exc: BaseException) -> str:
    """The informative line of a DALI error (its message is several lines around the operator's trace)."""
    lines = [s.strip() for s in str(exc).splitlines() if s.strip()]
    if "encountered:" in lines:
        rest = lines[lines.index("encountered:") + 1:]
        if rest:
            return rest[0]
    useful = [s for s in lines if "pipeline" not in s.lower()]
    return (useful or lines or [type(exc).__name__])[-1]


def pillow_opinion(jpeg: bytes) -> str:
    """What Pillow says of the same bytes (for the report: DALI's own messages are terse)."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(jpeg)) as img:
            img.load()
    except Exception as exc:  # noqa: BLE001 (any failure is an opinion)
        return f"Pillow: {type(exc).__name__}: {exc}"
    return "Pillow decodes it"


def decoder_failures(frames: list[bytes], anchors: np.ndarray, shapes: np.ndarray, spec: GraphSpec,
                     device_id: int | None) -> list[tuple[int, str]]:
    """(position in `frames`, error) of each frame the graph's decoder fails on, decoded one at a time.

    anchors, shapes: [N, 2] int32, the crop window of each frame in (x, y) and (w, h) pixels.
    """
    feed = _OneFrame()
    pipe = _build(feed, spec, device_id)
    failed = []
    for n, jpeg in enumerate(frames):
        feed.sample = (np.frombuffer(jpeg, dtype=np.uint8), anchors[n], shapes[n])
        try:
            pipe.run()
        except Exception as exc:  # noqa: BLE001 (DALI raises RuntimeError; any failure marks the frame)
            failed.append((n, f"DALI decoder: {dali_error_line(exc)} ({pillow_opinion(jpeg)})"))
            del pipe                              # a pipeline that failed is not reused
            pipe = _build(feed, spec, device_id)
    del pipe
    return failed
