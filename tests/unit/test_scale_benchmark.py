"""The scale benchmark's report: growth ratios and the verdict come from the measured rows."""
import os

from suprem_nnunet.benchmarks.scale import _tree_rss_kib, format_report


def _row(n, self_mib, tree_mib):
    return {"cases": n, "fingerprinted_cases": min(n, 300), "synth_s_per_case": 0.1, "plan_preprocess_s_per_case": 0.3,
            "seconds_per_batch": 0.03, "peak_rss_self_mib": self_mib, "peak_rss_largest_child_mib": self_mib,
            "peak_tree_mib": tree_mib}


def test_report_says_whether_peak_memory_grows():
    flat = {"rows": [_row(100, 800.0, 1300.0), _row(500, 810.0, 1310.0)], "cases_ratio": 5.0,
            "growth": {"peak_rss_self_mib": 1.013, "peak_rss_largest_child_mib": 1.013, "peak_tree_mib": 1.008}}
    lines = format_report(flat)
    assert len(lines) == 4 and lines[-1].endswith("does not grow with the number of cases")
    grown = dict(flat, growth={**flat["growth"], "peak_tree_mib": 3.1})
    assert format_report(grown)[-1].endswith("GROWS with the number of cases")


def test_process_tree_memory_is_measured():
    assert _tree_rss_kib(os.getpid()) > 10_000  # this Python process alone holds more than 10 MB
