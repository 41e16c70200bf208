"""Dataset checks shared by the pre-flight and the training-time image guard.

* `coco_annotation_problems`: boxes of non-positive size, category ids that are not among the
  file's categories, annotations of images the file does not list; and everything that makes
  mmdet's CocoDataset / LoadAnnotations train on or evaluate something else than the file says
  (no annotations, only crowd regions, duplicate ids, boxes it drops, malformed masks).
* `image_problem`, `survey` and the other file facts: involution_ops.bench.file_facts (re-exported).
"""
from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from typing import Any, Iterable


_LISTED = 5
# COCO 2017's train file holds 2 boxes of zero height among 860,001 annotations (mmdet drops
# such boxes); a share this small is a warning, anything more an error.
BAD_BOX_TOLERANCE = 1e-4


def _listed(values: list[Any]) -> str:
    shown = ", ".join(map(str, values[:_LISTED]))
    return shown + (f" ... ({len(values) - _LISTED} more)" if len(values) > _LISTED else "")


def _ids(anns: list[dict]) -> str:
    return _listed([a.get("id", "?") for a in anns])


def _box_ok(box: Any) -> bool:
    return (isinstance(box, (list, tuple)) and len(box) == 4
            and all(isinstance(v, (int, float)) and math.isfinite(v) for v in box) and box[2] > 0 and box[3] > 0)


def coco_annotation_problems(data: dict, path: Path, split: str = "", kept_categories: set | None = None,
                             with_mask: bool = False) -> tuple[list[str], list[str]]:
    """(errors, warnings) about the annotations of a loaded COCO instances file.

    ``split`` ("train", "val", "test"; "" when unknown) words the consequences; ``kept_categories``:
    the category ids the dataset keeps (its classes; None: all); ``with_mask``: the pipeline loads masks."""
    images = {image.get("id") for image in data["images"]}
    categories = {category.get("id") for category in data["categories"]}
    annotations = data["annotations"]
    bad_box = [a for a in annotations if not _box_ok(a.get("bbox"))]
    bad_category = [a for a in annotations if a.get("category_id") not in categories]
    bad_image = [a for a in annotations if a.get("image_id") not in images]
    errors, warnings = [], []
    if bad_category:
        found = sorted({str(a.get("category_id")) for a in bad_category})
        errors.append(
            f"{len(bad_category)} of {len(annotations)} annotations in {path} have a category_id that is not among "
            f"its {len(categories)} categories (category ids {', '.join(found[:_LISTED])}; annotation ids "
            f"{_ids(bad_category)}). Fix: add those categories to its 'categories' list, or correct or remove "
            f"the annotations")
    if bad_image:
        found = sorted({str(a.get("image_id")) for a in bad_image})
        errors.append(
            f"{len(bad_image)} of {len(annotations)} annotations in {path} belong to an image_id that its 'images' "
            f"list does not have (image ids {', '.join(found[:_LISTED])}; annotation ids {_ids(bad_image)}). Fix: "
            f"add those images to 'images' or remove the annotations (the file may be a mix of two exports)")
    if bad_box:
        example = bad_box[0].get("bbox")
        text = (f"{len(bad_box)} of {len(annotations)} annotations in {path} have no box of positive width and "
                f"height (annotation ids {_ids(bad_box)}; e.g. bbox {example}); mmdet drops such boxes, so those "
                f"objects are never learned")
        if len(bad_box) > BAD_BOX_TOLERANCE * len(annotations):
            errors.append(text + ". Fix: write the boxes as [x, y, width, height] with width and height > 0, "
                                 "or remove those annotations")
        else:
            warnings.append(text + f" (at most {BAD_BOX_TOLERANCE:.2%} of a file is tolerated, as in COCO 2017)")
    loaded = MmdetView(data, kept_categories)
    for found, into in ((loaded.errors(path, split), errors), (loaded.warnings(path, split), warnings)):
        into.extend(found)
    if with_mask:
        mask_errors, mask_warnings = mask_problems(loaded, path)
        errors.extend(mask_errors)
        warnings.extend(mask_warnings)
    return errors, warnings


