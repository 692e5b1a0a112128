"""stats.py: published head-analysis numbers from heads.json, plus the generic helpers against scipy."""
import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as sps

import stats as S

HEADS_JSON = Path(__file__).resolve().parents[1] / "data" / "paper" / "heads.json"   # the paper's per-head data
NAMED = {"L26.28", "L27.28", "L27.2", "L27.3"}


@pytest.fixture(scope="module")
def heads():
    d = json.loads(HEADS_JSON.read_text())
    label = lambda h: f"L{h['layer']}.{h['head']}"
    impact = {t: {label(h): h["impact"][t] for h in d["heads"]} for t in d["tasks"]}
    # 95 heads have no exported txt_copy; they are left out rather than guessed
    txt_copy = {label(h): h["txt_copy"] for h in d["heads"] if h["txt_copy"] is not None}
    return {"impact": impact, "txt_copy": txt_copy, "baselines": d["baselines"]}


# ----------------------------------------------------------------------------- hypergeometric


def test_hypergeom_paper_value():
    p = S.hypergeom_tail(192, 38, 4, 4)
    assert p == pytest.approx(math.comb(38, 4) / math.comb(192, 4), rel=1e-12)
    assert f"{p:.4g}" == "0.001345"


def test_hypergeom_matches_scipy():
    for N, K, n, k in [(192, 38, 4, 4), (192, 38, 4, 2), (97, 29, 4, 1), (50, 10, 20, 5), (10, 3, 5, 0)]:
        assert S.hypergeom_tail(N, K, n, k) == pytest.approx(sps.hypergeom.sf(k - 1, N, K, n), rel=1e-9, abs=1e-15)
    assert S.hypergeom_tail(192, 38, 4, 5) == 0.0


# ----------------------------------------------------------------------------- heads.json numbers


def test_heads_json_shape(heads):
    assert set(heads["impact"]) == {"copy", "ar", "ca_r90", "addition"}
    assert all(len(d) == 192 for d in heads["impact"].values())
    assert len(heads["txt_copy"]) == 97


def test_critical_pairs_141_97(heads):
    pairs = S.critical_pairs(heads["impact"], 0.05)
    assert len(pairs) == 141
    assert len({h for _, h in pairs}) == 97


def test_z4_selects_named_heads(heads):
    assert S.top_by_z(heads["impact"], 4) == NAMED
    # the published window of cut-offs giving the same set is (3.34, 4.38]
    assert S.top_by_z(heads["impact"], 3.35) == NAMED
    assert S.top_by_z(heads["impact"], 4.39) == NAMED - {"L26.28"}
    assert "L26.3" in S.top_by_z(heads["impact"], 3.3)


def test_zscores_use_population_std(heads):
    ar = heads["impact"]["ar"]
    z = dict(zip(ar, S.zscores(list(ar.values()))))
    assert z["L27.2"] == pytest.approx(12.49, abs=0.01)  # ddof=1 would give 12.46


def test_ratio_matches_exported_ratio(heads):
    # L26.28 is quoted as 3.67x the slice mean 0.1427
    tc, mean = heads["txt_copy"], heads["baselines"]["copying"]
    assert "L26.28" in S.top_by_ratio(tc, 3.67, mean=mean)
    assert "L26.28" not in S.top_by_ratio(tc, 3.68, mean=mean)
    assert S.top_k(tc, 1) == {"L24.17"}


def test_joint_coincidence_on_exported_heads(heads):
    res = S.joint_coincidence(heads["txt_copy"], heads["impact"],
                              lambda s: S.top_by_ratio(s, 1.5, mean=heads["baselines"]["copying"]),
                              lambda imp: S.top_by_z(imp, 4))
    assert set(res["heads"]) == NAMED
    assert (res["N"], res["n"], res["k"]) == (97, 4, 4)
    assert res["p"] == pytest.approx(S.hypergeom_tail(97, res["K"], 4, 4))


