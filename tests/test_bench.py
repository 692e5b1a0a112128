"""bench.py prints JSON: the slice's speed against a matmul peak on its own shapes, and which dtype is faster."""
import json
import subprocess
import sys

import pytest

import runs
from runs import REPO


def test_bench_compares_dtypes_on_the_slices_shapes(gemma3_ckpt):
    out = subprocess.run([sys.executable, "bench.py", "--model", str(gemma3_ckpt[0]), "--layers", "2-3", "--skip-load",
                          "--compare-dtypes", "--iters", "1", "--batch-size", "2", "--seq-len", "8", "--device", "cpu"],
                         cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    r = json.loads(out.stdout)
    # q/k/v/o and the MLP's matrices of the tiny config, each timed at 16 tokens
    assert len(r["matmul_tflops_per_shape"]) >= 3 and all(k.startswith("16x") for k in r["matmul_tflops_per_shape"])
    assert r["matmul_peak_tflops"] == max(r["matmul_tflops_per_shape"].values())
    cmp = r["dtype_comparison"]
    assert set(cmp["fwd_bwd_tokens_per_s"]) == {"fp32", "bf16"} and cmp["faster"] in ("fp32", "bf16")
    assert cmp["speedup"] >= 1 and f"--dtype {cmp['faster']}" in cmp["advice"]


def test_bench_reports_each_dtype_against_its_own_peak_and_cuts_a_slow_one(gemma3_ckpt):
    base = [sys.executable, "bench.py", "--model", str(gemma3_ckpt[0]), "--layers", "2-3", "--skip-load", "--compare-dtypes",
            "--iters", "2", "--batch-size", "2", "--seq-len", "8", "--device", "cpu"]
    out = subprocess.run(base, cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    r = json.loads(out.stdout)
    own = r["dtype_comparison"]["fraction_of_own_peak"]
    assert set(own) == {"fp32", "bf16"}
    for d, other in ((r["dtype"], r), (r["other_dtype"]["dtype"], r["other_dtype"])):
        assert own[d] == other["fwd_bwd_fraction_of_matmul_peak"]
        assert own[d] == pytest.approx(other["fwd_bwd_tflops"] / other["matmul_peak_tflops"])   # its own dtype's peak
        assert f"{d}: slice forward+backward at" in out.stderr
    assert isinstance(r["load_average"], list) and r["threads"] >= 1
    # which CPU, and whether it has bf16 matrix units: the dtype advice holds for that kind of CPU only
    assert r["cpu"] == runs.cpu_info()
    # a budget no step fits: the peak is still measured, the slice is not timed, and the JSON says why
    cut = subprocess.run(base + ["--budget-s", "1e-9"], cwd=REPO, capture_output=True, text=True)
    assert cut.returncode == 0, cut.stderr[-2000:]
    r = json.loads(cut.stdout)
    assert r["timed_iters"] == 0 and "fwd_bwd_tokens_per_s" not in r and "iterations fit --budget-s" in r["cut"]
    assert r["matmul_peak_tflops"] > 0 and set(r["dtype_comparison"]["cut"]) == {"fp32", "bf16"}


def test_cpu_info_reads_the_bf16_units_and_tells_none_from_unknown():
    amx = "processor\t: 0\nmodel name\t: Xeon X\nflags\t\t: fpu avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n"
    assert runs.parse_cpuinfo(amx) == {"model": "Xeon X", "bf16_units": ["amx_bf16", "avx512_bf16"]}
    avx2 = "model name\t: EPYC\nflags\t\t: fpu avx2 fma\n"
    assert runs.parse_cpuinfo(avx2) == {"model": "EPYC", "bf16_units": []}
    arm = "processor\t: 0\nFeatures\t: fp asimd bf16\n"        # no x86 flags line: unknown
    assert runs.parse_cpuinfo(arm)["bf16_units"] is None
