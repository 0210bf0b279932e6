"""Train the sub-type classifier: a plain PyTorch loop (nnU-Net's trainer is built for dense
segmentation batches, not one label per case).

Conventions shared with `suprem_finetune`: `--pretrained` resolves the same way, `--from-scratch`
keeps the pre-trained plans and network but starts from random weights, `--num-train-cases N` is a
seeded few-shot subset (stratified here: every class keeps its share, at least one case each),
`--seed` also seeds the weights of the head (and of the whole network from scratch) and the batch
draws, and the budget flags mean the same (`TrainingBudget`: epochs, iterations per epoch, lr,
optimiser, warm-up; AdamW by default here, with SuPreM's linear warm-up + cosine schedule
stepped per epoch). `--freeze-encoder-epochs` trains only the head first.

Batches are class-balanced (each item's class drawn uniformly, then a case of it); each patch is
shifted by up to 1/8 of its side and its intensities scaled by 1 ± 0.1 (augmentation).

Input (`preprocess.py`): CT windowed to [-200, 300] HU -> [0, 1], voxels outside the pancreas and
its lesion (`roi_margin_mm` = 0 by default) set to the ROI's median. With ROI masking, every training case needs
an ROI in its label map (else one error naming it); at prediction a case whose ROI is empty (or
that has no label map in `--roi-labels`) is not scored: one warning line per case, and it is left
out of scores.csv (`predict_scores` returns it in its `unscored` list).
"""
from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from .. import paths
from ..dataset.raw import atomic_write_json
from ..training.base import ADAMW_LR, ADAMW_WEIGHT_DECAY, TrainingBudget, default_warmup_epochs
from ..training.lr_schedule import warmup_cosine_lr
from .data import SUBTYPES, dataset_cases
from .model import CHECKPOINT_NAME, EncoderSpec, SubtypeClassifier, make_classifier, pretrained_encoder, save_classifier
from .preprocess import CLASSIFICATION_WINDOW_HU, ROI_MARGIN_MM, Case, CasePreprocessor, case_patch, patch_for, preprocess_cases
from .model import load_classifier
from ..dataset.raw import atomic_write_bytes
from .data import case_images
from ..errors import InputError, MissingFileError
from ..inference.backends import BackendConfig, cpu_backend

log = logging.getLogger(__name__)

#: classification defaults where the budget leaves a value unset
DEFAULT_EPOCHS = 30
DEFAULT_ITERATIONS = 20
DEFAULT_BATCH = 8
SGD_LR = 1e-2


def stratified_subset(labels: Mapping[str, str], n: Optional[int], seed: int = 0) -> List[str]:
    """A seeded subset of `n` cases keeping each class's share (at least one case of each class
    while n allows); all cases (sorted) when n is None or not smaller than their number."""
    ids = sorted(labels)
    if n is None or n >= len(ids):
        return ids
    if n < 1:
        raise InputError("--num-train-cases must be at least 1")
    rng = np.random.default_rng(seed)
    by_class: Dict[str, List[str]] = {}
    for c in ids:
        by_class.setdefault(labels[c], []).append(c)
    classes = sorted(by_class, key=lambda k: SUBTYPES.index(k) if k in SUBTYPES else len(SUBTYPES))
    quota = {k: (1 if n >= len(classes) else 0) for k in classes}
    left = n - sum(quota.values())
    shares = np.array([len(by_class[k]) - quota[k] for k in classes], float)
    if left > 0:  # largest remainders
        exact = shares / shares.sum() * left
        add = np.floor(exact).astype(int)
        for i in np.argsort(-(exact - add))[: left - add.sum()]:
            add[i] += 1
        for k, a in zip(classes, add):
            quota[k] += int(a)
    chosen = []
    for k in classes:
        if quota[k]:
            chosen += rng.choice(by_class[k], size=min(quota[k], len(by_class[k])), replace=False).tolist()
    return sorted(chosen)


def _optimizer(model: SubtypeClassifier, budget: TrainingBudget) -> Tuple[torch.optim.Optimizer, float]:
    name = budget.optimizer or "adamw"
    if name == "adamw":
        lr = budget.initial_lr or ADAMW_LR
        return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=ADAMW_WEIGHT_DECAY), lr
    if name == "sgd":
        lr = budget.initial_lr or SGD_LR
        return torch.optim.SGD(model.parameters(), lr=lr, momentum=0.99, nesterov=True, weight_decay=3e-5), lr
    raise InputError(f"unknown optimizer {name!r}; choose adamw or sgd")


