"""One synthetic take: a table with a few objects in a room, one head-mounted ego camera
(``aria01_214-1``, square frames) whose pose follows the head (looking at the hands' work,
glancing away at some annotated frames) and fixed exo cameras ``cam01..`` (16:9) around the
table. Two hands move over the table, occlude objects and carry some of them to new places.
Everything is rendered by :mod:`omama.synthetic.render`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from omama.synthetic.render import Box, Camera, Cylinder, Frame, Material, Solid, Sphere, norm, radians, render, sin, sin_cos

FPS = 30
EGO_CAM = "aria01_214-1"
MIN_VISIBLE_PIXELS = 8
EGO_FOV = 72.0  # degrees; the real Aria RGB camera is wider (fisheye), objects would be tiny here
TASKS = {
    "Covid-19 Rapid Antigen Test": "covid",
    "Medical Checkup with Blood Pressure Monitor": "bloodpressure",
    "Oximeter": "oximeter",
    "Thermometer": "thermometer",
    "First Aid CPR": "cpr",
}
EXO_AIM = (0.38, 0.12)  # exo cameras aim at most this far off the table's centre in x, y (metres)
EXO_FOV = (30.0, 36.0)  # range of the exo cameras' vertical field of view (degrees)
SCREEN = (0.26, 0.02, 0.32)  # half width, half depth and height of the screen at the table's far edge (metres)
TABLE_X, TABLE_Y = 0.6, 0.4  # half sizes of the table top (metres)
HEAD = np.array([0.0, -0.6, 0.44])
SHOULDERS = np.array([[0.19, -0.72, 0.22], [-0.19, -0.72, 0.22]])  # right, left
REST = np.array([[0.2, -0.3, 0.07], [-0.2, -0.3, 0.07]])
SKIN = Material((0.86, 0.64, 0.52), (0.8, 0.58, 0.47), "plain")
PALETTE = [
    (0.85, 0.15, 0.12),
    (0.12, 0.45, 0.85),
    (0.15, 0.65, 0.25),
    (0.95, 0.75, 0.1),
    (0.55, 0.2, 0.7),
    (0.95, 0.45, 0.1),
    (0.1, 0.7, 0.7),
    (0.9, 0.3, 0.6),
    (0.25, 0.25, 0.3),
    (0.95, 0.95, 0.92),
]
PATTERNS = ("plain", "stripes", "checks", "dots")
OBJECT_SCALE = 1.4  # objects are a little larger than life so that they span a few feature patches
CLOTHES = Material((0.3, 0.36, 0.5), (0.25, 0.3, 0.42), "stripes", 0.05)


def _parts(kind: str) -> tuple[list, float]:
    """Primitives of one object kind in its local frame (resting on z = 0) and its height."""
    parts, height = _unit_parts(kind)
    k = OBJECT_SCALE
    scaled = []
    for p in parts:
        if isinstance(p, Box):
            scaled.append(Box(k * p.lo, k * p.hi))
        elif isinstance(p, Sphere):
            scaled.append(Sphere(k * p.centre, k * p.radius))
        else:
            scaled.append(Cylinder(k * p.p0, k * p.p1, k * p.radius, p.rounded))
    return scaled, k * height


def _unit_parts(kind: str) -> tuple[list, float]:
    if kind == "test tube":
        return [Cylinder((0, 0, 0.012), (0, 0, 0.13), 0.02, rounded=True)], 0.15
    if kind == "swab/stick":
        return [Cylinder((-0.09, 0, 0.014), (0.09, 0, 0.014), 0.014, rounded=True)], 0.03
    if kind == "bowl":
        return [Cylinder((0, 0, 0), (0, 0, 0.05), 0.075), Cylinder((0, 0, 0.05), (0, 0, 0.058), 0.082)], 0.06
    if kind == "test kit":
        return [Box((-0.07, -0.035, 0), (0.07, 0.035, 0.022)), Box((-0.02, -0.015, 0.022), (0.03, 0.015, 0.03))], 0.03
    if kind == "blood pressure monitor":
        return [Box((-0.07, -0.055, 0), (0.07, 0.055, 0.05)), Box((-0.07, -0.055, 0.05), (0.07, 0.0, 0.075))], 0.08
    if kind == "oximeter":
        return [Box((-0.035, -0.025, 0), (0.035, 0.025, 0.04)), Sphere((0.035, 0, 0.02), 0.02)], 0.04
    if kind == "thermometer":
        return [
            Box((-0.08, -0.014, 0), (0.06, 0.014, 0.022)),
            Cylinder((0.06, 0, 0.011), (0.1, 0, 0.011), 0.008, rounded=True),
        ], 0.025
    if kind == "bottle":
        return [
            Cylinder((0, 0, 0), (0, 0, 0.11), 0.036),
            Sphere((0, 0, 0.11), 0.036),
            Cylinder((0, 0, 0.13), (0, 0, 0.17), 0.014),
        ], 0.17
    if kind == "cup":
        return [Cylinder((0, 0, 0), (0, 0, 0.095), 0.042)], 0.1
    if kind == "ball":
        return [Sphere((0, 0, 0.045), 0.045)], 0.09
    if kind == "bandage":
        return [Cylinder((0, -0.04, 0.04), (0, 0.04, 0.04), 0.04)], 0.08
    if kind == "mask":
        return [Box((-0.08, -0.05, 0), (0.08, 0.05, 0.012))], 0.015
    raise KeyError(kind)


KINDS = [
    "test tube",
    "swab/stick",
    "bowl",
    "test kit",
    "blood pressure monitor",
    "oximeter",
    "thermometer",
    "bottle",
    "cup",
    "ball",
    "bandage",
    "mask",
]


@dataclass
class SceneObject:
    name: str
    kind: str
    material: Material
    parts: list
    height: float


# ---------------------------------------------------------------- scene layout and motion


def _smooth(u):
    u = np.clip(u, 0.0, 1.0)
    return u * u * (3 - 2 * u)


def _choose_objects(rng: np.random.Generator, index: int, count: int) -> list[SceneObject]:
    """Object kinds of take ``index``: even takes hold two identical bowls; "test tube" and
    "swab/stick" come early so small datasets still have names with a space and a "/"."""
    kinds = (["bowl", "bowl"] if index % 2 == 0 else []) + ["test tube", "swab/stick"]
    others = [k for k in KINDS if k not in kinds]
    kinds += [others[i] for i in rng.permutation(len(others))]
    if count > len(KINDS):
        raise ValueError(f"synthetic.objects is {count}; at most {len(KINDS)} objects per take")
    kinds = kinds[:count]
    colours = rng.permutation(len(PALETTE))
    seen: dict[str, int] = {}
    objects = []
    shared: dict[str, Material] = {}
    for i, kind in enumerate(kinds):
        if kind not in shared:
            c1, c2 = PALETTE[colours[i % len(PALETTE)]], PALETTE[colours[(i + 5) % len(PALETTE)]]
            shared[kind] = Material(c1, c2, PATTERNS[int(rng.integers(len(PATTERNS)))], float(rng.uniform(0.012, 0.025)))
        n = seen.get(kind, 0)
        seen[kind] = n + 1
        objects.append(SceneObject(f"{kind}_{n}", kind, shared[kind], *_parts(kind)))
    return objects


def _place(rng: np.random.Generator, taken: list[np.ndarray], clearance: float = 0.22) -> np.ndarray:
    """A free spot on the table top (seeded rejection sampling)."""
    best, best_gap = None, -1.0
    for _ in range(60):
        p = np.array([rng.uniform(-0.42, 0.42), rng.uniform(-0.18, 0.28), 0.0])
        gap = min((float(norm(p[:2] - q[:2])) for q in taken), default=np.inf)
        if gap >= clearance:
            return p
        if gap > best_gap:
            best, best_gap = p, gap
    return best


class Take:
    """One synthetic take: scene, motion of objects, hands and head, cameras; renders any frame."""

    def __init__(self, cfg: dict, index: int):
        self.index = index
        rng = np.random.default_rng([int(cfg["seed"]), index])
        self.frames = int(cfg["seconds"]) * FPS
        self.annotated = list(range(0, self.frames, FPS))
        self.task = list(TASKS)[int(rng.integers(len(TASKS)))]
        self.objects = _choose_objects(rng, index, int(cfg["objects"]))
        self.table = [
            Solid(
                [Box((-TABLE_X, -TABLE_Y, -0.035), (TABLE_X, TABLE_Y, 0.0))],
                Material((0.62, 0.45, 0.3), (0.45, 0.3, 0.18), "wood", 0.004),
            ),
            Solid(
                [
                    Box((x - 0.03, y - 0.03, -0.76), (x + 0.03, y + 0.03, -0.035))
                    for x in (-TABLE_X + 0.06, TABLE_X - 0.06)
                    for y in (-TABLE_Y + 0.06, TABLE_Y - 0.06)
                ],
                Material((0.35, 0.25, 0.17)),
            ),
        ]
        self.body = [
            Solid([Cylinder((0, -0.86, -0.35), (0, -0.86, 0.2), 0.17, rounded=True)], CLOTHES),
            Solid([Sphere(HEAD + [0, -0.06, 0.02], 0.1)], Material((0.25, 0.18, 0.12))),
        ]
        self._motion(rng)
        self._head(rng)
        self.ego_size = int(cfg["ego_size"])
        exo_h, exo_w = (int(v) for v in cfg["exo_size"])
        self.exo = {}
        n_exo = int(cfg["exo_cameras"])
        for k in range(n_exo):
            s_az, c_az = sin_cos(radians(-25 + 230 * (k + 0.5) / n_exo + rng.uniform(-12, 12)))
            dist, height = rng.uniform(1.05, 1.35), rng.uniform(0.65, 0.9)
            pos = [dist * c_az, 0.1 + dist * s_az, height]
            # Aimed off the table's centre with a narrower view: objects near the far side of the
            # table leave this camera's field of view (absent in exo, as in Ego-Exo4D).
            target = [rng.uniform(-EXO_AIM[0], EXO_AIM[0]), rng.uniform(-EXO_AIM[1], EXO_AIM[1]), -0.05]
            self.exo[f"cam{k + 1:02d}"] = Camera.look_at(pos, target, exo_w, exo_h, rng.uniform(*EXO_FOV))
        # A tall screen at the table's far edge: objects behind it are fully occluded in the exo
        # cameras that face it (the ego camera, behind the objects, sees past it).
        x = rng.uniform(-0.3, 0.3)
        self.table.append(
            Solid(
                [Box((x - SCREEN[0], 0.34 - SCREEN[1], 0.0), (x + SCREEN[0], 0.34 + SCREEN[1], SCREEN[2]))],
                Material((0.8, 0.8, 0.78), (0.7, 0.7, 0.68), "plain"),
            )
        )
        self.cameras = [EGO_CAM, *self.exo]
        self._static: dict[tuple[str, float], tuple[Frame, np.ndarray]] = {}
        self._still: dict[tuple[str, float], tuple[tuple, Frame]] = {}

    # -- motion

    def _motion(self, rng: np.random.Generator) -> None:
        """Object poses (frames, K, 3) and yaws, wrist positions (frames, 2, 3): hands reach an
        object, carry it to a free spot, and go back to rest."""
        n, k = self.frames, len(self.objects)
        t = np.arange(n) / FPS
        pos = np.zeros((n, k, 3))
        spots: list[np.ndarray] = []
        for i in range(k):
            spots.append(_place(rng, spots))
            pos[:, i] = spots[-1]
        yaw = np.repeat(rng.uniform(0, np.pi, k)[None], n, 0)
        wobble = np.stack(
            [np.stack([sin(1.3 * t + h), 0.6 * sin(1.1 * t + h + 1), 0.4 * sin(0.9 * t + h + 2)], 1) for h in (0.0, 2.0)], 1
        )
        wrist = REST[None] + 0.015 * wobble
        span = 2 * FPS
        free_at = np.zeros(k, int)
        carried = np.zeros((n, k), bool)
        self.events = []
        for f0 in range(6, n - 18, 36):
            hand = len(self.events) % 2
            free = [i for i in range(k) if free_at[i] <= f0]
            if not free:
                continue
            obj = free[int(rng.integers(len(free)))]
            free_at[obj] = f0 + span
            src = pos[f0, obj].copy()
            dest = _place(rng, [pos[-1, j] for j in range(k) if j != obj])
            self.events.append((hand, obj, f0, dest))
            grip = np.array([0.0, 0.0, self.objects[obj].height + 0.035])
            for f in range(f0, min(f0 + span, n)):
                u, rest = (f - f0) / span, wrist[f, hand].copy()
                if u < 0.35:
                    wrist[f, hand] = rest + (src + grip - rest) * _smooth(u / 0.35)
                elif u < 0.7:
                    c = _smooth((u - 0.35) / 0.35)
                    pos[f:, obj] = src + (dest - src) * c + np.array([0, 0, 0.06 * float(sin(np.pi * c))])
                    carried[f, obj] = True
                    yaw[f:, obj] = yaw[f0, obj] + 0.8 * c
                    wrist[f, hand] = pos[f, obj] + grip
                else:
                    wrist[f, hand] = pos[f, obj] + grip + (rest - pos[f, obj] - grip) * _smooth((u - 0.7) / 0.3)
        self.pos, self.yaw, self.wrist, self.carried = pos, yaw, wrist, carried

    def _head(self, rng: np.random.Generator) -> None:
        """Ego pose per frame: gaze follows the hands over the table; at some annotated seconds
        the head turns well away (objects leave the ego view)."""
        n = self.frames
        t = np.arange(n) / FPS
        focus = 0.6 * self.wrist.mean(1) + 0.4 * np.array([0.0, 0.05, 0.0])
        padded = np.pad(focus, ((7, 7), (0, 0)), mode="edge")  # a 15-frame moving mean, summed in a fixed order
        focus = sum(padded[i : i + n] for i in range(15)) / 15
        focus[:, 2] = 0.0
        self.head = HEAD + 0.02 * np.stack([sin(0.9 * t), sin(0.7 * t + 1), sin(1.1 * t + 2)], 1)
        seconds = n // FPS
        glances = (
            rng.choice(np.arange(1, seconds), size=min(max(1, seconds // 3), max(seconds - 1, 0)), replace=False)
            if seconds > 1
            else []
        )
        turn = np.zeros(n)
        for s in glances:
            sign = 1 if rng.uniform() < 0.5 else -1
            turn += sign * radians(rng.uniform(65, 85)) * _smooth(1 - np.abs(np.arange(n) - s * FPS) / 14.0 + 0.4)
        self.glances = sorted(int(s) * FPS for s in glances)
        gaze = focus - self.head
        s_, c = sin_cos(turn)
        self.gaze = np.stack(
            [c * gaze[:, 0] - s_ * gaze[:, 1], s_ * gaze[:, 0] + c * gaze[:, 1], gaze[:, 2] + 0.25 * np.abs(s_)], 1
        )
        self.roll = 0.05 * sin(0.8 * t)

    # -- rendering

    def camera(self, cam: str, frame: int, scale: float = 1.0) -> Camera:
        if cam == EGO_CAM:
            camera = Camera.look_at(
                self.head[frame], self.head[frame] + self.gaze[frame], self.ego_size, self.ego_size, EGO_FOV, self.roll[frame]
            )
        else:
            camera = self.exo[cam]
        return camera if scale == 1 else camera.scaled(scale)

    def solids(self, frame: int, arms: bool = False) -> dict[int, list[Solid]]:
        """Moving solids at ``frame``: object i has id i + 1, the hands the ids after the objects
        (with the upper arms when ``arms``: they are behind the ego camera)."""
        out = {
            i + 1: [Solid(o.parts, o.material, self.pos[frame, i], float(self.yaw[frame, i]))]
            for i, o in enumerate(self.objects)
        }
        for h in range(2):
            w = self.wrist[frame, h]
            back = SHOULDERS[h] - w
            back /= norm(back)
            ahead = -back * np.array([1, 1, 0.2])
            ahead /= norm(ahead)
            palm = w + 0.05 * ahead
            hand = [
                Solid(
                    [
                        Cylinder(w + 0.3 * back, w, 0.03, rounded=True),
                        Sphere(palm, 0.042),
                        Cylinder(palm, palm + 0.06 * ahead - [0, 0, 0.02], 0.022, rounded=True),
                    ],
                    SKIN,
                )
            ]
            if arms:
                hand.append(Solid([Cylinder(SHOULDERS[h], w + 0.28 * back, 0.045, rounded=True)], CLOTHES))
            out[len(self.objects) + 1 + h] = hand
        return out

    def render(self, cam: str, frame: int, scale: float = 1.0) -> Frame:
        """The frame of camera ``cam`` at ``scale`` times its size (ids: 0 room/table, 1..K
        objects, then hands; ``alone`` pixel counts only at scale 1).

        Exo cameras do not move: their room, table and body are cached, and at other scales also
        the objects that lie still (until one of them is picked up or put down)."""
        camera = self.camera(cam, frame, scale)
        full = scale == 1
        if cam == EGO_CAM:
            return render(camera, {0: self.table} | self.solids(frame), count_alone=full)
        if (cam, scale) not in self._static:
            dirs = camera.directions()
            self._static[cam, scale] = render(camera, {0: self.table + self.body}, dirs=dirs, count_alone=False), dirs
        base, dirs = self._static[cam, scale]
        solids = self.solids(frame, arms=True)
        if full:
            return render(camera, solids, base=base, dirs=dirs)
        still = [i + 1 for i in range(len(self.objects)) if not self.carried[frame, i]]
        key = (cam, scale, tuple(still), self.pos[frame].tobytes(), self.yaw[frame].tobytes())
        if self._still.get((cam, scale), (None,))[0] != key:
            self._still[cam, scale] = (
                key,
                render(camera, {i: solids[i] for i in still}, base=base, dirs=dirs, count_alone=False),
            )
        moving = {i: v for i, v in solids.items() if i not in still}
        return render(camera, moving, base=self._still[cam, scale][1], dirs=dirs, count_alone=False)

    def size(self, cam: str) -> tuple[int, int]:
        c = self.camera(cam, 0)
        return c.height, c.width