# Share of a file's annotations that mmdet may drop without a word (boxes outside their image or under
# one pixel, no area; masks without a polygon of three points) before that is an error, not a
# warning: boxes normalised to 0-1, drawn for another resolution or written x1, y1, x2, y2 lose far more.
DROPPED_TOLERANCE = 0.01
# COCO 2017 marks about 1% of its annotations as crowd regions; half of a file is a mistake.
CROWD_WARNING_SHARE = 0.5
_BOX_FIX = ("write boxes as [x, y, width, height] in pixels of the image the file declares (not normalised to "
            "0-1, not x1, y1, x2, y2), and area as the object's pixel count")
_SPLIT_RESULT = {"train": "training", "val": "the evaluation", "test": "the evaluation"}


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _finite_numbers(values: list) -> bool:
    """All finite numbers (one C-level pass: COCO's polygons hold tens of millions of coordinates)."""
    try:
        return math.isfinite(math.fsum(values))
    except (TypeError, ValueError, OverflowError):
        return False


def _repeated(values: Iterable[Any]) -> list[Any]:
    counts = Counter(values)
    return [value for value, count in counts.items() if count > 1]


class MmdetView:
    """A COCO file as mmdet 3.x's CocoDataset.parse_data_info reads it: the annotations it keeps as
    instances (crowd ones only as ignored regions) and those it drops, by reason.

    Annotations already reported by `coco_annotation_problems` (no positive box, unknown category or
    image) and those marked ``ignore`` by their author are left out here."""

    def __init__(self, data: dict, kept_categories: set | None = None) -> None:
        self.images = data["images"]
        self.annotations = data["annotations"]
        by_id = {image.get("id"): image for image in self.images}  # pycocotools, too, keeps the last
        self.sizeless = [image for image in self.images
                         if not (_number(image.get("width")) and _number(image.get("height")))]
        sizeless = {id(image) for image in self.sizeless}
        self.kept: list[tuple[dict, dict]] = []
        self.dropped: dict[str, list[tuple[dict, dict]]] = {"outside": [], "tiny": [], "no area": []}
        self.arealess: list[dict] = []
        self.other_class: list[dict] = []
        for ann in self.annotations:
            image = by_id.get(ann.get("image_id"))
            if image is None or ann.get("ignore", False) or not _box_ok(ann.get("bbox")) or id(image) in sizeless:
                continue
            x, y, w, h = ann["bbox"]
            inside_w = max(0, min(x + w, image["width"]) - max(x, 0))
            inside_h = max(0, min(y + h, image["height"]) - max(y, 0))
            if inside_w * inside_h == 0:
                self.dropped["outside"].append((ann, image))
            elif not _number(ann.get("area")):
                self.arealess.append(ann)
            elif ann["area"] <= 0:
                self.dropped["no area"].append((ann, image))
            elif w < 1 or h < 1:
                self.dropped["tiny"].append((ann, image))
            elif kept_categories is not None and ann.get("category_id") not in kept_categories:
                self.other_class.append(ann)
            else:
                self.kept.append((ann, image))
        self.crowd = [ann for ann, _ in self.kept if ann.get("iscrowd")]
        self.objects = len(self.kept) - len(self.crowd)

    def _dropped_text(self) -> str:
        parts = []
        for reason, what in (("outside", "lie outside their image"), ("tiny", "are narrower or lower than 1 pixel"),
                             ("no area", "have an area of 0 or less")):
            found = self.dropped[reason]
            if found:
                ann, image = found[0]
                parts.append(f"{len(found)} {what} (ids {_ids([a for a, _ in found])}; e.g. bbox {ann['bbox']} "
                             f"area {ann.get('area')} in a {image['width']}x{image['height']} image)")
        return "; ".join(parts)

    def errors(self, path: Path, split: str = "") -> list[str]:
        errors = []
        total = len(self.annotations)
        if self.sizeless:
            errors.append(
                f"{len(self.sizeless)} of {len(self.images)} images in {path} have no numeric width and height "
                f"(image ids {_listed([i.get('id') for i in self.sizeless])}); mmdet reads both to drop boxes "
                f"outside the image and images that are too small (KeyError: 'width'). Fix: add each image's "
                f"width and height in pixels")
        repeated = _repeated(image.get("id") for image in self.images)
        if repeated:
            errors.append(
                f"image ids {_listed(repeated)} occur more than once in {path}'s 'images' list: pycocotools keeps "
                f"only the last entry of each, so the other files are never loaded and their annotations are "
                f"attached to the wrong picture. Fix: give every image its own id and each annotation the image_id "
                f"of its picture")
        repeated = _repeated(ann.get("id") for ann in self.annotations)
        if repeated:
            errors.append(
                f"annotation ids {_listed(repeated)} occur more than once in {path} ({len(repeated)} ids): mmdet "
                f"stops on them ('Annotation ids ... are not unique!') and pycocotools keeps only the last "
                f"annotation of each id. Fix: give every annotation its own id (e.g. renumber them 1..N)")
        if self.arealess:
            errors.append(
                f"{len(self.arealess)} of {total} annotations in {path} have no numeric 'area' (annotation ids "
                f"{_ids(self.arealess)}): mmdet stops with KeyError: 'area'. Fix: add each object's area in pixels "
                f"(its mask's pixel count, or its box's width x height)")
        consequence = _SPLIT_RESULT.get(split, "training or evaluation")
        if not self.annotations:
            errors.append(
                f"{path} holds no annotations ({len(self.images)} images, 0 annotations): "
                + ("mmdet drops every image without objects from training and stops with numpy's 'need at least "
                   "one array'" if split == "train" else f"{consequence} would measure nothing (a run 'ok' with no "
                   f"metrics)")
                + f". Fix: use the complete annotation file of that split (COCO 2017: {path.name} from "
                  f"annotations_trainval2017.zip), or check the tool that exported it")
        elif self.objects == 0:
            parts, fixes = [], []
            if self.crowd:
                parts.append(f"{len(self.crowd)} are crowd regions (iscrowd: 1), which mmdet and the COCO "
                             f"evaluation only ignore")
                fixes.append("set iscrowd to 0 on annotations of single objects (COCO uses 1 only for crowd "
                             "regions, about 1% of its annotations)")
            if self.other_class:
                parts.append(f"{len(self.other_class)} are of categories outside the dataset's classes")
                fixes.append("select the classes the file has (metainfo.classes)")
            if self._dropped_count():
                parts.append(f"mmdet drops {self._dropped_count()}: {self._dropped_text()}")
                fixes.append(_BOX_FIX)
            errors.append(
                f"none of the {total} annotations in {path} is an object that {consequence} can use: "
                + "; ".join(parts)
                + (" - training would run with loss_bbox 0 at every step" if split == "train" else
                   " - the evaluation would report AP -1 or nothing" if split else "")
                + ". Fix: " + "; ".join(fixes or ["check the tool that exported the file"]))
        if self.annotations and self.objects and self._dropped_count() > DROPPED_TOLERANCE * total:
            errors.append(self._dropped_message(path, split) + ". Fix: " + _BOX_FIX)
        return errors

    def _dropped_count(self) -> int:
        return sum(len(found) for found in self.dropped.values())

    def _dropped_message(self, path: Path, split: str = "") -> str:
        effect = {"train": "so those objects are never learned",
                  "": "so those objects are never learned, or never found by a prediction"}.get(
            split, "while the COCO evaluation still counts them as objects to find")
        return (f"{self._dropped_count()} of {len(self.annotations)} annotations in {path} are boxes that mmdet "
                f"drops without a word, {effect}: {self._dropped_text()}")

    def warnings(self, path: Path, split: str = "") -> list[str]:
        warnings = []
        total = len(self.annotations)
        if self.objects and 0 < self._dropped_count() <= DROPPED_TOLERANCE * total:
            warnings.append(self._dropped_message(path, split)
                            + f" (at most {DROPPED_TOLERANCE:.0%} of a file is tolerated)")
        if self.objects and len(self.crowd) > CROWD_WARNING_SHARE * len(self.kept):
            warnings.append(
                f"{len(self.crowd)} of the {len(self.kept)} annotations in {path} that mmdet loads are crowd regions "
                f"(iscrowd: 1; ids {_ids(self.crowd)}), which it only ignores; COCO 2017 has about 1%. If they are "
                f"single objects, set iscrowd to 0")
        return warnings


