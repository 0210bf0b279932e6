"""--sample-by case|source|class draws cases with the documented frequencies through nnU-Net's own
loader; --partial-loss naive teaches an unannotated organ as background, marginal does not; the
CLI turns an unknown value into one line. No training here (see test_training_partial_e2e.py)."""
import numpy as np
import pytest
import torch

from suprem_nnunet.training.sampling import (case_probabilities, case_sources, check_sample_by, draw_shares,
                                             set_sampling)

# a small source annotating 3 organs, a big one annotating 1, a middle one annotating 2
CASES = [f"btcv_{i}" for i in range(2)] + [f"lits_{i}" for i in range(6)] + [f"kits_{i}" for i in range(4)]
ANNOTATED = {**{c: ["liver", "spleen", "aorta"] for c in CASES[:2]}, **{c: ["liver"] for c in CASES[2:8]},
             **{c: ["kidney_left", "liver"] for c in CASES[8:]}}


def _draw(mode, n_batches=6000, batch=2, **kw):
    """Empirical case frequencies of nnU-Net's loader (batchgenerators DataLoader.get_indices, the
    method nnUNetDataLoader.generate_train_batch calls) after set_sampling."""
    from batchgenerators.dataloading.data_loader import DataLoader
    from batchgenerators.dataloading.single_threaded_augmenter import SingleThreadedAugmenter

    class Loader(DataLoader):  # nnUNetDataLoader's base, as nnUNetDataLoader sets it up
        def __init__(self):
            super().__init__(None, batch, 1, None, True, False, True, None)
            self.indices = list(reversed(CASES))  # the loader's order need not be the trainer's

        def generate_train_batch(self):
            return {"keys": self.get_indices()}

    aug = SingleThreadedAugmenter(Loader(), None)
    p = case_probabilities(CASES, mode, **kw)
    set_sampling(aug, dict(zip(CASES, p)))
    np.random.seed(0)
    keys = np.concatenate([next(aug)["keys"] for _ in range(n_batches)])
    return p, {c: float(np.mean(keys == c)) for c in CASES}


def test_case_mode_is_nnunets_uniform_draw():
    p, freq = _draw("case")
    assert np.allclose(p, 1 / 12)
    assert max(abs(f - 1 / 12) for f in freq.values()) < 0.01


def test_source_mode_draws_each_source_equally_often():
    sources = case_sources({"case_sources": {c: {"source": "phantom_" + c.split("_")[0]} for c in CASES[:8]}}, CASES)
    assert sources["btcv_0"] == "phantom_btcv" and sources["kits_3"] == "kits"  # unlisted: the id prefix
    p, freq = _draw("source", sources=sources)
    assert p[CASES.index("btcv_0")] == pytest.approx(1 / 6) and p[CASES.index("lits_0")] == pytest.approx(1 / 18)
    groups = {c: [s] for c, s in sources.items()}
    assert draw_shares(CASES, p, groups) == pytest.approx({"kits": 1 / 3, "phantom_btcv": 1 / 3, "phantom_lits": 1 / 3})
    seen = {s: sum(f for c, f in freq.items() if sources[c] == s) for s in set(sources.values())}
    assert all(abs(v - 1 / 3) < 0.015 for v in seen.values()), seen  # uniform draw: btcv 1/6, lits 1/2


def test_class_mode_draws_each_classes_cases_equally_often():
    p, freq = _draw("class", annotated=ANNOTATED)
    # class drawn uniformly (4 classes), then one of its annotating cases: liver 12, spleen 2, aorta 2, kidney 4
    expect = {c: sum(1 / (4 * n) for k, n in (("liver", 12), ("spleen", 2), ("aorta", 2), ("kidney_left", 4))
                     if k in ANNOTATED[c]) for c in CASES}
    assert np.allclose(p, [expect[c] for c in CASES])
    assert max(abs(freq[c] - expect[c]) for c in CASES) < 0.01
    shares = draw_shares(CASES, p, ANNOTATED)
    assert shares["liver"] == pytest.approx(1.0) and all(shares[k] >= 0.25 for k in shares)
    assert shares["spleen"] == pytest.approx(1 / 4 + 1 / 4 + 2 / 48)  # its own draws, aorta's, liver's
    assert sum(freq[c] for c in CASES if "spleen" in ANNOTATED[c]) > 0.48  # uniform draw: 1/6
    # no annotated_classes.json: every case annotates everything -> uniform
    assert np.allclose(case_probabilities(CASES, "class", annotated=None), 1 / 12)


