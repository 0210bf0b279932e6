"""The conversion report: JSON for machines, a short text summary for people."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List

from suprem_nnunet.dataset.raw import atomic_write_bytes, atomic_write_json

REPORT_JSON = "conversion_report.json"
REPORT_TXT = "conversion_report.txt"


@dataclass
class Report:
    """What a conversion or merge did."""

    source: str
    dataset: str
    classes: List[str]
    cases: List[Dict] = field(default_factory=list)  # written records
    excluded: List[Dict] = field(default_factory=list)  # documented exclusions / duplicates
    skipped: List[Dict] = field(default_factory=list)  # bad input, with --skip-bad
    partial_classes: List[str] = field(default_factory=list)  # positive-only classes (never 'annotated')
    partial_note: str = ""
    duplicates: List[Dict] = field(default_factory=list)  # merge: groups of copies of one scan

    def to_dict(self) -> Dict:
        return {
            "source": self.source,
            "dataset": self.dataset,
            "classes": self.classes,
            "counts": {"written": len(self.cases), "labelled": sum(1 for c in self.cases if c["labelled"]),
                       "excluded": len(self.excluded), "skipped": len(self.skipped)},
            "partial_classes": {"classes": self.partial_classes, "note": self.partial_note},
            "cases": [{k: c[k] for k in ("case", "source", "source_id", "split", "labelled", "classes_present",
                                         "annotated", "partial") if k in c} for c in self.cases],
            "excluded": self.excluded,
            "skipped": self.skipped,
            "duplicates": self.duplicates,
        }

    def summary(self) -> str:
        d = self.to_dict()
        n = d["counts"]
        lines = [f"{self.dataset} from {self.source}: {n['written']} cases written "
                 f"({n['labelled']} labelled), {n['excluded']} excluded, {n['skipped']} skipped as bad input",
                 f"classes ({len(self.classes)}): {', '.join(self.classes)}"]
        if self.partial_classes:
            lines.append(f"partial (positive-only, never counted as annotated) classes: "
                         f"{', '.join(self.partial_classes)}" + (f" - {self.partial_note}" if self.partial_note else ""))
        for g in self.duplicates:
            lines.append(f"  duplicate group: kept {g['kept']} ({g['source']}, {g['dataset']})")
            for m in g["members"]:
                how = "identical image" if m.get("identical") else f"thumbnail correlation {m['correlation']:.3f}"
                labels = m.get("labels", "")
                if labels == "merged":
                    labels = "labels agree" + (f", added {', '.join(m['added'])}" if m.get("added") else "")
                elif labels == "disagree":
                    labels = "labels disagree (" + ", ".join(f"{c} Dice {d:.2f}" for c, d in m["dice"].items()) + \
                             "), kept case's labels only"
                lines.append(f"    dropped {m['case']} ({m['source']}, {m['dataset']}): {how}; {labels}")
        for c in d["cases"]:
            what = ", ".join(c["classes_present"]) if c["labelled"] else "unlabelled (imagesTs)"
            lines.append(f"  {c['case']}: {what}")
        for c in self.excluded:
            lines.append(f"  excluded {c['case']}: {c['reason']}")
        for c in self.skipped:
            lines.append(f"  skipped {c['case']}: {c['file']}: {c['reason']}")
        return "\n".join(lines) + "\n"

    def write(self, folder: Path) -> None:
        atomic_write_json(folder / REPORT_JSON, self.to_dict())
        atomic_write_bytes(folder / REPORT_TXT, self.summary().encode())
