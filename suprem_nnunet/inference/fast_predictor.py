"""nnU-Net's predictor with a faster, leaner data path (same masks within DSC >= 0.99 per class).

`SupremPredictor` subclasses nnunetv2's `nnUNetPredictor` and keeps its network, sliding window,
Gaussian blending, mirroring and AMP on CUDA. It changes three things, each behind a switch:

* `fast_resampling`: nnU-Net's default resampling (skimage spline order 3 for the image, order 1 for
  class logits) computed as per-axis matrix products with torch (`preprocessing/resampling.py`):
  the same numbers within float32 rounding (`FastConfigurationManager`);
* `chunked_export`: the argmax of the resampled logits computed a few output slices at a time,
  instead of resampling every class at full resolution before the argmax (nnU-Net holds
  classes x the input grid in float32: 20 GB for 32 classes on a 512x512x600 CT);
* `body_crop`: the sliding window runs only over the bounding box of the body (the largest
  component above -500 HU, plus half a patch of margin); outside it every voxel is background.

Plans whose resampling is not nnU-Net's default (SuPreM preset plans) keep their own functions and
nnU-Net's export; only the body crop applies to them.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import partial
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np
import torch
from nnunetv2.inference.export_prediction import convert_predicted_logits_to_segmentation_with_correct_shape
from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
from scipy import ndimage

from ..preprocessing.plans_manager import SupremConfigurationManager, as_suprem
from ..preprocessing.resampling import RESAMPLE_THEN_WINDOW, resample_like_nnunet, resample_logits_to_labels

log = logging.getLogger(__name__)

NNUNET_DEFAULT_RESAMPLING = "resample_data_or_seg_to_shape"
#: a voxel above this many HU belongs to the body (air is about -1000, fat about -100)
BODY_HU = -500.0
#: background logit written outside the body box (others 0): probability of background > 0.9999
BACKGROUND_LOGIT = 10.0


class FastConfigurationManager(SupremConfigurationManager):
    """Configuration whose nnU-Net-default image resampling runs with torch (`resample_like_nnunet`)."""

    @property
    def resampling_fn_data(self) -> Callable:
        if self.configuration["resampling_fn_data"] == NNUNET_DEFAULT_RESAMPLING:
            return partial(resample_like_nnunet, **self.configuration["resampling_fn_data_kwargs"])
        return super().resampling_fn_data


@dataclass
class CasePrediction:
    """One case: the label map in the reader's array order (as `write_seg` takes it), the reader's
    properties, and optionally softmax probabilities on the network grid with that grid's geometry."""

    segmentation: np.ndarray
    properties: dict
    probabilities: Optional[np.ndarray] = None
    probability_geometry: Optional[dict] = None


