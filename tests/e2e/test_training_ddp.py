"""DDP on CPU (gloo): planning for N GPUs, the world-size check, the all-gathered partial-label loss,
the trainer's DDP step, the frozen-encoder stage change, BatchNorm handling and a torchrun run.

Why the torchrun run is not compared weight for weight with a single-process run: nnU-Net has no
distributed sampler. Each rank's `nnUNetDataLoader` draws its cases, patch positions and augmentation
parameters from its own process's random state (nnU-Net seeds none of it). A single process with the
same global batch draws them for the whole batch from one random stream (the batch's case keys,
then each sample's crop, then each transform); the ranks would have to share and interleave that
one stream, which per-rank seeds cannot do, so the two runs train on different samples. The
closest honest invariants are tested instead, on fixed tensors and the trainer's own `train_step`:
(1) after every DDP step both ranks hold identical weights; (2) three DDP steps with a fixed global
batch split across the ranks give the weights of three single-process steps on the concatenated
batch (same initial weights, and the deep-supervision weights nnU-Net uses under DDP), with the
marginal loss, an annotated mask, batch Dice, SGD and gradient clipping, across a frozen-encoder
stage change (the DDP wrapper is rebuilt); rank 0 alone writes a checkpoint;
(3) the all-gathered loss equals the single-process loss on the concatenated batch, and each
rank's gradient is world size x the single-process one (DDP then averages), also for an uneven
split (2 + 1 cases).
"""
import json
import logging
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from helpers.paths import ROOT

