"""A measured value in a page's prose must come from JSON through a {{...}} template, never be typed.

What counts as a typed measured value, in the prose of every *.src.md and of every other page
written by hand (a *.md with no source beside it: docs, archives) (code blocks, inline code,
templates, comments and link targets removed): a decimal (0.018), a percentage (48%) or a ratio
written with x (423x). Integers (seeds, steps, layer numbers, dates) and versions (1.1.0) do not
count. Allowed without a template: the facts and settings in QUOTED (the paper's and other
published numbers, the confidence level, chance, thresholds the protocol fixes), and in QUOTED_ON
those allowed on one page only. Values typed
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
    "0.0505": "the paper: AR, frozen 31B slice, best-checkpoint error at L30",
    "0.4395": "the paper: AR, 6.36M from-scratch transformer, best-checkpoint error at L30",
    "0.01": "the paper's AR threshold (error below 0.01 within about 2k steps; a threshold, not a measurement)",
    "1%": "the same threshold as a percentage",
    "0.85": "the speed issue's goal: fraction of the bf16 matmul peak (a target, not a measurement)",
    "2605.00333": "the paper's arXiv identifier",
    "2604.01833": "Luo & Shen's arXiv identifier",
}

# quoted facts allowed on one page only (the paper's tables, published anchors, a test's bounds): a
# value quoted on one page is not thereby allowed as a measurement typed on another
QUOTED_ON = {
    "results/README.src.md": {
        "0.0000": "the paper's Table B.6: Rule 90, frozen Gemma 4 31B layers 24-29 at L10",
        "0.0001": "the paper's Table B.6: Rule 90, frozen Gemma 4 31B layers 24-29 at L20",
        "0.2566": "the paper's Table B.6: Rule 90, frozen Gemma 4 31B layers 24-29 at L30",
        "0.3470": "the paper's Table B.6: Rule 90, frozen Gemma 4 31B layers 24-29 at L40",
        "0.4194": "the paper's Table B.6: Rule 90, frozen Gemma 4 31B layers 24-29 at L60",
        "0.0030": "the paper's Table B.6: Rule 90, from-scratch transformer at L10",
        "0.0217": "the paper's Table B.6: Rule 90, from-scratch transformer at L20",
        "0.422": "the paper's Table B.6: Rule 90, frozen random GPT-2 at L10",
        "0.459": "the paper's Table B.6: Rule 90, frozen random GPT-2 at L20",
        "0.474": "the paper's Table B.6: Rule 90, frozen random GPT-2 at L30",
        "98.0": "FPT (Lu et al. 2021), published MNIST accuracy: frozen pretrained GPT-2",
        "91.7": "FPT (Lu et al. 2021), published MNIST accuracy: frozen random-init GPT-2",
        "99.1": "FPT (Lu et al. 2021), published MNIST accuracy: fully trained transformer",
        "2.30": "ln 10, the cross-entropy of a uniform guess over 10 classes (a constant)",
    },
    "docs/substrate.src.md": {
        "0.4": "a rule of thumb for where a slice starts (a setting)",
        "100x": "the threshold that calls a dimension massive (a setting)",
        "0.02": "the random-init control's weight std (a setting)",
    },
    "docs/paper-protocol.md": {v: "the paper's and its post's numbers, and published references, quoted" for v in (
        "148x 492x 217x 8.7x 0.0000 0.0001 0.2566 0.1638 0.74 10.44 2% 0.99 0.005 1.5x 0.05 0.0013 0.013 63.3 "
        "10.0 46.7 0.039 0.37 98.0 91.7 99.1 0.02").split()},
    "data/paper/PROVENANCE.md": {"0.05": "the paper's impact threshold", "0.001345": "the paper's hypergeometric P"},
    "docs/gpu.src.md": {
        "5.9": "Gemma 4 31B's slice 24-29 in bf16: the paper's 2.93B frozen weights at 2 bytes (arithmetic)",
        "3%": "tests/test_dtype.py's bound on the mean bf16-fp32 output difference per token (a threshold)",
        "10%": "tests/test_dtype.py's bound on the largest bf16-fp32 output difference per token (a threshold)",
        "5%": "tests/test_dtype.py's bound on the bf16 calibration against the fp32 one (a threshold)",
    },
}

# typed before this test; to be replaced by templates (page -> the values, space-separated)
UNTEMPLATED = {
    "results/archive/README.md": "0% 0.434 0.448 0.68",
    "results/archive/walker2d_standin_smoke/README.md": "0.08 0.14 0.190 0.27 0.67 0.733 0.91x 1.16 1.21 214.1 245.5 "
                                                       "277.2 282.5 288.8 380.5 48.5 5.78 50.4 504.4 59.7 6.06 65.9",
}


def prose(text):
    """A source page without what is not prose: code, templates, comments, link targets."""
    for pattern in (r"```.*?```", r"`[^`]*`", r"\{\{.*?\}\}", r"<!--.*?-->", r"\]\([^)]*\)"):
        text = re.sub(pattern, "", text, flags=re.S)
    return text


def typed_numbers(text, page=None):
    allowed = {**QUOTED, **QUOTED_ON.get(page, {})}
    return Counter(n for n in NUMBER.findall(prose(text)) if n not in allowed)


def test_the_rule_finds_typed_values_and_only_those():
    text = ("Error 0.018 at 16 pairs (48%, 423x); {{mqar a.b .3f}} `--lr 3e-2 0.25` ogbench 1.1.0, seed 42, "
            "2026, [x](a/0.5.md), chance 0.5.\n```\npython x.py --scale 0.7\n```\n<!-- 0.3 -->")
    assert typed_numbers(text) == Counter({"0.018": 1, "48%": 1, "423x": 1})


def hand_written(root=report.REPO):
    """Pages with no source to render them: every tracked *.md but the sources and what they render to
    (git's list, so an untracked run folder or environment is not read)."""
    import subprocess
    tracked = subprocess.run(["git", "ls-files", "*.md"], cwd=root, capture_output=True, text=True, check=True).stdout
    rendered = {p.with_name(p.name[:-len(".src.md")] + ".md") for p in report.sources(root)}
    return sorted(p for p in (root / f for f in tracked.split()) if not p.name.endswith(".src.md") and p not in rendered)


@pytest.mark.parametrize("src", report.sources() + hand_written(), ids=lambda p: str(p.relative_to(report.REPO)))
def test_no_measured_value_is_typed(src):
    page = str(src.relative_to(report.REPO))
    found = typed_numbers(src.read_text(), page)
    known = Counter(UNTEMPLATED.get(page, "").split())
    new = found - known
    assert not new, f"{page}: typed measured values {sorted(new)}: fill them from JSON with {{{{file key format}}}}"
    gone = known - found
    assert not gone, f"{page}: {sorted(gone)} no longer typed: remove them from UNTEMPLATED"


def test_a_value_quoted_on_one_page_is_typed_on_another():
    page, value = "results/README.src.md", "0.2566"
    assert typed_numbers(f"the paper's {value}", page) == Counter()
    assert typed_numbers(f"measured {value}", "docs/tasks.src.md") == Counter({value: 1})


def test_the_demos_two_calibrated_scales_are_one_float32():
    """The README says the demo's pretrained run and the suite's seed 0 differ for a reason other than
    their calibrated input scales, since the two round to the same float32 (the interface's in_scale
    buffer); this holds it to the committed files."""
    import json
    import numpy as np
    scales = [json.loads((report.RESULTS / f).read_text())["body"]["input_scale"]
              for f in ("demo/pretrained/results.json", "token_suite/mqar/runs/mqar__pretrained__0/results.json")]
    assert scales[0] != scales[1] and np.float32(scales[0]) == np.float32(scales[1])
