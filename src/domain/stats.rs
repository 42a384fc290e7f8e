//! Interval estimates and tests of the study's figures, as a statistician reviewing
//! the paper computes them.
//!
//! Pure functions, no I/O. Each is checked in the tests below against values computed
//! independently (scipy, statsmodels, scikit-learn or by hand), written into the test.
//!
//! - [`wilson`]: the Wilson score interval of a proportion (sensitivity, specificity,
//!   accuracy, percent agreement). Unlike the percentile bootstrap it does not collapse
//!   at 0 or 1: 10 of 10 gives [0.722, 1].
//! - [`delong`]: the AUC with DeLong's variance (DeLong, DeLong & Clarke-Pearson 1988,
//!   in the fast midrank form of Sun & Xu 2014) and its 95% interval;
//!   [`delong_paired`] compares two scores of the same cases (the difference, its
//!   interval and the two-sided p of the z test), as pROC's `roc.test(method =
//!   "delong", paired = TRUE)`.
//! - [`fleiss_kappa`]: agreement of any number of raters (Fleiss 1971).
//! - [`cluster_bootstrap_ci`]: the percentile bootstrap that resamples clusters (a
//!   patient and both their knees) instead of single observations.
//! - [`normal_cdf`], [`chi2_sf`]: the distribution functions the tests need, to
//!   double precision (erfc by series and continued fraction; the regularised
//!   incomplete gamma function).

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use super::agreement::{ConfidenceInterval, percentile_interval};

/// The 97.5th percentile of the standard normal distribution.
pub const Z_95: f64 = 1.959_963_984_540_054;

/// Wilson score 95% interval of `successes` out of `n`; `None` when `n` is 0 or
/// `successes > n`.
pub fn wilson(successes: u64, n: u64) -> Option<ConfidenceInterval> {
    wilson_z(successes, n, Z_95)
}

/// [`wilson`] at another normal quantile `z`.
pub fn wilson_z(successes: u64, n: u64, z: f64) -> Option<ConfidenceInterval> {
    if n == 0 || successes > n {
        return None;
    }
    let n_f = n as f64;
    let p = successes as f64 / n_f;
    let z2 = z * z;
    let centre = (p + z2 / (2.0 * n_f)) / (1.0 + z2 / n_f);
    let half = z / (1.0 + z2 / n_f) * (p * (1.0 - p) / n_f + z2 / (4.0 * n_f * n_f)).sqrt();
    // At the edges the formula gives exactly 0 or 1 in exact arithmetic.
    let lower = if successes == 0 { 0.0 } else { centre - half };
    let upper = if successes == n { 1.0 } else { centre + half };
    Some(ConfidenceInterval {
        lower: lower.max(0.0),
        upper: upper.min(1.0),
    })
}

/// A proportion with the counts behind it and its Wilson score 95% interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Proportion {
    pub successes: u64,
    pub n: u64,
    pub ci95: Option<ConfidenceInterval>,
}

impl Proportion {
    pub fn new(successes: u64, n: u64) -> Self {
        Proportion {
            successes,
            n,
            ci95: wilson(successes, n),
        }
    }
}

/// An AUC with DeLong's standard error and the 95% interval `auc ± 1.96 se`
/// (clipped to [0, 1]).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct DelongAuc {
    pub auc: f64,
    pub se: f64,
    pub ci: ConfidenceInterval,
}

/// Two AUCs of the same cases compared by DeLong's paired test.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct PairedDelong {
    pub auc_a: f64,
    pub auc_b: f64,
    /// `auc_a - auc_b`.
    pub difference: f64,
    pub se: f64,
    pub ci: ConfidenceInterval,
    pub z: f64,
    /// Two-sided p of the z test of no difference.
    pub p: f64,
}

/// The structural components of one score (Sun & Xu 2014): `v10[i]` for each
/// positive, `v01[j]` for each negative, and the AUC (their common mean).
struct Components {
    auc: f64,
    v10: Vec<f64>,
    v01: Vec<f64>,
}

