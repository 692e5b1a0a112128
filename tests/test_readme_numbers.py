"""A measured value in a page's prose must come from JSON through a {{...}} template, never be typed.

What counts as a typed measured value, in the prose of every *.src.md (code blocks, inline code,
templates, comments and link targets removed): a decimal (0.018), a percentage (48%) or a ratio
written with x (423x). Integers (seeds, steps, layer numbers, dates) and versions (1.1.0) do not
count. Allowed without a template: the facts and settings in QUOTED (the paper's and other
published numbers, the confidence level, chance, thresholds the protocol fixes). Values typed
before this test existed are listed per page in UNTEMPLATED; the list may only shrink: a new typed
number fails, and so does a listed one that is gone (remove it)."""
import re
from collections import Counter

import pytest

import report

NUMBER = re.compile(r"(?<![\w.\-/])(?:\d+\.\d+|\d+(?:\.\d+)?%|\d[\d,]*(?:\.\d+)?x)(?![\w/]|\.\d)")

QUOTED = {
    "95%": "confidence level of an interval",
    "0.5": "chance per-bit error",
    "0.9": "the bridge's memorisation criterion (a setting)",
    "0.1": "the heads section's solved threshold (a setting)",
    "3.3": "the learning-rate ladder's step (a setting)",
    "97.33": "the paper: OGBench scene task1, pretrained layer",
    "87%": "the paper's post: OGBench re-initialised, derived",
    "93.0": "OGBench's published GCIQL reference",
    "74%": "OGBench's published GCIQL reference, cube-double",
    "60.22": "the paper: OGBench cube-double, pretrained layer",
    "0.89": "the paper: OGBench cube-double, re-initialised",
    "76.2": "the paper: Walker2d, 6-layer slice",
    "0.8": "the paper: Walker2d spread",
    "74.0": "Decision Transformer's published Walker2d score",
    "1.66": "the paper: the 5-layer slice above the 6-layer one",
    "0.85": "the speed issue's goal: fraction of the bf16 matmul peak (a target, not a measurement)",
    "5.9": "Gemma 4 31B's slice 24-29 in bf16: the paper's 2.93B frozen weights at 2 bytes (arithmetic)",
    "3%": "tests/test_dtype.py's bound on the mean bf16-fp32 output difference per token (a threshold)",
    "10%": "tests/test_dtype.py's bound on the largest bf16-fp32 output difference per token (a threshold)",
    "5%": "tests/test_dtype.py's bound on the bf16 calibration against the fp32 one (a threshold)",
}

# typed before this test; to be replaced by templates (page -> the values, space-separated)
UNTEMPLATED = {
    "results/README.src.md": (
        "0% 0.0000 0.0001 0.002 0.0030 0.01 0.0217 0.04 0.05 0.05 0.11 0.11 0.11 0.13 0.13 0.135 0.15 0.156 "
        "0.164 0.20 0.25 0.2566 0.30 0.33 0.3470 0.36 0.37 0.37 0.371 0.38 0.4194 0.422 0.459 0.463 0.469 "
        "0.47 0.474 0.475 0.485 0.54x 0.6 0.60 0.68 0.699 0.844 0.845 0.865 0.877 0.882 0.909 1.2 1.2 1.3 "
        "1.3 1.5x 1.9 2.1x 2.25 2.30 2.30 2.5 2.7 2.7 2.8 2.9 3.4 3.5 3.6 4.3 6.3 8.4 8.4 8.5 8.6 10.9 10.9 "
        "10.9 31.87 31.9 31.9 91.7 98.0 99.1 527x"),
    "results/archive/ogbench_5k_batch64/README.src.md": (
        "0.00 " * 19 + "0.005 0.01 0.02 0.044 0.055 0.065 0.080 0.085 0.088 0.090 0.11 0.120 0.140 0.142 0.18 "
        "0.181 0.21 0.222 0.24 0.29 0.30 0.32 0.32 0.33 0.364 0.464 0.59 0.99 1.11 1.22 2.5 7.4 12.5 80x"),
    "results/ogbench/README.src.md": (
        "0% 0% 0% 0% 0% 0.00 0.005 0.01 0.022 0.023 0.025 0.030 0.04 0.044 0.055 0.064 0.08 0.12 0.2 0.30 "
        "0.32 0.34 0.39 0.46 0.53 0.62 0.63 0.68 0.68 0.69 0.80 0.87 0.91 0.99 1% 1.2 1.2 1.3 1.5 1.7x 2.2 "
        "2.4 2.4x 3.2x 4.7x 28% 44% 48% 68% 68% 75% 82% 82% 88% 88%"),
}


def prose(text):
    """A source page without what is not prose: code, templates, comments, link targets."""
    for pattern in (r"```.*?```", r"`[^`]*`", r"\{\{.*?\}\}", r"<!--.*?-->", r"\]\([^)]*\)"):
        text = re.sub(pattern, "", text, flags=re.S)
    return text


def typed_numbers(text):
    return Counter(n for n in NUMBER.findall(prose(text)) if n not in QUOTED)


def test_the_rule_finds_typed_values_and_only_those():
    text = ("Error 0.018 at 16 pairs (48%, 423x); {{mqar a.b .3f}} `--lr 3e-2 0.25` ogbench 1.1.0, seed 42, "
            "2026, [x](a/0.5.md), chance 0.5.\n```\npython x.py --scale 0.7\n```\n<!-- 0.3 -->")
    assert typed_numbers(text) == Counter({"0.018": 1, "48%": 1, "423x": 1})


@pytest.mark.parametrize("src", report.sources(), ids=lambda p: str(p.relative_to(report.REPO)))
def test_no_measured_value_is_typed(src):
    page = str(src.relative_to(report.REPO))
    found = typed_numbers(src.read_text())
    known = Counter(UNTEMPLATED.get(page, "").split())
    new = found - known
    assert not new, f"{page}: typed measured values {sorted(new)}: fill them from JSON with {{{{file key format}}}}"
    gone = known - found
    assert not gone, f"{page}: {sorted(gone)} no longer typed: remove them from UNTEMPLATED"
