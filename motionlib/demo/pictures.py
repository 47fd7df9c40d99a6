"""Picture grids of the shapes demo evaluation: labelled rows of frames (PIL)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .metrics import to_uint8


def wrap_label(label: str, width: int) -> list[str]:
    """A row label broken into lines of at most ``width`` characters at spaces (a longer word stays whole)."""
    lines, line = [], ""
    for wd in label.split(" "):
        if len(line) + len(wd) + 1 > width and line:
            lines.append(line)
            line = wd
        else:
            line = f"{line} {wd}".strip()
    lines.append(line)
    return lines


def picture(rows: list[tuple[str, np.ndarray]], scale: int = 4, gap: int = 2, label_w: int = 230):
    """PIL image: one labelled row per (label, uint8 [F, 3, H, W]) video, frames left to right."""
    from PIL import Image, ImageDraw, ImageFont

    f, _, h, w = rows[0][1].shape
    fh, fw = h * scale, w * scale
    img = np.full((len(rows) * (fh + gap) + gap, label_w + f * (fw + gap) + gap, 3), 40, np.uint8)
    for r, (_, v) in enumerate(rows):
        arr = to_uint8(v).transpose(0, 2, 3, 1).repeat(scale, 1).repeat(scale, 2)
        y = gap + r * (fh + gap)
        for k in range(f):
            x = label_w + gap + k * (fw + gap)
            img[y:y + fh, x:x + fw] = arr[k]
    im = Image.fromarray(img)
    draw = ImageDraw.Draw(im)
    try:
        font = ImageFont.load_default(size=14)
    except TypeError:  # Pillow < 10.1
        font = ImageFont.load_default()
    for r, (label, _) in enumerate(rows):
        y = gap + r * (fh + gap) + fh // 2 - 14
        for i, ln in enumerate(wrap_label(label, 26)[:3]):
            draw.text((6, y + 16 * i), ln, fill=(235, 235, 235), font=font)
    return im


def save_pictures(out_dir: Path, gen_rows, transfer_rows) -> dict:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    if gen_rows:
        paths["generation"] = str(out_dir / "generation.png")
        picture(gen_rows).save(paths["generation"])
    grid = []
    for fam, rows in transfer_rows.items():
        grid += rows["reference"] + rows["zero_shot"] + rows["plain"]
        full = rows["reference"] + [r for m in ("zero_shot", "zt", "injection", "plain") for r in rows[m]]
        paths[f"transfer_{fam}"] = str(out_dir / f"transfer_{fam}.png")
        picture(full).save(paths[f"transfer_{fam}"])
    if grid:
        paths["grid"] = str(out_dir / "grid.png")
        picture(grid).save(paths["grid"])
    return paths
