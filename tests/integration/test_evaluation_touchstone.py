"""suprem_evaluate --format touchstone: dsc.csv / nsd.csv in the Touchstone benchmark's per-scan
layout, and where Touchstone's own DSC (EvalCPU.py: 2TP / (|P| + |G| + 1)) differs from ours."""
import csv
import json
import math

import numpy as np

from suprem_nnunet.cli.evaluate import main as evaluate_cli
from suprem_nnunet.dataset.raw import write_image
from suprem_nnunet.evaluation.metrics import dice
from suprem_nnunet.evaluation.touchstone import TOUCHSTONE_CLASSES

LABELS = {name: i + 1 for i, name in enumerate(TOUCHSTONE_CLASSES)}


def _write(path, arr):
    path.parent.mkdir(parents=True, exist_ok=True)
    write_image(path, arr.astype(np.uint8), (1.0, 1.0, 1.5), (0.0, 0.0, 0.0), np.eye(3))


def touchstone_dsc(p: np.ndarray, g: np.ndarray) -> float:
    """Touchstone's `dice_score` (EvalCPU.py), restated: 2TP / (|P| + |G| + 1)."""
    return float(2 * np.logical_and(p, g).sum() / (p.sum() + g.sum() + 1))


def test_touchstone_layout_and_values(tmp_path, capsys):
    """n = 2 scans x 9 classes; scan b has no spleen in GT or prediction (ours: nan)."""
    rng = np.random.default_rng(0)
    gt_dir, pred_dir = tmp_path / "gt" / "labelsTs", tmp_path / "pred"
    (tmp_path / "gt").mkdir()
    (tmp_path / "gt" / "dataset.json").write_text(json.dumps({"labels": {"background": 0, **LABELS}}))
    pred_dir.mkdir()
    (pred_dir / "dataset.json").write_text(json.dumps({"labels": {"background": 0, **LABELS}}))
    for case in ("b", "a"):
        g = np.zeros((12, 30, 30), np.uint8)
        for i in range(9):
            g[2:10, 3 * i:3 * i + 3, 5:25] = i + 1
        if case == "b":
            g[g == LABELS["spleen"]] = 0
        p = np.where(rng.random(g.shape) < 0.1, 0, g)
        _write(gt_dir / f"{case}.nii.gz", g)
        _write(pred_dir / f"{case}.nii.gz", p)
    assert evaluate_cli([str(pred_dir), str(gt_dir), "--format", "touchstone", "-o", str(tmp_path / "o")]) == 0
    rows = {m: list(csv.reader((tmp_path / "o" / f"{m}.csv").open())) for m in ("dsc", "nsd")}
    assert rows["dsc"][0] == ["name", *sorted(TOUCHSTONE_CLASSES)] == rows["nsd"][0]
    assert [r[0] for r in rows["dsc"][1:]] == ["a", "b"]
    metrics = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert metrics["tolerance_mm"] == 1.5  # Touchstone's NSD tolerance is the default here
    ours = {(r["case"], r["class"]): r for r in metrics["per_case"]}
    for m in ("dsc", "nsd"):
        for row in rows[m][1:]:
            for name, value in zip(rows[m][0][1:], row[1:]):
                ref = ours[(row[0], name)][m]
                assert (value == "nan" and math.isnan(ref)) or float(value) == ref
    assert rows["dsc"][2][rows["dsc"][0].index("spleen")] == "nan"
    # Touchstone's DSC: a perfect prediction scores below 1, an empty-vs-empty class 0 (ours: 1, NaN)
    m = np.zeros((10, 10, 10), bool)
    m[2:5, 2:5, 2:5] = True
    assert dice(m, m) == 1.0 and touchstone_dsc(m, m) == 54 / 55
    assert math.isnan(dice(~m & m, ~m & m)) and touchstone_dsc(~m & m, ~m & m) == 0.0
