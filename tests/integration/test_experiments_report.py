"""report.md from a synthetic results folder (rows only, no runs): tables in the paper's shape, the
statistics of the rows (trials and test cases as units, never (trial, case) pairs), and the figures."""
from __future__ import annotations

import copy
import csv
import json
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as sps

from suprem_nnunet.experiments.protocol import ProtocolError, protocol_file, protocol_from_dict
from suprem_nnunet.experiments.report import write_report
from suprem_nnunet.experiments.runner import CURVE_FIELDS, ROW_FIELDS, RUN_FIELDS

OFFSETS = (-0.01, 0.0, 0.01)


def results_folder(tmp: Path, name: str, rows, runs=(), curves=(), datasets=None, protocol=None) -> Path:
    d = tmp / name
    d.mkdir()
    (d / "protocol.json").write_text(json.dumps(protocol) if protocol else protocol_file(name).read_text())
    (d / "experiment.json").write_text(json.dumps({"protocol": name, "scale": "phantom", "trials": 3,
                                                   "datasets": datasets or {"932": "Dataset932_PhantomTarget"}}))
    for fname, fields, data in (("results.csv", ROW_FIELDS, rows), ("runs.csv", RUN_FIELDS, runs),
                                ("curves.csv", CURVE_FIELDS, curves)):
        with open(d / fname, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
            w.writeheader()
            w.writerows(data)
    return d


def rows_for(protocol, arm, setting, trial_means, cls, sign=1):
    """Three test cases per trial around the trial's mean (so the trial mean is exact)."""
    return [{"protocol": protocol, "arm": arm, "setting": setting, "trial": t, "case": f"c{i}", "class": cls,
             "dsc": m + sign * o, "nsd": m} for t, m in enumerate(trial_means) for i, o in enumerate(OFFSETS)]


def _row(text, start):
    """The cells of the first table row that starts with `start`."""
    line = next(line for line in text.splitlines() if line.startswith(start))
    return [c.strip() for c in line.strip("|").split("|")]


def test_table2_per_class_mean_sd_marks_and_tests(tmp_path):
    """Units: trials (3 per arm) for the two-sample and paired-over-trials tests, test cases (3) for
    the paired test over cases."""
    rows = (rows_for("table2", "scratch", "4", [0.50, 0.52, 0.51], "liver", -1)
            + rows_for("table2", "suprem", "4", [0.80, 0.82, 0.81], "liver")
            + rows_for("table2", "scratch", "4", [0.35, 0.45, 0.40], "iliopsoas_left")
            + rows_for("table2", "suprem", "4", [0.30, 0.50, 0.40], "iliopsoas_left"))
    runs = [{"protocol": "table2", "arm": a, "setting": "4", "trial": t, "seconds": 60, "train_seconds": 50}
            for a in ("scratch", "suprem") for t in range(3)]
    folder = results_folder(tmp_path, "table2", rows, runs)
    text = write_report(folder).read_text()
    assert "| class | scratch | suprem |" in text
    assert "| liver | 0.510 ± 0.010 | 0.810 ± 0.010 * |" in text
    assert "| iliopsoas_left | 0.400 ± 0.050 | 0.400 ± 0.100 |" in text  # not significant: no mark
    assert "| **mean over classes** | 0.455 ± 0.030 | 0.605 ± 0.055 * |" in text
    p = sps.ttest_ind([0.80, 0.82, 0.81], [0.50, 0.52, 0.51]).pvalue
    # each case averaged over the 3 trials: suprem 0.81 + o, scratch 0.51 - o; paired by case (n = 3)
    p_case = sps.ttest_rel([0.81 + o for o in OFFSETS], [0.51 - o for o in OFFSETS]).pvalue
    # every trial's difference is exactly 0.3: no variance over trials, the sign test gives 2 * 0.5^3
    cells = _row(text, "| liver | suprem − scratch |")
    assert cells[2:9] == ["+0.300", f"{p:.3g}", "3 + 3", "0.25 ‡", "3", f"{p_case:.3g}", "3"]
    lo, hi = (float(v) for v in cells[9].strip("[]").split(","))
    assert 0.28 - 1e-9 <= lo < 0.30 < hi <= 0.32 + 1e-9  # the case differences span 0.28 .. 0.32
    assert "3 trial(s)" in text
    assert "*: P < 0.05, two-sided Student's two-sample t-test over trials" in text and "n = 3 + 3 trials." in text
    assert "paired t-test over test cases (unit: test case; each case's DSC" in text and "n = 3 test cases." in text
    assert "two-way cluster bootstrap" in text and "‡: the units have no variance" in text
    assert (tmp_path / "table2" / "table2.png").stat().st_size > 1000
    (folder / "report.md").unlink()
    assert write_report(folder).read_text() == text  # regenerated from the rows alone, seeded bootstrap


def test_identical_trial_copies_leave_the_case_level_p_and_ci_unchanged(tmp_path):
    """One trial against 10 identical copies of it (unit: test case, n = 3 both times): the paired
    test over cases and the cluster-bootstrap CI must not move. With one trial there is no test over
    trials (n/a) and the table's mark comes from the test over cases."""
    def table(k, name):
        rows = (rows_for("table2", "scratch", "4", [0.51] * k, "liver", -1)
                + rows_for("table2", "suprem", "4", [0.81] * k, "liver"))
        (tmp_path / name).mkdir()
        return write_report(results_folder(tmp_path / name, "table2", rows)).read_text()

    one, ten = table(1, "one"), table(10, "ten")
    c1, c10 = _row(one, "| liver | suprem − scratch |"), _row(ten, "| liver | suprem − scratch |")
    assert c1[7:10] == c10[7:10]  # p (paired, cases), n cases, CI
    p_case = sps.ttest_rel([0.81 + o for o in OFFSETS], [0.51 - o for o in OFFSETS]).pvalue
    assert c1[7] == f"{p_case:.3g}" and c1[8] == "3"
    assert c1[3:5] == ["n/a (n < 2)", "1 + 1"] and c10[4] == "10 + 10"
    assert "| liver | 0.510 ± 0.000 | 0.810 ± 0.000 * |" in one
    assert "*: P < 0.05, two-sided paired t-test over test cases" in one and "n = 1 trial per arm" in one


def test_constant_but_different_arms_get_a_defined_p(tmp_path):
    """A novel class at 0.000 ± 0.000 (scratch) vs 0.300 ± 0.000 (suprem) in every trial and case
    (3 trials, 3 cases): the exact permutation test over trials (p = 2 / C(6, 3) = 0.1) and the
    exact sign test over trial pairs and over cases (p = 2 * 0.5^3 = 0.25), marked ‡, never NaN."""
    rows = [{"protocol": "table2", "arm": arm, "setting": "4", "trial": t, "case": f"c{i}", "class": "iliopsoas_left",
             "dsc": v, "nsd": v} for arm, v in (("scratch", 0.0), ("suprem", 0.3)) for t in range(3) for i in range(3)]
    text = write_report(results_folder(tmp_path, "table2", rows)).read_text()
    assert "| iliopsoas_left | 0.000 ± 0.000 | 0.300 ± 0.000 |" in text  # p = 0.1 with 3 + 3 trials: no mark
    cells = _row(text, "| iliopsoas_left | suprem − scratch |")
    assert cells[3:9] == ["0.1 ‡", "3 + 3", "0.25 ‡", "3", "0.25 ‡", "3"]
    assert cells[9] == "[+0.300, +0.300]"
    assert "n/a" not in "".join(cells)


def test_fig2b_annotation_saving_and_figure(tmp_path):
    rows = (rows_for("fig2b", "scratch", "2", [0.40, 0.42], "liver") + rows_for("fig2b", "scratch", "8", [0.70, 0.70], "liver")
            + rows_for("fig2b", "suprem", "2", [0.72, 0.74], "liver") + rows_for("fig2b", "suprem", "8", [0.85, 0.86], "liver"))
    text = write_report(results_folder(tmp_path, "fig2b", rows)).read_text()
    assert "| num_train_cases | scratch | suprem |" in text
    assert "| 2 | 0.410 ± 0.014 | 0.730 ± 0.014 * |" in text
    assert "| 8 | 0.700 | suprem | 2 | 75% |" in text  # 2 cases reach what scratch reaches with 8
    assert (tmp_path / "fig2b" / "fig2b.png").is_file()


def _table3_rows(ood):
    rows = [{"protocol": "table3", "arm": "ood", "setting": "PhantomExternalA", "trial": 0, "case": f"c{i}",
             "class": "liver", "dsc": v, "nsd": v} for i, v in enumerate(ood)]
    return rows + rows_for("table3", "iid", "PhantomExternalA", [0.80, 0.82], "liver")


def test_table3_ood_paired_by_case_with_iid_and_trial_level_test(tmp_path):
    """OOD: one deterministic run; IID: 2 trials; both on the same 3 test cases. Primary: paired
    t-test over cases (n = 3) of the OOD DSC against the IID DSC averaged over trials; beside it the
    IID trial means (n = 2) against the OOD mean, a constant of the test set."""
    ood = [0.60, 0.70, 0.65]
    folder = results_folder(tmp_path, "table3", _table3_rows(ood),
                            datasets={"934": "Dataset934_PhantomExternalA"})
    text = write_report(folder).read_text()
    iid_case = [0.81 + o for o in OFFSETS]
    p_case = sps.ttest_rel(ood, iid_case).pvalue
    p_trial = sps.ttest_1samp([0.80, 0.82], np.mean(ood)).pvalue
    assert p_case < 0.05
    cells = _row(text, "| PhantomExternalA | liver |")
    assert cells[2:7] == ["0.650 ± 0.050 *", "3", "0.810 ± 0.014", "2", "-0.160"]
    assert cells[8:] == [f"{p_case:.3g}", "3", f"{p_trial:.3g}"]
    lo, hi = (float(v) for v in cells[7].strip("[]").split(","))
    assert -0.20 - 1e-9 <= lo < -0.16 < hi <= -0.11 + 1e-9  # within the range of the case differences
    assert "paired t-test over test cases (unit: test case" in text and "n = 3 test cases" in text
    assert "one-sample t-test of the IID trials' means against the OOD mean (unit: IID trial)" in text
    assert "| published IID DSC |" not in text  # no published number in the shipped protocol


def test_table3_published_iid_number_takes_the_papers_one_sample_test(tmp_path):
    """With a published IID DSC in the protocol (full scale, as in the paper): one-sample t-test of
    the per-case OOD DSC (n = 3 cases) against it; it gives the mark (here: not significant,
    although the paired test against our own IID arm is)."""
    ood = [0.60, 0.70, 0.65]
    proto = json.loads(protocol_file("table3").read_text())
    proto["scales"]["phantom"]["targets"][0]["published_iid"] = {"liver": 0.66}
    folder = results_folder(tmp_path, "table3", _table3_rows(ood), datasets={"934": "Dataset934_PhantomExternalA"},
                            protocol=proto)
    text = write_report(folder).read_text()
    p_pub = sps.ttest_1samp(ood, 0.66).pvalue
    cells = _row(text, "| PhantomExternalA | liver |")
    assert cells[2] == "0.650 ± 0.050" and cells[11:] == ["0.660", f"{p_pub:.3g}"]
    assert "one-sample t-test of the per-case OOD DSC against it (unit: test case" in text
    bad = copy.deepcopy(proto)
    bad["scales"]["phantom"]["targets"][0]["published_iid"] = {"liver": "high"}
    with pytest.raises(ProtocolError, match=r"targets\[0\]\.published_iid: expected"):
        protocol_from_dict(bad, "p.json")
    t2 = json.loads(protocol_file("table2").read_text())
    t2["scales"]["phantom"]["targets"][0]["published_iid"] = {"liver": 0.9}
    with pytest.raises(ProtocolError, match=r"published_iid: belongs to design ood"):
        protocol_from_dict(t2, "p.json")


def test_table4_rows_are_totalsegmentator_groups(tmp_path):
    rows = []
    for cls, (a, b) in {"iliopsoas_left": (0.3, 0.6), "autochthon_left": (0.5, 0.8), "vertebrae": (0.4, 0.45),
                        "pancreas": (0.2, 0.3)}.items():
        rows += rows_for("table4", "scratch", "4", [a, a + 0.02], cls) + rows_for("table4", "suprem", "4", [b, b + 0.02], cls)
    text = write_report(results_folder(tmp_path, "table4", rows)).read_text()
    assert "| group | scratch | suprem |" in text
    assert "| muscles | 0.410 ± 0.014 | 0.710 ± 0.014 * |" in text  # mean of the two muscle classes
    assert "| vertebrae |" in text and "| organs |" in text and "| cardiac |" not in text


def _curves(arm, per_trial):
    return [{"protocol": "fig9", "arm": arm, "setting": "4", "trial": t, "epoch": e + 1, "seconds": 10 * (e + 1),
             "val_dsc_ema": v, "val_dsc": v} for t, vals in enumerate(per_trial) for e, v in enumerate(vals)]


def test_fig9_time_to_target_and_speedup(tmp_path):
    curves = _curves("scratch", [[0.1, 0.3, 0.5, 0.6]]) + _curves("suprem", [[0.4, 0.6, 0.7, 0.75]])
    rows = rows_for("fig9", "scratch", "4", [0.6], "liver") + rows_for("fig9", "suprem", "4", [0.7], "liver")
    text = write_report(results_folder(tmp_path, "fig9", rows, curves=curves)).read_text()
    assert "Target: scratch's final validation pseudo-DSC, 0.600" in text
    assert "| suprem | 0.750 ± 0.000 | 20 s (epoch 2) | 1/1 | 2.00× |" in text
    assert (tmp_path / "fig9" / "fig9.png").is_file()


def test_fig9_trials_that_never_reach_the_target_are_censored(tmp_path):
    """Unit: trial (scratch 2, suprem 3). Target 0.6 (scratch's final mean), budget 40 s. Kaplan–Meier
    median: reached at 20 s and 30 s, one trial censored at 40 s -> S(20) = 2/3, S(30) = 1/3 ->
    median 30 s (the mean over the trials that reached it would say 25 s); with only one of three
    reaching it the median lies beyond the budget."""
    scratch = _curves("scratch", [[0.1, 0.3, 0.5, 0.6], [0.2, 0.4, 0.5, 0.6]])
    rows = rows_for("fig9", "scratch", "4", [0.6, 0.6], "liver") + rows_for("fig9", "suprem", "4", [0.7] * 3, "liver")
    (tmp_path / "two").mkdir()
    two = _curves("suprem", [[0.4, 0.6, 0.7, 0.75], [0.3, 0.5, 0.62, 0.7], [0.2, 0.3, 0.4, 0.5]])
    text = write_report(results_folder(tmp_path / "two", "fig9", rows, curves=scratch + two)).read_text()
    assert "| suprem | 0.650 ± 0.132 | 30 s (epoch 3) | 2/3 | 1.33× |" in text
    assert "| scratch | 0.600 ± 0.000 | 40 s (epoch 4) | 2/2 | 1.00× |" in text
    assert "Kaplan–Meier median over trials (unit: trial, n = 2 / 3 trials" in text
    (tmp_path / "one").mkdir()
    one = _curves("suprem", [[0.4, 0.6, 0.7, 0.75], [0.3, 0.5, 0.55, 0.58], [0.2, 0.3, 0.4, 0.5]])
    text = write_report(results_folder(tmp_path / "one", "fig9", rows, curves=scratch + one)).read_text()
    assert "| suprem | 0.610 ± 0.128 | > 40 s (the budget; fewer than half the trials reached it) | 1/3 | < 1.00× |" in text


def test_fig2a_pretraining_hours_and_report_cli(tmp_path, capsys):
    from suprem_nnunet.cli.experiment import main

    rows = (rows_for("fig2a", "scratch", "0", [0.5, 0.52], "liver") + rows_for("fig2a", "suprem", "4", [0.6, 0.62], "liver")
            + rows_for("fig2a", "suprem", "16", [0.7, 0.72], "liver"))
    runs = [{"protocol": "fig2a", "arm": "suprem", "setting": s, "trial": t, "pretrain_cases": s,
             "pretrain_seconds": 360 * int(s) / 4} for s in ("4", "16") for t in range(2)]
    d = results_folder(tmp_path, "fig2a", rows, runs)
    assert main(["report", str(tmp_path)]) == 0  # every results folder under the experiments folder
    text = (d / "report.md").read_text()
    assert "| 16 | suprem | 0.400 |" in text and "| 4 | suprem | 0.100 |" in text
    assert "| 16 | n/a | 0.710 ± 0.014 * |" in text  # against scratch, which has no pre-training (setting 0)
    p = sps.ttest_ind([0.7, 0.72], [0.5, 0.52]).pvalue
    assert f"| 16 | suprem − scratch | +0.200 | {p:.3g} | 2 + 2 |" in text
    assert (d / "fig2a.png").is_file()