/// Midranks (1-based, ties sharing their mean rank) of `x`.
fn midranks(x: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..x.len()).collect();
    order.sort_by(|&a, &b| x[a].total_cmp(&x[b]));
    let mut ranks = vec![0.0; x.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && x[order[j + 1]] == x[order[i]] {
            j += 1;
        }
        let mid = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            ranks[k] = mid;
        }
        i = j + 1;
    }
    ranks
}

fn components(scores: &[f64], positive: &[bool]) -> Option<Components> {
    if scores.len() != positive.len() || scores.iter().any(|s| !s.is_finite()) {
        return None;
    }
    let pos: Vec<f64> = scores
        .iter()
        .zip(positive)
        .filter(|p| *p.1)
        .map(|p| *p.0)
        .collect();
    let neg: Vec<f64> = scores
        .iter()
        .zip(positive)
        .filter(|p| !*p.1)
        .map(|p| *p.0)
        .collect();
    let (m, n) = (pos.len(), neg.len());
    if m == 0 || n == 0 {
        return None;
    }
    let all: Vec<f64> = pos.iter().chain(&neg).copied().collect();
    let r_all = midranks(&all);
    let r_pos = midranks(&pos);
    let r_neg = midranks(&neg);
    let (m_f, n_f) = (m as f64, n as f64);
    // v10[i]: share of negatives below positive i (ties one half); v01[j]: share of
    // positives above negative j.
    let v10: Vec<f64> = (0..m).map(|i| (r_all[i] - r_pos[i]) / n_f).collect();
    let v01: Vec<f64> = (0..n)
        .map(|j| 1.0 - (r_all[m + j] - r_neg[j]) / m_f)
        .collect();
    let auc = v10.iter().sum::<f64>() / m_f;
    Some(Components { auc, v10, v01 })
}

/// Sample covariance (denominator `len - 1`) of two equally long series.
fn covariance(a: &[f64], b: &[f64]) -> f64 {
    let k = a.len();
    if k < 2 {
        return 0.0;
    }
    let ma = a.iter().sum::<f64>() / k as f64;
    let mb = b.iter().sum::<f64>() / k as f64;
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - ma) * (y - mb))
        .sum::<f64>()
        / (k - 1) as f64
}

fn interval(centre: f64, se: f64, lo: f64, hi: f64) -> ConfidenceInterval {
    ConfidenceInterval {
        lower: (centre - Z_95 * se).max(lo),
        upper: (centre + Z_95 * se).min(hi),
    }
}

/// The AUC of `scores` against `positive` with DeLong's standard error; `None` when
/// there is no positive or no negative case, the lengths differ or a score is not
/// finite.
pub fn delong(scores: &[f64], positive: &[bool]) -> Option<DelongAuc> {
    let c = components(scores, positive)?;
    let var = covariance(&c.v10, &c.v10) / c.v10.len() as f64
        + covariance(&c.v01, &c.v01) / c.v01.len() as f64;
    let se = var.max(0.0).sqrt();
    Some(DelongAuc {
        auc: c.auc,
        se,
        ci: interval(c.auc, se, 0.0, 1.0),
    })
}

/// DeLong's paired comparison of two scores of the same cases (`scores_a[i]` and
/// `scores_b[i]` belong to case `i`). `None` as for [`delong`], or when the two
/// scores are indistinguishable (zero variance of the difference).
pub fn delong_paired(
    scores_a: &[f64],
    scores_b: &[f64],
    positive: &[bool],
) -> Option<PairedDelong> {
    if scores_a.len() != scores_b.len() {
        return None;
    }
    let a = components(scores_a, positive)?;
    let b = components(scores_b, positive)?;
    let (m, n) = (a.v10.len() as f64, a.v01.len() as f64);
    let var = (covariance(&a.v10, &a.v10) + covariance(&b.v10, &b.v10)
        - 2.0 * covariance(&a.v10, &b.v10))
        / m
        + (covariance(&a.v01, &a.v01) + covariance(&b.v01, &b.v01)
            - 2.0 * covariance(&a.v01, &b.v01))
            / n;
    if var.is_nan() || var <= 0.0 {
        return None;
    }
    let se = var.sqrt();
    let difference = a.auc - b.auc;
    let z = difference / se;
    Some(PairedDelong {
        auc_a: a.auc,
        auc_b: b.auc,
        difference,
        se,
        ci: interval(difference, se, -1.0, 1.0),
        z,
        p: 2.0 * normal_sf(z.abs()),
    })
}

