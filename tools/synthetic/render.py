"""Renders synthetic scenes: textured objects moving over a textured, panning background, with exact labels.

A scene is fully described by a seed, so every frame, mask and keypoint can be regenerated. Objects carry
their own texture (it moves, scales and rotates with them), wander with bursts of speed and sudden turns,
cross and occlude each other in a fixed depth order, change brightness on their own, and share the scene
with unlabelled look-alike distractors; the camera pans and the global lighting drifts. Position alone
therefore predicts little, while frame-to-frame correspondence stays learnable.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from tools.synthetic.realism import NO_REALISM, ObjectEffects, Realism, add_noise, bend, draw_effects, shade


def value_noise(rng: np.random.Generator, height: int, width: int, octaves: int = 4,
                base_cells: int = 4) -> np.ndarray:
    """Smooth multi-octave noise in [0, 1], shape [H, W] float32."""
    out = np.zeros((height, width), np.float32)
    amplitude, total = 1.0, 0.0
    for octave in range(octaves):
        cells = base_cells * 2 ** octave
        grid = rng.random((cells, cells * max(1, width // max(1, height)))).astype(np.float32)
        layer = np.asarray(Image.fromarray(grid, mode="F").resize((width, height), Image.BICUBIC))
        out += amplitude * layer
        total += amplitude
        amplitude *= 0.55
    out /= total
    return np.clip((out - out.min()) / max(1e-6, float(np.ptp(out))), 0, 1)


def colour_texture(rng: np.random.Generator, height: int, width: int, stripes: bool = False,
                   colours: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """A textured RGB image [H, W, 3] uint8: coloured noise, optionally with stripes and dots for detail.

    `colours` (two RGB triples in [0, 1]) fixes the palette, e.g. to make a look-alike of another object.
    """
    base = value_noise(rng, height, width, octaves=5, base_cells=int(rng.integers(3, 7)))
    c1, c2 = colours if colours is not None else (rng.random(3), rng.random(3))
    img = c1[None, None] * base[..., None] + c2[None, None] * (1 - base[..., None])
    if stripes:
        yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
        angle, period = rng.random() * np.pi, rng.uniform(6, 16)
        wave = 0.5 + 0.5 * np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * 2 * np.pi / period)
        img = img * (0.6 + 0.4 * wave[..., None])
    n_dots = max(1, height * width // 400)
    ys, xs = rng.integers(0, height, n_dots), rng.integers(0, width, n_dots)
    img[ys, xs] = rng.random((n_dots, 3))
    img += 0.08 * (rng.random((height, width, 3)) - 0.5)             # fine grain
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)


@dataclass
class MovingObject:
    """A textured ellipse or rounded box with scale change, spin and its own brightness change.

    It moves on a smooth Lissajous path, or, when `path` is set, along that precomputed track.
    """

    texture: np.ndarray               # [2R, 2R, 3] uint8, object coordinates
    radius_x: float                   # half-axes in object coordinates (pixels at scale 1)
    radius_y: float
    box: bool                         # rounded box instead of ellipse
    centre: np.ndarray                # [2] (x, y) at t = 0
    amplitude: np.ndarray             # [2]
    omega: np.ndarray                 # [2] rad / frame
    phase: np.ndarray                 # [2]
    scale0: float
    scale_amp: float
    scale_omega: float
    spin: float                       # rad / frame
    path: np.ndarray | None = None    # [T, 2] centre per frame (the last one is held after T)
    gain_amp: float = 0.0             # the object's own brightness: 1 + gain_amp * sin(gain_omega t + gain_phase)
    gain_omega: float = 0.0
    gain_phase: float = 0.0
    labelled: bool = True             # False: a distractor, drawn but labelled as background
    effects: ObjectEffects | None = None   # shading and bending (tools.synthetic.realism), None: flat and rigid

    def pose(self, t: float) -> tuple[np.ndarray, float, float]:
        """(centre [2], scale, angle) at frame t."""
        if self.path is not None:
            c = self.path[min(max(round(t), 0), len(self.path) - 1)]
        else:
            c = self.centre + self.amplitude * (np.sin(self.omega * t + self.phase) - np.sin(self.phase))
        s = self.scale0 * (1 + self.scale_amp * np.sin(self.scale_omega * t))
        return c, float(s), float(self.spin * t)

    def gain(self, t: float) -> float:
        return float(1 + self.gain_amp * np.sin(self.gain_omega * t + self.gain_phase))

    def damp(self, factor: float) -> None:
        """Shrink the motion around the start position (e.g. to keep an object mostly in frame)."""
        self.amplitude = self.amplitude * factor
        if self.path is not None:
            self.path = self.path[0] + factor * (self.path - self.path[0])

    def to_image(self, points: np.ndarray, t: float) -> np.ndarray:
        """Object-coordinate points [N, 2] -> image (x, y) at frame t (0-based pixel coordinates)."""
        c, s, a = self.pose(t)
        rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
        return c + s * points @ rot.T


def wander_path(rng: np.random.Generator, start: np.ndarray, n_frames: int, bounds: np.ndarray,
                mean_speed: float, max_speed: float) -> np.ndarray:
    """[n_frames, 2] centres: heading drifts, with sudden turns and bursts of speed; bounces off `bounds`.

    bounds = [x_min, y_min, x_max, y_max]; speeds in pixels / frame.
    """
    out = np.empty((n_frames, 2))
    pos = np.array(start, dtype=np.float64)
    heading = rng.uniform(0, 2 * np.pi)
    speed = target = mean_speed * rng.uniform(0.5, 1.5)
    for t in range(n_frames):
        out[t] = pos
        heading += rng.normal(0, 0.12)
        if rng.random() < 0.04:                                   # sudden turn
            heading += rng.uniform(-2.5, 2.5)
        if rng.random() < 0.06:                                   # new pace: pauses, strolls and dashes
            target = min(max_speed, rng.exponential(mean_speed))
        speed += 0.3 * (target - speed)
        step = speed * np.array([np.cos(heading), np.sin(heading)])
        nxt = pos + step
        for d in (0, 1):
            if not bounds[d] <= nxt[d] <= bounds[d + 2]:
                step[d] = -step[d]
                heading = np.arctan2(step[1], step[0])
        pos = np.clip(pos + step, bounds[:2], bounds[2:])
    return out


def random_object(rng: np.random.Generator, width: int, height: int, size: float, speed: float,
                  n_frames: int | None = None, colours: tuple[np.ndarray, np.ndarray] | None = None,
                  realism: Realism = NO_REALISM, effects_rng: np.random.Generator | None = None) -> MovingObject:
    """An object of roughly `size` pixels radius, starting well inside the frame.

    n_frames None: the smooth Lissajous path, `speed` in rad / frame. Otherwise a wandering track of that
    many frames, `speed` = mean speed as a fraction of the frame's short side per frame (dashes reach 3x).
    """
    rx, ry = size * rng.uniform(0.7, 1.2), size * rng.uniform(0.5, 1.0)
    r = int(np.ceil(max(rx, ry))) + 1
    obj = MovingObject(
        texture=colour_texture(rng, 2 * r, 2 * r, stripes=bool(rng.random() < 0.5), colours=colours),
        radius_x=rx, radius_y=ry, box=bool(rng.random() < 0.4),
        centre=np.array([rng.uniform(0.3, 0.7) * width, rng.uniform(0.3, 0.7) * height]),
        amplitude=np.array([rng.uniform(0.1, 0.3) * width, rng.uniform(0.1, 0.3) * height]),
        omega=rng.uniform(0.5, 1.5, 2) * speed, phase=rng.uniform(0, 2 * np.pi, 2),
        scale0=1.0, scale_amp=rng.uniform(0.1, 0.3), scale_omega=rng.uniform(0.02, 0.06),
        spin=rng.uniform(-0.01, 0.01))
    if n_frames is not None:
        short = min(width, height)
        obj.path = wander_path(rng, obj.centre, n_frames,
                               np.array([0.1 * width, 0.15 * height, 0.9 * width, 0.85 * height]),
                               speed * short, 3 * speed * short)
        obj.scale_amp, obj.scale_omega = rng.uniform(0.15, 0.35), rng.uniform(0.03, 0.1)
        obj.spin = rng.uniform(-0.03, 0.03)
        obj.gain_amp, obj.gain_omega, obj.gain_phase = rng.uniform(0.1, 0.3), rng.uniform(0.05, 0.2), rng.uniform(0, 6.3)
    obj.effects = draw_effects(effects_rng or rng, realism, max(rx, ry))
    return obj


@dataclass
class Scene:
    """Background + objects (index 0 drawn first) + lighting; `render(t)` gives the frame and the id map."""

    width: int
    height: int
    background: np.ndarray            # [H + pan, W + pan, 3] uint8
    pan: np.ndarray                   # [2] pixels / frame (x, y)
    objects: list[MovingObject]
    gain_amp: float
    gain_omega: float
    noise: float = 0.0                # sensor noise (8-bit levels), drawn from (noise_seed, t)
    noise_seed: tuple[int, ...] = ()

    def render(self, t: int) -> tuple[np.ndarray, np.ndarray]:
        """Frame t: (RGB [H, W, 3] uint8, ids [H, W] uint8: 0 = background, k = the k-th labelled object)."""
        bh, bw = self.background.shape[:2]
        ox = _bounce(t * self.pan[0], bw - self.width)
        oy = _bounce(t * self.pan[1], bh - self.height)
        frame = self.background[oy:oy + self.height, ox:ox + self.width].astype(np.float32)
        ids = np.zeros((self.height, self.width), np.uint8)
        k = 0
        for obj in self.objects:
            k += obj.labelled
            self._draw(obj, t, frame, ids, k if obj.labelled else 0)
        gain = 1 + self.gain_amp * np.sin(self.gain_omega * t)
        frame = add_noise(frame * gain, self.noise, self.noise_seed, t)
        return np.clip(frame, 0, 255).astype(np.uint8), ids

    def _draw(self, obj: MovingObject, t: int, frame: np.ndarray, ids: np.ndarray, k: int) -> None:
        c, s, a = obj.pose(t)
        reach = s * np.hypot(obj.radius_x, obj.radius_y) + 1
        x0, x1 = max(0, int(c[0] - reach)), min(self.width, int(c[0] + reach) + 1)
        y0, y1 = max(0, int(c[1] - reach)), min(self.height, int(c[1] + reach) + 1)
        if x0 >= x1 or y0 >= y1:
            return
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        dx, dy = (xx - c[0]) / s, (yy - c[1]) / s                    # inverse of to_image
        u = dx * np.cos(a) + dy * np.sin(a)
        v = -dx * np.sin(a) + dy * np.cos(a)
        if obj.effects is not None:
            u, v = bend(u, v, t, obj.effects)
        nu, nv = u / obj.radius_x, v / obj.radius_y
        inside = (nu ** 4 + nv ** 4 <= 1) if obj.box else (nu ** 2 + nv ** 2 <= 1)
        r = obj.texture.shape[0] // 2
        tu = np.clip((u + r).astype(np.int64), 0, 2 * r - 1)
        tv = np.clip((v + r).astype(np.int64), 0, 2 * r - 1)
        region = frame[y0:y1, x0:x1]
        light = obj.gain(t)
        if obj.effects is not None:
            light = obj.gain(t) * shade(u, v, t, max(obj.radius_x, obj.radius_y), obj.effects)[inside, None]
        region[inside] = obj.texture[tv[inside], tu[inside]] * light
        ids[y0:y1, x0:x1][inside] = k


def _bounce(position: float, span: int) -> int:
    """A position travelling back and forth in [0, span] (a triangle wave), so panning never jumps."""
    if span <= 0:
        return 0
    p = position % (2 * span)
    return round(p if p <= span else 2 * span - p)


def random_scene(rng: np.random.Generator, width: int, height: int, n_objects: int,
                 object_size: float | None = None, speed: float = 0.05, n_frames: int | None = None,
                 distractors: int = 0, pan_speed: float = 0.6, realism: Realism = NO_REALISM,
                 effects_seed: tuple[int, ...] = ()) -> Scene:
    """A scene whose labelled objects all show in frame 0 (DAVIS counts objects from the first mask).

    n_frames None: the original gentle scenes (Lissajous paths, `speed` in rad / frame). With n_frames:
    wandering objects (`speed` = mean fraction of the short side per frame, see random_object), plus
    `distractors` unlabelled objects, each a look-alike (same colours) of a labelled one, at random depths.
    `realism` adds shading, bending and sensor noise (tools.synthetic.realism), drawn from `effects_seed` apart
    from everything else, so turning an effect on changes no object's path, colours or texture.
    """
    size = object_size or min(width, height) * 0.16
    pan = rng.uniform(-pan_speed, pan_speed, 2)
    margin = max(64, int(np.ceil(2 * pan_speed * 40)))
    background = colour_texture(rng, height + margin, width + margin, stripes=bool(rng.random() < 0.5))
    effects_rng = np.random.default_rng([*effects_seed, 11])
    for _ in range(50):
        palettes = [(rng.random(3), rng.random(3)) for _ in range(n_objects)]
        objects = [random_object(rng, width, height, size * rng.uniform(0.8, 1.3), speed, n_frames, palettes[k],
                                 realism, effects_rng) for k in range(n_objects)]
        for _ in range(distractors):
            c1, c2 = palettes[int(rng.integers(n_objects))]
            twin = (np.clip(c1 + rng.normal(0, 0.05, 3), 0, 1), np.clip(c2 + rng.normal(0, 0.05, 3), 0, 1))
            extra = random_object(rng, width, height, size * rng.uniform(0.6, 1.1), speed, n_frames, twin, realism,
                                  effects_rng)
            extra.labelled = False
            objects.insert(int(rng.integers(len(objects) + 1)), extra)
        scene = Scene(width, height, background, np.abs(pan), objects,
                      gain_amp=rng.uniform(0.05, 0.2), gain_omega=rng.uniform(0.03, 0.1), noise=realism.noise,
                      noise_seed=effects_seed)
        _, ids = scene.render(0)
        if all((ids == k).sum() > size * size * 0.5 for k in range(1, n_objects + 1)):
            return scene
    return scene
