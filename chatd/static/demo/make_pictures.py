#!/usr/bin/env python3
"""Draws the pictures of the mall's demo ads: 480x360 PNGs, one product each, over a soft card.

Only the standard library: shapes are signed distance functions (circles, ellipses, rounded
rectangles, capsules, polygons, and their unions, intersections and differences), filled with
anti-aliased edges, a little top-to-bottom shading and soft shadows; the PNG is written with zlib
and struct. Run it again after changing a drawing:

    python3 chatd/static/demo/make_pictures.py

It writes the PNGs beside itself (the names ads.csv refers to). chatd embeds them, so
`chatd mall demo` and `chatd quickstart --demo` work from an installed binary too.
"""

import math
import os
import struct
import sys
import zlib

W, H = 480, 360
HERE = os.path.dirname(os.path.abspath(__file__))
INF = 1e9


# --- colours ----------------------------------------------------------------------------------

def rgb(text):
    """'#rrggbb' as a tuple of floats."""
    return tuple(float(int(text[i:i + 2], 16)) for i in (1, 3, 5))


def mix(a, b, t):
    return tuple(a[i] + (b[i] - a[i]) * t for i in range(3))


def lighter(c, t):
    return mix(c, (255.0, 255.0, 255.0), t)


def darker(c, t):
    return mix(c, (0.0, 0.0, 0.0), t)


WHITE = (255.0, 255.0, 255.0)
BLACK = (0.0, 0.0, 0.0)


# --- shapes -----------------------------------------------------------------------------------

class Shape:
    """A signed distance function (negative inside) and a bounding box (x0, y0, x1, y1)."""

    def __init__(self, sdf, box):
        self.sdf = sdf
        self.box = box

    def __or__(self, other):
        a, b = self.sdf, other.sdf
        return Shape(lambda x, y: min(a(x, y), b(x, y)), union_box(self.box, other.box))

    def __and__(self, other):
        a, b = self.sdf, other.sdf
        return Shape(lambda x, y: max(a(x, y), b(x, y)), meet_box(self.box, other.box))

    def __sub__(self, other):
        a, b = self.sdf, other.sdf
        return Shape(lambda x, y: max(a(x, y), -b(x, y)), self.box)

    def rotated(self, degrees, cx, cy):
        """The shape turned by `degrees` (clockwise on screen) around (cx, cy)."""
        s, c = math.sin(math.radians(degrees)), math.cos(math.radians(degrees))
        f = self.sdf

        def sdf(x, y):
            dx, dy = x - cx, y - cy
            return f(cx + dx * c + dy * s, cy - dx * s + dy * c)

        x0, y0, x1, y1 = self.box
        corners = [(x0, y0), (x1, y0), (x0, y1), (x1, y1)]
        turned = [(cx + (px - cx) * c - (py - cy) * s, cy + (px - cx) * s + (py - cy) * c)
                  for px, py in corners]
        xs = [p[0] for p in turned]
        ys = [p[1] for p in turned]
        return Shape(sdf, (min(xs), min(ys), max(xs), max(ys)))


def union_box(a, b):
    return (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))


def meet_box(a, b):
    return (max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3]))


def circle(cx, cy, r):
    return Shape(lambda x, y: math.hypot(x - cx, y - cy) - r, (cx - r, cy - r, cx + r, cy + r))


def ellipse(cx, cy, rx, ry):
    def sdf(x, y):
        px, py = (x - cx) / rx, (y - cy) / ry
        k0 = math.hypot(px, py)
        k1 = math.hypot(px / rx, py / ry)
        return k0 * (k0 - 1.0) / k1 if k1 > 0 else -min(rx, ry)
    return Shape(sdf, (cx - rx, cy - ry, cx + rx, cy + ry))


def rrect(cx, cy, w, h, r):
    """A rectangle centred on (cx, cy), w by h, corners rounded by r."""
    hw, hh = w / 2.0, h / 2.0
    r = min(r, hw, hh)

    def sdf(x, y):
        qx = abs(x - cx) - hw + r
        qy = abs(y - cy) - hh + r
        return math.hypot(max(qx, 0.0), max(qy, 0.0)) + min(max(qx, qy), 0.0) - r
    return Shape(sdf, (cx - hw, cy - hh, cx + hw, cy + hh))


def capsule(ax, ay, bx, by, r):
    """A line from (ax, ay) to (bx, by) with round ends, r thick on each side."""
    dx, dy = bx - ax, by - ay
    length2 = dx * dx + dy * dy or 1e-9

    def sdf(x, y):
        t = max(0.0, min(1.0, ((x - ax) * dx + (y - ay) * dy) / length2))
        return math.hypot(x - ax - dx * t, y - ay - dy * t) - r
    return Shape(sdf, (min(ax, bx) - r, min(ay, by) - r, max(ax, bx) + r, max(ay, by) + r))


