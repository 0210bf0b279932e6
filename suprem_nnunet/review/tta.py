"""Test-time-augmented passes of one model, for the inconsistency scorer when only one model is given.

We compute the flips ourselves instead of letting nnU-Net average them: each case is preprocessed
once, the network runs (no mirroring) on the data as is and flipped along each of the model's
mirror axes, each result is flipped back, and every pass is written as its own probability file
`<out>/<pass>/<case>.npz` (`identity`, `flip_0`, `flip_1`, ...), all on the one network grid. A
model trained without mirroring still gets the flips of all three axes: what differs between them
is exactly what the model has not learned to be invariant to.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import List, Optional, Sequence, Union

import torch

log = logging.getLogger(__name__)
PathLike = Union[str, Path]


def tta_passes(model: Union[PathLike, object], images: PathLike, out_dir: PathLike, device: str = "cpu",
               axes: Optional[Sequence[int]] = None) -> List[Path]:
    """Write the passes (see the module docstring); returns the pass folders."""
    from ..inference.outputs import write_probabilities
    from ..inference.predict import check_readable, list_inputs, make_predictor
    from ..dataset.raw import label_names
    from ..training.checkpoint import TrainedModel, read_trained_model

    m = model if isinstance(model, TrainedModel) else read_trained_model(model)
    names = label_names(m.dataset_json)
    cases = list_inputs(images, len(m.dataset_json["channel_names"]))
    check_readable([f for fl in cases.values() for f in fl])
    predictor = make_predictor(m, torch.device(device), mirror=False)
    axes = tuple(axes) if axes is not None else (tuple(m.mirror_axes) if m.mirror_axes else (0, 1, 2))
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
            probs, geo = predictor.network_grid_probabilities(logits, props)
            write_probabilities(folder / f"{case}.npz", probs, ["background", *names],
                                list(range(len(names) + 1)), geo, image)
        log.info("TTA passes of %s written", case)
    return folders

