"""kill -9 and resume (issue 13, part 2): each command runs as a subprocess, is SIGKILLed at a
deterministic point (a file it writes appears, or a hook inside torch.save signals that it is half
way through a checkpoint), is rerun, and is compared with an uninterrupted run. Also a truncated
checkpoint on resume, and output piped into a reader that goes away (`suprem_convert --list | head`)."""
from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict

import numpy as np
import pytest
import SimpleITK as sitk

from helpers.paths import ROOT

pytestmark = pytest.mark.slow

DS = "Dataset061_Kill"
CLASSES = ["liver", "spleen", "kidney_left"]
TRAINER_DIR = "SupremPretrainer__suprem_nnunet__3d_fullres"
EPOCHS = 3
BUDGET = ["--device", "cpu", "--epochs", str(EPOCHS), "--iterations-per-epoch", "2", "--val-iterations", "1",
          "--optimizer", "adamw", "--save-every", "1"]

#: run inside the killed training process: torch.save of checkpoint_latest writes half the bytes,
#: flushes them, signals the test through a marker file and waits to be killed
SAVE_HOOK = r'''
import io, os, sys, time
import torch
marker, calls, real = sys.argv[1], [], torch.save

def save(obj, f, *args, **kwargs):
    if isinstance(f, (str, os.PathLike)) and "checkpoint_latest" in os.fspath(f):
        calls.append(f)
        if len(calls) == 1:
            buf = io.BytesIO()
            real(obj, buf, *args, **kwargs)
            with open(f, "wb") as fh:
                fh.write(buf.getvalue()[: len(buf.getvalue()) // 2])
                fh.flush()
                os.fsync(fh.fileno())
            open(marker, "w").close()
            time.sleep(600)
    return real(obj, f, *args, **kwargs)

torch.save = save
from suprem_nnunet.cli.train import main
sys.exit(main(sys.argv[2:]))
'''

#: `python -c HOOK marker module.function n command args...`: runs `python -m command args...` with
#: `module.function` wrapped so that its n-th call completes, signals the test through the marker
#: file and waits to be killed (a deterministic kill point between two steps of the command)
HOOK = r'''
import importlib, runpy, sys, time
marker, target, n, command = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
owner, name = target.rsplit(".", 1)
owner = importlib.import_module(owner)
real, calls = getattr(owner, name), []

def hooked(*args, **kwargs):
    out = real(*args, **kwargs)
    calls.append(1)
    if len(calls) == n:
        open(marker, "w").close()
        time.sleep(600)
    return out

setattr(owner, name, hooked)
sys.argv = [command, *sys.argv[5:]]
runpy.run_module(command, run_name="__main__", alter_sys=True)
'''


def start_hooked(tmp: Path, target: str, n: int, args, env) -> tuple:
    """Start `python -m args...` with HOOK on `target`; returns (process, marker file)."""
    marker = tmp / f"hook-{target}-{n}"
    return start(["-c", HOOK, marker, target, n, *args[1:]], env), marker


# ---------------------------------------------------------------------------- helpers
def _env(**folders) -> Dict[str, str]:
    env = {**os.environ, "nnUNet_n_proc_DA": "0", "nnUNet_compile": "f", "OMP_NUM_THREADS": "1"}
    env.update({k: str(v) for k, v in folders.items()})
    return env