def rle_string_counts(text: str) -> list[int]:
    """The run lengths of a compressed COCO RLE string (pycocotools' format: 5-bit groups, a continuation
    bit, a sign bit, and from the fourth run on each run is stored as its difference to the run two back)."""
    counts: list[int] = []
    data = text.encode("ascii", "replace")
    position = 0
    while position < len(data):
        value, shift, more = 0, 0, True
        while more:
            if position == len(data):
                raise ValueError("it ends inside a number")
            chunk = data[position] - 48
            if not 0 <= chunk < 64:
                raise ValueError(f"it holds {chr(data[position])!r}, which is not an RLE character")
            value |= (chunk & 0x1F) << shift
            more = bool(chunk & 0x20)
            position += 1
            shift += 5
            if not more and chunk & 0x10:
                value |= -1 << shift
        if len(counts) > 2:
            value += counts[-2]
        counts.append(value)
    return counts


def rle_problem(rle: dict, image: dict) -> str | None:
    """Why an uncompressed or compressed RLE mask cannot be the mask of `image`, or None when it can."""
    size, counts = rle.get("size"), rle.get("counts")
    if not (isinstance(size, list) and len(size) == 2 and all(isinstance(v, int) and v > 0 for v in size)):
        return f"size {size!r} is not [height, width]"
    if size != [image["height"], image["width"]]:
        return f"size {size} is not its image's [height, width] [{image['height']}, {image['width']}]"
    if isinstance(counts, str):
        try:
            counts = rle_string_counts(counts)
        except ValueError as error:
            return f"counts string is not a COCO RLE ({error})"
    elif not (isinstance(counts, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in counts)):
        return "counts are neither a list of run lengths nor a COCO RLE string"
    if any(v < 0 for v in counts) or sum(counts) != size[0] * size[1]:
        return "runs include negative lengths" if any(v < 0 for v in counts) else \
            f"runs cover {sum(counts)} pixels, not {size[0]}x{size[1]} = {size[0] * size[1]}"
    return None


