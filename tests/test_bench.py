"""bench.py prints JSON: the slice's speed against a matmul peak on its own shapes, and which dtype is faster."""
import json
import subprocess
import sys

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
