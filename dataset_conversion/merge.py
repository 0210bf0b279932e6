"""Merge converted datasets into one pre-training dataset, dropping known duplicates.

Every case keeps its source tag (dataset.json `case_sources`) and its annotated classes; labels
are renumbered into the union label list. Duplicates removed:
  * MSD Task03 Liver `liver_N` is LiTS `volume-N` (same scans): the LiTS copy is kept;
  * Pancreas-CT PANCREAS_0025 and PANCREAS_0070, removed upstream as duplicate scans;
  * any two cases whose images are voxel-identical (same sha1 recorded at conversion): the one
    from the dataset listed first is kept.
"""
from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import SimpleITK as sitk

from suprem_nnunet import paths
from suprem_nnunet.dataset.raw import dataset_name, label_names, read_annotated_classes, resolve_dataset

from .errors import BadInputError, ConversionError
from .labelspace import remap_lut, unified_order
from .report import Report
from .runner import CaseWriter, finish_dataset, label_image, run_pool
from .sources.pancreas_ct import REMOVED_DUPLICATES

log = logging.getLogger(__name__)


def duplicate_key(source: str, source_id: str) -> Optional[Tuple[str, str]]:
    """A key shared by cases known to be the same scan in two sources (MSD Task03 = LiTS)."""
    if source == "msd_task03":
        m = re.fullmatch(r"liver_(\d+)", source_id)
        return ("lits", str(int(m.group(1)))) if m else None
    if source == "lits":
        m = re.fullmatch(r"volume-(\d+)", source_id)
        return ("lits", str(int(m.group(1)))) if m else None
    return None


def removed_upstream(source: str, source_id: str) -> bool:
    return source == "pancreas_ct" and source_id[-4:] in REMOVED_DUPLICATES


def _merge_one(src_folder: str, case: str, ending: str, from_classes: List[str], to_classes: List[str],
               record: Dict, folder: str) -> Tuple[str, Any]:
    """Worker: copy one case's image, renumber its label, write both and the record."""
    lab_path = Path(src_folder) / "labelsTr" / f"{case}{ending}"
    try:
        lab = sitk.ReadImage(str(lab_path))
    except RuntimeError:
        return "bad", (str(lab_path), "unreadable or corrupt file")
    arr = sitk.GetArrayViewFromImage(lab)
    if arr.size and int(arr.max()) > len(from_classes):
        return "bad", (str(lab_path), f"label value {int(arr.max())} is not in its dataset.json")
    out = remap_lut(from_classes, to_classes)[arr]
    ids = np.flatnonzero(np.bincount(out.ravel(), minlength=len(to_classes) + 1))
    record = dict(record, classes_present=[to_classes[i - 1] for i in ids if i > 0])
    CaseWriter(Path(folder)).write(record, None, label_image(out, lab),
                                   image_file=Path(src_folder) / "imagesTr" / f"{case}_0000{ending}")
    return "ok", record


def merge(datasets: Sequence[Union[int, str]], dataset_id: int, name: str = "Merged", num_workers: int = 1,
          raw_root: Optional[Path] = None, progress: bool = True) -> Report:
    """Merge the labelled cases of `datasets` (ids or names) into `DatasetNNN_name`."""
    root = Path(raw_root or paths.raw_root())
    folders = [root / resolve_dataset(d, root) for d in datasets]
    if len(set(folders)) != len(folders):
        raise ConversionError("a dataset is listed twice")
    out_folder = root / dataset_name(dataset_id, name)
    if out_folder in folders:
        raise ConversionError(f"the merged dataset {out_folder.name} cannot also be an input")
    inputs = []
    for f in folders:
        try:
            dj = json.loads((f / "dataset.json").read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise BadInputError(f / "dataset.json", f"unreadable ({type(e).__name__})") from None
        inputs.append((f, dj, label_names(dj), read_annotated_classes(f) or {}))
    classes = unified_order(c for _, _, cl, _ in inputs for c in cl)
    report = Report("merge", out_folder.name, classes)

    tasks, seen_key, seen_sha, seen_case = [], {}, {}, {}
    # known duplicates between sources first, so the LiTS copy wins whatever the order
    entries = []
    for f, dj, cl, annotated in inputs:
        ending = dj.get("file_ending", ".nii.gz")
        sources = dj.get("case_sources", {})
        for lab in sorted((f / "labelsTr").glob(f"*{ending}")):
            case = lab.name[: -len(ending)]
            info = sources.get(case, {"source": f.name, "source_id": case, "split": "train", "image_sha1": None})
            entries.append((f, ending, cl, case, info, annotated.get(case, cl)))
    keys = {duplicate_key(e[4]["source"], e[4]["source_id"]): e for e in entries if e[4]["source"] == "lits"}
    for f, ending, cl, case, info, annotated in entries:
        src, sid, sha = info["source"], info["source_id"], info.get("image_sha1")
        key = duplicate_key(src, sid)
        reason = None
        if removed_upstream(src, sid):
            reason = "Pancreas-CT duplicate scan removed upstream"
        elif src == "msd_task03" and key in keys:
            reason = f"same scan as LiTS {keys[key][4]['source_id']} ({keys[key][3]})"
        elif sha and sha in seen_sha:
            reason = f"identical image to {seen_sha[sha]}"
        elif case in seen_case:
            raise ConversionError(f"case id {case} occurs in {seen_case[case]} and {f.name} with different images")
        if reason:
            report.excluded.append({"case": case, "file": str(f / "labelsTr" / f"{case}{ending}"), "reason": reason})
            continue
        if sha:
            seen_sha[sha] = case
        seen_case[case] = f.name
        record = {"case": case, "source": src, "source_id": sid, "split": info.get("split", "train"),
                  "labelled": True, "annotated": sorted(annotated), "image_sha1": sha, "from_dataset": f.name}
        tasks.append((case, (str(f), case, ending, cl, classes, record, str(out_folder))))

    writer = CaseWriter(out_folder)
    writer.prepare({"source": "merge", "options": {"datasets": [f.name for f in folders]}, "classes": classes})
    records, todo = {}, []
    for cid, args in tasks:
        rec = writer.done(cid)
        if rec is not None:
            records[cid] = rec
        else:
            todo.append((cid, args))
    for cid, (status, value) in run_pool(todo, _merge_one, num_workers, f"merge -> {out_folder.name}", progress):
        if status != "ok":
            raise BadInputError(*value)
        records[cid] = value
    report.cases = [records[k] for k in sorted(records)]
    finish_dataset(out_folder, report, description="suprem_convert merge of " + ", ".join(f.name for f in folders),
                   merged_from=[f.name for f in folders])
    return report
