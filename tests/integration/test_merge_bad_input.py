"""`suprem_convert merge` refuses inputs whose class meanings or annotated classes are inconsistent:
one line on stderr, exit 1, and no merged dataset folder written."""
import json

import pytest

from suprem_nnunet.synth import get_profile
from suprem_nnunet.synth.dataset import make_profile_dataset

SMALL = dict(num_train=1, num_test=0, shape=(16, 16, 12), progress=False)


@pytest.fixture
def two_lits(nnunet_env):
    """Two one-case LiTS-like phantom sources (liver, liver_tumor) in nnUNet_raw."""
    raw = nnunet_env / "nnUNet_raw"
    a = make_profile_dataset(61, get_profile("lits"), seed=1, name="SrcA", raw_root=raw, **SMALL)
    b = make_profile_dataset(62, get_profile("lits"), seed=2, name="SrcB", raw_root=raw, **SMALL)
    return raw, a, b


def _edit(path, **changes):
    d = json.loads(path.read_text())
    d.update(changes)
    path.write_text(json.dumps(d))


def _merge_fails(raw, capsys, *needles):
    from suprem_nnunet.cli.convert import main

    assert main(["merge", "61", "62", "-d", "63", "--name", "Mix", "--no-progress"]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err, err
    for n in needles:
        assert n in err, err
    assert not list(raw.glob("Dataset063_*")), "nothing may be written"


def test_sources_disagreeing_on_a_host_organ_refused(two_lits, capsys):
    """Source B says its liver_tumor lies in the kidney: merged, two meanings would share one class."""
    raw, a, b = two_lits
    _edit(b / "dataset.json", tumor_hosts={"liver_tumor": "kidney"})
    _merge_fails(raw, capsys, str(b / "dataset.json"), "'liver_tumor'", "kidney", "liver", str(a / "dataset.json"))


def test_same_novel_class_with_two_hosts_refused(two_lits, capsys):
    """A class outside the table's tumours ('tumor'), declared in the liver by one source and in the
    kidney by the other."""
    raw, a, b = two_lits
    for folder, host in ((a, "liver"), (b, "kidney")):
        dj = json.loads((folder / "dataset.json").read_text())
        dj["labels"] = {"background": 0, "liver": 1, "tumor": 2}
        _edit(folder / "dataset.json", labels=dj["labels"], tumor_hosts={"tumor": host})
        ann = folder / "annotated_classes.json"
        ann.write_text(json.dumps({k: ["liver", "tumor"] for k in json.loads(ann.read_text())}))
    _merge_fails(raw, capsys, "'tumor'", "disagree", str(b / "dataset.json"))


def test_agreeing_declared_hosts_merge(two_lits, capsys):
    """The check is no false alarm: hosts declared as the table has them merge as before."""
    from suprem_nnunet.cli.convert import main

    raw, a, b = two_lits
    _edit(b / "dataset.json", tumor_hosts={"liver_tumor": "liver"})
    assert main(["merge", "61", "62", "-d", "63", "--name", "Mix", "--no-progress"]) == 0
    out = json.loads((raw / "Dataset063_Mix" / "dataset.json").read_text())
    assert out["tumor_hosts"] == {"liver_tumor": "liver"} and out["numTraining"] == 2


def test_annotated_class_missing_from_the_dataset_refused(two_lits, capsys):
    """annotated_classes.json of A names spleen, which A's dataset.json does not label."""
    raw, a, b = two_lits
    ann = a / "annotated_classes.json"
    ann.write_text(json.dumps({k: [*v, "spleen"] for k, v in json.loads(ann.read_text()).items()}))
    _merge_fails(raw, capsys, str(ann), "'spleen'", "not a label")
