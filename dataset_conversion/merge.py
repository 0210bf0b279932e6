"""Merge converted datasets into one pre-training dataset, dropping duplicate scans.

Every case keeps its source tag (dataset.json `case_sources`), its source's licence and citation
(dataset.json `licences`), its annotated and its partial classes; labels are renumbered into the union label list. Duplicates removed:
  * MSD Task03 Liver `liver_N` is LiTS `volume-N` (same scans): the LiTS copy is kept;
  * Pancreas-CT PANCREAS_0025 and PANCREAS_0070, removed upstream as duplicate scans;
  * any group of cases holding the same scan, found without id tables: voxel-identical images
    (same sha1 recorded at conversion) and near-duplicates recognised by their image thumbnails
    (`duplicates.py`: robust to voxel type, header spacing and axis flips; e.g. CT-ORG's float32
    copies of LiTS, AbdomenCT-1K's copies of LiTS/KiTS/MSD/NIH scans). The case from the dataset
    listed first is kept; the classes only a duplicate annotates are added to it when the classes
    both annotate agree (`label_merge.py`), else the kept case keeps its own labels only. Every
    group is listed in the report (`duplicates`).
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
from suprem_nnunet.labels import canonical, host_of
from suprem_nnunet.labels.licences import SourceTerms, dataset_terms

from .duplicates import SearchStats, group_duplicates
from .errors import BadInputError, ConversionError
from .imageio import orientation_code
from .label_merge import align, combine
from .labelspace import remap_lut, unified_order
from .report import Report
from .runner import CaseWriter, check_annotated, finish_dataset, label_image, run_pool
from .sources.pancreas_ct import REMOVED_DUPLICATES
from .thumbnail import Fingerprint

log = logging.getLogger(__name__)

FINGERPRINT_VERSION = "thumbnail-v1"


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


def _read(path: Path) -> sitk.Image:
    try:
        return sitk.ReadImage(str(path))
    except RuntimeError:
        raise BadInputError(path, "unreadable or corrupt file") from None


def _lps_label(path: Path, from_classes: List[str], to_classes: List[str]) -> Tuple[np.ndarray, sitk.Image]:
    """A dataset's label file renumbered into `to_classes`, as an LPS-ordered array, and the image."""
    lab = _read(path)
    arr = sitk.GetArrayViewFromImage(lab)
    if arr.size and int(arr.max()) > len(from_classes):
        raise BadInputError(path, f"label value {int(arr.max())} is not in its dataset.json")
    lps = sitk.GetArrayFromImage(sitk.DICOMOrient(lab, "LPS"))
    return remap_lut(from_classes, to_classes)[lps], lab


def _fingerprint_one(image: str, cache: str) -> Tuple[str, Any]:
    """Worker: the thumbnail fingerprint of one image (cached as .npz)."""
    cache_path = Path(cache)
    if cache_path.is_file():
        with np.load(cache_path) as d:
            return "ok", Fingerprint.from_npz(d)
    try:
        fp = Fingerprint.of(_read(Path(image)))
    except BadInputError as e:
        return "bad", (e.path, e.problem)
    tmp = cache_path.with_name(cache_path.name + ".tmp.npz")
    np.savez(tmp, **fp.to_npz())
    tmp.replace(cache_path)
    return "ok", fp


def _merge_one(src_folder: str, case: str, ending: str, from_classes: List[str], to_classes: List[str],
               record: Dict, folder: str, donors: Sequence[Dict] = ()) -> Tuple[str, Any]:
    """Worker: copy one case's image, renumber its label (adding what agreeing duplicates
    annotate), write both and the record."""
    lab_path = Path(src_folder) / "labelsTr" / f"{case}{ending}"
    try:
        out, lab = _lps_label(lab_path, from_classes, to_classes)
        annotated = list(record["annotated"])
        outcomes = []
        for d in donors:
            dup, _ = _lps_label(Path(d["label"]), d["classes"], to_classes)
            res = combine(out, align(dup, d["flip"], out.shape), to_classes, annotated, d["annotated"])
            out = res.label
            if res.agree:
                annotated = sorted(set(annotated) | set(res.added))
            outcomes.append({"case": d["case"], "labels": ("merged" if res.agree else "disagree"),
                             "dice": res.dice, "added": res.added})
    except BadInputError as e:
        return "bad", (e.path, e.problem)
    back = sitk.GetImageFromArray(out)
    lps_ref = sitk.DICOMOrient(lab, "LPS")
    back.CopyInformation(lps_ref)
    out = sitk.GetArrayFromImage(sitk.DICOMOrient(back, orientation_code(lab)))
    ids = np.flatnonzero(np.bincount(out.ravel(), minlength=len(to_classes) + 1))
    record = dict(record, annotated=annotated, classes_present=[to_classes[i - 1] for i in ids if i > 0])
    if outcomes:
        record["duplicates"] = outcomes
    check_annotated(lab_path, record)
    CaseWriter(Path(folder)).write(record, None, label_image(out, lab),
                                   image_file=Path(src_folder) / "imagesTr" / f"{case}_0000{ending}")
    return "ok", record


