"""Built-in synthetic dataset: textured articulated bodies moving non-rigidly, written as .mp4 (a tiny Tai-Chi).

Identities differ in palette, texture and proportions, videos in motion; the texture is drawn in each part's
own coordinates, so it moves with the part: the motion is visible, as FOMM needs."""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fomm.visualization import hsv_to_rgb
from services.atomic import atomic_open
from services.video_write import write_video

METADATA_NAME = "metadata.csv"


@dataclass(frozen=True)
class Identity:
    """What stays fixed for one person id: colours, texture and proportions."""

    colors: np.ndarray  # 4×3 float in [0, 1]: torso, arms, legs, head
    stripe: np.ndarray  # 4 texture wavelengths in units of the frame size
    torso: float  # lengths and widths in units of the frame size
    upper: float
    lower: float
    width: float


def make_identity(rng: np.random.Generator, hue: float) -> Identity:
    colors = np.stack([hsv_to_rgb((hue + d) % 1.0, rng.uniform(0.55, 0.95), rng.uniform(0.6, 1.0))
                       for d in (0.0, 0.33, 0.6, 0.15)])
    return Identity(colors=colors, stripe=rng.uniform(0.05, 0.14, size=4), torso=rng.uniform(0.26, 0.32),
                    upper=rng.uniform(0.15, 0.19), lower=rng.uniform(0.14, 0.18), width=rng.uniform(0.075, 0.1))


def _background(size: int, rng: np.random.Generator) -> np.ndarray:
    """A smooth random texture: a few low-frequency colour gratings.  # H×W×3 float"""
    y, x = np.mgrid[0:size, 0:size] / size
    img = np.full((size, size, 3), 0.45) + rng.uniform(-0.1, 0.1, size=3)
    for _ in range(4):
        f = rng.uniform(1.0, 4.0, size=2) * rng.choice([-1, 1], size=2)
        img += rng.uniform(0.03, 0.08, size=3) * np.sin(2 * math.pi * (f[0] * x + f[1] * y) + rng.uniform(0, 6.3))[..., None]
    return np.clip(img, 0.0, 1.0)


def _draw_segment(img: np.ndarray, grid: tuple[np.ndarray, np.ndarray], p: np.ndarray, angle: float,
                  length: float, width: float, color: np.ndarray, wavelength: float, phase: float) -> np.ndarray:
    """Alpha-blend a textured capsule from joint p along `angle`; returns its far end."""
    xs, ys = grid
    c, s = math.cos(angle), math.sin(angle)
    u = (xs - p[0]) * c + (ys - p[1]) * s  # along the part
    v = -(xs - p[0]) * s + (ys - p[1]) * c  # across the part
    d = np.sqrt(np.maximum(np.maximum(-u, u - length), 0.0) ** 2 + v**2)
    alpha = np.clip((width / 2 - d) + 0.5, 0.0, 1.0)[..., None]  # one-pixel soft edge
    texture = 0.72 + 0.28 * np.sign(np.sin(2 * math.pi * u / wavelength + phase)) * np.cos(2 * math.pi * v / (2.2 * width))
    part = np.clip(color * texture[..., None], 0.0, 1.0)
    img *= 1.0 - alpha
    img += alpha * part
    return p + length * np.array([c, s])


def _render_body(img: np.ndarray, grid: tuple[np.ndarray, np.ndarray], ident: Identity, motion: dict,
                 t: float, size: int) -> None:
    def wave(name: str) -> float:
        amp, freq, ph = motion[name]
        return float(amp * math.sin(2 * math.pi * freq * t + ph))

    k = size * (1.0 + wave("scale"))
    hip = np.array([0.5, 0.62]) * size + size * np.array([wave("dx"), wave("dy")])
    torso_angle = -math.pi / 2 + wave("sway")
    w = ident.width * k
    col, lam = ident.colors, ident.stripe * size
    for side, base in ((-1, 0.25), (1, -0.25)):  # legs first: they sit behind the torso
        knee = _draw_segment(img, grid, hip, math.pi / 2 + base + wave(f"thigh{side}"), ident.upper * k, w * 1.1,
                             col[2], lam[2], 0.0)
        _draw_segment(img, grid, knee, math.pi / 2 + base + wave(f"thigh{side}") + abs(wave(f"shin{side}")),
                      ident.lower * k, w, col[2] * 0.85, lam[2], 1.0)
    neck = _draw_segment(img, grid, hip, torso_angle, ident.torso * k, w * 2.0, col[0], lam[0], 0.0)
    for side in (-1, 1):
        shoulder_angle = torso_angle + side * (math.pi * 0.65 + wave(f"shoulder{side}"))
        elbow = _draw_segment(img, grid, neck, shoulder_angle, ident.upper * k, w, col[1], lam[1], 0.5)
        _draw_segment(img, grid, elbow, shoulder_angle + side * wave(f"elbow{side}"), ident.lower * k, w * 0.85,
                      col[1] * 0.8, lam[1], 2.0)
    _draw_segment(img, grid, neck, torso_angle + wave("head"), 0.07 * k, w * 1.7, col[3], lam[3], 0.0)