def test_permutation_on_heads_json(heads):
    kw = dict(z_min=4.0, n_perm=2000, baselines={"copying": heads["baselines"]["copying"]})
    a = S.permutation_test({"copying": heads["txt_copy"]}, heads["impact"], seed=1, **kw)
    b = S.permutation_test({"copying": heads["txt_copy"]}, heads["impact"], seed=1, **kw)
    assert a == b
    assert 0 < a["p_perm"] <= 1
    assert a["p_perm"] >= 1 / (1 + kw["n_perm"])
    assert a["N"] == 97 and a["n_combos"] == 6
    assert a["observed_p"] == S.hypergeom_tail(a["N"], a["K"], a["n"], a["k"])
    # regression on the data: at the blog's 1.5x cut all four named heads are copy-top-tier
    assert (a["threshold"], a["k"], set(a["heads"])) == (1.5, 4, NAMED)
    assert a["p_perm"] < 0.05
    c = S.permutation_test({"copying": heads["txt_copy"]}, heads["impact"], seed=2, **kw)
    assert c["observed_p"] == a["observed_p"] and c["p_perm"] != a["p_perm"]  # the seed matters


# ----------------------------------------------------------------------------- planted permutation tests


def _synthetic(seed, planted, n_heads=192, n_prims=4, probe_hits=None):
    """Noise ablation deltas on 4 tasks with `planted` heads given a huge delta on one task each,
    and n_prims probe primitives of positive noise; primitive 'p0' is high on the heads in
    probe_hits (all planted heads by default)."""
    rng = np.random.default_rng(seed)
    labels = [f"L{24 + i // 32}.{i % 32}" for i in range(n_heads)]
    tasks = ["copy", "ar", "ca_r90", "addition"]
    impact = {t: dict(zip(labels, rng.normal(0, 0.01, n_heads))) for t in tasks}
    for j, h in enumerate(planted):
        impact[tasks[j % 4]][h] = 0.15
    prims = {f"p{i}": dict(zip(labels, rng.uniform(0.05, 0.2, n_heads))) for i in range(n_prims)}
    for h in planted if probe_hits is None else probe_hits:
        prims["p0"][h] = 0.6
    return labels, impact, prims


def test_planted_coincidence_small_p():
    planted = ["L26.28", "L27.28", "L27.2", "L27.3", "L25.7"]
    _, impact, prims = _synthetic(0, planted)
    assert S.top_by_z(impact, 4) == set(planted)
    res = S.permutation_test(prims, impact, n_perm=2000, seed=0)
    assert res["primitive"] == "p0" and set(res["heads"]) == set(planted)
    assert res["p_perm"] < 0.01


def test_shuffled_coincidence_large_p():
    planted = ["L26.28", "L27.28", "L27.2", "L27.3", "L25.7"]
    labels, impact, prims = _synthetic(0, planted)
    # break the link: shuffle the probe labels of every primitive with one fixed permutation
    perm = np.random.default_rng(123).permutation(len(labels))
    shuffled = {p: {labels[perm[i]]: s[labels[i]] for i in range(len(labels))} for p, s in prims.items()}
    res = S.permutation_test(shuffled, impact, n_perm=2000, seed=0)
    assert res["p_perm"] > 0.1


def test_no_overlap_gives_p_one():
    # probe-top heads disjoint from ablation-top heads: observed best P is 1, every null ties it
    planted = ["L26.28", "L27.28", "L27.2"]
    _, impact, prims = _synthetic(4, planted, probe_hits=["L24.0", "L24.1"])
    res = S.permutation_test({"p0": prims["p0"]}, impact, thresholds=(2.0,), n_perm=200, seed=0)
    assert res["k"] == 0 and res["observed_p"] == 1.0 and res["p_perm"] == 1.0


def test_selection_helpers_small():
    impact = {"a": {"x": 0.05, "y": 0.06, "z": -0.1}, "b": {"x": 0.2, "y": 0.0, "z": 0.0}}
    assert S.critical_pairs(impact, 0.05) == [("a", "y"), ("b", "x")]  # strictly above
    assert S.top_k({"x": 1.0, "y": 3.0, "z": 3.0}, 2) == {"y", "z"}
    assert S.top_by_ratio({"x": 1.0, "y": 2.0, "z": 3.0}, 1.5) == {"z"}  # mean 2
    assert S.top_by_ratio({"x": 1.0, "y": 2.0, "z": 3.0}, 1.5, mean=1.0) == {"y", "z"}
    assert np.allclose(S.zscores([1.0, 3.0]), [-1.0, 1.0]) and not S.zscores([2.0, 2.0]).any()


