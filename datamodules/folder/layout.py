"""Which file is which class, in which split: the three ways people lay out their own images.

1. ``root/<class>/**/<file>`` (torchvision's ``ImageFolder``): one pool, split here, stratified by class;
2. ``root/{train,val[,test]}/<class>/**/<file>``: the splits as the folders say;
3. a CSV of ``path,label`` (paths relative to the CSV; a ``split`` column, when present, names the split).

Files nested below a class folder count; names starting with ``.`` are skipped. Class indices follow the
sorted class names, as in ``ImageFolder``.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from datamodules.images.files import IMAGE_SUFFIXES

SPLIT_FOLDERS = ("train", "val", "test")


@dataclass
class Layout:
    """Files with their class index and split (``None``: split by :func:`datamodules.base.splits.stratified_split`)."""

    root: Path
    classes: list[str]
    files: list[Path] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    splits: list[str | None] = field(default_factory=list)
    source: str = "class folders"


def images_below(folder: Path) -> Iterator[Path]:
    """The image files below ``folder``, sorted, hidden names and folders left out.

    ``os.walk``: one directory read per folder and no ``stat`` per file (``rglob`` + ``is_file`` stats each one,
    and the cache's manifest stats them again); like ``rglob``, it does not descend into linked folders.
    """
    found = []
    for parent, folders, names in os.walk(folder):
        folders[:] = [name for name in folders if not name.startswith(".")]
        found += [os.path.join(parent, name) for name in names
                  if not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES]
    yield from map(Path, sorted(found, key=lambda name: name.split(os.sep)))  # Path's order, not its slow __lt__


def _class_folders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def discover(root: str | Path, csv_file: str | None = None) -> Layout:
    """The layout of ``root`` (or of ``csv_file``); one-line errors for what cannot be a data set."""
    root = Path(root)
    if csv_file is not None:
        return _from_csv(Path(csv_file))
    if not root.is_dir():
        raise FileNotFoundError(f"--data.root {root}: no such folder; pass a folder with one sub-folder per class")
    present = [name for name in SPLIT_FOLDERS if (root / name).is_dir()]
    if "train" in present:
        if "val" not in present:
            raise ValueError(f"--data.root {root} has train/ but no val/; add val/<class>/ folders, or put the "
                             "class folders directly under the root to have a validation split made")
        classes = sorted({p.name for name in present for p in _class_folders(root / name)})
        layout = Layout(root, classes, source="train/val/test folders")
        for name in present:
            for folder in _class_folders(root / name):
                for path in images_below(folder):
                    layout.files.append(path)
                    layout.labels.append(classes.index(folder.name))
                    layout.splits.append(name)
        return layout
    folders = _class_folders(root)
    layout = Layout(root, [f.name for f in folders])
    for index, folder in enumerate(folders):
        for path in images_below(folder):
            layout.files.append(path)
            layout.labels.append(index)
            layout.splits.append(None)
    return layout


def _read_csv_rows(path: Path) -> tuple[list[tuple[int, dict]], list[str]]:
    """(line number, row) of each data row, and the header.

    ``utf-8-sig``: a CSV saved by Excel starts with a byte-order mark, which would otherwise be part of the first
    column's name.
    """
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            rows = [(reader.line_num, row) for row in reader]  # line_num: where the row ends, quoted newlines too
            return rows, list(reader.fieldnames or [])
    except UnicodeDecodeError as err:
        raise ValueError(f"--data.csv {path}: not UTF-8 text (byte {err.start}); save it as CSV UTF-8") from None
    except csv.Error as err:
        raise ValueError(f"--data.csv {path}: not a readable CSV ({err})") from None


def _from_csv(path: Path) -> Layout:
    """The CSV layout; one line for a row that cannot be used (its line number), a duplicate row dropped with a
    warning, the same file given two labels or two splits refused.
    """
    if not path.is_file():
        raise FileNotFoundError(f"--data.csv {path}: no such file; pass a CSV with path,label columns")
    rows, columns = _read_csv_rows(path)
    if not {"path", "label"} <= set(columns):
        has = ", ".join(sorted(c.strip() for c in columns if c)) or "none"
        raise ValueError(f"--data.csv {path}: needs the columns path,label (has {has})")
    entries: dict[Path, tuple[int, str, str | None]] = {}
    duplicates: list[int] = []
    for number, row in rows:
        file, label = (row.get("path") or "").strip(), (row.get("label") or "").strip()
        if not file:
            raise ValueError(f"--data.csv {path} line {number}: no path; every row needs path,label")
        if not label:
            raise ValueError(f"--data.csv {path} line {number}: {file} has no label; every row needs path,label")
        split = (row.get("split") or "").strip() or None
        if split is not None and split not in SPLIT_FOLDERS:
            raise ValueError(f"--data.csv {path} line {number}: split {split!r} is not one of "
                             f"{', '.join(SPLIT_FOLDERS)}")
        resolved = (path.parent / file).resolve()
        if resolved in entries:
            first, first_label, first_split = entries[resolved]
            if (first_label, first_split) != (label, split):
                raise ValueError(f"--data.csv {path} lines {first} and {number}: {file} is given as "
                                 f"{first_label!r} ({first_split or 'no split'}) and {label!r} "
                                 f"({split or 'no split'}); keep one row per file")
            duplicates.append(number)
            continue
        entries[resolved] = (number, label, split)
    if duplicates:
        from lightning.pytorch.utilities import rank_zero_warn

        shown = ", ".join(map(str, duplicates[:10])) + (" ..." if len(duplicates) > 10 else "")
        rank_zero_warn(f"--data.csv {path}: {len(duplicates)} duplicate row(s) dropped (lines {shown})")
    classes = sorted({label for _, label, _ in entries.values()})
    layout = Layout(path.parent, classes, source=f"CSV {path.name}")
    for resolved, (_, label, split) in entries.items():
        layout.files.append(resolved)
        layout.labels.append(classes.index(label))
        layout.splits.append(split)
    return layout
