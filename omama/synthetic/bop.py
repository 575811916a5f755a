"""Synthetic scenes written in the BOP scenewise format (see :mod:`omama.data.bop` for the format).

A scene is one synthetic tabletop (the objects, table and screen of a :class:`omama.synthetic.scene.Take`,
at rest: the take's first frame, no hands or body) seen by one camera moving along an arc around the table
while its aim wanders over the table top: every image is a new pose. Objects leave the view or hide behind
the screen in some images (absent there), and are cut by the image border in others.

Written per dataset ``<out>/``: ``camera.json`` (cx, cy, fx, fy, width, height, depth_scale),
``models/models_info.json`` and per scene ``<out>/<split>/<scene:06d>/``: ``rgb/<im:06d>.png|jpg``,
``mask/`` and ``mask_visib/<im:06d>_<gt:06d>.png`` (0/255), ``scene_gt.json``, ``scene_gt_info.json``,
``scene_camera.json``. The BOP conventions followed:

- obj_id: the object kind's position in :data:`omama.synthetic.scene.KINDS` plus one (an even scene holds
  two bowls: one obj_id twice); the model frame is the kind's local frame moved to the centre of its 3D
  bounding box (BOP: origin at the box centre, z up); lengths in mm.
- cam_R_m2c (row-wise), cam_t_m2c (mm); cam_K with the OpenCV pixel-centre convention (pixel i's centre at
  i: cx = width / 2 - 0.5); cam_R_w2c, cam_t_w2c; depth_scale 1.0 (no depth/ images are written:
  nothing here reads them).
- scene_gt_info as scripts/calc_gt_info.py: px_count_all counts the object's silhouette rendered alone on
  a canvas three times the image's width and height (parts outside the image count),
  px_count_visib its visible pixels, visib_fract their ratio (0 when px_count_all is 0), px_count_valid the
  silhouette's pixels inside the image (every rendered pixel has a depth); bbox_obj (the whole silhouette,
  may reach outside the image) and bbox_visib as (x, y, max x - x, max y - y), both [-1, -1, -1, -1] when
  no pixel is visible.
- models_info: min_x/y/z and size_x/y/z of the 3D box; diameter = its diagonal (an upper bound of BOP's
  largest vertex distance: the solids have no vertices; no .ply models are written).

Same settings -> byte-identical files (the renderer is exactly rounded; PNG and JSON writes are
deterministic). The dataset folder is replaced atomically.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from omama.data.bop import synthetic_settings
from omama.io import atomic_path, write_image, write_json
from omama.synthetic.render import Camera, Frame, Solid, dot, norm, radians, render, rot_z, sin_cos
from omama.synthetic.scene import KINDS, Take

log = logging.getLogger(__name__)

SCENE_OFFSET = 200_000  # Take indices of the BOP scenes: apart from the dataset takes and the photo pairs
CANVAS = 3  # px_count_all on a canvas this many times the image's sides (calc_gt_info.py)
MM = 1000.0  # metres -> millimetres
FOV = 55.0  # degrees
ARC = 240.0  # degrees of azimuth the camera travels over a scene
DISTANCE = (0.8, 1.1)  # metres from the table's centre (horizontal)
HEIGHT = (0.45, 0.85)  # metres above the table top
AIM = (0.3, 0.15)  # the camera aims at most this far off the table's centre in x, y (metres)


def model_centre(solid: Solid) -> np.ndarray:
    """Centre of a solid's 3D bounding box in its local frame: the origin of the BOP model frame."""
    bounds = np.array([part.bounds() for part in solid.parts], float)
    return (bounds[:, 0].min(0) + bounds[:, 1].max(0)) / 2


def model_info(solid: Solid) -> dict:
    """models_info.json entry (mm): the 3D box around the model frame's origin and its diagonal."""
    bounds = np.array([part.bounds() for part in solid.parts], float)
    size = (bounds[:, 1].max(0) - bounds[:, 0].min(0)) * MM
    info = {f"min_{a}": float(-s / 2) for a, s in zip("xyz", size)} | {f"size_{a}": float(s) for a, s in zip("xyz", size)}
    return {"diameter": float(norm(size))} | info