def test_multiplicity_makes_p_larger():
    # the same coincidence judged after trying more primitives must not look more significant
    # a weak coincidence (1 of 3 ablation-top heads is probe-top) that a wide search can match
    planted = ["L26.28", "L27.28", "L27.2"]
    _, impact, prims = _synthetic(3, planted, n_prims=8, probe_hits=planted[:1])
    one = S.permutation_test({"p0": prims["p0"]}, impact, n_perm=2000, seed=0)
    many = S.permutation_test(prims, impact, n_perm=2000, seed=0)
    # p0 wins in both, so the observed best is the same; with the same seed the nulls see the same
    # permutations and the 8-primitive null best is never above the 1-primitive one
    assert many["primitive"] == one["primitive"] == "p0"
    assert many["observed_p"] == one["observed_p"]
    assert many["p_perm"] > one["p_perm"]


# ----------------------------------------------------------------------------- generic helpers


def test_paired_t_matches_scipy():
    rng = np.random.default_rng(0)
    for n in (2, 5, 30):
        a, b = rng.normal(size=n), rng.normal(0.3, 1, size=n)
        t, df, p = S.paired_t(a, b)
        ref = sps.ttest_rel(a, b)
        assert df == n - 1
        assert t == pytest.approx(ref.statistic, rel=1e-10)
        assert p == pytest.approx(ref.pvalue, rel=1e-10)


def test_spearman_matches_scipy_with_ties():
    rng = np.random.default_rng(1)
    for n in (5, 20, 200):
        x, y = rng.integers(0, 5, n), rng.integers(0, 4, n) + 0.5 * rng.integers(0, 2, n)
        rho, p = S.spearman(x, y)
        ref = sps.spearmanr(x, y)
        assert rho == pytest.approx(ref.statistic, abs=1e-12)
        assert p == pytest.approx(ref.pvalue, rel=1e-9)
    rho, p = S.spearman([1, 2, 3, 4], [10, 20, 30, 40])
    assert rho == pytest.approx(1.0) and p == 0.0


def test_bootstrap_ci():
    rng = np.random.default_rng(2)
    small = rng.normal(1.0, 1.0, 20)
    big = rng.normal(1.0, 1.0, 500)
    m, lo, hi = S.bootstrap_ci(small, n_boot=4000, seed=0)
    assert lo < m < hi and m == pytest.approx(small.mean())
    mb, lob, hib = S.bootstrap_ci(big, n_boot=4000, seed=0)
    assert lob < mb < hib
    assert (hib - lob) < 0.5 * (hi - lo)
    assert S.bootstrap_ci(small, n_boot=4000, seed=0) == (m, lo, hi)
    # the normal-theory interval of the mean, which the percentile bootstrap approaches for n = 500
    half = 1.96 * big.std(ddof=1) / np.sqrt(len(big))
    assert abs(lob - (mb - half)) < 0.02 and abs(hib - (mb + half)) < 0.02
    assert S.bootstrap_ci([0.3], seed=0) == (0.3, 0.3, 0.3) and S.bootstrap_ci([0.2, 0.2], seed=0) == (0.2, 0.2, 0.2)


def test_mean_std():
    assert S.mean_std([3.0]) == (3.0, 0.0)
    m, s = S.mean_std([1.0, 2.0, 3.0, 4.0])
    assert m == 2.5 and s == pytest.approx(np.std([1, 2, 3, 4], ddof=1))


def test_mcnemar_exact_matches_scipy_binomtest():
    rng = np.random.default_rng(0)
    for _ in range(20):
        a, b = rng.random(30) < 0.5, rng.random(30) < 0.3
        n10, n01, p = S.mcnemar_exact(a, b)
        assert (n10, n01) == (int((a & ~b).sum()), int((~a & b).sum()))
        assert p == pytest.approx(sps.binomtest(n10, n10 + n01, 0.5).pvalue)
    assert S.mcnemar_exact([1, 0, 1], [1, 0, 1]) == (0, 0, 1.0)   # no discordant pairs: nothing to test
    with pytest.raises(ValueError):
        S.mcnemar_exact([1, 0], [1])


