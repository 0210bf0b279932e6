"""suprem_review score: separate scorers, one importance combination, a queue of stored scores,
attention maps; classes matched by name between models; bad input refused in one line."""
from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest

from suprem_nnunet.inference.outputs import write_probabilities
from suprem_nnunet.review.importance import class_importance, case_importance
from suprem_nnunet.review.probabilities import list_sets, load_case
from suprem_nnunet.review.queue import rank_rows, read_scores, store_scores, write_queue
from suprem_nnunet.review.scorers import ImplausibilityScorer, InconsistencyScorer, UncertaintyScorer, VolumeScorer
from suprem_nnunet.review.score import run_score

SHAPE = (12, 16, 20)  # z, y, x
NAMES = ["liver", "kidney_left", "kidney_right"]
GEO = {"spacing": [2.0, 2.0, 3.0], "origin": [-19.0, -15.0, -16.5], "direction": [1, 0, 0, 0, 1, 0, 0, 0, 1]}


class _Input:  # what write_probabilities reads of the input image
    def GetSpacing(self): return (1.0, 1.0, 1.5)
    def GetOrigin(self): return (-19.5, -15.5, -17.25)
    def GetDirection(self): return (1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0)
    def GetSize(self): return (40, 32, 24)


def _blobs(swap=False, split=False, hesitant=0.0):
    """Label map: liver a box; kidney_left at patient left (+x, high x index), kidney_right at right."""
    lab = np.zeros(SHAPE, int)
    lab[2:10, 2:8, 6:14] = 1
    left, right = (slice(15, 19), slice(1, 5)) if not swap else (slice(1, 5), slice(15, 19))
    lab[4:8, 10:14, left] = 2
    lab[4:8, 10:14, right] = 3
    if split:
        lab[4:8, 10:14, 9:10] = 0
        lab[0:2, 12:14, 9:11] = 2  # a stray second piece of kidney_left
    return lab


def _probs(lab, sharp=0.97, noise=0.0, seed=0):
    p = np.full((4, *SHAPE), (1 - sharp) / 3, np.float32)
    for k in range(4):
        p[k][lab == k] = sharp
    if noise:
        p += np.random.default_rng(seed).uniform(0, noise, p.shape).astype(np.float32)
    return p / p.sum(0, keepdims=True)


def _write(folder, case, p, names=NAMES, order=None, geo=GEO):
    folder.mkdir(parents=True, exist_ok=True)
    order = order or list(range(len(names) + 1))
    write_probabilities(folder / f"{case}.npz", p[order], ["background", *[(["background"] + names)[i] for i in order[1:]]],
                        order, geo, _Input())


def test_scorers_are_separate_and_each_finds_its_problem(tmp_path):
    good = _probs(_blobs())
    _write(tmp_path / "a", "good", good)
    _write(tmp_path / "b", "good", good)
    _write(tmp_path / "a", "odd", _probs(_blobs(swap=True, split=True), sharp=0.55, noise=0.2))
    _write(tmp_path / "b", "odd", _probs(_blobs(), sharp=0.6, noise=0.2, seed=1))
    sets = list_sets([tmp_path / "a", tmp_path / "b"])
    g, o = load_case("good", sets["good"]), load_case("odd", sets["odd"])
    assert g.passes.shape == (2, 4, *SHAPE)
    u = UncertaintyScorer()
    assert all(u.score(o)[c]["uncertainty"] > u.score(g)[c]["uncertainty"] + 0.2 for c in NAMES)
    inc = InconsistencyScorer()
    assert inc.score(g)["liver"]["inconsistency"] == pytest.approx(0.0)
    assert inc.score(o)["kidney_left"]["inconsistency"] > 0.5  # the passes put it on opposite sides
    imp = ImplausibilityScorer()
    assert imp.score(g)["kidney_left"]["wrong_side"] == 0.0
    one = load_case("odd", [tmp_path / "a" / "odd.npz"])
    s = imp.score(one)
    assert s["kidney_left"]["wrong_side"] == 1.0 and s["kidney_right"]["wrong_side"] == 1.0
    assert s["kidney_left"]["fragmentation"] > 0.05 and s["kidney_left"]["implausibility"] == 1.0
    assert math.isnan(inc.score(one)["liver"]["inconsistency"])  # one pass: no inconsistency