def test_bad_sampling_inputs():
    with pytest.raises(ValueError, match="unknown --sample-by 'hospital'; choose one of case, source, class"):
        check_sample_by("hospital")
    with pytest.raises(ValueError, match="no annotated classes for case lits_0"):
        case_probabilities(["lits_0"], "class", annotated={"kits_0": ["liver"]})
    with pytest.raises(ValueError, match="no training case annotates any class"):
        case_probabilities(["lits_0"], "class", annotated={"lits_0": []})


def test_naive_loss_teaches_an_unannotated_organ_as_background_marginal_does_not():
    """Case annotates liver only; the network predicts aorta (really there, never drawn) where the label
    says background. Marginal: no cost for it; naive (plain nnU-Net): a large cross-entropy."""
    from suprem_nnunet.training.loss import PartialLabelDiceCELoss

    liver, aorta = 1, 2
    target = torch.zeros(1, 1, 4, 4, 4, dtype=torch.long)
    target[..., :2, :, :] = liver
    truth = target.clone()
    truth[..., 3:, :2, :2] = aorta  # the organ nobody drew
    logits = torch.nn.functional.one_hot(truth[:, 0], 3).permute(0, 4, 1, 2, 3).float() * 8
    annotated = torch.tensor([[True, True, False]])
    loss = PartialLabelDiceCELoss(weight_dice=0.0)  # the cross-entropy alone
    loss.set_annotated(annotated)
    marginal = float(loss(logits, target))
    loss.set_annotated(None)  # what --partial-loss naive hands the loss
    naive = float(loss(logits, target))
    assert marginal < 1e-2 and naive > 0.5
    loss.set_annotated(annotated)  # predicting background there is fine for the marginal loss too
    assert float(loss(torch.nn.functional.one_hot(target[:, 0], 3).permute(0, 4, 1, 2, 3).float() * 8,
                      target)) < 1e-2


@pytest.mark.parametrize("flag, value, msg", [
    ("--sample-by", "hospital", "unknown --sample-by 'hospital'; choose one of case, source, class"),
    ("--partial-loss", "ignore", "unknown --partial-loss 'ignore'; choose one of marginal, naive"),
])
def test_cli_unknown_value_is_one_line_and_writes_nothing(nnunet_env, capsys, flag, value, msg):
    from suprem_nnunet.cli.train import build_parser, main

    help_text = build_parser().format_help()
    assert "{case,source,class}" in help_text and "{marginal,naive}" in help_text
    assert main(["1", flag, value]) == 1
    err = capsys.readouterr().err.strip()
    assert err == f"suprem_train: error: {msg}"
    assert not any((nnunet_env / "nnUNet_results").iterdir())


def test_benchmark_minority_classes_and_arms():
    """The benchmark's bookkeeping: which classes a minority of the default sources annotate, the
    means it reports, and a bad arm refused before anything runs."""
    from suprem_nnunet.benchmarks.partial_labels import (DEFAULT_SOURCES, annotation_counts, minority_classes, parse_arm,
                                                  summarise)

    counts = annotation_counts(DEFAULT_SOURCES)
    assert {c for c, n in counts.items() if n == 2} == {"liver", "kidney_left", "kidney_right", "pancreas"}
    minority = minority_classes(counts, len(DEFAULT_SOURCES))
    assert "spleen" in minority and "liver_tumor" in minority and "liver" not in minority and len(counts) == 17
    rows = [{"arm": "a", "class": c, "minority": c in minority, "dsc": 1.0 if c in minority else 0.0} for c in counts]
    rows[0]["dsc"] = float("nan")  # never scored: left out of the means
    s = summarise(rows)["a"]
    assert s["minority classes"] == 1.0 and s["majority classes"] == 0.0 and s["minority organs"] == 1.0
    assert parse_arm("marginal:class") == ("marginal", "class") and parse_arm("naive") == ("naive", "case")
    with pytest.raises(ValueError, match="unknown loss 'dice'"):
        parse_arm("dice:case")
    with pytest.raises(ValueError, match="unknown --sample-by 'organ'"):
        parse_arm("marginal:organ")


