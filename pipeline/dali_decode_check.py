"""Which frames of a failed DALI batch the decoder cannot decode: each is decoded alone, with the same
decoder, device and crop window as in the training graph.

DALI cannot drop one sample of a batch (a decoder error fails the whole batch, and its prefetch queue
already holds later ones), so the loader calls `decoder_failures` on the failed batch's frames, records
the culprits as known bad and restarts its pipeline at that batch. Only runs after a failure.

Not every failure is bad data: a GPU out of memory, a CUDA or driver error or an allocator failure fails a
batch just the same. `is_resource_error` tells them apart by DALI's, CUDA's and nvJPEG's own words; such an
error is raised as it came, and a frame is never marked bad for it.
"""

from __future__ import annotations

import io
import re
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


# DALI's, CUDA's and nvJPEG's words for a failure of the machine rather than of one JPEG (nvJPEG status 3,
# BAD_JPEG, and 4, JPEG_NOT_SUPPORTED, are about the data; the others are not)
_RESOURCE = re.compile(
    r"out of memory|\bOOM\b|bad_alloc|can't allocate|cannot allocate|allocation failed|CUDA allocation"
    r"|cudaError|CUDA_ERROR|CUDA error|CUDA driver|CUDA runtime|cudaMalloc|device-side assert|\bNVML\b"
    r"|NVJPEG_STATUS_(?!BAD_JPEG|JPEG_NOT_SUPPORTED)[A-Z_]+|nvjpeg error \"[125678]\"", re.IGNORECASE)


def is_resource_error(exc: BaseException | str) -> bool:
    """Whether an error is the machine's (GPU memory, CUDA, the decoder's allocator), not a frame's."""
    return isinstance(exc, MemoryError) or bool(_RESOURCE.search(str(exc)))


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
    A resource error (see `is_resource_error`) on any frame is raised as it came: it says nothing of the frame.

    anchors, shapes: [N, 2] int32, the crop window of each frame in (x, y) and (w, h) pixels.
    """
    feed = _OneFrame()
    pipe = _build(feed, spec, device_id)
    failed = []
    for n, jpeg in enumerate(frames):
        feed.sample = (np.frombuffer(jpeg, dtype=np.uint8), anchors[n], shapes[n])
        try:
            pipe.run()
        except Exception as exc:  # DALI raises RuntimeError; a frame's failure marks it
            if is_resource_error(exc):
                raise
            failed.append((n, f"DALI decoder: {dali_error_line(exc)} ({pillow_opinion(jpeg)})"))
            del pipe                              # a pipeline that failed is not reused
            pipe = _build(feed, spec, device_id)
    del pipe
    return failed