def polygon(points):
    n = len(points)

    def sdf(x, y):
        d = INF
        inside = False
        j = n - 1
        for i in range(n):
            xi, yi = points[i]
            xj, yj = points[j]
            ex, ey = xj - xi, yj - yi
            wx, wy = x - xi, y - yi
            t = max(0.0, min(1.0, (wx * ex + wy * ey) / ((ex * ex + ey * ey) or 1e-9)))
            d = min(d, math.hypot(wx - ex * t, wy - ey * t))
            if (yi > y) != (yj > y) and x < (xj - xi) * (y - yi) / ((yj - yi) or 1e-9) + xi:
                inside = not inside
            j = i
        return -d if inside else d
    xs = [p[0] for p in points]
    ys = [p[1] for p in points]
    return Shape(sdf, (min(xs), min(ys), max(xs), max(ys)))


def ring(cx, cy, r, width):
    return Shape(lambda x, y: abs(math.hypot(x - cx, y - cy) - r) - width / 2.0,
                 (cx - r - width, cy - r - width, cx + r + width, cy + r + width))


def above(y0):
    """Everything above the line y = y0 (for cutting arcs and bowls)."""
    return Shape(lambda x, y: y - y0, (-INF, -INF, INF, y0))


def below(y0):
    return Shape(lambda x, y: y0 - y, (-INF, y0, INF, INF))


def left_of(x0):
    return Shape(lambda x, y: x - x0, (-INF, -INF, x0, INF))


def right_of(x0):
    return Shape(lambda x, y: x0 - x, (x0, -INF, INF, INF))


# --- the canvas -------------------------------------------------------------------------------

class Canvas:
    def __init__(self, top, bottom, glow):
        """A vertical gradient from `top` to `bottom` with a soft round `glow` up right."""
        self.px = bytearray(W * H * 3)
        for y in range(H):
            c = mix(top, bottom, y / (H - 1))
            row = bytes(int(v + 0.5) for v in c) * W
            self.px[y * W * 3:(y + 1) * W * 3] = row
        self.fill(circle(400, 40, 150), glow, alpha=0.55, shade=0.0, soft=90.0)
        self.fill(circle(40, 380, 120), lighter(bottom, 0.35), alpha=0.5, shade=0.0, soft=80.0)

    def fill(self, shape, color, alpha=1.0, shade=0.16, soft=1.0):
        """Paints `shape` in `color`: lighter at its top, darker at its bottom by `shade`; edges
        fade over `soft` pixels (1: a crisp anti-aliased edge; more: a blur, for shadows)."""
        x0, y0, x1, y1 = shape.box
        pad = soft + 1.0
        xa, xb = max(0, int(x0 - pad)), min(W, int(math.ceil(x1 + pad)))
        ya, yb = max(0, int(y0 - pad)), min(H, int(math.ceil(y1 + pad)))
        top, bottom = lighter(color, shade), darker(color, shade)
        span = max(1.0, y1 - y0)
        sdf = shape.sdf
        px = self.px
        for y in range(ya, yb):
            t = min(1.0, max(0.0, (y - y0) / span))
            cr, cg, cb = mix(top, bottom, t)
            fy = y + 0.5
            base = y * W * 3
            for x in range(xa, xb):
                a = 0.5 - sdf(x + 0.5, fy) / soft
                if a <= 0.0:
                    continue
                if a > 1.0:
                    a = 1.0
                a *= alpha
                i = base + x * 3
                px[i] = int(px[i] + (cr - px[i]) * a + 0.5)
                px[i + 1] = int(px[i + 1] + (cg - px[i + 1]) * a + 0.5)
                px[i + 2] = int(px[i + 2] + (cb - px[i + 2]) * a + 0.5)

    def shadow(self, cx, cy, rx, ry=14.0, strength=0.2):
        self.fill(ellipse(cx, cy, rx, ry), (20.0, 30.0, 40.0), alpha=strength, shade=0.0, soft=16.0)

    def shine(self, shape, strength=0.3):
        self.fill(shape, WHITE, alpha=strength, shade=0.0, soft=3.0)

    def png(self):
        raw = bytearray()
        stride = W * 3
        prev = bytes(stride)
        for y in range(H):
            row = bytes(self.px[y * stride:(y + 1) * stride])
            sub = bytes((row[i] - (row[i - 3] if i >= 3 else 0)) & 0xFF for i in range(stride))
            up = bytes((row[i] - prev[i]) & 0xFF for i in range(stride))
            best = min(((0, row), (1, sub), (2, up)),
                       key=lambda c: sum(b if b < 128 else 256 - b for b in c[1]))
            raw.append(best[0])
            raw += best[1]
            prev = row

        def chunk(kind, data):
            body = kind + data
            return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)
        header = struct.pack(">IIBBBBB", W, H, 8, 2, 0, 0, 0)
        return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
                + chunk(b"IDAT", zlib.compress(bytes(raw), 9)) + chunk(b"IEND", b""))


