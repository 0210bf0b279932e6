"""Scale: the dataset fingerprint reads a bounded random sample of cases and keeps a bounded number
of foreground voxels, whatever the number of cases (planning/fingerprint.py), and
`suprem_plan_and_preprocess` uses it."""
import json

import pytest

from suprem_nnunet.planning.fingerprint import SupremFingerprintExtractor, foreground_voxels_per_case, sample_cases
from suprem_nnunet.synth.dataset import make_phantom_dataset

TINY = dict(num_test=0, shape=(16, 16, 16), spacing=(10, 10, 10), progress=False)


class _Stop(Exception):
    pass


def test_sample_cases_is_bounded_seeded_and_order_free():
    cases = {f"c{i:03d}": i for i in range(50)}
    a = sample_cases(cases, 7, seed=3)
    assert len(a) == 7 and list(a) == sorted(a) and all(cases[k] == v for k, v in a.items())
    assert a == sample_cases(dict(reversed(list(cases.items()))), 7, seed=3)  # listing order does not matter
    assert sample_cases(cases, 7, seed=4) != a
    assert sample_cases(cases, 100) == cases
    with pytest.raises(ValueError, match="max_cases"):
        sample_cases(cases, 0)


def test_kept_foreground_voxels_do_not_grow_with_the_number_of_cases(nnunet_env, monkeypatch):
    """nnU-Net keeps 1e8 voxels over every case it reads; ours at most `max_foreground_voxels`
    over at most `max_cases` cases, for 3 as for 12 cases."""
    monkeypatch.setattr(SupremFingerprintExtractor, "max_cases", 5)
    monkeypatch.setattr(SupremFingerprintExtractor, "max_foreground_voxels", 6000)
    kept = {}
    for did, n in ((71, 3), (72, 12)):
        folder = make_phantom_dataset(did, f"Fp{n}", ["liver"], n, seed=did, **TINY)
        ext = SupremFingerprintExtractor(folder.name, 1)
        assert ext.num_cases_total == n and len(ext.dataset) == min(n, 5)
        kept[n] = foreground_voxels_per_case(ext.num_foreground_voxels_for_intensitystats, len(ext.dataset)) \
            * len(ext.dataset)
    assert kept[3] <= 6000 and kept[12] <= 6000 and kept[12] <= kept[3]


@pytest.mark.slow
def test_plan_and_preprocess_fingerprints_a_bounded_sample(nnunet_env, monkeypatch):
    """The pipeline's fingerprint holds `max_cases` of the 6 cases (nnU-Net's: all 6)."""
    import nnunetv2.experiment_planning.plan_and_preprocess_api as api

    from suprem_nnunet.planning.planner import plan_and_preprocess

    def stop(*a, **k):
        raise _Stop  # planning and preprocessing are not what this test is about

    monkeypatch.setattr(SupremFingerprintExtractor, "max_cases", 3)
    monkeypatch.setattr(api, "plan_experiment_dataset", stop)
    folder = make_phantom_dataset(73, "FpPipe", ["liver", "spleen"], 6, seed=5, **TINY)
    with pytest.raises(_Stop):
        plan_and_preprocess(folder.name, num_processes=1, verify=False)
    fp = json.loads((nnunet_env / "nnUNet_preprocessed" / folder.name / "dataset_fingerprint.json").read_text())
    assert len(fp["spacings"]) == len(fp["shapes_after_crop"]) == 3
    assert fp["foreground_intensity_properties_per_channel"]["0"]["median"] > -1000  # a real statistic
