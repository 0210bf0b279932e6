"""`suprem_review import`: revised labels replace the AI's in a raw dataset, versioned, with a report.

REVISED_DIR holds, per case, either
  * `<case>.nii.gz` (any image ending): a whole label map in the dataset's label ids; the classes it
    revises are the sidecar's `classes`, else every class of the dataset; or
  * `<case>/<class>.nii.gz`: one binary mask per revised class (names matched through the label table).
Sidecars (optional): `<case>.json` and, for every case, `revision.json`: {"reviewer": ..., "date":
..., "note": ..., "classes": [...]} (the case's own wins).

For each case the revised classes' voxels are replaced (other classes keep the AI's label), the
previous label map is kept as `revisions/<case>/v<NNN><ending>`, `revisions/history.json` records
who, when, which classes and the voxels added / removed per class, the revised classes become
annotated for that case in `annotated_classes.json`, and preprocessed copies of the case are
removed (with `gt_segmentations` and `annotated_classes.json` refreshed); `suprem_train`,
`suprem_finetune` and `suprem_plan_and_preprocess` see the changed label file against the
preprocessing manifest (preprocessing/manifest.py) and preprocess just the revised cases again. Everything is
checked before anything is written: a case the dataset lacks, a label whose geometry is not its
CT's, an unknown class or label id, a mask that is not binary — one line naming the file.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Union

import numpy as np

from .. import paths
from ..dataset.image_checks import geometry_difference
from ..dataset.raw import (atomic_write_bytes, atomic_write_json, copy_annotated_classes, dataset_classes,
                           label_names, read_annotated_classes, read_json, resolve_dataset,
                           write_annotated_classes)
from ..dataset.cases import IMAGE_ENDINGS, case_name
from ..labels import canonical
from ..dataset.raw import write_image
from ..errors import InputError, MissingFileError

log = logging.getLogger(__name__)
PathLike = Union[str, Path]
SIDECAR_KEYS = ("reviewer", "date", "note", "classes")


@dataclass
class Revision:
    case: str
    source: Path
    label_file: Path  # the dataset's label file (may not exist yet)
    new: np.ndarray
    old: np.ndarray
    classes: List[str]
    meta: Dict = field(default_factory=dict)
    geometry: object = None  # the CT's SimpleITK image (geometry only used)


def _read_sidecar(path: Path) -> Dict:
    if not path.is_file():
        return {}
    d = read_json(path)
    if not isinstance(d, dict):
        raise InputError(f"{path}: expected an object with reviewer / date / note / classes")
    unknown = sorted(set(d) - set(SIDECAR_KEYS))
    if unknown:
        raise InputError(f"{path}: unknown key(s) {', '.join(unknown)} (known: {', '.join(SIDECAR_KEYS)})")
    if "classes" in d and (not isinstance(d["classes"], list) or not all(isinstance(c, str) for c in d["classes"])):
        raise InputError(f"{path}: 'classes' must be a list of class names")
    return d


def _find(folder: Path, stem: str) -> Optional[Path]:
    for end in IMAGE_ENDINGS:
        p = folder / f"{stem}{end}"
        if p.is_file():
            return p
    return None


def _locate(raw: Path, case: str, source: Path, ending: str):
    """(label file, CT file) of `case` in the dataset; ValueError when the dataset has no such case."""
    for split in ("Tr", "Ts"):
        ct = _find(raw / f"images{split}", f"{case}_0000")
        if ct is not None:
            return raw / f"labels{split}" / f"{case}{ending}", ct
    raise InputError(f"{source}: case {case!r} is not in {raw.name} (no images{{Tr,Ts}}/{case}_0000 image)")


def _check_geometry(source: Path, img, ct_file: Path, ct) -> None:
    diff = geometry_difference(img, ct)
    if diff is not None:
        name, a, b = diff
        raise InputError(f"{source}: {name} {tuple(round(v, 4) for v in a)} differs from its CT {ct_file} "
                         f"({tuple(round(v, 4) for v in b)})")


def _read_checked(source: Path, ct_file: Path, ct):
    import SimpleITK as sitk

    try:
        img = sitk.ReadImage(str(source))
    except RuntimeError as e:
        raise InputError(f"{source}: cannot be read as an image ({str(e).strip().splitlines()[-1][:120]})") from None
    _check_geometry(source, img, ct_file, ct)
    arr = sitk.GetArrayFromImage(img)
    if not np.issubdtype(arr.dtype, np.integer):
        if not np.all(np.isfinite(arr)) or not np.array_equal(arr, np.round(arr)):
            raise InputError(f"{source}: a label map must hold integer label ids")
        arr = arr.astype(np.int32)
    return arr


def collect_revisions(revised_dir: PathLike, dataset: Union[int, str]) -> List[Revision]:
    """Read and check every revision of REVISED_DIR against the dataset (no writes)."""
    import SimpleITK as sitk

    rdir = Path(revised_dir)
    if not rdir.is_dir():
        raise MissingFileError(f"{rdir}: no such folder of revised labels")
    raw = paths.raw_root() / resolve_dataset(dataset)
    ds = json.loads((raw / "dataset.json").read_text())
    names = label_names(ds)
    ids = {canonical(n): i + 1 for i, n in enumerate(names)}
    ending = ds.get("file_ending", ".nii.gz")
    common = _read_sidecar(rdir / "revision.json")
    entries: Dict[str, tuple] = {}
    for p in sorted(rdir.iterdir()):
        if p.name.startswith("."):
            continue
        if p.is_file() and p.name.lower().endswith(IMAGE_ENDINGS):
            entries.setdefault(case_name(p), ("map", p))
        elif p.is_dir():
            masks = sorted(f for f in p.iterdir() if f.is_file() and f.name.lower().endswith(IMAGE_ENDINGS)
                           and not f.name.startswith("."))
            if masks:
                if p.name in entries:
                    raise InputError(f"{p}: case {p.name!r} has both a whole label map and single-class masks")
                entries[p.name] = ("masks", p)
    if not entries:
        raise MissingFileError(f"{rdir}: no revised label maps (<case>.nii.gz) or masks (<case>/<class>.nii.gz)")
    out = []
    for case, (kind, src) in sorted(entries.items()):
        meta = {**common, **_read_sidecar(rdir / f"{case}.json")}
        label_file, ct_file = _locate(raw, case, src, ending)
        ct = sitk.ReadImage(str(ct_file))
        if label_file.is_file():
            old = sitk.GetArrayFromImage(sitk.ReadImage(str(label_file))).astype(np.int32)
        else:
            old = np.zeros(sitk.GetArrayFromImage(ct).shape, np.int32)
        new = old.copy()
        if kind == "map":
            arr = _read_checked(src, ct_file, ct)
            bad = sorted(set(np.unique(arr).tolist()) - {0, *ids.values()})
            if bad:
                raise InputError(f"{src}: label id(s) {bad} are not labels of {raw.name} (ids 1..{len(ids)})")
            classes = _classes(meta.get("classes") or names, ids, rdir / f"{case}.json")
            for c in classes:
                new[old == ids[c]] = 0
            for c in classes:
                new[arr == ids[c]] = ids[c]
        else:
            classes = []
            for f in sorted(g for g in src.iterdir() if g.is_file() and g.name.lower().endswith(IMAGE_ENDINGS)
                            and not g.name.startswith(".")):
                c = _classes([case_name(f)], ids, f)[0]
                arr = _read_checked(f, ct_file, ct)
                if not set(np.unique(arr).tolist()) <= {0, 1}:
                    raise InputError(f"{f}: a single-class mask must hold only 0 and 1")
                new[new == ids[c]] = 0
                new[arr == 1] = ids[c]
                classes.append(c)
        out.append(Revision(case, src, label_file, new, old, sorted(classes, key=lambda c: ids[c]), meta, ct))
    return out


def _classes(requested, ids: Dict[str, int], where: Path) -> List[str]:
    return dataset_classes(requested, list(ids), str(where))


def changes(rev: Revision, ids: Dict[str, int]) -> Dict[str, Dict[str, int]]:
    """{class: {'added': voxels, 'removed': voxels}} of every class whose voxels changed."""
    out = {}
    for c, i in ids.items():
        o, n = rev.old == i, rev.new == i
        added, removed = int((n & ~o).sum()), int((o & ~n).sum())
        if added or removed or c in rev.classes:
            out[c] = {"added": added, "removed": removed}
    return out


def _next_version(folder: Path) -> int:
    found = [int(p.name[1:4]) for p in folder.glob("v[0-9][0-9][0-9]*") if p.name[1:4].isdigit()] \
        if folder.is_dir() else []
    return max(found, default=0) + 1


def _invalidate_preprocessed(dataset: str, raw: Path, revs: List[Revision], ending: str) -> List[str]:
    """Remove preprocessed copies of the revised cases; refresh gt_segmentations and annotated classes."""
    pre = paths.preprocessed_root() / dataset
    removed = []
    if not pre.is_dir():
        return removed
    for rev in revs:
        for sub in (d for d in pre.iterdir() if d.is_dir() and d.name != "gt_segmentations"):
            for f in sub.glob(f"{rev.case}*"):
                if f.name.split(".")[0] in (rev.case, f"{rev.case}_seg"):
                    f.unlink()
                    removed.append(str(f))
        gt = pre / "gt_segmentations" / f"{rev.case}{ending}"
        if gt.is_file() and rev.label_file.parent.name == "labelsTr":
            tmp = gt.with_name(f".tmp-{gt.name}")
            shutil.copyfile(rev.label_file, tmp)
            tmp.replace(gt)
    if (pre / "dataset.json").is_file():
        copy_annotated_classes(raw, pre)
    return removed


def import_revisions(revised_dir: PathLike, dataset: Union[int, str], reviewer: Optional[str] = None) -> Dict:
    """Apply every revision (module docstring); returns the report (also written under `revisions/`)."""
    revs = collect_revisions(revised_dir, dataset)  # every check first: nothing written on bad input
    name = resolve_dataset(dataset)
    raw = paths.raw_root() / name
    ds = json.loads((raw / "dataset.json").read_text())
    ids = {canonical(n): i + 1 for i, n in enumerate(label_names(ds))}
    ending = ds.get("file_ending", ".nii.gz")
    annotated = read_annotated_classes(raw, label_names(ds))
    now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    hist_file = raw / "revisions" / "history.json"
    history = json.loads(hist_file.read_text()) if hist_file.is_file() else []
    report = {"dataset": name, "imported_at": now, "source": str(revised_dir), "cases": []}
    for rev in revs:
        vdir = raw / "revisions" / rev.case
        vdir.mkdir(parents=True, exist_ok=True)
        version = _next_version(vdir)
        kept = None
        if rev.label_file.is_file():
            kept = vdir / f"v{version:03d}{ending}"
            tmp = kept.with_name(f".tmp-{kept.name}")
            shutil.copyfile(rev.label_file, tmp)
            tmp.replace(kept)
        rev.label_file.parent.mkdir(parents=True, exist_ok=True)
        ct = rev.geometry
        write_image(rev.label_file, rev.new.astype(np.uint8 if len(ids) < 256 else np.uint16), ct.GetSpacing(),
                    ct.GetOrigin(), np.asarray(ct.GetDirection()).reshape(3, 3))
        entry = {"case": rev.case, "version": version, "previous": str(kept.relative_to(raw)) if kept else None,
                 "label": str(rev.label_file.relative_to(raw)), "source": str(rev.source), "imported_at": now,
                 "reviewer": rev.meta.get("reviewer", reviewer), "date": rev.meta.get("date"),
                 "note": rev.meta.get("note"), "classes": rev.classes, "changes": changes(rev, ids)}
        history.append(entry)
        report["cases"].append(entry)
        if annotated is not None:
            annotated[rev.case] = sorted(set(annotated.get(rev.case, [])) | set(rev.classes))
    atomic_write_json(hist_file, history)
    if annotated is not None:
        write_annotated_classes(raw, annotated)
    report["preprocessed_removed"] = _invalidate_preprocessed(name, raw, revs, ending)
    stamp = now.replace(":", "").replace("+0000", "Z")
    atomic_write_json(raw / "revisions" / f"report_{stamp}.json", report)
    atomic_write_bytes(raw / "revisions" / f"report_{stamp}.txt", format_report(report).encode())
    return report


def format_report(report: Dict) -> str:
    """The report as text: one line per case, then the voxels added / removed per class."""
    lines = [f"{report['dataset']}: {len(report['cases'])} revised case(s) imported {report['imported_at']}"]
    for e in report["cases"]:
        who = ", ".join(str(v) for v in (e["reviewer"], e["date"]) if v)
        lines.append(f"  {e['case']} v{e['version']:03d}" + (f" ({who})" if who else "")
                     + f": revised {', '.join(e['classes'])}")
        for c, d in e["changes"].items():
            if d["added"] or d["removed"]:
                lines.append(f"    {c}: +{d['added']} / -{d['removed']} voxels")
    if report.get("preprocessed_removed"):
        lines.append(f"  removed {len(report['preprocessed_removed'])} stale preprocessed file(s): suprem_train "
                     "and suprem_finetune preprocess the revised cases again before training continues")
    return "\n".join(lines)
