"""Optional effects that make synthetic objects behave more like things filmed by a camera: light that
falls across them from a turning direction (shading), bodies that bend and flex (non-rigid deformation),
and sensor noise that changes every frame. All default to off, and off draws no random numbers, so a set
made without them is the same as before they existed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Realism:
    """Strength of each effect; 0 turns it off."""

    shading: float = 0.0     # brightness swing across an object from a directional light (0.3: +-30%)
    deform: float = 0.0      # bending of an object's body, fraction of its radius (0.15: 15%)
    noise: float = 0.0       # sensor noise, standard deviation in 8-bit levels, new every frame

    def __post_init__(self) -> None:
        for name in ("shading", "deform", "noise"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} {getattr(self, name)}: must be at least 0")


NO_REALISM = Realism()


@dataclass(frozen=True)
class ObjectEffects:
    """One object's draw of the effects: a light direction turning at its own pace, a bending wave."""

    shading: float
    light_angle: float            # rad at t = 0
    light_turn: float             # rad / frame
    bend: float                   # amplitude, object-coordinate pixels
    bend_wavelength: float        # object-coordinate pixels
    bend_omega: float             # rad / frame
    bend_phase: float


def draw_effects(rng: np.random.Generator, realism: Realism, radius: float) -> ObjectEffects | None:
    """The effects of one object of about `radius` pixels, or None (no random numbers drawn) when all are off."""
    if realism.shading == 0 and realism.deform == 0:
        return None
    return ObjectEffects(
        shading=realism.shading * float(rng.uniform(0.5, 1.0)), light_angle=float(rng.uniform(0, 2 * np.pi)),
        light_turn=float(rng.uniform(-0.08, 0.08)), bend=realism.deform * radius * float(rng.uniform(0.5, 1.0)),
        bend_wavelength=radius * float(rng.uniform(1.0, 2.0)), bend_omega=float(rng.uniform(0.1, 0.3)),
        bend_phase=float(rng.uniform(0, 2 * np.pi)))


def bend(u: np.ndarray, v: np.ndarray, t: float, fx: ObjectEffects) -> tuple[np.ndarray, np.ndarray]:
    """Object coordinates [h, w] after a travelling bending wave: the body (outline and texture) flexes."""
    k = 2 * np.pi / fx.bend_wavelength
    du = fx.bend * np.sin(k * v + fx.bend_omega * t + fx.bend_phase)
    dv = fx.bend * np.sin(k * u + fx.bend_omega * t + 2 * fx.bend_phase)
    return u + du, v + dv


def shade(u: np.ndarray, v: np.ndarray, t: float, radius: float, fx: ObjectEffects) -> np.ndarray:
    """Per-pixel brightness factor [h, w] of a light across the object, its direction turning with t."""
    angle = fx.light_angle + fx.light_turn * t
    across = (np.cos(angle) * u + np.sin(angle) * v) / max(radius, 1.0)           # about -1 .. 1 on the body
    return 1.0 + fx.shading * np.clip(across, -1.0, 1.0)


def add_noise(frame: np.ndarray, sigma: float, seed: tuple[int, ...], t: int) -> np.ndarray:
    """frame [H, W, 3] float plus Gaussian sensor noise of `sigma` levels, the same for the same (seed, t)."""
    if sigma == 0:
        return frame
    rng = np.random.default_rng([*seed, t, 7])
    return frame + rng.normal(0.0, sigma, frame.shape).astype(np.float32)