def card(top, bottom, glow="#ffffff"):
    return Canvas(rgb(top), rgb(bottom), rgb(glow))


# --- the products -----------------------------------------------------------------------------

def teapot(body, bg):
    c = card(*bg)
    c.shadow(240, 302, 130)
    b = rgb(body)
    c.fill(ring(240, 175, 78, 11) & above(175), darker(b, 0.25))
    c.fill(capsule(162, 172, 174, 196, 5.5), darker(b, 0.25))
    c.fill(capsule(318, 172, 306, 196, 5.5), darker(b, 0.25))
    c.fill(polygon([(300, 240), (352, 188), (378, 176), (386, 186), (362, 204), (326, 266)]), b)
    c.fill(polygon([(176, 214), (140, 196), (132, 206), (168, 236)]), darker(b, 0.1))
    c.fill(ellipse(240, 238, 108, 68), b, shade=0.22)
    for row, y in enumerate(range(196, 290, 16)):
        for x in range(148 + (row % 2) * 9, 336, 18):
            if ((x - 240) / 104.0) ** 2 + ((y - 238) / 64.0) ** 2 < 0.86:
                c.fill(circle(x, y, 3.2), lighter(b, 0.22), alpha=0.7, shade=0.0)
    c.fill(ellipse(240, 176, 52, 13), darker(b, 0.2), shade=0.05)
    c.fill(circle(240, 160, 10), darker(b, 0.3))
    c.shine(ellipse(196, 212, 30, 12).rotated(-20, 196, 212), 0.28)
    return c


def mugs(bg):
    c = card(*bg)
    c.shadow(240, 300, 150)
    for cx, color in ((185, "#f97316"), (300, "#2563eb")):
        m = rgb(color)
        c.fill(ring(cx + 58, 226, 26, 12) & right_of(cx + 40), darker(m, 0.1))
        c.fill(rrect(cx, 232, 110, 130, 18), m, shade=0.2)
        c.fill(ellipse(cx, 170, 55, 10), darker(m, 0.35), shade=0.0)
        c.fill(rrect(cx, 236, 110, 16, 2), lighter(m, 0.35), alpha=0.8, shade=0.0)
        c.shine(rrect(cx - 36, 232, 12, 90, 6), 0.25)
        for k in range(3):
            x = cx - 18 + k * 18
            points = [(x + 6 * math.sin(j * 0.9 + k), 152 - j * 8) for j in range(8)]
            for j in range(7):
                (ax, ay), (bx, by) = points[j], points[j + 1]
                c.fill(capsule(ax, ay, bx, by, 2.6), WHITE, alpha=0.6 - j * 0.07, shade=0.0)
    return c


def pot(bg):
    c = card(*bg)
    c.shadow(240, 300, 150)
    p = rgb("#dc2626")
    c.fill(capsule(112, 214, 150, 214, 10), darker(p, 0.35))
    c.fill(capsule(330, 214, 368, 214, 10), darker(p, 0.35))
    c.fill(rrect(240, 240, 220, 110, 26), p, shade=0.2)
    c.fill(rrect(240, 188, 232, 16, 8), darker(p, 0.1))
    c.fill(ellipse(240, 176, 112, 20), lighter(p, 0.1))
    c.fill(rrect(240, 158, 44, 16, 8), rgb("#1f2937"))
    c.shine(rrect(170, 240, 22, 70, 11), 0.25)
    return c


def lamp(bg):
    c = card(*bg)
    c.fill(circle(240, 130, 120), rgb("#fde68a"), alpha=0.45, shade=0.0, soft=70.0)
    c.shadow(240, 306, 95)
    c.fill(capsule(240, 170, 240, 286, 7), rgb("#a16207"))
    c.fill(ellipse(240, 292, 70, 14), rgb("#78350f"))
    c.fill(polygon([(180, 80), (300, 80), (340, 176), (140, 176)]), rgb("#fef3c7"), shade=0.12)
    c.fill(rrect(240, 176, 200, 6, 3), rgb("#f59e0b"))
    c.fill(rrect(240, 82, 120, 6, 3), rgb("#f59e0b"))
    return c


