"""Probability files whose class names are missing or broken: suprem_review score refuses them in one
line naming the file, before anything is written (also when only a later case is broken)."""
from __future__ import annotations

import numpy as np
import pytest

from suprem_nnunet.inference.outputs import write_probabilities
from suprem_nnunet.review.score import run_score

SHAPE = (6, 8, 8)
GEO = {"spacing": [2.0, 2.0, 2.0], "origin": [0.0, 0.0, 0.0], "direction": [1, 0, 0, 0, 1, 0, 0, 0, 1]}


def _p(channels=3):
    p = np.random.default_rng(0).uniform(size=(channels, *SHAPE)).astype(np.float32)
    return p / p.sum(0, keepdims=True)


def _good(folder, case):
    folder.mkdir(parents=True, exist_ok=True)
    write_probabilities(folder / f"{case}.npz", _p(), ["background", "liver", "spleen"], [0, 1, 2], GEO)


def _raw(path, **arrays):
    base = {"probabilities": _p().astype(np.float16), "spacing": np.array(GEO["spacing"]),
            "origin": np.array(GEO["origin"]), "direction": np.array(GEO["direction"], float)}
    base.update(arrays)
    np.savez_compressed(path, **{k: v for k, v in base.items() if v is not None})


BROKEN = {
    "no class names": (lambda f: _raw(f, class_names=None), r"probabilities without class names"),
    "ids, not names": (lambda f: _raw(f, class_names=np.array(["0", "1", "2"])), r"start with 'background'"),
    "pickled names": (lambda f: _raw(f, class_names=np.array(["background", "liver", "spleen"], object)),
                      r"class_names cannot be read as text"),
    "too few names": (lambda f: _raw(f, class_names=np.array(["background", "liver"])),
                      r"2 class_names for 3 probability channels"),
    "only background": (lambda f: _raw(f, probabilities=_p(1).astype(np.float16), class_names=np.array(["background"])),
                        r"no foreground class"),
    "one class twice": (lambda f: _raw(f, class_names=np.array(["background", "kidney_left", "left_kidney"])),
                        r"already in the list"),
    "not a zip": (lambda f: f.write_bytes(b"not a probability file"), r"not a readable probability file"),
}


@pytest.mark.parametrize("problem", sorted(BROKEN))
def test_broken_class_names_one_line_nothing_written(tmp_path, capsys, problem):
    from suprem_nnunet.cli.review import main

    make, message = BROKEN[problem]
    _good(tmp_path / "a", "c1")
    make(tmp_path / "a" / "c2.npz")  # the second case: the first one must not be half-scored
    with pytest.raises(ValueError, match=r"a/c2\.npz: .*" + message):
        run_score([tmp_path / "a"], tmp_path / "out")
    assert not [f for f in (tmp_path / "out").rglob("*") if f.is_file()]
    rc = main(["score", str(tmp_path / "a"), "-o", str(tmp_path / "out2")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1 and "c2.npz" in err[0], err
    assert not [f for f in (tmp_path / "out2").rglob("*") if f.is_file()]
