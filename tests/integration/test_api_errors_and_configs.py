"""The error root, the CLI's user-error rule, the stage configs and the model resolver."""
from __future__ import annotations

import errno

import pytest
import torch

from suprem_nnunet.cli.common import is_user_error
from suprem_nnunet.configs import as_config
from suprem_nnunet.errors import InputError, MissingFileError, SupremError
from suprem_nnunet.models.resolve import is_training_checkpoint, resolve_model
from suprem_nnunet.training.pretrain import PretrainConfig, check_pretrain_config
from suprem_nnunet.zoo import ZooError


def test_project_errors_share_one_root_and_keep_their_builtin():
    from dataset_conversion.errors import BadInputError
    from suprem_nnunet.experiments.protocol import ProtocolError
    from suprem_nnunet.networks.checkpoint import CheckpointError

    for cls in (ZooError, CheckpointError, ProtocolError, InputError):
        assert issubclass(cls, SupremError) and issubclass(cls, ValueError)
    assert issubclass(MissingFileError, FileNotFoundError) and issubclass(BadInputError, SupremError)


@pytest.mark.parametrize("exc,user", [
    (InputError("x: bad"), True),
    (OSError(errno.ENOSPC, "No space left on device", "/out/f"), True),
    (PermissionError(errno.EACCES, "Permission denied", "/out"), True),
    (FileNotFoundError(errno.ENOENT, "No such file or directory", "/in/f"), True),
    (ValueError("a bug"), False),
    (RuntimeError("a bug"), False),
    (MemoryError(), False),
    (NotImplementedError(), False),
    (OSError(errno.EBADF, "Bad file descriptor"), False),
])
def test_only_user_errors_become_one_line(exc, user):
    assert is_user_error(exc) is user


def test_config_or_fields():
    c = PretrainConfig("Dataset001_X", seed=3)
    assert as_config(PretrainConfig, c, (), {}) is c
    assert as_config(PretrainConfig, "Dataset001_X", (), {"seed": 3}) == c
    with pytest.raises(TypeError):
        as_config(PretrainConfig, c, (), {"seed": 4})


def test_pretrain_config_checked_before_anything_runs():
    with pytest.raises(InputError, match="--partial-loss 'bogus'"):
        check_pretrain_config(PretrainConfig("Dataset001_X", partial_loss="bogus"))
    with pytest.raises(TypeError, match="SubsetPretrainer"):
        check_pretrain_config(PretrainConfig("Dataset001_X", num_train_cases=2))


def test_resolver_decides_by_structure(tmp_path, monkeypatch):
    monkeypatch.setenv("SUPREM_ZOO", str(tmp_path / "zoo"))
    ours, released = tmp_path / "ours.pth", tmp_path / "released.pth"
    w = {"conv.weight": torch.zeros(1)}
    torch.save({"network_weights": w, "init_args": {"plans": {}, "dataset_json": {}, "configuration": "3d_fullres"}},
               ours)
    torch.save({"net": w}, released)
    assert is_training_checkpoint(torch.load(ours, weights_only=True, map_location="cpu"))
    assert resolve_model(ours).kind == "nnunet_checkpoint" and resolve_model(ours).is_ours
    r = resolve_model(released)
    assert r.kind == "release_file" and not r.is_ours and r.location == str(released)
    assert resolve_model(tmp_path).kind == "nnunet_folder"
    assert resolve_model("supervised_suprem_unet_2100").kind == "zoo_release"
    with pytest.raises(MissingFileError, match="no-such-model: no such model folder"):
        resolve_model("no-such-model")
