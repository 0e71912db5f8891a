#!/usr/bin/env python3
"""Draws the nurse-station page's app icons (the web app manifest's, the
home-screen icon of a phone) as PNG files, with the standard library only.

    scripts/gen-icons.py          # rewrites gateway/src/http/assets/icons/*.png

The icon: the page's panel colour, full bleed, and the high-priority colour's
warning triangle with an exclamation mark, all inside the central circle of
80 % that a maskable icon keeps (a launcher may crop to any shape within it).
Edges are anti-aliased from signed distances, so one sample per pixel is
enough. The output is deterministic: running the script again rewrites the
same bytes, and the committed PNGs are its output.
"""

import math
import struct
import zlib
from pathlib import Path

SIZES = (192, 512)
OUT = Path(__file__).resolve().parent.parent / "gateway/src/http/assets/icons"

# style.css: --panel, --high, --bg.
PANEL = (0x1B, 0x22, 0x2C)
HIGH = (0xD5, 0x5E, 0x00)
INK = (0x10, 0x14, 0x1A)


def segment_distance(p, a, b):
    """Distance from point p to the segment a–b."""
    (px, py), (ax, ay), (bx, by) = p, a, b
    dx, dy = bx - ax, by - ay
    t = max(0.0, min(1.0, ((px - ax) * dx + (py - ay) * dy) / (dx * dx + dy * dy)))
    return math.hypot(px - ax - t * dx, py - ay - t * dy)


def polygon_sdf(p, points):
    """Signed distance to a convex polygon (negative inside)."""
    n = len(points)
    d = min(segment_distance(p, points[i], points[(i + 1) % n]) for i in range(n))
    inside = True
    for i in range(n):
        (ax, ay), (bx, by) = points[i], points[(i + 1) % n]
        # Points are listed clockwise in image coordinates (y down).
        if (bx - ax) * (p[1] - ay) - (by - ay) * (p[0] - ax) < 0:
            inside = False
            break
    return -d if inside else d


def shapes(size):
    """The shapes in pixels: (signed distance function, colour), back to front."""
    c = size / 2
    r = size * 0.35  # the triangle's corners lie on this circle (inside the safe 40 %)
    rounding = size * 0.035
    inner = r - rounding / math.cos(math.pi / 6) * 0.5
    tri = [
        (c + inner * math.cos(a), c + 0.05 * size + inner * math.sin(a))
        for a in (-math.pi / 2, math.pi / 6, 5 * math.pi / 6)
    ]
    bar_top, bar_bottom = (c, c - 0.085 * size), (c, c + 0.045 * size)
    dot = (c, c + 0.15 * size)
    return [
        (lambda p: polygon_sdf(p, tri) - rounding, HIGH),
        (lambda p: segment_distance(p, bar_top, bar_bottom) - 0.04 * size, INK),
        (lambda p: math.hypot(p[0] - dot[0], p[1] - dot[1]) - 0.042 * size, INK),
    ]


def render(size):
    layers = shapes(size)
    rows = []
    for y in range(size):
        row = bytearray([0])  # PNG filter type 0 (none)
        for x in range(size):
            colour = PANEL
            p = (x + 0.5, y + 0.5)
            for sdf, fill in layers:
                cover = max(0.0, min(1.0, 0.5 - sdf(p)))
                if cover > 0:
                    colour = tuple(round(b + (f - b) * cover) for b, f in zip(colour, fill))
            row.extend(colour)
        rows.append(bytes(row))
    return b"".join(rows)


def png(size, pixels):
    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)  # 8-bit RGB
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(pixels, 9))
        + chunk(b"IEND", b"")
    )


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    for size in SIZES:
        path = OUT / f"icon-{size}.png"
        path.write_bytes(png(size, render(size)))
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
