"""Numbers quoted in the results READMEs (and the main README) are the numbers in the JSON files.

A number that comes from a results file carries a marker right after it, invisible when rendered:
    50,000<!-- json: ogbench/mlp_50k/results.json config.steps -->
(path relative to results/, then a dotted key path; list indices are numbers). The number is
compared with the JSON value at the precision it is written with; a trailing % means the JSON holds
a fraction. Drift between the text and the files fails here."""
import json
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "results"
MARKED = re.compile(r"([-+]?\d[\d,]*(?:\.\d+)?)(%?)(?:\*\*)?<!-- json: (\S+) (\S+) -->")
READMES = sorted(RESULTS.rglob("README.md")) + [REPO / "README.md"]


def lookup(obj, dotted):
    """Follow a dotted key path; a key may itself hold dots (head labels such as L11.2)."""
    parts = dotted.split(".")
    while parts:
        if isinstance(obj, list):
            obj = obj[int(parts.pop(0))]
            continue
        n = next(n for n in range(len(parts), 0, -1) if ".".join(parts[:n]) in obj)   # longest key that exists
        obj, parts = obj[".".join(parts[:n])], parts[n:]
    return obj


def test_every_results_folder_with_json_has_a_readme_with_markers():
    assert RESULTS / "README.md" in READMES
    marked = [r for r in READMES if MARKED.search(r.read_text())]
    assert len(marked) >= 2, marked


@pytest.mark.parametrize("readme", READMES, ids=lambda p: str(p.relative_to(REPO)))
def test_quoted_numbers_match_their_json(readme):
    text = readme.read_text()
    assert text.count("<!-- json:") == len(MARKED.findall(text)), "a marker not right after a number"
    for shown, percent, path, key in MARKED.findall(text):
        value = lookup(json.loads((RESULTS / path).read_text()), key)
        if percent:
            value *= 100
        decimals = len(shown.split(".")[1]) if "." in shown else 0
        number = float(shown.replace(",", ""))
        assert abs(number - value) <= 0.5 * 10 ** -decimals + 1e-9, f"{readme.name}: {shown}{percent} but {path} {key} = {value}"


def test_a_drifted_number_is_caught(tmp_path):
    shown, percent, path, key = MARKED.findall("batch 256, 60,000<!-- json: ogbench/mlp_50k/results.json config.steps --> steps")[0]
    value = lookup(json.loads((RESULTS / path).read_text()), key)
    assert float(shown.replace(",", "")) != value
