"""The built-in toy datasets: COCO-format detection and a Cityscapes layout.

One seeded scene generator draws a few coloured shapes on a textured background;
the same scenes are written as COCO instances (boxes + polygon masks) and as
Cityscapes `leftImg8bit` / `gtFine_labelTrainIds` pairs. Output is deterministic,
takes seconds and a few MB, and is regenerated only when missing or when the
stamp (generator version + parameters) differs. `make toy-data` runs it
(scripts/make_toy_data.py); the benchmark runner calls `ensure_toy_data` itself.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

GENERATOR_VERSION = 1
STAMP_NAME = ".toy_stamp.json"

# Toy detection classes and the Cityscapes train id each one plays in the street scenes.
SHAPE_CLASSES = ("circle", "square", "triangle")
SHAPE_TO_TRAIN_ID = {"circle": 7, "square": 13, "triangle": 11}  # traffic sign, car, person
SHAPE_COLOURS = {"circle": (220, 60, 50), "square": (50, 90, 220), "triangle": (240, 200, 40)}

CITYSCAPES_CLASSES = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light",
    "traffic sign", "vegetation", "terrain", "sky", "person", "rider", "car",
    "truck", "bus", "train", "motorcycle", "bicycle",
)
IGNORE_ID = 255
# Street background bands, top to bottom: (train id, colour).
STREET_BANDS = ((10, (130, 180, 235)), (2, (120, 110, 100)), (8, (60, 130, 50)),
                (1, (190, 170, 170)), (0, (90, 90, 95)))
POLE = (5, (150, 150, 150))

DEFAULTS = {
    "coco": {"train": 48, "val": 16, "height": 192, "width": 256, "seed": 0},
    "cityscapes": {"train": 24, "val": 8, "height": 128, "width": 256, "seed": 1},
}
CITY = "toyville"


@dataclass
class ToyObject:
    shape: str
    polygon: np.ndarray  # (K, 2) float x, y vertices in pixel coordinates
    mask: np.ndarray  # (H, W) bool, pixel centres inside the polygon


@dataclass
class Scene:
    image: np.ndarray  # (H, W, 3) uint8
    objects: list[ToyObject] = field(default_factory=list)
    labels: np.ndarray | None = None  # (H, W) uint8 train ids (street scenes only)


def _texture(rng: np.random.Generator, height: int, width: int, base: tuple, amplitude: float) -> np.ndarray:
    """Smooth low-frequency noise plus fine grain around a base colour."""
    coarse = rng.normal(0.0, 1.0, (height // 16 + 2, width // 16 + 2, 3))
    rows = np.linspace(0, coarse.shape[0] - 1, height)
    cols = np.linspace(0, coarse.shape[1] - 1, width)
    r0, c0 = np.floor(rows).astype(int), np.floor(cols).astype(int)
    r1, c1 = np.minimum(r0 + 1, coarse.shape[0] - 1), np.minimum(c0 + 1, coarse.shape[1] - 1)
    fr, fc = (rows - r0)[:, None, None], (cols - c0)[None, :, None]
    smooth = (coarse[r0][:, c0] * (1 - fr) * (1 - fc) + coarse[r1][:, c0] * fr * (1 - fc)
              + coarse[r0][:, c1] * (1 - fr) * fc + coarse[r1][:, c1] * fr * fc)
    grain = rng.normal(0.0, 0.35, (height, width, 3))
    return np.asarray(base, dtype=np.float64) + amplitude * (smooth + grain)


def _polygon(rng: np.random.Generator, shape: str, cx: float, cy: float, size: float) -> np.ndarray:
    angle = rng.uniform(0, 2 * np.pi)
    if shape == "circle":
        t = np.linspace(0, 2 * np.pi, 32, endpoint=False)
        radius = size / 2
    elif shape == "square":
        t = angle + np.arange(4) * np.pi / 2
        radius = size / np.sqrt(2)
    else:
        t = angle + np.arange(3) * 2 * np.pi / 3
        radius = size / np.sqrt(3)
    return np.stack([cx + radius * np.cos(t), cy + radius * np.sin(t)], axis=1)


def _rasterise(polygon: np.ndarray, height: int, width: int) -> np.ndarray:
    """Even-odd rule on pixel centres (x + 0.5, y + 0.5), as COCO's polygon decoder does closely."""
    ys, xs = np.mgrid[0:height, 0:width]
    px, py = xs + 0.5, ys + 0.5
    inside = np.zeros((height, width), dtype=bool)
    x0, y0 = polygon[:, 0], polygon[:, 1]
    x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
    for ax, ay, bx, by in zip(x0, y0, x1, y1):
        crosses = (ay > py) != (by > py)
        with np.errstate(divide="ignore", invalid="ignore"):
            x_at = ax + (py - ay) * (bx - ax) / (by - ay)
        inside ^= crosses & (px < x_at)
    return inside


