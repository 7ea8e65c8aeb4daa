"""The DALI graph that turns two JPEGs plus one crop window and flip into a normalised pair.

The graph is the same on a CPU and a GPU: only the decoder's device ("cpu" or "mixed") changes.
Its inputs come from an external source that yields, per batch, the f1 and f2 JPEGs as padded rows and
one int32 meta array per pair (`dali_source.pair_meta`: crop anchor and shape in pixels, x-y order, the
flip flag, what the loader reports, and the two JPEGs' lengths, to which the graph cuts the rows).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from nvidia.dali import fn, pipeline_def, types

from pipeline.config import DecoderConfig, PairSamplingConfig
from siammae_common.constants import IMAGENET_MEAN, IMAGENET_STD
from siammae_common.process_tree import DieWithParentPickler, forks_die_with_this_process

# Source outputs, in order: f1 rows [B, L] uint8, f2 rows, meta [B, 11] int32 (x, y, w, h, flip, clip, i, j,
# replaced, f1 length, f2 length).
SOURCE_OUTPUTS = 3


@dataclass(frozen=True)
class GraphSpec:
    """Everything the graph needs besides its input: where to decode and what to emit."""

    sampling: PairSamplingConfig
    decoder: DecoderConfig
    gpu: bool = False
    normalize: bool = True          # False: uint8 CHW out, normalised later on the device in torch
    dtype: str = "float32"          # DALI output dtype when normalize: float32 or float16
    decode_only: bool = False       # benchmark ceiling without augmentation (full-frame decode)
    frame_hint: tuple[int, int] = (240, 320)  # (H, W) to preallocate the HW decoder's buffers


def decode_frame(jpeg: Any, anchor: Any, shape: Any, spec: GraphSpec, axis_names: str = "WH") -> Any:
    """JPEG bytes -> the crop window decoded as RGB HWC (ROI decode; the whole frame if spec.decode_only).

    anchor / shape: the window's corner and size in pixels, in `axis_names` order ("WH": x-y, as the
    source's meta; "HW": y-x, as fn.random_crop_generator gives them). On a GPU: device="mixed" with the
    hardware decoder's share and buffer hints.
    """
    dev = "mixed" if spec.gpu else "cpu"
    gpu_args = {}
    if spec.gpu:
        gpu_args = {"hw_decoder_load": spec.decoder.hw_decoder_load,
                        "preallocate_height_hint": spec.frame_hint[0],
                        "preallocate_width_hint": spec.frame_hint[1]}
    if spec.decode_only:
        return fn.decoders.image(jpeg, device=dev, output_type=types.RGB, **gpu_args)
    # ROI decode: only the crop window's MCU rows/columns are decoded.
    return fn.decoders.image_slice(jpeg, anchor, shape, device=dev, output_type=types.RGB,
                                   normalized_anchor=False, normalized_shape=False,
                                   axis_names=axis_names, **gpu_args)


def augment(img: Any, flip: Any, spec: GraphSpec) -> Any:
    """A decoded crop -> [3, S, S]: resized to crop_size, mirrored where `flip`, normalised (or uint8)."""
    size = spec.sampling.crop_size
    img = fn.resize(img, resize_x=size, resize_y=size, interp_type=types.INTERP_LINEAR,
                    antialias=spec.sampling.antialias)
    if spec.normalize:
        out_type = types.FLOAT16 if spec.dtype == "float16" else types.FLOAT
        mean = [255.0 * m for m in IMAGENET_MEAN]
        std = [255.0 * s for s in IMAGENET_STD]
        return fn.crop_mirror_normalize(img, mirror=flip, mean=mean, std=std, dtype=out_type,
                                        output_layout="CHW")
    return fn.crop_mirror_normalize(img, mirror=flip, dtype=types.UINT8, output_layout="CHW")


def pair_graph(source: Callable[..., Any], spec: GraphSpec, *, parallel: bool) -> tuple[Any, ...]:
    """The graph body: (f1 [B,3,S,S], f2 [B,3,S,S], meta [B,11] int32) from a batch-mode source."""
    extra: dict[str, Any] = {}
    if parallel:      # the workers' own queue: how many batches they prepare ahead of the pipeline
        extra = {"prefetch_queue_depth": spec.decoder.source_queue_depth, "bytes_per_sample_hint": 64 << 10}
    rows1, rows2, meta = fn.external_source(source, num_outputs=SOURCE_OUTPUTS, batch=True, batch_info=True,
                                            parallel=parallel, **extra)
    f1, f2 = rows1[0:meta[9]], rows2[0:meta[10]]            # each padded row cut to its JPEG
    anchor, shape, flip = meta[0:2], meta[2:4], meta[4]
    d1 = decode_frame(f1, anchor, shape, spec)
    d2 = decode_frame(f2, anchor, shape, spec)
    if spec.decode_only:
        return d1, d2, meta
    return augment(d1, flip, spec), augment(d2, flip, spec), meta


def build_pipeline(source: Callable[..., Any], spec: GraphSpec, batch_size: int, *, parallel: bool,
                   seed: int, device_id: int | None, py_start_method: str = "fork") -> Any:
    """A built DALI pipeline around `pair_graph`; device_id None keeps DALI off CUDA entirely."""

    @pipeline_def(enable_conditionals=False)
    def _pipe():
        return pair_graph(source, spec, parallel=parallel)

    kwargs: dict[str, Any] = {}
    if parallel:      # the source's worker processes die with this one (siammae_common.process_tree)
        kwargs = {"py_num_workers": spec.decoder.py_num_workers, "py_start_method": py_start_method}
        if py_start_method == "fork":
            forks_die_with_this_process()
        else:
            kwargs["py_callback_pickler"] = DieWithParentPickler()
    pipe = _pipe(batch_size=batch_size, num_threads=spec.decoder.num_threads, device_id=device_id,
                 seed=seed, prefetch_queue_depth=spec.decoder.prefetch_queue_depth,
                 exec_dynamic=True, **kwargs)
    pipe.build()
    return pipe
