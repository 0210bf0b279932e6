"""Stored scores and the review queue: a ranking of what is stored, knowing no scorer.

`scores/<case>.json` holds {"case", "sources", "classes": {class: {key: value}}, "importance",
"importance_max"}, each class carrying its "importance". The queue reads these files, sorts
(case, class) rows by importance (highest first; NaN last) and writes every stored key as a column,
so a new scorer adds columns without a change here.
"""
from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Dict, List, Mapping, Union

from ..dataset.raw import atomic_write_bytes, atomic_write_json
from ..errors import InputError, MissingFileError

PathLike = Union[str, Path]
FIRST = ["rank", "case", "class", "importance", "case_importance", "volume_ml"]


def _clean(v):
    if isinstance(v, float) and (math.isnan(v) or math.isinf(v)):
        return None
    return round(v, 6) if isinstance(v, float) else v


def store_scores(folder: PathLike, case: str, record: Mapping) -> Path:
    """Write one case's record to `folder/<case>.json` (NaN stored as null)."""
    rec = {"case": case, **{k: v for k, v in record.items() if k != "case"}}
    rec["classes"] = {c: {k: _clean(v) for k, v in vals.items()} for c, vals in rec.get("classes", {}).items()}
    for k in ("importance", "importance_max"):
        if k in rec:
            rec[k] = _clean(rec[k])
    path = Path(folder) / f"{case}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, rec)
    return path


def read_scores(folder: PathLike) -> Dict[str, Dict]:
    """{case: record} of every stored score file in `folder`."""
    folder = Path(folder)
    files = sorted(p for p in folder.glob("*.json") if not p.name.startswith("."))
    if not files:
        raise MissingFileError(f"{folder}: no stored scores (<case>.json)")
    out = {}
    for f in files:
        try:
            rec = json.loads(f.read_text())
        except json.JSONDecodeError as e:
            raise InputError(f"{f}: not valid JSON ({e})") from None
        if not isinstance(rec, dict) or "classes" not in rec:
            raise InputError(f"{f}: not a stored score record (no 'classes')")
        out[rec.get("case", f.stem)] = rec
    return out


def _key(v) -> float:
    return -float(v) if v is not None and not (isinstance(v, float) and math.isnan(v)) else math.inf


def rank_rows(records: Mapping[str, Mapping]) -> List[Dict]:
    """(case, class) rows ranked by importance, highest first."""
    rows = []
    for case, rec in records.items():
        for c, vals in rec["classes"].items():
            rows.append({"case": case, "class": c, **vals, "case_importance": rec.get("importance")})
    rows.sort(key=lambda r: (_key(r.get("importance")), r["case"], r["class"]))
    for i, r in enumerate(rows):
        r["rank"] = i + 1
    return rows


def rank_cases(records: Mapping[str, Mapping]) -> List[Dict]:
    """One row per case ranked by case importance, with its top class."""
    rows = []
    for case, rec in records.items():
        top = max(rec["classes"].items(), key=lambda kv: -_key(kv[1].get("importance")), default=(None, {}))
        rows.append({"case": case, "importance": rec.get("importance"), "importance_max": rec.get("importance_max"),
                     "top_class": top[0], "top_class_importance": top[1].get("importance")})
    rows.sort(key=lambda r: (_key(r["importance"]), r["case"]))
    for i, r in enumerate(rows):
        r["rank"] = i + 1
    return rows


def _csv(rows: List[Dict], first: List[str]) -> bytes:
    keys = first + sorted({k for r in rows for k in r} - set(first))
    buf = io.StringIO()
    w = csv.DictWriter(buf, keys, lineterminator="\n", extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if _clean(r.get(k)) is None else _clean(r.get(k))) for k in keys})
    return buf.getvalue().encode()


def write_queue(records: Mapping[str, Mapping], out_dir: PathLike) -> List[Path]:
    """`review_queue.csv` ((case, class) rows) and `case_queue.csv` (cases) in `out_dir`, ranked."""
    out = Path(out_dir)
    atomic_write_bytes(out / "review_queue.csv", _csv(rank_rows(records), FIRST))
    atomic_write_bytes(out / "case_queue.csv", _csv(rank_cases(records),
                                                    ["rank", "case", "importance", "importance_max", "top_class",
                                                     "top_class_importance"]))
    return [out / "review_queue.csv", out / "case_queue.csv"]
