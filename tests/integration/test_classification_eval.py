"""Classification evaluation (ROC/AUC, DeLong CI, operating points, figure, CLI) and the
segmentation-derived scoring rule."""
from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from suprem_nnunet.classification.evaluate import class_metrics, delong, evaluate_arms, paired_delong
from suprem_nnunet.classification.route import route_scores, scores_from_probabilities
from suprem_nnunet.cli.evaluate import main as evaluate_main


def test_delong_matches_sklearn_and_bootstrap():
    rng = np.random.default_rng(0)
    y = np.r_[np.ones(40, bool), np.zeros(60, bool)]
    s = np.r_[rng.normal(1.0, 1, 40), rng.normal(0, 1, 60)].round(1)  # ties on purpose
    aucs, cov = delong(y, s[None])
    assert aucs[0] == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    boot = []
    for _ in range(300):
        i = np.r_[rng.choice(40, 40), 40 + rng.choice(60, 60)]
        boot.append(roc_auc_score(y[i], s[i]))
    assert np.sqrt(cov[0, 0]) == pytest.approx(np.std(boot), rel=0.25)
    m = class_metrics(y, s)
    assert m["ci_low"] < m["auc"] < m["ci_high"]
    assert m["spec95"]["specificity"] >= 0.95 and m["youden"]["sensitivity"] >= m["spec95"]["sensitivity"]
    # paired test: a copy is not different, a much better score is
    assert paired_delong(y, s, s)["p"] == 1.0
    assert paired_delong(y, s + 3 * y, s)["p"] < 1e-3


def _csv(path, header, rows):
    path.write_text(header + "\n" + "\n".join(rows) + "\n")
    return path


def test_evaluate_arms_files_figure_and_undefined_auc(tmp_path):
    labels = _csv(tmp_path / "labels.csv", "case,subtype",
                  [f"c{i},{k}" for i, k in enumerate(["pdac"] * 4 + ["cyst"] * 4 + ["none"] * 4)] + ["extra,pdac"])
    rng = np.random.default_rng(1)
    truth = ["pdac"] * 4 + ["cyst"] * 4 + ["none"] * 4
    rows_a, rows_b = [], []
    for i, k in enumerate(truth):
        a = {c: rng.uniform(0, 0.3) + (0.7 if c == k else 0) for c in ("none", "pdac", "cyst", "pannet")}
        b = {c: rng.uniform(0, 1) for c in a}
        rows_a.append(f"c{i}," + ",".join(f"{a[c]:.3f}" for c in a))
        rows_b.append(f"c{i}," + ",".join(f"{b[c]:.3f}" for c in b))
    sa = _csv(tmp_path / "a.csv", "case,none,pdac,cyst,pannet", rows_a)
    sb = _csv(tmp_path / "b.csv", "case,none,pdac,cyst,pannet", rows_b)
    res = evaluate_arms({"pre-trained": sa, "scratch": sb}, labels, tmp_path / "out")
    pre = res["arms"]["pre-trained"]["per_class"]
    assert pre["pdac"]["auc"] == 1.0 and pre["cyst"]["youden"]["sensitivity"] == 1.0
    assert np.isnan(pre["pannet"]["auc"]) and pre["pannet"]["note"] == "AUC undefined: no positive case"
    assert res["arms"]["pre-trained"]["confusion_matrix"]["rows_true_cols_predicted"][1] == [0, 4, 0, 0]
    assert res["comparison"]["pdac"]["diff"] > 0 and "note" in res["comparison"]["pannet"]
    for f in ("roc.png", "classification_metrics.csv", "classification_metrics.json",
              "confusion_matrix_pre_trained.csv"):
        assert (tmp_path / "out" / f).stat().st_size > 50, f
    js = json.loads((tmp_path / "out" / "classification_metrics.json").read_text())
    assert js["arms"]["scratch"]["per_class"]["pannet"]["auc"] is None  # NaN written as null
    # a scored case without a label, an unknown score column: one line naming the file
    with pytest.raises(ValueError, match=r"labels.csv: no label for 1 scored case\(s\)"):
        evaluate_arms({"a": _csv(tmp_path / "c.csv", "case,pdac,cyst", ["zz,0.1,0.2"])}, labels, tmp_path / "o2")
    with pytest.raises(ValueError, match="column 'ipmn' is not a sub-type"):
        evaluate_arms({"a": _csv(tmp_path / "d.csv", "case,pdac,ipmn", ["c0,0.1,0.2"])}, labels, tmp_path / "o3")


