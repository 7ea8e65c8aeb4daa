"""Segmentation propagation (DAVIS objects, VIP parts): first-frame ids in, one id map per frame out."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from evaluation.features import FeatureExtractor
from evaluation.propagation import extract_features, propagate
from evaluation.resize import labels_to_grid, resize_nearest, soft_to_ids
from evaluation.settings import PropagationSettings, eval_size


def annotation_resize_rule(settings: PropagationSettings) -> str:
    """How the protocol resizes an annotation to its input size: cv2's nearest in CRW/CropMAE's loader
    (labels_at_input_size), else the centre-sampled rule DINO uses (PIL)."""
    return "nearest" if settings.labels_at_input_size else "nearest-centre"


@torch.inference_mode()
def propagate_ids(extractor: FeatureExtractor, frames: np.ndarray, first_ids: np.ndarray, n_classes: int,
                  settings: PropagationSettings, at_input_size: bool = False, desc: str = "") -> Iterator[torch.Tensor]:
    """uint8 id maps [H, W] on settings.device for frames 0..T-1 of uint8 frames [T, H, W, 3].

    first_ids [H, W]: frame 0's ids (values ≥ n_classes are unlabelled). Maps are at the annotation's
    size, or at the protocol's input size with at_input_size (CropMAE-style scoring). Frame 0's map is
    its ground truth or its labels' round trip through the grid (settings.first_frame_output).
    """
    height, width = first_ids.shape
    if frames.shape[1:3] != (height, width):
        raise ValueError(f"frames are {frames.shape[2]}x{frames.shape[1]}, the annotation {width}x{height}")
    size = eval_size(height, width, settings, extractor.patch_size)
    out_size = size if at_input_size else (height, width)
    features = extract_features(extractor, frames, settings, desc=desc)                 # [T, h, w, D]
    ids = torch.from_numpy(np.ascontiguousarray(first_ids)).to(settings.device)
    first = labels_to_grid(ids, n_classes, size, tuple(features.shape[1:3]), settings)  # [C, h, w]
    if settings.first_frame_output == "ground-truth":
        rule = annotation_resize_rule(settings) if at_input_size else settings.output_resize
        yield resize_nearest(ids, out_size, rule).to(torch.uint8)
    else:
        yield soft_to_ids(first, size, out_size, settings)
    for soft in propagate(features, first, settings):
        yield soft_to_ids(soft, size, out_size, settings)
