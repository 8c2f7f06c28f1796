"""``samuel bench generate|codec``: the structure of what they print, at a tiny size (no timing bounds)."""
from __future__ import annotations

import json
import math

import pytest
import torch

from samuel import bench, cli
from samuel.generate import STAGES


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _positive(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x > 0


def test_bench_generate_reports_every_stage_with_a_random_model(tmp_path, monkeypatch):
    monkeypatch.setenv("SAMUEL_RUNS", str(tmp_path / "runs"))  # no checkpoint there
    r = bench.bench_generate(seconds=3.0, profile="smoke", threads=1, steps=2)
    assert set(r["stages"]) == set(STAGES)
    for k in ("load", "encode", "sample", "decode", "write", "mix"):
        assert _positive(r["stages"][k]), (k, r["stages"][k])
    assert r["total_s"] == pytest.approx(sum(r["stages"].values()))
    assert _positive(r["realtime_factor"]) and r["audio_seconds"] == pytest.approx(3.0)
    assert "randomly initialised smoke-size model" in r["checkpoint"]
    assert r["threads"] == 1 and r["steps"] == 2 and r["windows"] >= 1
    assert isinstance(r["meets"], bool) and r["target_total_s"] == bench.GENERATE_TARGET_S
    text = bench.format_generate(r)
    for k in STAGES:
        assert any(line.split()[0] == k for line in text.splitlines()[2:]), k
    assert "total" in text and "randomly initialised" in text
    assert torch.get_num_threads() == 1  # restored


def test_bench_generate_json_from_the_command_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SAMUEL_RUNS", str(tmp_path / "runs"))
    rc = cli.main(["bench", "generate", "--profile", "smoke", "--seconds", "2", "--threads", "1", "--json"])
    assert rc in (0, None)
    r = json.loads(capsys.readouterr().out)
    assert set(r["stages"]) == set(STAGES) and all(_positive(v) for v in r["stages"].values())
    assert _positive(r["total_s"]) and r["profile"] == "smoke"


def test_bench_generate_rejects_a_non_positive_length():
    with pytest.raises(ValueError, match="positive vocal length"):
        bench.bench_generate(seconds=0.0, profile="smoke")


def test_bench_codec_json_has_positive_timings_and_metrics(capsys):
    rc = cli.main(["bench", "codec", "--seconds", "2", "--json"])
    assert rc in (0, None)
    r = json.loads(capsys.readouterr().out)
    for k in ("encode_seconds", "decode_seconds", "audio_seconds", "realtime_factor",
              "spectral_convergence", "log_spectral_distance_db"):
        assert _positive(r[k]), (k, r[k])
    assert -1.0 <= r["chroma_correlation"] <= 1.0 and -1.0 <= r["onset_correlation"] <= 1.0
    assert r["codec"] == "offline" and r["latent_shape"][0] == 64


def test_train_step_child_runs_float32_and_bf16_steps():
    """The model benchmark's training step, in float32 and under CPU bf16 autocast (its second
    line), on the smoke model: both run and report a positive time and peak."""
    for bf16 in (False, True):
        r = bench._train_step_child("smoke", 1, {}, bf16=bf16)
        assert r["train_step_s"] > 0 and r["train_peak_rss_gb"] > 0, r
        # float32 also counts the step's work and this CPU's matrix-product rate (the floor line)
        assert (_positive(r.get("train_step_gflop")) and _positive(r.get("matmul_gflops"))) == (not bf16), r


def test_step_gflop_counts_products_and_the_cpu_attention_kernel_both_ways():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(64, 32, generator=g), torch.randn(32, 16, generator=g)
    assert bench.step_gflop(lambda: a @ b) == pytest.approx(2 * 64 * 32 * 16 / 1e9)
    q = torch.randn(2, 3, 40, 8, generator=g, requires_grad=True)

    def attention():
        torch.nn.functional.scaled_dot_product_attention(q, q, q).sum().backward()

    # forward: QKᵀ and PV; backward: the scores again, then dV, dP, dQ, dK (2·B·H·L·L·D each)
    assert bench.step_gflop(attention) == pytest.approx(7 * 2 * 2 * 3 * 40 * 40 * 8 / 1e9)


def test_the_floor_line_divides_the_work_by_the_matrix_product_rate():
    r = {"train_step_gflop": 300.0, "matmul_gflops": 150.0, "train_step_floor_s": 2.0, "train_step_s": 4.0}
    text = "\n".join(bench.work_lines(r))
    assert "300 GFLOP" in text and "150 GFLOP/s" in text and "under 2.00 s" in text and "50 %" in text
    assert bench.work_lines({"train_step_s": 4.0}) == []


@pytest.mark.parametrize("capability, measured", [("AVX512", True), ("AVX2", False), ("DEFAULT", False)])
def test_the_cpu_bf16_line_is_measured_only_with_avx512(monkeypatch, capability, measured):
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
    reason = bench.cpu_bf16_skip_reason()
    assert (reason is None) == measured
    if not measured:
        assert capability in reason and "AVX-512" in reason
        r = {"profile": "paper", "threads": 2, "frames": 1024, "parameters": 1, "forward_ms_b1": 1.0,
             "forward_ms_b16": 2.0, "batch_size": 16, "train_step_s": 1.0, "train_peak_rss_gb": 1.0,
             "train_step_bf16_note": reason, "cfg_step_ms": 1.0, "ancestral_s": 1.0,
             "ancestral_note": "n", "fast_s": 0.1, "fast_sampler": "f", "fast_speedup": 10.0,
             "targets": bench.TARGETS, "meets": {k: True for k in bench.TARGETS}}
        assert f"bf16 autocast  {reason}" in bench.format_model(r)


def test_every_cpu_benchmark_names_its_machine(capsys):
    m = bench.machine()
    assert m["cpu"] and m["vector_unit"] == str(torch.backends.cpu.get_cpu_capability())
    assert m["cpus"] >= 1 and m["torch"] == torch.__version__
    line = bench.machine_line({"machine": m})
    assert line == [f"  machine: {m['cpu']}, {m['vector_unit']}, {m['cpus']} CPUs, torch {m['torch']}"]
    assert bench.machine_line({}) == []
    r = bench.bench_codec(seconds=2.0)
    assert r["machine"] == m and bench.format_codec(r).endswith(line[0])
