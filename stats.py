"""
Small statistics toolkit for the head analysis.

Heads are labelled "L{layer}.{head}" everywhere. Two signals are compared:
  - ablation impact: impact[task][head] = increase in task error when that head is zeroed
  - probe scores:    scores[head] = how strongly a head shows an attention pattern on text
                     (one dict per primitive: copying, induction, prev_token, ...)

Contents, top to bottom:
  1. hypergeometric tail
  2. selecting "top-tier" heads (z-score, ratio to the mean, top-k, critical pairs)
  3. the joint-coincidence test and its multiplicity-aware permutation version
  4. generic helpers: Spearman, paired t, exact McNemar, bootstrap CI, mean/std
  5. summaries over a few training seeds: t interval, per-seed differences with a paired t over seeds
  6. ratios of error rates over seeds: ratio of means, geometric mean, exact bounds for zero errors

Where scipy.stats has the test it is the implementation (hypergeometric tail, Spearman, paired t,
exact binomial, bootstrap); what scipy lacks is written here: the joint-coincidence permutation
test with its search over primitives and thresholds, and the permutation P of Spearman's rho.
"""
import math

import numpy as np

# scipy.stats is imported inside each function that calls it: the import costs about 1.5 s, which
# every training process (they all import this file for their summaries) would pay at start-up.

# -----------------------------------------------------------------------------
# 1. hypergeometric tail


def hypergeom_tail(N, K, n, k):
    """P(X >= k) for X ~ Hypergeometric(population N, K successes, n draws): scipy's survival function."""
    from scipy import stats as sps
    if not (0 <= K <= N and 0 <= n <= N):
        raise ValueError(f"need 0 <= K, n <= N, got N={N} K={K} n={n}")
    return float(sps.hypergeom.sf(k - 1, N, K, n))


# -----------------------------------------------------------------------------
# 2. selecting top-tier heads


def zscores(values):
    """z-scores of `values` within this one list, as a float array.

    Uses the population std (ddof=0): the heads of a slice are the whole population being ranked,
    not a sample from a larger one, and ddof=0 is what reproduces the published z values
    (e.g. L27.2 on AR z = 12.5). A constant list has no spread, so all its z-scores are 0.
    """
    x = np.asarray(values, dtype=float)
    sd = x.std(ddof=0)
    if sd == 0:
        return np.zeros_like(x)
    return (x - x.mean()) / sd


def top_by_z(impact, z_min):
    """Heads whose z-score within some task is >= z_min.

    impact: {task: {head: delta}}. Each task is standardised on its own, so a head that stands
    out on a task with tiny effects (e.g. AR) counts as much as one on a task with large effects.
    """
    out = set()
    for deltas in impact.values():
        heads = list(deltas)
        z = zscores([deltas[h] for h in heads])
        out.update(h for h, zi in zip(heads, z) if zi >= z_min)
    return out


def top_by_ratio(scores, ratio_min, mean=None):
    """Heads whose score / mean >= ratio_min; mean defaults to the mean score over `scores`.

    This is how probe scores are quoted ("3.7x the slice mean"). Pass `mean` when the slice mean
    is known but only some heads' scores are (heads.json exports 97 of 192). Assumes scores are
    positive, with larger meaning more of the pattern.
    """
    mean = float(np.mean(list(scores.values()))) if mean is None else float(mean)
    if mean <= 0:
        raise ValueError("top_by_ratio needs a positive mean score")
    return {h for h, s in scores.items() if s / mean >= ratio_min}


def top_k(scores, k):
    """The k heads with the largest scores (ties broken by label so the result is deterministic)."""
    ranked = sorted(scores, key=lambda h: (-scores[h], h))
    return set(ranked[:k])


def critical_pairs(impact, threshold):
    """(task, head) pairs whose ablation delta is strictly above `threshold`, in a stable order."""
    return [(task, h) for task, deltas in impact.items() for h in sorted(deltas) if deltas[h] > threshold]


# -----------------------------------------------------------------------------
# 3. joint coincidence and the permutation test


def _common_heads(probe_scores_list, impact):
    """Heads that have a value in every probe dict and in every task: the population N."""
    heads = None
    for d in list(probe_scores_list) + list(impact.values()):
        heads = set(d) if heads is None else heads & set(d)
    return sorted(heads or [])