def declared_hosts(dataset_json: Dict, classes: Sequence[str]) -> Dict[str, Optional[str]]:
    """{class: the host organ it lies in, or None} as a dataset means it: its dataset.json
    `tumor_hosts` when it has one (what a converter wrote, or someone edited), else the label table's."""
    declared = dataset_json.get("tumor_hosts")
    if not isinstance(declared, dict):
        return {c: host_of(c) for c in classes}
    out = {}
    for c in classes:
        h = declared.get(c)
        out[c] = canonical(h) if isinstance(h, str) and h.strip() else None
    return out


def check_class_meanings(inputs: Sequence[Tuple[Path, Dict, Sequence[str]]]) -> None:
    """ConversionError (one line) when two datasets give a class of the same name different meanings
    (different host organs) or a dataset gives one of the label table's tumours another host than
    the table: merged, their voxels would become one class. `inputs`: (dataset.json path, its
    content, its class names)."""
    seen: Dict[str, Tuple[Optional[str], Path]] = {}
    for path, dj, classes in inputs:
        try:
            hosts = declared_hosts(dj, classes)
        except ValueError as e:  # a host that is no class name ('background', '')
            raise ConversionError(f"{path}: tumor_hosts: {e}") from None
        for c, host in hosts.items():
            first = seen.setdefault(c, (host, path))
            if first[0] != host:
                raise ConversionError(
                    f"{path}: class {c!r} lies in {host or 'no host organ'} there but in "
                    f"{first[0] or 'no host organ'} in {first[1]}: the sources disagree on what {c!r} means; "
                    "rename the class in one of them before merging")
            table = host_of(c)
            if table is not None and host != table:
                raise ConversionError(f"{path}: class {c!r} lies in {host or 'no host organ'} there, but the label "
                                      f"table defines {c!r} as a tumour of the {table}; fix tumor_hosts or rename it")


def _flip_text(flip) -> str:
    axes = [a for a, f in zip("zyx", flip) if f]
    return f", voxels flipped along {'/'.join(axes)}" if axes else ""