def clock(bg):
    c = card(*bg)
    c.shadow(240, 320, 90, 10, 0.16)
    c.fill(circle(240, 180, 120), rgb("#334155"), shade=0.15)
    c.fill(circle(240, 180, 104), rgb("#f8fafc"), shade=0.04)
    for h in range(12):
        a = math.radians(h * 30)
        r0 = 86 if h % 3 else 76
        c.fill(capsule(240 + r0 * math.sin(a), 180 - r0 * math.cos(a),
                       240 + 94 * math.sin(a), 180 - 94 * math.cos(a), 3 if h % 3 else 4.5),
               rgb("#334155"), shade=0.0)
    c.fill(capsule(240, 180, 240 + 50 * math.sin(math.radians(300)), 180 - 50 * math.cos(math.radians(300)), 6), rgb("#0f172a"), shade=0.0)
    c.fill(capsule(240, 180, 240 + 78 * math.sin(math.radians(60)), 180 - 78 * math.cos(math.radians(60)), 4), rgb("#0f172a"), shade=0.0)
    c.fill(capsule(240, 180, 240 + 88 * math.sin(math.radians(200)), 180 - 88 * math.cos(math.radians(200)), 1.6), rgb("#dc2626"), shade=0.0)
    c.fill(circle(240, 180, 8), rgb("#dc2626"))
    return c


def blanket(bg):
    c = card(*bg)
    c.shadow(240, 300, 160)
    colors = ["#64748b", "#b45309", "#0f766e"]
    for k, color in enumerate(colors):
        y = 262 - k * 46
        b = rgb(color)
        c.fill(rrect(240, y, 300 - k * 12, 50, 20), b, shade=0.14)
        for s in range(-120 + k * 6, 121 - k * 6, 40):
            c.fill(rrect(240 + s, y, 10, 46, 3), lighter(b, 0.3), alpha=0.7, shade=0.0)
    for x in range(100, 381, 12):
        c.fill(capsule(x, 287, x, 298, 2.2), rgb("#475569"), shade=0.0)
    return c


def tea_cup(bg):
    c = card(*bg)
    celadon = rgb("#8fbfa8")
    c.shadow(240, 296, 150)
    c.fill(ellipse(240, 280, 150, 24), lighter(celadon, 0.15))
    c.fill(ellipse(240, 276, 118, 15), darker(celadon, 0.08), shade=0.0)
    c.fill(rrect(240, 262, 64, 20, 6), darker(celadon, 0.12))
    c.fill(ellipse(240, 170, 110, 96) & below(170), celadon, shade=0.2)
    c.fill(ellipse(240, 170, 110, 22), darker(celadon, 0.25), shade=0.0)
    c.fill(ellipse(240, 174, 96, 15), rgb("#c2a878"), shade=0.0)
    for k in range(5):
        x = 170 + k * 35
        c.fill(ellipse(x, 220, 9, 22).rotated(-20 + k * 10, x, 220), lighter(celadon, 0.3), alpha=0.6, shade=0.0)
    c.shine(ellipse(176, 210, 14, 30).rotated(20, 176, 210), 0.3)
    return c


def backpack(body, bg):
    c = card(*bg)
    c.shadow(240, 306, 110)
    b = rgb(body)
    c.fill(ring(240, 96, 26, 10) & above(100), darker(b, 0.35))
    c.fill(rrect(240, 196, 180, 216, 48), b, shade=0.18)
    c.fill(rrect(240, 246, 130, 90, 28), darker(b, 0.15), shade=0.1)
    c.fill(capsule(188, 214, 292, 214, 2.5), darker(b, 0.45), shade=0.0)
    c.fill(rrect(240, 150, 120, 8, 4), darker(b, 0.3), shade=0.0)
    c.fill(rrect(300, 214, 10, 18, 3), rgb("#e5e7eb"), shade=0.0)
    c.fill(rrect(162, 230, 22, 130, 10), darker(b, 0.28))
    c.fill(rrect(318, 230, 22, 130, 10), darker(b, 0.28))
    c.shine(rrect(190, 170, 16, 80, 8), 0.18)
    return c


