"""The seed report's published numbers (DAVIS-2017 val, ViT-T/16 on UCF101), shown beside ours."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ReportedScore:
    """J&F-Mean, J-Mean and F-Mean in percent, as printed in the seed report."""

    jf: float
    j: float
    f: float


SEED_REPORT = "R. Hammer, S. Roig, S.-T. Lin, Siamese Masked Autoencoders (a reproduction on UCF101), December 2023"

# Table 1: J&F by pretraining epochs (siamese encoder, cross-self decoder, mask 0.95).
EPOCHS: dict[int, ReportedScore] = {
    3: ReportedScore(44.4, 40.7, 48.0),
    5: ReportedScore(44.1, 40.4, 47.8),
    10: ReportedScore(42.8, 39.2, 46.3),
    25: ReportedScore(39.5, 36.1, 42.9),
}

# Table 2a: encoder × decoder at mask 0.95.
ENCODER_DECODER: dict[tuple[str, str], ReportedScore] = {
    ("joint", "joint"): ReportedScore(29.4, 26.1, 32.7),
    ("joint", "cross"): ReportedScore(28.1, 24.8, 31.4),
    ("joint", "cross-self"): ReportedScore(26.0, 22.3, 29.8),
    ("siamese", "joint"): ReportedScore(32.6, 30.5, 34.7),
    ("siamese", "cross"): ReportedScore(45.4, 41.6, 49.2),
    ("siamese", "cross-self"): ReportedScore(44.4, 40.7, 48.0),
}

# Table 2b: mask ratio (siamese encoder, cross-self decoder).
MASK_RATIO: dict[float, ReportedScore] = {
    0.50: ReportedScore(44.2, 40.7, 47.7),
    0.75: ReportedScore(42.4, 39.2, 45.6),
    0.90: ReportedScore(41.3, 37.8, 44.8),
    0.95: ReportedScore(44.4, 40.7, 48.0),
}