def test_spearman_permutation_matches_scipy_rho_and_finds_structure():
    rng = np.random.default_rng(1)
    x = rng.normal(size=24)
    y = x + rng.normal(scale=0.3, size=24)
    r = S.spearman_permutation(x, y, n_perm=2000)
    assert abs(r["rho"] - sps.spearmanr(x, y).statistic) < 1e-12
    assert r["p_perm"] < 0.01
    z = rng.normal(size=24)                         # unrelated: P spread over (0, 1], not tiny
    ps = [S.spearman_permutation(rng.normal(size=24), z, n_perm=500, seed=s)["p_perm"] for s in range(40)]
    assert 0.3 < float(np.mean(ps)) < 0.7


def test_within_layer_null_absorbs_a_shared_layer_profile():
    """Two unrelated networks whose heads share only a per-layer level (early layers matter more):
    the all-heads null calls that a fingerprint, the within-layer null does not; a head-level match
    passes both."""
    rng = np.random.default_rng(2)
    layers = np.repeat(np.arange(6), 4)
    level = 3.0 * (5 - layers)
    ps_all, ps_within = [], []
    for s in range(30):
        a, b = level + rng.normal(size=24), level + rng.normal(size=24)
        ps_all.append(S.spearman_permutation(a, b, n_perm=400, seed=s)["p_perm"])
        ps_within.append(S.spearman_permutation(a, b, n_perm=400, seed=s, groups=layers)["p_perm"])
    assert np.mean(ps_all) < 0.05 and 0.3 < np.mean(ps_within) < 0.7
    head = rng.normal(size=24) * 5
    a, b = level + head + rng.normal(size=24) * 0.3, level + head + rng.normal(size=24) * 0.3
    assert S.spearman_permutation(a, b, n_perm=2000, seed=0, groups=layers)["p_perm"] < 0.01
    # ranks constant within each layer: every within-layer permutation gives the same rho, so P = 1
    c = level.astype(float)
    assert S.spearman_permutation(c, c + 1, n_perm=50, seed=0, groups=layers)["p_perm"] == 1.0


def test_t_interval_and_paired_over_seeds():
    r = S.t_interval([1.0, 2.0, 6.0])
    half = sps.t.ppf(0.975, 2) * np.std([1.0, 2.0, 6.0], ddof=1) / np.sqrt(3)
    assert r["mean"] == 3.0 and r["ci95"] == pytest.approx([3.0 - half, 3.0 + half]) and r["n"] == 3
    assert S.t_interval([0.4])["ci95"] is None                    # one seed: no interval
    d = S.paired_over_seeds({0: 0.9, 1: 0.8, 2: 0.7, 5: 0.1}, {0: 0.5, 1: 0.5, 2: 0.5}, ("pre", "ctl"))
    assert d["seeds"] == [0, 1, 2] and d["values"] == pytest.approx([0.4, 0.3, 0.2])   # only the seeds both have
    assert d["paired_t"]["p"] == pytest.approx(sps.ttest_rel([0.9, 0.8, 0.7], [0.5, 0.5, 0.5]).pvalue)
    assert d["verdict"] == "pre ahead"
    assert S.paired_over_seeds({0: 0.1, 1: 0.9}, {0: 0.5, 1: 0.5}, ("pre", "ctl"))["verdict"] == "not separated"
    assert S.paired_over_seeds({0: 0.1}, {0: 0.5})["verdict"] == "one seed: no test"


def test_binomial_upper_bound_is_exact():
    # no error in n: 1 - alpha^(1/n) (the "rule of three" is its approximation 3/n)
    assert S.binomial_upper(0, 1000) == pytest.approx(1 - 0.05 ** (1 / 1000))
    assert 2.99 / 1000 < S.binomial_upper(0, 1000) < 3.0 / 1000
    # at the bound, seeing k or fewer errors has probability alpha
    from scipy.stats import binom
    u = S.binomial_upper(3, 200)
    assert binom.cdf(3, 200, u) == pytest.approx(0.05, rel=1e-6)
    assert S.binomial_upper(5, 5) == 1.0
    with pytest.raises(ValueError):
        S.binomial_upper(3, 2)


