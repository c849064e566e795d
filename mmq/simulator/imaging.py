"""Real image work: describe received images (size, format, dominant colour) and render generated PNGs."""

from __future__ import annotations

import colorsys
import hashlib
import io
import math
from functools import lru_cache

from PIL import Image, ImageDraw, ImageFont
from PIL.PngImagePlugin import PngInfo

# Several representatives per name so "nearest" works for dark, light and saturated variants alike.
_PALETTE: dict[str, tuple[tuple[int, int, int], ...]] = {
    "red": ((255, 0, 0), (209, 42, 42), (180, 20, 30), (140, 0, 0)),
    "green": ((0, 255, 0), (40, 160, 40), (0, 110, 0), (120, 200, 80)),
    "blue": ((0, 0, 255), (30, 80, 220), (0, 0, 128), (70, 130, 230)),
    "yellow": ((255, 255, 0), (240, 220, 40), (250, 240, 120)),
    "orange": ((255, 165, 0), (245, 130, 30), (230, 100, 20)),
    "purple": ((128, 0, 128), (130, 60, 180), (160, 90, 220), (80, 20, 120)),
    "pink": ((255, 192, 203), (255, 105, 180), (240, 140, 190), (255, 0, 255)),
    "cyan": ((0, 255, 255), (30, 200, 210), (0, 160, 170)),
    "white": ((255, 255, 255), (240, 240, 240)),
    "black": ((0, 0, 0), (20, 20, 20)),
    "grey": ((128, 128, 128), (190, 190, 190), (80, 80, 80)),
    "brown": ((139, 69, 19), (120, 80, 40), (160, 110, 60), (90, 50, 20)),
}


def _lab(rgb: tuple[int, int, int]) -> tuple[float, float, float]:
    """sRGB -> CIELAB (D65); distances there roughly match how people name colours."""

    def lin(c: float) -> float:
        c /= 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (lin(c) for c in rgb)
    x = (0.4124 * r + 0.3576 * g + 0.1805 * b) / 0.95047
    y = 0.2126 * r + 0.7152 * g + 0.0722 * b
    z = (0.0193 * r + 0.1192 * g + 0.9505 * b) / 1.08883

    def f(t: float) -> float:
        return t ** (1 / 3) if t > 0.008856 else 7.787 * t + 16 / 116

    fx, fy, fz = f(x), f(y), f(z)
    return 116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)


_PALETTE_LAB = [(name, _lab(rgb)) for name, reps in _PALETTE.items() for rgb in reps]


@lru_cache(maxsize=4096)
def colour_name(rgb: tuple[int, int, int]) -> str:
    """Nearest name from the fixed palette (red, green, blue, yellow, orange, purple, pink, cyan,
    white, black, grey, brown)."""
    lab = _lab(tuple(int(c) for c in rgb[:3]))  # type: ignore[arg-type]
    return min(_PALETTE_LAB, key=lambda item: math.dist(lab, item[1]))[0]


def _to_rgb(img: Image.Image) -> Image.Image:
    # composite transparency over white so a transparent background is not read as black
    if img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img.convert("RGB")


def _buckets(small: Image.Image) -> dict[tuple[int, int, int], list[int]]:
    """Colours quantised to 3 bits a channel: bucket -> [count, sum r, sum g, sum b]."""
    buckets: dict[tuple[int, int, int], list[int]] = {}
    for count, (r, g, b) in small.getcolors(small.width * small.height) or []:
        acc = buckets.setdefault((r >> 5, g >> 5, b >> 5), [0, 0, 0, 0])
        acc[0] += count
        acc[1] += r * count
        acc[2] += g * count
        acc[3] += b * count
    return buckets


def _mean(acc: list[int]) -> tuple[int, int, int]:
    n, rs, gs, bs = acc
    return round(rs / n), round(gs / n), round(bs / n)


