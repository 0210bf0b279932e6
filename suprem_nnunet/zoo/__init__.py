"""Model zoo: catalog of released checkpoints, local store, converters, direct inference, archives.

Pure-data parts (`catalog`, `store` paths) import without torch; the functions below load their
modules on first use.

  load_released(name_or_path)            -> nn.Module giving the release's logits (sigmoid per class)
  predict_released(model, in, out)       -> the paper's direct-inference protocol, NIfTI out
  resolve_pretrained(name_or_path)       -> PretrainedWeights for fine-tuning (our key names)
  import_checkpoint(file, name)          -> copy a downloaded release into the store (sha256 kept)
  export_model(model_dir, zip) / import_model(zip, name) / model_folder(name)
"""
from importlib import import_module
from typing import Any

from .catalog import CatalogEntry, catalog, entry_names, get_entry
from .store import ZooError, checkpoint_path, import_checkpoint, model_folder, read_index, store_root

_LAZY = {
    "load_released": "release", "resolve_pretrained": "release", "PretrainedWeights": "release",
    "build_adapter": "release",
    "predict_released": "predict", "preprocess_ct": "predict", "predict_masks": "predict",
    "export_model": "archive", "import_model": "archive", "read_model_card": "archive",
    "detect_layout": "convert", "load_matching": "convert", "LoadReport": "convert",
}

__all__ = ["CatalogEntry", "catalog", "entry_names", "get_entry", "ZooError", "checkpoint_path",
           "import_checkpoint", "model_folder", "read_index", "store_root", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
