"""The demo's code path at smoke size: both arms trained, predicted, evaluated, reported."""
import re

import pytest

from suprem_nnunet.demo import NOVEL, SHARED, DemoConfig, run_demo

pytestmark = pytest.mark.slow


def test_quick_demo_writes_report_and_figures(tmp_path, monkeypatch):
    for var in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):  # restored after the test
        monkeypatch.setenv(var, str(tmp_path / "overridden_by_the_demo"))
    report = run_demo(DemoConfig.quick(tmp_path / "demo"))
    text = report.read_text()
    for c in SHARED:
        assert re.search(rf"^\| {c} \| \d\.\d{{3}} ± \d\.\d{{3}} \| \d\.\d{{3}} ± ", text, re.M), c
    for c in NOVEL:
        assert f"| {c} * |" in text
    assert "**mean shared**" in text and "**mean novel**" in text and "| **total** |" in text
    for png in ("dsc_per_class.png", "prediction_slice.png"):
        data = (report.parent / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    assert (report.parent / "predictions" / "fine-tuned" / "metrics.csv").is_file()
    assert (report.parent / "data" / "nnUNet_raw" / "Dataset902_DemoTarget" / "annotated_classes.json").is_file()