def test_overlap_and_volume_outlier():
    from suprem_nnunet.review.probabilities import CasePasses

    p = _probs(_blobs())
    p[1][2:10, 2:8, 6:10] = 0.45
    p[2][2:10, 2:8, 6:10] = 0.45  # liver and kidney_left both claim half the liver
    p /= p.sum(0, keepdims=True)
    case = CasePasses("c", p[None].astype(np.float16), NAMES, np.array(GEO["spacing"]), np.array(GEO["origin"]),
                      np.array(GEO["direction"], float), None, ["x"])
    s = ImplausibilityScorer().score(case)
    assert s["liver"]["overlap"] == pytest.approx(0.5, abs=0.01)
    vols = {f"c{i}": {"liver": {"volume_ml": 100.0 + i}} for i in range(4)}
    vols["big"] = {"liver": {"volume_ml": 400.0}}
    vols["gone"] = {"liver": {"volume_ml": 0.0}}
    v = VolumeScorer().score_cohort(vols)
    assert v["c1"]["liver"]["volume"] < 0.05 and v["big"]["liver"]["volume"] == 1.0 and v["gone"]["liver"]["volume"] == 1.0


def test_importance_is_the_documented_combination():
    vals = {"uncertainty": 0.2, "inconsistency": float("nan"), "implausibility": 0.1, "volume": 0.5}
    assert class_importance(vals) == pytest.approx((0.2 + 0.5) / 2)
    assert class_importance({"uncertainty": 0.3, "inconsistency": 0.6, "implausibility": 0.0}) == pytest.approx(0.3)
    ci = case_importance({"a": {"uncertainty": 0.2}, "b": {"uncertainty": 0.6}})
    assert ci == {"importance": pytest.approx(0.4), "importance_max": pytest.approx(0.6)}


def test_queue_ranks_stored_scores_and_shows_a_new_scorer_without_change(tmp_path):
    for case, imp in (("x", 0.2), ("y", 0.9)):
        store_scores(tmp_path / "scores", case, {"classes": {"liver": {"importance": imp, "my_new_scorer": 7.0,
                                                                       "uncertainty": float("nan")}},
                                                 "importance": imp})
    recs = read_scores(tmp_path / "scores")
    assert [r["case"] for r in rank_rows(recs)] == ["y", "x"]
    write_queue(recs, tmp_path)
    rows = list(csv.DictReader(open(tmp_path / "review_queue.csv")))
    assert rows[0]["case"] == "y" and rows[0]["rank"] == "1" and rows[0]["my_new_scorer"] == "7.0"
    assert rows[0]["uncertainty"] == ""  # NaN stored as null, written empty


def test_run_score_matches_classes_by_name_and_writes_queue_attention_preview(tmp_path):
    import SimpleITK as sitk

    good, odd = _probs(_blobs()), _probs(_blobs(swap=True), sharp=0.55, noise=0.3)
    for case, p in (("good", good), ("odd", odd)):
        _write(tmp_path / "a", case, p)
        # model b: channels in another order, one name spelled as a synonym, on a coarser grid
        names_b = ["right_kidney", "liver", "kidney_left"]
        order = [0, 3, 1, 2]
        pb = p[order]
        coarse = pb[:, :, ::2, ::2]
        geo_b = {**GEO, "spacing": [4.0, 4.0, 3.0], "origin": [-18.0, -14.0, -16.5]}
        _write(tmp_path / "b", case, coarse, names_b, None, geo_b)
    recs = run_score([tmp_path / "a", tmp_path / "b"], tmp_path / "out")
    assert recs["odd"]["importance"] > recs["good"]["importance"]
    assert recs["good"]["classes"]["liver"]["inconsistency"] < 0.2  # same prediction after reordering/resampling
    rows = list(csv.DictReader(open(tmp_path / "out" / "review_queue.csv")))
    assert rows[0]["case"] == "odd" and {"uncertainty", "inconsistency", "implausibility", "volume_ml"} <= set(rows[0])
    att = sitk.ReadImage(str(tmp_path / "out" / "attention" / "odd_attention.nii.gz"))
    assert att.GetSize() == _Input().GetSize() and att.GetSpacing() == pytest.approx(_Input().GetSpacing())
    a = sitk.GetArrayFromImage(att)
    assert 0.0 <= a.min() and a.max() <= 1.0 and a.max() > 0.5
    assert (tmp_path / "out" / "attention" / "odd_attention.png").stat().st_size > 1000
    stored = json.loads((tmp_path / "out" / "scores" / "odd.json").read_text())
    assert stored["classes"]["kidney_left"]["wrong_side"] == 1.0