def _analyse(img: Image.Image) -> tuple[tuple[int, int, int], tuple[int, int, int] | None]:
    """(dominant colour, subject colour or None). The subject is the main colour that is not the
    background, when the image has a uniform border (a product photo on a plain backdrop)."""
    w, h = img.size
    scale = min(1.0, 64 / max(w, h))
    # NEAREST keeps real pixel colours (no blended edge colours) so solid areas stay exact
    small = img.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.NEAREST)
    buckets = _buckets(small)
    ranked = sorted(buckets.items(), key=lambda kv: kv[1][0], reverse=True)
    dominant = _mean(ranked[0][1])
    sw, sh = small.size
    border = [small.getpixel((x, y)) for x in range(sw) for y in (0, sh - 1)]
    border += [small.getpixel((x, y)) for y in range(sh) for x in (0, sw - 1)]
    counts: dict[tuple[int, int, int], int] = {}
    for r, g, b in border:  # type: ignore[misc]
        key = (r >> 5, g >> 5, b >> 5)
        counts[key] = counts.get(key, 0) + 1
    background, n = max(counts.items(), key=lambda kv: kv[1])
    if n < 0.6 * len(border):
        return dominant, None
    total = sw * sh
    for key, acc in ranked:
        if key != background and acc[0] >= 0.05 * total:
            return dominant, _mean(acc)
    return dominant, None


def describe_image(data: bytes) -> dict[str, object]:
    """Decode with Pillow (decompression-bomb guard left on) and summarise what was received.

    Raises PIL.UnidentifiedImageError / OSError / Image.DecompressionBombError for bad input.
    """
    with Image.open(io.BytesIO(data)) as img:
        width, height = img.size
        fmt = img.format or "unknown"
        img.draft("RGB", (128, 128))  # JPEG: decode at reduced scale, the colour survives
        img.load()  # forces a full decode so truncated/corrupt data fails here
        rgb, subject = _analyse(_to_rgb(img))
    info: dict[str, object] = {
        "width": width,
        "height": height,
        "format": fmt,
        "dominant_rgb": rgb,
        "colour": colour_name(rgb),
    }
    if subject is not None:
        info["subject_rgb"], info["subject_colour"] = subject, colour_name(subject)
    return info


def image_tokens(width: int, height: int, detail: str = "auto") -> int:
    """OpenAI's vision token estimate: 85 for low detail, else 85 + 170 per 512px tile."""
    if detail == "low":
        return 85
    scale = min(1.0, 2048 / max(width, height))
    w, h = width * scale, height * scale
    scale = min(1.0, 768 / min(w, h))
    w, h = w * scale, h * scale
    return 85 + 170 * math.ceil(w / 512) * math.ceil(h / 512)


def prompt_colour(prompt: str, index: int) -> tuple[int, int, int]:
    """Deterministic, reasonably saturated background colour for a prompt and image index."""
    digest = hashlib.sha256(f"{index}\0{prompt}".encode()).digest()
    hue = digest[0] / 255
    sat = 0.45 + 0.4 * digest[1] / 255
    val = 0.55 + 0.4 * digest[2] / 255
    r, g, b = colorsys.hsv_to_rgb(hue, sat, val)
    return round(r * 255), round(g * 255), round(b * 255)


@lru_cache(maxsize=32)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except (ImportError, OSError):  # Pillow built without FreeType: fixed bitmap font
        return ImageFont.load_default()


@lru_cache(maxsize=256)  # benchmarks repeat prompts; a 1-bit PNG is only a few KB
def render_png(prompt: str, index: int, width: int, height: int) -> bytes:
    """A real PNG of exactly width x height: flat prompt-derived colour, "mmq simulator" drawn on it,
    and tEXt metadata (Software, prompt).

    It is a two-colour palette image, which Pillow writes at 1 bit per pixel: 5x faster to encode and
    far smaller than RGB at 1024x1024. Use .convert("RGB") to read pixel colours.
    """
    bg = prompt_colour(prompt, index)
    ink = (0, 0, 0) if sum(bg) > 384 else (255, 255, 255)
    img = Image.new("P", (width, height), 0)
    img.putpalette([*bg, *ink])
    draw = ImageDraw.Draw(img)
    font = _font(max(8, min(width // 9, height // 4)))
    left, top, right, bottom = draw.textbbox((0, 0), "mmq simulator", font=font)
    pos = ((width - (right - left)) / 2 - left, (height - (bottom - top)) / 2 - top)
    draw.text(pos, "mmq simulator", fill=1, font=font)
    info = PngInfo()
    info.add_text("Software", "mmq simulator")
    info.add_text("prompt", prompt[:200])  # non-Latin-1 prompts become iTXt (tEXt is Latin-1 only)
    buf = io.BytesIO()
    img.save(buf, "PNG", pnginfo=info)
    return buf.getvalue()
