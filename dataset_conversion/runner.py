"""Run a converter over a source folder: parallel workers, atomic per-case writes, resume, report.

Output: `$nnUNet_raw/DatasetNNN_Name/` with imagesTr/labelsTr (labelled cases), imagesTs
(unlabelled cases), dataset.json (unified class names, `tumor_hosts`, per-case `case_sources`),
annotated_classes.json and conversion_report.{json,txt}. dataset.json also records each source's
licence and citation (`licences`, per source; `case_sources[case].licence`; for one source also
`licence` and `citation`; table in suprem_nnunet/labels/licences.py). A case's files are written to a staging
folder, renamed into place, and only then is its record written: a case without a record is
incomplete and is rewritten by the next run; a case with one is skipped, so a rerun resumes and
gives byte-identical output.
"""
from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import os
import shutil
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Tuple

import numpy as np
import SimpleITK as sitk
from tqdm import tqdm

from suprem_nnunet import paths
from suprem_nnunet.dataset.raw import (atomic_write_json, dataset_name, write_annotated_classes,
                                       write_dataset_json)
from suprem_nnunet.labels.licences import SourceTerms, terms_for

from .base import Converter, LoadedCase, SourceCase
from .errors import BadInputError, ConversionError
from .labelspace import tumor_host_classes, tumor_hosts
from .report import Report
from .registry import create, get

log = logging.getLogger(__name__)

STATE_DIR = ".suprem_conversion"  # per-case records, staging area, run fingerprint


def image_digest(img: sitk.Image) -> str:
    """sha1 of the voxel values, size and spacing: equal for the same scan converted twice."""
    h = hashlib.sha1()
    arr = np.ascontiguousarray(sitk.GetArrayViewFromImage(img))
    h.update(f"{arr.dtype.str}{arr.shape}{np.round(img.GetSpacing(), 4).tolist()}".encode())
    h.update(arr.tobytes())
    return h.hexdigest()