def joint_coincidence(probe_scores, impact, probe_rule, ablate_rule):
    """How many heads are top-tier on both the probe and the ablation signal, and how surprising.

    probe_rule(scores) -> set of heads, e.g. lambda s: top_by_ratio(s, 1.5)
    ablate_rule(impact) -> set of heads, e.g. lambda imp: top_by_z(imp, 4)

    Each rule sees its whole signal (so ablation z-scores are over every ablated head, as in the
    paper), then the tally is restricted to the population: heads that have both a probe score
    and a delta on every task. Heads without a probe value (the 95 unexported ones in heads.json)
    therefore drop out of N, K, n and k alike. If the two selections are unrelated, the overlap k
    is hypergeometric with N = population, K = probe-top count, n = ablation-top count, and
    p = P(X >= k).
    """
    heads = set(_common_heads([probe_scores], impact))
    probe_top = set(probe_rule(probe_scores)) & heads
    ablate_top = set(ablate_rule(impact)) & heads
    both = probe_top & ablate_top
    N, K, n, k = len(heads), len(probe_top), len(ablate_top), len(both)
    return {"heads": sorted(both), "N": N, "K": K, "n": n, "k": k, "p": hypergeom_tail(N, K, n, k),
            "probe_top": sorted(probe_top), "ablate_top": sorted(ablate_top)}


def permutation_test(probe_primitives, impact, thresholds=(1.0, 1.25, 1.5, 2.0, 2.5, 3.0), z_min=4.0,
                     n_perm=10000, seed=0, baselines=None):
    """Multiplicity-aware permutation test for the probe/ablation coincidence.

    probe_primitives: {primitive: {head: score}}; impact: {task: {head: delta}}.
    thresholds: ratio-to-mean cut-offs for "probe top-tier" (top_by_ratio).
    z_min: one value or a sequence of values for "ablation top-tier" (top_by_z).
    baselines: optional {primitive: slice mean} used as the ratio denominator (see top_by_ratio).

    Observed statistic: the smallest hypergeometric P (as in joint_coincidence) over every
    (primitive, threshold, z_min) combination, i.e. the best-looking result an analyst could
    report after trying them all.

    Null: the head labels of the ablation signal are shuffled among the population (heads with a
    score for every primitive and a delta for every task). One permutation is drawn per null
    sample and applied to every task at once, so each head keeps its whole row of task deltas and
    the between-task structure (which tasks share heads, how heavy each task's tail is) is kept;
    only the link between a head's ablation row and its probe scores is broken. The probe side is
    untouched, so the correlations among primitives are kept too. For each null sample the same
    search over all combinations is repeated and its best P recorded. Comparing the observed best
    with the null distribution of bests is what pays for picking the primitive and threshold
    after looking: the null gets exactly as many tries as the analyst did, so a small P that one
    of many combinations produces by luck is no longer rare.

    Shortcut (exact, not an approximation): a within-task z-score does not depend on labels, and
    shuffling rows among population heads leaves each task's set of values unchanged, so the
    ablation top set of the relabelled data is just the observed top set mapped through the
    permutation. Each null sample therefore only relabels the observed sets.

    P_perm = (1 + #{null best <= observed best}) / (1 + n_perm): never 0, and a valid p-value for
    a finite number of permutations.
    """
    z_mins = tuple(float(z) for z in z_min) if np.ndim(z_min) else (float(z_min),)
    baselines = baselines or {}
    prims = sorted(probe_primitives)
    heads = _common_heads([probe_primitives[p] for p in prims], impact)
    N = len(heads)
    if N == 0:
        raise ValueError("no head has both a probe score and an ablation delta")
    index = {h: i for i, h in enumerate(heads)}

    def probe_rule(p, t):
        return lambda s: top_by_ratio(s, t, mean=baselines.get(p))

    def ablate_rule(z):
        return lambda imp: top_by_z(imp, z)

    # probe top sets (fixed under the null) as boolean masks over the population
    probe_masks = {}
    for p in prims:
        for t in thresholds:
            m = np.zeros(N, dtype=bool)
            m[[index[h] for h in probe_rule(p, t)(probe_primitives[p]) if h in index]] = True
            probe_masks[(p, t)] = m
    # ablation top sets (relabelled under the null) as position arrays
    ablate_idx = {z: np.array(sorted(index[h] for h in ablate_rule(z)(impact) if h in index), dtype=int)
                  for z in z_mins}

    combos = [(p, t, z) for (p, t) in probe_masks for z in z_mins]
    # with N, K, n fixed, P depends only on k: tabulate it once for every possible k
    tables = []
    for p, t, z in combos:
        K, n = int(probe_masks[(p, t)].sum()), len(ablate_idx[z])
        tables.append(np.array([hypergeom_tail(N, K, n, k) for k in range(n + 1)]))

    def best_p(perm):
        # perm[i] = where head i's ablation row goes; None means the observed labelling
        best, arg = math.inf, None
        for c, (p, t, z) in enumerate(combos):
            idx = ablate_idx[z] if perm is None else perm[ablate_idx[z]]
            pv = tables[c][int(probe_masks[(p, t)][idx].sum())]
            if pv < best:
                best, arg = pv, c
        return float(best), arg

    obs, arg = best_p(None)
    rng = np.random.default_rng(seed)
    hits = 0
    for _ in range(n_perm):
        null, _ = best_p(rng.permutation(N))
        hits += null <= obs * (1 + 1e-12)  # tolerance so that equal P values count as ties
    p, t, z = combos[arg]
    both = sorted(heads[i] for i in ablate_idx[z] if probe_masks[(p, t)][i])
    return {"observed_p": obs, "primitive": p, "threshold": t, "z_min": z, "heads": both,
            "N": N, "K": int(probe_masks[(p, t)].sum()), "n": len(ablate_idx[z]), "k": len(both),
            "n_combos": len(combos), "n_perm": n_perm, "p_perm": (1 + hits) / (1 + n_perm)}