def tent(bg):
    c = card(*bg)
    c.fill(rrect(240, 310, 480, 100, 0), rgb("#86efac"), alpha=0.5, shade=0.0)
    c.shadow(240, 296, 170, 12)
    c.fill(polygon([(240, 84), (392, 290), (88, 290)]), rgb("#ea580c"), shade=0.15)
    c.fill(polygon([(240, 84), (392, 290), (300, 290)]), rgb("#c2410c"), shade=0.1)
    c.fill(polygon([(240, 170), (286, 290), (194, 290)]), rgb("#431407"), shade=0.05)
    c.fill(capsule(240, 84, 240, 62, 3), rgb("#57534e"))
    c.fill(polygon([(243, 60), (272, 68), (243, 76)]), rgb("#facc15"))
    c.fill(capsule(88, 290, 60, 300, 2), rgb("#57534e"), shade=0.0)
    c.fill(capsule(392, 290, 420, 300, 2), rgb("#57534e"), shade=0.0)
    return c


def bottle(body, bg):
    c = card(*bg)
    c.shadow(240, 306, 70)
    b = rgb(body)
    c.fill(rrect(240, 200, 110, 200, 34), b, shade=0.22)
    c.fill(rrect(240, 98, 74, 24, 8), darker(b, 0.2))
    c.fill(rrect(240, 76, 86, 34, 12), rgb("#1f2937"))
    c.fill(ring(240, 58, 16, 7) & above(62), rgb("#1f2937"))
    c.fill(rrect(240, 214, 110, 26, 0), lighter(b, 0.4), alpha=0.85, shade=0.0)
    c.shine(rrect(206, 200, 14, 150, 7), 0.3)
    return c


def lantern(bg):
    c = card(*bg)
    c.fill(circle(240, 196, 110), rgb("#fde047"), alpha=0.5, shade=0.0, soft=60.0)
    c.shadow(240, 304, 85)
    dark = rgb("#14532d")
    c.fill(ring(240, 86, 30, 8) & above(92), rgb("#44403c"))
    c.fill(polygon([(190, 120), (290, 120), (270, 96), (210, 96)]), dark)
    c.fill(rrect(240, 200, 96, 140, 16), rgb("#fef9c3"), shade=0.05)
    c.fill(circle(240, 210, 26), rgb("#facc15"), alpha=0.9, shade=0.0, soft=14.0)
    c.fill(capsule(240, 236, 240, 212, 4), rgb("#f97316"), shade=0.0)
    for x in (196, 284):
        c.fill(capsule(x, 130, x, 270, 5), dark, shade=0.0)
    c.fill(rrect(240, 126, 108, 14, 6), dark)
    c.fill(rrect(240, 280, 118, 24, 8), dark)
    return c


def sunglasses(bg):
    c = card(*bg)
    c.shadow(240, 276, 160, 10, 0.14)
    frame = rgb("#111827")
    c.fill(capsule(118, 170, 60, 150, 5), frame)
    c.fill(capsule(362, 170, 420, 150, 5), frame)
    c.fill(ring(240, 190, 28, 9) & above(186), frame)
    for cx in (170, 310):
        c.fill(rrect(cx, 196, 124, 96, 40), frame)
        c.fill(rrect(cx, 196, 106, 80, 32), rgb("#0e7490"), shade=0.3)
        c.shine(ellipse(cx - 24, 176, 22, 9).rotated(-25, cx - 24, 176), 0.35)
    return c


def compass(bg):
    c = card(*bg)
    c.shadow(240, 300, 110)
    brass = rgb("#b45309")
    c.fill(ring(240, 70, 16, 8), brass)
    c.fill(circle(240, 186, 112), brass, shade=0.2)
    c.fill(circle(240, 186, 96), rgb("#fffbeb"), shade=0.05)
    for k in range(16):
        a = math.radians(k * 22.5)
        r0 = 82 if k % 4 else 70
        c.fill(capsule(240 + r0 * math.sin(a), 186 - r0 * math.cos(a), 240 + 90 * math.sin(a), 186 - 90 * math.cos(a), 2 if k % 4 else 3), rgb("#78350f"), shade=0.0)
    needle = polygon([(240, 110), (256, 186), (240, 262), (224, 186)]).rotated(30, 240, 186)
    c.fill(needle & polygon([(0, 0), (480, 0), (480, 186 + 0), (0, 186)]).rotated(30, 240, 186), rgb("#dc2626"), shade=0.1)
    c.fill(needle - polygon([(0, 0), (480, 0), (480, 186), (0, 186)]).rotated(30, 240, 186), rgb("#334155"), shade=0.1)
    c.fill(circle(240, 186, 8), brass)
    return c


