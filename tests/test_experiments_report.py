"""report.md from a synthetic results folder (rows only, no runs): tables in the paper's shape, the
statistics of the rows, and the figures."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
from scipy import stats as sps

from suprem_nnunet.experiments.protocol import protocol_file
from suprem_nnunet.experiments.report import write_report
from suprem_nnunet.experiments.runner import CURVE_FIELDS, ROW_FIELDS, RUN_FIELDS

OFFSETS = (-0.01, 0.0, 0.01)


def results_folder(tmp: Path, name: str, rows, runs=(), curves=()) -> Path:
    d = tmp / name
    d.mkdir()
    (d / "protocol.json").write_text(protocol_file(name).read_text())
    (d / "experiment.json").write_text(json.dumps({"protocol": name, "scale": "phantom", "trials": 3,
                                                   "datasets": {"932": "Dataset932_PhantomTarget"}}))
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


def test_table2_per_class_mean_sd_marks_and_tests(tmp_path):
    rows = (rows_for("table2", "scratch", "4", [0.50, 0.52, 0.51], "liver", -1)
            + rows_for("table2", "suprem", "4", [0.80, 0.82, 0.81], "liver")
            + rows_for("table2", "scratch", "4", [0.35, 0.45, 0.40], "iliopsoas_left")
            + rows_for("table2", "suprem", "4", [0.30, 0.50, 0.40], "iliopsoas_left"))
    runs = [{"protocol": "table2", "arm": a, "setting": "4", "trial": t, "seconds": 60, "train_seconds": 50}
            for a in ("scratch", "suprem") for t in range(3)]
    text = write_report(results_folder(tmp_path, "table2", rows, runs)).read_text()
    assert "| class | scratch | suprem |" in text
    assert "| liver | 0.510 ± 0.010 | 0.810 ± 0.010 * |" in text
    assert "| iliopsoas_left | 0.400 ± 0.050 | 0.400 ± 0.100 |" in text  # not significant: no mark
    assert "| **mean over classes** | 0.455 ± 0.030 | 0.605 ± 0.055 * |" in text
    p = sps.ttest_ind([0.80, 0.82, 0.81], [0.50, 0.52, 0.51]).pvalue
    d = np.array([0.3 + 2 * o for o in OFFSETS] * 3)
    p_pair = sps.ttest_rel(d, np.zeros(9)).pvalue
    assert f"| liver | suprem − scratch | +0.300 | {p:.3g} | 3 + 3 | {p_pair:.3g} | 9 |" in text
    assert "3 trial(s)" in text and "two-sample t-test (Student's)" in text
    assert (tmp_path / "table2" / "table2.png").stat().st_size > 1000


def test_fig2b_annotation_saving_and_figure(tmp_path):
    rows = (rows_for("fig2b", "scratch", "2", [0.40, 0.42], "liver") + rows_for("fig2b", "scratch", "8", [0.70, 0.70], "liver")
            + rows_for("fig2b", "suprem", "2", [0.72, 0.74], "liver") + rows_for("fig2b", "suprem", "8", [0.85, 0.86], "liver"))
    text = write_report(results_folder(tmp_path, "fig2b", rows)).read_text()
    assert "| num_train_cases | scratch | suprem |" in text
    assert "| 2 | 0.410 ± 0.014 | 0.730 ± 0.014 * |" in text
    assert "| 8 | 0.700 | suprem | 2 | 75% |" in text  # 2 cases reach what scratch reaches with 8
    assert (tmp_path / "fig2b" / "fig2b.png").is_file()


def test_table3_one_sample_ood_vs_iid_mean(tmp_path):
    ood = [0.60, 0.70, 0.65, 0.75]
    rows = [{"protocol": "table3", "arm": "ood", "setting": "PhantomExternalA", "trial": 0, "case": f"c{i}",
             "class": "liver", "dsc": v, "nsd": v} for i, v in enumerate(ood)]
    rows += rows_for("table3", "iid", "PhantomExternalA", [0.80, 0.82], "liver")
    text = write_report(results_folder(tmp_path, "table3", rows)).read_text()
    p = sps.ttest_1samp(ood, 0.81).pvalue
    assert f"| PhantomExternalA | liver | 0.675 ± 0.065 * | 4 | 0.810 ± 0.014 | 2 | -0.135 | {p:.3g} |" in text


def test_table4_rows_are_totalsegmentator_groups(tmp_path):
    rows = []
    for cls, (a, b) in {"iliopsoas_left": (0.3, 0.6), "autochthon_left": (0.5, 0.8), "vertebrae": (0.4, 0.45),
                        "pancreas": (0.2, 0.3)}.items():
        rows += rows_for("table4", "scratch", "4", [a, a + 0.02], cls) + rows_for("table4", "suprem", "4", [b, b + 0.02], cls)
    text = write_report(results_folder(tmp_path, "table4", rows)).read_text()
    assert "| group | scratch | suprem |" in text
    assert "| muscles | 0.410 ± 0.014 | 0.710 ± 0.014 * |" in text  # mean of the two muscle classes
    assert "| vertebrae |" in text and "| organs |" in text and "| cardiac |" not in text


def test_fig9_time_to_target_and_speedup(tmp_path):
    curves = [{"protocol": "fig9", "arm": arm, "setting": "4", "trial": 0, "epoch": e + 1, "seconds": 10 * (e + 1),
               "val_dsc_ema": v, "val_dsc": v}
              for arm, vals in (("scratch", [0.1, 0.3, 0.5, 0.6]), ("suprem", [0.4, 0.6, 0.7, 0.75]))
              for e, v in enumerate(vals)]
    rows = rows_for("fig9", "scratch", "4", [0.6], "liver") + rows_for("fig9", "suprem", "4", [0.7], "liver")
    text = write_report(results_folder(tmp_path, "fig9", rows, curves=curves)).read_text()
    assert "Target: scratch's final validation pseudo-DSC, 0.600" in text
    assert "| suprem | 0.750 ± 0.000 | 20 s (epoch 2.0); 1/1 trials | 2.00× |" in text
    assert (tmp_path / "fig9" / "fig9.png").is_file()


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
