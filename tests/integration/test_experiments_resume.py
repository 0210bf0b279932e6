"""The runner resumes: finished runs are skipped, a killed sweep completes on rerun, a corrupt result
JSON makes that run (only) run again with one line logged. A stub stands in for training."""
from __future__ import annotations

import csv
import json
import logging

import pytest

from suprem_nnunet.experiments.data import DatasetInfo
from suprem_nnunet.experiments.execute import Context
from suprem_nnunet.experiments.protocol import load_protocol, protocol_file
from suprem_nnunet.experiments.runner import plan_runs, run_sweep

DATASETS = {931: DatasetInfo(931, "Dataset931_PhantomPretrain", 16, 0),
            932: DatasetInfo(932, "Dataset932_PhantomTarget", 10, 4)}


class Killed(Exception):
    pass


class StubRun:
    """Records each run; 'trains' to a DSC that depends on arm and trial; can die at call n."""

    def __init__(self, die_at=None):
        self.calls, self.die_at = [], die_at

    def __call__(self, ctx, spec, folder):
        self.calls.append((spec.arm, spec.setting, spec.trial))
        if self.die_at is not None and len(self.calls) == self.die_at:
            (folder / "model").mkdir()  # a half-finished run leaves files, but no result.json
            raise Killed()
        dsc = (0.8 if spec.arm == "suprem" else 0.5) + 0.01 * spec.trial
        return {"rows": [{"case": f"c{i}", "class": "liver", "dsc": dsc, "nsd": dsc} for i in range(2)],
                "curve": [], "seconds": 1.0, "train_seconds": 1.0, "pretraining": {}, "target": "t"}


def sweep(out, fn, trials=3):
    p = load_protocol("fig1")  # 2 arms x 3 sizes
    ctx = Context(out, "phantom", p.scale("phantom"), DATASETS)
    return run_sweep(p, "phantom", out, ctx, fn, trials, protocol_file("fig1").read_text())


def test_trials_share_the_few_shot_draw_across_arms_and_differ_between_trials():
    p = load_protocol("fig1")
    runs = plan_runs(p, p.scale("phantom"), 2, DATASETS)
    assert len(runs) == 2 * 2 * 3
    by = {(r.arm, r.setting, r.trial): r.seed for r in runs}
    assert by[("scratch", "4", 1)] == by[("suprem", "4", 1)] != by[("suprem", "4", 0)]
    assert [r.trial for r in runs[:6]] == [0] * 6  # trials outermost