def headphones(body, bg):
    c = card(*bg)
    c.shadow(240, 304, 150)
    b = rgb(body)
    c.fill(ring(240, 190, 118, 18) & above(200), b, shade=0.2)
    c.fill(ring(240, 190, 118, 8) & above(200), darker(b, 0.25), alpha=0.6, shade=0.0)
    for cx in (132, 348):
        c.fill(rrect(cx, 232, 62, 116, 28), b, shade=0.2)
        inner = 156 if cx < 240 else 324
        c.fill(rrect(inner, 232, 22, 100, 11), darker(b, 0.4), shade=0.0)
        c.shine(rrect(cx - 10, 208, 10, 50, 5), 0.25)
    return c


def smartwatch(bg):
    c = card(*bg)
    c.shadow(240, 320, 90, 10, 0.16)
    strap = rgb("#1e293b")
    c.fill(rrect(240, 60, 96, 110, 18), strap)
    c.fill(rrect(240, 300, 96, 110, 18), strap)
    for y in (272, 294, 316):
        c.fill(circle(240, y, 4), darker(strap, 0.5), shade=0.0)
    c.fill(rrect(240, 180, 150, 170, 44), rgb("#94a3b8"), shade=0.2)
    c.fill(rrect(240, 180, 130, 150, 36), rgb("#020617"), shade=0.0)
    c.fill(rrect(318, 156, 10, 30, 5), rgb("#64748b"))
    for r, col, end in ((50, "#ef4444", 300), (38, "#84cc16", 220), (26, "#22d3ee", 150)):
        c.fill(ring(240, 180, r, 9), darker(rgb(col), 0.65), shade=0.0)
        arc = ring(240, 180, r, 9) & Shape(
            lambda x, y, e=end: -1.0 if (math.degrees(math.atan2(x - 240, -(y - 180))) % 360) < e else 1.0,
            (0, 0, W, H))
        c.fill(arc, rgb(col), shade=0.0)
    return c


def speaker(bg):
    c = card(*bg)
    c.shadow(240, 306, 120)
    b = rgb("#4338ca")
    c.fill(rrect(240, 190, 220, 220, 70), b, shade=0.22)
    for y in range(120, 264, 14):
        for x in range(160, 322, 14):
            if ((x - 240) / 90.0) ** 2 + ((y - 194) / 82.0) ** 2 < 1:
                c.fill(circle(x, y, 3.4), darker(b, 0.45), shade=0.0)
    c.fill(rrect(240, 92, 120, 14, 7), lighter(b, 0.25))
    for x in (214, 240, 266):
        c.fill(circle(x, 92, 4), WHITE, alpha=0.85, shade=0.0)
    c.shine(rrect(156, 180, 14, 110, 7), 0.2)
    return c


def controller(bg):
    c = card(*bg)
    c.shadow(240, 290, 170)
    body = rgb("#e11d48")
    shape = rrect(240, 180, 250, 110, 50) | circle(150, 218, 56) | circle(330, 218, 56)
    c.fill(shape, body, shade=0.18)
    c.fill(rrect(160, 182, 58, 18, 4), rgb("#1f2937"))
    c.fill(rrect(160, 182, 18, 58, 4), rgb("#1f2937"))
    for (x, y, col) in ((318, 162, "#22c55e"), (342, 184, "#3b82f6"), (294, 184, "#facc15"), (318, 206, "#f8fafc")):
        c.fill(circle(x, y, 11), rgb(col), shade=0.15)
    c.fill(circle(208, 230, 18), darker(body, 0.5))
    c.fill(circle(272, 230, 18), darker(body, 0.5))
    c.fill(rrect(240, 160, 30, 8, 4), darker(body, 0.4), shade=0.0)
    c.shine(rrect(240, 140, 160, 10, 5), 0.2)
    return c


def camera(bg):
    c = card(*bg)
    c.shadow(240, 300, 160)
    body = rgb("#334155")
    c.fill(polygon([(190, 92), (290, 92), (306, 122), (174, 122)]), darker(body, 0.2))
    c.fill(rrect(240, 200, 300, 170, 22), body, shade=0.16)
    c.fill(rrect(240, 200, 300, 40, 0), rgb("#a8a29e"), alpha=0.9, shade=0.0)
    c.fill(circle(240, 200, 70), rgb("#e2e8f0"), shade=0.15)
    c.fill(circle(240, 200, 56), rgb("#0f172a"), shade=0.0)
    c.fill(circle(240, 200, 36), rgb("#1e3a8a"), shade=0.3)
    c.shine(circle(224, 184, 12), 0.55)
    c.fill(rrect(140, 138, 36, 16, 4), rgb("#fef3c7"))
    c.fill(rrect(334, 104, 36, 14, 6), rgb("#dc2626"))
    return c


