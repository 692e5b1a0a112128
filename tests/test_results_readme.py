"""The READMEs' numbers and tables are rendered from the results JSON (report.py), never typed.

Every README.md that quotes results has a README.src.md beside it in which each number is a
reference into a JSON file under results/. These tests re-render every source and compare: a
README edited by hand, or a JSON changed without `python report.py`, fails here."""
import json
import shutil
import subprocess
import sys

import pytest

import report
import tables
from runs import UserError

REPO = report.REPO
SOURCES = report.sources()


def test_the_results_readmes_are_generated():
    names = {str(s.relative_to(REPO)) for s in SOURCES}
    assert {"README.src.md", "results/README.src.md", "results/ogbench/README.src.md"} <= names
    for readme in [REPO / "README.md", *REPO.joinpath("results").rglob("README.md")]:
        assert "<!-- json:" not in readme.read_text(), readme          # the old hand-placed markers are gone


@pytest.mark.parametrize("src", SOURCES, ids=lambda p: str(p.relative_to(REPO)))
def test_readme_is_what_its_source_renders_to(src):
    assert report.render(src) == report.target(src).read_text(), f"run python report.py ({src.relative_to(REPO)})"


def test_a_drifted_number_is_caught(tmp_path):
    results = tmp_path / "results"
    shutil.copytree(REPO / "results" / "ogbench" / "mlp_50k", results / "ogbench" / "mlp_50k")
    src = tmp_path / "README.src.md"
    src.write_text("<!-- alias mlp = ogbench/mlp_50k/results.json -->\n# x\n{{mlp config.steps ,.0f}} steps, "
                   "{{ogbench/mlp_50k/results.json config.batch_size .0f}} per batch\n")
    before = report.render(src, results)
    assert before == "# x\n50,000 steps, 256 per batch\n"
    f = results / "ogbench" / "mlp_50k" / "results.json"
    r = json.loads(f.read_text())
    r["config"]["steps"] = 60000
    f.write_text(json.dumps(r))
    assert report.render(src, results) != before


@pytest.mark.parametrize("content,message", [
    (None, "no such file"),
    ("{not json", "not valid JSON"),
    ('{"config": {}}', "no key"),
])
def test_missing_or_malformed_json_is_one_line(tmp_path, content, message):
    results = tmp_path / "results"
    results.mkdir()
    if content is not None:
        (results / "r.json").write_text(content)
    src = tmp_path / "README.src.md"
    src.write_text("# x\n\nsteps {{r.json config.steps .0f}}\n")
    with pytest.raises(UserError, match=message) as e:
        report.render(src, results)
    assert "\n" not in str(e.value) and "README.src.md:3" in str(e.value)


def test_tables_render_a_sweep_summary():
    s = tables.load(REPO / "results" / "images" / "summary.json")
    table = tables.summary_tables(s)
    assert all(f"| pretrained - {c} |" in table for c in s["differences_to_pretrained"])
    assert f"{s['conditions']['pretrained']['accuracy']['test']['mean']:.4f}" in table


def test_ratio_table_shows_the_papers_mean_of_ratios_where_recorded():
    """A token suite's ratio table: a summary written before the arithmetic mean of per-seed ratios was
    recorded renders as it did; one that records it (stats.error_ratios now) shows it, flagged as a
    lower bound where a seed's zero error was bounded, and says in the header what it is."""
    import stats
    suite = REPO / "results" / "token_suite" / "mqar"
    s = tables.load(suite / "summary.json")
    units = tables.load(suite / "sweep.json")["protocol"]["eval_samples_final"]   # the sequences scored per seed
    old = tables.summary_tables(s)
    assert "paper's statistic" not in old
    for c, per_len in s["ratios_to_pretrained"].items():
        for L in per_len:
            per_len[L] = stats.error_ratios(s["conditions"][c]["errors"][L]["values"],
                                            s["conditions"]["pretrained"]["errors"][L]["values"], units)
    new = tables.summary_tables(s)
    assert "arithmetic mean of per-seed ratios (the paper's statistic)" in new
    e = s["ratios_to_pretrained"]["random-init"]["8"]
    assert tables.ratio_cell(e).endswith(f"; {'>= ' if e['mean_of_ratios_lower_bound'] else ''}{e['mean_of_ratios']:.1f}")
    assert f"{e['mean_of_ratios']:.1f}" in new