def _make_motion(rng: np.random.Generator) -> dict:
    """Per-video motion: (amplitude, frequency in cycles per second, phase) for every joint and jitter."""
    def m(amp: float, lo: float = 0.3, hi: float = 1.2) -> tuple[float, float, float]:
        return (amp * rng.uniform(0.6, 1.0), rng.uniform(lo, hi), rng.uniform(0, 2 * math.pi))

    motion = {"scale": m(0.08), "dx": m(0.08), "dy": m(0.05), "sway": m(0.3), "head": m(0.35)}
    for side in (-1, 1):
        motion.update({f"thigh{side}": m(0.45), f"shin{side}": m(0.9), f"shoulder{side}": m(0.9),
                       f"elbow{side}": m(1.3)})
    return motion


def render_video(ident: Identity, rng: np.random.Generator, size: int, num_frames: int,
                 fps: float) -> np.ndarray:
    """Frames of one synthetic video.  # T×H×W×3 uint8"""
    background = _background(size, rng)
    grid = tuple(g.astype(np.float64) + 0.5 for g in np.mgrid[0:size, 0:size][::-1])  # (x, y) pixel centres
    motion = _make_motion(rng)
    frames = np.empty((num_frames, size, size, 3), np.uint8)
    for i in range(num_frames):
        img = background.copy()
        _render_body(img, grid, ident, motion, i / fps, size)
        frames[i] = np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return frames


def generate_synthetic_videos(out_dir: str | Path, num_videos: int = 12, size: int = 64, num_frames: int = 48,
                              seed: int = 0) -> list[Path]:
    """Write `num_videos` .mp4 files at 25 fps and `metadata.csv` (video_id, person_id, split, …) to out_dir.

    Deterministic for a seed. Videos go round-robin to 4 identities; the last quarter of each identity's
    form the test split, so test identities also appear in training (the original Tai-Chi split)."""
    fps, num_identities, test_fraction = 25.0, 4, 0.25
    if num_videos < 1 or size < 16 or num_frames < 2:
        raise ValueError(f"need num_videos ≥ 1, size ≥ 16, num_frames ≥ 2; got {num_videos}, {size}, {num_frames}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    hue0 = np.random.default_rng(seed).uniform()  # identities spread evenly around the colour wheel
    identities = [make_identity(np.random.default_rng([seed, 1, i]), (hue0 + i / num_identities) % 1.0)
                  for i in range(num_identities)]
    per_id = [sum(1 for v in range(num_videos) if v % num_identities == i) for i in range(num_identities)]
    n_test = [max(1, int(round(n * test_fraction))) if n > 1 else 0 for n in per_id]
    rows = []
    for v in range(num_videos):
        pid, rank = v % num_identities, v // num_identities
        frames = render_video(identities[pid], np.random.default_rng([seed, 2, v]), size, num_frames, fps)
        video_id = f"synth{v:04d}"
        path = write_video(out / f"{video_id}.mp4", frames, fps, deterministic=True)  # byte-identical reruns
        split = "test" if rank >= per_id[pid] - n_test[pid] else "train"
        rows.append({"video_id": video_id, "person_id": f"id{pid:02d}", "split": split, "file": path.name,
                     "num_frames": num_frames, "fps": fps, "width": size, "height": size, "num_bodies": 1})
    with atomic_open(out / METADATA_NAME, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return [out / r["file"] for r in rows]


def write_synthetic_shards(out_dir: str | Path, num_videos: int = 4, size: int = 64, num_frames: int = 12,
                           seed: int = 0, split: str = "test", frame_format: str = "png",
                           num_identities: int = 2, test_every: int = 0) -> Path:
    """Synthetic clips written straight to clip shards, one `<split>-<seed:05d>.parquet` per split.

    All clips go to `split`, or with `test_every` > 0 every `test_every`-th to 'test', the rest to 'train'.
    Returns the file when one split is written, else the folder. Clip v: `synth{v:04d}_000` of `id{v % n:02d}`."""
    from preprocessing.shards import ClipRecord, encode_frame, records_to_table, write_table_atomic

    identities = [make_identity(np.random.default_rng([seed, 1, i]), i / num_identities)
                  for i in range(num_identities)]
    records: dict[str, list[ClipRecord]] = {}
    for v in range(num_videos):
        frames = render_video(identities[v % num_identities], np.random.default_rng([seed, 2, v]), size,
                              num_frames, 25.0)  # T×H×W×3 uint8
        clip_split = ("test" if v % test_every == test_every - 1 else "train") if test_every > 0 else split
        records.setdefault(clip_split, []).append(ClipRecord(
            video_id=f"synth{v:04d}", clip_id=f"synth{v:04d}_000", person_id=f"id{v % num_identities:02d}",
            split=clip_split, fps=25.0, height=size, width=size, start_frame=0, end_frame=num_frames,
            crop_box=(0, 0, size, size), source_path="synthetic", source_height=size, source_width=size,
            frames=[encode_frame(f, frame_format) for f in frames], frame_format=frame_format))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{name}-{seed:05d}.parquet" for name in records]
    for path, recs in zip(paths, records.values()):
        write_table_atomic(records_to_table(recs), str(path))
    return paths[0] if len(paths) == 1 else out