/// Fleiss' kappa. `counts[i][c]` is how many raters put subject `i` in category `c`;
/// every subject needs the same number of raters (at least 2). `None` when that does
/// not hold, there is no subject, or every rating falls in one category.
pub fn fleiss_kappa(counts: &[Vec<u64>]) -> Option<f64> {
    let first = counts.first()?;
    let k = first.len();
    let raters: u64 = first.iter().sum();
    if raters < 2
        || counts
            .iter()
            .any(|row| row.len() != k || row.iter().sum::<u64>() != raters)
    {
        return None;
    }
    let n_sub = counts.len() as f64;
    let r = raters as f64;
    let mut category_totals = vec![0u64; k];
    let mut p_bar = 0.0;
    for row in counts {
        let agree: u64 = row.iter().map(|&c| c * c.saturating_sub(1)).sum();
        p_bar += agree as f64 / (r * (r - 1.0));
        for (t, &c) in category_totals.iter_mut().zip(row) {
            *t += c;
        }
    }
    p_bar /= n_sub;
    let p_e: f64 = category_totals
        .iter()
        .map(|&t| {
            let p = t as f64 / (n_sub * r);
            p * p
        })
        .sum();
    (p_e < 1.0).then(|| (p_bar - p_e) / (1.0 - p_e))
}

