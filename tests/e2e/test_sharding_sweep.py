"""suprem_experiment run --shard K/N: two shards run as two concurrent processes, merged by `report`,
give the same results.csv / curves.csv / runs.csv, byte for byte, as one unsharded sweep; the
pre-training both shards need is made once (a lock on its folder). Bad input stops in one line with
nothing written: a --shard that does not parse, a shard of another protocol version, and a report
over an incomplete set of shards. A stub stands in for training (tests/helpers/sharding_sweep_script.py)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from helpers.paths import ROOT
from helpers.sharding_sweep_script import DATASETS, main as sweep
from suprem_nnunet.experiments.api import report_folder
from suprem_nnunet.experiments.protocol import ProtocolError, load_protocol
from suprem_nnunet.experiments.runner import plan_runs
from suprem_nnunet.experiments.shards import ShardMismatch, assign

SCRIPT = ROOT / "tests" / "helpers" / "sharding_sweep_script.py"
CSVS = ("results.csv", "curves.csv", "runs.csv")


def test_assignment_is_by_sorted_run_folder_disjoint_and_complete():
    p = load_protocol("fig1")
    runs = plan_runs(p, p.scale("phantom"), 2, DATASETS)
    parts = [assign(runs, k, 3) for k in range(3)]
    indices = sorted(i for part in parts for i, _ in part)
    assert indices == list(range(len(runs)))  # each run in exactly one shard
    folders = sorted(str(r.folder) for r in runs)
    assert [str(s.folder) for _, s in sorted(parts[1], key=lambda x: str(x[1].folder))] == folders[1::3]
    assert all(runs[i] == s for part in parts for i, s in part)


@pytest.mark.slow  # three sweeps in subprocesses
def test_two_concurrent_shards_merge_to_the_unsharded_sweep(tmp_path):
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests'}",
           "SUPREM_LOCK_DIR": str(tmp_path / "locks")}
    whole = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "whole"), "-"], env=env,
                           capture_output=True, text=True, timeout=300)
    assert whole.returncode == 0, whole.stderr[-2000:]
    out = tmp_path / "sharded"
    procs = [subprocess.Popen([sys.executable, str(SCRIPT), str(out), f"{k}/2"], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for k in range(2)]
    errs = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [e[-2000:] for e in errs]
    folder = out / "fig1"
    assert not any((folder / f).exists() for f in CSVS)  # shards write only their runs and manifests
    manifests = sorted(f.name for f in (folder / "shards").iterdir())
    assert manifests == ["shard-0-of-2.json", "shard-1-of-2.json"]
    assert all(json.loads((folder / "shards" / m).read_text())["complete"] for m in manifests)
    assert len((out / "made.log").read_text().splitlines()) == 1  # the pre-training both shards need: made once
    report = report_folder(folder)
    assert report.is_file()
    for f in CSVS:
        assert (folder / f).read_bytes() == (tmp_path / "whole" / "fig1" / f).read_bytes(), f
    assert len((folder / "results.csv").read_text().splitlines()) == 1 + 2 * 2 * 3 * 2


def test_report_over_incomplete_shards_names_them_and_writes_nothing(tmp_path):
    folder = sweep(str(tmp_path), "0/3")
    with pytest.raises(ProtocolError) as e:
        report_folder(folder)
    msg = str(e.value)
    assert "\n" not in msg and "shard(s) 1/3, 2/3 not started" in msg and "no report written" in msg
    first = sorted((folder / "runs").rglob("result.json"))[0]
    first.unlink()
    with pytest.raises(ProtocolError, match=r"1 of the started shards' runs have no result \(") as e:
        report_folder(folder)
    assert not any((folder / f).exists() for f in (*CSVS, "report.md"))


def test_a_shard_of_another_protocol_version_is_refused_in_one_line(tmp_path):
    folder = sweep(str(tmp_path), "0/2")
    before = sorted(p.relative_to(folder) for p in folder.rglob("*"))
    with pytest.raises(ShardMismatch) as e:
        sweep(str(tmp_path), "1/2", protocol_text='{"edited": true}')
    msg = str(e.value)
    assert "\n" not in msg and "shard-0-of-2.json: a shard of another sweep (version" in msg
    assert sorted(p.relative_to(folder) for p in folder.rglob("*")) == before  # nothing written
    with pytest.raises(ShardMismatch, match="a shard of 2, not 3"):
        sweep(str(tmp_path), "1/3")
    # report: a shard of another version among finished ones (e.g. copied in from another --out)
    sweep(str(tmp_path), "1/2")
    m = json.loads((folder / "shards" / "shard-1-of-2.json").read_text())
    m["identity"]["version"] = "0123456789abcdef"
    (folder / "shards" / "shard-1-of-2.json").write_text(json.dumps(m))
    with pytest.raises(ShardMismatch) as e:
        report_folder(folder)
    assert "\n" not in str(e.value) and "shard-1-of-2.json: a shard of another sweep" in str(e.value)
    assert not (folder / "results.csv").exists()


@pytest.mark.parametrize("text, message", [("3/2", "K in 0..1"), ("a/b", "expected K/N"), ("0/0", "N at least 1"),
                                           ("2", "expected K/N"), ("1/-2", "expected K/N")])
def test_bad_shard_argument_is_one_argparse_line(tmp_path, capsys, text, message):
    from suprem_nnunet.cli import experiment

    with pytest.raises(SystemExit) as e:
        experiment.main(["run", "fig1", "--out", str(tmp_path / "x"), "--shard", text])
    err = [ln for ln in capsys.readouterr().err.splitlines() if "error:" in ln]
    assert e.value.code == 2 and len(err) == 1 and f"argument --shard: " in err[0] and message in err[0], err
    assert not (tmp_path / "x").exists()


def test_report_cli_merges_the_shards(tmp_path, capsys):
    from suprem_nnunet.cli import experiment

    for k in range(2):
        sweep(str(tmp_path), f"{k}/2")
    assert experiment.main(["report", str(tmp_path)]) == 0
    assert capsys.readouterr().out.strip() == f"report: {tmp_path / 'fig1' / 'report.md'}"
    assert (tmp_path / "fig1" / "results.csv").is_file()
