"""Procedural, seeded training clips for the "shapes" demo model.

A clip is one anti-aliased disc of a named colour moving over a black (or a dim, static,
low-contrast textured) background, ``num_frames`` frames of ``size``x``size`` RGB, returned as
uint8 ``[F, 3, H, W]``. The prompt describes appearance only ("a green circle on a black
background"); the motion (one of ``TRAJECTORIES``) is left to the model, and the exact disc
centre per frame is returned in ``meta["track"]`` (``[F, 2]`` float, (x, y), x right, y down).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (230, 40, 40),
    "green": (40, 200, 60),
    "blue": (50, 90, 240),
    "yellow": (235, 215, 40),
}
BACKGROUNDS = ("black", "textured")
TRAJECTORIES = ("linear", "arc", "zigzag", "speed_change", "static", "reversal", "l_turn")
# reversal and l_turn (issue 24) take their share from linear and static, which the model drew well
TRAJECTORY_PROBS = (0.2, 0.15, 0.15, 0.15, 0.1, 0.15, 0.1)
SHAPE_WORDS = ("circle", "disc", "ball", "dot")  # synonyms; "circle" is the canonical word

NUM_FRAMES = 8
SIZE = 32
RADIUS = 5.0
TEXTURED_PROB = 0.25  # share of textured backgrounds when the background is not given


def prompt_for(color: str, background: str, shape_word: str = "circle", article: str = "a") -> str:
    return f"{article} {color} {shape_word} on {article} {background} background"


def _rng(rng_or_seed) -> np.random.Generator:
    if isinstance(rng_or_seed, np.random.Generator):
        return rng_or_seed
    return np.random.default_rng(rng_or_seed)


def textured_background(rng: np.random.Generator, size: int = SIZE) -> np.ndarray:
    """A dim, smooth, low-contrast, mostly grey texture: uint8 [H, W, 3] with values in about 45..95."""
    from motionlib.synthetic import texture

    tex = texture(size, size, seed=int(rng.integers(2**31)), base=70, contrast=25).astype(np.float32)
    grey = tex.mean(axis=2, keepdims=True)
    return np.clip(0.6 * grey + 0.4 * tex, 0, 255).round().astype(np.uint8)


# --- trajectories: relative paths [F, 2] (x, y), placed inside the frame afterwards --------------
def _direction(rng) -> np.ndarray:
    a = rng.uniform(0, 2 * math.pi)
    return np.array([math.cos(a), math.sin(a)])


def turn_frame(rng: np.random.Generator, n: int) -> int:
    """The frame of a single turn: uniform over 2..n-3, so both segments have at least two steps."""
    if n < 5:
        raise ValueError(f"a turn needs at least 5 frames, got {n}")
    return int(rng.integers(2, n - 2))


def _two_segments(d1: np.ndarray, d2: np.ndarray, s1: float, s2: float, turn: int, n: int) -> np.ndarray:
    """A path that moves s1 px/frame along d1 up to frame `turn`, then s2 px/frame along d2."""
    k = np.arange(n, dtype=np.float64)[:, None]
    first = np.minimum(k, turn) * s1 * d1
    return first + np.maximum(k - turn, 0) * s2 * d2


def segments(meta: dict, n: int) -> list[tuple[int, int]]:
    """The straight stretches of a clip as (first, last) frame pairs, between its turns.

    A path with one turn (reversal, l_turn) has two; an arc turns at every frame, so each step is one;
    linear, speed change and zigzag (whose corners every frame are wiggle around a drift) are one
    stretch from the first frame to the last."""
    kind = meta["trajectory"]
    if kind == "arc":
        return [(k, k + 1) for k in range(n - 1)]
    turns = [int(t) for t in meta["params"].get("turns", [])]
    cuts = [0, *turns, n - 1]
    return [(a, b) for a, b in zip(cuts[:-1], cuts[1:])]


def _path(kind: str, rng: np.random.Generator, n: int) -> tuple[np.ndarray, dict]:
    k = np.arange(n, dtype=np.float64)
    if kind == "static":
        return np.zeros((n, 2)), {}
    if kind == "linear":
        d, speed = _direction(rng), rng.uniform(0.75, 3.0)
        return k[:, None] * speed * d, {"direction": d.tolist(), "speed": speed}
    if kind == "arc":
        radius = rng.uniform(5.0, 9.0)
        sweep = rng.uniform(0.5 * math.pi, 1.4 * math.pi) * rng.choice([-1.0, 1.0])
        phi = rng.uniform(0, 2 * math.pi) + sweep * k / (n - 1)
        return radius * np.stack([np.cos(phi), np.sin(phi)], 1), {"radius": radius, "sweep": sweep}
    if kind == "zigzag":
        d, speed, amp = _direction(rng), rng.uniform(1.0, 2.5), rng.uniform(2.0, 3.5)
        perp = np.array([-d[1], d[0]])
        phase = int(rng.integers(4))
        tri = np.array([0.0, 1.0, 0.0, -1.0])[(np.arange(n) + phase) % 4]  # corners every frame
        return k[:, None] * speed * d + amp * tri[:, None] * perp, {"direction": d.tolist(), "speed": speed,
                                                                     "amplitude": amp}
    if kind == "speed_change":
        d = _direction(rng)
        slow, fast = rng.uniform(0.0, 0.6), rng.uniform(2.2, 3.5)
        profile = rng.choice(["accelerate", "decelerate", "stop_and_go"])
        t = np.linspace(0, 1, n - 1)
        if profile == "accelerate":
            v = slow + (fast - slow) * t
        elif profile == "decelerate":
            v = fast + (slow - fast) * t
        else:  # move, stop, move again
            v = np.where(np.abs(t - 0.5) < 0.2, 0.0, fast * 0.8)
        s = np.concatenate([[0.0], np.cumsum(v)])
        return s[:, None] * d, {"direction": d.tolist(), "profile": str(profile), "speeds": v.tolist()}
    if kind == "reversal":  # there and back along one direction: a squat, a jump, a shake
        d, turn = _direction(rng), turn_frame(rng, n)
        s1, s2 = rng.uniform(1.0, 3.0), rng.uniform(1.0, 3.0)
        return _two_segments(d, -d, s1, s2, turn, n), {"direction": d.tolist(), "speeds": [s1, s2], "turns": [turn]}
    if kind == "l_turn":  # two straight segments, the second turned by 45..135 degrees either way
        a, turn = rng.uniform(0, 2 * math.pi), turn_frame(rng, n)
        angle = rng.uniform(math.pi / 4, 3 * math.pi / 4) * rng.choice([-1.0, 1.0])
        d1 = np.array([math.cos(a), math.sin(a)])
        d2 = np.array([math.cos(a + angle), math.sin(a + angle)])
        s1, s2 = rng.uniform(1.0, 3.0), rng.uniform(1.0, 3.0)
        return _two_segments(d1, d2, s1, s2, turn, n), {"direction": d1.tolist(), "turn_angle": angle,
                                                          "speeds": [s1, s2], "turns": [turn]}
    raise ValueError(f"unknown trajectory {kind!r}: use one of {TRAJECTORIES}")


def _place(path: np.ndarray, rng: np.random.Generator, size: int, radius: float) -> np.ndarray:
    """Shift (and if needed shrink) a relative path so the whole disc stays inside the frame."""
    lo_lim, hi_lim = radius, size - 1 - radius
    avail = hi_lim - lo_lim
    lo, hi = path.min(0), path.max(0)
    extent = (hi - lo).max()
    if extent > avail:
        path = (path - lo) * (avail / extent) + lo
        lo, hi = path.min(0), path.max(0)
    offset = np.array([rng.uniform(lo_lim - lo[i], hi_lim - hi[i]) for i in range(2)])
    return path + offset


def render(track: np.ndarray, color: tuple[int, int, int], background: np.ndarray,
           radius: float = RADIUS) -> np.ndarray:
    """Anti-aliased disc per frame over `background` [H, W, 3]: uint8 [F, 3, H, W]."""
    h, w = background.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    cx = track[:, 0].astype(np.float32)[:, None, None]
    cy = track[:, 1].astype(np.float32)[:, None, None]
    dist = np.sqrt((xx - cx) ** 2 + (yy - cy) ** 2)
    alpha = np.clip(radius + 0.5 - dist, 0.0, 1.0)[..., None]  # [F, H, W, 1], 1-px soft edge
    out = background[None].astype(np.float32) * (1 - alpha) + np.asarray(color, np.float32) * alpha
    return out.round().astype(np.uint8).transpose(0, 3, 1, 2).copy()


def make_clip(rng_or_seed=None, *, color: str | None = None, background: str | None = None,
              trajectory: str | None = None, shape_word: str = "circle", article: str = "a",
              radius: float = RADIUS,
              num_frames: int = NUM_FRAMES, size: int = SIZE,
              textured_prob: float = TEXTURED_PROB) -> tuple[np.ndarray, str, dict]:
    """One clip: (frames uint8 [F, 3, H, W], prompt, meta). Anything not given is drawn from the rng."""
    rng = _rng(rng_or_seed)
    color = color or str(rng.choice(list(COLORS)))
    if color not in COLORS:
        raise ValueError(f"unknown colour {color!r}: use one of {list(COLORS)}")
    if background is None:
        background = "textured" if rng.random() < textured_prob else "black"
    if background not in BACKGROUNDS:
        raise ValueError(f"unknown background {background!r}: use one of {BACKGROUNDS}")
    trajectory = trajectory or str(rng.choice(TRAJECTORIES, p=TRAJECTORY_PROBS))
    rel, params = _path(trajectory, rng, num_frames)
    track = _place(rel, rng, size, radius)
    bg = textured_background(rng, size) if background == "textured" else np.zeros((size, size, 3), np.uint8)
    frames = render(track, COLORS[color], bg, radius)
    meta = {"color": color, "rgb": COLORS[color], "background": background, "trajectory": trajectory,
            "track": track, "radius": radius, "params": params}
    return frames, prompt_for(color, background, shape_word, article), meta


def sample_batch(rng: np.random.Generator, n: int, *, vary_words: bool = False,
                 **kwargs) -> tuple[np.ndarray, list[str], list[dict]]:
    """n random clips: (uint8 [n, F, 3, H, W], prompts, metas).

    `vary_words` (for training) words half of the prompts with a shape synonym and/or "the", so every
    word of the tokenizer's vocabulary gets a trained embedding.
    """
    clips, prompts, metas = [], [], []
    for _ in range(n):
        word, article = "circle", "a"
        if vary_words and rng.random() < 0.5:
            word, article = str(rng.choice(SHAPE_WORDS)), str(rng.choice(["a", "the"]))
        f, p, m = make_clip(rng, shape_word=word, article=article, **kwargs)
        clips.append(f)
        prompts.append(p)
        metas.append(m)
    return np.stack(clips), prompts, metas


def to_model_range(frames) -> torch.Tensor:
    """uint8 frames (numpy or torch) -> float32 torch tensor in [-1, 1], same layout."""
    import torch

    t = torch.as_tensor(np.asarray(frames))
    return t.float().div(127.5).sub(1.0)


def centroid_track(frames: np.ndarray, threshold: int = 120) -> np.ndarray:
    """Measured disc centre per frame from pixels: [F, 2] (x, y) (mean of bright-enough pixels)."""
    f = np.asarray(frames).astype(np.float32)  # [F, 3, H, W]
    mask = f.max(axis=1) > threshold  # backgrounds stay below ~100; every disc colour has a channel > 200
    out = np.full((f.shape[0], 2), np.nan)
    for k in range(f.shape[0]):
        ys, xs = np.nonzero(mask[k])
        if len(xs):
            out[k] = xs.mean(), ys.mean()
    return out