class CaseWriter:
    """Writes one case's files into a dataset folder atomically and records it."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.state = self.folder / STATE_DIR
        self.records = self.state / "cases"
        self.staging = self.state / "staging"

    def prepare(self, fingerprint: Mapping[str, Any]) -> None:
        """Create folders; refuse a folder made by a different conversion; clear stale staging."""
        for sub in ("imagesTr", "labelsTr"):
            (self.folder / sub).mkdir(parents=True, exist_ok=True)
        self.records.mkdir(parents=True, exist_ok=True)
        state_file = self.state / "state.json"
        if state_file.is_file():
            old = json.loads(state_file.read_text())
            if old != json.loads(json.dumps(fingerprint)):
                raise ConversionError(
                    f"{self.folder} was written by another conversion ({old.get('source')}, options "
                    f"{old.get('options')}); choose another dataset id or delete that folder")
        else:
            atomic_write_json(state_file, fingerprint)
        shutil.rmtree(self.staging, ignore_errors=True)
        self.staging.mkdir(parents=True)

    def paths(self, case_id: str, labelled: bool) -> Tuple[Path, Optional[Path]]:
        split = "Tr" if labelled else "Ts"
        return (self.folder / f"images{split}" / f"{case_id}_0000.nii.gz",
                self.folder / "labelsTr" / f"{case_id}.nii.gz" if labelled else None)

    def done(self, case_id: str) -> Optional[Dict]:
        """The record of a completely written case, or None."""
        p = self.records / f"{case_id}.json"
        if not p.is_file():
            return None
        rec = json.loads(p.read_text())
        img, lab = self.paths(case_id, rec["labelled"])
        return rec if img.is_file() and (lab is None or lab.is_file()) else None

    def write(self, record: Dict, image: sitk.Image, label: Optional[sitk.Image],
              image_file: Optional[Path] = None) -> None:
        """Write image (or copy `image_file`) and label via staging, then the record."""
        cid = record["case"]
        img_path, lab_path = self.paths(cid, label is not None)
        img_path.parent.mkdir(parents=True, exist_ok=True)
        tmp_img = self.staging / f"{os.getpid()}-{img_path.name}"
        if image_file is not None:
            shutil.copyfile(image_file, tmp_img)
        else:
            sitk.WriteImage(image, str(tmp_img), useCompression=True)
        tmp_lab = None
        if label is not None:
            tmp_lab = self.staging / f"{os.getpid()}-{lab_path.name}"
            sitk.WriteImage(label, str(tmp_lab), useCompression=True)
        os.replace(tmp_img, img_path)
        if tmp_lab is not None:
            os.replace(tmp_lab, lab_path)
        atomic_write_json(self.records / f"{cid}.json", record)


def label_image(arr: np.ndarray, like: sitk.Image) -> sitk.Image:
    lab = sitk.GetImageFromArray(arr)
    lab.CopyInformation(like)
    return lab


def check_annotated(label_file: Any, record: Mapping[str, Any]) -> None:
    """Raise unless every class present in a case's label map is annotated for it or declared
    partial (positive-only) by its source: a present class can never be 'unknown'."""
    allowed = set(record.get("annotated", ())) | set(record.get("partial", ()))
    missing = [c for c in record.get("classes_present", ()) if c not in allowed]
    if missing:
        raise ConversionError(f"{label_file}: class {missing[0]!r} is present in the label map of case "
                              f"{record['case']} but not among its annotated classes")


def _convert_one(key: str, options: Dict, case: SourceCase, folder: str) -> Tuple[str, Any]:
    """Worker: read, map and write one case. Returns ('ok', record) or ('bad', (file, problem))."""
    conv = create(key, options)
    try:
        loaded: LoadedCase = conv.load(case)
    except BadInputError as e:
        return "bad", (e.path, e.problem)
    labelled = loaded.label is not None
    present = []
    if labelled:
        ids = np.flatnonzero(np.bincount(loaded.label.ravel(), minlength=len(conv.classes) + 1))
        present = [conv.classes[i - 1] for i in ids if i > 0]
    record = {"case": case.case_id, "source": key, "source_id": case.source_id, "split": case.split,
              "labelled": labelled, "classes_present": present, "annotated": loaded.annotated,
              "partial": list(conv.partial_classes) if labelled else [], "image_sha1": image_digest(loaded.image)}
    check_annotated(case.label, record)
    CaseWriter(Path(folder)).write(record, loaded.image,
                                   label_image(loaded.label, loaded.image) if labelled else None)
    return "ok", record


def run_pool(tasks: List[Tuple[str, tuple]], fn: Callable, num_workers: int, desc: str,
             progress: bool) -> Iterable[Tuple[str, Tuple[str, Any]]]:
    """Yield (task id, fn(*args)) for every task, in parallel when `num_workers` > 1."""
    bar = tqdm(total=len(tasks), desc=desc, disable=not progress or not tasks)
    try:
        if num_workers <= 1 or len(tasks) <= 1:
            for tid, args in tasks:
                yield tid, fn(*args)
                bar.update()
            return
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=num_workers, mp_context=ctx) as ex:
            futures = {ex.submit(fn, *args): tid for tid, args in tasks}
            try:
                for fut in as_completed(futures):
                    yield futures[fut], fut.result()
                    bar.update()
            finally:
                for f in futures:
                    f.cancel()
    finally:
        bar.close()


def convert(source: str, input_dir: Path, dataset_id: int, name: Optional[str] = None,
            num_workers: int = 1, skip_bad: bool = False, options: Optional[Mapping[str, Any]] = None,
            raw_root: Optional[Path] = None, progress: bool = True) -> Report:
    """Convert `input_dir` (a `source` download) into `DatasetNNN_name`; returns the report.

    Without `skip_bad` the first bad case raises `BadInputError`; with it, bad cases are skipped
    and listed in the report.
    """
    info = get(source)
    conv: Converter = create(source, options)
    input_dir = Path(input_dir)
    if not input_dir.is_dir():
        raise BadInputError(input_dir, "input folder not found")
    cases = conv.discover(input_dir)
    if not cases:
        raise BadInputError(input_dir, f"no {info.title} cases found (expected layout: {info.layout})")
    folder = Path(raw_root or paths.raw_root()) / dataset_name(dataset_id, name or info.default_name)
    writer = CaseWriter(folder)
    created = not folder.exists()
    try:
        return _convert_cases(source, conv, cases, folder, writer, num_workers, skip_bad, progress)
    except BaseException:
        # nothing half-written: staged files go; so does a folder this run created and completed no case in
        # (completed cases stay, recorded, so that a rerun resumes)
        if created and not any(writer.records.glob("*.json")):
            shutil.rmtree(folder, ignore_errors=True)
        else:
            shutil.rmtree(writer.staging, ignore_errors=True)
        raise


def _convert_cases(source: str, conv: Converter, cases: List[SourceCase], folder: Path, writer: CaseWriter,
                   num_workers: int, skip_bad: bool, progress: bool) -> Report:
    info = get(source)
    writer.prepare({"source": source, "options": conv.options, "classes": conv.classes})
    report = Report(source, folder.name, list(conv.classes), partial_classes=list(conv.partial_classes),
                    partial_note=conv.partial_note)

    records: Dict[str, Dict] = {}
    tasks = []
    for c in cases:
        if c.skip_reason:
            report.excluded.append({"case": c.case_id, "file": str(c.image or c.label), "reason": c.skip_reason})
            continue
        if c.problem:
            if not skip_bad:
                raise BadInputError(*c.problem)
            report.skipped.append({"case": c.case_id, "file": c.problem[0], "reason": c.problem[1]})
            log.warning("skipped %s: %s: %s", c.case_id, *c.problem)
            continue
        rec = writer.done(c.case_id)
        if rec is not None:
            records[c.case_id] = rec
        else:
            tasks.append((c.case_id, (source, conv.options, c, str(folder))))
    if records:
        log.info("%s: %d cases already converted, %d to go", folder.name, len(records), len(tasks))
    for cid, (status, value) in run_pool(tasks, _convert_one, num_workers, f"{source} -> {folder.name}", progress):
        if status == "ok":
            records[cid] = value
        elif not skip_bad:
            raise BadInputError(*value)
        else:
            report.skipped.append({"case": cid, "file": value[0], "reason": value[1]})
            log.warning("skipped %s: %s: %s", cid, *value)
    report.cases = [records[k] for k in sorted(records)]
    report.skipped.sort(key=lambda d: d["case"])
    terms = terms_for(source)
    finish_dataset(folder, report, description=f"{info.title} converted by suprem_convert ({source})",
                   reference=info.reference, licence=terms.licence.id, citation=terms.citation.reference)
    return report


def finish_dataset(folder: Path, report: Report, licences: Optional[Mapping[str, SourceTerms]] = None,
                   **extra) -> None:
    """Write dataset.json, annotated_classes.json and the report from the case records. Each case's
    source gets its licence and citation from `licences` (what merged inputs recorded), else from the
    table (labels/licences.py)."""
    labelled = [r for r in report.cases if r["labelled"]]
    terms = {s: (licences or {}).get(s) or terms_for(s) for s in sorted({r["source"] for r in report.cases})}
    if any(not r["labelled"] for r in report.cases):
        (folder / "imagesTs").mkdir(exist_ok=True)
    write_annotated_classes(folder, {r["case"]: r["annotated"] for r in labelled})
    partial = {r["case"]: r["partial"] for r in labelled if r.get("partial")}
    if partial:
        extra["partial_classes"] = partial
    write_dataset_json(
        folder, report.classes, len(labelled), name=folder.name.split("_", 1)[1], source=report.source,
        tumor_hosts=tumor_hosts(report.classes), tumor_host_classes=tumor_host_classes(report.classes),
        case_sources={r["case"]: {"source": r["source"], "source_id": r["source_id"], "split": r["split"],
                                  "image_sha1": r["image_sha1"], "licence": terms[r["source"]].licence.id}
                      for r in report.cases},
        licences={s: {k: v for k, v in t.to_dict().items() if k != "source"} for s, t in terms.items()},
        **extra)
    report.write(folder)
    log.info(report.summary().splitlines()[0])