DS = "Dataset061_DdpTiny"
CLASSES = ["liver", "spleen"]
WORLD = 2
#: (B, C) annotated classes of the fixed cases: "a" annotates liver only, "b" both
ANNOTATED = {"a": [1], "b": [1, 2]}
STEPS = 3


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A 4-case phantom dataset planned for 2 GPUs (per-GPU batch 1, global batch 2), 16^3 patches."""
    from suprem_nnunet.planning.planner import PlanningCaps, plan_and_preprocess
    from suprem_nnunet.synth.dataset import make_phantom_dataset

    root = tmp_path_factory.mktemp("ddp")
    with pytest.MonkeyPatch.context() as env:  # nnU-Net's folders for this module (and its subprocesses)
        for v in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
            (root / v).mkdir()
            env.setenv(v, str(root / v))
        make_phantom_dataset(61, "DdpTiny", CLASSES, 4, 0, shape=(32, 32, 32), spacing=(10, 10, 10), seed=3,
                             progress=False)
        plans = plan_and_preprocess(DS, "nnunet", ("3d_fullres",), PlanningCaps((16, 16, 16), 4, 16, 1),
                                    num_processes=1, verify=False, num_gpus=WORLD)
        yield {"root": root, "plans": plans}


# ---------------------------------------------------------------------------- planning
@pytest.mark.slow
def test_plans_record_num_gpus_with_per_gpu_memory(tiny):
    from suprem_nnunet.planning.planner import PlanningCaps, planner_class, plans_for_num_gpus

    cfg = tiny["plans"]["configurations"]["3d_fullres"]
    assert (cfg["num_gpus"], cfg["batch_size_per_gpu"], cfg["batch_size"]) == (2, 1, 2)
    assert tiny["plans"]["suprem"]["num_gpus"] == 2
    # a fixed-topology backbone: the memory model is per GPU, so patch, per-GPU batch and memory are
    # those of the 1-GPU plan and only the global batch grows
    caps = PlanningCaps(max_patch=(32, 32, 32), base_features=4)
    one, four = (planner_class("unet", caps, num_gpus=n)(DS, 0.05).plan_experiment()["configurations"]["3d_fullres"]
                 for n in (1, 4))
    assert one["patch_size"] == four["patch_size"] and one["batch_size_per_gpu"] == four["batch_size_per_gpu"]
    assert one["estimated_training_memory_gb"] == four["estimated_training_memory_gb"]
    assert (one["num_gpus"], four["num_gpus"]) == (1, 4) and four["batch_size"] == 4 * one["batch_size"]
    # fine-tuning takes pre-trained plans to another number of GPUs, keeping the per-GPU batch
    moved = plans_for_num_gpus(tiny["plans"], 3)["configurations"]["3d_fullres"]
    assert (moved["batch_size"], moved["num_gpus"]) == (3, 3) and cfg["batch_size"] == 2  # caller's dict kept
    with pytest.raises(ValueError, match="--num-gpus must be at least 1"):
        planner_class("nnunet", num_gpus=0)


@pytest.mark.slow
def test_single_process_on_plans_for_two_gpus_is_one_line_error(tiny, capsys):
    """suprem_train without torchrun on plans made for 2 GPUs: one line naming the plans file and the
    flag; nothing is written to the results folder."""
    from suprem_nnunet.cli.train import main

    assert main([DS, "--device", "cpu", "--epochs", "1"]) == 1
    lines = [ln for ln in capsys.readouterr().err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("suprem_train: error: "), lines
    assert "suprem_nnunet.json" in lines[0] and "planned for 2 GPU(s) (global batch 2)" in lines[0]
    assert "--num-gpus 1" in lines[0] and "--nproc_per_node 2" in lines[0]
    assert not any((tiny["root"] / "nnUNet_results").iterdir())


def test_batchnorm_handling():
    """Plain BatchNorm becomes SyncBatchNorm on GPUs (nnU-Net's behaviour); the U-Net's batch-statistics
    BN (the release's, per-GPU statistics) is never converted; on CPU nothing is (no SyncBN kernel)."""
    from suprem_nnunet.networks.unet3d import BatchStatsBatchNorm3d
    from suprem_nnunet.training.ddp import prepare_network

    def net():
        return torch.nn.Sequential(torch.nn.Conv3d(1, 2, 1), torch.nn.BatchNorm3d(2), BatchStatsBatchNorm3d(2))

    gpu = prepare_network(net(), torch.device("cuda", 0))
    assert [type(m) for m in gpu[1:]] == [torch.nn.SyncBatchNorm, BatchStatsBatchNorm3d]
    cpu = prepare_network(net(), torch.device("cpu"))
    assert [type(m) for m in cpu[1:]] == [torch.nn.BatchNorm3d, BatchStatsBatchNorm3d]


# ---------------------------------------------------------------------------- 2 ranks, fixed tensors
def _fixed_loss_inputs():
    g = torch.Generator().manual_seed(7)
    logits = torch.randn(3, 4, 6, 6, 6, generator=g)
    target = torch.randint(0, 4, (3, 1, 6, 6, 6), generator=g)
    ann = torch.tensor([[1, 1, 0, 1], [1, 0, 1, 0], [1, 1, 1, 1]], dtype=torch.bool)
    return logits, target, ann


SPLIT = [(0, 2), (2, 3)]  # rank 0 holds 2 cases, rank 1 one


def _loss(batch_dice: bool, ddp: bool):
    from suprem_nnunet.training.loss import PartialLabelDiceCELoss

    return PartialLabelDiceCELoss(batch_dice=batch_dice, hosted=[(1, 3)], ddp=ddp)


def _fixed_batches(trainer, n: int):
    """`n` fixed global batches (2 cases, 16^3) with deep-supervision targets at the trainer's scales."""
    g = torch.Generator().manual_seed(11)
    out = []
    for _ in range(n):
        data = torch.randn(2, 1, 16, 16, 16, generator=g)
        seg = torch.randint(0, 3, (2, 1, 16, 16, 16), generator=g).float()
        target = [torch.nn.functional.interpolate(seg, size=[round(16 * f) for f in s], mode="nearest")
                  for s in trainer._get_deep_supervision_scales()]
        out.append({"data": data, "target": target, "keys": ["a", "b"]})
    return out


def _slice(batch: dict, lo: int, hi: int) -> dict:
    return {"data": batch["data"][lo:hi], "target": [t[lo:hi] for t in batch["target"]],
            "keys": batch["keys"][lo:hi]}


def _steps(trainer, batches, lo: int, hi: int, after_step=None) -> None:
    """Epoch 0 (encoder frozen): 2 steps; epoch 1 (unfrozen): the rest; the trainer's own hooks."""
    trainer.freeze_encoder_epochs = 1
    trainer.annotated_channels = dict(ANNOTATED)
    for i, batch in enumerate(batches):
        if i in (0, 2):
            trainer.current_epoch = 0 if i == 0 else 1
            trainer.on_train_epoch_start()
        trainer.train_step(_slice(batch, lo, hi))
        if after_step is not None:
            after_step()


class _EndOfWork(Exception):
    """Raised at the end of a rank's work, inside the process group's block: the group must go."""


def _worker(rank: int, port: int, out: str, plans_file: str) -> None:
    import torch.distributed as dist

    from suprem_nnunet.training import ddp

    torch.set_num_threads(1)
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(rank),
                       "LOCAL_RANK": str(rank), "WORLD_SIZE": str(WORLD)})  # what torchrun sets
    res = {}
    try:
        with ddp.process_group(torch.device("cpu")) as device:
            res["group"] = (dist.get_backend(), dist.get_world_size(), str(device))
            _rank_work(rank, out, plans_file, res)
            raise _EndOfWork
    except _EndOfWork:
        res["destroyed_on_error"] = not dist.is_initialized()
    finally:
        torch.save(res, Path(out) / f"rank{rank}.pt")


