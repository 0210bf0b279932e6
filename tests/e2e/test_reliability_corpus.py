"""The bad-input corpus through every command that reads it (issue 13, parts 1 and 3).

Every row of `ROWS` puts one input of `tests/helpers/bad_inputs.py` where one command reads it, runs the
command's `main(argv)` in-process and checks: the exit status (not 0, unless the row says the
input is handled), exactly one line on stderr naming the file and the problem, and nothing
half-written (the folders the command writes into are snapshotted before and after: a failed
command leaves them unchanged, no temporary file behind). A few rows run the real console scripts
in subprocesses. The outcomes form `tests/e2e/reliability.md` (with the kill points of
`test_reliability_kill_resume.py`); the test fails when the committed file differs, and
`SUPREM_UPDATE_RELIABILITY=1` rewrites it.
"""
from __future__ import annotations

import ast
import contextlib
import errno
import io
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import pytest
import SimpleITK as sitk

from helpers import bad_inputs as bi
from helpers.paths import ROOT

pytestmark = pytest.mark.slow

TABLE = Path(__file__).with_name("reliability.md")
CORPUS_DS, CORPUS_ID = "Dataset240_Corpus", 240
TRAINER_DIR = "SupremPretrainer__suprem_nnunet__3d_fullres"
FAST = ["--device", "cpu", "--epochs", "1", "--iterations-per-epoch", "1", "--val-iterations", "1"]


# ---------------------------------------------------------------------------- the world
@pytest.fixture(scope="module")
def world(tmp_path_factory, one_torch_thread):
    """A tiny raw dataset (2 cases, 16^3) with its fingerprint and plans, and a zoo store: the good
    things each bad input replaces a part of."""
    from nnunetv2.experiment_planning.plan_and_preprocess_api import (extract_fingerprint_dataset,
                                                                     plan_experiment_dataset)

    from suprem_nnunet.planning.planner import PlanningCaps, planner_class, plans_name_for
    from suprem_nnunet.synth.dataset import make_phantom_dataset

    root = tmp_path_factory.mktemp("corpus")
    names = ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results", "SUPREM_ZOO")
    old = {v: os.environ.get(v) for v in names}
    for v in names:
        (root / v).mkdir()
        os.environ[v] = str(root / v)
    make_phantom_dataset(CORPUS_ID, "Corpus", ["liver"], 2, 1, shape=(16, 16, 16), spacing=(20, 20, 20), seed=3,
                         progress=False)
    # fingerprint and plans (what planning writes before preprocessing; no row needs preprocessed cases)
    extract_fingerprint_dataset(CORPUS_ID, num_processes=1, check_dataset_integrity=False, clean=True, verbose=False)
    with contextlib.redirect_stdout(io.StringIO()):
        plan_experiment_dataset(CORPUS_ID, planner_class("nnunet", PlanningCaps((16, 16, 16), 4, 8, 2)),
                                overwrite_plans_name=plans_name_for("nnunet"))
    plans = root / "nnUNet_preprocessed" / CORPUS_DS / "suprem_nnunet.json"
    files = bi.write_all(root / "corpus", good_plans=plans)
    yield {"root": root, "files": files, "good": {"plans": plans}, "n": [0]}
    for v, val in old.items():
        if val is None:
            os.environ.pop(v, None)
        else:
            os.environ[v] = val


