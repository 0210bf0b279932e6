"""A missed organ tops the review queue: missed > faint > hesitant > good, with and without the volume
scorer, with one pass and with two; a lesion predicted nowhere is not flagged as missed.

Synthetic probability maps (no model): liver always good; the spleen comes out as
  good      p̄ ≈ 0.98 inside, smooth edge                       (labelled, confident)
  hesitant  p̄ ≈ 0.62 inside                                    (labelled, uncertain)
  faint     p̄ peaks near 0.35                                  (probability rises, label empty)
  missed    p̄ ≤ 0.004 everywhere                               (nothing, the issue's zero-uncertainty case)
That is their order of expected error (DSC 0, 0, partial, high; faint has at least a hint to start
from), so it is the order of importance the scorers must give.
"""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from suprem_nnunet.inference.outputs import write_probabilities
from suprem_nnunet.review.importance import class_importance
from suprem_nnunet.review.probabilities import CasePasses
from suprem_nnunet.review.queue import rank_cases, rank_rows, read_scores
from suprem_nnunet.review.score import run_score
from suprem_nnunet.review.scorers import AbsenceScorer, UncertaintyScorer, score_case, score_cohort

SHAPE = (16, 20, 20)
NAMES = ["liver", "spleen", "liver_tumor"]
GEO = {"spacing": [4.0, 4.0, 4.0], "origin": [0.0, 0.0, 0.0], "direction": [1, 0, 0, 0, 1, 0, 0, 0, 1]}
SPLEEN_PEAK = {"good": 0.98, "hesitant": 0.62, "faint": 0.35, "missed": 0.004}
ORDER = ["missed", "faint", "hesitant", "good"]


class _Input:
    def GetSpacing(self): return (4.0, 4.0, 4.0)
    def GetOrigin(self): return (0.0, 0.0, 0.0)
    def GetDirection(self): return (1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0)
    def GetSize(self): return SHAPE[::-1]


def _soft(box, peak, jitter=0.0, seed=0):
    m = np.zeros(SHAPE, np.float32)
    m[box] = 1.0
    s = ndimage.gaussian_filter(m, 1.0)
    s = s / s.max()
    if jitter:
        s = np.clip(s + np.random.default_rng(seed).normal(0, jitter, SHAPE).astype(np.float32), 0, 1)
    return peak * s


def _probs(state: str, jitter=0.0, seed=0) -> np.ndarray:
    """(4, z, y, x) softmax-like map: background, liver, spleen (in `state`), liver_tumor (nowhere)."""
    liver = _soft((slice(3, 13), slice(2, 10), slice(2, 11)), 0.98, jitter, seed)
    spleen = _soft((slice(5, 11), slice(11, 17), slice(12, 18)), SPLEEN_PEAK[state], jitter if state != "missed"
                   else 0.0, seed + 1)
    tumor = np.full(SHAPE, 0.001, np.float32)
    fg = np.stack([liver, spleen, tumor])
    fg *= np.minimum(1.0, 0.999 / np.maximum(fg.sum(0), 1e-6))  # room for background
    return np.concatenate([1.0 - fg.sum(0, keepdims=True), fg]).astype(np.float32)


def _write(folder, case, p):
    folder.mkdir(parents=True, exist_ok=True)
    write_probabilities(folder / f"{case}.npz", p, ["background", *NAMES], list(range(len(NAMES) + 1)), GEO,
                        _Input())


def _case(state: str) -> CasePasses:
    return CasePasses(state, _probs(state)[None].astype(np.float16), NAMES, np.array(GEO["spacing"], float),
                      np.array(GEO["origin"], float), np.array(GEO["direction"], float), None, [state])


def test_maps_are_what_their_names_say():
    for state in ORDER:
        p = _probs(state)
        spleen_label = (p.argmax(0) == 2).sum()
        assert (spleen_label > 0) == (state in ("good", "hesitant")), state
        assert p[2].max() == pytest.approx(SPLEEN_PEAK[state], abs=0.02)
    assert (_probs("missed")[2] > 0.05).sum() == 0  # the zero-uncertainty case: the spleen nowhere near 0.5


def test_empty_predictions_score_at_the_top_of_each_component():
    u, a = UncertaintyScorer(), AbsenceScorer()
    unc = {s: u.score(_case(s))["spleen"]["uncertainty"] for s in ORDER}
    absn = {s: a.score(_case(s))["spleen"]["absence"] for s in ORDER}
    assert unc["missed"] == 1.0 and unc["faint"] == pytest.approx(1.0)
    assert unc["hesitant"] < 0.9 and unc["good"] < unc["hesitant"]
    assert absn["missed"] > 0.99 and 0.2 < absn["faint"] < 0.4 and absn["hesitant"] == absn["good"] == 0.0
    tumor_u, tumor_a = u.score(_case("good"))["liver_tumor"], a.score(_case("good"))["liver_tumor"]
    assert tumor_u["uncertainty"] == 0.0 and tumor_a["absence"] == 0.0  # no lesion is the normal finding


def test_order_without_volume_fewer_than_three_cases():
    """Each case scored on its own (cohort of 1: volume NaN), as the issue's failing case; the queue
    over the stored records ranks them missed, faint, hesitant, good."""
    records = {}
    for s in ORDER:
        per_case = score_cohort({s: score_case(_case(s))})
        assert np.isnan(per_case[s]["spleen"]["volume"])
        for v in per_case[s].values():
            v["importance"] = class_importance(v)
        imp = [v["importance"] for v in per_case[s].values()]
        records[s] = {"classes": per_case[s], "importance": float(np.mean(imp))}
    spleen = [records[s]["classes"]["spleen"]["importance"] for s in ORDER]
    assert spleen == sorted(spleen, reverse=True) and len(set(spleen)) == 4, spleen
    assert [r["case"] for r in rank_cases(records)] == ORDER
    assert [(r["case"], r["class"]) for r in rank_rows(records)][:3] == [("missed", "spleen"), ("faint", "spleen"),
                                                                         ("hesitant", "spleen")]


@pytest.mark.parametrize("passes", [1, 2])
def test_order_with_volume_in_a_cohort(tmp_path, passes):
    """Four normal cases besides the four states (volume defined, median = a normal spleen); one pass
    (inconsistency NaN) or two passes with small independent noise (inconsistency defined)."""
    cases = {**{s: s for s in ORDER}, **{f"normal{i}": "good" for i in range(4)}}
    dirs = [tmp_path / f"model{k}" for k in range(passes)]
    for k, d in enumerate(dirs):
        for n, (case, state) in enumerate(sorted(cases.items())):
            _write(d, case, _probs(state, jitter=0.02 * k, seed=10 * n + k))
    records = run_score(dirs, tmp_path / "out", attention=False)
    spleen = {s: records[s]["classes"]["spleen"] for s in ORDER}
    assert spleen["missed"]["volume"] == 1.0 and spleen["good"]["volume"] < 0.1
    imp = [spleen[s]["importance"] for s in ORDER]
    assert imp == sorted(imp, reverse=True) and len(set(imp)) == 4, imp
    stored = read_scores(tmp_path / "out" / "scores")
    assert [r["case"] for r in rank_cases(stored)][:3] == ["missed", "faint", "hesitant"]
    assert records["missed"]["importance"] > max(records[f"normal{i}"]["importance"] for i in range(4))
