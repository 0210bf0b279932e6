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

    def to_dict(self) -> Dict:
        return {
            "source": self.source,
            "dataset": self.dataset,
            "classes": self.classes,
            "counts": {"written": len(self.cases), "labelled": sum(1 for c in self.cases if c["labelled"]),
                       "excluded": len(self.excluded), "skipped": len(self.skipped)},
            "cases": [{k: c[k] for k in ("case", "source", "source_id", "split", "labelled", "classes_present",
                                         "annotated") if k in c} for c in self.cases],
            "excluded": self.excluded,
            "skipped": self.skipped,
        }

    def summary(self) -> str:
        d = self.to_dict()
        n = d["counts"]
        lines = [f"{self.dataset} from {self.source}: {n['written']} cases written "
                 f"({n['labelled']} labelled), {n['excluded']} excluded, {n['skipped']} skipped as bad input",
                 f"classes ({len(self.classes)}): {', '.join(self.classes)}"]
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