@pytest.fixture(scope="module")
def trained(world):
    """The world plus a model folder (the network of the world's plans with its initial weights, in
    the layout and checkpoint format training writes), its exported zip, and the corpus's
    checkpoints and archives derived from them."""
    import torch
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    from suprem_nnunet.zoo import export_model

    plans = json.loads(world["good"]["plans"].read_text())
    dataset_json = json.loads((world["root"] / "nnUNet_raw" / CORPUS_DS / "dataset.json").read_text())
    pm = PlansManager(plans)
    torch.manual_seed(0)
    net = nnUNetTrainer.build_network_architecture(pm, pm.get_configuration("3d_fullres"), 1, 2,
                                                   enable_deep_supervision=False)
    model = world["root"] / "nnUNet_results" / CORPUS_DS / TRAINER_DIR
    (model / "fold_all").mkdir(parents=True)
    (model / "plans.json").write_text(json.dumps(plans))
    (model / "dataset.json").write_text(json.dumps(dataset_json))
    ckpt = model / "fold_all" / "checkpoint_final.pth"
    torch.save({"network_weights": net.state_dict(), "trainer_name": "SupremPretrainer", "current_epoch": 1,
                "init_args": {"plans": plans, "configuration": "3d_fullres", "fold": "all",
                              "dataset_json": dataset_json},
                "inference_allowed_mirroring_axes": (0, 1, 2)}, ckpt)
    world["model"] = model
    world["good"].update(checkpoint=ckpt, zip=export_model(model, world["root"] / "good" / "model.zip"))
    world["files"].update(bi.write_all(world["root"] / "corpus", ckpt, world["good"]["zip"]))
    return world


def fresh(world, what: str) -> Path:
    """A new empty folder under the world's root for one row."""
    world["n"][0] += 1
    d = world["root"] / "rows" / f"{world['n'][0]:03d}-{what}"
    d.mkdir(parents=True)
    return d


def new_dataset(world, bad: str) -> Tuple[str, int]:
    """A copy of the good raw dataset under a new id (the row then breaks one part of it)."""
    world["n"][0] += 1
    ds_id = 300 + world["n"][0]
    name = f"Dataset{ds_id:03d}_{re.sub('[^A-Za-z0-9]', '', bad.title())}"
    shutil.copytree(world["root"] / "nnUNet_raw" / CORPUS_DS, world["root"] / "nnUNet_raw" / name)
    return name, ds_id


def last_case(raw: Path) -> str:
    return sorted(p.name[: -len(".nii.gz")] for p in (raw / "labelsTr").glob("*.nii.gz"))[-1]


def break_case(world, bad: bi.BadInput, images: Path, labels: Path, stem: str, channel: bool = True) -> Path:
    """Put `bad` into case `stem` of an images/labels folder pair; returns the path of the bad part."""
    image_file = images / f"{stem}{'_0000' if channel else ''}.nii.gz"
    label_file = labels / f"{stem}.nii.gz"
    if bad.kind == "image":
        bad.write(image_file)
        return image_file
    if bad.kind == "label":
        bad.write(label_file, image_file)
        return label_file
    if bad.kind == "case":
        for f in (image_file, label_file):
            f.unlink(missing_ok=True)
        bad.write(images, labels, stem)
        if not channel and (images / f"{stem}_0000.nii.gz").exists():
            os.replace(images / f"{stem}_0000.nii.gz", image_file)
        return images
    raise AssertionError(bad.kind)


# ---------------------------------------------------------------------------- per-command set-ups
# Each returns (the command's main function, argv, the folders it writes into).
Setup = Tuple[Callable, List[str], List[Path]]


def convert_setup(world, name: str, skip_bad: bool = False) -> Setup:
    """MSD Task09 layout with one bad case (and a good one with --skip-bad); DICOM inputs go
    through Pancreas-CT (a DICOM series per case, NIfTI labels)."""
    from suprem_nnunet.cli.convert import main

    bad = bi.BY_NAME[name]
    src = fresh(world, f"convert-{name}")
    out = ["--no-progress", *(["--skip-bad"] if skip_bad else [])]
    dataset_id = str(300 + world["n"][0])
    if bad.kind == "dicom":
        series = src / "PANCREAS_0001" / "study" / "series"
        bad.write(series)
        bi.write_image(src / "labels" / "label0001.nii.gz", bi.image(bi.label_array()))
        return main, ["pancreas_ct", str(src), "-d", dataset_id, *out], [world["root"] / "nnUNet_raw"]
    task = src / "Task09_Spleen"
    if skip_bad:
        bi.write_good_case(task / "imagesTr", task / "labelsTr", "spleen_1", channel=False)
    if bad.kind in ("image", "label", "case"):
        bi.write_good_case(task / "imagesTr", task / "labelsTr", "spleen_2", channel=False)
        break_case(world, bad, task / "imagesTr", task / "labelsTr", "spleen_2", channel=False)
    return main, ["msd_task09", str(src), "-d", dataset_id, *out], [world["root"] / "nnUNet_raw"]


