"""The sliding window of SupremPredictor: float32 window sums, air windows skipped (lungs kept), bf16 on CPU."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from suprem_nnunet.inference.fast_predictor import BACKGROUND_LOGIT, cpu_has_native_bf16
from suprem_nnunet.inference.predict import make_predictor
from suprem_nnunet.benchmarks.reference_nets import band_model

AIR, LUNG, TISSUE = -10.0, -8.5, 0.2  # normalised (HU / 100): air, lung, class 1 of the band model


def _predictor(**kw):
    model = band_model(["liver", "spleen"], spacing=(2.0, 2.0, 2.0), patch=(16, 16, 16), unet_features=4)
    p = make_predictor(model, torch.device("cpu"), mirror=False, **kw)
    p.allow_tqdm = False
    return p


@pytest.fixture(scope="module")
def chest(one_torch_thread):
    """A body with a lung bigger than a window, whose airway leaves the body (no 3D hole), in air."""
    img = np.full((1, 64, 64, 64), AIR, np.float32)
    img[0, 4:40, 4:40, 4:40] = TISSUE
    img[0, 10:34, 10:34, 10:34] = LUNG
    img[0, 0:10, 20:24, 20:24] = AIR  # trachea: the lung's air reaches the outside along axis 0
    img[0, 40:60, 4:12, 4:12] = TISSUE  # an arm: the body's bounding box holds air-only windows
    return torch.from_numpy(img)


@pytest.mark.slow
def test_air_windows_are_skipped_but_not_the_lung(chest):
    """Air windows are skipped; a plain 'window above -500 HU' rule would also skip the windows inside
    the lung (all below -500 HU) and predict them as background."""
    fast, full = _predictor(), _predictor(fast_data_path=False)
    got = fast.predict_logits_from_preprocessed_data(chest)
    assert fast.windows_skipped > 0 and fast.windows_run > 0
    body = fast.body_mask_small(chest[0].numpy())
    assert body[5, 5, 5]  # the lung centre (every 4th voxel) counts as body
    want = full.predict_logits_from_preprocessed_data(chest)
    inside = (slice(None), slice(0, 44), slice(0, 44), slice(0, 44))  # body + lung + a margin
    assert torch.allclose(got[inside], want[inside].float(), atol=2e-2)  # nnU-Net sums windows in float16
    far = got[:, 56:, 36:, 36:]  # only skipped windows (or none: outside the body's box) cover this corner
    assert torch.all(far[0] == BACKGROUND_LOGIT) and torch.all(far[1:] == 0)


@pytest.fixture(scope="module")
def organs(one_torch_thread):
    img = torch.full((1, 40, 40, 40), TISSUE)  # class 1 (liver centre 0.2)
    img[0, 10:30, 5:25, 12:36] = 0.5  # class 2 (spleen centre 0.5)
    return img


def test_float32_window_sums_match_nnunets_float16(organs):
    img = organs
    fast, full = _predictor(), _predictor(fast_data_path=False)
    fast.body_crop = False
    got, want = (p.predict_logits_from_preprocessed_data(img) for p in (fast, full))
    assert got.dtype == torch.float32 and fast.windows_run > 0
    assert torch.allclose(got, want.float(), atol=2e-2)
    assert torch.equal(got.argmax(0), want.float().argmax(0))


@pytest.mark.skipif(not cpu_has_native_bf16(), reason="no native bfloat16 on this CPU")
def test_bf16_network_float32_output_same_labels(chest, organs):
    """bf16 autocast (opt-in; None: where native): float32 logits out, the same labels as float32 here."""
    auto, fp32 = _predictor(bf16=None), _predictor()
    assert auto.bf16 and not fp32.bf16
    tile = chest[None, :, :16, :16, :16].contiguous()
    assert auto._internal_maybe_mirror_and_predict(tile).dtype == torch.float32
    a = auto.predict_logits_from_preprocessed_data(organs).argmax(0)
    b = fp32.predict_logits_from_preprocessed_data(organs).argmax(0)
    for k in (1, 2):
        x, y = a == k, b == k
        assert int(y.sum()) > 100
        assert 2 * int((x & y).sum()) / int(x.sum() + y.sum()) >= 0.99