# -----------------------------------------------------------------------------
# 4. generic helpers


def _average_ranks(x):
    """1-based ranks; tied values share the mean of the ranks they occupy."""
    from scipy import stats as sps
    return sps.rankdata(x, method="average")


def spearman(x, y):
    """Spearman rank correlation with average ranks for ties (scipy.stats.spearmanr).

    Returns (rho, p): p is two-sided from the t approximation with n-2 df, scipy's default."""
    from scipy import stats as sps
    if len(x) != len(y) or len(x) < 3:
        raise ValueError("spearman needs two sequences of equal length >= 3")
    r = sps.spearmanr(x, y)
    return float(r.statistic), float(r.pvalue)


def paired_t(a, b):
    """Paired t-test of mean(a - b) = 0 (scipy.stats.ttest_rel). Returns (t, df, two-sided p)."""
    from scipy import stats as sps
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    if len(d) < 2:
        raise ValueError("paired_t needs at least two pairs")
    if d.std() == 0:  # no spread: undefined if the mean is 0 too, otherwise infinitely significant
        return (math.nan, len(d) - 1, math.nan) if d.mean() == 0 else (math.copysign(math.inf, d.mean()), len(d) - 1, 0.0)
    r = sps.ttest_rel(a, b)
    return float(r.statistic), int(r.df), float(r.pvalue)


def mcnemar_exact(a, b):
    """Exact McNemar test for paired binary outcomes (e.g. episode success with and without a head):
    two-sided exact binomial test (scipy.stats.binomtest) on the discordant pairs.
    Returns (n_a_only, n_b_only, p)."""
    from scipy import stats as sps
    a, b = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    if a.shape != b.shape:
        raise ValueError("mcnemar_exact needs paired outcomes of equal length")
    n10, n01 = int((a & ~b).sum()), int((~a & b).sum())
    if n10 + n01 == 0:
        return n10, n01, 1.0
    return n10, n01, float(sps.binomtest(n10, n10 + n01, 0.5).pvalue)


def clopper_pearson(k, n, alpha=0.05):
    """Exact (Clopper-Pearson) interval of a success rate k / n."""
    from scipy import stats as sps
    if n < 1 or not 0 <= k <= n:
        raise ValueError("clopper_pearson needs 0 <= k <= n and n >= 1")
    lo = 0.0 if k == 0 else float(sps.beta.ppf(alpha / 2, k, n - k + 1))
    hi = 1.0 if k == n else float(sps.beta.ppf(1 - alpha / 2, k + 1, n - k))
    return lo, hi