def test_benchmark_custom_sources_and_mirroring_policy_are_checked_before_anything_runs(tmp_path, capsys):
    """Custom sources (LABEL=class+class) on BTCV's grid; a bad source, class or policy is one line."""
    from suprem_nnunet.benchmarks.partial_labels import PartialBenchConfig, annotation_counts, run_benchmark, source_profile
    from suprem_nnunet.benchmarks.suite import partial_labels_main

    a = source_profile("mix_a=liver+spleen+kidney_left+kidney_right")
    assert a.classes == ("liver", "spleen", "kidney_left", "kidney_right") and a.dataset_name == "PhantomMixA"
    assert a.spacing == source_profile("btcv").spacing and a.name == "mix_a"
    assert annotation_counts((("mix_a=liver+spleen", 3), ("mix_b=liver+aorta", 1))) == {
        "spleen": 1, "liver": 2, "aorta": 1}
    for bad, msg in (("x=liver+ghost", "unknown: ghost"), ("=liver", "expected LABEL=class")):
        with pytest.raises(ValueError, match=msg):
            source_profile(bad)
    with pytest.raises(ValueError, match="unknown left-right mirroring policy 'flip'"):
        run_benchmark(PartialBenchConfig(out=tmp_path / "b", left_right_mirroring="flip"))
    assert not (tmp_path / "b").exists()
    with pytest.raises(SystemExit, match="unknown: ghost"):
        partial_labels_main(["--out", str(tmp_path / "c"), "--sources", "x=liver+ghost:2"])
    assert not (tmp_path / "c").exists()


@pytest.mark.slow
def test_benchmark_arms_in_parallel_processes_equal_the_sequential_run(tmp_path, monkeypatch):
    """`benchmark partial-labels --jobs 2` trains the arms in two spawned processes at once; each arm
    seeds itself, so every per-class DSC equals the one-after-the-other run's (tiny budget: this proves
    the bookkeeping and the determinism, not that either loss learns)."""
    from suprem_nnunet.benchmarks.partial_labels import PartialBenchConfig, run_benchmark

    for v in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        monkeypatch.setenv(v, str(tmp_path / v))  # run_benchmark points them at its own folder; restored after
    monkeypatch.setenv("nnUNet_n_proc_DA", "0")
    kw = dict(sources=(("btcv", 1), ("lits", 1)), arms=("marginal", "naive"), num_test=1, epochs=1,
              iterations_per_epoch=2, val_iterations=1, max_patch=(16, 16, 16), base_features=4, max_features=8,
              threads=1)
    seq = run_benchmark(PartialBenchConfig(out=tmp_path / "seq", jobs=1, **kw))
    par = run_benchmark(PartialBenchConfig(out=tmp_path / "par", jobs=2, **kw))
    key = lambda r: (r["arm"], r["class"])  # noqa: E731
    a, b = sorted(seq["rows"], key=key), sorted(par["rows"], key=key)
    assert [key(r) for r in a] == [key(r) for r in b] and len(a) == 2 * 14  # 13 BTCV organs + liver_tumor
    for x, y in zip(a, b):
        assert (x["dsc"] == y["dsc"]) or (x["dsc"] != x["dsc"] and y["dsc"] != y["dsc"]), (x, y)  # equal or both NaN
    assert {"train marginal", "train naive"} <= set(par["config"]["timings"])