def train_on_cases(model: SubtypeClassifier, cases: Sequence[Case], targets: Sequence[int], patch: Sequence[int],
                   budget: TrainingBudget, seed: int = 0, batch_size: int = DEFAULT_BATCH,
                   freeze_encoder_epochs: int = 0, device: torch.device = torch.device("cpu")) -> List[float]:
    """Train `model` in place on preprocessed cases (array layer); returns the mean loss per epoch."""
    epochs = budget.epochs or DEFAULT_EPOCHS
    iters = budget.iterations_per_epoch or DEFAULT_ITERATIONS
    warmup = budget.warmup_epochs if budget.warmup_epochs is not None else default_warmup_epochs(epochs)
    opt, lr0 = _optimizer(model, budget)
    rng = np.random.default_rng([seed, 11])
    torch.manual_seed(seed)
    targets = np.asarray(targets)
    classes = np.unique(targets)
    by_class = {k: np.flatnonzero(targets == k) for k in classes}
    max_shift = [max(1, int(p) // 8) for p in patch]
    encoder = set(map(id, model.encoder_parameters()))
    loss_fn = nn.CrossEntropyLoss()
    model.to(device)
    curve = []
    for epoch in range(epochs):
        for g in opt.param_groups:
            g["lr"] = warmup_cosine_lr(lr0, epoch, epochs, warmup)
        frozen = epoch < freeze_encoder_epochs
        for p in model.parameters():
            p.requires_grad_(not (frozen and id(p) in encoder))
        model.train()
        losses = []
        for _ in range(iters):
            idx = [int(rng.choice(by_class[rng.choice(classes)])) for _ in range(batch_size)]
            x = np.stack([case_patch(cases[i], patch, [int(rng.integers(-s, s + 1)) for s in max_shift])
                          for i in idx])
            x *= rng.uniform(0.9, 1.1, (len(idx), 1, 1, 1, 1)).astype(np.float32)
            logits = model(torch.from_numpy(x).to(device))
            loss = loss_fn(logits, torch.as_tensor(targets[idx], device=device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
        curve.append(float(np.mean(losses)))
        log.info("epoch %d/%d: loss %.4f, lr %.2e%s", epoch + 1, epochs, curve[-1], opt.param_groups[0]["lr"],
                 " (encoder frozen)" if frozen else "")
    return curve


def predict_cases(model: SubtypeClassifier, cases: Sequence[Case], patch: Sequence[int],
                  device: torch.device = torch.device("cpu"), runner: Optional[nn.Module] = None) -> np.ndarray:
    """Softmax scores (cases, classes) of the centred patch of every case. `runner`: what runs `model`'s
    forward pass in its place (e.g. `inference.backends`' wrapper of it)."""
    model.to(device).eval()
    net = model if runner is None else runner.to(device).eval()
    out = []
    with torch.no_grad():
        for c in cases:
            x = torch.from_numpy(case_patch(c, patch)[None]).to(device)
            out.append(torch.softmax(net(x), 1)[0].cpu().numpy())
    return np.stack(out) if out else np.zeros((0, len(model.head[1].bias)))


def default_output(task: str, from_scratch: bool, num_train_cases: Optional[int], seed: int) -> Path:
    arm = "scratch" if from_scratch else "pretrained"
    shots = f"n{num_train_cases}" if num_train_cases else "all"
    return paths.results_root() / task / f"SupremClassifier__{arm}__{shots}_seed{seed}"


@dataclass
class TrainingSet:
    """The training cases of a classifier, preprocessed: what `train_classifier` and the hand-feature
    baseline (`hand_features.py`) both train on."""

    spec: EncoderSpec
    state: Dict[str, torch.Tensor]
    patch: Tuple[int, ...]
    labels: Dict[str, str]  # every labelled training case
    chosen: List[str]  # the (few-shot) subset trained on
    cases: List[Case]  # preprocessed, in `chosen` order
    preprocessor: CasePreprocessor


def training_set(task: str, pretrained: Optional[str] = None, num_train_cases: Optional[int] = None, seed: int = 0,
                 labels_file: Optional[Path] = None, patch: Optional[Sequence[int]] = None,
                 configuration: str = "3d_fullres", mask_roi: bool = True,
                 roi_margin_mm: float = ROI_MARGIN_MM) -> TrainingSet:
    """The seeded (few-shot) training cases of raw dataset `task`, preprocessed with the input
    pipeline of `preprocess.py`; ValueError naming the labels file when the subset holds one class,
    and naming the label map of a case without ROI voxels (ROI masking needs them)."""
    raw = paths.raw_root() / task
    labels_file = Path(labels_file) if labels_file is not None else raw / "case_labels.csv"
    labels, images, segs = dataset_cases(raw, labels_file)
    spec, state = pretrained_encoder(pretrained, configuration)
    patch = patch_for(spec, patch)
    chosen = stratified_subset(labels, num_train_cases, seed)
    classes = [k for k in SUBTYPES if k in {labels[c] for c in chosen}]
    if len(classes) < 2:
        raise InputError(f"{labels_file}: the training cases hold one class "
                         f"({', '.join(classes)}); a classifier needs at least two")
    pre = CasePreprocessor(spec, mask_roi, roi_margin_mm)
    cases = preprocess_cases(pre, {c: images[c] for c in chosen}, segs)
    if mask_roi:
        no_roi = [c.name for c in cases if c.roi is None]
        if no_roi:
            where = segs.get(no_roi[0]) or f"{raw / 'labelsTr'} (no label map)"
            raise InputError(f"{where}: no pancreas or lesion voxel for training case {no_roi[0]!r} "
                             f"({len(no_roi)} case(s) without an ROI); ROI-masked training needs the pancreas "
                             "in every training label map (or --no-roi-mask)")
    return TrainingSet(spec, state, patch, labels, chosen, cases, pre)


def train_classifier(task: str, pretrained: Optional[str] = None, from_scratch: bool = False,
                     num_train_cases: Optional[int] = None, seed: int = 0,
                     budget: TrainingBudget = TrainingBudget(), output: Optional[Path] = None,
                     labels_file: Optional[Path] = None, patch: Optional[Sequence[int]] = None,
                     batch_size: int = DEFAULT_BATCH, freeze_encoder_epochs: int = 0,
                     configuration: str = "3d_fullres", device: torch.device = torch.device("cpu"),
                     mask_roi: bool = True, roi_margin_mm: float = ROI_MARGIN_MM,
                     data: Optional[TrainingSet] = None) -> Path:
    """Train on the imagesTr cases of raw dataset `task` labelled in its case_labels.csv (folder
    layer; `data`: a `training_set` already made with these arguments); returns the output folder
    holding `classifier.pth` and `run_info.json`."""
    t0 = time.time()
    if data is None:
        data = training_set(task, pretrained, num_train_cases, seed, labels_file, patch, configuration, mask_roi,
                            roi_margin_mm)
    spec, patch, labels, chosen = data.spec, data.patch, data.labels, data.chosen
    classes = list(SUBTYPES)  # the head always scores every sub-type (absent ones are never the target)
    model = make_classifier(spec, classes, patch, None if from_scratch else data.state, seed)
    log.info("classifier on %s: %d cases (%s), %s, patch %s", task, len(chosen),
             ", ".join(f"{k} {sum(labels[c] == k for c in chosen)}" for k in classes),
             "from scratch" if from_scratch else f"encoder from {spec.source}", list(patch))
    curve = train_on_cases(model, data.cases, [classes.index(labels[c]) for c in chosen], patch, budget, seed,
                           batch_size, freeze_encoder_epochs, device)
    out = Path(output) if output else default_output(task, from_scratch, num_train_cases, seed)
    info = {"task": task, "role": "scratch" if from_scratch else "pretrained", "pretrained": spec.source,
            "seed": seed, "num_train_cases": num_train_cases, "train_cases": chosen,
            "class_counts": {k: sum(labels[c] == k for c in chosen) for k in classes},
            "budget": {**asdict(budget), "batch_size": batch_size}, "freeze_encoder_epochs": freeze_encoder_epochs,
            "patch_size": list(patch), "mask_roi": data.preprocessor.mask_roi, "input": data.preprocessor.describe(),
            "loss_per_epoch": curve, "seconds": round(time.time() - t0, 1)}
    save_classifier(out / CHECKPOINT_NAME, model, spec, classes, patch, info)
    atomic_write_json(out / "run_info.json", info)
    log.info("wrote %s", out / CHECKPOINT_NAME)
    return out


def roi_files(images: Mapping[str, List[str]], roi_labels: Optional[Path]) -> Dict[str, str]:
    """{case: label map} of the cases of `images` that have `<case>.nii.gz` in `roi_labels`."""
    if roi_labels is None:
        return {}
    if not Path(roi_labels).is_dir():
        raise MissingFileError(f"{roi_labels}: no such label folder (--roi-labels)")
    return {c: str(Path(roi_labels) / f"{c}.nii.gz") for c in images
            if (Path(roi_labels) / f"{c}.nii.gz").is_file()}


def checkpoint_preprocessor(spec: EncoderSpec, ckpt: dict) -> CasePreprocessor:
    """The preprocessor a classifier checkpoint was trained with (its run info's `input`)."""
    info = ckpt.get("info", {})
    inp = info.get("input") or {}
    return CasePreprocessor(spec, bool(inp.get("mask_roi", info.get("mask_roi", False))),
                            float(inp.get("roi_margin_mm", ROI_MARGIN_MM)),
                            tuple(float(v) for v in inp.get("window_hu", CLASSIFICATION_WINDOW_HU)))


@dataclass
class Scores:
    """Softmax scores of the scored cases and the cases left unscored (masked model, empty ROI)."""

    classes: List[str]
    scores: Dict[str, np.ndarray]
    unscored: List[str]


def predict_scores(images: Mapping[str, List[str]], model_path: Path, roi_labels: Optional[Path] = None,
                   device: torch.device = torch.device("cpu"), source: str = "--roi-labels",
                   backend: Optional[BackendConfig] = None) -> Scores:
    """Scores of every case of {case: image files}. A model trained on ROI-masked patches needs
    `roi_labels` (ValueError otherwise); a case without an ROI there is not scored (one warning line
    naming it and its label map). `backend`: where the network runs on a CPU (default torch)."""
    model, spec, ckpt = load_classifier(model_path)
    runner = cpu_backend(backend, model.eval(), device)
    pre = checkpoint_preprocessor(spec, ckpt)
    segs = roi_files(images, roi_labels)
    if pre.mask_roi and roi_labels is None:
        raise InputError(f"{model_path}: trained on ROI-masked patches (the pancreas and its lesion); give the "
                         "label maps that locate them (--roi-labels, e.g. a suprem_predict output folder)")
    cases = preprocess_cases(pre, dict(images), segs)
    keep, unscored = [], []
    for c in cases:
        if pre.mask_roi and c.roi is None:
            unscored.append(c.name)
            what = segs.get(c.name) or f"no {c.name}.nii.gz in {roi_labels}"
            log.warning("%s: empty ROI (%s has no pancreas or lesion voxel); not scored", c.name, what)
        else:
            keep.append(c)
    scores = predict_cases(model, keep, ckpt["patch_size"], device, runner)
    return Scores(list(ckpt["classes"]), {c.name: s for c, s in zip(keep, scores)}, unscored)


def write_scores(scores: Scores, output_csv: Path) -> Path:
    """scores.csv: case, one score per class, prediction (written to a temporary file, then renamed)."""
    lines = ["case," + ",".join(scores.classes) + ",prediction"]
    for case, s in scores.scores.items():
        lines.append(f"{case}," + ",".join(f"{v:.6f}" for v in s) + f",{scores.classes[int(np.argmax(s))]}")
    output_csv = Path(output_csv)
    output_csv.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(output_csv, ("\n".join(lines) + "\n").encode())
    return output_csv


def predict_folder(inputs: Path, model_path: Path, output_csv: Path, roi_labels: Optional[Path] = None,
                   device: torch.device = torch.device("cpu"), backend: Optional[BackendConfig] = None) -> Path:
    """scores.csv (case, one softmax score per class, prediction) for every image of `inputs` that
    has an ROI (see `predict_scores`); ValueError when no case could be scored."""
    res = predict_scores(case_images(inputs), model_path, roi_labels, device, backend=backend)
    if not res.scores:
        raise InputError(f"{roi_labels}: no case of {inputs} has a pancreas or lesion voxel in its label map; "
                         "nothing scored")
    return write_scores(res, output_csv)