def bootstrap_ci(values, n_boot=10000, alpha=0.05, seed=0):
    """Percentile bootstrap CI of the mean (scipy.stats.bootstrap). Returns (mean, lo, hi).

    One value, or values all equal, have nothing to resample: the interval is that value."""
    from scipy import stats as sps
    x = np.asarray(values, dtype=float)
    if len(x) == 0:
        raise ValueError("bootstrap_ci needs at least one value")
    if len(x) == 1 or np.all(x == x[0]):
        return float(x.mean()), float(x[0]), float(x[0])
    r = sps.bootstrap((x,), np.mean, n_resamples=n_boot, confidence_level=1 - alpha, method="percentile", rng=seed)
    return float(x.mean()), float(r.confidence_interval.low), float(r.confidence_interval.high)


def mean_std(values):
    """(mean, sample std with ddof=1); the std of a single value is reported as 0."""
    x = np.asarray(values, dtype=float)
    if len(x) == 0:
        raise ValueError("mean_std needs at least one value")
    return float(x.mean()), float(x.std(ddof=1)) if len(x) > 1 else 0.0


def describe(values):
    """Mean, sample std, bootstrap 95% CI of the mean (10,000 resamples, seed 0), the range and the
    values: the summary every results JSON gives over seeds. With fewer than five values the
    bootstrap interval is little more than their range, so tables quote the range there."""
    mean, std = mean_std(values)
    _, lo, hi = bootstrap_ci(values, n_boot=10000, seed=0)
    # the percentile bootstrap is too narrow at a handful of values (it cannot leave their range):
    # the Student-t interval beside it is what tables quote from five values on
    return {"mean": mean, "std": std, "ci95": [lo, hi], "t95": t_interval(values)["ci95"],
            "range": [float(min(values)), float(max(values))], "values": list(values)}


def spearman_permutation(x, y, n_perm=10000, seed=0, groups=None):
    """Spearman rho of two per-head vectors and a two-sided permutation P (head labels of y shuffled).

    With 24 heads and a few dominant ones the t approximation is rough; the permutation null makes
    no distributional assumption. P = (1 + #{|rho_perm| >= |rho|}) / (1 + n_perm).
    groups (e.g. each head's layer): labels are shuffled only within a group, so a shared profile
    over the groups (say, early layers matter more in any network) is part of the null, and only
    agreement on which head within its layer is tested."""
    rho = spearman(x, y)[0]
    ry = _average_ranks(y)
    rx = _average_ranks(x)
    rng = np.random.default_rng(seed)
    if groups is None:
        perms = np.array([rng.permutation(ry) for _ in range(n_perm)])
    else:
        groups = np.asarray(groups)
        members = [np.flatnonzero(groups == g) for g in np.unique(groups)]
        perms = np.tile(ry, (n_perm, 1))
        for idx in members:
            perms[:, idx] = ry[idx][rng.permuted(np.tile(np.arange(len(idx)), (n_perm, 1)), axis=1)]
    rxc = rx - rx.mean()
    pc = perms - perms.mean(1, keepdims=True)
    null = (pc @ rxc) / (np.sqrt((pc ** 2).sum(1)) * np.sqrt((rxc ** 2).sum()))
    p = (1 + int((np.abs(null) >= abs(rho) - 1e-12).sum())) / (1 + n_perm)
    return {"rho": rho, "p_perm": p, "n": len(rx), "n_perm": n_perm}


# -----------------------------------------------------------------------------
# 5. summaries over a few training seeds (the robot runs: n = 3)

def t_interval(values, alpha=0.05):
    """Mean, sample std and Student-t 95% interval of the mean: mean +- t(1 - alpha/2, n-1) * std / sqrt(n).

    With n = 3 the t quantile is 4.30, so the interval is wide; a bootstrap over three values would
    be far too narrow (it can never leave the range of the three). One value has no interval: None."""
    from scipy import stats as sps
    x = np.asarray(values, dtype=float)
    if len(x) == 0:
        raise ValueError("t_interval needs at least one value")
    mean, std = mean_std(x)
    if len(x) < 2:
        return {"mean": mean, "std": std, "ci95": None, "n": 1, "values": x.tolist()}
    half = float(sps.t.ppf(1 - alpha / 2, len(x) - 1)) * std / math.sqrt(len(x))
    return {"mean": mean, "std": std, "ci95": [mean - half, mean + half], "n": len(x), "values": x.tolist()}


