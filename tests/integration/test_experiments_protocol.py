"""Experiment protocols: every shipped protocol loads and checks; bad input gives one line naming the
field, before anything runs."""
from __future__ import annotations

import copy
import json

import pytest

from suprem_nnunet.experiments.data import check_data, check_zoo_names
from suprem_nnunet.experiments.protocol import (DESIGNS, ProtocolError, load_protocol, protocol_file,
                                                protocol_from_dict, protocol_names)

PAPER = {"table2", "fig1", "fig2a", "fig2b", "table3", "table4", "fig9", "fig3"}


def raw(name: str) -> dict:
    return json.loads(protocol_file(name).read_text())


def one_line_error(data: dict, match: str) -> str:
    with pytest.raises(ProtocolError, match=match) as e:
        protocol_from_dict(data, "p.json")
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("p.json: ")
    return msg


def test_every_paper_result_is_a_shipped_protocol_with_both_scales():
    assert set(protocol_names()) == PAPER
    designs = set()
    for name in PAPER:
        p = load_protocol(name)
        designs.add(p.design)
        assert {k for k, _ in p.scales} == {"phantom", "full"}
        full = p.scale("full")
        assert full.trials == 10  # the paper's ten trials
        for arm in full.arms:
            assert arm.source in {q.key for q in full.pretrainings}
    assert designs == set(DESIGNS)


def test_phantom_scale_data_checks_pass_and_sizes_fit(nnunet_env):
    for name in PAPER:
        p = load_protocol(name)
        infos = check_data(p, "phantom")
        assert all(i.num_test >= 0 for i in infos.values())


def test_unknown_arm_source_baseline_field_and_design_are_named():
    d = raw("table2")
    bad = copy.deepcopy(d)
    bad["scales"]["phantom"]["arms"][1]["source"] = "imagenet"
    assert "scales.phantom.arms[1].source" in one_line_error(bad, "unknown pre-training 'imagenet'")
    bad = copy.deepcopy(d)
    bad["scales"]["phantom"]["baseline"] = "random"
    one_line_error(bad, r"scales.phantom.baseline: unknown arm 'random'")
    bad = copy.deepcopy(d)
    bad["scales"]["phantom"]["arms"][0]["initialisation"] = "x"
    one_line_error(bad, r"arms\[0\].initialisation: unknown field")
    bad = copy.deepcopy(d)
    bad["design"] = "table9"
    one_line_error(bad, "design: unknown design 'table9'")
    bad = copy.deepcopy(d)
    bad["scales"]["phantom"]["arms"][1]["init"] = "finetuned"
    one_line_error(bad, r"arms\[1\].init: unknown init 'finetuned'")
    bad = copy.deepcopy(d)
    bad["scales"]["phantom"]["sweep"] = [0]
    one_line_error(bad, r"sweep\[0\]: expected an integer >= 1")


def test_sweep_larger_than_the_dataset_is_refused_before_running(nnunet_env):
    d = raw("fig1")
    d["scales"]["phantom"]["sweep"] = [2, 20]
    p = protocol_from_dict(d, "fig1.json")
    with pytest.raises(ProtocolError, match=r"num_train_cases = 20 but Dataset932_PhantomTarget has only 10"):
        check_data(p, "phantom")
    d = raw("fig2a")
    d["scales"]["phantom"]["sweep"] = [4, 64]
    with pytest.raises(ProtocolError, match=r"pre-training suprem on 64 cases but Dataset931_PhantomPretrain has only 16"):
        check_data(protocol_from_dict(d, "fig2a.json"), "phantom")
    d = raw("table2")
    d["scales"]["phantom"]["targets"] = [{"dataset": 999}]
    with pytest.raises(ProtocolError, match="unknown dataset 999; phantom datasets: 931"):
        check_data(protocol_from_dict(d, "t.json"), "phantom")


def test_full_scale_names_the_missing_dataset_and_the_command(nnunet_env):
    p = load_protocol("table4")
    with pytest.raises(ProtocolError) as e:
        check_data(p, "full")
    assert "dataset 627 is missing" in str(e.value)
    assert "`suprem_convert totalseg_v2 /path/to/totalseg_v2 -d 627 --groups muscles,cardiac,organs,vertebrae`" \
        in str(e.value)


def test_full_scale_names_the_zoo_model_to_import(nnunet_env, monkeypatch, tmp_path):
    monkeypatch.setenv("SUPREM_ZOO", str(tmp_path / "zoo"))
    (nnunet_env / "nnUNet_raw" / "Dataset625_TotalSegV2" / "imagesTr").mkdir(parents=True)
    (nnunet_env / "nnUNet_raw" / "Dataset625_TotalSegV2" / "dataset.json").write_text("{}")
    with pytest.raises(ProtocolError, match=r"zoo model supervised_suprem_unet_2100 is not imported; .*"
                                            r"`suprem_zoo import .* --name supervised_suprem_unet_2100`"):
        check_data(load_protocol("fig1"), "full")


def test_unknown_zoo_model(monkeypatch, tmp_path):
    monkeypatch.setenv("SUPREM_ZOO", str(tmp_path / "zoo"))
    d = raw("table2")
    d["scales"]["full"]["pretrainings"]["genesis"]["zoo"] = "models_genesis_unet_v9"
    with pytest.raises(ProtocolError, match=r"pretrainings.genesis: unknown zoo model 'models_genesis_unet_v9' \(known: "):
        check_zoo_names(protocol_from_dict(d, "t.json"))


def test_cli_bad_input_is_one_line_and_writes_nothing(nnunet_env, tmp_path, capsys):
    from suprem_nnunet.cli.experiment import main

    bad = raw("table2")
    bad["scales"]["phantom"]["sweep"] = [20]
    f = tmp_path / "bad.json"
    f.write_text(json.dumps(bad))
    out = tmp_path / "out"
    assert main(["run", str(f), "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "num_train_cases = 20 but Dataset932_PhantomTarget has only 10" in err
    assert not out.exists()
    assert main(["run", "table7", "--out", str(out)]) == 1
    assert "unknown protocol 'table7'; known: fig1, fig2a" in capsys.readouterr().err
