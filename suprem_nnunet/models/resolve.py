"""One resolver for a model given as a path, a folder or a zoo name: `resolve_model(spec)` says what
it is (`ResolvedModel.kind`), deciding by the files' structure and the zoo's index and catalog.

Kinds:
  nnunet_folder      a model folder of ours (<Trainer>__<plans>__<configuration>, or a fold folder)
  nnunet_checkpoint  a training checkpoint file of ours (network_weights + init_args with plans)
  zoo_model          an exported model imported into the zoo store (a model folder of ours)
  release_file       a checkpoint file in a released layout (SuPreM, MONAI, ...: weights only)
  zoo_release        a released checkpoint by zoo name (imported, or in the catalog to be imported)
Our models (the first three) run through nnU-Net's predictor and carry their plans; released
weights need the direct-inference protocol and are planned for anew when fine-tuned.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional, Union

from ..errors import MissingFileError
from ..networks.checkpoint import load_checkpoint
from ..zoo import catalog, read_index
from ..zoo.store import model_folder

OURS = ("nnunet_folder", "nnunet_checkpoint", "zoo_model")
RELEASED = ("release_file", "zoo_release")


@dataclass(frozen=True)
class ResolvedModel:
    """What a model spec names. `path`: the folder or file (None for a zoo release, read by name);
    `name`: the zoo name (None for a path)."""

    kind: str
    spec: str
    path: Optional[Path] = None
    name: Optional[str] = None

    @property
    def is_ours(self) -> bool:
        """A model of ours (plans, dataset.json and an nnU-Net checkpoint), read by read_trained_model."""
        return self.kind in OURS

    @property
    def location(self) -> Union[Path, str]:
        """The folder or file of one of our models, else the file or zoo name the zoo's loaders read."""
        if self.path is not None:
            return self.path if self.is_ours else str(self.path)
        return str(self.name)


def is_training_checkpoint(ckpt: Any) -> bool:
    """An nnU-Net / suprem-nnunet training checkpoint: network weights and the init arguments
    (plans, dataset.json, configuration) that rebuild its network."""
    if not isinstance(ckpt, Mapping) or "network_weights" not in ckpt:
        return False
    init = ckpt.get("init_args")
    return (isinstance(init, Mapping) and isinstance(init.get("plans"), Mapping)
            and isinstance(init.get("dataset_json"), Mapping) and "configuration" in init)


def resolve_model(spec: Union[str, Path]) -> ResolvedModel:
    """A folder, a checkpoint file (ours or a released layout), an imported exported model's zoo
    name, or a released checkpoint's zoo name; MissingFileError (one line) for anything else. A
    checkpoint file that cannot be read raises its reading error here."""
    p = Path(spec)
    if p.is_dir():
        return ResolvedModel("nnunet_folder", str(spec), p)
    if p.is_file():
        kind = "nnunet_checkpoint" if is_training_checkpoint(load_checkpoint(p, allow_numpy=True)) else "release_file"
        return ResolvedModel(kind, str(spec), p)
    name = str(spec)
    index = read_index()
    if name in index["models"]:
        return ResolvedModel("zoo_model", name, model_folder(name), name)
    if name in index["checkpoints"] or name in catalog():
        return ResolvedModel("zoo_release", name, None, name)
    imported = sorted(index["models"]) + sorted(index["checkpoints"])
    raise MissingFileError(f"{spec}: no such model folder, checkpoint file or zoo name "
                           f"(imported: {', '.join(imported) or 'none'})")