def paired_over_seeds(reference, other, names=("reference", "other")):
    """reference and other: {seed: value}. Per-seed differences reference - other on the seeds both
    have, their mean with a t interval, and the paired t-test over seeds (the seed is the unit: each
    seed's runs share data order and evaluation episodes, different seeds share neither). verdict:
    '<name> ahead' when the interval excludes 0, else 'not separated' (which does not show them equal)."""
    seeds = sorted(set(reference) & set(other))
    diffs = [reference[s] - other[s] for s in seeds]
    out = {"seeds": seeds, **t_interval(diffs)} if seeds else {"seeds": [], "mean": None, "ci95": None, "n": 0, "values": []}
    if len(seeds) >= 2:
        t, df, p = paired_t([reference[s] for s in seeds], [other[s] for s in seeds])
        out["paired_t"] = {"t": t, "df": df, "p": p}
    else:
        out["paired_t"] = None
    ci = out["ci95"]
    out["verdict"] = ("one seed: no test" if ci is None else f"{names[0]} ahead" if ci[0] > 0 else f"{names[1]} ahead" if ci[1] < 0
                      else "not separated")
    return out


# 6. ratios of error rates over seeds


def binomial_upper(k, n, alpha=0.05):
    """Exact one-sided (1 - alpha) upper bound of an error rate seen as k wrong out of n scored
    (Clopper-Pearson's one-sided end; for k = 0 it is 1 - alpha^(1/n), about 3/n at 95%)."""
    from scipy import stats as sps
    if n < 1 or not 0 <= k <= n:
        raise ValueError("binomial_upper needs 0 <= k <= n and n >= 1")
    return 1.0 if k == n else float(sps.beta.ppf(1 - alpha, k + 1, n - k))


def error_ratios(control, reference, units, alpha=0.05):
    """How many times a control's error rate is the reference's, over seeds paired by index.

    control, reference: per-seed per-bit error rates; units: the independent draws behind each rate
    (the held-out sequences: the bits of one sequence are not independent, a wrong answer flips
    several at once). A reference seed that made no error has no finite ratio: its error is replaced
    by the exact one-sided (1 - alpha) binomial upper bound from the sequences it scored (a per-bit
    rate is at most the rate of sequences with any wrong bit), so its ratio is a lower bound and is
    flagged; a pair where neither made an error has no ratio at all (None, left out of the geometric
    mean and the range). Reported: the ratio of the means (pooled errors; bounded the same way when
    the reference made no error on any seed), the geometric mean of the per-seed ratios, their
    arithmetic mean (the statistic the paper reports; one large ratio dominates it, so it stands
    beside the others, never alone), their range (with a handful of seeds a resampling interval is
    only the range), and from five seeds with no bound among them a Student-t 95% interval of the
    geometric mean (t on the log ratios)."""
    n = min(len(control), len(reference))
    if n < 1:
        raise ValueError("error_ratios needs at least one pair")
    c, r = np.asarray(control[:n], dtype=float), np.asarray(reference[:n], dtype=float)
    bound = binomial_upper(0, units, alpha)
    zero = r == 0
    undefined = zero & (c == 0)
    per_seed = [None if u else float(ci / (bound if z else ri)) for ci, ri, z, u in zip(c, r, zero, undefined)]
    defined = np.asarray([v for v in per_seed if v is not None], dtype=float)
    pooled_zero = bool(zero.all())
    ratio_of_means = float(c.mean() / (binomial_upper(0, n * units, alpha) if pooled_zero else r.mean()))
    geo = None if len(defined) == 0 else 0.0 if (defined == 0).any() else float(np.exp(np.log(defined).mean()))
    bounded = bool((zero & ~undefined).any())
    out = {"ratio_of_means": ratio_of_means, "ratio_of_means_lower_bound": pooled_zero,
           "difference_of_means": float(c.mean() - r.mean()),
           "geometric_mean": geo, "geometric_mean_lower_bound": bounded,
           "mean_of_ratios": float(defined.mean()) if len(defined) else None, "mean_of_ratios_lower_bound": bounded,
           "values": per_seed, "value_lower_bound": (zero & ~undefined).tolist(), "value_undefined": undefined.tolist(),
           "n": n, "range": [float(defined.min()), float(defined.max())] if len(defined) else None,
           "zero_error_bound": {"units": "held-out sequences", "scored": int(units), "alpha": alpha, "one_sided_upper": bound}}
    if len(defined) >= 5 and geo and not bounded:
        lo, hi = t_interval(np.log(defined), alpha)["ci95"]
        out["geometric_mean_t95"] = [float(np.exp(lo)), float(np.exp(hi))]
    return out