def merge(datasets: Sequence[Union[int, str]], dataset_id: int, name: str = "Merged", num_workers: int = 1,
          raw_root: Optional[Path] = None, progress: bool = True) -> Report:
    """Merge the labelled cases of `datasets` (ids or names) into `DatasetNNN_name`; list the
    preferred copy's dataset first (it is kept when a scan occurs in several datasets)."""
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
        cl = label_names(dj)
        try:  # every class an annotated_classes.json names must be a label of its dataset.json
            annotated = read_annotated_classes(f, cl) or {}
        except ValueError as e:
            raise ConversionError(str(e)) from None
        inputs.append((f, dj, cl, annotated))
    check_class_meanings([(f / "dataset.json", dj, cl) for f, dj, cl, _ in inputs])  # before anything is written
    classes = unified_order(c for _, _, cl, _ in inputs for c in cl)
    report = Report("merge", out_folder.name, classes)
    writer = CaseWriter(out_folder)
    writer.prepare({"source": "merge", "options": {"datasets": [f.name for f in folders],
                                                   "duplicates": FINGERPRINT_VERSION}, "classes": classes})

    # known duplicates between sources first, so the LiTS copy wins whatever the order
    entries = []
    terms: Dict[str, SourceTerms] = {}
    for f, dj, cl, annotated in inputs:
        ending = dj.get("file_ending", ".nii.gz")
        sources = dj.get("case_sources", {})
        partial = dj.get("partial_classes", {})
        for lab in sorted((f / "labelsTr").glob(f"*{ending}")):
            case = lab.name[: -len(ending)]
            info = sources.get(case, {"source": f.name, "source_id": case, "split": "train", "image_sha1": None})
            terms.setdefault(info["source"], dataset_terms(dj, info["source"]))
            entries.append(dict(folder=f, ending=ending, classes=cl, case=case, info=info,
                                annotated=annotated.get(case, cl), partial=partial.get(case, [])))
    report.partial_classes = unified_order(c for e in entries for c in e["partial"])
    report.partial_note = "declared per case by the input datasets (dataset.json partial_classes)"
    keys = {duplicate_key(e["info"]["source"], e["info"]["source_id"]): e for e in entries
            if e["info"]["source"] == "lits"}
    survivors, seen_sha, seen_case, same_as = [], {}, {}, {}
    for e in entries:
        f, case, info = e["folder"], e["case"], e["info"]
        src, sid, sha = info["source"], info["source_id"], info.get("image_sha1")
        key = duplicate_key(src, sid)
        reason = None
        if removed_upstream(src, sid):
            reason = "Pancreas-CT duplicate scan removed upstream"
        elif src == "msd_task03" and key in keys:
            reason = f"same scan as LiTS {keys[key]['info']['source_id']} ({keys[key]['case']})"
        elif case in seen_case:
            raise ConversionError(f"case id {case} occurs in {seen_case[case]} and {f.name} with different images")
        if reason:
            report.excluded.append({"case": case, "file": str(f / "labelsTr" / f"{case}{e['ending']}"),
                                    "reason": reason})
            continue
        seen_case[case] = f.name
        if sha and sha in seen_sha:
            same_as[len(survivors)] = seen_sha[sha]  # voxel-identical: no thumbnail needed
        elif sha:
            seen_sha[sha] = len(survivors)
        survivors.append(e)

    # near-duplicates by image thumbnails (cached per case in the output's state folder)
    thumbs = writer.state / "thumbnails"
    thumbs.mkdir(exist_ok=True)
    todo = [(i, (str(e["folder"] / "imagesTr" / f"{e['case']}_0000{e['ending']}"),
                 str(thumbs / f"{e['case']}.npz"))) for i, e in enumerate(survivors) if i not in same_as]
    fps: Dict[int, Fingerprint] = {}
    for i, (status, value) in run_pool(todo, _fingerprint_one, num_workers, "fingerprints", progress):
        if status != "ok":
            raise BadInputError(*value)
        fps[i] = value
    order = sorted(fps)
    stats = SearchStats()
    groups = {order[g.kept]: [(order[m], score, flip) for m, score, flip in g.others]
              for g in group_duplicates([fps[i] for i in order], stats)}
    for i, first in same_as.items():  # a voxel-identical copy joins its first copy's group
        kept, flip = first, (False, False, False)
        for k, ms in groups.items():
            for m, _, fl in ms:
                if m == first:
                    kept, flip = k, fl
        groups.setdefault(kept, []).append((i, 1.0, flip))
    log.info("duplicate search: %d cases, %d coarse and %d detail comparisons, %d groups",
             stats.cases, stats.coarse_pairs, stats.detail_pairs, len(groups))

    donors: Dict[int, List[Dict]] = {}
    for kept, members in sorted(groups.items()):
        k = survivors[kept]
        group = {"kept": k["case"], "source": k["info"]["source"], "dataset": k["folder"].name, "members": []}
        for m, score, flip in sorted(members):
            e = survivors[m]
            identical = m in same_as
            reason = (f"identical image to {k['case']}" if identical else
                      f"same scan as {k['case']} (near-duplicate, thumbnail correlation {score:.3f}{_flip_text(flip)})")
            report.excluded.append({"case": e["case"], "file": str(e["folder"] / "labelsTr" / f"{e['case']}{e['ending']}"),
                                    "reason": reason})
            group["members"].append({"case": e["case"], "source": e["info"]["source"],
                                     "source_id": e["info"]["source_id"], "dataset": e["folder"].name,
                                     "correlation": round(score, 4), "flip": list(flip), "identical": identical})
            donors.setdefault(kept, []).append({
                "case": e["case"], "label": str(e["folder"] / "labelsTr" / f"{e['case']}{e['ending']}"),
                "classes": e["classes"], "annotated": sorted(e["annotated"]), "flip": tuple(flip)})
        report.duplicates.append(group)

    excluded = {x["case"] for x in report.excluded}
    tasks = []
    for i, e in enumerate(survivors):
        if e["case"] in excluded:
            continue
        info = e["info"]
        record = {"case": e["case"], "source": info["source"], "source_id": info["source_id"],
                  "split": info.get("split", "train"), "labelled": True, "annotated": sorted(e["annotated"]),
                  "partial": sorted(e["partial"]), "image_sha1": info.get("image_sha1"),
                  "from_dataset": e["folder"].name}
        tasks.append((e["case"], (str(e["folder"]), e["case"], e["ending"], e["classes"], classes, record,
                                  str(out_folder), donors.get(i, []))))

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
    for g in report.duplicates:
        outcome = {d["case"]: d for d in records[g["kept"]].get("duplicates", [])}
        for m in g["members"]:
            m.update({k: v for k, v in outcome.get(m["case"], {}).items() if k != "case"})
    report.cases = [records[k] for k in sorted(records)]
    finish_dataset(out_folder, report, licences=terms, description="suprem_convert merge of " + ", ".join(f.name for f in folders),
                   merged_from=[f.name for f in folders])
    return report