def test_check_mode_names_a_stale_readme(tmp_path):
    out = subprocess.run([sys.executable, "report.py", "--check"], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_links_in_the_pages_point_at_files_the_repo_has():
    import re
    pages = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), *sorted((REPO / "results").rglob("README.md"))]
    missing = []
    for page in pages:
        for target in re.findall(r"\]\(([^)#\s]+)\)", page.read_text()):
            if "://" not in target and not (page.parent / target).exists():
                missing.append(f"{page.relative_to(REPO)} -> {target}")
    assert not missing, missing
    assert "shared/" not in (REPO / "README.md").read_text()        # a clone has no ../shared


def test_committed_json_holds_no_absolute_paths_of_the_machine_that_ran():
    import re
    absolute = re.compile(r'"(/(?:work|root|home|tmp|Users|mnt|scratch)/[^"]*)"')
    found = []
    for f in sorted((REPO / "results").rglob("*.json")):
        found += [f"{f.relative_to(REPO)}: {m}" for m in absolute.findall(f.read_text())[:1]]
    assert not found, found[:5]


def test_portable_paths():
    from runs import portable
    assert portable(REPO / "results" / "x.json") == "results/x.json"
    assert portable("~/.ogbench/data") == "~/.ogbench/data"
    assert portable(None) is None


def test_success_table_from_a_comparison():
    import tables
    cmp = {"runs": {"a": {"evaluations": [{"step": 100, "success_rate": 0.5, "ci95": [0.1, 0.9]}]},
                    "b": {"evaluations": [{"step": 100, "success_rate": 0.0, "ci95": [0.0, 0.6]},
                                          {"step": 200, "success_rate": 0.25, "ci95": [0.0, 0.8]}]}},
           "versus_reference": {"b": {"reference": "a", "steps": [100], "episodes": 4, "reference_success": 0.5,
                                      "success": 0.0, "reference_only": 2, "other_only": 0, "mcnemar_exact_p": 0.5}}}
    t = tables.success_table(cmp).splitlines()
    assert t[2] == "| 100 | 0.50 [0.10, 0.90] | 0.00 [0.00, 0.60] |" and t[3] == "| 200 | - | 0.25 [0.00, 0.80] |"
    assert t[-1] == "| `b` | `a` | 100 | 4 | 0.50 / 0.00 | 2 / 0 | 0.500 |"


def test_bridge_table_from_a_comparison():
    import tables
    run = {"seed": 0, "bridge_layers": [8, 9, 10, 11], "bridge_steps_run": 1200, "bridge_train_accuracy": 0.5,
           "bridge_reached": False, "bridge_until_accuracy": 0.9, "frobenius_change": {"8": 0.2, "9": 0.05}, "regime_before": {"stream_change": 10.9},
           "regime_after": {"stream_change": 8.44}, "test_accuracy": 0.8, "unbridged_test_accuracy": 0.85, "difference": -0.05}
    d = lambda m: {"mean": m, "ci95": [m - 0.01, m + 0.01], "values": [m - 0.01, m + 0.01]}
    cmp = {"conditions": {"bridge-partial": {"n": 1, "all_bridges_reached": False, "runs": [run], "test": d(0.8),
                                             "unbridged_test": d(0.85), "bridged_minus_unbridged": d(-0.05)}}}
    t = tables.bridge_table(cmp).splitlines()
    assert t[2] == "| bridge-partial | 0 | 8-11 | 1,200 | 0.500 (not reached) | 0.050-0.200 | 10.9 -> 8.44 | 0.800 | 0.850 | -0.050 |"
    # two seeds: the spread shown is their range, labelled so, never a bootstrap interval
    assert t[-1] == "| bridge-partial | 1 | no | 0.800 (range 0.790 to 0.810) | 0.850 (range 0.840 to 0.860) | -0.050 (range -0.060 to -0.040) |"
    old = {"seed": 1, "bridge_layers": [6, 11], "bridge_steps_run": None, "bridge_reached": None, "test_accuracy": 0.8,
           "unbridged_test_accuracy": 0.8, "difference": 0.0}      # a bridge from before these were recorded
    cmp["conditions"]["bridge-partial"]["runs"].append(old)
    assert tables.bridge_table(cmp).splitlines()[3] == "| bridge-partial | 1 | 6-11 | - | - | - | - -> - | 0.800 | 0.800 | +0.000 |"