def test_classes_that_differ_between_models_one_line_nothing_written(tmp_path, capsys):
    from suprem_nnunet.cli.review import main

    p = _probs(_blobs())
    _write(tmp_path / "a", "c1", p)
    _write(tmp_path / "b", "c1", p[[0, 1, 2]], ["liver", "kidney_left"])
    with pytest.raises(ValueError, match=r"b/c1\.npz: classes differ from .*a/c1\.npz \(missing: kidney_right"):
        run_score([tmp_path / "a", tmp_path / "b"], tmp_path / "out")
    assert not (tmp_path / "out" / "review_queue.csv").exists() and not list((tmp_path / "out").rglob("*.json"))
    rc = main(["score", str(tmp_path / "a"), str(tmp_path / "b"), "-o", str(tmp_path / "out2")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1 and err[0].startswith("suprem_review: error:") and "kidney_right" in err[0]


def test_classes_that_differ_leave_an_existing_queue_untouched(tmp_path):
    """Issue 12 bad input: a second scoring into the same folder with a model whose classes differ
    (same number of classes, one other name) is refused before anything of the first run is overwritten."""
    p = _probs(_blobs())
    _write(tmp_path / "a", "c1", p)
    _write(tmp_path / "a", "c2", p)
    _write(tmp_path / "b", "c1", p)
    _write(tmp_path / "b", "c2", p)
    run_score([tmp_path / "a", tmp_path / "b"], tmp_path / "out")
    before = {f: f.read_bytes() for f in (tmp_path / "out").rglob("*") if f.is_file()}
    _write(tmp_path / "c", "c1", p)  # c1 fine, c2 names spleen where a has kidney_right
    _write(tmp_path / "c", "c2", p, ["liver", "kidney_left", "spleen"])
    with pytest.raises(ValueError, match=r"c/c2\.npz: classes differ .*missing: kidney_right; extra: spleen"):
        run_score([tmp_path / "a", tmp_path / "c"], tmp_path / "out")
    assert {f: f.read_bytes() for f in (tmp_path / "out").rglob("*") if f.is_file()} == before


def test_tta_passes_undo_their_flips(tmp_path, monkeypatch):
    """The passes' flips are undone: with a 'network' that is flip-equivariant except for a ramp along
    x, the z flip pass equals the identity pass and the x flip pass does not (the network saw it flipped)."""
    import torch

    import suprem_nnunet.review.tta as tta_module
    from suprem_nnunet.dataset.raw import write_image
    from suprem_nnunet.review.tta import tta_passes
    from suprem_nnunet.models.trained import TrainedModel
    data = np.random.default_rng(0).normal(size=(1, 6, 7, 8)).astype(np.float32)

    class Fake:
        def preprocess(self, files):
            return data, {}

        def predict_logits_from_preprocessed_data(self, x):
            ramp = torch.linspace(0.0, 2.0, x.shape[-1])
            return torch.cat([-x, x + ramp], 0)

        def network_grid_probabilities(self, logits, props):
            return torch.softmax(logits, 0).numpy().astype(np.float16), GEO

    monkeypatch.setattr(tta_module, "make_predictor", lambda *a, **k: Fake())
    (tmp_path / "img").mkdir()
    write_image(tmp_path / "img" / "c_0000.nii.gz", np.zeros((6, 7, 8), np.int16), (1, 1, 1), (0, 0, 0), np.eye(3))
    m = TrainedModel.__new__(TrainedModel)
    m.__dict__.update(dataset_json={"labels": {"background": 0, "liver": 1}, "channel_names": {"0": "CT"}},
                      mirror_axes=(0, 1, 2), plans={})
    folders = tta_passes(m, tmp_path / "img", tmp_path / "tta")
    assert [f.name for f in folders] == ["identity", "flip_0", "flip_1", "flip_2"]
    ref, z_flip, x_flip = (np.load(folders[i] / "c.npz")["probabilities"].astype(np.float32) for i in (0, 1, 3))
    assert ref.shape == (2, 6, 7, 8)
    assert np.allclose(z_flip, ref, atol=2e-3)
    assert np.abs(x_flip - ref).max() > 0.1
