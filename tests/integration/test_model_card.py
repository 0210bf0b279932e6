"""Licences and provenance carried to the model: the per-source table, converted and merged datasets,
the model card of a pre-trained then fine-tuned model, its export and `suprem_zoo info`."""
from __future__ import annotations

import json
import os
import zipfile

import pytest
import torch

from helpers.conversion_replicas import phantom, read_dataset, source_label, write
from dataset_conversion.merge import merge
from dataset_conversion.registry import SOURCES
from dataset_conversion.runner import convert
from suprem_nnunet import paths
from suprem_nnunet.labels.licences import LICENCES, SYNTHETIC_ID, UNVERIFIED, combined_terms, terms_for

pytestmark = pytest.mark.slow  # trains or starts several processes

TINY = dict(shape=(32, 32, 32), spacing=(10.0, 10.0, 10.0), progress=False)


def test_every_registered_source_has_a_licence_and_a_citation():
    assert set(SOURCES) <= set(LICENCES)
    for key in SOURCES:
        t = LICENCES[key]
        assert t.source == key and t.licence.id and t.licence.url.startswith("http"), key
        assert t.citation.key and t.citation.reference, key
        if t.licence.verified:
            assert t.licence.id != UNVERIFIED and t.licence.commercial is not None, key
        else:
            assert t.licence.note, f"{key}: an unverified licence says what is known"


def test_most_restrictive_terms():
    ccby = combined_terms([LICENCES["totalseg_v1"]])
    assert (ccby["commercial_use"], ccby["share_alike"], ccby["unverified"]) == (True, False, [])
    mixed = combined_terms([LICENCES[k] for k in ("totalseg_v1", "msd_task09", "chaos_ct")])
    assert mixed["commercial_use"] is False and mixed["share_alike"] and mixed["attribution"]
    assert mixed["most_restrictive"] == [{"source": "chaos_ct", "licence": "CC-BY-NC-SA-4.0"}]
    assert "commercial use NOT allowed" in mixed["summary"]
    flagged = combined_terms([LICENCES["msd_task09"], LICENCES["amos22"]])
    assert flagged["unverified"] == ["amos22"] and flagged["most_restrictive"][0]["source"] == "amos22"
    assert flagged["commercial_use"] is None  # AMOS's terms are not known
    assert terms_for("phantom_lits").licence.id == SYNTHETIC_ID and terms_for("mine").licence.id == UNVERIFIED