def _rank_work(rank: int, out: str, plans_file: str, res: dict) -> None:
    from suprem_nnunet.networks.unet3d import SuPreMUNet3D
    from suprem_nnunet.training import ddp

    _loss_on_rank(rank, res)
    _mismatch_on_rank(plans_file, res)
    _trainer_on_rank(rank, out, res)
    # the U-Net's batch-statistics BN under DDP: kept, and each rank normalises with its own batch
    net = ddp.wrap(ddp.prepare_network(SuPreMUNet3D(1, 3, base_features=2), torch.device("cpu")),
                   torch.device("cpu"))
    net(torch.randn(1, 1, 16, 16, 16)).sum().backward()
    res["unet_norms"] = sorted({type(m).__name__ for m in net.modules() if "Norm" in type(m).__name__})


def _loss_on_rank(rank: int, res: dict) -> None:
    """The marginal loss, all-gathered, on an uneven split of 3 fixed cases."""
    logits, target, ann = _fixed_loss_inputs()
    lo, hi = SPLIT[rank]
    for bd in (True, False):
        x = logits[lo:hi].clone().requires_grad_(True)
        loss = _loss(bd, ddp=True)
        loss.set_annotated(ann[lo:hi])
        value = loss(x, target[lo:hi])
        value.backward()
        local = _loss(bd, ddp=False)
        local.set_annotated(ann[lo:hi])
        res[f"loss_{bd}"], res[f"grad_{bd}"] = value.item(), x.grad.clone()
        res[f"local_{bd}"] = local(logits[lo:hi], target[lo:hi]).item()



def _mismatch_on_rank(plans_file: str, res: dict) -> None:
    """The world-size check: plans for 1 GPU in a 2-process group, before the output folder exists."""
    import torch.distributed as dist

    from suprem_nnunet.training.finetune import SupremFinetuneTrainer
    from suprem_nnunet.training.run import build_trainer

    plans = json.loads(Path(plans_file).read_text())
    cfg = plans["configurations"]["3d_fullres"]
    one = {**plans, "configurations": {"3d_fullres": {**cfg, "num_gpus": 1, "batch_size": 1}}}
    try:
        build_trainer(SupremFinetuneTrainer, DS, "suprem_nnunet", plans=one)
        res["mismatch"] = None
    except ValueError as e:
        res["mismatch"] = str(e)
    res["results_after_mismatch"] = sorted(os.listdir(os.environ["nnUNet_results"]))
    dist.barrier()  # both ranks have looked before either builds a trainer


