"""Label propagation with frozen patch features: the one implementation behind DAVIS, JHMDB and VIP.

Each target frame's labels are a weighted sum of context labels: context = the first frame (ground truth)
+ `queue` short-term frames (their predicted soft labels); weights = softmax(top-k cosine affinities / T)
over all context patches jointly, restricted to a local window around each target patch. Which frames,
which window, and every resize around it are fixed by a named protocol (evaluation.settings).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from evaluation.features import FeatureExtractor
from evaluation.resize import to_input
from evaluation.settings import PropagationSettings, eval_size, protocol_settings
from siammae_common.console import progress

__all__ = ["PropagationSettings", "context_frames", "eval_size", "extract_features", "propagate",
           "protocol_settings", "window_mask"]


def _host_batch(frames: np.ndarray, device: torch.device) -> torch.Tensor:
    batch = torch.from_numpy(np.ascontiguousarray(frames))
    if device.type == "cuda":
        return batch.pin_memory().to(device, non_blocking=True)
    return batch


@torch.inference_mode()
def extract_features(extractor: FeatureExtractor, frames: np.ndarray, settings: PropagationSettings,
                     desc: str = "") -> torch.Tensor:
    """L2-normalised patch features [T, h, w, D] of uint8 frames [T, H, W, 3], on settings.device.

    The uint8 frames go to the device first; conversion, resize and normalisation run there.
    """
    device = torch.device(settings.device)
    size = eval_size(frames.shape[1], frames.shape[2], settings, extractor.patch_size)
    out = []
    starts = range(0, len(frames), settings.batch_size)
    for start in progress(starts, desc=f"encode {desc}".strip(), unit="batch", lines=False):
        batch = _host_batch(frames[start:start + settings.batch_size], device)          # [B, H, W, 3] uint8
        out.append(F.normalize(extractor(to_input(batch, size, settings)).float(), dim=-1))
    return torch.cat(out)


def window_mask(h: int, w: int, settings: PropagationSettings, device: torch.device | str) -> torch.Tensor:
    """Allowed (target, source) pairs on an h × w grid: bool [h·w, h·w]."""
    ii, jj = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
    di = ii.reshape(-1, 1) - ii.reshape(1, -1)
    dj = jj.reshape(-1, 1) - jj.reshape(1, -1)
    if settings.window == "circle":
        return (di**2 + dj**2).float().sqrt() < settings.radius
    if settings.window == "square":
        return (di.abs() <= settings.radius) & (dj.abs() <= settings.radius)
    raise ValueError(f"unknown window shape {settings.window!r} (circle or square)")


def context_frames(t: int, settings: PropagationSettings) -> list[int]:
    """The short-term context frames of target t (the first frame comes on top of these; t = 0: none).

    pad_first_frame (CRW/CropMAE): always `queue` frames, t−queue … t−1, with frame 0 standing in for
    those before the start (so for t ≤ queue, queue − t + 1 copies of frame 0). Otherwise (DINO): the
    predicted frames max(1, t−queue) … t−1 only.
    """
    if t < 1:
        return []
    if settings.pad_first_frame:
        return [max(0, t - settings.queue + i) for i in range(settings.queue)]
    return list(range(max(1, t - settings.queue), t))


@torch.inference_mode()
def propagate(features: torch.Tensor, first_labels: torch.Tensor,
              settings: PropagationSettings) -> Iterator[torch.Tensor]:
    """Soft labels [C, h, w] of frames 1..T-1, one per step, on the features' device.

    features: L2-normalised [T, h, w, D]; first_labels: frame 0's labels [C, h, w] on the same grid.
    The context of target t is frame 0 (windowed only if window_on_first_frame) followed by
    context_frames(t), in that order; top-k runs over all their patches jointly. No host sync.
    """
    n_frames, h, w, dim = features.shape
    hw = h * w
    feats = features.reshape(n_frames, hw, dim)
    n_classes = first_labels.shape[0]
    # Every frame's labels stay in one buffer; a context is an index list into it.
    labels = torch.empty(n_frames, hw, n_classes, device=feats.device)
    labels[0] = first_labels.to(feats.device, torch.float32).reshape(n_classes, hw).T
    outside = ~window_mask(h, w, settings, feats.device)[:, None, :]                   # [hw, 1, hw]
    # context of t: frame 0, then its short-term frames; all index lists go to the device at once
    contexts = [[0, *context_frames(t, settings)] for t in range(n_frames)]
    all_indices = torch.tensor([i for c in contexts for i in c], dtype=torch.long).to(feats.device)
    ends = np.cumsum([len(c) for c in contexts]).tolist()
    windowed = 0 if settings.window_on_first_frame else 1                              # first windowed slot
    for t in range(1, n_frames):
        n_context = len(contexts[t])
        index = all_indices[ends[t] - n_context:ends[t]]                                # [N] on the device
        aff = (feats[t] @ feats[index].reshape(-1, dim).T).view(hw, n_context, hw)      # [hw, N, hw] cosine
        aff[:, windowed:].masked_fill_(outside, float("-inf"))
        flat = aff.view(hw, -1)                                                         # [hw, N·hw]
        # top-k of the cosines = top-k of cosine / T (T > 0); only the kept values are divided
        values, chosen = flat.topk(min(settings.topk, n_context * hw), dim=1)            # [hw, k]
        context = labels[index].reshape(-1, n_classes)                                  # [N·hw, C]
        if settings.keep_ties:          # DINO: every affinity >= the k-th, however many tie with it
            # ties as DINO decides them: on cosine / T in float32 (distinct cosines near 1 can round to
            # one value there), not on the cosines
            scaled = flat / settings.temperature                                       # [hw, N·hw]
            kth = values[:, -1:] / settings.temperature                                 # [hw, 1]
            kept = torch.exp(scaled - values[:, :1] / settings.temperature) * (scaled >= kth)
            labels[t] = (kept / kept.sum(dim=1, keepdim=True)) @ context                # [hw, C]
        else:
            weights = torch.softmax(values / settings.temperature, dim=1)
            labels[t] = torch.einsum("qk,qkc->qc", weights, context[chosen])            # [hw, C]
        yield labels[t].T.reshape(n_classes, h, w)