class SupremPredictor(nnUNetPredictor):
    """`nnUNetPredictor` + torch resampling, chunked argmax export and a body crop (see module doc)."""

    def __init__(self, *args, fast_resampling: bool = True, chunked_export: bool = True, body_crop: bool = True,
                 nearest_export: bool = False, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fast_resampling, self.chunked_export, self.body_crop = fast_resampling, chunked_export, body_crop
        self.nearest_export = nearest_export  # --fast: argmax on the network grid, then nearest neighbour

    def manual_initialization(self, network, plans_manager, configuration_manager, parameters, dataset_json,
                              trainer_name, inference_allowed_mirroring_axes) -> None:
        pm = as_suprem(plans_manager)
        cm = (FastConfigurationManager if self.fast_resampling else SupremConfigurationManager)(
            configuration_manager.configuration)
        super().manual_initialization(network, pm, cm, parameters, dataset_json, trainer_name,
                                      inference_allowed_mirroring_axes)

    # ---------------------------------------------------------------- hooks of nnUNetPredictor
    @torch.inference_mode()
    def predict_sliding_window_return_logits(self, input_image: torch.Tensor) -> torch.Tensor:
        box = self.body_box(input_image[0].numpy() if input_image.device.type == "cpu" else
                            input_image[0].cpu().numpy()) if self.body_crop else None
        if box is None:
            return super().predict_sliding_window_return_logits(input_image)
        inner = super().predict_sliding_window_return_logits(input_image[(slice(None), *box)])
        out = torch.zeros((inner.shape[0], *input_image.shape[1:]), dtype=inner.dtype, device=inner.device)
        out[0] = BACKGROUND_LOGIT
        out[(slice(None), *box)] = inner
        return out

    # ---------------------------------------------------------------- body crop
    def body_threshold(self) -> Optional[float]:
        """BODY_HU in the units of the preprocessed image, or None when the normalisation is not CT's."""
        scheme = self.configuration_manager.normalization_schemes[0]
        cfg = self.configuration_manager.configuration
        if cfg.get("resampling_fn_data") == RESAMPLE_THEN_WINDOW:  # preset: window, then scale
            kw = cfg.get("resampling_fn_data_kwargs", {})
            lo, hi = kw.get("window", (-175.0, 250.0))
            s0, s1 = kw.get("scale_to", (0.0, 1.0))
            return (min(max(BODY_HU, lo), hi) - lo) / (hi - lo) * (s1 - s0) + s0
        if scheme == "CTNormalization":
            p = self.plans_manager.foreground_intensity_properties_per_channel["0"]
            v = min(max(BODY_HU, p["percentile_00_5"]), p["percentile_99_5"])
            return (v - p["mean"]) / max(p["std"], 1e-8)
        if scheme == "NoNormalization":
            return BODY_HU
        return None

    def body_box(self, image: np.ndarray) -> Optional[Tuple[slice, ...]]:
        """Slices of the body's bounding box (plus half a patch) in `image` (x, y, z), or None when the box
        would cover nearly everything (or the normalisation is unknown)."""
        thr = self.body_threshold()
        if thr is None:
            return None
        step = 4
        small = image[::step, ::step, ::step] > thr + 1e-4
        lab, n = ndimage.label(small)
        if n == 0:
            return None
        sizes = np.bincount(lab.ravel())
        sizes[0] = 0
        where = np.argwhere(lab == sizes.argmax())
        margin = [p // 2 for p in self.configuration_manager.patch_size]
        box = tuple(slice(max(0, int(lo) * step - m), min(s, (int(hi) + 1) * step + m))
                    for lo, hi, m, s in zip(where.min(0), where.max(0), margin, image.shape))
        if np.prod([b.stop - b.start for b in box]) > 0.9 * image.size:
            return None
        return box

    # ---------------------------------------------------------------- per case
    def preprocess(self, image_files: Sequence[str]) -> Tuple[np.ndarray, dict]:
        """nnU-Net's preprocessing of one case (with this predictor's configuration manager); ValueError
        naming the file when the image holds NaN or infinite values."""
        pre = self.configuration_manager.preprocessor_class(verbose=False)
        data, _, props = pre.run_case(list(image_files), None, self.plans_manager, self.configuration_manager,
                                      self.dataset_json)
        if not np.isfinite(data).all():
            raise ValueError(f"{image_files[0]}: the image holds NaN or infinite values")
        return data, props

    def predict_case(self, image_files: Sequence[str], probabilities: bool = False) -> CasePrediction:
        """Preprocess, predict and export one case (list of channel files)."""
        data, props = self.preprocess(image_files)
        logits = self.predict_logits_from_preprocessed_data(torch.from_numpy(data)).cpu()
        del data
        probs = geometry = None
        if probabilities:
            probs, geometry = self.network_grid_probabilities(logits, props)
        return CasePrediction(self.logits_to_segmentation(logits, props), props, probs, geometry)

    def logits_to_segmentation(self, logits: torch.Tensor, props: dict) -> np.ndarray:
        """Label map on the reader's grid and axis order from network-grid logits (c, x, y, z)."""
        from acvl_utils.cropping_and_padding.bounding_boxes import insert_crop_into_image

        pm, cm, lm = self.plans_manager, self.configuration_manager, self.label_manager
        if self.nearest_export and not lm.has_regions:
            return self._nearest_export(logits, props)
        if (not self.chunked_export or lm.has_regions
                or cm.configuration.get("resampling_fn_probabilities") != NNUNET_DEFAULT_RESAMPLING):
            return convert_predicted_logits_to_segmentation_with_correct_shape(logits, pm, cm, lm, props)
        target, current = self._export_spacings(props)
        kw = {k: v for k, v in cm.configuration.get("resampling_fn_probabilities_kwargs", {}).items()
              if k in ("order", "order_z", "force_separate_z", "separate_z_anisotropy_threshold")}
        seg = resample_logits_to_labels(logits, props["shape_after_cropping_and_before_resampling"], current,
                                        target, **kw)
        full = np.zeros(props["shape_before_cropping"], seg.dtype)
        full = insert_crop_into_image(full, seg, props["bbox_used_for_cropping"])
        return full.transpose(pm.transpose_backward)

    def _nearest_export(self, logits: torch.Tensor, props: dict) -> np.ndarray:
        from acvl_utils.cropping_and_padding.bounding_boxes import insert_crop_into_image

        pm, cm = self.plans_manager, self.configuration_manager
        labels = logits.argmax(0).numpy().astype(np.uint8 if logits.shape[0] < 256 else np.uint16)
        shape = [int(n) for n in props["shape_after_cropping_and_before_resampling"]]
        if cm.configuration.get("resampling_fn_seg") == NNUNET_DEFAULT_RESAMPLING:
            for axis, (n_in, n_out) in enumerate(zip(labels.shape, shape)):  # nnU-Net's grid: centres scale
                idx = np.clip(np.floor((np.arange(n_out) + 0.5) * n_in / n_out).astype(int), 0, n_in - 1)
                labels = np.take(labels, idx, axis=axis)
        else:
            target, current = self._export_spacings(props)
            labels = np.asarray(cm.resampling_fn_seg(labels[None], shape, current, target))[0]
        full = np.zeros(props["shape_before_cropping"], labels.dtype)
        return insert_crop_into_image(full, labels, props["bbox_used_for_cropping"]).transpose(pm.transpose_backward)

    def _export_spacings(self, props: dict) -> Tuple[List[float], List[float]]:
        target = [props["spacing"][i] for i in self.plans_manager.transpose_forward]
        spacing = list(self.configuration_manager.spacing)
        current = spacing if len(spacing) == len(props["shape_after_cropping_and_before_resampling"]) \
            else [target[0], *spacing]
        return target, current

    def network_grid_probabilities(self, logits: torch.Tensor, props: dict) -> Tuple[np.ndarray, dict]:
        """Softmax probabilities (float16, classes first, then the reader's axis order z, y, x) on the
        network grid, and that grid's SimpleITK geometry (spacing, origin, direction: x, y, z order)."""
        probs = self.label_manager.apply_inference_nonlin(logits.float())
        probs = probs.numpy().astype(np.float16).transpose([0] + [i + 1 for i in self.plans_manager.transpose_backward])
        return np.ascontiguousarray(probs), self.network_grid_geometry(props, probs.shape[1:])

    def network_grid_geometry(self, props: dict, shape_zyx: Sequence[int]) -> dict:
        """Geometry of an array on the network grid in the reader's axis order: voxel i along a reader axis
        sits at reader index bbox_start + (i + 0.5) * n_cropped / n_out - 0.5 (nnU-Net's resize grid)."""
        sitk_stuff = props["sitk_stuff"]
        back = self.plans_manager.transpose_backward
        crop = props["shape_after_cropping_and_before_resampling"]  # transposed-forward order
        bbox = props["bbox_used_for_cropping"]  # transposed-forward order
        crop_reader = [crop[back[a]] for a in range(3)]
        scale = np.array([c / o for c, o in zip(crop_reader, shape_zyx)])
        start = np.array([bbox[back[a]][0] for a in range(3)]) + 0.5 * scale - 0.5  # reader order (z, y, x)
        spacing = np.asarray(sitk_stuff["spacing"], float)  # x, y, z
        direction = np.asarray(sitk_stuff["direction"], float).reshape(3, 3)
        origin = np.asarray(sitk_stuff["origin"], float) + direction @ (spacing * start[::-1])
        return {"spacing": (spacing * scale[::-1]).tolist(), "origin": origin.tolist(),
                "direction": direction.ravel().tolist()}

    def write_segmentation(self, seg: np.ndarray, output_file: str, props: dict) -> None:
        """Write `seg` with the plans' reader/writer (the input's exact grid)."""
        self.plans_manager.image_reader_writer_class().write_seg(seg, output_file, props)