def _trainer_on_rank(rank: int, out: str, res: dict) -> None:
    """The trainer: DDP on gloo, a fixed global batch split 1 + 1, frozen then unfrozen encoder."""
    import torch.distributed as dist

    from suprem_nnunet.training.base import unwrap
    from suprem_nnunet.training.finetune import SupremFinetuneTrainer
    from suprem_nnunet.training.run import build_trainer

    trainer = build_trainer(SupremFinetuneTrainer, DS, "suprem_nnunet")
    trainer.initialize()
    res["device"], res["batch_size"] = str(trainer.device), trainer.batch_size
    res["ds_weights"] = tuple(float(w) for w in trainer.loss.weight_factors)
    res["initial"] = {k: v.clone() for k, v in unwrap(trainer.network).state_dict().items()}
    spread, res["after_step"] = [], []

    def compare_ranks():
        vec = torch.cat([p.detach().flatten() for p in unwrap(trainer.network).parameters()])
        both = [torch.zeros_like(vec) for _ in range(WORLD)]
        dist.all_gather(both, vec)
        spread.append(float((both[0] - both[1]).abs().max()))
        res["after_step"].append({k: v.clone() for k, v in unwrap(trainer.network).state_dict().items()})

    _steps(trainer, _fixed_batches(trainer, STEPS), rank, rank + 1, compare_ranks)
    res["spread"] = spread
    res["final"] = {k: v.clone() for k, v in unwrap(trainer.network).state_dict().items()}
    trainer.save_checkpoint(str(Path(out) / f"checkpoint_rank{rank}.pth"))


@pytest.fixture(scope="module")
def two_ranks(tiny):
    out = tiny["root"] / "ranks"
    out.mkdir()
    plans_file = tiny["root"] / "nnUNet_preprocessed" / DS / "suprem_nnunet.json"
    torch.multiprocessing.spawn(_worker, args=(_free_port(), str(out), str(plans_file)), nprocs=WORLD, join=True)
    return out, [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]


@pytest.mark.slow
@pytest.mark.parametrize("batch_dice", [True, False])
def test_all_gathered_marginal_loss_equals_single_process(two_ranks, batch_dice):
    _, ranks = two_ranks
    logits, target, ann = _fixed_loss_inputs()
    x = logits.clone().requires_grad_(True)
    single = _loss(batch_dice, ddp=False)
    single.set_annotated(ann)
    value = single(x, target)
    value.backward()
    for r, (lo, hi) in enumerate(SPLIT):
        assert ranks[r][f"loss_{batch_dice}"] == pytest.approx(value.item(), rel=1e-5)
        # DDP averages the ranks' gradients: each rank's is WORLD x its share of the global one
        torch.testing.assert_close(ranks[r][f"grad_{batch_dice}"] / WORLD, x.grad[lo:hi], rtol=1e-4, atol=1e-7)
    # without gathering, each rank's loss would be that of its own cases only
    assert abs(ranks[1][f"local_{batch_dice}"] - value.item()) > 1e-3


@pytest.mark.slow
def test_process_group_gloo_on_cpu_and_destroyed_on_error(two_ranks):
    _, ranks = two_ranks
    assert [r["group"] for r in ranks] == [("gloo", WORLD, "cpu")] * WORLD
    assert all(r["destroyed_on_error"] for r in ranks)


@pytest.mark.slow
def test_world_size_mismatch_is_one_line_before_anything_is_written(two_ranks):
    _, ranks = two_ranks
    for res in ranks:
        msg = res["mismatch"]
        assert msg is not None and "\n" not in msg
        assert "suprem_nnunet.json" in msg and "planned for 1 GPU(s) (global batch 1)" in msg
        assert "torchrun started 2 processes" in msg and "--num-gpus 2" in msg
        assert res["results_after_mismatch"] == []


