"""Test-time-augmented passes of one model, for the inconsistency scorer when only one model is given.

We compute the flips ourselves instead of letting nnU-Net average them: each case is preprocessed
once, the network runs (no mirroring) on the data as is and flipped along each of the model's
mirror axes, each result is flipped back, and every pass is written as its own probability file
`<out>/<pass>/<case>.npz` (`identity`, `flip_0`, `flip_1`, ...), all on the one network grid. A
model trained without mirroring still gets the flips of all three axes: what differs between them
is exactly what the model has not learned to be invariant to. Left/right classes follow the
model's plans (planning/mirroring.py): under `omit` the left-right axis is not among the default
axes; a pass flipped along the left-right axis (`swap`, or that axis asked for explicitly) has the
left/right partners' channels swapped after it is flipped back, so that it names the same organs.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import List, Optional, Sequence, Tuple, Union

import torch
from ..inference.outputs import write_probabilities
from ..inference.predict import make_predictor
from ..dataset.cases import check_readable, list_inputs
from ..dataset.raw import label_names
from ..models.trained import TrainedModel, read_trained_model

log = logging.getLogger(__name__)
PathLike = Union[str, Path]


def tta_passes(model: Union[PathLike, object], images: PathLike, out_dir: PathLike, device: str = "cpu",
               axes: Optional[Sequence[int]] = None, backend: Optional[object] = None) -> List[Path]:
    """Write the passes (see the module docstring); returns the pass folders. `backend`: where the network
    runs on CPU (`inference.backends.BackendConfig`; None: torch)."""

    m = model if isinstance(model, TrainedModel) else read_trained_model(model)
    names = label_names(m.dataset_json)
    cases = list_inputs(images, len(m.dataset_json["channel_names"]))
    check_readable([f for fl in cases.values() for f in fl])
    predictor = make_predictor(m, torch.device(device), mirror=False, backend=backend)
    plan = m.mirroring
    if axes is not None:
        axes = tuple(int(a) for a in axes)
    else:
        axes = tuple(m.mirror_axes) if m.mirror_axes else (0, 1, 2)
        axes = plan.mirror_axes(axes, 3) if plan is not None else axes
    swap = _lr_swap(plan, len(names) + 1)
    out = Path(out_dir)
    folders = [out / "identity"] + [out / f"flip_{a}" for a in axes]
    for f in folders:
        f.mkdir(parents=True, exist_ok=True)
    import SimpleITK as sitk

    for case in sorted(cases):
        data, props = predictor.preprocess(cases[case])
        x = torch.from_numpy(data)
        image = sitk.ReadImage(str(cases[case][0]))
        for folder, axis in zip(folders, (None, *axes)):
            xi = x if axis is None else torch.flip(x, (axis + 1,))
            logits = predictor.predict_logits_from_preprocessed_data(xi).cpu()
            if axis is not None:
                logits = torch.flip(logits, (axis + 1,))
                if swap is not None and axis == swap[0]:
                    logits = logits[swap[1]]
            probs, geo = predictor.network_grid_probabilities(logits, props)
            write_probabilities(folder / f"{case}.npz", probs, ["background", *names],
                                list(range(len(names) + 1)), geo, image)
        log.info("TTA passes of %s written", case)
    return folders



def _lr_swap(plan, num_channels: int) -> Optional[Tuple[int, List[int]]]:
    """(left-right axis, channel permutation) for a model whose plans pair left/right classes and know
    their one left-right axis (policy swap or omit; nnU-Net's default keeps the channels), else None."""
    if plan is None or not plan.pairs or plan.policy == "nnunet" or len(plan.lr_axes) != 1:
        return None
    return plan.lr_axes[0], plan.channel_permutation(num_channels)