def mask_problems(view: MmdetView, path: Path) -> tuple[list[str], list[str]]:
    """(errors, warnings) about the masks of the annotations mmdet loads (every kept one, crowd included):
    LoadAnnotations(with_mask=True) stops on a missing mask (KeyError: 'mask') or a malformed RLE
    (pycocotools), and silently ignores an object whose polygons all have fewer than 3 points."""
    missing, malformed, pointless = [], [], []
    for ann, image in view.kept:
        segmentation = ann.get("segmentation")
        if not segmentation:
            missing.append(ann)
        elif isinstance(segmentation, list):
            if not all(isinstance(p, list) and _finite_numbers(p) for p in segmentation):
                malformed.append((ann, "a polygon that is not a list of numbers"))
            elif not any(len(p) % 2 == 0 and len(p) >= 6 for p in segmentation):
                pointless.append(ann)
        elif isinstance(segmentation, dict):
            reason = rle_problem(segmentation, image)
            if reason:
                malformed.append((ann, "an RLE whose " + reason))
        else:
            malformed.append((ann, f"a segmentation of type {type(segmentation).__name__}"))
    errors, warnings = [], []
    loaded = len(view.kept)
    if missing:
        errors.append(
            f"{len(missing)} of the {loaded} annotations in {path} that a mask model loads have no segmentation "
            f"(annotation ids {_ids(missing)}): mmdet stops with KeyError: 'mask'. Fix: add each object's polygon "
            f"([[x1, y1, x2, y2, ...]]) or RLE, or train a box-only model")
    if malformed:
        ann, reason = malformed[0]
        errors.append(
            f"{len(malformed)} of the {loaded} annotations in {path} that a mask model loads have a malformed mask "
            f"(annotation ids {_ids([a for a, _ in malformed])}; e.g. id {ann.get('id')} has {reason}): "
            f"pycocotools stops on it or decodes another shape. Fix: write polygons as lists of x, y numbers and "
            f"RLEs as {{'size': [height, width], 'counts': ...}} of their image (pycocotools.mask.encode)")
    if pointless:
        text = (f"{len(pointless)} of the {loaded} annotations in {path} that a mask model loads have no polygon "
                f"of 3 or more points (annotation ids {_ids(pointless)}; e.g. {pointless[0]['segmentation']}): mmdet "
                f"turns those objects into ignored regions without a word")
        if len(pointless) > DROPPED_TOLERANCE * loaded:
            errors.append(text + ". Fix: write each polygon as [x1, y1, x2, y2, x3, y3, ...] (an even count, at "
                                 "least 6 numbers)")
        else:
            warnings.append(text + f" (at most {DROPPED_TOLERANCE:.0%} of a file is tolerated)")
    return errors, warnings