@pytest.mark.slow
def test_ddp_step_equals_single_process_step_on_the_concatenated_batch(tiny, two_ranks):
    from suprem_nnunet.training.base import unwrap
    from suprem_nnunet.training.finetune import SupremFinetuneTrainer
    from suprem_nnunet.training.run import build_trainer, load_preprocessed_plans

    out, ranks = two_ranks
    assert [r["device"] for r in ranks] == ["cpu", "cpu"] and [r["batch_size"] for r in ranks] == [1, 1]
    assert all(s == 0.0 for r in ranks for s in r["spread"]) and len(ranks[0]["spread"]) == STEPS
    # rank 0 alone writes checkpoints
    assert (out / "checkpoint_rank0.pth").is_file() and not (out / "checkpoint_rank1.pth").exists()

    plans, _ = load_preprocessed_plans(DS, "suprem_nnunet")
    cfg = plans["configurations"]["3d_fullres"]
    plans["configurations"]["3d_fullres"] = {**cfg, "num_gpus": 1, "batch_size": 2}  # same global batch
    trainer = build_trainer(SupremFinetuneTrainer, DS, "suprem_nnunet", plans=plans)
    trainer.initialize()
    # nnU-Net's DDP weights the lowest deep-supervision output 1e-6 instead of 0 (its workaround for
    # DDP's unused-parameter error); the reference takes the same weights
    assert ranks[0]["ds_weights"][-1] > 0 and trainer.loss.weight_factors[-1] == 0
    trainer.loss.weight_factors = ranks[0]["ds_weights"]
    net = unwrap(trainer.network)
    net.load_state_dict(ranks[0]["initial"])
    _steps(trainer, _fixed_batches(trainer, STEPS), 0, 2)
    assert trainer.configuration_manager.batch_dice  # the Dice statistics are summed over the batch
    final = net.state_dict()
    worst = max(float((ranks[0]["final"][k].float() - v.float()).abs().max()) for k, v in final.items())
    change = max(float((ranks[0]["initial"][k].float() - v.float()).abs().max()) for k, v in final.items())
    logging.getLogger(__name__).info("DDP vs single process: max weight difference %.3g (largest change %.3g)",
                                     worst, change)
    # equal within float rounding (3e-8 measured), while a rank-local loss (each rank's Dice and CE of
    # its own case) ends about half the change away (3e-3 measured); and the steps did move the weights
    assert worst <= 1e-6 and change > 1e-3
    # DDP rebuilt at the stage changes: the encoder stayed put in the frozen epoch (steps 1-2), the
    # decoder did not; after unfreezing the encoder moved too
    initial, after = ranks[0]["initial"], ranks[0]["after_step"]
    enc = [k for k in initial if k.startswith("encoder.") and k.endswith(".weight")]
    dec = [k for k in initial if k.startswith("decoder.seg_layers.") and k.endswith(".weight")]
    assert enc and dec
    assert all(torch.equal(initial[k], after[1][k]) for k in enc)
    assert all(not torch.equal(initial[k], after[0][k]) for k in dec)
    assert any(not torch.equal(after[1][k], after[2][k]) for k in enc)


@pytest.mark.slow
def test_unet_keeps_batch_statistics_norm_under_ddp(two_ranks):
    _, ranks = two_ranks
    assert ranks[0]["unet_norms"] == ["BatchStatsBatchNorm3d"]


