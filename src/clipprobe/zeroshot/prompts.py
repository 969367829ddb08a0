"""Zero-shot prompts: each class's names and the templates they are put into.

`zeroshot.templates` names a prompts file (YAML or JSON). Two shapes:

- keyed by dataset name, as the package's `prompts.json` (the CLIP paper's class names and
  templates, sources cited in it): `{cifar10: {classnames: [...], templates: [...]}, ...}`;
  a user's dataset missing from it gets its class names (an ImageFolder's folder names) in the
  source's own templates where it has them (a `wds:` shard set's
  `zeroshot_classification_templates.txt`), else in `a photo of a {}.`;
- one entry for whatever dataset is configured: `{templates: [...], classnames: ...}`.

`classnames` is a list in label order or a mapping from the dataset's class names; each
value is a name or a list of names (the paper's FER2013 has synonyms); absent or null, the
dataset's own class names with underscores as spaces.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from clipprobe.errors import ClipprobeError

FOLDER_TEMPLATES = ("a photo of a {}.",)


@dataclass(frozen=True)
class Prompts:
    classnames: tuple[tuple[str, ...], ...]   # per class, in label order
    templates: tuple[str, ...]
    source: str

    def texts(self, label: int) -> list[str]:
        """Every prompt of one class: each of its names in each template."""
        return [t.format(name) for name in self.classnames[label] for t in self.templates]


def _open_clip_imagenet() -> dict:
    from open_clip.zero_shot_metadata import (
        IMAGENET_CLASSNAMES,
        OPENAI_IMAGENET_TEMPLATES,
    )
    return {"classnames": list(IMAGENET_CLASSNAMES),
            "templates": [t("{}") for t in OPENAI_IMAGENET_TEMPLATES]}


def _read(path: Path) -> dict:
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as e:
        raise ClipprobeError(f"zeroshot.templates={path}: cannot read it ({e.strerror or e})") from None
    except yaml.YAMLError as e:
        raise ClipprobeError(f"zeroshot.templates={path}: not valid YAML or JSON ({str(e).splitlines()[0]})") from None
    if raw is None:
        raise ClipprobeError(f"zeroshot.templates={path}: the file is empty; give it `templates: [\"a photo of "
                             "a {}.\", ...]` (and optionally `classnames`)")
    if not isinstance(raw, dict):
        raise ClipprobeError(f"zeroshot.templates={path}: expected a mapping with `templates` (or one per dataset)")
    return raw


def _one_slot(template) -> bool:
    """A string with exactly one `{}` and no other format field (CLIP_benchmark's `{c}` is not one)."""
    if not isinstance(template, str) or template.count("{}") != 1:
        return False
    try:
        template.format("x")
    except (IndexError, KeyError, ValueError):
        return False
    return True


def _templates(raw, where: str) -> tuple[str, ...]:
    if not isinstance(raw, list) or not raw:
        raise ClipprobeError(f"{where}: no templates; list at least one, e.g. templates: [\"a photo of a {{}}.\"]")
    for t in raw:
        if not _one_slot(t):
            raise ClipprobeError(f"{where}: template {t!r} must be a string with exactly one {{}} where the "
                                 "class name goes")
    return tuple(raw)


def _names(value, where: str, cls: str) -> tuple[str, ...]:
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or not names or not all(isinstance(n, str) and n.strip() for n in names):
        raise ClipprobeError(f"{where}: class {cls!r} needs a name or a list of names, got {value!r}")
    return tuple(names)


def _classnames(raw, classes: list[str], where: str) -> tuple[tuple[str, ...], ...]:
    if raw is None:
        return tuple((c.replace("_", " "),) for c in classes)
    if isinstance(raw, list):
        if len(raw) != len(classes):
            raise ClipprobeError(f"{where}: {len(raw)} class names for the dataset's {len(classes)} classes; "
                                 "list one per class in label order, or map each class to its name")
        return tuple(_names(v, where, c) for v, c in zip(raw, classes))
    if isinstance(raw, dict):
        missing = [c for c in classes if c not in raw]
        if missing:
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            raise ClipprobeError(f"{where}: dataset class {missing[0]!r}{more} is missing from classnames; "
                                 "add it, or drop classnames to use the dataset's own class names")
        return tuple(_names(raw[c], where, c) for c in classes)
    raise ClipprobeError(f"{where}: classnames must be a list in label order or a mapping from class to name")


def load(path: str | Path, dataset: str, classes: list[str], named: bool, own: dict | None = None) -> Prompts:
    """The prompts of `dataset` (with `classes` in label order) from the file at `path`.

    `named` says whether `dataset` is one of clipprobe's named datasets (else the user's own);
    `own` is the source's `templates` and `templates_source`, where it has them (info.json's).
    """
    path = Path(path)
    raw = _read(path)
    where = f"zeroshot.templates={path}"
    if "templates" not in raw:  # keyed by dataset
        if dataset not in raw:
            if named:
                raise ClipprobeError(f"{where}: no entry for dataset {dataset!r}; add one with its templates "
                                     "(and class names)")
            if own and own.get("templates"):
                return Prompts(_classnames(None, classes, where), _templates(own["templates"], own["templates_source"]),
                               f"the dataset's class names in its templates ({own['templates_source']})")
            names = "classnames.txt" if dataset.startswith("wds:") else \
                "its label column" if dataset.startswith("hf:") else "ImageFolder: folder names"
            return Prompts(_classnames(None, classes, where), FOLDER_TEMPLATES, f"the dataset's class names ({names})")
        raw = raw[dataset]
        where = f"{where} [{dataset}]"
        if not isinstance(raw, dict):
            raise ClipprobeError(f"{where}: expected a mapping with templates and classnames")
        if raw.get("from_open_clip"):
            raw = {**raw, **_open_clip_imagenet()}
    return Prompts(_classnames(raw.get("classnames"), classes, where), _templates(raw.get("templates"), where),
                   str(raw.get("source", path)))
