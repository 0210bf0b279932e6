"""The fig3 protocol (issue 9 + 10): the classification design runs through the experiment runner,
its rows are (case, sub-type, truth, score) in scores.csv, and report.md's AUC table (mean ± sd over
trials, two-sample t-test vs scratch), operating points and ROC PNG are computed from those rows."""
from __future__ import annotations

import copy
import csv
import json

import numpy as np
import pytest

from suprem_nnunet.experiments import api
from suprem_nnunet.experiments.data import check_data
from suprem_nnunet.experiments.protocol import ProtocolError, load_protocol, protocol_file, protocol_from_dict
from suprem_nnunet.experiments.report import write_report

SUBTYPES = ["none", "pdac", "cyst", "pannet"]
TRUTH = {f"c{i:02d}": SUBTYPES[i % 4] for i in range(40)}  # 40 test cases, 10 of each sub-type


def fake_run(ctx, spec, folder):
    """suprem separates every sub-type (AUC 1); scratch's scores are noise drawn from the trial's seed.
    The scratch run also returns rows of an arm the protocol does not list (as the hand-feature
    baseline's rows come with the baseline arm's run): scores that rank PDAC first."""
    rng = np.random.default_rng(spec.trial)
    rows = []
    for case, truth in TRUTH.items():
        s = np.eye(4)[SUBTYPES.index(truth)] * 0.9 + 0.025 if spec.arm == "suprem" else rng.dirichlet(np.ones(4))
        rows += [{"case": case, "class": k, "truth": int(k == truth), "score": float(s[i])}
                 for i, k in enumerate(SUBTYPES)]
        if spec.arm == "scratch":
            rows += [{"arm": "hand_features", "case": case, "class": k, "truth": int(k == truth),
                      "score": float(k == "pdac" and truth == "pdac")} for k in SUBTYPES]
    return {"rows": rows, "curve": [], "train_seconds": 1.0, "seconds": 2.0, "pretraining": {}, "target": "T"}


def test_fig3_runs_through_the_runner_and_reports_auc_from_score_rows(nnunet_env, tmp_path, monkeypatch):
    monkeypatch.setattr(api, "ensure_phantoms", lambda ids: None)  # fake runs need no data
    folder = api.run_protocol("fig3", "phantom", trials=3, out=tmp_path / "exp", device="cpu", run_fn=fake_run)
    with open(folder / "scores.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3 * 3 * 40 * 4 and set(rows[0]) == {"protocol", "arm", "setting", "trial", "case", "class",
                                                         "truth", "score"}
    assert sum(r["arm"] == "hand_features" for r in rows) == 3 * 40 * 4
    report = (folder / "report.md").read_text()
    assert "| pdac | " in report and "3 trial(s)" in report and "`scores.csv`" in report
    assert "| sub-type | scratch | suprem | hand_features |" in report  # the run's extra arm is a column
    pdac = next(line for line in report.splitlines() if line.startswith("| pdac | ") and "±" in line)
    # suprem and the extra arm separate PDAC in every trial; P < 0.05 vs noise
    assert pdac.endswith("| 1.000 ± 0.000 * | 1.000 ± 0.000 * |")
    assert "at the Youden point" in report and "two-sample" in report
    assert (folder / "fig3.png").stat().st_size > 5000
    before = report
    (folder / "report.md").unlink()
    write_report(folder)  # `suprem_experiment report` regenerates it from the rows alone
    assert (folder / "report.md").read_text() == before


def test_classification_protocol_checks(nnunet_env):
    d = json.loads(protocol_file("fig3").read_text())
    bad = copy.deepcopy(d)
    bad["scales"]["phantom"]["sweep"] = [4, 8]
    with pytest.raises(ProtocolError, match=r"sweep: design classification takes one few-shot size"):
        protocol_from_dict(bad, "p.json")
    bad = copy.deepcopy(d)
    bad["scales"]["phantom"]["targets"] = [{"dataset": 932}]  # segmentation phantoms: no sub-type labels
    with pytest.raises(ProtocolError, match=r"target dataset 932 has no sub-type labels"):
        check_data(protocol_from_dict(bad, "p.json"), "phantom")
    with pytest.raises(ProtocolError, match=r"dataset 640 is missing .*case_labels\.csv"):
        check_data(load_protocol("fig3"), "full")


def test_test_cases_without_a_subtype_are_one_line(tmp_path):
    from suprem_nnunet.experiments.classification_run import check_test_labels

    f = tmp_path / "case_labels.csv"
    check_test_labels(f, {"a": "pdac", "b": "none"}, ["a", "b"])
    with pytest.raises(ValueError) as e:
        check_test_labels(f, {"a": "pdac"}, ["a", "b", "c"])
    assert str(e.value) == f"{f}: 2 test case(s) without a sub-type: b, c"