/// Percentile bootstrap 95% interval of `statistic` that resamples whole clusters
/// (for per-knee figures: a patient with both knees), `resamples` times with
/// `StdRng::seed_from_u64(seed)`. The statistic sees the observations of the drawn
/// clusters, a cluster drawn twice contributing twice. Resamples where it is `None`
/// are skipped; `None` when fewer than half give a value, or there is no cluster.
pub fn cluster_bootstrap_ci<T: Clone, F>(
    clusters: &[Vec<T>],
    statistic: F,
    resamples: usize,
    seed: u64,
) -> Option<ConfidenceInterval>
where
    F: Fn(&[T]) -> Option<f64>,
{
    let c = clusters.len();
    if c == 0 || resamples == 0 {
        return None;
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let mut sample = Vec::new();
    let mut values = Vec::with_capacity(resamples);
    for _ in 0..resamples {
        sample.clear();
        for _ in 0..c {
            sample.extend_from_slice(&clusters[rng.random_range(0..c)]);
        }
        if let Some(v) = statistic(&sample).filter(|v| v.is_finite()) {
            values.push(v);
        }
    }
    percentile_interval(values, resamples)
}

/// The standard normal distribution function.
pub fn normal_cdf(x: f64) -> f64 {
    0.5 * erfc(-x / std::f64::consts::SQRT_2)
}

/// The standard normal survival function `1 - Φ(x)`, accurate in the far tail.
pub fn normal_sf(x: f64) -> f64 {
    0.5 * erfc(x / std::f64::consts::SQRT_2)
}

/// The complementary error function to double precision: the Maclaurin series of
/// erf below 2.5 in magnitude, Lentz's continued fraction of erfc above.
pub fn erfc(x: f64) -> f64 {
    if x.is_nan() {
        return f64::NAN;
    }
    if x < 0.0 {
        return 2.0 - erfc(-x);
    }
    if x < 2.5 {
        // erf(x) = 2/√π Σ (-1)^n x^(2n+1) / (n! (2n+1))
        let x2 = x * x;
        let mut term = x;
        let mut sum = x;
        let mut n = 0.0;
        loop {
            n += 1.0;
            term *= -x2 / n;
            let add = term / (2.0 * n + 1.0);
            sum += add;
            if add.abs() < 1e-17 * sum.abs() {
                break;
            }
        }
        return 1.0 - sum * std::f64::consts::FRAC_2_SQRT_PI;
    }
    if x > 27.0 {
        return 0.0;
    }
    // erfc(x) = exp(-x²)/√π · 1/(x + (1/2)/(x + 1/(x + (3/2)/(x + 2/(x + ...)))))
    let tiny = 1e-300;
    let mut f = x;
    let mut c = x;
    let mut d = 0.0;
    for k in 1..500 {
        let a = k as f64 / 2.0;
        d = x + a * d;
        if d.abs() < tiny {
            d = tiny;
        }
        c = x + a / c;
        if c.abs() < tiny {
            c = tiny;
        }
        d = 1.0 / d;
        let delta = c * d;
        f *= delta;
        if (delta - 1.0).abs() < 1e-16 {
            break;
        }
    }
    (-x * x).exp() / (f * std::f64::consts::PI.sqrt())
}

/// ln Γ(x) for x > 0 (Lanczos, g = 7, n = 9; relative error about 1e-15).
fn ln_gamma(x: f64) -> f64 {
    const G: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut a = G[0];
    let t = x + 7.5;
    for (i, g) in G.iter().enumerate().skip(1) {
        a += g / (x + i as f64);
    }
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

/// The regularised upper incomplete gamma function Q(a, x).
fn gamma_q(a: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 1.0;
    }
    let ln_pre = a * x.ln() - x - ln_gamma(a);
    if x < a + 1.0 {
        // P by its series, Q = 1 - P.
        let mut sum = 1.0 / a;
        let mut term = sum;
        let mut ap = a;
        for _ in 0..10_000 {
            ap += 1.0;
            term *= x / ap;
            sum += term;
            if term.abs() < sum.abs() * 1e-17 {
                break;
            }
        }
        1.0 - sum * ln_pre.exp()
    } else {
        // Q by its continued fraction (modified Lentz).
        let tiny = 1e-300;
        let mut b = x + 1.0 - a;
        let mut c = 1.0 / tiny;
        let mut d = 1.0 / b;
        let mut h = d;
        for i in 1..10_000 {
            let an = -(i as f64) * (i as f64 - a);
            b += 2.0;
            d = an * d + b;
            if d.abs() < tiny {
                d = tiny;
            }
            c = b + an / c;
            if c.abs() < tiny {
                c = tiny;
            }
            d = 1.0 / d;
            let delta = d * c;
            h *= delta;
            if (delta - 1.0).abs() < 1e-16 {
                break;
            }
        }
        ln_pre.exp() * h
    }
}

/// The survival function of the chi-squared distribution with `df` degrees of freedom.
pub fn chi2_sf(x: f64, df: f64) -> f64 {
    if x <= 0.0 {
        return 1.0;
    }
    gamma_q(df / 2.0, x / 2.0)
}

/// A p-value as a reader expects it: "0.031", "< 0.001".
pub fn p_text(p: f64) -> String {
    if p < 0.001 {
        "< 0.001".into()
    } else {
        format!("{p:.3}")
    }
}

/// The regularised incomplete beta function I_x(a, b) (continued fraction,
/// Numerical Recipes' `betacf`, by the modified Lentz method).
fn beta_inc(a: f64, b: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let ln_front = ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * x.ln() + b * (1.0 - x).ln();
    // the continued fraction converges fast for x < (a + 1) / (a + b + 2)
    if x > (a + 1.0) / (a + b + 2.0) {
        return 1.0 - beta_inc(b, a, 1.0 - x);
    }
    let tiny = 1e-300;
    let (qab, qap, qam) = (a + b, a + 1.0, a - 1.0);
    let mut c = 1.0;
    let mut d = 1.0 - qab * x / qap;
    if d.abs() < tiny {
        d = tiny;
    }
    d = 1.0 / d;
    let mut h = d;
    // one step of the modified Lentz method: the new (d, c) for coefficient `aa`
    let step = |d: f64, c: f64, aa: f64| {
        let d = 1.0 + aa * d;
        let c = 1.0 + aa / c;
        (
            1.0 / if d.abs() < tiny { tiny } else { d },
            if c.abs() < tiny { tiny } else { c },
        )
    };
    for m in 1..300 {
        let m = f64::from(m);
        let m2 = 2.0 * m;
        (d, c) = step(d, c, m * (b - m) * x / ((qam + m2) * (a + m2)));
        h *= d * c;
        (d, c) = step(d, c, -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2)));
        let delta = d * c;
        h *= delta;
        if (delta - 1.0).abs() < 1e-16 {
            break;
        }
    }
    ln_front.exp() * h / a
}

