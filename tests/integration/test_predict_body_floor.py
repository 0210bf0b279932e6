"""The fast predictor's body crop with a plan whose CT clip floor is above fat (e.g. 27 HU, a pre-training
set that labels only pancreas and lesion): fat and air share the floor value, so no body is cut and an
organ apart from the largest tissue component is still predicted."""
from __future__ import annotations

import torch

from suprem_nnunet.inference.predict import make_predictor
from suprem_nnunet.benchmarks.reference_nets import band_model

FLOOR = 0.27  # 27 HU after the band model's HU / 100 normalisation: fat and air are clipped to it
TISSUE = 0.5  # class 2 of the band model


def _predictor(floor_hu: float, **kw):
    model = band_model(["liver", "spleen"], spacing=(2.0, 2.0, 2.0), patch=(16, 16, 16), unet_features=4)
    p = make_predictor(model, torch.device("cpu"), mirror=False, **kw)
    p.allow_tqdm = False
    p.plans_manager.foreground_intensity_properties_per_channel["0"]["percentile_00_5"] = floor_hu
    return p


def _two_organs():
    img = torch.full((1, 48, 48, 48), FLOOR)
    img[0, 0:16, 0:16, 0:16] = TISSUE  # the largest soft-tissue component
    img[0, 36:44, 36:44, 36:44] = TISSUE  # an organ apart from it, fat (clipped to the floor) in between
    return img


ORGAN = (slice(None), slice(37, 43), slice(37, 43), slice(37, 43))  # its inside (the band net blurs edges)


def test_clip_floor_above_fat_runs_every_window(one_torch_thread):
    img = _two_organs()
    fast, full = _predictor(27.0), _predictor(27.0, fast_data_path=False)
    assert fast.body_threshold() is None and fast.body_mask_small(img[0].numpy()) is None
    got = fast.predict_logits_from_preprocessed_data(img)
    assert fast.windows_skipped == 0 and fast.windows_run > 0
    want = full.predict_logits_from_preprocessed_data(img).float()
    assert torch.equal(got[ORGAN].argmax(0), want[ORGAN].argmax(0))
    assert bool((got[ORGAN].argmax(0) == 2).all())  # the apart organ is predicted, not background


def test_a_body_above_the_floor_would_cut_the_apart_organ(one_torch_thread, monkeypatch):
    """What the rule prevents: thresholding at the floor itself keeps only the largest organ as body
    and the other organ's windows are skipped (background)."""
    img = _two_organs()
    fast = _predictor(27.0)
    monkeypatch.setattr(fast, "body_threshold", lambda: FLOOR)
    got = fast.predict_logits_from_preprocessed_data(img)
    assert fast.windows_skipped > 0
    assert bool((got[ORGAN].argmax(0) == 0).all())


def test_clip_floor_below_fat_keeps_the_crop(one_torch_thread):
    fast = _predictor(-1000.0)
    assert fast.body_threshold() == -5.0  # -500 HU / 100
