"""A small vectorised ray caster of analytic solids (numpy only), used for the synthetic data.

World frame: metres, z up, the table top is the plane z = 0. Camera frame: x right, y down,
z forward (pinhole, square pixels). Every primitive is intersected for a whole block of pixels at
once; only the pixels inside its projected bounding box are traced (no loop per pixel).

Bit-reproducible on every x86-64 (and any IEEE 754) CPU: the geometry uses only +, -, *, /, sqrt,
floor and rint, which IEEE 754 rounds exactly and numpy never fuses, so the result does not depend
on which SIMD kernels numpy, OpenBLAS or libm pick for the CPU. Hence no ``@``/``np.dot``/
``np.linalg.norm``/``np.einsum``/``np.convolve`` (BLAS kernels differ per CPU in summation order
and fused multiply-adds) and no ``np.sin``/``np.cos``/``np.tan`` (numpy's AVX-512 and AVX2 versions
and libm differ in the last bit): :func:`dot`, :func:`norm` and :func:`sin_cos` below replace them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# ---- exactly rounded arithmetic (see the module docstring)


def dot(a, b) -> np.ndarray:
    """``a @ b`` for ``a``'s last axis of length 3 (``b`` (3,) or (3, k)): three separately rounded
    products added left to right, so the same bits on every CPU. Dtypes promote as with ``@``."""
    a, b = np.asarray(a), np.asarray(b)
    if b.ndim == 1:
        return a[..., 0] * b[0] + a[..., 1] * b[1] + a[..., 2] * b[2]
    return a[..., 0, None] * b[0] + a[..., 1, None] * b[1] + a[..., 2, None] * b[2]


def norm(v) -> np.ndarray:
    """Euclidean length over the last axis (of length 2 or 3), exactly rounded steps."""
    v = np.asarray(v)
    sq = v[..., 0] * v[..., 0] + v[..., 1] * v[..., 1]
    return np.sqrt(sq + v[..., 2] * v[..., 2] if v.shape[-1] == 3 else sq)


_PIO2_HI, _PIO2_LO = 1.5707963267341256, 6.077100506506192e-11  # pi/2 split (fdlibm): k * _PIO2_HI is exact
_SIN = [(-1) ** i / float(np.prod(np.arange(2, 2 * i + 2))) for i in range(1, 8)]  # -1/3!, 1/5!, ..., -1/15!
_COS = [(-1) ** i / float(np.prod(np.arange(1, 2 * i + 1))) for i in range(1, 9)]  # -1/2!, 1/4!, ..., 1/16!


def _poly(r2, coefs):
    acc = coefs[-1]
    for c in reversed(coefs[:-1]):
        acc = acc * r2 + c
    return acc


def sin_cos(x):
    """(sin x, cos x) in float64 from +, -, *, rint only: reduction by pi/2 and Taylor series on
    [-pi/4, pi/4] (error below 1e-16 for |x| < 1e5); the same bits on every CPU, unlike np.sin.
    A scalar gives Python floats (the same arithmetic, without numpy's per-call cost)."""
    scalar = np.ndim(x) == 0
    x = float(x) if scalar else np.asarray(x, float)
    k = round(x * (2 / np.pi)) if scalar else np.rint(x * (2 / np.pi))  # both round half to even
    r = (x - k * _PIO2_HI) - k * _PIO2_LO
    r2 = r * r
    s = r + r * (r2 * _poly(r2, _SIN))
    c = 1.0 + r2 * _poly(r2, _COS)
    if scalar:
        return ((s, c), (c, -s), (-s, -c), (-c, s))[k % 4]
    q = np.mod(k, 4)
    sin = np.where(q == 0, s, np.where(q == 1, c, np.where(q == 2, -s, -c)))
    cos = np.where(q == 0, c, np.where(q == 1, -s, np.where(q == 2, -c, s)))
    return sin, cos


def sin(x) -> np.ndarray:
    return sin_cos(x)[0]


def cos(x) -> np.ndarray:
    return sin_cos(x)[1]


def radians(deg):
    return np.asarray(deg, float) * (np.pi / 180)


LIGHT = np.array([0.35, -0.45, 1.0]) / norm([0.35, -0.45, 1.0])
AMBIENT = 0.38
NEAR = 0.02
ROOM = (np.array([-2.6, -2.6, -0.76]), np.array([2.6, 2.6, 1.9]))  # the room box around the table


def rot_z(yaw: float) -> np.ndarray:
    s, c = sin_cos(yaw)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


@dataclass(frozen=True)
class Camera:
    """Pinhole camera; ``rotation`` columns are the camera's right, down and forward axes in world."""

    width: int
    height: int
    focal: float
    position: np.ndarray
    rotation: np.ndarray

    @classmethod
    def look_at(cls, position, target, width: int, height: int, fov_deg: float, roll: float = 0.0) -> Camera:
        """Camera at ``position`` looking at ``target``; ``fov_deg`` spans the longer image side."""
        position = np.asarray(position, float)
        forward = np.asarray(target, float) - position
        forward /= norm(forward)
        right = np.cross(forward, [0.0, 0.0, 1.0])
        right = right / norm(right) if norm(right) > 1e-9 else np.array([1.0, 0.0, 0.0])
        down = np.cross(forward, right)
        s, c = sin_cos(roll)
        right, down = c * right + s * down, -s * right + c * down
        half_s, half_c = sin_cos(radians(fov_deg) / 2)
        focal = 0.5 * max(width, height) * half_c / half_s
        return cls(width, height, float(focal), position, np.stack([right, down, forward], axis=1))

    def scaled(self, factor: float) -> Camera:
        """The same view at ``factor`` times the resolution."""
        width, height = max(1, round(self.width * factor)), max(1, round(self.height * factor))
        return Camera(width, height, self.focal * width / self.width, self.position, self.rotation)

    def directions(self) -> np.ndarray:
        """Unit world ray direction of every pixel centre, (H, W, 3) float32."""
        u = (np.arange(self.width) + 0.5 - self.width / 2) / self.focal
        v = (np.arange(self.height) + 0.5 - self.height / 2) / self.focal
        d = np.empty((self.height, self.width, 3))
        d[..., 0] = u[None, :]
        d[..., 1] = v[:, None]
        d[..., 2] = 1.0
        d /= norm(d)[..., None]
        return dot(d, self.rotation.T).astype(F)

    def pixel_boxes(self, corners: np.ndarray) -> np.ndarray:
        """Pixel rectangles (y0, y1, x0, x1) covering each set of world points (P, 8, 3);
        rows that fall outside the image are empty (y0 >= y1 or x0 >= x1)."""
        cam = dot(corners - self.position, self.rotation)
        z = cam[..., 2]
        safe = np.maximum(z, NEAR)
        x = cam[..., 0] / safe * self.focal + self.width / 2
        y = cam[..., 1] / safe * self.focal + self.height / 2
        box = np.stack([np.floor(y.min(1)) - 1, np.ceil(y.max(1)) + 1, np.floor(x.min(1)) - 1, np.ceil(x.max(1)) + 1], 1)
        limit = np.array([self.height, self.height, self.width, self.width])
        box = np.clip(box, 0, limit).astype(int)
        behind = np.any(z <= NEAR, axis=1)
        box[behind] = [0, self.height, 0, self.width]
        box[np.all(z <= NEAR, axis=1)] = 0
        return box


# ---- primitives, in a solid's local frame (float32): t(o, d) is the first hit distance per ray
# (inf where missed); normal(p) is the outward unit normal at surface points p ----

F = np.float32


def _vec(v) -> np.ndarray:
    return np.asarray(v, F)


def _safe(d: np.ndarray) -> np.ndarray:
    return np.where(np.abs(d) < 1e-12, F(1e-12), d)


def _sphere_t(o: np.ndarray, d: np.ndarray, centre: np.ndarray, radius: float) -> np.ndarray:
    oc = o - centre
    b = dot(d, oc)
    disc = b * b - (dot(oc, oc) - radius * radius)
    t = -b - np.sqrt(np.maximum(disc, 0))
    return np.where((disc >= 0) & (t > NEAR), t, np.inf)


class Box:
    """Axis-aligned box from corner ``lo`` to corner ``hi``."""

    def __init__(self, lo, hi):
        self.lo, self.hi = _vec(lo), _vec(hi)
        self.centre, self.half = (self.lo + self.hi) / 2, (self.hi - self.lo) / 2

    def bounds(self):
        return self.lo, self.hi

    def t(self, o, d):
        inv = 1.0 / _safe(d)
        t1, t2 = (self.lo - o) * inv, (self.hi - o) * inv
        t0, t1 = np.minimum(t1, t2).max(axis=1), np.maximum(t1, t2).min(axis=1)
        return np.where((t0 <= t1) & (t0 > NEAR), t0, np.inf)

    def normal(self, p):
        q = (p - self.centre) / self.half
        axis = np.argmax(np.abs(q), axis=1)
        n = np.zeros_like(p)
        rows = np.arange(len(p))
        n[rows, axis] = np.sign(q[rows, axis])
        return n


class Sphere:
    def __init__(self, centre, radius: float):
        self.centre, self.radius = _vec(centre), float(radius)

    def bounds(self):
        return self.centre - self.radius, self.centre + self.radius

    def t(self, o, d):
        return _sphere_t(o, d, self.centre, self.radius)

    def normal(self, p):
        return (p - self.centre) / self.radius


class Cylinder:
    """Solid cylinder from ``p0`` to ``p1``; ``rounded`` caps it with half spheres (a capsule)."""

    def __init__(self, p0, p1, radius: float, rounded: bool = False):
        self.p0, self.p1, self.radius, self.rounded = _vec(p0), _vec(p1), float(radius), rounded
        self.ba = self.p1 - self.p0
        self.length = float(norm(self.ba))
        self.axis = self.ba / self.length

    def bounds(self):
        return np.minimum(self.p0, self.p1) - self.radius, np.maximum(self.p0, self.p1) + self.radius

    def t(self, o, d):
        ba, oa, r2 = self.ba, o - self.p0, self.radius**2
        baba, baoa, oaoa = dot(ba, ba), dot(oa, ba), dot(oa, oa)
        bard, rdoa = dot(d, ba), dot(d, oa)
        a = baba - bard * bard
        b = baba * rdoa - baoa * bard
        h = b * b - a * (baba * oaoa - baoa * baoa - r2 * baba)
        hit = (h >= 0) & (a > 1e-12)
        h = np.sqrt(np.maximum(h, 0))
        t = (-b - h) / np.maximum(a, F(1e-12))
        y = baoa + t * bard
        body = hit & (y > 0) & (y < baba)
        if self.rounded:  # the cap sphere on the side the ray reached the axis
            low = y <= 0
            o1 = o - self.p1
            bc = np.where(low, rdoa, rdoa - bard)
            hc = bc * bc - np.where(low, oaoa - r2, dot(o1, o1) - r2)
            t_cap = -bc - np.sqrt(np.maximum(hc, 0))
            cap = hit & ~body & (hc >= 0)
        else:  # the flat cap plane on that side, inside the radius
            t_cap = (np.where(y < 0, 0.0, baba) - baoa) / _safe(bard)
            cap = hit & ~body & (np.abs(b + a * t_cap) < h)
        t = np.where(body, t, np.where(cap, t_cap, np.inf))
        return np.where(t > NEAR, t, np.inf)

    def normal(self, p):
        a, length = self.axis, self.length
        s = dot(p - self.p0, a)
        radial = (p - self.p0 - np.clip(s, 0, length)[:, None] * a) / self.radius
        if self.rounded:
            return radial
        eps = 1e-5 * max(length, self.radius)
        return np.where((s < eps)[:, None], -a, np.where((s > length - eps)[:, None], a, radial))


# ---- materials: solid procedural textures evaluated at local hit points ----


@dataclass(frozen=True)
class Material:
    colour: tuple[float, float, float]
    colour2: tuple[float, float, float] = (1.0, 1.0, 1.0)
    pattern: str = "plain"  # plain | stripes | checks | dots | wood | tiles
    scale: float = 0.02

    def albedo(self, p: np.ndarray) -> np.ndarray:
        c1, c2 = np.asarray(self.colour), np.asarray(self.colour2)
        s = self.scale
        if self.pattern == "plain":
            return np.broadcast_to(c1, p.shape)
        if self.pattern == "stripes":
            w = (np.floor((p[:, 0] + p[:, 2]) / s) % 2).astype(bool)
        elif self.pattern in ("checks", "tiles"):
            w = (np.floor(p[:, 0] / s) + np.floor(p[:, 1] / s) + np.floor(p[:, 2] / s)) % 2 == 1
            if self.pattern == "tiles":
                grout = (np.abs(((p[:, 0] / s) % 1) - 0.5) > 0.47) | (np.abs(((p[:, 1] / s) % 1) - 0.5) > 0.47)
                base = np.where(w[:, None], c1, 0.93 * c1)
                return np.where(grout[:, None], c2, base)
        elif self.pattern == "dots":
            q = (p / s) % 1.0 - 0.5
            w = norm(q) < 0.3
        elif self.pattern == "wood":
            g = 0.5 + 0.5 * sin(p[:, 1] / s + 2.5 * sin(p[:, 0] * 3.1) + 0.8 * sin(p[:, 0] * 17.0))
            return c1 + (c2 - c1) * g[:, None] ** 3
        else:
            raise ValueError(f"unknown pattern {self.pattern!r}")
        return np.where(w[:, None], c2, c1)


@dataclass
class Solid:
    """Primitives sharing one material and one pose (position + yaw about z) in the world."""

    parts: list
    material: Material
    position: np.ndarray = field(default_factory=lambda: np.zeros(3))
    yaw: float = 0.0

    def corners(self) -> np.ndarray:
        """The 8 world corners of a box around each part, (parts, 8, 3)."""
        bounds = np.array([part.bounds() for part in self.parts], float)
        lo, hi = bounds[:, 0], bounds[:, 1]
        local = np.where(_CORNERS[None], hi[:, None], lo[:, None])
        return dot(local, rot_z(self.yaw).T) + self.position

    def shade(self, part, origin: np.ndarray, d: np.ndarray, t: np.ndarray, rot: np.ndarray) -> np.ndarray:
        """Lambert-shaded colour (N, 3) where local rays ``d`` hit ``part`` at distances ``t``."""
        p = origin + t[:, None] * d
        lambert = np.maximum(dot(part.normal(p), dot(LIGHT, rot)), 0.0)
        return self.material.albedo(p) * (AMBIENT + (1 - AMBIENT) * lambert)[:, None]


_CORNERS = np.array([[x, y, z] for x in (0, 1) for y in (0, 1) for z in (0, 1)], bool)


@dataclass
class Frame:
    """A rendered image: colour (H, W, 3) float in [0, 1], depth, solid id per pixel, and each
    id's unoccluded pixel count (its silhouette rendered alone)."""

    colour: np.ndarray
    depth: np.ndarray
    ids: np.ndarray
    alone: dict[int, int] = field(default_factory=dict)

    def rgb(self) -> np.ndarray:
        return (np.clip(self.colour, 0, 1) * 255 + 0.5).astype(np.uint8)

    def copy(self) -> Frame:
        return Frame(self.colour.copy(), self.depth.copy(), self.ids.copy(), dict(self.alone))


ROOM_COLOURS = np.array(
    [  # wall x (low, high), wall y (low, high), ceiling
        [0.47, 0.5, 0.53],
        [0.61, 0.65, 0.68],
        [0.47, 0.45, 0.4],
        [0.62, 0.59, 0.53],
        [0.81, 0.81, 0.81],
    ],
    F,
)
FLOOR = Material((0.5, 0.45, 0.4), (0.32, 0.3, 0.27), "tiles", 0.4)


def room(origin: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distance and colour along rays ``d`` (N, 3) that hit nothing but the room around the table:
    tiled floor, two-tone walls, ceiling."""
    lo, hi = (_vec(x) for x in ROOM)
    o = _vec(origin)
    t_axis = (np.where(d > 0, hi, lo) - o) / _safe(d)
    axis = np.argmin(t_axis, axis=1)
    t = np.take_along_axis(t_axis, axis[:, None], 1)[:, 0]
    z = o[2] + t * d[:, 2]
    colour = ROOM_COLOURS[np.where(axis == 2, 4, 2 * axis + (z > 0.2))]
    floor = np.flatnonzero((axis == 2) & (d[:, 2] < 0))
    colour[floor] = 0.9 * FLOOR.albedo(o + t[floor, None] * d[floor])
    return t, colour


def render(
    camera: Camera,
    solids: dict[int, list[Solid]],
    base: Frame | None = None,
    dirs: np.ndarray | None = None,
    count_alone: bool = True,
) -> Frame:
    """Ray-cast ``solids`` ({id: [Solid, ...]}) over ``base`` with a depth test; without a
    ``base``, the room (id 0) fills the pixels that no solid covers.

    With ``count_alone``, ``Frame.alone[id]`` counts the pixels each id would cover with
    nothing in front of it. Only the pixels inside a part's projected box are traced.
    """
    dirs = camera.directions() if dirs is None else dirs
    if base is None:
        h, w = camera.height, camera.width
        frame = Frame(np.zeros((h, w, 3), F), np.full((h, w), np.inf, F), np.zeros((h, w), np.uint8))
    else:
        frame = base.copy()
    _trace(camera, solids, frame, dirs, count_alone)
    if base is None:
        empty = frame.depth == np.inf
        frame.depth[empty], frame.colour[empty] = room(camera.position, dirs[empty])
    return frame


def _trace(camera: Camera, solids: dict[int, list[Solid]], frame: Frame, dirs: np.ndarray, count_alone: bool) -> None:
    items = [(sid, solid) for sid, group in solids.items() for solid in group]
    if not items:
        return
    corners = np.concatenate([solid.corners() for _, solid in items])
    boxes = iter(camera.pixel_boxes(corners).tolist())
    alone = {sid: np.zeros((camera.height, camera.width), bool) for sid in solids} if count_alone else {}
    for sid, solid in items:
        rot = rot_z(solid.yaw)
        origin = dot(camera.position - solid.position, rot).astype(F)
        rot = rot.astype(F)
        for part in solid.parts:
            y0, y1, x0, x1 = next(boxes)
            if y0 >= y1 or x0 >= x1:
                continue
            d = dot(dirs[y0:y1, x0:x1].reshape(-1, 3), rot)
            t = part.t(origin, d).reshape(y1 - y0, x1 - x0)
            if count_alone:
                alone[sid][y0:y1, x0:x1] |= t < np.inf
            front = t < frame.depth[y0:y1, x0:x1]
            t = t[front]
            frame.depth[y0:y1, x0:x1][front] = t
            frame.ids[y0:y1, x0:x1][front] = sid
            frame.colour[y0:y1, x0:x1][front] = solid.shade(part, origin, d[front.reshape(-1)], t, rot)
    frame.alone.update({sid: int(a.sum()) for sid, a in alone.items()})