/// The CDF of Student's t distribution with `df` degrees of freedom.
pub fn t_cdf(t: f64, df: f64) -> f64 {
    let x = df / (df + t * t);
    let tail = 0.5 * beta_inc(df / 2.0, 0.5, x);
    if t >= 0.0 { 1.0 - tail } else { tail }
}

/// The `p` quantile of Student's t with `df` degrees of freedom (bisection on
/// [`t_cdf`], to 1e-13).
pub fn t_quantile(p: f64, df: f64) -> f64 {
    if !(0.0 < p && p < 1.0) || df <= 0.0 {
        return f64::NAN;
    }
    if p < 0.5 {
        return -t_quantile(1.0 - p, df);
    }
    let (mut lo, mut hi) = (0.0, 1.0);
    while t_cdf(hi, df) < p {
        hi *= 2.0;
        if hi > 1e12 {
            return f64::INFINITY;
        }
    }
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if t_cdf(mid, df) < p {
            lo = mid;
        } else {
            hi = mid;
        }
        if hi - lo < 1e-13 {
            break;
        }
    }
    0.5 * (lo + hi)
}

/// A mean with its t-based 95% interval (`None` with fewer than two values).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct MeanCi {
    pub n: usize,
    pub mean: f64,
    /// Sample standard deviation (n - 1).
    pub sd: Option<f64>,
    pub ci95: Option<ConfidenceInterval>,
}