def plan_setup(world, name: str) -> Setup:
    from suprem_nnunet.cli.plan_and_preprocess import main

    bad = bi.BY_NAME[name]
    ds, ds_id = new_dataset(world, name)
    raw = world["root"] / "nnUNet_raw" / ds
    if bad.kind == "json":
        bad.write(raw / "dataset.json")
    else:
        break_case(world, bad, raw / "imagesTr", raw / "labelsTr", last_case(raw))
    argv = ["-d", str(ds_id), "-np", "1", "--max-patch", "16", "--base-features", "4", "--max-features", "8"]
    return main, argv, [world["root"] / "nnUNet_preprocessed"]


def predict_setup(world, name: str, skip_bad: bool = False) -> Setup:
    from suprem_nnunet.cli.predict import main

    bad = bi.BY_NAME[name]
    row = fresh(world, f"predict-{name}")
    out = row / "pred"
    out.mkdir()
    (out / "earlier_case.nii.gz").write_bytes(b"an earlier prediction, must stay as it is")
    model = str(world["model"])
    if bad.kind == "image":
        inp = row / "in"
        inp.mkdir()
        if skip_bad:
            bi.write_image(inp / "good_case.nii.gz", bi.image(bi.ct_array()))
        bad.write(inp / f"{name}.nii.gz")
        inp = inp if skip_bad else inp / f"{name}.nii.gz"
    elif bad.kind == "dicom":
        inp = row / "series"
        bad.write(inp)
    elif bad.kind == "case":
        inp = row / "in"
        bad.write(inp, row / "labels", "case")
    elif bad.kind == "checkpoint":
        inp, model = world["root"] / "nnUNet_raw" / CORPUS_DS / "imagesTs", str(world["files"][name])
    else:
        raise AssertionError(name)
    return main, ["-i", str(inp), "-o", str(out), "-m", model, "--device", "cpu",
                  *(["--skip-bad"] if skip_bad else [])], [out]


def evaluate_setup(world, name: str, skip_bad: bool = False) -> Setup:
    """Predictions (the model's label ids in pred/dataset.json) against ground truth next to a dataset.json."""
    from suprem_nnunet.cli.evaluate import main

    bad = bi.BY_NAME[name]
    row = fresh(world, f"evaluate-{name}")
    pred, gt = row / "pred", row / "gt" / "labelsTs"
    labels = {"background": 0, "liver": 1}
    for d in (pred, gt.parent):
        d.mkdir(parents=True, exist_ok=True)
        (d / "dataset.json").write_text(json.dumps({"labels": labels, "file_ending": ".nii.gz"}))
    gt.mkdir()
    stems = ["case_a", "case_b"] if skip_bad else ["case_b"]
    for s in stems:
        bi.write_image(pred / f"{s}.nii.gz", bi.image(bi.label_array()))
        bi.write_image(gt / f"{s}.nii.gz", bi.image(bi.label_array()))
    if bad.kind == "image":  # a broken prediction
        bad.write(pred / "case_b.nii.gz")
    elif bad.kind == "label":  # broken ground truth for a good prediction
        bad.write(gt / "case_b.nii.gz", pred / "case_b.nii.gz")
    elif bad.kind == "case":
        for f in (pred / "case_b.nii.gz", gt / "case_b.nii.gz"):
            f.unlink()
        bad.write(gt, pred, "case_b")  # 'images' = GT, 'labels' = predictions
        if (gt / "case_b_0000.nii.gz").exists():
            os.replace(gt / "case_b_0000.nii.gz", gt / "case_b.nii.gz")
            if (pred / "case_b.nii.gz").exists():
                bi.write_image(gt / "case_b.nii.gz", bi.image(bi.label_array()))
    elif bad.kind == "json":
        bad.write(gt.parent / "dataset.json")
    out = row / "metrics"
    out.mkdir()
    (out / "metrics.json").write_text('{"earlier": "metrics, must stay as they are"}')
    return main, [str(pred), str(gt), "-o", str(out), *(["--skip-bad"] if skip_bad else [])], [out]