def test_killed_sweep_completes_on_rerun_without_redoing_finished_runs(tmp_path):
    with pytest.raises(Killed):
        sweep(tmp_path, StubRun(die_at=8))
    stub = StubRun()
    folder = sweep(tmp_path, stub)
    assert len(stub.calls) == 18 - 7  # run 8 (killed) again, and the ten never started
    assert stub.calls[0] == ("scratch", "2", 1)  # trial 1: scratch 1, then the killed scratch 2
    with open(folder / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 18 * 2 and set(rows[0]) == {"protocol", "arm", "setting", "trial", "case", "class",
                                                    "dsc", "nsd"}
    assert not (folder / "runs" / "scratch" / "2" / "trial_01" / "model").exists()  # restarted clean
    again = StubRun()
    sweep(tmp_path, again)
    assert again.calls == []


def test_corrupt_result_json_reruns_that_run_only(tmp_path, caplog):
    folder = sweep(tmp_path, StubRun(), trials=2)
    bad = folder / "runs" / "scratch" / "2" / "trial_01" / "result.json"
    bad.write_text(bad.read_text()[:40])  # truncated, as by a crash mid-write of a non-atomic tool
    other = folder / "runs" / "suprem" / "1" / "trial_00" / "result.json"
    other.write_text(json.dumps({"rows": [{"case": "c0"}]}))  # readable JSON, wrong content
    stub = StubRun()
    with caplog.at_level(logging.WARNING, logger="suprem_nnunet.experiments.runner"):
        sweep(tmp_path, stub, trials=2)
    assert sorted(stub.calls) == [("scratch", "2", 1), ("suprem", "1", 0)]
    lines = [r.getMessage() for r in caplog.records if "corrupt result" in r.getMessage()]
    assert len(lines) == 2 and all("\n" not in m for m in lines) and str(bad) in " ".join(lines)
    assert json.loads(bad.read_text())["rows"][0]["dsc"] == pytest.approx(0.51)


def test_a_changed_budget_reruns_the_runs_it_shapes_when_asked(tmp_path, caplog):
    import dataclasses

    p = load_protocol("table2")
    scale = p.scale("phantom")
    ctx = Context(tmp_path, "phantom", scale, DATASETS)
    run_sweep(p, "phantom", tmp_path, ctx, StubRun(), 1, protocol_file("table2").read_text())
    longer = dataclasses.replace(scale, budget=dataclasses.replace(scale.budget, epochs=99))
    p2 = dataclasses.replace(p, scales=(("phantom", longer),))
    stub = StubRun()
    with caplog.at_level(logging.WARNING, logger="suprem_nnunet.experiments.runner"):
        run_sweep(p2, "phantom", tmp_path, Context(tmp_path, "phantom", longer, DATASETS), stub, 1,
                  rerun_changed=True)
    lines = [r.getMessage() for r in caplog.records if "other settings" in r.getMessage()]
    assert len(stub.calls) == 2 and len(lines) == 2 and all("budget" in m for m in lines)


def _results(folder):
    return {f: f.read_bytes() for f in sorted((folder / "runs").rglob("result.json"))}


@pytest.mark.parametrize("change", ["device", "seed", "budget"])
def test_a_resumed_sweep_with_other_settings_stops_in_one_line_and_overwrites_nothing(tmp_path, change):
    """A CPU sweep resumed with --device cuda (or another seed or budget) and more trials must not
    run only the new trials and report one table from both settings."""
    import dataclasses

    from suprem_nnunet.experiments.runner import KeyMismatch

    p = load_protocol("table2")
    scale = p.scale("phantom")
    run_sweep(p, "phantom", tmp_path, Context(tmp_path, "phantom", scale, DATASETS), StubRun(), 2)
    folder = tmp_path / "table2"
    before, csv_before = _results(folder), (folder / "results.csv").read_bytes()
    kw = {"device": dict(device="cuda"), "seed": dict(seed=7), "budget": {}}[change]
    other = dataclasses.replace(scale, budget=dataclasses.replace(scale.budget, epochs=99)) \
        if change == "budget" else scale
    p2 = dataclasses.replace(p, scales=(("phantom", other),))
    stub = StubRun()
    with pytest.raises(KeyMismatch) as e:
        run_sweep(p2, "phantom", tmp_path, Context(tmp_path, "phantom", other, DATASETS, **kw), stub, 3)
    msg = str(e.value)
    assert "\n" not in msg and "made with other settings" in msg and change in msg and "4 of 6 runs" in msg
    assert stub.calls == [] and _results(folder) == before and (folder / "results.csv").read_bytes() == csv_before


def test_run_key_records_device_mirroring_precision_seed_data_and_versions(tmp_path):
    from suprem_nnunet.experiments.runner import run_key_fields

    p = load_protocol("table2")
    scale = p.scale("phantom")
    spec = plan_runs(p, scale, 1, DATASETS)[0]
    cpu = run_key_fields(Context(tmp_path, "phantom", scale, DATASETS), scale, spec)
    cuda = run_key_fields(Context(tmp_path, "phantom", scale, DATASETS, device="cuda"), scale, spec)
    assert {"device", "mirroring", "precision", "seed", "target_data", "pretrained_weights", "suprem_nnunet",
            "nnunetv2"} <= set(cpu)
    assert {k for k in cpu if cpu[k] != cuda[k]} == {"device", "mirroring", "precision", "pretrained_weights"}


def test_runs_csv_gives_pretraining_compute_to_pretrained_arms_only(tmp_path):
    class WithPretraining(StubRun):
        def __call__(self, ctx, spec, folder):
            return {**super().__call__(ctx, spec, folder), "pretraining": {"cases": 16, "seconds": 90.0}}

    p = load_protocol("fig2a")
    ctx = Context(tmp_path, "phantom", p.scale("phantom"), DATASETS)
    folder = run_sweep(p, "phantom", tmp_path, ctx, WithPretraining(), 1, protocol_file("fig2a").read_text())
    with open(folder / "runs.csv") as f:
        runs = {(r["arm"], r["setting"]): r for r in csv.DictReader(f)}
    assert runs[("scratch", "0")]["pretrain_seconds"] == ""  # scratch takes only the plans
    assert runs[("suprem", "16")]["pretrain_seconds"] == "90.0"


@pytest.mark.slow
def test_parallel_sweep_equals_the_sequential_one(tmp_path):
    """--jobs 2: the same runs (each once) and byte-identical results.csv as one process."""
    p = load_protocol("fig1")
    prepared = []
    seq = sweep(tmp_path / "seq", StubRun(), trials=2)
    ctx = Context(tmp_path / "par", "phantom", p.scale("phantom"), DATASETS)
    par = run_sweep(p, "phantom", tmp_path / "par", ctx, StubRun(), 2, protocol_file("fig1").read_text(), jobs=2,
                    prepare_fn=lambda c, source, n: prepared.append((source, n)))
    assert (seq / "results.csv").read_bytes() == (par / "results.csv").read_bytes()
    assert prepared == [("suprem", None)]  # each pre-training made once, before the workers start
    assert len(list((par / "runs").rglob("result.json"))) == 2 * 2 * 3