def test_converted_and_merged_datasets_carry_licences(tmp_path):
    from suprem_nnunet.synth.dataset import make_phantom_dataset

    for i in range(2):
        ph = phantom(300 + i, "RAS")
        write(tmp_path / "lits" / f"volume-{i}.nii.gz", ph.image, ph)
        write(tmp_path / "lits" / f"segmentation-{i}.nii.gz", source_label(ph, {1: "liver", 2: "liver_tumor"}), ph)
    ph = phantom(310, "RAS")
    write(tmp_path / "Task09_Spleen/imagesTr/spleen_1.nii.gz", ph.image, ph)
    write(tmp_path / "Task09_Spleen/labelsTr/spleen_1.nii.gz", source_label(ph, {1: "spleen"}), ph)
    raw = tmp_path / "raw"
    convert("lits", tmp_path / "lits", 11, "L", raw_root=raw, progress=False)
    convert("msd_task09", tmp_path / "Task09_Spleen", 12, "S", raw_root=raw, progress=False)
    make_phantom_dataset(13, "Ph", ("liver", "spleen"), 1, 0, seed=7, raw_root=raw, **TINY)

    dj, _ = read_dataset(raw / "Dataset012_S")
    assert dj["licence"] == "CC-BY-SA-4.0" and "Medical Segmentation Decathlon" in dj["citation"]
    assert dj["licences"]["msd_task09"]["licence"]["share_alike"] is True
    assert dj["case_sources"]["msd09_1"]["licence"] == "CC-BY-SA-4.0"
    assert read_dataset(raw / "Dataset013_Ph")[0]["licence"] == SYNTHETIC_ID

    merge(["Dataset011_L", "Dataset012_S", "Dataset013_Ph"], 20, "All", raw_root=raw, progress=False)
    dj, _ = read_dataset(raw / "Dataset020_All")
    cs = dj["case_sources"]
    assert {c: (v["source"], v["licence"]) for c, v in cs.items()} == {
        "lits_0": ("lits", UNVERIFIED), "lits_1": ("lits", UNVERIFIED), "msd09_1": ("msd_task09", "CC-BY-SA-4.0"),
        "ph_000": ("Dataset013_Ph", SYNTHETIC_ID)}  # a dataset without case sources: its folder, its licence
    assert set(dj["licences"]) == {"lits", "msd_task09", "Dataset013_Ph"}
    assert dj["licences"]["lits"]["citation"]["key"] == "bilic2023lits"
    from suprem_nnunet.labels.licences import terms_from_dict

    terms = combined_terms(terms_from_dict({**v, "source": k}) for k, v in dj["licences"].items())
    assert terms["commercial_use"] is False and terms["share_alike"]  # LiTS: non-commercial; MSD: share-alike
    assert terms["unverified"] == ["lits"]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("card")
    old = {v: os.environ.get(v) for v in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results", "SUPREM_ZOO")}
    paths.setup_environment(str(root))
    os.environ["SUPREM_ZOO"] = str(root / "zoo")
    yield root
    for v, x in old.items():
        if x is None:
            os.environ.pop(v, None)
        else:
            os.environ[v] = x


def test_pretrain_then_finetune_writes_a_two_stage_card_that_export_and_info_show(world, capsys):
    from suprem_nnunet.cli.zoo import main as zoo
    from suprem_nnunet.planning.planner import PlanningCaps, plan_and_preprocess, plans_name_for
    from suprem_nnunet.synth.dataset import make_phantom_dataset
    from suprem_nnunet.training.base import SupremPretrainer, TrainingBudget
    from suprem_nnunet.training.finetune import finetune
    from suprem_nnunet.training.run import build_trainer, train
    from suprem_nnunet.zoo.archive import export_model

    torch.set_num_threads(1)
    pre = make_phantom_dataset(51, "CardPre", ("liver", "spleen"), 3, 0, seed=0, **TINY)
    tgt = make_phantom_dataset(52, "CardTgt", ("liver", "iliopsoas_left"), 2, 1, seed=5, **TINY)
    dj = json.loads((pre / "dataset.json").read_text())  # as if converted from two public sources
    dj["case_sources"] = {"cardpre_000": {"source": "chaos_ct"}, "cardpre_001": {"source": "totalseg_v1"},
                          "cardpre_002": {"source": "totalseg_v1"}}
    dj.pop("licences")
    (pre / "dataset.json").write_text(json.dumps(dj))
    plan_and_preprocess(pre.name, "nnunet", ("3d_fullres",), PlanningCaps((16, 16, 16), 4, 16, 2),
                        num_processes=1, verify=False)
    budget = TrainingBudget(1, 2, 1, 3e-3, 1, "adamw")
    trainer = build_trainer(SupremPretrainer, pre.name, plans_name_for("nnunet"), "3d_fullres", "all",
                            torch.device("cpu"))
    pre_dir = train(trainer, budget, resume=False, seed=3, role="pretrain")
    card = json.loads((pre_dir / "model_card.json").read_text())
    (stage,) = card["stages"]
    assert stage["role"] == "pretrain" and stage["seed"] == 3 and stage["budget"]["epochs"] == 1
    assert stage["plans"]["backbone"] == "nnunet" and stage["plans"]["patch_size"] == [16, 16, 16]
    assert "nnunetv2" in stage["versions"] and "torch" in stage["versions"]
    counts = {s["source"]: s["training_cases"] for s in stage["data"]["sources"]}
    assert counts == {"chaos_ct": 1, "totalseg_v1": 2}
    assert card["terms"]["commercial_use"] is False and card["terms"]["most_restrictive"][0]["source"] == "chaos_ct"
    assert "| chaos_ct | 1 |" in (pre_dir / "model_card.md").read_text()

    ft_dir = finetune(tgt.name, str(pre_dir), num_train_cases=2, seed=1, budget=budget, num_processes=1, verify=False)
    card = json.loads((ft_dir / "model_card.json").read_text())
    assert [s["role"] for s in card["stages"]] == ["pretrain", "finetune"]
    assert card["stages"][0] == stage  # the pre-training's stage, kept as it was
    ft = card["stages"][1]
    assert ft["pretrained"].endswith("checkpoint_final.pth") and ft["data"]["training_cases"] == 2
    assert [(s["source"], s["licence"]["id"]) for s in ft["data"]["sources"]] == [("CardTgt", SYNTHETIC_ID)]
    assert card["terms"]["commercial_use"] is False  # the pre-training data's terms still bind the weights
    assert card["classes"] == ["background", "liver", "iliopsoas_left"]

    zip_path = export_model(ft_dir.parent, world / "m.zip")
    with zipfile.ZipFile(zip_path) as z:
        assert "Stage 2: finetune" in z.read("model_card.md").decode()
        assert json.loads(z.read("model_card.json"))["provenance"]["stages"][1]["role"] == "finetune"
    assert zoo(["import", str(zip_path), "--name", "carded"]) == 0
    capsys.readouterr()
    assert zoo(["info", "carded"]) == 0
    out = capsys.readouterr().out
    assert "Stage 1: pretrain on Dataset051_CardPre" in out and "Stage 2: finetune on Dataset052_CardTgt" in out
    assert "commercial use NOT allowed" in out and "| chaos_ct | 1 |" in out
    assert zoo(["info", "carded", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["model_card"]["provenance"]["stages"]) == 2
    assert zoo(["info", str(pre_dir)]) == 0  # a trained fold folder, not imported
    assert "Stage 1: pretrain" in capsys.readouterr().out