def train_setup(world, name: str) -> Setup:
    """A copy of the preprocessed dataset with broken plans or dataset.json."""
    from suprem_nnunet.cli.train import main

    bad = bi.BY_NAME[name]
    ds, _ = new_dataset(world, name)
    pre = world["root"] / "nnUNet_preprocessed" / ds
    shutil.copytree(world["root"] / "nnUNet_preprocessed" / CORPUS_DS, pre)
    plans = json.loads((pre / "suprem_nnunet.json").read_text())
    (pre / "suprem_nnunet.json").write_text(json.dumps({**plans, "dataset_name": ds}))
    if bad.kind == "plans":
        bad.write(pre / "suprem_nnunet.json", pre / "suprem_nnunet.json")
    else:
        bad.write(pre / "dataset.json")
    return main, [ds, "3d_fullres", *FAST], [world["root"] / "nnUNet_results"]


def finetune_setup(world, name: str) -> Setup:
    from suprem_nnunet.cli.finetune import main

    bad = bi.BY_NAME[name]
    ds, _ = new_dataset(world, name)
    raw = world["root"] / "nnUNet_raw" / ds
    pretrained = str(world["good"]["checkpoint"])
    if bad.kind == "checkpoint":
        pretrained = str(world["files"][name])
    elif bad.kind == "json":
        bad.write(raw / "dataset.json")
    else:
        break_case(world, bad, raw / "imagesTr", raw / "labelsTr", last_case(raw))
    return main, [ds, "--pretrained", pretrained, "-np", "1", *FAST], \
        [world["root"] / "nnUNet_preprocessed", world["root"] / "nnUNet_results"]


def zoo_setup(world, name: str) -> Setup:
    from suprem_nnunet.cli.zoo import main

    bad = bi.BY_NAME[name]
    if bad.kind == "image":  # a zero-byte download
        f = fresh(world, f"zoo-{name}") / "supervised_suprem_unet_2100.pth"
        f.write_bytes(b"")
    else:
        f = world["files"][name]
    return main, ["import", str(f), "--name", f"corpus_{name}"], [world["root"] / "SUPREM_ZOO", Path("/tmp")]


SETUPS = {"suprem_convert": convert_setup, "suprem_plan_and_preprocess": plan_setup, "suprem_train": train_setup,
          "suprem_finetune": finetune_setup, "suprem_predict": predict_setup, "suprem_evaluate": evaluate_setup,
          "suprem_zoo import": zoo_setup}