/// The mean of `values` with the 95% interval mean ± t(0.975, n-1) · sd / sqrt(n).
pub fn mean_ci(values: &[f64]) -> Option<MeanCi> {
    let n = values.len();
    if n == 0 {
        return None;
    }
    let mean = values.iter().sum::<f64>() / n as f64;
    if n < 2 {
        return Some(MeanCi {
            n,
            mean,
            sd: None,
            ci95: None,
        });
    }
    let sd = (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt();
    let half = t_quantile(0.975, (n - 1) as f64) * sd / (n as f64).sqrt();
    Some(MeanCi {
        n,
        mean,
        sd: Some(sd),
        ci95: Some(ConfidenceInterval {
            lower: mean - half,
            upper: mean + half,
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) {
        assert!((a - b).abs() <= tol, "{a} is not within {tol} of {b}");
    }

    #[test]
    fn wilson_matches_statsmodels() {
        // statsmodels.stats.proportion.proportion_confint(k, n, method="wilson")
        let ci = wilson(10, 10).unwrap();
        close(ci.lower, 0.722_467_200_137_110_6, 1e-12);
        close(ci.upper, 1.0, 1e-15);
        let ci = wilson(0, 10).unwrap();
        close(ci.lower, 0.0, 1e-15);
        close(ci.upper, 0.277_532_799_862_889_26, 1e-12);
        let ci = wilson(7, 20).unwrap();
        close(ci.lower, 0.181_191_824_101_082_03, 1e-12);
        close(ci.upper, 0.567_145_723_314_763_8, 1e-12);
        let ci = wilson(81, 263).unwrap();
        close(ci.lower, 0.255_288_519_878_274_2, 1e-12);
        close(ci.upper, 0.366_209_576_982_800_04, 1e-12);
        assert!(wilson(0, 0).is_none());
        assert!(wilson(3, 2).is_none());
    }

    #[test]
    fn wilson_by_hand() {
        // 1 of 2: centre (0.5 + z²/4)/(1 + z²/2) = 0.5; half-width
        // z/(1+z²/2) · sqrt(0.125 + z²/16) with z = 1.959964: 0.4054...
        let z = Z_95;
        let half = z / (1.0 + z * z / 2.0) * (0.125 + z * z / 16.0f64).sqrt();
        let ci = wilson(1, 2).unwrap();
        close(ci.lower, 0.5 - half, 1e-15);
        close(ci.upper, 0.5 + half, 1e-15);
        close(ci.lower, 0.094_531_205_734_230_68, 1e-12);
    }

    // A small sample with ties. The AUCs are scikit-learn's roc_auc_score; the DeLong
    // figures come from a direct numpy implementation of DeLong et al. (1988) with the
    // O(mn) placement values (not the midrank form used here), np.cov for the paired
    // covariance and scipy.stats.norm.sf for p.
    const TRUTH: [bool; 12] = [
        true, true, true, true, true, false, false, false, false, false, false, false,
    ];
    const A: [f64; 12] = [0.9, 0.8, 0.8, 0.6, 0.4, 0.7, 0.5, 0.4, 0.3, 0.2, 0.2, 0.1];
    const B: [f64; 12] = [0.7, 0.9, 0.3, 0.5, 0.6, 0.8, 0.4, 0.2, 0.6, 0.1, 0.3, 0.2];

    #[test]
    fn delong_matches_an_independent_computation() {
        let d = delong(&A, &TRUTH).unwrap();
        close(d.auc, 0.9, 1e-12);
        close(d.se, 0.090_726_470_872_655_47, 1e-12);
        close(d.ci.lower, 0.722_179_384_645_173_1, 1e-12);
        close(d.ci.upper, 1.0, 1e-12);
        let d = delong(&B, &TRUTH).unwrap();
        close(d.auc, 0.771_428_571_428_571_5, 1e-12);
        close(d.se, 0.143_213_840_398_310_14, 1e-12);
        close(d.ci.lower, 0.490_734_602_160_216_14, 1e-12);
        close(d.ci.upper, 1.0, 1e-15);
    }

    #[test]
    fn delong_paired_matches_an_independent_computation() {
        let p = delong_paired(&A, &B, &TRUTH).unwrap();
        close(p.difference, 0.128_571_428_571_428_56, 1e-12);
        close(p.se, 0.137_519_324_554_225_25, 1e-12);
        close(p.z, 0.934_933_537_436_998_9, 1e-11);
        close(p.p, 0.349_822_552_148_744_47, 1e-11);
        close(p.ci.lower, -0.140_961_494_733_127_63, 1e-12);
        close(p.ci.upper, 0.398_104_351_875_984_75, 1e-12);
        // The same score twice: no difference to test.
        assert!(delong_paired(&A, &A, &TRUTH).is_none());
    }

    #[test]
    fn delong_needs_both_classes() {
        assert!(delong(&[0.1, 0.2], &[true, true]).is_none());
        assert!(delong(&[0.1, f64::NAN], &[true, false]).is_none());
    }

    #[test]
    fn fleiss_kappa_matches_fleiss_1971() {
        // The worked example of Fleiss (1971) as printed in most textbooks (10 subjects,
        // 14 raters, 5 categories): kappa 0.20993 (statsmodels' fleiss_kappa).
        let table: Vec<Vec<u64>> = vec![
            vec![0, 0, 0, 0, 14],
            vec![0, 2, 6, 4, 2],
            vec![0, 0, 3, 5, 6],
            vec![0, 3, 9, 2, 0],
            vec![2, 2, 8, 1, 1],
            vec![7, 7, 0, 0, 0],
            vec![3, 2, 6, 3, 0],
            vec![2, 5, 3, 2, 2],
            vec![6, 5, 2, 1, 0],
            vec![0, 2, 2, 3, 7],
        ];
        close(
            fleiss_kappa(&table).unwrap(),
            0.209_930_704_421_955_22,
            1e-12,
        );
        // Unequal rater counts are refused.
        assert!(fleiss_kappa(&[vec![2, 0], vec![1, 0]]).is_none());
        // One category only: undefined.
        assert!(fleiss_kappa(&[vec![3, 0], vec![3, 0]]).is_none());
    }

    #[test]
    fn fleiss_kappa_of_two_raters_by_hand() {
        // 4 subjects, 2 raters, agreement on 3: P̄ = 3/4; categories 0: 3/8, 1: 5/8,
        // Pe = 9/64 + 25/64 = 34/64; kappa = (0.75 - 0.53125) / 0.46875 = 0.4666...
        let t = vec![vec![2, 0], vec![0, 2], vec![0, 2], vec![1, 1]];
        close(
            fleiss_kappa(&t).unwrap(),
            (0.75 - 34.0 / 64.0) / (30.0 / 64.0),
            1e-15,
        );
    }

    #[test]
    fn a_cluster_bootstrap_is_wider_than_an_independent_one_when_knees_agree() {
        // 30 patients whose two knees always agree with each other: resampling knees
        // as if independent halves the effective variance; resampling patients does not.
        let clusters: Vec<Vec<bool>> = (0..30).map(|i| vec![i % 3 == 0; 2]).collect();
        let share = |s: &[bool]| Some(s.iter().filter(|&&x| x).count() as f64 / s.len() as f64);
        let by_patient = cluster_bootstrap_ci(&clusters, share, 2000, 7).unwrap();
        let knees: Vec<Vec<bool>> = clusters.iter().flatten().map(|&k| vec![k]).collect();
        let by_knee = cluster_bootstrap_ci(&knees, share, 2000, 7).unwrap();
        let w_patient = by_patient.upper - by_patient.lower;
        let w_knee = by_knee.upper - by_knee.lower;
        assert!(w_patient > 1.25 * w_knee, "{w_patient} vs {w_knee}");
        // Both contain the observed share 1/3.
        assert!(by_patient.lower < 1.0 / 3.0 && 1.0 / 3.0 < by_patient.upper);
    }

    #[test]
    fn distribution_functions_match_scipy() {
        // scipy.stats.norm.cdf / .sf, scipy.special.erfc, scipy.stats.chi2.sf
        close(normal_cdf(1.959_963_984_540_054), 0.975, 1e-15);
        close(normal_cdf(-1.0), 0.158_655_253_931_457_05, 1e-15);
        close(normal_sf(5.0), 2.866_515_718_791_933e-7, 1e-20);
        close(erfc(0.5), 0.479_500_122_186_953_5, 1e-15);
        close(erfc(3.0), 2.209_049_699_858_544_5e-5, 1e-18);
        close(erfc(-1.2), 1.910_313_978_229_635_4, 1e-15);
        close(chi2_sf(3.84, 1.0), 0.050_043_521_248_705_19, 1e-13);
        close(chi2_sf(10.0, 3.0), 0.018_566_135_463_043_25, 1e-13);
        close(chi2_sf(0.5, 2.0), 0.778_800_783_071_404_9, 1e-14);
        close(chi2_sf(40.0, 4.0), 4.328_422_607_120_966e-8, 1e-19);
    }

    #[test]
    fn student_t_matches_scipy() {
        // scipy.stats.t.ppf(0.975, df) and t.cdf(1.5, df)
        for (df, q, c) in [
            (1.0, 12.706_204_736_174_694, 0.812_832_958_189_001_1),
            (2.0, 4.302_652_729_749_462, 0.863_803_437_554_499_4),
            (4.0, 2.776_445_105_197_793_4, 0.896),
            (9.0, 2.262_157_162_798_205, 0.916_074_671_971_462_5),
            (29.0, 2.045_229_642_132_703, 0.927_788_151_979_807_1),
            (120.0, 1.979_930_405_082_440_2, 0.931_879_582_384_640_1),
        ] {
            close(t_quantile(0.975, df), q, 1e-9);
            close(t_quantile(0.025, df), -q, 1e-9);
            close(t_cdf(1.5, df), c, 1e-12);
        }
    }

    #[test]
    fn mean_ci_matches_scipy() {
        // scipy.stats.t.interval(0.95, 4, loc=mean, scale=sd/sqrt(5)) of these values
        let m = mean_ci(&[-1.0, -2.5, 0.5, -3.0, -1.5]).unwrap();
        close(m.mean, -1.5, 1e-15);
        let ci = m.ci95.unwrap();
        close(ci.lower, -3.200_218_451_645_639, 1e-9);
        close(ci.upper, 0.200_218_451_645_639_12, 1e-9);
        let one = mean_ci(&[2.0]).unwrap();
        assert_eq!((one.n, one.mean, one.ci95), (1, 2.0, None));
        assert!(mean_ci(&[]).is_none());
    }
}