def _place_objects(rng, height, width, count, size_range, allowed_rows, occupied) -> list[ToyObject]:
    objects: list[ToyObject] = []
    for _ in range(count * 20):
        if len(objects) == count:
            break
        shape = SHAPE_CLASSES[rng.integers(len(SHAPE_CLASSES))]
        size = rng.uniform(*size_range)
        margin = size / 2 + 1
        cx = rng.uniform(margin, width - margin)
        cy = rng.uniform(max(margin, allowed_rows[0] + margin), min(height - margin, allowed_rows[1] - margin))
        polygon = _polygon(rng, shape, cx, cy, size)
        if polygon.min() < 1 or (polygon[:, 0] > width - 1).any() or (polygon[:, 1] > height - 1).any():
            continue  # keep every shape whole, so its box is exactly its polygon's extent
        mask = _rasterise(polygon, height, width)
        grown = mask | np.roll(mask, 2, 0) | np.roll(mask, -2, 0) | np.roll(mask, 2, 1) | np.roll(mask, -2, 1)
        if mask.sum() < 16 or (grown & occupied).any():  # no overlaps: every mask stays exact
            continue
        occupied |= grown
        objects.append(ToyObject(shape, polygon, mask))
    return objects


def _paint(image: np.ndarray, rng: np.random.Generator, objects: list[ToyObject]) -> None:
    height, width = image.shape[:2]
    for obj in objects:
        colour = np.asarray(SHAPE_COLOURS[obj.shape]) + rng.uniform(-25, 25, 3)
        image[obj.mask] = _texture(rng, height, width, tuple(colour), 6.0)[obj.mask]