# ---------------------------------------------------------------------------- environment inputs
class Unwritable:
    """Make `folder` unwritable: chmod for a normal user, `chattr +i` for root (whom chmod does not stop)."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.root = folder, os.geteuid() == 0

    def __enter__(self):
        if self.root:
            r = subprocess.run(["chattr", "+i", str(self.folder)], capture_output=True, text=True)
            if r.returncode != 0:
                pytest.fail(f"cannot make {self.folder} unwritable as root (chattr +i: {r.stderr.strip()})")
        else:
            self.folder.chmod(0o555)
        return self

    def __exit__(self, *exc) -> None:
        if self.root:
            subprocess.run(["chattr", "-i", str(self.folder)], check=True)
        else:
            self.folder.chmod(0o755)


def disk_full(monkeypatch, images: bool = True, files: bool = True) -> None:
    """Writes of images (SimpleITK) and/or of files through pathlib fail like a full disk, after
    writing half of the data (what a real full disk leaves behind)."""
    real_write = sitk.WriteImage

    def write_image(img, path, *args, **kwargs):
        real_write(img, path, *args, **kwargs)
        data = Path(path).read_bytes()
        with open(path, "wb") as f:
            f.write(data[: len(data) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    def write_bytes(self, data):
        with open(self, "wb") as f:
            f.write(data[: len(data) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))

    if images:
        monkeypatch.setattr(sitk, "WriteImage", write_image)
    if files:
        monkeypatch.setattr(Path, "write_bytes", write_bytes)


# ---------------------------------------------------------------------------- running and checking
def snapshot(folders: List[Path]) -> Dict[str, str]:
    """{path: sha1} of every file (and folder) under `folders`."""
    out = {}
    for d in folders:
        if d == Path("/tmp"):  # only the zip-slip targets, not the whole of /tmp
            out.update({str(p): "x" for p in d.glob("suprem_zip_*evil*")})
            continue
        for p in sorted(d.rglob("*")) if d.is_dir() else []:
            out[str(p)] = hashlib.sha1(p.read_bytes()).hexdigest() if p.is_file() else "dir"
    return out


def shorten(text: str, world) -> str:
    """Deterministic message: the temporary root, pids and row numbers taken out."""
    text = text.replace(str(world["root"]), "…")
    text = re.sub(r"…/rows/\d{3}-", "…/", text)
    text = re.sub(r"Dataset(\d{3})_", lambda m: "Dataset" + ("NNN" if int(m[1]) > 300 else m[1]) + "_", text)
    text = re.sub(r"-d \d+", "-d N", text)
    text = re.sub(r"\.tmp-\d+", ".tmp-PID", text)
    text = re.sub(r"staging/\d+-", "staging/PID-", text)
    text = re.sub(r"\.import\.\w+", ".import.XXXX", text)
    return text.replace("|", "\\|")


@dataclass(frozen=True)
class Row:
    bad: str
    command: str
    expect: str = "error"  # 'error' or 'ok' (the input is handled: ignored, skipped or accepted)
    skip_bad: bool = False
    note: str = ""  # what 'ok' means, for the table

    @property
    def id(self) -> str:
        return f"{self.bad}-{self.command.replace(' ', '_')}{'-skip' if self.skip_bad else ''}"


def R(bad: str, *commands: str, **kw) -> List[Row]:
    return [Row(bad, c, **kw) for c in commands]


CONV, PLAN, PRED, EVAL = "suprem_convert", "suprem_plan_and_preprocess", "suprem_predict", "suprem_evaluate"
TRAIN, FT, ZOO = "suprem_train", "suprem_finetune", "suprem_zoo import"
ROWS: List[Row] = [
    *R("zero_byte", CONV, PLAN, PRED, EVAL, ZOO),
    *R("corrupt_gzip", CONV, PLAN, PRED, EVAL),
    *R("truncated_nifti", CONV, PLAN, PRED, EVAL, FT),
    *R("huge_header", CONV, PLAN, PRED, EVAL),
    *R("nan_inf", CONV, PLAN, PRED),
    *R("image_2d", CONV, PLAN, PRED, EVAL),
    *R("image_4d", CONV, PLAN, PRED, EVAL),
    *R("oblique", CONV, expect="ok", note="converted: voxel axes turned to the nearest of LPS, the tilt kept in "
                                          "the header (nothing resampled)"),
    *R("oblique", PRED, expect="ok", note="segmented and written in the input's own oblique geometry"),
    *R("label_size", CONV, PLAN, EVAL, FT),
    *R("label_spacing", CONV, PLAN, EVAL),
    *R("label_origin", CONV, PLAN, EVAL),
    *R("label_direction", CONV, PLAN, EVAL),
    *R("label_outside_map", CONV, PLAN, EVAL),
    *R("label_float", CONV, PLAN, EVAL),
    *R("label_empty", CONV, expect="ok", note="accepted: a case may hold background only"),
    *R("label_empty", EVAL, expect="ok", note="scored: DSC and NSD 0 for the class predicted where the ground truth "
                                          "has none (NaN only when both are empty)"),
    *R("missing_label", CONV, PLAN, EVAL),
    *R("missing_image", CONV, PLAN, EVAL),
    *R("stray_files", PLAN),  # nnU-Net itself would read ._case.nii.gz as a case
    *R("stray_files", CONV, PRED, EVAL, expect="ok", note="the stray files are ignored"),
    *R("dicom_missing_slice", CONV, PRED),
    *R("dicom_two_series", CONV, PRED),
    *R("json_malformed", PLAN, TRAIN, FT, EVAL),
    *R("json_no_labels", PLAN, TRAIN, FT, EVAL),
    *R("plans_unknown_backbone", TRAIN),
    *R("ckpt_truncated", PRED, FT, ZOO),
    *R("ckpt_pickled", PRED, FT, ZOO),
    *R("ckpt_other_arch", PRED, FT, ZOO),
    *R("zip_slip", ZOO),
    *R("zip_absolute", ZOO),
    *R("zip_bomb", ZOO),
    *R("zip_truncated", ZOO),
    *R("truncated_nifti", CONV, PRED, EVAL, expect="ok", skip_bad=True, note="the bad case skipped and reported"),
    *R("unwritable_output", CONV, PRED, EVAL, ZOO),
    *R("disk_full", CONV, PRED, EVAL),
]
SUBPROCESS = {"zero_byte-suprem_convert", "truncated_nifti-suprem_predict", "zip_slip-suprem_zoo_import",
              "label_size-suprem_evaluate"}
OUTCOMES: Dict[str, str] = {}


def setup_row(world, row: Row, monkeypatch) -> Tuple[Setup, Optional[Path]]:
    """The command's (main, argv, watched folders), and a folder to make unwritable (or None). For
    the environment inputs the command gets good data that it would write out (a case with stray
    files around it; for conversion a good case and one without label, skipped)."""
    make = SETUPS[row.command]
    if row.bad == "unwritable_output":
        ok = {"suprem_convert": "missing_label", "suprem_predict": "stray_files", "suprem_evaluate": "stray_files",
              "suprem_zoo import": "ckpt_truncated"}[row.command]
        if row.command == "suprem_convert":
            main, argv, watched = make(world, ok, skip_bad=True)
            ro = fresh(world, "ro-raw")
            monkeypatch.setenv("nnUNet_raw", str(ro))
            return (main, argv, [ro]), ro
        if row.command == "suprem_zoo import":
            ro = fresh(world, "ro-zoo")
            monkeypatch.setenv("SUPREM_ZOO", str(ro / "store"))
            (ro / "store").mkdir()
            return (*zoo_setup_good(world), [ro]), ro / "store"
        main, argv, watched = make(world, ok)
        return (main, argv, watched), watched[0]
    if row.bad == "disk_full":
        ok = {"suprem_convert": "missing_label", "suprem_predict": "stray_files", "suprem_evaluate": "stray_files"}
        setup = make(world, ok[row.command], skip_bad=True) if row.command != "suprem_predict" \
            else make(world, ok[row.command])
        disk_full(monkeypatch, images=row.command != "suprem_evaluate", files=row.command == "suprem_evaluate")
        return setup, None
    kw = {"skip_bad": True} if row.skip_bad else {}
    return make(world, row.bad, **kw), None


def zoo_setup_good(world) -> tuple:
    from suprem_nnunet.cli.zoo import main

    return main, ["import", str(world["good"]["zip"]), "--name", "corpus_good"]


def run_row(world, row: Row, capsys, monkeypatch) -> Tuple[int, str, str]:
    (main, argv, watched), ro = setup_row(world, row, monkeypatch)
    capsys.readouterr()
    before = snapshot(watched)
    if ro is not None:
        with Unwritable(ro):
            status = main(argv)
    else:
        status = main(argv)
    out, err = capsys.readouterr()
    monkeypatch.undo()
    after = snapshot(watched)
    if status != 0:
        assert after == before, f"{row.id}: a failed command changed {sorted(set(after.items()) ^ set(before.items()))}"
    leftovers = [p for p in after if re.search(r"[/\\]\.tmp|\.import\.|[/\\]\.index\.|staging/.", p)]
    assert not leftovers, f"{row.id}: temporary files left: {leftovers}"
    if row.skip_bad:  # the good case was done
        done = {"suprem_convert": r"imagesTr/msd09_1_0000\.nii\.gz$", "suprem_predict": r"pred/good_case\.nii\.gz$",
                "suprem_evaluate": r"metrics/metrics\.csv$"}[row.command]
        assert any(re.search(done, p) for p in set(after) - set(before)), f"{row.id}: the good case was not done"
    return status, out, err


NEEDS_MODEL = {"suprem_predict", "suprem_finetune", "suprem_train", "suprem_zoo import"}


def message_lines(err: str) -> List[str]:
    """The lines of stderr a user reads: progress bars (tqdm, redrawn in place with carriage
    returns and gone when the command ends) are not counted."""
    parts = re.split(r"[\r\n]+", err)
    return [p for p in parts if p.strip() and not re.search(r"\d+%\|.*\||\d+(\.\d+)?(it/s|s/it)\]", p)]


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_bad_input(world, row, capsys, monkeypatch, request):
    if row.command in NEEDS_MODEL:
        request.getfixturevalue("trained")
    status, out, err = run_row(world, row, capsys, monkeypatch)
    lines = message_lines(err)
    if row.expect == "error":
        assert status != 0, f"{row.id}: exit {status}\nstdout: {out}\nstderr: {err}"
        assert len(lines) == 1, f"{row.id}: stderr is not one line:\n{err}"
        assert "Traceback" not in err
        assert re.search(r"error: \S*/\S+", lines[0]), f"{row.id}: the message names no file: {lines[0]}"
        OUTCOMES[row.id] = f"exit {status}: {shorten(lines[0], world)}"
    else:
        assert status == 0, f"{row.id}: exit {status}\nstdout: {out}\nstderr: {err}"
        if row.skip_bad:  # the report names the skipped case
            assert re.search(r"skipped.*(spleen_2|truncated_nifti|case_b)", out, re.I | re.S), f"{row.id}:\n{out}"
        OUTCOMES[row.id] = f"exit 0: {row.note}"


# ---------------------------------------------------------------------------- real console scripts
@pytest.mark.parametrize("row_id", sorted(SUBPROCESS))
def test_console_script(world, row_id, request):
    """The same input through the installed console script: exit 1 and one line on stderr; with
    SUPREM_DEBUG=1 the traceback as well."""
    row = next(r for r in ROWS if r.id == row_id)
    if row.command in NEEDS_MODEL:
        request.getfixturevalue("trained")
    main, argv, watched = SETUPS[row.command](world, row.bad)
    script = Path(sys.executable).with_name(row.command.split()[0])
    env = {**os.environ, "nnUNet_n_proc_DA": "0", "OMP_NUM_THREADS": "1"}
    env.pop("SUPREM_DEBUG", None)
    r = subprocess.run([str(script), *argv], capture_output=True, text=True, env=env, cwd=str(ROOT), timeout=300)
    lines = message_lines(r.stderr)
    assert r.returncode == 1 and len(lines) == 1, r.stderr
    assert "Traceback" not in r.stderr
    OUTCOMES[row_id] = f"exit 1: {shorten(lines[0], world)}"
    if row_id == "zero_byte-suprem_convert":  # the traceback on request
        main, argv, watched = SETUPS[row.command](world, row.bad)
        r = subprocess.run([str(script), *argv], capture_output=True, text=True,
                           env={**env, "SUPREM_DEBUG": "1"}, cwd=str(ROOT), timeout=300)
        assert r.returncode == 1 and "Traceback" in r.stderr and r.stderr.strip().splitlines()[-1].startswith(
            "suprem_convert: error:")


def test_debug_flag_gives_the_traceback(world, capsys):
    """`--debug`: the full traceback, then the same one line (without it: the line alone, above)."""
    from suprem_nnunet.cli.evaluate import main

    _, argv, _ = evaluate_setup(world, "truncated_nifti")
    assert main([*argv, "--debug"]) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "check_image_file" in err
    assert err.strip().splitlines()[-1].startswith("suprem_evaluate: error: ") and "truncated file" in err


def test_closed_pipe_real_script(tmp_path):
    """`suprem_convert --list | head`: the real script into a reader that has gone: exit 0, nothing on stderr."""
    proc = subprocess.Popen([str(Path(sys.executable).with_name("suprem_convert")), "--list"], cwd=str(ROOT),
                            env={**os.environ, "nnUNet_raw": str(tmp_path)}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    proc.stdout.close()
    err = proc.stderr.read()
    proc.wait()
    proc.stderr.close()
    assert proc.returncode == 0 and err == "", err
    OUTCOMES["closed_pipe-suprem_convert"] = "exit 0: quiet, the reader took what it wanted (as `head` expects)"


# ---------------------------------------------------------------------------- the table
def kill_points() -> List[str]:
    """The kill points of test_reliability_kill_resume.py: each test's first docstring sentence, and
    the points of a test parametrized over ("point", ...)."""
    tree = ast.parse(Path(__file__).with_name("test_reliability_kill_resume.py").read_text())
    out = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
            doc = " ".join((ast.get_docstring(node) or "").split())
            points = [elt.elts[0].value for d in node.decorator_list if isinstance(d, ast.Call)
                      and getattr(d.func, "attr", "") == "parametrize" and isinstance(d.args[0], ast.Constant)
                      and d.args[0].value.startswith("point") for elt in d.args[1].elts]
            more = f" Killed: {'; '.join(points)}." if points else ""
            out.append(f"- `{node.name}`: {doc.split('. ')[0].rstrip('.')}.{more}")
    return out


def table() -> str:
    rows = ROWS + [Row("closed_pipe", "suprem_convert")]
    subprocess_ids = SUBPROCESS
    lines = ["# Reliability: bad inputs and kill points",
             "",
             "Generated by `tests/e2e/test_reliability_corpus.py` (rerun with `SUPREM_UPDATE_RELIABILITY=1` to rewrite",
             "it); the inputs are written by `tests/helpers/bad_inputs.py`. Every command was run on each input; the",
             "outcome is its exit status and its one line on stderr (paths shortened to `…`). A failed command",
             "leaves the folders it writes into unchanged and no temporary file behind; the full traceback",
             "is printed only with `--debug` or `SUPREM_DEBUG=1`. Rows marked (script) ran the installed console",
             "script in a subprocess, the others `main(argv)` in-process.",
             "",
             f"{len({r.bad for r in rows})} inputs, {len(rows)} runs.",
             "",
             "| input | what | command | outcome |",
             "|---|---|---|---|"]
    for r in rows:
        outcome = OUTCOMES.get(r.id, "NOT RUN")
        cmd = r.command + (" --skip-bad" if r.skip_bad else "") + (" (script)" if r.id in subprocess_ids else "")
        what = bi.BY_NAME[r.bad].what.replace("|", "\\|")
        lines.append(f"| `{r.bad}` | {what} | `{cmd}` | {outcome} |")
    lines += ["", "## Kill points (`tests/e2e/test_reliability_kill_resume.py`)", "",
              "Each command is killed with SIGKILL at the point named, rerun, and compared with an",
              "uninterrupted run.", "", *kill_points(), ""]
    return "\n".join(lines)


def test_reliability_table_is_current():
    """Runs last (file order): the table from this run's outcomes equals the committed file."""
    missing = [r.id for r in ROWS if r.id not in OUTCOMES]
    if missing:
        pytest.skip(f"{len(missing)} corpus rows did not run in this session (e.g. {missing[0]}); run the whole file")
    text = table()
    if os.environ.get("SUPREM_UPDATE_RELIABILITY"):
        TABLE.write_text(text)
    assert TABLE.is_file() and TABLE.read_text() == text, (
        f"{TABLE} is out of date; rerun with SUPREM_UPDATE_RELIABILITY=1 to rewrite it")