def ereader(bg):
    c = card(*bg)
    c.shadow(240, 320, 100, 10, 0.16)
    c.fill(rrect(240, 180, 190, 260, 20), rgb("#1f2937"), shade=0.12)
    c.fill(rrect(240, 172, 158, 210, 6), rgb("#f5f5f4"), shade=0.02)
    c.fill(rrect(240, 92, 100, 10, 3), rgb("#57534e"), shade=0.0)
    for k in range(11):
        y = 118 + k * 15
        w = 130 if k % 4 != 3 else 80
        c.fill(rrect(240 - (130 - w) / 2, y, w, 5, 2.5), rgb("#a8a29e"), shade=0.0)
    c.fill(rrect(240, 294, 40, 6, 3), rgb("#4b5563"), shade=0.0)
    return c


def succulent(bg):
    c = card(*bg)
    c.shadow(240, 304, 100)
    clay = rgb("#c2410c")
    c.fill(polygon([(170, 200), (310, 200), (290, 296), (190, 296)]), clay, shade=0.2)
    c.fill(rrect(240, 204, 160, 28, 6), lighter(clay, 0.1))
    greens = ["#15803d", "#16a34a", "#22c55e", "#4ade80"]
    for ring_no, (r, n, length) in enumerate(((0, 8, 62), (0, 7, 48), (0, 6, 34), (0, 5, 20))):
        for k in range(n):
            a = k * 360.0 / n + ring_no * 23
            leaf = ellipse(240, 184 - length / 2, 15 - ring_no * 2, length / 2 + 6).rotated(a, 240, 184)
            c.fill(leaf, rgb(greens[ring_no]), shade=0.12)
    return c


def watering_can(bg):
    c = card(*bg)
    c.shadow(230, 304, 140)
    b = rgb("#0e7490")
    c.fill(capsule(310, 240, 396, 136, 9), darker(b, 0.1))
    c.fill(ellipse(402, 128, 18, 10).rotated(-50, 402, 128), darker(b, 0.25))
    c.fill(ring(200, 168, 62, 14) & above(178), darker(b, 0.2))
    c.fill(rrect(210, 232, 180, 130, 30), b, shade=0.2)
    c.fill(rrect(210, 176, 190, 14, 7), darker(b, 0.15))
    c.shine(rrect(148, 232, 16, 90, 8), 0.22)
    for k in range(6):
        c.fill(circle(424 + k * 6, 150 + k * 14, 3.2), rgb("#7dd3fc"), alpha=0.8, shade=0.0)
    return c


def seedlings(bg):
    c = card(*bg)
    c.shadow(240, 300, 180)
    c.fill(polygon([(70, 226), (410, 226), (390, 292), (90, 292)]), rgb("#1f2937"), shade=0.1)
    for k in range(5):
        x = 110 + k * 65
        c.fill(rrect(x, 236, 52, 20, 6), rgb("#713f12"), shade=0.0)
        c.fill(capsule(x, 232, x + (k % 2) * 4 - 2, 170 - (k % 3) * 12, 3.5), rgb("#65a30d"), shade=0.0)
        top = 170 - (k % 3) * 12
        c.fill(ellipse(x - 16, top + 2, 18, 9).rotated(-25, x - 16, top + 2), rgb("#84cc16"), shade=0.1)
        c.fill(ellipse(x + 16, top - 4, 18, 9).rotated(25, x + 16, top - 4), rgb("#4d7c0f"), shade=0.1)
    return c


def birdhouse(bg):
    c = card(*bg)
    c.shadow(240, 322, 60, 10, 0.18)
    c.fill(rrect(240, 300, 18, 70, 4), rgb("#78350f"))
    c.fill(rrect(240, 190, 150, 150, 8), rgb("#fbbf24"), shade=0.15)
    c.fill(polygon([(240, 56), (340, 130), (326, 142), (240, 80), (154, 142), (140, 130)]), rgb("#b91c1c"), shade=0.1)
    c.fill(polygon([(240, 80), (326, 142), (154, 142)]), rgb("#fbbf24"), shade=0.0)
    c.fill(circle(240, 180, 26), rgb("#451a03"), shade=0.0)
    c.fill(capsule(240, 232, 240, 250, 5), rgb("#78350f"), shade=0.0)
    c.fill(circle(336, 94, 18), rgb("#0ea5e9"))
    c.fill(circle(350, 84, 10), rgb("#0ea5e9"))
    c.fill(polygon([(358, 82), (372, 86), (358, 90)]), rgb("#f59e0b"))
    c.fill(circle(352, 82, 2.5), BLACK, shade=0.0)
    return c