def test_cli_classification_and_bad_input(tmp_path, capsys):
    labels = _csv(tmp_path / "labels.csv", "case,subtype", ["a,pdac", "b,none", "c,pdac"])
    scores = _csv(tmp_path / "s.csv", "case,none,pdac,prediction",
                  ["a,0.2,0.8,pdac", "b,0.9,0.1,none", "c,0.6,0.4,none"])
    assert evaluate_main(["--classification", str(scores), str(labels), "-o", str(tmp_path / "ev")]) == 0
    out = capsys.readouterr().out
    assert "pdac" in out and "1.000 [" in out and (tmp_path / "ev" / "roc.png").is_file()
    assert evaluate_main(["--classification", str(scores), str(tmp_path / "missing.csv")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "missing.csv: no such case labels file" in err
    assert evaluate_main([]) == 1
    assert "give PRED_DIR and GT_DIR" in capsys.readouterr().err


def test_segmentation_route_rule(tmp_path):
    from suprem_nnunet.inference.outputs import write_probabilities

    p = np.zeros((5, 10, 10, 10), np.float32)
    p[0] = 1.0
    p[2, 2:4, 2:4, 2:4] = 0.9  # an 8-voxel pdac blob
    p[3, 7, 7, 7] = 1.0  # one stray cyst voxel
    ch = {"pdac": 2, "cyst": 3, "pannet": 4}
    s = route_scores(p, ch, voxel_ml=0.125, volume_ml=0.5)  # K = 4 voxels
    assert s["pdac"] == pytest.approx(0.9, abs=1e-6) and s["cyst"] == pytest.approx(0.25)
    assert s["pannet"] == 0.0 and s["none"] == pytest.approx(0.1, abs=1e-6)
    geo = {"spacing": (5.0, 5.0, 5.0), "origin": (0, 0, 0), "direction": np.eye(3).ravel()}
    write_probabilities(tmp_path / "case1.npz", p, ["background", "pancreas", "pdac", "pancreatic_cyst", "pannet"],
                        [0, 1, 2, 3, 4], geo)
    out = scores_from_probabilities(tmp_path, tmp_path / "scores.csv")
    lines = out.read_text().splitlines()
    assert lines[0] == "case,none,pdac,cyst,pannet,prediction" and lines[1].startswith("case1,")
    assert lines[1].endswith(",pdac")
    write_probabilities(tmp_path / "case1.npz", p[:2], ["background", "liver"], [0, 1], geo)
    with pytest.raises(ValueError, match="no sub-type class among its channels"):
        scores_from_probabilities(tmp_path, tmp_path / "scores.csv")
    # bad input: one line naming the file, and the scores file left as it was
    before = (tmp_path / "scores.csv").read_bytes()
    np.savez_compressed(tmp_path / "case1.npz", probabilities=p, spacing=np.array([5.0, 5.0, 5.0]))
    with pytest.raises(ValueError) as e:
        scores_from_probabilities(tmp_path, tmp_path / "scores.csv")
    assert str(e.value).startswith(f"{tmp_path / 'case1.npz'}: no class names") and "\n" not in str(e.value)
    np.savez_compressed(tmp_path / "case1.npz", probabilities=p, spacing=np.array([5.0, 5.0, 5.0]),
                        class_names=np.array(["background", "pdac"]))
    with pytest.raises(ValueError, match=r"case1\.npz: 2 class names for 5 probability channels"):
        scores_from_probabilities(tmp_path, tmp_path / "scores.csv")
    (tmp_path / "case1.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match=r"case1\.npz: not a readable probability file"):
        scores_from_probabilities(tmp_path, tmp_path / "scores.csv")
    assert (tmp_path / "scores.csv").read_bytes() == before
