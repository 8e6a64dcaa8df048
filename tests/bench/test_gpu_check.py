"""bench/gpu_check.py, the script a lent GPU machine runs, in its CPU `--smoke` mode: it builds
ResNet18 and its fp16 variant, and every section of its report comes back filled and sane."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import gpu_check
from onyx.serve.execution.runtime import CPU


@pytest.mark.slow
def test_smoke_mode_reports_every_section(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "report.json"
    report = gpu_check.main(["--smoke", "--seconds", "0.05", "--out", str(out)])
    assert json.loads(out.read_text())["settings"]["device"] == "cpu"
    providers = report["providers"]
    assert providers["chosen"] == [CPU]
    for precision in gpu_check.PRECISIONS:
        assert providers["nodes_by_provider"][precision][CPU] > 0  # ORT's profiler saw them run
    assert report["served"]["providers_by_version"] == {1: [CPU], 2: [CPU]}
    fp32, fp16 = report["parity"]["fp32"], report["parity"]["fp16"]
    assert fp32["max_abs_diff"] == 0.0 and fp32["within_tolerance"]  # the same file, the same EP
    assert 0.0 < fp16["max_abs_diff"] < gpu_check.FP16_ATOL and fp16["within_tolerance"]
    assert fp16["top1_agreement"] == 1.0
    for key, figures in report["served"]["rates"].items():
        assert figures["inputs_per_s"] > 0 and figures["errors"] == 0, key
    for figures in report["served_vs_in_process"].values():
        assert figures["io_binding"] == "off" and figures["ratio"] > 0
    for mode in ("HEURISTIC", "EXHAUSTIVE"):
        search = report["cudnn_conv_algo_search"][mode]
        assert sorted(search["first_run_ms_by_batch"]) == [1, 2, 3, 4]
        assert search["steady_inputs_per_s"] > 0
    printed = capsys.readouterr().out
    assert "parity fp16 on CPUExecutionProvider" in printed and "IO binding fp32" in printed
