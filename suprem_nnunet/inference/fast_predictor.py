"""nnU-Net's predictor with a faster, leaner data path (same masks within DSC >= 0.99 per class).

`SupremPredictor` subclasses nnunetv2's `nnUNetPredictor` and keeps its network, sliding window,
Gaussian blending, mirroring and AMP on CUDA. It changes these things, each behind a switch:

* `fast_resampling`: nnU-Net's default resampling (skimage spline order 3 for the image, order 1 for
  class logits) computed as per-axis matrix products with torch (`preprocessing/resampling.py`):
  the same numbers within float32 rounding (`FastConfigurationManager`);
* `chunked_export`: the argmax of the resampled logits computed a few output slices at a time,
  instead of resampling every class at full resolution before the argmax (nnU-Net holds
  classes x the input grid in float64: 40 GB for 32 classes on a 512x512x600 CT); with `roi_labels`
  only the region the ROI classes reach is resampled; with linear/nearest probability resampling
  (nnU-Net's default) classes are resampled only where the network-grid neighbours of an output voxel
  disagree on the label (`preprocessing/argmax_export.py`; 28 s -> 3 s on a 512x512x100 CT, same labels);
* `body_crop`: a sliding window that holds no voxel of the body (the largest component above
  -500 HU, holes filled slice by slice along each axis so that lungs and bowel gas count as body,
  found on every 4th voxel and grown by one) is not run: its voxels get only the other windows'
  predictions, background where no window covers them; off where the plan's intensity clip floor
  is at or above fat (-100 HU), which would make fat look like air;
* `fast_window`: the window's predictions are accumulated in float32 (nnU-Net accumulates in
  float16, which the CPU converts per element: about a tenth of a CPU run's time);
* `onednn_conv`: on CPU, plain convolutions run oneDNN's kernels even where PyTorch's heuristic
  would send a batch-1 window to its slow im2col path (`inference/onednn.py`): the same numbers
  within float32 rounding, about 1.3x faster per window for the benchmark's 8-64 feature U-Net;
* `bf16` (off by default): the network runs under `torch.autocast('cpu', bfloat16)`, as nnU-Net runs
  it under float16 autocast on CUDA; its output is cast to float32 before mirrored predictions are
  summed. About twice as fast on a CPU with native bfloat16 (AVX512-BF16 or AMX; None: on where the
  CPU has it). Not the default because labels move at class borders: on the demo's trained UNet
  3e-4 of the voxels changed and the worst class's DSC against float32 was 0.984.

Plans whose resampling is not nnU-Net's default (SuPreM preset plans) keep their own functions and
nnU-Net's export; only the body crop applies to them.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
from nnunetv2.inference.export_prediction import convert_predicted_logits_to_segmentation_with_correct_shape
from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
from scipy import ndimage

from ..preprocessing.fast import FastConfigurationManager, NNUNET_DEFAULT_RESAMPLING
from ..preprocessing.plans_manager import SupremConfigurationManager, as_suprem
from ..preprocessing.resampling import RESAMPLE_THEN_WINDOW, resample_logits_to_labels
from .onednn import use_onednn_convolutions
from ..training.sided import mirrored_average
from ..errors import InputError

log = logging.getLogger(__name__)

#: a voxel above this many HU belongs to the body (air is about -1000, fat about -100)
BODY_HU = -500.0
#: fat is about -100 HU: a normalisation that clips at or above this floor gives fat and air one value,
#: so no body can be told from air and every window is run
FAT_HU = -100.0
#: background logit written outside the body box (others 0): probability of background > 0.9999
BACKGROUND_LOGIT = 10.0


#: the body mask is computed on every BODY_STEP-th voxel along each axis
BODY_STEP = 4


def cpu_has_native_bf16() -> bool:
    """True when this CPU computes bfloat16 natively (AVX512-BF16 or AMX), where oneDNN's bf16
    convolutions are about twice as fast as float32; elsewhere bf16 is emulated and slower."""
    cpu = getattr(torch, "cpu", None)
    checks = [getattr(cpu, n, None) for n in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    return torch.backends.mkldnn.is_available() and any(c() for c in checks if c is not None)


def _float_output(module: torch.nn.Module, inputs, output):
    """Forward hook: the network's output in float32 (autocast leaves it in bfloat16)."""
    return output.float() if isinstance(output, torch.Tensor) and output.dtype != torch.float32 else output


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
                 nearest_export: bool = False, fast_window: bool = True, bf16: Optional[bool] = False,
                 onednn_conv: bool = True, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fast_resampling, self.chunked_export, self.body_crop = fast_resampling, chunked_export, body_crop
        self.nearest_export = nearest_export  # --fast: argmax on the network grid, then nearest neighbour
        self.fast_window = fast_window
        self.onednn_conv = onednn_conv
        self.bf16 = (self.device.type == "cpu" and cpu_has_native_bf16()) if bf16 is None else bool(bf16)
        if self.bf16 and self.device.type != "cpu":
            raise InputError(f"bf16 autocast is for CPU prediction; on {self.device.type} nnU-Net's own autocast applies")
        #: label ids the label map keeps (None: all); the export covers only their region (`roi_box`)
        self.roi_labels: Optional[List[int]] = None
        self._body: Optional[np.ndarray] = None  # body mask of the (padded) image in the sliding window
        #: (left-right axis, channel permutation): a prediction mirrored along that axis has its left/right
        #: channels swapped before it is averaged (training/sided.py); None: nnU-Net's plain average
        self.mirror_swap: Optional[Tuple[int, List[int]]] = None
        self.windows_run = self.windows_skipped = 0

    def manual_initialization(self, network, plans_manager, configuration_manager, parameters, dataset_json,
                              trainer_name, inference_allowed_mirroring_axes) -> None:
        pm = as_suprem(plans_manager)
        cm = (FastConfigurationManager if self.fast_resampling else SupremConfigurationManager)(
            configuration_manager.configuration)
        super().manual_initialization(network, pm, cm, parameters, dataset_json, trainer_name,
                                      inference_allowed_mirroring_axes)
        if self.bf16:
            self.network.register_forward_hook(_float_output)
        if self.onednn_conv and self.device.type == "cpu":
            log.debug("oneDNN convolutions: %d modules", use_onednn_convolutions(self.network))

    # ---------------------------------------------------------------- hooks of nnUNetPredictor
    @torch.inference_mode()
    def predict_sliding_window_return_logits(self, input_image: torch.Tensor) -> torch.Tensor:
        self.windows_run = self.windows_skipped = 0
        if not self.body_crop:
            return super().predict_sliding_window_return_logits(input_image)
        from acvl_utils.cropping_and_padding.padding import pad_nd_image

        # pad here as nnU-Net pads (to the patch size, constant 0), so that the body mask lines up with the windows
        padded, unpad = pad_nd_image(input_image, self.configuration_manager.patch_size, "constant", {"value": 0},
                                     True, None)
        self._body = self.padded_body_mask(self.body_mask_small(input_image[0].cpu().numpy()), input_image.shape[1:],
                                           padded.shape[1:], unpad)
        try:
            return super().predict_sliding_window_return_logits(padded)[(slice(None), *unpad[1:])]
        finally:
            self._body = None

    def _internal_maybe_mirror_and_predict(self, x: torch.Tensor) -> torch.Tensor:
        if not self.bf16:
            return self._mirror_and_predict(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return self._mirror_and_predict(x)

    def _mirror_and_predict(self, x: torch.Tensor) -> torch.Tensor:
        """nnU-Net's mirrored average, or with `mirror_swap` the one that swaps left/right channels."""
        if self.use_mirroring and self.mirror_swap is not None and self.allowed_mirroring_axes:
            return mirrored_average(self.network, x, self.allowed_mirroring_axes, self.mirror_swap)
        return super()._internal_maybe_mirror_and_predict(x)

    @torch.inference_mode()
    def _internal_predict_sliding_window_return_logits(self, data: torch.Tensor, slicers, do_on_device: bool = True):
        """The Gaussian-weighted sum of the windows' predictions over their weights, accumulated in float32;
        windows without a body voxel are skipped (`body_crop`), voxels no window covered are background."""
        if not self.fast_window:
            return super()._internal_predict_sliding_window_return_logits(data, slicers, do_on_device)
        from nnunetv2.inference.sliding_window_prediction import compute_gaussian
        from tqdm import tqdm

        results_device = self.device if do_on_device else torch.device("cpu")
        data = data.to(results_device)
        logits = torch.zeros((self.label_manager.num_segmentation_heads, *data.shape[1:]), dtype=torch.float32,
                             device=results_device)
        weight = torch.zeros(data.shape[1:], dtype=torch.float32, device=results_device)
        patch = tuple(self.configuration_manager.patch_size)
        gaussian = compute_gaussian(patch, sigma_scale=1. / 8, value_scaling_factor=10, dtype=torch.float32,
                                    device=results_device) if self.use_gaussian else torch.ones(patch, device=results_device)
        for sl in tqdm(slicers, disable=not self.allow_tqdm):
            if not self.window_has_body(sl):
                self.windows_skipped += 1
                continue
            self.windows_run += 1
            tile = data[sl][None].to(self.device).contiguous()
            pred = self._internal_maybe_mirror_and_predict(tile)[0].to(results_device, torch.float32)
            logits[sl].addcmul_(pred, gaussian)
            weight[sl[1:]] += gaussian
        empty = weight == 0
        if bool(empty.any()):
            weight[empty] = 1.0
            logits[0][empty] = BACKGROUND_LOGIT
        logits /= weight
        return logits

    # ---------------------------------------------------------------- body crop
    def body_threshold(self) -> Optional[float]:
        """BODY_HU in the units of the preprocessed image, or None (no body crop) when the normalisation is
        not CT's or its clip floor is at or above FAT_HU (e.g. a plan whose labelled voxels span 27-133 HU
        clips fat to the floor: a body above the floor would be the soft-tissue organs only, and the
        windows of an organ apart from the largest one would be skipped)."""
        scheme = self.configuration_manager.normalization_schemes[0]
        cfg = self.configuration_manager.configuration
        if cfg.get("resampling_fn_data") == RESAMPLE_THEN_WINDOW:  # preset: window, then scale
            kw = cfg.get("resampling_fn_data_kwargs", {})
            lo, hi = kw.get("window", (-175.0, 250.0))
            s0, s1 = kw.get("scale_to", (0.0, 1.0))
            if lo >= FAT_HU:
                return None
            return (min(max(BODY_HU, lo), hi) - lo) / (hi - lo) * (s1 - s0) + s0
        if scheme == "CTNormalization":
            p = self.plans_manager.foreground_intensity_properties_per_channel["0"]
            if p["percentile_00_5"] >= FAT_HU:
                return None
            v = min(max(BODY_HU, p["percentile_00_5"]), p["percentile_99_5"])
            return (v - p["mean"]) / max(p["std"], 1e-8)
        if scheme == "NoNormalization":
            return BODY_HU
        return None

    def body_mask_small(self, image: np.ndarray) -> Optional[np.ndarray]:
        """The body on every BODY_STEP-th voxel of `image` (x, y, z): the largest connected component above
        BODY_HU with its holes filled in every 2D slice along each axis (lungs and bowel gas are body: a
        lung is enclosed in its axial slices even where the airway leaves the body in 3D). None when the
        normalisation is unknown or no voxel is above the threshold."""
        thr = self.body_threshold()
        if thr is None:
            return None
        small = image[::BODY_STEP, ::BODY_STEP, ::BODY_STEP] > thr + 1e-4
        lab, n = ndimage.label(small)
        if n == 0:
            return None
        sizes = np.bincount(lab.ravel())
        sizes[0] = 0
        body = lab == sizes.argmax()
        filled = body.copy()
        for axis in range(body.ndim):
            plane = np.ones((3, 3, 3), bool)
            plane[tuple(0 if a == axis else slice(None) for a in range(3))] = False
            plane[tuple(2 if a == axis else slice(None) for a in range(3))] = False  # 2D structure in the slices
            filled |= ndimage.binary_fill_holes(body, plane)
        return filled

    def padded_body_mask(self, body: Optional[np.ndarray], shape, padded_shape, unpad) -> Optional[np.ndarray]:
        """The body mask (grown by one sample) on the full grid of the padded image; padding counts as body
        (nnU-Net pads with 0, i.e. tissue)."""
        if body is None:
            return None
        body = ndimage.binary_dilation(body, np.ones((3, 3, 3), bool))
        full = np.repeat(np.repeat(np.repeat(body, BODY_STEP, 0), BODY_STEP, 1), BODY_STEP, 2)
        out = np.ones(tuple(padded_shape), bool)
        out[tuple(unpad[1:])] = full[tuple(slice(0, n) for n in shape)]
        return out

    def window_has_body(self, sl: Tuple[slice, ...]) -> bool:
        """Whether the window `sl` (channels, x, y, z slices) holds a body voxel (always True without a mask)."""
        return self._body is None or bool(self._body[tuple(sl[1:])].any())

    # ---------------------------------------------------------------- per case
    def preprocess(self, image_files: Sequence[str]) -> Tuple[np.ndarray, dict]:
        """nnU-Net's preprocessing of one case (with this predictor's configuration manager); ValueError
        naming the file when the image holds NaN or infinite values."""
        pre = self.configuration_manager.preprocessor_class(verbose=False)
        data, _, props = pre.run_case(list(image_files), None, self.plans_manager, self.configuration_manager,
                                      self.dataset_json)
        if not np.isfinite(data).all():
            raise InputError(f"{image_files[0]}: the image holds NaN or infinite values")
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
        fast_export = (self.chunked_export and not lm.has_regions
                       and cm.configuration.get("resampling_fn_probabilities") == NNUNET_DEFAULT_RESAMPLING)
        if self.nearest_export and not lm.has_regions:
            return self._nearest_export(logits, props)
        if not fast_export:
            return convert_predicted_logits_to_segmentation_with_correct_shape(logits, pm, cm, lm, props)
        target, current = self._export_spacings(props)
        kw = {k: v for k, v in cm.configuration.get("resampling_fn_probabilities_kwargs", {}).items()
              if k in ("order", "order_z", "force_separate_z", "separate_z_anisotropy_threshold")}
        box = self.roi_box(logits) if self.roi_labels else None
        seg = resample_logits_to_labels(logits, props["shape_after_cropping_and_before_resampling"], current,
                                        target, input_box=box, **kw) if box != () else \
            np.zeros([int(n) for n in props["shape_after_cropping_and_before_resampling"]], np.uint8)
        full = np.zeros(props["shape_before_cropping"], seg.dtype)
        full = insert_crop_into_image(full, seg, props["bbox_used_for_cropping"])
        return full.transpose(pm.transpose_backward)

    def roi_box(self, logits: torch.Tensor) -> Tuple[slice, ...]:
        """Bounding box (slices of the network grid) of the voxels whose argmax is an ROI class, grown by
        one voxel; () when there are none. The export resamples only what this box reaches (all classes,
        so the labels there are the full export's), the rest of the grid stays background."""
        roi = torch.zeros(logits.shape[0], dtype=torch.bool)
        roi[[int(k) for k in self.roi_labels]] = True
        where = torch.nonzero(roi[logits.argmax(0)])
        if not len(where):
            return ()
        lo, hi = where.amin(0), where.amax(0)
        return tuple(slice(max(0, int(a) - 1), min(n, int(b) + 2)) for a, b, n in zip(lo, hi, logits.shape[1:]))

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