def bbox(mask: np.ndarray, dx: int = 0, dy: int = 0) -> list[int]:
    """BOP's 2D box (x, y, max x - x, max y - y) of a mask's pixels shifted by (dx, dy); [-1] * 4 when empty."""
    ys, xs = np.nonzero(mask)
    if not len(xs):
        return [-1, -1, -1, -1]
    return [int(xs.min() + dx), int(ys.min() + dy), int(xs.max() - xs.min()), int(ys.max() - ys.min())]


@dataclass
class View:
    """One rendered image: RGB, the ids' obj_ids (gt order), visible masks and whole silhouettes (in the
    image), the silhouettes' pixel counts on the large canvas and their boxes there (image coordinates)."""

    rgb: np.ndarray
    visible: list[np.ndarray]
    silhouette: list[np.ndarray]
    px_count_all: list[int]
    bbox_obj: list[list[int]]


class SyntheticScene:
    """One BOP scene: the objects at rest on the table and the camera of each image."""

    def __init__(self, cfg: dict, index: int):
        s = synthetic_settings(cfg)
        self.size = int(s["image_size"])
        take = Take(
            {
                "seed": s["seed"],
                "seconds": 1,
                "objects": s["objects"],
                "exo_cameras": 0,
                "ego_size": self.size,
                "exo_size": [1, 1],
            },
            SCENE_OFFSET + index,
        )
        self.table = take.table
        self.solids = [Solid(o.parts, o.material, take.pos[0, i], float(take.yaw[0, i])) for i, o in enumerate(take.objects)]
        self.obj_ids = [KINDS.index(o.kind) + 1 for o in take.objects]
        rng = np.random.default_rng([int(s["seed"]), SCENE_OFFSET + index, 1])
        n = int(s["images"])
        u = np.arange(n) / (n - 1)
        azimuth = radians(rng.uniform(0, 360) + ARC * u)
        phase = rng.uniform(0, 2 * np.pi, 4)
        distance = DISTANCE[0] + (DISTANCE[1] - DISTANCE[0]) * (0.5 + 0.5 * sin_cos(2 * np.pi * u + phase[0])[0])
        height = HEIGHT[0] + (HEIGHT[1] - HEIGHT[0]) * (0.5 + 0.5 * sin_cos(3 * np.pi * u + phase[1])[0])
        s_az, c_az = sin_cos(azimuth)
        aim_x, aim_y = AIM[0] * sin_cos(5 * np.pi * u + phase[2])[0], AIM[1] * sin_cos(4 * np.pi * u + phase[3])[0]
        self.cameras = [
            Camera.look_at(
                [distance[j] * c_az[j], distance[j] * s_az[j], height[j]], [aim_x[j], aim_y[j], 0.0], self.size, self.size, FOV
            )
            for j in range(n)
        ]

    def pose(self, im: int, gt: int) -> tuple[np.ndarray, np.ndarray]:
        """(R_m2c (3, 3), t_m2c (3,) in mm) of object ``gt`` in image ``im``: model -> local (+ box centre) ->
        world (yaw, position) -> camera."""
        camera, solid = self.cameras[im], self.solids[gt]
        w2c = camera.rotation.T  # the rotation's columns are the camera's axes in the world
        yaw = rot_z(solid.yaw)
        centre_world = dot(yaw, model_centre(solid)) + solid.position
        return dot(w2c, yaw), dot(w2c, centre_world - camera.position) * MM

    def render(self, im: int) -> View:
        """Render image ``im``: the scene, and each object alone on the large canvas (no occluders)."""
        camera = self.cameras[im]
        frame = render(camera, {0: self.table} | {i + 1: [solid] for i, solid in enumerate(self.solids)}, count_alone=False)
        h, w = camera.height, camera.width
        big = Camera(CANVAS * w, CANVAS * h, camera.focal, camera.position, camera.rotation)  # same rays in the middle
        dirs = big.directions()
        empty = Frame(
            np.zeros((big.height, big.width, 3), np.float32),
            np.full((big.height, big.width), np.inf, np.float32),
            np.zeros((big.height, big.width), np.uint8),
        )
        off_y, off_x = (CANVAS - 1) // 2 * h, (CANVAS - 1) // 2 * w
        silhouettes, counts, boxes = [], [], []
        for solid in self.solids:
            alone = render(big, {1: [solid]}, base=empty, dirs=dirs, count_alone=False).ids == 1
            silhouettes.append(alone[off_y : off_y + h, off_x : off_x + w])
            counts.append(int(alone.sum()))
            boxes.append(bbox(alone, -off_x, -off_y))
        visible = [frame.ids == i + 1 for i in range(len(self.solids))]
        return View(frame.rgb(), visible, silhouettes, counts, boxes)

    def camera_entry(self, im: int) -> dict:
        """scene_camera.json entry of image ``im``."""
        c = self.cameras[im]
        w2c = c.rotation.T
        return {
            "cam_K": intrinsics(c),
            "depth_scale": 1.0,
            "cam_R_w2c": [float(v) for v in w2c.ravel()],
            "cam_t_w2c": [float(v) for v in -dot(w2c, c.position) * MM],
        }


