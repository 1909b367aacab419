"""`imprint doctor`: every file x engine here, with parity on the probes, latency, memory and the choice."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from _selfcheck_helpers import install_fake_engine, write_probed_bundle  # noqa: E402

from imprinting.runtime.doctor import DoctorOptions, diagnose, format_report  # noqa: E402

FAST = DoctorOptions(runs=2, warmup=1, isolate=False)


@pytest.fixture
def probed(tmp_path):
    return write_probed_bundle(tmp_path / "bundle")


def test_every_file_gets_a_row_with_parity_latency_memory_and_the_choice(probed):
    report = diagnose(probed, FAST)
    rows = [r for r in report["results"] if r["engine"] == "onnxruntime"]
    assert [(r["file"], r["engine"], r["device"]) for r in rows] == [
        ("extractor_int8.onnx", "onnxruntime", "CPUExecutionProvider"),
        ("extractor_fp32.onnx", "onnxruntime", "CPUExecutionProvider")]
    for r in rows:
        assert r["check"]["passed"] and r["check"]["mean_cosine"] > 0.9999 and r["check"]["probes"] == 6
        assert set(r["latency_ms"]) == {"1", "2"} and all(v > 0 for v in r["latency_ms"].values())
        assert r["peak_rss_mb"] >= r["base_rss_mb"] > 0
    assert report["chosen"]["file"] == "extractor_int8.onnx" and report["bundle"]["probes"] == 6
    # The device block has the fields of benchmarks/reference/*.json, and every CPU flag.
    want = {"cpu", "arch", "cores", "features", "ghz", "governor", "temperature_c", "python", "os"}
    assert want <= set(report["device"]) and report["device"]["int8_kernels"] and report["device"]["versions"]
    assert isinstance(report["device"]["flags"], list)
    assert "the runtime will run: extractor_int8.onnx" in format_report(report)


def test_a_file_that_fails_here_is_shown_and_not_chosen(probed, monkeypatch):
    install_fake_engine(monkeypatch, target="int8")
    report = diagnose(probed, FAST)
    assert [r["check"]["passed"] for r in report["results"] if r["device"] == "CPUExecutionProvider"] == [False, True]
    assert report["chosen"]["file"] == "extractor_fp32.onnx"
    assert " NO " in format_report(report)


def test_the_command_prints_json_measured_in_separate_processes(probed, capsys):
    from imprinting.cli import main

    assert main(["doctor", str(probed), "--json", "--runs", "2", "--threads", "1"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert len([r for r in report["results"] if r["engine"] == "onnxruntime"]) == 2 and report["options"]["threads"] == [1]
    assert report["results"][0]["check"]["passed"] and report["results"][0]["peak_rss_mb"] > 10
    assert main(["doctor", str(probed), "--threads", "one"]) == 1
    assert "--threads takes comma-separated counts" in capsys.readouterr().err


def test_a_bundle_without_probes_is_timed_and_said_so(tiny_bundle):
    report = diagnose(tiny_bundle, FAST)
    assert report["results"][0]["check"] is None and report["chosen"]["file"] == "extractor_fp32.onnx"
    assert "carries no probes" in format_report(report)


def test_openvino_rows_when_it_is_installed(probed):
    pytest.importorskip("openvino")
    rows = [r for r in diagnose(probed, FAST)["results"] if r["engine"] == "openvino"]
    assert [(r["file"], r["device"]) for r in rows] == [("extractor_int8.onnx", "CPU:f32"), ("extractor_fp32.onnx", "CPU:f32")]
    assert all(r["check"]["passed"] for r in rows)