def bonsai(bg):
    c = card(*bg)
    c.shadow(240, 306, 150)
    c.fill(rrect(240, 280, 220, 40, 10), rgb("#1e3a8a"), shade=0.15)
    c.fill(rrect(240, 258, 240, 12, 6), rgb("#1e40af"))
    bark = rgb("#57534e")
    c.fill(polygon([(224, 256), (258, 256), (248, 214), (268, 170), (250, 160), (232, 204)]), bark, shade=0.1)
    c.fill(capsule(258, 178, 318, 150, 7), bark, shade=0.0)
    c.fill(capsule(246, 176, 180, 136, 7), bark, shade=0.0)
    for (x, y, r, col) in ((180, 124, 44, "#166534"), (320, 136, 40, "#166534"), (256, 102, 50, "#15803d"),
                           (212, 96, 34, "#16a34a"), (300, 100, 30, "#16a34a"), (160, 112, 24, "#22c55e")):
        c.fill(circle(x, y, r), rgb(col), shade=0.15)
    return c


BACKGROUNDS = {
    "sand": ("#fdf6ec", "#f3e3c9", "#ffffff"),
    "mint": ("#eefbf6", "#cdeee0", "#ffffff"),
    "sky": ("#eef6fe", "#cfe3f8", "#ffffff"),
    "rose": ("#fff1f3", "#f9d3da", "#ffffff"),
    "lilac": ("#f5f2ff", "#ddd3fa", "#ffffff"),
    "slate": ("#f1f4f8", "#d5dde7", "#ffffff"),
    "peach": ("#fff5ed", "#fcd9bd", "#fffaf5"),
    "leaf": ("#f3faec", "#d6ecc0", "#ffffff"),
}

PICTURES = {
    "teapot-iron.png": lambda: teapot("#374151", BACKGROUNDS["sand"]),
    "teapot-red.png": lambda: teapot("#b91c1c", BACKGROUNDS["rose"]),
    "mugs.png": lambda: mugs(BACKGROUNDS["sky"]),
    "pot.png": lambda: pot(BACKGROUNDS["slate"]),
    "lamp.png": lambda: lamp(BACKGROUNDS["lilac"]),
    "clock.png": lambda: clock(BACKGROUNDS["mint"]),
    "blanket.png": lambda: blanket(BACKGROUNDS["peach"]),
    "tea-cup.png": lambda: tea_cup(BACKGROUNDS["sand"]),
    "backpack-green.png": lambda: backpack("#15803d", BACKGROUNDS["mint"]),
    "backpack-orange.png": lambda: backpack("#ea580c", BACKGROUNDS["peach"]),
    "tent.png": lambda: tent(BACKGROUNDS["sky"]),
    "bottle-teal.png": lambda: bottle("#0d9488", BACKGROUNDS["mint"]),
    "bottle-plum.png": lambda: bottle("#7e22ce", BACKGROUNDS["lilac"]),
    "lantern.png": lambda: lantern(BACKGROUNDS["slate"]),
    "sunglasses.png": lambda: sunglasses(BACKGROUNDS["peach"]),
    "compass.png": lambda: compass(BACKGROUNDS["sand"]),
    "headphones-black.png": lambda: headphones("#1f2937", BACKGROUNDS["sky"]),
    "headphones-white.png": lambda: headphones("#e5e7eb", BACKGROUNDS["slate"]),
    "smartwatch.png": lambda: smartwatch(BACKGROUNDS["lilac"]),
    "speaker.png": lambda: speaker(BACKGROUNDS["rose"]),
    "controller.png": lambda: controller(BACKGROUNDS["slate"]),
    "camera.png": lambda: camera(BACKGROUNDS["peach"]),
    "ereader.png": lambda: ereader(BACKGROUNDS["sand"]),
    "succulent.png": lambda: succulent(BACKGROUNDS["leaf"]),
    "watering-can.png": lambda: watering_can(BACKGROUNDS["sky"]),
    "seedlings.png": lambda: seedlings(BACKGROUNDS["leaf"]),
    "birdhouse.png": lambda: birdhouse(BACKGROUNDS["mint"]),
    "bonsai.png": lambda: bonsai(BACKGROUNDS["rose"]),
}


def main(names):
    for name in names or sorted(PICTURES):
        data = PICTURES[name]().png()
        with open(os.path.join(HERE, name), "wb") as f:
            f.write(data)
        print(f"{name}: {len(data)} bytes")


if __name__ == "__main__":
    main(sys.argv[1:])