def test_error_ratios_report_ratio_of_means_geometric_mean_and_bounds():
    """The committed MQAR values at 8 pairs: a mean of per-seed ratios (734x) hides that two of
    three seeds divide by a floor; the ratio of means and the geometric mean say more, and a zero
    error becomes an exact bound from the independent sequences scored (not the bits: a wrong answer
    flips several bits of one sequence at once), flagged."""
    control = [0.032389322916666664, 0.00811767578125, 0.011088053385416666]
    reference = [0.0, 0.0001220703125, 0.0]
    r = S.error_ratios(control, reference, units=1024)
    assert r["ratio_of_means"] == pytest.approx(sum(control) / sum(reference)) and not r["ratio_of_means_lower_bound"]
    u = 1 - 0.05 ** (1 / 1024)
    assert r["zero_error_bound"]["one_sided_upper"] == pytest.approx(u) and r["zero_error_bound"]["units"] == "held-out sequences"
    per = [control[0] / u, control[1] / reference[1], control[2] / u]
    assert r["values"] == pytest.approx(per) and r["value_lower_bound"] == [True, False, True]
    assert r["geometric_mean"] == pytest.approx((per[0] * per[1] * per[2]) ** (1 / 3)) and r["geometric_mean_lower_bound"]
    # the paper's statistic, the arithmetic mean of per-seed ratios, beside them and flagged alike
    assert r["mean_of_ratios"] == pytest.approx(sum(per) / 3) and r["mean_of_ratios_lower_bound"]
    assert r["mean_of_ratios"] >= r["geometric_mean"]
    assert r["range"] == pytest.approx([min(per), max(per)]) and "geometric_mean_t95" not in r   # 3 seeds: a range only
    # no error on any seed: the ratio of means is a lower bound from the pooled sequences
    r = S.error_ratios([0.1, 0.2], [0.0, 0.0], units=100)
    assert r["ratio_of_means_lower_bound"] and r["ratio_of_means"] == pytest.approx(0.15 / (1 - 0.05 ** (1 / 200)))
    # five seeds, none bounded: a t interval of the geometric mean (t on the log ratios), which contains it
    ratios = [2.0, 3.0, 1.0, 4.0, 4.0]
    r = S.error_ratios([0.2, 0.3, 0.1, 0.4, 0.2], [0.1, 0.1, 0.1, 0.1, 0.05], units=1000)
    logs = np.log(ratios)
    half = sps.t.ppf(0.975, 4) * logs.std(ddof=1) / 5 ** 0.5
    assert r["geometric_mean_t95"] == pytest.approx([np.exp(logs.mean() - half), np.exp(logs.mean() + half)])
    assert r["geometric_mean_t95"][0] <= r["geometric_mean"] <= r["geometric_mean_t95"][1]
    # a control seed with no error: its ratio is 0 and so is the geometric mean
    assert S.error_ratios([0.0, 0.2], [0.1, 0.1], units=100)["geometric_mean"] == 0.0
    # neither made an error: no ratio for that pair, left out of the geometric mean and the range
    r = S.error_ratios([0.0, 0.2], [0.0, 0.1], units=100)
    assert r["values"] == [None, pytest.approx(2.0)] and r["value_undefined"] == [True, False]
    assert r["geometric_mean"] == pytest.approx(2.0) and not r["geometric_mean_lower_bound"] and r["range"] == pytest.approx([2.0, 2.0])
    assert r["mean_of_ratios"] == pytest.approx(2.0) and not r["mean_of_ratios_lower_bound"]
    r = S.error_ratios([0.0], [0.0], units=100)
    assert r["geometric_mean"] is None and r["range"] is None and r["mean_of_ratios"] is None


def test_describe_gives_the_range():
    d = S.describe([0.3, 0.1, 0.2])
    assert d["range"] == [0.1, 0.3] and d["values"] == [0.3, 0.1, 0.2]
