"""The model manifest: every model of the paper and its baselines, read from results/paper.yaml.

One row of paper.yaml per model holds its published figures and, for the trained suites,
its group (the make target), config, toy config and the model config `make flops` counts.
The benchmark runner, `make flops`, `make tables` and `make bench-models` take their model
lists from here, so a model added there (with its config files) reaches all of them.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .output import REPO_ROOT

PAPER_YAML = REPO_ROOT / "results" / "paper.yaml"
SECTIONS = ("imagenet", "coco", "cityscapes", "baselines")
TRAINED_SUITES = ("coco", "cityscapes")  # the suites `make <suite>` trains; ImageNet is only counted
_PATH_KEYS = ("config", "toy_config", "model_config")


@dataclass(frozen=True)
class Model:
    """One row of the manifest. Paths are absolute (given relative to the repository root)."""

    name: str  # the official config stem: records, tables and work dirs use it
    suite: str  # imagenet | coco | cityscapes
    is_baseline: bool
    paper: dict  # the row as published (figures under their paper.yaml keys)
    group: str | None = None
    config: Path | None = None
    toy_config: Path | None = None
    model_config: Path | None = None  # counted by `make flops`
    arch: str | None = None  # ImageNet: rednet | resnet
    depth: int | None = None
    baseline: str | None = None  # name of the baseline row it is compared with
    input_shape: tuple[int, ...] = ()  # the single image `make flops` counts on
    scope: str | None = None  # OpenMMLab registry scope (mmdet, mmseg) of a trained suite

    def config_for(self, toy: bool) -> Path:
        """The config a run trains with: the toy variant on the built-in toy data."""
        return self.toy_config if toy else self.config


class Manifest:
    """The manifest as read from one paper.yaml."""

    def __init__(self, paper: dict, path: Path = PAPER_YAML):
        self.paper = paper
        self.path = Path(path)
        self.suites: dict[str, dict] = paper.get("suites") or {}
        self.models: list[Model] = [self._model(row, section) for section in SECTIONS
                                    for row in paper.get(section) or []]
        self._by_name = {model.name: model for model in self.models}
        if len(self._by_name) != len(self.models):
            names = [model.name for model in self.models]
            raise ValueError(f"{self.path}: rows named twice: {sorted({n for n in names if names.count(n) > 1})}")

    def _model(self, row: Any, section: str) -> Model:
        if not isinstance(row, dict) or not isinstance(row.get("name"), str):
            raise ValueError(f"{self.path}: a row of {section!r} has no name: {row!r}")
        suite = row.get("suite") if section == "baselines" else section
        if suite not in self.suites:
            raise ValueError(f"{self.path}: {row['name']}: suite {suite!r} is not one of suites {sorted(self.suites)}")
        paths = {key: self._path(row[key]) for key in _PATH_KEYS if row.get(key)}
        if suite in TRAINED_SUITES:
            missing = [key for key in ("group", *_PATH_KEYS) if not row.get(key)]
            if missing:
                raise ValueError(f"{self.path}: {row['name']} ({suite}) lacks {', '.join(missing)}; "
                                 "every trained model names its group, config, toy_config and model_config")
            if row["group"] not in self.suites[suite].get("groups", []):
                raise ValueError(f"{self.path}: {row['name']}: group {row['group']!r} is not listed in "
                                 f"suites.{suite}.groups {self.suites[suite].get('groups')}")
        return Model(name=row["name"], suite=suite, is_baseline=section == "baselines", paper=row,
                     group=row.get("group"), arch=row.get("arch"), depth=row.get("depth"),
                     baseline=row.get("baseline"), input_shape=tuple(self.suites[suite]["input_shape"]),
                     scope=self.suites[suite].get("scope"), **paths)

    @staticmethod
    def _path(value: str) -> Path:
        path = Path(value)
        return path if path.is_absolute() else REPO_ROOT / path

    # ---------------------------------------------------------------- look-ups

    def get(self, name: str) -> Model:
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"{name!r} is not a model of {self.path}; known: {', '.join(self._by_name)}") from None

    def __contains__(self, name: str) -> bool:
        return name in self._by_name

    def default_data(self, suite: str) -> str:
        """Where a trained suite's dataset is looked for when DATA is not given (from the repository root)."""
        return self.suites[suite]["data"]

    def groups(self, suite: str) -> list[str]:
        """The groups (make targets) of a trained suite, in the order `make <suite>` runs them."""
        return list(self.suites[suite].get("groups", []))

    def target_models(self, suite: str, group: str = "all", baselines: bool = False) -> list[Model]:
        """The models a benchmark target runs: the paper's models of the group(s), then
        (with `baselines`) the ResNet-50 baselines of the same group(s)."""
        groups = self.groups(suite) if group == "all" else [group]
        unknown = [g for g in groups if g not in self.groups(suite)]
        if unknown:
            raise ValueError(f"unknown {suite} group {unknown[0]!r}; choose one of {self.groups(suite) + ['all']}")
        chosen = [m for g in groups for m in self.models if m.suite == suite and m.group == g and not m.is_baseline]
        if baselines:
            chosen += [m for g in groups for m in self.models if m.suite == suite and m.group == g and m.is_baseline]
        return chosen

    def toy_config(self, config: str | Path) -> Path:
        """The toy variant of a model's config."""
        target = self._path(str(config)).resolve()
        for model in self.models:
            if model.config is not None and model.config.resolve() == target:
                return model.toy_config
        raise KeyError(f"{config}: not the config of any model of {self.path}")

    def counted(self) -> list[Model]:
        """The models `make flops` counts, in the order of its table: per suite the paper's
        rows, then their baselines (ImageNet rows need an arch, others a model_config)."""
        order = {suite: index for index, suite in enumerate(self.suites)}
        countable = [m for m in self.models if m.arch or m.model_config]
        return sorted(countable, key=lambda m: (order[m.suite], m.is_baseline))  # stable: file order within


def load_paper(path: Path = PAPER_YAML) -> dict:
    """paper.yaml as a dict, with its sections checked; a clear error naming the file otherwise."""
    try:
        import yaml
    except ImportError as error:
        raise ValueError(f"{path}: reading it needs PyYAML, which comes with the `mm` extra (make setup)") from error
    try:
        paper = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise ValueError(f"{path}: not readable YAML ({error})") from error
    missing = [key for key in ("suites", *SECTIONS) if key not in (paper if isinstance(paper, dict) else {})]
    if missing:
        raise ValueError(f"{path}: missing sections {missing}")
    return paper


def load_manifest(path: Path = PAPER_YAML) -> Manifest:
    """The manifest of `path` (default results/paper.yaml)."""
    return Manifest(load_paper(path), path)