def intrinsics(camera: Camera) -> list[float]:
    """Row-wise K (OpenCV pixel centres: pixel i's centre at i)."""
    f = float(camera.focal)
    return [f, 0.0, camera.width / 2 - 0.5, 0.0, f, camera.height / 2 - 0.5, 0.0, 0.0, 1.0]


def gt_info(view: View, gt: int) -> dict:
    """scene_gt_info.json entry of object ``gt`` in ``view``."""
    visib, all_ = int(view.visible[gt].sum()), view.px_count_all[gt]
    return {
        "bbox_obj": view.bbox_obj[gt] if visib else [-1, -1, -1, -1],
        "bbox_visib": bbox(view.visible[gt]),
        "px_count_all": all_,
        "px_count_valid": int(view.silhouette[gt].sum()),
        "px_count_visib": visib,
        "visib_fract": visib / all_ if all_ else 0.0,
    }


def _write_scene(scene: SyntheticScene, folder: Path, n: int, suffix: str) -> None:
    for sub in ("rgb", "mask", "mask_visib"):
        (folder / sub).mkdir(parents=True)
    scene_gt, scene_info, scene_camera = {}, {}, {}
    for im in range(n):
        view = scene.render(im)
        write_image(folder / "rgb" / f"{im:06d}{suffix}", np.ascontiguousarray(view.rgb[..., ::-1]))
        scene_gt[str(im)], scene_info[str(im)] = [], []
        for gt, obj_id in enumerate(scene.obj_ids):
            write_image(folder / "mask" / f"{im:06d}_{gt:06d}.png", view.silhouette[gt].astype(np.uint8) * 255)
            write_image(folder / "mask_visib" / f"{im:06d}_{gt:06d}.png", view.visible[gt].astype(np.uint8) * 255)
            rotation, translation = scene.pose(im, gt)
            scene_gt[str(im)].append(
                {
                    "obj_id": obj_id,
                    "cam_R_m2c": [float(v) for v in rotation.ravel()],
                    "cam_t_m2c": [float(v) for v in translation],
                }
            )
            scene_info[str(im)].append(gt_info(view, gt))
        scene_camera[str(im)] = scene.camera_entry(im)
    write_json(folder / "scene_gt.json", scene_gt)
    write_json(folder / "scene_gt_info.json", scene_info)
    write_json(folder / "scene_camera.json", scene_camera)


def write_dataset(out_dir: str | Path, cfg: dict | None = None) -> Path:
    """Write a synthetic BOP dataset into ``out_dir`` (replaced atomically); ``cfg``: the settings
    (``omama.data.bop.synthetic_settings``: seed, scenes, images, image_size, objects, image_format, and split:
    the split folder written)."""
    s = synthetic_settings(cfg)
    out_dir = Path(out_dir)
    models = {}
    with atomic_path(out_dir) as tmp:
        for index in tqdm(range(s["scenes"]), desc="synthetic BOP scenes", mininterval=5):
            scene = SyntheticScene(s, index)
            _write_scene(scene, tmp / s["split"] / f"{index:06d}", s["images"], f".{s['image_format']}")
            models |= {obj_id: model_info(solid) for obj_id, solid in zip(scene.obj_ids, scene.solids)}
            log.info("BOP scene %d/%d: %d objects, %d images", index + 1, s["scenes"], len(scene.solids), s["images"])
        c = scene.cameras[0]
        k = intrinsics(c)
        write_json(
            tmp / "camera.json",
            {"cx": k[2], "cy": k[5], "depth_scale": 1.0, "fx": k[0], "fy": k[4], "height": c.height, "width": c.width},
        )
        write_json(tmp / "models" / "models_info.json", {str(i): models[i] for i in sorted(models)})
    return out_dir