def make_scene(rng: np.random.Generator, height: int, width: int, street: bool = False) -> Scene:
    """One scene: textured background and 1-5 non-overlapping shapes (street layout if asked)."""
    occupied = np.zeros((height, width), dtype=bool)
    if not street:
        image = _texture(rng, height, width, tuple(rng.uniform(70, 180, 3)), 12.0)
        objects = _place_objects(rng, height, width, int(rng.integers(1, 6)),
                                 (min(height, width) * 0.12, min(height, width) * 0.35), (0, height), occupied)
        _paint(image, rng, objects)
        return Scene(np.clip(image, 0, 255).astype(np.uint8), objects)

    labels = np.empty((height, width), dtype=np.uint8)
    image = np.empty((height, width, 3), dtype=np.float64)
    cuts = np.sort(rng.uniform(0.15, 0.85, len(STREET_BANDS) - 1)) * height
    edges = np.concatenate([[0], np.round(cuts), [height]]).astype(int)
    for (train_id, colour), top, bottom in zip(STREET_BANDS, edges[:-1], edges[1:]):
        if bottom > top:
            labels[top:bottom] = train_id
            image[top:bottom] = _texture(rng, bottom - top, width, colour, 10.0)
    for _ in range(int(rng.integers(0, 3))):  # thin poles crossing the bands
        x = int(rng.integers(0, width - 3))
        top = int(rng.integers(0, height // 2))
        labels[top:, x:x + 3] = POLE[0]
        image[top:, x:x + 3] = POLE[1]
    ground_top = edges[2]  # objects stand below the building band
    objects = _place_objects(rng, height, width, int(rng.integers(2, 6)),
                             (height * 0.12, height * 0.3), (ground_top, height), occupied)
    _paint(image, rng, objects)
    for obj in objects:
        labels[obj.mask] = SHAPE_TO_TRAIN_ID[obj.shape]
    labels[-max(2, height // 32):] = IGNORE_ID  # ego-vehicle strip, as Cityscapes ignores it
    return Scene(np.clip(image, 0, 255).astype(np.uint8), objects, labels)


def _save(array: np.ndarray, path: Path, **kwargs) -> None:
    from PIL import Image

    Image.fromarray(array).save(path, **kwargs)


def _write_coco(root: Path, params: dict) -> None:
    rng = np.random.default_rng(params["seed"])
    (root / "annotations").mkdir(parents=True)
    categories = [{"id": i + 1, "name": name, "supercategory": "shape"} for i, name in enumerate(SHAPE_CLASSES)]
    ann_id = 1
    for split in ("train", "val"):
        image_dir = root / f"{split}2017"
        image_dir.mkdir()
        images, annotations = [], []
        for index in range(params[split]):
            scene = make_scene(rng, params["height"], params["width"])
            file_name = f"{split}_{index:06d}.jpg"
            _save(scene.image, image_dir / file_name, quality=92)
            image_id = index + 1
            images.append({"id": image_id, "file_name": file_name,
                           "height": params["height"], "width": params["width"]})
            for obj in scene.objects:
                x0, y0 = obj.polygon.min(axis=0)
                x1, y1 = obj.polygon.max(axis=0)
                annotations.append({
                    "id": ann_id, "image_id": image_id,
                    "category_id": SHAPE_CLASSES.index(obj.shape) + 1,
                    "bbox": [round(float(x0), 2), round(float(y0), 2),
                             round(float(x1 - x0), 2), round(float(y1 - y0), 2)],
                    "segmentation": [[round(float(v), 2) for v in obj.polygon.reshape(-1)]],
                    "area": float(obj.mask.sum()), "iscrowd": 0,
                })
                ann_id += 1
        dataset = {"info": {"description": "involution_ops built-in toy COCO", "version": GENERATOR_VERSION},
                   "images": images, "annotations": annotations, "categories": categories}
        (root / "annotations" / f"instances_{split}2017.json").write_text(json.dumps(dataset))


def _write_cityscapes(root: Path, params: dict) -> None:
    rng = np.random.default_rng(params["seed"])
    for split in ("train", "val"):
        image_dir = root / "leftImg8bit" / split / CITY
        label_dir = root / "gtFine" / split / CITY
        image_dir.mkdir(parents=True)
        label_dir.mkdir(parents=True)
        for index in range(params[split]):
            scene = make_scene(rng, params["height"], params["width"], street=True)
            stem = f"{CITY}_{index:06d}_000019"
            _save(scene.image, image_dir / f"{stem}_leftImg8bit.png", optimize=False)
            _save(scene.labels, label_dir / f"{stem}_gtFine_labelTrainIds.png")


WRITERS = {"coco": _write_coco, "cityscapes": _write_cityscapes}


def stamp_for(kind: str, params: dict) -> dict:
    digest = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16]
    return {"generator_version": GENERATOR_VERSION, "kind": kind, "params": params, "generator_sha": digest}


def read_stamp(folder: Path) -> dict | None:
    try:
        return json.loads((folder / STAMP_NAME).read_text())
    except (OSError, ValueError):
        return None


def ensure_toy_data(out: str | Path = "data/toy", kind: str = "coco", params: dict | None = None,
                    verbose: bool = True) -> Path:
    """Return `<out>/<kind>`, generating it first unless an identical stamp is already there.

    Only a folder this script made (it carries our stamp) is ever replaced; a folder of
    someone else's data at that path is an error, never overwritten.
    """
    if kind not in WRITERS:
        raise ValueError(f"unknown toy dataset kind {kind!r}; choose one of {sorted(WRITERS)}")
    params = {**DEFAULTS[kind], **(params or {})}
    target = Path(out) / kind
    wanted = stamp_for(kind, params)
    current = read_stamp(target)
    if current == wanted:
        return target
    if target.exists() and current is None and any(target.iterdir()):
        raise FileExistsError(
            f"{target} exists but was not made by scripts/make_toy_data.py (no {STAMP_NAME}); "
            f"refusing to overwrite it. Move it away or pass a different --out.")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{kind}-", dir=target.parent))
    try:
        WRITERS[kind](staging / "data", params)
        (staging / "data" / STAMP_NAME).write_text(json.dumps(wanted, indent=1))
        if current is not None:  # our own older generation: replace it
            old = staging / "old"
            try:
                os.rename(target, old)
            except FileNotFoundError:
                pass
        try:
            os.rename(staging / "data", target)
        except OSError:
            if read_stamp(target) != wanted:  # a concurrent run produced something else
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if verbose:
        print(f"[make_toy_data] wrote toy {kind} dataset to {target}")
    return target


def main(argv: list[str] | None = None) -> int:
    """`make toy-data`, `scripts/make_toy_data.py`, `involution-toy-data`."""
    parser = argparse.ArgumentParser(
        description="Generate the built-in toy datasets: COCO-format detection and a Cityscapes layout.")
    parser.add_argument("--out", default="data/toy", help="output root (default: data/toy)")
    parser.add_argument("--kind", default="all", choices=["coco", "cityscapes", "all"])
    args = parser.parse_args(argv)
    kinds = list(WRITERS) if args.kind == "all" else [args.kind]
    for kind in kinds:
        path = ensure_toy_data(args.out, kind)
        print(f"[make_toy_data] {kind}: {path} ready")
    return 0