def start(args, env) -> subprocess.Popen:
    """`python args` in its own process group (so that it can be killed with its worker processes)."""
    return subprocess.Popen([sys.executable, *map(str, args)], cwd=str(ROOT), env=env, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def kill_when(proc: subprocess.Popen, ready: Callable[[], bool], what: str, timeout: float = 120) -> None:
    """SIGKILL the process group of `proc` (the command and any pool workers it started) as soon as
    `ready()` holds; fail if the command ends or times out first."""
    end = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None:
            raise AssertionError(f"the process ended ({proc.returncode}) before {what}:\n{proc.stdout.read()[-3000:]}")
        if time.monotonic() > end:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL


def first(folder: Path, pattern: str) -> Callable[[], bool]:
    return lambda: folder.is_dir() and any(folder.glob(pattern))


def tree_digest(folder: Path) -> Dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def world(tmp_path_factory, one_torch_thread):
    """A tiny phantom dataset, planned and preprocessed, and an uninterrupted 3-epoch training run
    (the references every killed run is compared with)."""
    from suprem_nnunet.planning.planner import PlanningCaps, plan_and_preprocess, plans_name_for
    from suprem_nnunet.synth.dataset import make_phantom_dataset
    from suprem_nnunet.training.base import SupremPretrainer, TrainingBudget
    from suprem_nnunet.training.run import build_trainer, train

    root = tmp_path_factory.mktemp("kill")
    old = {v: os.environ.get(v) for v in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")}
    for v in old:
        (root / v).mkdir()
        os.environ[v] = str(root / v)
    make_phantom_dataset(61, "Kill", CLASSES, 3, 2, shape=(32, 32, 32), spacing=(10, 10, 10), seed=5,
                         progress=False)
    # preprocessing is killed when its first case file appears, then rerun (and used by everything below)
    pre = root / "nnUNet_preprocessed" / DS
    args = ["-m", "suprem_nnunet.cli.plan_and_preprocess", "-d", "61", "--max-patch", "32", "--base-features", "8",
            "--max-features", "32", "--batch-size", "2", "-np", "1", "--no-verify"]
    kill_when(start(args, _env()), first(pre, "*/*.b2nd"), "the first preprocessed case")
    killed = sorted(p.name for p in pre.glob("*/*") if p.suffix in (".b2nd", ".pkl"))
    fingerprint = pre / "dataset_fingerprint.json"  # as if killed while nnU-Net wrote it in place
    fingerprint.write_text(fingerprint.read_text()[:100])  # (the rerun must not fail to parse it)
    plan_and_preprocess(DS, "nnunet", ("3d_fullres",), PlanningCaps((32, 32, 32), 8, 32, 2), num_processes=1,
                        verify=False)
    trainer = build_trainer(SupremPretrainer, DS, plans_name_for("nnunet"))
    fold = train(trainer, TrainingBudget(epochs=EPOCHS, iterations_per_epoch=2, val_iterations=1,
                                         optimizer="adamw", save_every=1))
    yield {"root": root, "fold": Path(fold), "killed_preprocessing": killed}
    for v, val in old.items():
        if val is None:
            os.environ.pop(v, None)
        else:
            os.environ[v] = val


def _results_env(world, name: str) -> Dict[str, str]:
    r = world["root"]
    return _env(nnUNet_raw=r / "nnUNet_raw", nnUNet_preprocessed=r / "nnUNet_preprocessed", nnUNet_results=r / name)


def _assert_same_state_as_uninterrupted(fold: Path, reference: Path, resumed: dict) -> None:
    """Final checkpoint of a resumed run vs the uninterrupted one: epoch count, AdamW step per
    parameter, learning rate, logged epochs; and the epochs before the kill come from `resumed`."""
    from suprem_nnunet.networks.checkpoint import load_training_checkpoint as load_checkpoint
    got, ref = load_checkpoint(fold / "checkpoint_final.pth"), load_checkpoint(reference / "checkpoint_final.pth")
    assert got["current_epoch"] == ref["current_epoch"] == EPOCHS
    steps = {int(s["step"]) for s in got["optimizer_state"]["state"].values()}
    assert steps == {int(s["step"]) for s in ref["optimizer_state"]["state"].values()} == {EPOCHS * 2}
    assert got["optimizer_state"]["param_groups"][0]["lr"] == pytest.approx(ref["optimizer_state"]["param_groups"][0]["lr"])
    assert len(got["logging"]["train_losses"]) == len(ref["logging"]["train_losses"]) == EPOCHS
    e = int(resumed["current_epoch"])
    assert got["logging"]["train_losses"][:e] == resumed["logging"]["train_losses"][:e]  # continued, not restarted
    assert not (fold / "checkpoint_latest.pth").exists() and not list(fold.glob(".tmp-*"))


# ---------------------------------------------------------------------------- training
def test_training_killed_twice_resumes_to_the_uninterrupted_state(world, caplog):
    """suprem_train is SIGKILLed (1) as soon as checkpoint_latest.pth appears (end of epoch 1 of 3),
    then, rerun, (2) while torch.save has written half of its next checkpoint_latest; the third run
    completes. Each rerun continues from the last complete checkpoint; the final state matches the
    uninterrupted run. Written in place, checkpoint_latest.pth would be left truncated by kill (2) and
    the rerun would die reading it (and kill (1) would usually catch it half-written)."""
    from suprem_nnunet.networks.checkpoint import load_training_checkpoint as load_checkpoint

    env = _results_env(world, "res_kill")
    fold = world["root"] / "res_kill" / DS / TRAINER_DIR / "fold_all"
    proc = start(["-m", "suprem_nnunet.cli.train", DS, "3d_fullres", *BUDGET], env)
    kill_when(proc, lambda: (fold / "checkpoint_latest.pth").exists(), "checkpoint_latest.pth")
    assert not (fold / "checkpoint_final.pth").exists()
    first_kill = load_checkpoint(fold / "checkpoint_latest.pth")  # complete, though just renamed into place
    assert first_kill["current_epoch"] == 1

    marker = world["root"] / "in_torch_save"
    proc = start(["-c", SAVE_HOOK, marker, DS, "3d_fullres", *BUDGET], env)
    kill_when(proc, marker.exists, "the hook inside torch.save")
    assert list(fold.glob(".tmp-*-checkpoint_latest.pth"))  # the half-written file has a temporary name
    second_kill = load_checkpoint(fold / "checkpoint_latest.pth")  # the previous one, complete
    assert second_kill["current_epoch"] == 1 and second_kill["logging"] == first_kill["logging"]

    from suprem_nnunet.cli.train import main as train_main  # the third run: in-process, the same command

    with results_folder(world, "res_kill"), caplog.at_level(logging.INFO, logger="suprem_nnunet"):
        assert train_main([DS, "3d_fullres", *BUDGET]) == 0
    assert "at epoch 1 of 3" in caplog.text
    _assert_same_state_as_uninterrupted(fold, world["fold"], first_kill)


def _copy_run(world, name: str) -> Path:
    fold = world["root"] / name / DS / TRAINER_DIR / "fold_all"
    shutil.copytree(world["fold"].parent.parent, fold.parent.parent)
    return fold


@contextlib.contextmanager
def results_folder(world, name: str):
    """nnUNet_results = world root / `name` while in the block."""
    os.environ["nnUNet_results"] = str(world["root"] / name)
    try:
        yield
    finally:
        os.environ["nnUNet_results"] = str(world["root"] / "nnUNet_results")


def _resume_in_process(world, name: str, caplog, epochs: int = EPOCHS):
    from suprem_nnunet.planning.planner import plans_name_for
    from suprem_nnunet.training.base import SupremPretrainer, TrainingBudget
    from suprem_nnunet.training.run import build_trainer, train

    with results_folder(world, name):
        trainer = build_trainer(SupremPretrainer, DS, plans_name_for("nnunet"))
        with caplog.at_level(logging.INFO, logger="suprem_nnunet"):
            train(trainer, TrainingBudget(epochs=epochs, iterations_per_epoch=1, val_iterations=1, optimizer="adamw"))
    return trainer


def test_truncated_latest_checkpoint_falls_back_to_final(world, caplog):
    """A truncated checkpoint_latest.pth (half of a real one) is skipped with a warning; the complete
    final one is used; resuming does not stop at 'not a readable PyTorch checkpoint'."""
    fold = _copy_run(world, "res_trunc")
    data = (fold / "checkpoint_final.pth").read_bytes()
    (fold / "checkpoint_latest.pth").write_bytes(data[: len(data) // 2])
    trainer = _resume_in_process(world, "res_trunc", caplog)
    assert re.search(r"checkpoint_latest\.pth: skipped for resuming, it cannot be read", caplog.text)
    assert "checkpoint_final.pth at epoch 3 of 3" in caplog.text and "nothing to do" in caplog.text
    assert trainer.current_epoch == EPOCHS and (fold / "checkpoint_final.pth").read_bytes() == data


def test_no_readable_checkpoint_starts_from_scratch(world, caplog):
    """Every checkpoint truncated: warnings, then training from epoch 0 (no crash)."""
    from suprem_nnunet.networks.checkpoint import load_training_checkpoint as load_checkpoint

    fold = _copy_run(world, "res_none")
    for name in ("checkpoint_final.pth", "checkpoint_best.pth"):
        data = (fold / name).read_bytes()
        (fold / name).write_bytes(data[: len(data) // 3])
    (fold / ".tmp-1-checkpoint_latest.pth").write_bytes(b"left by a killed run")
    _resume_in_process(world, "res_none", caplog, epochs=1)
    assert caplog.text.count("skipped for resuming") == 2 and "training starts from scratch" in caplog.text
    assert load_checkpoint(fold / "checkpoint_final.pth")["current_epoch"] == 1
    assert not list(fold.glob(".tmp-*"))


# ---------------------------------------------------------------------------- conversion
@pytest.mark.parametrize("point,target,n", [
    ("after the first staged image", "SimpleITK.WriteImage", 1),  # image staged, label not yet
    ("after the first case record", "dataset_conversion.runner.atomic_write_json", 2),  # 1st call: state.json
])
def test_conversion_killed_then_rerun_is_byte_identical(tmp_path, point, target, n):
    """SIGKILL at a step of suprem_convert; the rerun completes with the uninterrupted conversion's
    bytes."""
    from helpers.conversion_replicas import phantom, source_label, write
    from dataset_conversion.runner import convert

    for i in range(3):
        ph = phantom(300 + i, "RAS")
        write(tmp_path / "in" / f"volume-{i}.nii.gz", ph.image, ph)
        write(tmp_path / "in" / f"segmentation-{i}.nii.gz", source_label(ph, {1: "liver", 2: "liver_tumor"}), ph)
    convert("lits", tmp_path / "in", 1, "T", raw_root=tmp_path / "ref", progress=False)
    args = ["-m", "suprem_nnunet.cli.convert", "lits", tmp_path / "in", "-d", "1", "--name", "T", "--no-progress"]
    kill_rerun_and_compare(tmp_path, target, n, point, args, "Dataset001_T")


def kill_rerun_and_compare(tmp_path: Path, target: str, n: int, point: str, args, dataset: str) -> None:
    """Run `python args` (suprem_convert) on nnUNet_raw = tmp_path/raw, SIGKILL it at `point` (the
    n-th call of `target`), check that no dataset.json was written, rerun the same command to the
    end (in-process: the rerun needs no kill) and compare every byte of `dataset` with the
    uninterrupted run's copy under tmp_path/ref."""
    from suprem_nnunet.cli.convert import main

    env = _env(nnUNet_raw=tmp_path / "raw")
    proc, marker = start_hooked(tmp_path, target, n, args, env)
    kill_when(proc, marker.exists, point)
    folder = tmp_path / "raw" / dataset
    assert not (folder / "dataset.json").exists()
    old = os.environ.get("nnUNet_raw")
    os.environ["nnUNet_raw"] = str(tmp_path / "raw")
    try:
        assert main([str(a) for a in args[2:]]) == 0
    finally:
        if old is None:
            os.environ.pop("nnUNet_raw")
        else:
            os.environ["nnUNet_raw"] = old
    assert tree_digest(folder) == tree_digest(tmp_path / "ref" / dataset)


@pytest.mark.parametrize("point,target,n", [
    ("after the first image thumbnail is staged", "numpy.savez", 1),  # cached as .tmp.npz, not yet renamed
    ("after the first merged case record", "dataset_conversion.runner.atomic_write_json", 2),  # 1st: state.json
])
def test_merge_killed_then_rerun_is_byte_identical(tmp_path, point, target, n):
    """SIGKILL at a step of `suprem_convert merge` (two converted sources, LiTS and MSD Task09);
    the rerun completes with the uninterrupted merge's bytes, thumbnails and case records included."""
    from helpers.conversion_replicas import phantom, source_label, write
    from dataset_conversion.merge import merge
    from dataset_conversion.runner import convert

    small = dict(shape=(16, 16, 12), spacing=(20.0, 20.0, 20.0))
    for i in range(2):
        ph = phantom(310 + i, "RAS", **small)
        write(tmp_path / "lits" / f"volume-{i}.nii.gz", ph.image, ph)
        write(tmp_path / "lits" / f"segmentation-{i}.nii.gz", source_label(ph, {1: "liver", 2: "liver_tumor"}), ph)
        ph = phantom(320 + i, "LPS", **small)
        write(tmp_path / "msd" / "imagesTr" / f"spleen_{i}.nii.gz", ph.image, ph)
        write(tmp_path / "msd" / "labelsTr" / f"spleen_{i}.nii.gz", source_label(ph, {1: "spleen"}), ph)
    convert("lits", tmp_path / "lits", 1, "L", raw_root=tmp_path / "raw", progress=False)
    convert("msd_task09", tmp_path / "msd", 2, "S", raw_root=tmp_path / "raw", progress=False)
    shutil.copytree(tmp_path / "raw", tmp_path / "ref")
    merge([1, 2], 3, "M", raw_root=tmp_path / "ref", progress=False)
    args = ["-m", "suprem_nnunet.cli.convert", "merge", "1", "2", "-d", "3", "--name", "M", "--no-progress"]
    kill_rerun_and_compare(tmp_path, target, n, point, args, "Dataset003_M")


# ---------------------------------------------------------------------------- preprocessing
def test_preprocessing_killed_then_rerun_gives_complete_data(world):
    """The fixture killed suprem_plan_and_preprocess when its first case file appeared (and truncated
    the fingerprint, which nnU-Net writes in place and reuses), then reran it: the rerun completed,
    extracted the fingerprint again and rewrote every case (nnU-Net's preprocessor clears its output
    folder), so no file of the killed run is used: every case loads in full and matches its .pkl."""
    import json
    import pickle

    import blosc2

    pre = world["root"] / "nnUNet_preprocessed" / DS
    assert world["killed_preprocessing"]  # the kill came after the first case file appeared
    assert json.loads((pre / "dataset_fingerprint.json").read_text())["spacings"]
    data = next(p for p in pre.iterdir() if p.is_dir() and list(p.glob("*.b2nd")))
    cases = sorted(p.name[: -len(".pkl")] for p in data.glob("*.pkl"))
    assert cases == [f"kill_{i:03d}" for i in range(3)]
    assert sorted(p.name for p in data.iterdir()) == sorted(f"{c}{e}" for c in cases for e in (".b2nd", "_seg.b2nd", ".pkl"))
    for c in cases:
        with open(data / f"{c}.pkl", "rb") as f:
            props = pickle.load(f)
        img, seg = (blosc2.open(str(data / f"{c}{e}"), mode="r")[:] for e in (".b2nd", "_seg.b2nd"))
        assert img.shape[1:] == seg.shape[1:] and np.isfinite(img).all() and seg.max() > 0, c
        assert "shape_before_cropping" in props


# ---------------------------------------------------------------------------- prediction
def test_prediction_killed_leaves_no_partial_output(world, tmp_path):
    """Killed after its first case is written to its temporary folder: nothing under a final name
    in the output folder; the rerun writes every case and removes the killed run's temporary
    folder (the `.tmp-<pid>/` of a killed run does not stay in the output folder)."""
    from suprem_nnunet.inference.predict import predict

    images = world["root"] / "nnUNet_raw" / DS / "imagesTs"
    model = world["fold"].parent
    predict(images, tmp_path / "ref", model, "cpu")
    out = tmp_path / "out"
    env = _env(**{v: os.environ[v] for v in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")})
    args = ["-m", "suprem_nnunet.cli.predict", "-i", images, "-o", out, "-m", model, "--device", "cpu"]
    proc, marker = start_hooked(tmp_path, "SimpleITK.WriteImage", 1, args, env)  # 1st write: a label map
    kill_when(proc, marker.exists, "the first prediction written")
    assert len(list(out.glob(".tmp-*/*.nii.gz"))) == 1  # written to the temporary folder ...
    assert not list(out.glob("*.nii.gz"))  # nothing half-written under a final name
    from suprem_nnunet.cli.predict import main as predict_main  # the rerun: in-process, the same command

    assert predict_main([str(a) for a in args[2:]]) == 0
    assert not list(out.glob(".tmp-*"))  # the killed run's temporary folder is gone
    ref = sorted(p.name for p in (tmp_path / "ref").glob("*.nii.gz"))
    assert sorted(p.name for p in out.glob("*.nii.gz")) == ref and len(ref) == 2
    for name in ref:
        np.testing.assert_array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(out / name))),
                                      sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "ref" / name))))


# ---------------------------------------------------------------------------- closed stdout
@pytest.mark.parametrize("module,args", [("suprem_nnunet.cli.convert", ["--list"]),
                                         ("suprem_nnunet.cli.zoo", ["list"])])
def test_output_into_a_closed_pipe_ends_quietly(tmp_path, module, args):
    """`suprem_convert --list | head`: the reader is gone before the command writes, and the command
    ends quietly: no BrokenPipeError traceback (nor an 'Exception ignored' BrokenPipeError message at exit)
    and no failure status."""
    env = _env(SUPREM_HOME=tmp_path, SUPREM_ZOO=tmp_path / "zoo", nnUNet_raw=tmp_path / "raw", nnUNet_preprocessed=tmp_path / "pre",
               nnUNet_results=tmp_path / "res")
    proc = subprocess.Popen([sys.executable, "-m", module, *args], cwd=str(ROOT), env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc.stdout.close()  # like `head` exiting before the command writes
    err = proc.stderr.read()
    proc.wait()
    proc.stderr.close()
    assert proc.returncode == 0 and "BrokenPipe" not in err and "Traceback" not in err, err


def test_released_model_prediction_interrupted_while_writing_leaves_no_file(tmp_path, monkeypatch):
    """The direct-inference path (released checkpoints) writes through a temporary name too: a write
    that dies half way leaves nothing under the final name (no truncated case.nii.gz)."""
    import torch

    from suprem_nnunet.zoo.predict import predict_released

    class Liver(torch.nn.Module):
        class_names = ["liver"]

        def forward(self, x):
            return 20.0 * ((x > 0.5).float() - 0.5)

    arr = np.full((20, 20, 20), -1000.0, np.float32)
    arr[5:15, 5:15, 5:15] = 150.0
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing((2.0, 2.0, 2.0))
    sitk.WriteImage(img, str(tmp_path / "ct.nii.gz"))
    real = sitk.WriteImage

    def dies_half_way(image, path, *args):
        real(image, path, *args)
        data = Path(path).read_bytes()
        Path(path).write_bytes(data[: len(data) // 2])
        raise OSError("killed while writing")

    monkeypatch.setattr(sitk, "WriteImage", dies_half_way)
    out = tmp_path / "pred" / "case.nii.gz"
    with pytest.raises(OSError, match="killed while writing"):
        predict_released(Liver(), tmp_path / "ct.nii.gz", out, roi_size=(16, 16, 16))
    assert not out.exists() and not list(out.parent.iterdir())
    monkeypatch.setattr(sitk, "WriteImage", real)
    predict_released(Liver(), tmp_path / "ct.nii.gz", out, roi_size=(16, 16, 16))
    assert sitk.GetArrayFromImage(sitk.ReadImage(str(out)))[10, 10, 10] > 0


def test_finetune_target_with_a_truncated_case_is_preprocessed_again(world, tmp_path):
    """Fine-tuning reuses the target's preprocessed data when every case is there; a case whose .pkl
    a killed run left truncated is not 'there' (counting .pkl files would train on it)."""
    import json
    import pickle

    from suprem_nnunet.training.finetune import prepare_target

    target = "Dataset063_KillTgt"
    shutil.copytree(world["root"] / "nnUNet_raw" / DS, world["root"] / "nnUNet_raw" / target)
    pre = world["root"] / "nnUNet_preprocessed" / target
    shutil.copytree(world["root"] / "nnUNet_preprocessed" / DS, pre)  # an up-to-date preprocessed target ...
    plans = json.loads((pre / "suprem_nnunet.json").read_text())
    plans = {**plans, "dataset_name": target}
    (pre / "suprem_nnunet.json").write_text(json.dumps(plans))
    data = pre / plans["configurations"]["3d_fullres"]["data_identifier"]
    pkl = sorted(data.glob("*.pkl"))[-1]
    pkl.write_bytes(pkl.read_bytes()[:40])  # ... whose last case a killed run left truncated
    prepare_target(target, plans, "3d_fullres", 1, False)
    with open(pkl, "rb") as f:
        assert "shape_before_cropping" in pickle.load(f)