# ---------------------------------------------------------------------------- torchrun, the real command
@pytest.mark.slow
def test_torchrun_two_processes_on_cpu(tiny):
    env = {**os.environ, "nnUNet_n_proc_DA": "0", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={WORLD}",
           "-m", "suprem_nnunet.cli.train", DS, "3d_fullres", "--device", "cpu", "--epochs", "1",
           "--iterations-per-epoch", str(STEPS), "--val-iterations", "1", "--no-resume"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=str(ROOT), timeout=300)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    for r in range(WORLD):
        assert f"rank {r} of {WORLD} joined the process group (gloo, cpu)" in log
    fold = tiny["root"] / "nnUNet_results" / DS / "SupremPretrainer__suprem_nnunet__3d_fullres" / "fold_all"
    files = sorted(p.name for p in fold.iterdir())
    assert "checkpoint_final.pth" in files and not [f for f in files if f.startswith(".tmp-")]
    assert len([f for f in files if f.startswith("training_log")]) == 1  # rank 0 alone logs
    info = json.loads((fold / "run_info.json").read_text())
    assert (info["world_size"], info["global_batch_size"]) == (WORLD, 2)
    ckpt = torch.load(fold / "checkpoint_final.pth", weights_only=False, map_location="cpu")
    assert ckpt["current_epoch"] == 1 and not any(k.startswith("module.") for k in ckpt["network_weights"])


@pytest.mark.slow
def test_torchrun_finetune_with_validation(tiny):
    """suprem_finetune under torchrun (gloo, 2 ranks) from the torchrun pre-training above, with a novel
    class and --validate: rank 0 alone preprocesses the target and writes checkpoints; the held-out
    cases are split across the ranks for nnU-Net's validation and rank 0 writes one summary of all of
    them (before this test, `suprem_finetune --validate` was accepted and ignored)."""
    from suprem_nnunet.synth.dataset import make_phantom_dataset

    pre = tiny["root"] / "nnUNet_results" / DS / "SupremPretrainer__suprem_nnunet__3d_fullres" / "fold_all"
    if not (pre / "checkpoint_final.pth").is_file():
        pytest.skip("needs the checkpoint of test_torchrun_two_processes_on_cpu (run the module, not this test alone)")
    target = "Dataset062_DdpTarget"
    env = {**os.environ, "nnUNet_n_proc_DA": "0", "OMP_NUM_THREADS": "1"}
    for v in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        env[v] = str(tiny["root"] / v)
    make_phantom_dataset(62, "DdpTarget", ["liver", "kidney_left"], 4, 0, shape=(32, 32, 32), spacing=(10, 10, 10),
                         seed=4, progress=False, raw_root=tiny["root"] / "nnUNet_raw")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={WORLD}",
           "-m", "suprem_nnunet.cli.finetune", target, "--pretrained", str(pre / "checkpoint_final.pth"),
           "--device", "cpu", "--epochs", "1", "--iterations-per-epoch", str(STEPS), "--val-iterations", "1",
           "--num-train-cases", "2", "--no-resume", "--validate", "-np", "1", "--no-verify"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=str(ROOT), timeout=300)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    for r in range(WORLD):
        assert f"rank {r} of {WORLD} joined the process group (gloo, cpu)" in log
        assert f", rank {r}" in log  # nnU-Net's "<case>, shape ..., rank r": each rank validated its share
    assert log.count(f"preprocessing {target}") == 1
    fold = (tiny["root"] / "nnUNet_results" / target /
            f"SupremFinetuneTrainer__suprem_nnunet_from_{DS}__3d_fullres" / "fold_all")
    files = sorted(p.name for p in fold.iterdir())
    assert "checkpoint_final.pth" in files and not [f for f in files if f.startswith(".tmp-")]
    assert len([f for f in files if f.startswith("training_log")]) == 1
    summary = json.loads((fold / "validation" / "summary.json").read_text())
    held_out = set(json.loads((fold / "run_info.json").read_text())["train_cases"]) ^ {f"ddptarget_{i:03d}" for i in range(4)}
    assert {Path(c["prediction_file"]).name.split(".")[0] for c in summary["metric_per_case"]} == held_out
    assert set(summary["mean"]) == {"1", "2"}  # liver (shared) and kidney_left (novel, head remapped by name)
