"""The plateau check of the learning curves: a curve that stopped rising is a plateau, one still
rising is not; the mean is over trials (unit: a trial's curve)."""
import pytest

from suprem_nnunet.experiments.plateau import PLATEAU_RISE, mean_curve, plateau, plateau_section


def _rows(arm, trial, values, setting="4"):
    return [{"arm": arm, "setting": setting, "trial": trial, "epoch": e + 1, "val_dsc": v, "val_dsc_ema": 0.0}
            for e, v in enumerate(values)]


def test_flat_end_is_a_plateau_and_rising_end_is_not():
    flat = [0.1, 0.4, 0.6, 0.7, 0.75, 0.76, 0.765, 0.77]
    rising = [0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35]
    assert plateau(flat)["plateau"] and plateau(flat)["rise"] < PLATEAU_RISE
    assert plateau(flat)["final"] == pytest.approx(0.7675)
    assert not plateau(rising)["plateau"] and plateau(rising)["rise"] == pytest.approx(0.1)
    assert not plateau([0.1, 0.2, 0.3])["plateau"]  # too short to tell


def test_mean_over_trials_and_section(tmp_path):
    up = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]
    curves = _rows("scratch", 0, up) + _rows("scratch", 1, [v + 0.1 for v in up]) + \
        _rows("suprem", 0, [0.7, 0.8, 0.85, 0.86, 0.9, 0.9, 0.91, 0.91]) + _rows("suprem", 0, [0.0] * 8, setting="1")
    assert mean_curve(curves, "scratch", "4") == pytest.approx([v + 0.05 for v in up])
    text = "\n".join(plateau_section(curves, ["scratch", "suprem"], "4", tmp_path / "c.png", "t"))
    assert "| scratch | 8 | 0.800 | +0.200 | still rising |" in text
    assert "| suprem | 8 | 0.910 | +0.010 | plateau |" in text
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"
