//! Agreement statistics between two raters on an ordinal scale (issue 4, item 7).
//!
//! Pure domain code: no I/O. The caller (CLI, TUI) builds the paired ratings and
//! names the raters; this module only counts and computes.
//!
//! # Input
//!
//! Ratings are category indices `0..k` on an ordinal scale with `k` categories:
//! KL grade 0..=4 (`k = 5`), OP impression normal / osteopenia / osteoporosis as
//! 0 / 1 / 2 (`k = 3`). A sample is a slice of pairs `(a, b)`, one per case, where
//! `a` is the first rater (rows of the confusion matrix; for sensitivity and
//! specificity the rater under test) and `b` the second rater (columns; the
//! reference, e.g. the final grade). Cases where either side is missing or
//! "not assessable" must be left out by the caller before calling anything here
//! ([`complete_pairs`] does that for `Option` ratings); they are not a category.
//!
//! # Degenerate cases
//!
//! No statistic ever returns NaN or infinity (JSON has no NaN; serde_json would
//! silently print `null`), so "undefined" is always an explicit `None`:
//! - an empty sample (n = 0) gives `None` for every statistic;
//! - kappa (plain or weighted) is `None` when its chance term leaves nothing to
//!   agree beyond chance, i.e. `1 - p_e = 0` (plain) or `sum(w * E) = 0`
//!   (weighted). Both happen exactly when both raters put every case in one and
//!   the same category;
//! - sensitivity is `None` when the reference has no positive case, specificity
//!   when it has no negative case;
//! - a bootstrap resample on which the statistic is undefined is skipped; when
//!   fewer than half of the resamples are defined the interval is `None`.
//!
//! All counts are kept as integers and each statistic is formed from integer
//! sums with a single final division, so the "undefined" tests are exact.

use super::stats::Proportion;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

/// Default number of bootstrap resamples used by [`ReportOptions::default`].
pub const DEFAULT_RESAMPLES: usize = 2000;

/// Default seed of the bootstrap RNG used by [`ReportOptions::default`].
pub const DEFAULT_SEED: u64 = 20_261_127;

/// Why a sample could not be tabulated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AgreementError {
    /// Fewer than two categories: kappa and the weights are meaningless.
    #[error("an agreement scale needs at least 2 categories, got {0}")]
    TooFewCategories(usize),
    /// A rating outside `0..k`.
    #[error("rating {rating} in pair {index} is outside the scale 0..{k}")]
    RatingOutOfRange { index: usize, rating: u8, k: usize },
    /// A positive-from threshold that would make every case positive or none.
    #[error("threshold {threshold} must lie in 1..{k} (scale 0..{k})")]
    ThresholdOutOfRange { threshold: u8, k: usize },
}

/// Disagreement weights for [`ConfusionMatrix::weighted_kappa`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Weights {
    /// `w_ij = |i - j| / (k - 1)`.
    Linear,
    /// `w_ij = (i - j)^2 / (k - 1)^2` (the usual choice for KL grades).
    Quadratic,
}

impl Weights {
    /// Un-normalised integer disagreement weight: `|i - j|` or `(i - j)^2`.
    /// The normalisation by `(k - 1)` or `(k - 1)^2` cancels in the kappa ratio.
    fn integer(self, i: usize, j: usize) -> u128 {
        let d = i.abs_diff(j) as u128;
        match self {
            Weights::Linear => d,
            Weights::Quadratic => d * d,
        }
    }
}

/// Keeps the cases where both ratings are present.
///
/// Use it to drop reads that are missing or "not assessable" (map those to
/// `None`) before computing agreement.
pub fn complete_pairs<I>(ratings: I) -> Vec<(u8, u8)>
where
    I: IntoIterator<Item = (Option<u8>, Option<u8>)>,
{
    ratings
        .into_iter()
        .filter_map(|(a, b)| Some((a?, b?)))
        .collect()
}

/// A `k x k` table of counts: `counts[i][j]` is the number of cases the first
/// rater put in category `i` and the second rater in category `j`.
///
/// Serialises as `{"k": 5, "counts": [[..], ..]}` (rows = first rater).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConfusionMatrix {
    k: usize,
    counts: Vec<Vec<u64>>,
}

impl ConfusionMatrix {
    /// Tabulates `pairs` on a scale of `k` categories (`0..k`).
    ///
    /// Errors when `k < 2` or a rating is `>= k`. An empty slice gives an all-zero
    /// table (n = 0) whose statistics are all `None`.
    pub fn new(k: usize, pairs: &[(u8, u8)]) -> Result<Self, AgreementError> {
        if k < 2 {
            return Err(AgreementError::TooFewCategories(k));
        }
        let mut counts = vec![vec![0u64; k]; k];
        for (index, &(a, b)) in pairs.iter().enumerate() {
            for rating in [a, b] {
                if usize::from(rating) >= k {
                    return Err(AgreementError::RatingOutOfRange { index, rating, k });
                }
            }
            counts[usize::from(a)][usize::from(b)] += 1;
        }
        Ok(Self { k, counts })
    }

    /// Number of categories.
    pub fn k(&self) -> usize {
        self.k
    }

    /// The counts, rows = first rater, columns = second rater.
    pub fn counts(&self) -> &[Vec<u64>] {
        &self.counts
    }

    /// Number of cases `n` (sum of all cells).
    pub fn n(&self) -> u64 {
        self.counts.iter().flatten().sum()
    }

    /// Row sums: how often the first rater used each category.
    pub fn row_totals(&self) -> Vec<u64> {
        self.counts.iter().map(|row| row.iter().sum()).collect()
    }

    /// Column sums: how often the second rater used each category.
    pub fn column_totals(&self) -> Vec<u64> {
        (0..self.k)
            .map(|j| self.counts.iter().map(|row| row[j]).sum())
            .collect()
    }

    /// Number of cases on the diagonal (both raters agree exactly).
    pub fn agreements(&self) -> u64 {
        (0..self.k).map(|i| self.counts[i][i]).sum()
    }

    /// Observed proportion of exact agreement `p_o = sum_i O_ii / n`, in `[0, 1]`
    /// (a proportion: multiply by 100 to print a percentage). `None` when n = 0.
    pub fn percent_agreement(&self) -> Option<f64> {
        let n = self.n();
        (n > 0).then(|| self.agreements() as f64 / n as f64)
    }

    /// Cohen's (1960) kappa: `(p_o - p_e) / (1 - p_e)` with
    /// `p_o = sum_i O_ii / n` and `p_e = sum_i r_i c_i / n^2`
    /// (`r`, `c` the row and column totals).
    ///
    /// Computed exactly as `(n * sum_i O_ii - sum_i r_i c_i) / (n^2 - sum_i r_i c_i)`.
    /// `None` when n = 0 or `p_e = 1` (both raters used one and the same
    /// category for every case: kappa is undefined, not 1).
    pub fn cohen_kappa(&self) -> Option<f64> {
        let n = u128::from(self.n());
        if n == 0 {
            return None;
        }
        let rows = self.row_totals();
        let cols = self.column_totals();
        let chance: u128 = rows
            .iter()
            .zip(&cols)
            .map(|(&r, &c)| u128::from(r) * u128::from(c))
            .sum();
        let denominator = n * n - chance;
        if denominator == 0 {
            return None;
        }
        let numerator = (n * u128::from(self.agreements())) as f64 - chance as f64;
        Some(numerator / denominator as f64)
    }

    /// Weighted kappa (Cohen 1968): `1 - sum_ij w_ij O_ij / sum_ij w_ij E_ij` with
    /// `E_ij = r_i c_j / n` the counts expected by chance and disagreement weights
    /// `w_ij = (i - j)^2 / (k - 1)^2` ([`Weights::Quadratic`]) or
    /// `|i - j| / (k - 1)` ([`Weights::Linear`]).
    ///
    /// The weights are indexed by category (`0..k`), so a category neither rater
    /// used still counts in the distances: this matches scikit-learn's
    /// `cohen_kappa_score(a, b, labels=list(range(k)), weights=...)`.
    ///
    /// Computed exactly as `1 - n * sum w O / sum w r_i c_j` with integer weights.
    /// `None` when n = 0 or `sum w E = 0` (both raters used one and the same
    /// category for every case).
    pub fn weighted_kappa(&self, weights: Weights) -> Option<f64> {
        let n = u128::from(self.n());
        if n == 0 {
            return None;
        }
        let rows = self.row_totals();
        let cols = self.column_totals();
        let mut observed: u128 = 0;
        let mut expected_times_n: u128 = 0;
        for (i, (row, &r)) in self.counts.iter().zip(&rows).enumerate() {
            for (j, (&o, &c)) in row.iter().zip(&cols).enumerate() {
                let w = weights.integer(i, j);
                observed += w * u128::from(o);
                expected_times_n += w * u128::from(r) * u128::from(c);
            }
        }
        if expected_times_n == 0 {
            return None;
        }
        Some(1.0 - (n * observed) as f64 / expected_times_n as f64)
    }

    /// Sensitivity and specificity of the first rater against the second, with
    /// "positive" meaning a category `>= threshold` (OA: `threshold = 2`).
    ///
    /// Errors unless `1 <= threshold < k`.
    pub fn binary(&self, threshold: u8) -> Result<BinaryStats, AgreementError> {
        let t = usize::from(threshold);
        if t == 0 || t >= self.k {
            return Err(AgreementError::ThresholdOutOfRange {
                threshold,
                k: self.k,
            });
        }
        let mut stats = BinaryStats {
            threshold,
            true_positive: 0,
            false_negative: 0,
            true_negative: 0,
            false_positive: 0,
        };
        for (i, row) in self.counts.iter().enumerate() {
            for (j, &count) in row.iter().enumerate() {
                match (i >= t, j >= t) {
                    (true, true) => stats.true_positive += count,
                    (false, true) => stats.false_negative += count,
                    (false, false) => stats.true_negative += count,
                    (true, false) => stats.false_positive += count,
                }
            }
        }
        Ok(stats)
    }
}

/// A dichotomised comparison: the first rater is the test, the second the
/// reference; a case is positive when its category is `>= threshold`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct BinaryStats {
    /// Positive means category `>= threshold` (OA: KL >= 2).
    pub threshold: u8,
    /// Test positive, reference positive.
    pub true_positive: u64,
    /// Test negative, reference positive.
    pub false_negative: u64,
    /// Test negative, reference negative.
    pub true_negative: u64,
    /// Test positive, reference negative.
    pub false_positive: u64,
}

impl BinaryStats {
    /// Dichotomises `pairs` at `threshold` (first = test, second = reference).
    /// Any `threshold >= 1` is accepted here since no scale is given; use
    /// [`ConfusionMatrix::binary`] to check it against `k`.
    pub fn new(pairs: &[(u8, u8)], threshold: u8) -> Self {
        let mut stats = Self {
            threshold,
            true_positive: 0,
            false_negative: 0,
            true_negative: 0,
            false_positive: 0,
        };
        for &(a, b) in pairs {
            match (a >= threshold, b >= threshold) {
                (true, true) => stats.true_positive += 1,
                (false, true) => stats.false_negative += 1,
                (false, false) => stats.true_negative += 1,
                (true, false) => stats.false_positive += 1,
            }
        }
        stats
    }

    /// `TP / (TP + FN)`; `None` when the reference has no positive case.
    pub fn sensitivity(&self) -> Option<f64> {
        ratio(self.true_positive, self.true_positive + self.false_negative)
    }

    /// `TN / (TN + FP)`; `None` when the reference has no negative case.
    pub fn specificity(&self) -> Option<f64> {
        ratio(self.true_negative, self.true_negative + self.false_positive)
    }
}

fn ratio(numerator: u64, denominator: u64) -> Option<f64> {
    (denominator > 0).then(|| numerator as f64 / denominator as f64)
}

/// A percentile bootstrap confidence interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ConfidenceInterval {
    pub lower: f64,
    pub upper: f64,
}

/// Percentile bootstrap 95% confidence interval of `statistic` over `pairs`.
///
/// Draws `resamples` samples of size n with replacement from `pairs`, using
/// `StdRng::seed_from_u64(seed)` (same seed, same input, same `rand` version →
/// same interval), evaluates `statistic` on each, skips resamples where it is
/// `None` (or not finite), and returns the 2.5th and 97.5th percentiles of the
/// remaining values (linear interpolation between order statistics, as numpy's
/// default `percentile`).
///
/// `None` when `pairs` is empty, `resamples` is 0, or fewer than half of the
/// resamples give a defined value.
pub fn bootstrap_ci<F>(
    pairs: &[(u8, u8)],
    statistic: F,
    resamples: usize,
    seed: u64,
) -> Option<ConfidenceInterval>
where
    F: Fn(&[(u8, u8)]) -> Option<f64>,
{
    let n = pairs.len();
    if n == 0 || resamples == 0 {
        return None;
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let mut sample = Vec::with_capacity(n);
    let mut values = Vec::with_capacity(resamples);
    for _ in 0..resamples {
        sample.clear();
        sample.extend((0..n).map(|_| pairs[rng.random_range(0..n)]));
        if let Some(v) = statistic(&sample).filter(|v| v.is_finite()) {
            values.push(v);
        }
    }
    percentile_interval(values, resamples)
}

/// A statistic of a confusion matrix, as [`AgreementReport::compute`] bootstraps it.
type MatrixStatistic<'a> = &'a dyn Fn(&ConfusionMatrix) -> Option<f64>;

/// [`bootstrap_ci`] for several statistics of the confusion matrix at once: the
/// same draws as `bootstrap_ci(pairs, .., resamples, seed)` (so the same
/// intervals), but each resample is tabulated straight into one reused `k x k`
/// table instead of a copied sample, and it is drawn once for all statistics.
/// `pairs` must already be validated against `k`.
fn bootstrap_matrix_cis(
    k: usize,
    pairs: &[(u8, u8)],
    statistics: &[MatrixStatistic<'_>],
    resamples: usize,
    seed: u64,
) -> Vec<Option<ConfidenceInterval>> {
    let n = pairs.len();
    if n == 0 || resamples == 0 {
        return vec![None; statistics.len()];
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let mut matrix = ConfusionMatrix {
        k,
        counts: vec![vec![0; k]; k],
    };
    let mut values = vec![Vec::with_capacity(resamples); statistics.len()];
    for _ in 0..resamples {
        matrix.counts.iter_mut().flatten().for_each(|c| *c = 0);
        for _ in 0..n {
            let (a, b) = pairs[rng.random_range(0..n)];
            matrix.counts[usize::from(a)][usize::from(b)] += 1;
        }
        for (statistic, values) in statistics.iter().zip(&mut values) {
            if let Some(v) = statistic(&matrix).filter(|v| v.is_finite()) {
                values.push(v);
            }
        }
    }
    values
        .into_iter()
        .map(|v| percentile_interval(v, resamples))
        .collect()
}

/// The 2.5th and 97.5th percentiles of the defined bootstrap `values`, or `None`
/// when fewer than half of the `resamples` gave one.
pub(crate) fn percentile_interval(
    mut values: Vec<f64>,
    resamples: usize,
) -> Option<ConfidenceInterval> {
    if values.is_empty() || values.len() * 2 < resamples {
        return None;
    }
    values.sort_by(f64::total_cmp);
    Some(ConfidenceInterval {
        lower: percentile(&values, 0.025),
        upper: percentile(&values, 0.975),
    })
}

/// Percentile of sorted, non-empty `values` with linear interpolation
/// (`h = (m - 1) p`), numpy's default method.
fn percentile(values: &[f64], p: f64) -> f64 {
    let h = (values.len() - 1) as f64 * p;
    let lo = h.floor() as usize;
    let hi = h.ceil() as usize;
    values[lo] + (h - lo as f64) * (values[hi] - values[lo])
}

/// A point estimate with its bootstrap 95% interval; either may be `None`
/// (undefined), never NaN.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Estimate {
    pub value: Option<f64>,
    pub ci95: Option<ConfidenceInterval>,
}

/// Settings for [`AgreementReport::compute`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportOptions {
    /// Dichotomise at this category for sensitivity / specificity (`Some(2)` for
    /// OA = KL >= 2); `None` leaves them out.
    pub positive_threshold: Option<u8>,
    /// Bootstrap resamples per interval; 0 computes no intervals.
    pub resamples: usize,
    /// Seed of the bootstrap RNG.
    pub seed: u64,
}

impl Default for ReportOptions {
    fn default() -> Self {
        Self {
            positive_threshold: None,
            resamples: DEFAULT_RESAMPLES,
            seed: DEFAULT_SEED,
        }
    }
}

/// Sensitivity and specificity at a threshold, with the counts behind them.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct BinaryReport {
    #[serde(flatten)]
    pub counts: BinaryStats,
    pub sensitivity: Estimate,
    pub specificity: Estimate,
    /// The same proportions with Wilson score 95% intervals.
    pub sensitivity_wilson: Proportion,
    pub specificity_wilson: Proportion,
}

/// Everything `marrow agreement` shows for one pair of raters (reader vs
/// reader, or a reader vs the final grade). The first rater is the rows of the
/// confusion matrix and the "test" side of sensitivity / specificity; the second
/// is the columns and the reference. The caller adds the raters' names.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AgreementReport {
    /// Number of cases with both ratings present.
    pub n: u64,
    /// Proportion of exact agreement, in `[0, 1]`.
    pub percent_agreement: Estimate,
    /// The same with its counts and Wilson score 95% interval.
    pub percent_agreement_wilson: Proportion,
    /// Cohen's kappa (unweighted).
    pub cohen_kappa: Estimate,
    /// Quadratic-weighted kappa.
    pub quadratic_weighted_kappa: Estimate,
    /// Present when [`ReportOptions::positive_threshold`] is set.
    pub binary: Option<BinaryReport>,
    pub confusion_matrix: ConfusionMatrix,
}

impl AgreementReport {
    /// Computes all statistics of `pairs` on a scale of `k` categories, each with
    /// a bootstrap 95% interval (every interval uses the same seed, hence the
    /// same resamples, and equals what [`bootstrap_ci`] gives for that seed).
    ///
    /// Errors as [`ConfusionMatrix::new`] and [`ConfusionMatrix::binary`] do.
    /// Cost is `O(resamples * n)`: about 25 ms in a release build (0.6 s in a
    /// debug build) for n = 2000 and 2000 resamples.
    pub fn compute(
        k: usize,
        pairs: &[(u8, u8)],
        options: &ReportOptions,
    ) -> Result<Self, AgreementError> {
        let matrix = ConfusionMatrix::new(k, pairs)?;
        let binary_counts = options
            .positive_threshold
            .map(|t| matrix.binary(t))
            .transpose()?;

        let threshold = binary_counts.map(|b| b.threshold);

        let sensitivity =
            |m: &ConfusionMatrix| m.binary(threshold?).ok().and_then(|b| b.sensitivity());
        let specificity =
            |m: &ConfusionMatrix| m.binary(threshold?).ok().and_then(|b| b.specificity());
        let statistics: [MatrixStatistic<'_>; 5] = [
            &|m| m.percent_agreement(),
            &|m| m.cohen_kappa(),
            &|m| m.weighted_kappa(Weights::Quadratic),
            &sensitivity,
            &specificity,
        ];
        let statistics = if threshold.is_some() {
            &statistics[..]
        } else {
            &statistics[..3]
        };
        let intervals = bootstrap_matrix_cis(k, pairs, statistics, options.resamples, options.seed);
        let estimates: Vec<Estimate> = statistics
            .iter()
            .zip(intervals)
            .map(|(statistic, ci95)| {
                let value = statistic(&matrix);
                Estimate {
                    value,
                    // A statistic undefined on the whole sample gets no interval.
                    ci95: value.and(ci95),
                }
            })
            .collect();

        Ok(Self {
            n: matrix.n(),
            percent_agreement: estimates[0],
            percent_agreement_wilson: Proportion::new(matrix.agreements(), matrix.n()),
            cohen_kappa: estimates[1],
            quadratic_weighted_kappa: estimates[2],
            binary: binary_counts.map(|counts| BinaryReport {
                counts,
                sensitivity: estimates[3],
                specificity: estimates[4],
                sensitivity_wilson: Proportion::new(
                    counts.true_positive,
                    counts.true_positive + counts.false_negative,
                ),
                specificity_wilson: Proportion::new(
                    counts.true_negative,
                    counts.true_negative + counts.false_positive,
                ),
            }),
            confusion_matrix: matrix,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EPS: f64 = 1e-12;

    fn zip(a: &[u8], b: &[u8]) -> Vec<(u8, u8)> {
        assert_eq!(a.len(), b.len());
        a.iter().copied().zip(b.iter().copied()).collect()
    }

    fn close(actual: Option<f64>, expected: f64) {
        let actual = actual.expect("statistic should be defined");
        assert!(
            (actual - expected).abs() < EPS,
            "got {actual}, expected {expected}"
        );
    }

    /// Builds pairs from the cells of a table (rows = first rater).
    fn from_table(table: &[&[u64]]) -> Vec<(u8, u8)> {
        let mut pairs = Vec::new();
        for (i, row) in table.iter().enumerate() {
            for (j, &count) in row.iter().enumerate() {
                for _ in 0..count {
                    pairs.push((i as u8, j as u8));
                }
            }
        }
        pairs
    }

    // ---- (1) hand-worked examples ------------------------------------------------

    /// The 2x2 example of the Wikipedia article "Cohen's kappa": 50 proposals,
    /// 1 = yes, 0 = no. Both yes 20, A yes / B no 5, A no / B yes 10, both no 15.
    ///   p_o = (20 + 15) / 50 = 0.7
    ///   A says yes 25/50 = 0.5, B says yes 30/50 = 0.6
    ///   p_e = 0.5 * 0.6 + 0.5 * 0.4 = 0.5
    ///   kappa = (0.7 - 0.5) / (1 - 0.5) = 0.4
    /// With k = 2 the weights are 0 on the diagonal and 1 off it, so weighted
    /// kappa (either kind) equals kappa.
    /// With B as reference and yes positive: TP 20, FN 10, TN 15, FP 5,
    ///   sensitivity = 20 / 30 = 2/3, specificity = 15 / 20 = 0.75.
    #[test]
    fn textbook_two_by_two() {
        // rows A (0 = no, 1 = yes), columns B
        let pairs = from_table(&[&[15, 10], &[5, 20]]);
        let m = ConfusionMatrix::new(2, &pairs).unwrap();
        assert_eq!(m.n(), 50);
        assert_eq!(m.counts(), &[vec![15, 10], vec![5, 20]]);
        close(m.percent_agreement(), 0.7);
        close(m.cohen_kappa(), 0.4);
        close(m.weighted_kappa(Weights::Quadratic), 0.4);
        close(m.weighted_kappa(Weights::Linear), 0.4);
        let b = m.binary(1).unwrap();
        assert_eq!(
            (
                b.true_positive,
                b.false_negative,
                b.true_negative,
                b.false_positive
            ),
            (20, 10, 15, 5)
        );
        close(b.sensitivity(), 2.0 / 3.0);
        close(b.specificity(), 0.75);
        assert_eq!(BinaryStats::new(&pairs, 1), b);
    }

    /// Three categories, six cases: a = [0,0,1,1,2,2], b = [0,1,1,2,2,1].
    ///   O = [[1,1,0],[0,1,1],[0,1,1]], rows r = [2,2,2], columns c = [1,3,2], n = 6
    ///   p_o = 3/6 = 0.5; p_e = (2*1 + 2*3 + 2*2)/36 = 1/3
    ///   kappa = (1/2 - 1/3) / (2/3) = 0.25
    /// Expected counts E_ij = r_i c_j / n = c_j / 3.
    /// Quadratic (i-j)^2 (the 1/(k-1)^2 factor cancels):
    ///   sum w O = 1 + 1 + 1 = 3 (cells (0,1), (1,2), (2,1))
    ///   column sums of w: j=0: 0+1+4 = 5, j=1: 1+0+1 = 2, j=2: 4+1+0 = 5
    ///   sum w E = (1*5 + 3*2 + 2*5) / 3 = 7;  kappa_q = 1 - 3/7 = 4/7
    /// Linear |i-j|:
    ///   sum w O = 3; column sums of w: 3, 2, 3; sum w E = (3 + 6 + 6)/3 = 5
    ///   kappa_l = 1 - 3/5 = 0.4
    /// Positive = category >= 1, b the reference: TP 4 (cells (1,1),(1,2),(2,1),(2,2)),
    ///   FN 1 (cell (0,1)), TN 1 (cell (0,0)), FP 0: sensitivity 0.8, specificity 1.
    #[test]
    fn hand_worked_three_categories() {
        let pairs = zip(&[0, 0, 1, 1, 2, 2], &[0, 1, 1, 2, 2, 1]);
        let m = ConfusionMatrix::new(3, &pairs).unwrap();
        assert_eq!(m.counts(), &[vec![1, 1, 0], vec![0, 1, 1], vec![0, 1, 1]]);
        assert_eq!(m.row_totals(), vec![2, 2, 2]);
        assert_eq!(m.column_totals(), vec![1, 3, 2]);
        close(m.percent_agreement(), 0.5);
        close(m.cohen_kappa(), 0.25);
        close(m.weighted_kappa(Weights::Quadratic), 4.0 / 7.0);
        close(m.weighted_kappa(Weights::Linear), 0.4);
        let b = m.binary(1).unwrap();
        assert_eq!(
            (
                b.true_positive,
                b.false_negative,
                b.true_negative,
                b.false_positive
            ),
            (4, 1, 1, 0)
        );
        close(b.sensitivity(), 0.8);
        close(b.specificity(), 1.0);
    }

    /// Perfect agreement over several categories: kappa = 1. Complete
    /// disagreement on two categories (a = not b, balanced): p_o = 0,
    /// p_e = 0.5, kappa = (0 - 0.5)/(1 - 0.5) = -1.
    #[test]
    fn perfect_and_inverse_agreement() {
        let same = zip(&[0, 1, 2, 3, 4, 2], &[0, 1, 2, 3, 4, 2]);
        let m = ConfusionMatrix::new(5, &same).unwrap();
        close(m.cohen_kappa(), 1.0);
        close(m.weighted_kappa(Weights::Quadratic), 1.0);
        close(m.percent_agreement(), 1.0);

        let inverse = zip(&[0, 1, 0, 1], &[1, 0, 1, 0]);
        let m = ConfusionMatrix::new(2, &inverse).unwrap();
        close(m.percent_agreement(), 0.0);
        close(m.cohen_kappa(), -1.0);
    }

    // ---- (2) values computed independently with scikit-learn ---------------------
    //
    // scikit-learn 1.9.1, numpy 2.4.6 (Python 3), for each vector pair a, b on a
    // scale of k categories and positive threshold t:
    //   from sklearn.metrics import cohen_kappa_score, confusion_matrix, recall_score
    //   L = list(range(k))
    //   cohen_kappa_score(a, b, labels=L)
    //   cohen_kappa_score(a, b, labels=L, weights="quadratic")
    //   cohen_kappa_score(a, b, labels=L, weights="linear")
    //   confusion_matrix(a, b, labels=L)
    //   ref = [int(x >= t) for x in b]; pred = [int(x >= t) for x in a]
    //   recall_score(ref, pred)               # sensitivity
    //   recall_score(ref, pred, pos_label=0)  # specificity
    //   confusion_matrix(ref, pred, labels=[0, 1])  # [[TN, FP], [FN, TP]]
    //   float(np.mean(np.array(a) == np.array(b)))  # percent agreement
    // The printed repr() values are pasted below.

    struct Sklearn {
        a: &'static [u8],
        b: &'static [u8],
        k: usize,
        threshold: u8,
        kappa: f64,
        quadratic: f64,
        linear: f64,
        matrix: &'static [&'static [u64]],
        /// [TN, FP, FN, TP]
        binary: [u64; 4],
        sensitivity: f64,
        specificity: f64,
        agreement: f64,
    }

    fn check_sklearn(case: &Sklearn) {
        let pairs = zip(case.a, case.b);
        let m = ConfusionMatrix::new(case.k, &pairs).unwrap();
        let expected: Vec<Vec<u64>> = case.matrix.iter().map(|r| r.to_vec()).collect();
        assert_eq!(m.counts(), expected.as_slice());
        close(m.percent_agreement(), case.agreement);
        close(m.cohen_kappa(), case.kappa);
        close(m.weighted_kappa(Weights::Quadratic), case.quadratic);
        close(m.weighted_kappa(Weights::Linear), case.linear);
        let b = m.binary(case.threshold).unwrap();
        assert_eq!(
            [
                b.true_negative,
                b.false_positive,
                b.false_negative,
                b.true_positive
            ],
            case.binary
        );
        close(b.sensitivity(), case.sensitivity);
        close(b.specificity(), case.specificity);
        assert_eq!(BinaryStats::new(&pairs, case.threshold), b);

        // Kappa and weighted kappa are symmetric in the raters.
        let swapped: Vec<(u8, u8)> = pairs.iter().map(|&(a, b)| (b, a)).collect();
        let s = ConfusionMatrix::new(case.k, &swapped).unwrap();
        close(s.cohen_kappa(), case.kappa);
        close(s.weighted_kappa(Weights::Quadratic), case.quadratic);

        // The report carries the same point values.
        let options = ReportOptions {
            positive_threshold: Some(case.threshold),
            resamples: 200,
            seed: 7,
        };
        let report = AgreementReport::compute(case.k, &pairs, &options).unwrap();
        assert_eq!(report.n, pairs.len() as u64);
        close(report.cohen_kappa.value, case.kappa);
        close(report.quadratic_weighted_kappa.value, case.quadratic);
        close(report.percent_agreement.value, case.agreement);
        let binary = report.binary.unwrap();
        close(binary.sensitivity.value, case.sensitivity);
        close(binary.specificity.value, case.specificity);
        assert_eq!(report.confusion_matrix, m);
    }

    /// 40 KL pairs (numpy default_rng(20261127): a drawn from 0..=4, b = a plus
    /// noise in {-1, 0, 0, 0, 1, 2}, clipped to 0..=4). OA = KL >= 2.
    #[test]
    fn sklearn_forty_kl_pairs() {
        check_sklearn(&Sklearn {
            a: &[
                1, 0, 1, 1, 4, 0, 2, 3, 1, 2, 0, 1, 4, 0, 1, 0, 3, 3, 2, 2, 4, 0, 1, 2, 2, 0, 2, 0,
                0, 4, 1, 0, 3, 0, 1, 1, 1, 3, 0, 3,
            ],
            b: &[
                1, 0, 1, 2, 4, 2, 2, 3, 1, 2, 0, 1, 4, 0, 1, 2, 2, 3, 2, 3, 4, 2, 1, 2, 2, 0, 3, 2,
                2, 4, 1, 2, 3, 2, 1, 1, 1, 3, 0, 4,
            ],
            k: 5,
            threshold: 2,
            kappa: 0.6238244514106583,
            quadratic: 0.7515060240963856,
            linear: 0.6738197424892705,
            matrix: &[
                &[5, 0, 7, 0, 0],
                &[0, 10, 1, 0, 0],
                &[0, 0, 5, 2, 0],
                &[0, 0, 1, 4, 1],
                &[0, 0, 0, 0, 4],
            ],
            binary: [15, 0, 8, 17],
            sensitivity: 0.68,
            specificity: 1.0,
            agreement: 0.7,
        });
    }

    /// The first rater never uses KL 3 or 4 (empty rows), the second uses all.
    #[test]
    fn sklearn_categories_unused_by_one_rater() {
        check_sklearn(&Sklearn {
            a: &[0, 0, 1, 1, 2, 2, 2, 1, 0, 2, 1, 2, 0, 1, 2, 2],
            b: &[0, 1, 1, 2, 3, 4, 2, 1, 0, 3, 2, 4, 1, 1, 2, 3],
            k: 5,
            threshold: 2,
            kappa: 0.2615384615384615,
            quadratic: 0.6407185628742516,
            linear: 0.45341614906832295,
            matrix: &[
                &[2, 2, 0, 0, 0],
                &[0, 3, 2, 0, 0],
                &[0, 0, 2, 3, 2],
                &[0, 0, 0, 0, 0],
                &[0, 0, 0, 0, 0],
            ],
            binary: [7, 0, 2, 7],
            sensitivity: 0.7777777777777778,
            specificity: 1.0,
            agreement: 0.4375,
        });
    }

    /// KL 2 is used by neither rater. The distances still count it: sklearn
    /// without `labels=` gives a quadratic kappa of 0.7857142857142857 here
    /// (it re-indexes the labels it sees as 0..3); with `labels=range(5)` it
    /// gives 0.8421052631578947, which is what this module computes.
    #[test]
    fn sklearn_category_unused_by_both_raters() {
        check_sklearn(&Sklearn {
            a: &[0, 1, 3, 4, 4, 3, 1, 0, 1, 3, 4, 0],
            b: &[1, 1, 3, 3, 4, 4, 0, 0, 3, 3, 4, 1],
            k: 5,
            threshold: 2,
            kappa: 0.33333333333333337,
            quadratic: 0.8421052631578947,
            linear: 0.6585365853658536,
            matrix: &[
                &[1, 2, 0, 0, 0],
                &[1, 1, 0, 1, 0],
                &[0, 0, 0, 0, 0],
                &[0, 0, 0, 2, 1],
                &[0, 0, 0, 1, 2],
            ],
            binary: [5, 0, 1, 6],
            sensitivity: 0.8571428571428571,
            specificity: 1.0,
            agreement: 0.5,
        });
    }

    /// OP impression, 0 normal / 1 osteopenia / 2 osteoporosis (k = 3);
    /// positive = osteoporosis (>= 2).
    #[test]
    fn sklearn_op_impression() {
        check_sklearn(&Sklearn {
            a: &[0, 1, 2, 2, 1, 0, 0, 1, 2, 1, 1, 0, 2, 2, 0, 1, 1, 2, 0, 1],
            b: &[0, 1, 2, 1, 1, 0, 1, 1, 2, 2, 1, 0, 2, 2, 0, 0, 1, 2, 1, 1],
            k: 3,
            threshold: 2,
            kappa: 0.6183206106870229,
            quadratic: 0.782608695652174,
            linear: 0.6951219512195121,
            matrix: &[&[4, 2, 0], &[1, 6, 1], &[0, 1, 5]],
            binary: [13, 1, 1, 5],
            sensitivity: 0.8333333333333334,
            specificity: 0.9285714285714286,
            agreement: 0.75,
        });
    }

    /// The hand-worked 3-category example, also through sklearn
    /// (kappa 0.2499999999999999, quadratic 0.5714285714285714, linear 0.4).
    #[test]
    fn sklearn_hand_worked_example() {
        check_sklearn(&Sklearn {
            a: &[0, 0, 1, 1, 2, 2],
            b: &[0, 1, 1, 2, 2, 1],
            k: 3,
            threshold: 1,
            kappa: 0.2499999999999999,
            quadratic: 0.5714285714285714,
            linear: 0.4,
            matrix: &[&[1, 1, 0], &[0, 1, 1], &[0, 1, 1]],
            binary: [1, 0, 1, 4],
            sensitivity: 0.8,
            specificity: 1.0,
            agreement: 0.5,
        });
    }

    // ---- input validation and degenerate cases -----------------------------------

    #[test]
    fn rejects_bad_scale_rating_and_threshold() {
        assert_eq!(
            ConfusionMatrix::new(1, &[]),
            Err(AgreementError::TooFewCategories(1))
        );
        assert_eq!(
            ConfusionMatrix::new(5, &[(0, 0), (2, 5)]),
            Err(AgreementError::RatingOutOfRange {
                index: 1,
                rating: 5,
                k: 5
            })
        );
        let m = ConfusionMatrix::new(5, &[(0, 0)]).unwrap();
        assert!(m.binary(0).is_err());
        assert!(m.binary(5).is_err());
        assert!(m.binary(4).is_ok());
        let options = ReportOptions {
            positive_threshold: Some(3),
            ..ReportOptions::default()
        };
        assert!(AgreementReport::compute(3, &[(0, 0)], &options).is_err());
    }

    #[test]
    fn complete_pairs_drops_missing_sides() {
        let pairs = complete_pairs([
            (Some(1), Some(2)),
            (None, Some(0)),
            (Some(3), None),
            (None, None),
            (Some(4), Some(4)),
        ]);
        assert_eq!(pairs, vec![(1, 2), (4, 4)]);
    }

    #[test]
    fn empty_sample_is_none_everywhere() {
        let m = ConfusionMatrix::new(5, &[]).unwrap();
        assert_eq!(m.n(), 0);
        assert_eq!(m.percent_agreement(), None);
        assert_eq!(m.cohen_kappa(), None);
        assert_eq!(m.weighted_kappa(Weights::Quadratic), None);
        assert_eq!(m.weighted_kappa(Weights::Linear), None);
        let b = m.binary(2).unwrap();
        assert_eq!(b.sensitivity(), None);
        assert_eq!(b.specificity(), None);
    }

    /// Both raters say KL 2 for every knee: agreement is 100% but p_e = 1, so
    /// kappa is 0/0, undefined. No reference negatives: specificity undefined.
    #[test]
    fn single_shared_category_makes_kappa_undefined() {
        let pairs = vec![(2, 2); 12];
        let m = ConfusionMatrix::new(5, &pairs).unwrap();
        close(m.percent_agreement(), 1.0);
        assert_eq!(m.cohen_kappa(), None);
        assert_eq!(m.weighted_kappa(Weights::Quadratic), None);
        assert_eq!(m.weighted_kappa(Weights::Linear), None);
        let b = m.binary(2).unwrap();
        close(b.sensitivity(), 1.0);
        assert_eq!(b.specificity(), None);

        // One rater constant, the other not: p_e = p(a = 2) < 1, kappa defined (0).
        let pairs = zip(&[2, 2, 2, 2], &[2, 1, 2, 3]);
        let m = ConfusionMatrix::new(5, &pairs).unwrap();
        close(m.cohen_kappa(), 0.0);
        close(m.weighted_kappa(Weights::Quadratic), 0.0);
    }

    // ---- (3) bootstrap -----------------------------------------------------------

    fn kl40() -> Vec<(u8, u8)> {
        zip(
            &[
                1, 0, 1, 1, 4, 0, 2, 3, 1, 2, 0, 1, 4, 0, 1, 0, 3, 3, 2, 2, 4, 0, 1, 2, 2, 0, 2, 0,
                0, 4, 1, 0, 3, 0, 1, 1, 1, 3, 0, 3,
            ],
            &[
                1, 0, 1, 2, 4, 2, 2, 3, 1, 2, 0, 1, 4, 0, 1, 2, 2, 3, 2, 3, 4, 2, 1, 2, 2, 0, 3, 2,
                2, 4, 1, 2, 3, 2, 1, 1, 1, 3, 0, 4,
            ],
        )
    }

    fn kappa_of(pairs: &[(u8, u8)]) -> Option<f64> {
        ConfusionMatrix::new(5, pairs).ok()?.cohen_kappa()
    }

    fn qwk_of(pairs: &[(u8, u8)]) -> Option<f64> {
        ConfusionMatrix::new(5, pairs)
            .ok()?
            .weighted_kappa(Weights::Quadratic)
    }

    #[test]
    fn bootstrap_interval_contains_the_estimate() {
        let pairs = kl40();
        for stat in [kappa_of, qwk_of] {
            let point = stat(&pairs).unwrap();
            let ci = bootstrap_ci(&pairs, stat, 1000, 42).unwrap();
            assert!(ci.lower < point && point < ci.upper, "{ci:?} vs {point}");
            assert!(ci.lower >= -1.0 && ci.upper <= 1.0);
        }
        let agreement = |p: &[(u8, u8)]| ConfusionMatrix::new(5, p).ok()?.percent_agreement();
        let ci = bootstrap_ci(&pairs, agreement, 1000, 42).unwrap();
        assert!(ci.lower < 0.7 && 0.7 < ci.upper && ci.lower >= 0.0 && ci.upper <= 1.0);
    }

    #[test]
    fn bootstrap_is_deterministic_per_seed() {
        let pairs = kl40();
        let first = bootstrap_ci(&pairs, kappa_of, 500, 1234);
        let second = bootstrap_ci(&pairs, kappa_of, 500, 1234);
        assert!(first.is_some());
        assert_eq!(first, second);
        assert_ne!(first, bootstrap_ci(&pairs, kappa_of, 500, 1235));
    }

    #[test]
    fn bootstrap_interval_narrows_with_more_cases() {
        let small = kl40();
        // The same sample ten times over: same point estimate, n = 400.
        let large: Vec<(u8, u8)> = small.iter().copied().cycle().take(400).collect();
        assert!((kappa_of(&small).unwrap() - kappa_of(&large).unwrap()).abs() < EPS);
        let s = bootstrap_ci(&small, kappa_of, 1000, 9).unwrap();
        let l = bootstrap_ci(&large, kappa_of, 1000, 9).unwrap();
        let (ws, wl) = (s.upper - s.lower, l.upper - l.lower);
        // Width scales roughly as 1/sqrt(n): expect about a third.
        assert!(wl < 0.6 * ws, "small {ws}, large {wl}");
    }

    #[test]
    fn bootstrap_degenerate_inputs_give_none() {
        assert_eq!(bootstrap_ci(&[], kappa_of, 1000, 1), None);
        assert_eq!(bootstrap_ci(&kl40(), kappa_of, 0, 1), None);
        // Kappa undefined on every resample.
        assert_eq!(bootstrap_ci(&[(2, 2); 30], kappa_of, 500, 1), None);
        // A statistic that is never defined, or NaN, gives no interval.
        assert_eq!(bootstrap_ci(&kl40(), |_| None, 100, 1), None);
        assert_eq!(bootstrap_ci(&kl40(), |_| Some(f64::NAN), 100, 1), None);
        // Constant but defined: a zero-width interval.
        let ci = bootstrap_ci(
            &[(2, 2); 30],
            |p| ConfusionMatrix::new(5, p).ok()?.percent_agreement(),
            100,
            1,
        )
        .unwrap();
        assert_eq!((ci.lower, ci.upper), (1.0, 1.0));
    }

    /// The statistic is defined only on resamples without the case (0, 0). With
    /// one such case among four, P(resample lacks it) = (3/4)^4 ≈ 0.32 < 1/2,
    /// so the interval is None; among 40 cases it is (39/40)^40 ≈ 0.36 for the
    /// undefined share, so ≈ 64% are defined and there is an interval.
    #[test]
    fn bootstrap_needs_half_of_resamples_defined() {
        let stat = |p: &[(u8, u8)]| (!p.contains(&(0, 0))).then_some(1.0);
        let few = [(0, 0), (1, 1), (1, 1), (1, 1)];
        assert_eq!(bootstrap_ci(&few, stat, 2000, 3), None);
        let stat = |p: &[(u8, u8)]| p.contains(&(0, 0)).then_some(1.0);
        let mut many = vec![(1, 1); 39];
        many.push((0, 0));
        assert!(bootstrap_ci(&many, stat, 2000, 3).is_some());
    }

    #[test]
    fn percentile_interpolates_like_numpy() {
        // numpy.percentile([1, 2, 3, 4, 5], [2.5, 97.5]) == [1.1, 4.9]
        let v = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert!((percentile(&v, 0.025) - 1.1).abs() < EPS);
        assert!((percentile(&v, 0.975) - 4.9).abs() < EPS);
        assert_eq!(percentile(&[3.0], 0.025), 3.0);
    }

    // ---- (4) reports: no NaN escapes ----------------------------------------------

    fn estimates(report: &AgreementReport) -> Vec<Estimate> {
        let mut all = vec![
            report.percent_agreement,
            report.cohen_kappa,
            report.quadratic_weighted_kappa,
        ];
        if let Some(b) = report.binary {
            all.extend([b.sensitivity, b.specificity]);
        }
        all
    }

    fn assert_all_finite(report: &AgreementReport) {
        for e in estimates(report) {
            if let Some(v) = e.value {
                assert!(v.is_finite());
            }
            if let Some(ci) = e.ci95 {
                assert!(ci.lower.is_finite() && ci.upper.is_finite());
                assert!(ci.lower <= ci.upper);
            }
        }
    }

    fn oa_options() -> ReportOptions {
        ReportOptions {
            positive_threshold: Some(2),
            resamples: 300,
            seed: 11,
        }
    }

    #[test]
    fn report_of_empty_sample_is_all_null() {
        let report = AgreementReport::compute(5, &[], &oa_options()).unwrap();
        assert_eq!(report.n, 0);
        for e in estimates(&report) {
            assert_eq!(
                e,
                Estimate {
                    value: None,
                    ci95: None
                }
            );
        }
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["n"], 0);
        assert!(json["cohen_kappa"]["value"].is_null());
        assert!(json["cohen_kappa"]["ci95"].is_null());
        assert_eq!(json["binary"]["true_positive"], 0);
        assert_eq!(json["confusion_matrix"]["k"], 5);
        let text = serde_json::to_string(&report).unwrap();
        assert!(!text.contains("NaN") && !text.contains("inf"));
    }

    #[test]
    fn a_perfect_sample_gets_a_wilson_interval_not_one_to_one() {
        // 10 knees, all KL 3 by both: the bootstrap can only give [1, 1]; Wilson gives
        // statsmodels' proportion_confint(10, 10, method="wilson") = [0.72247, 1].
        let report = AgreementReport::compute(5, &[(3, 3); 10], &oa_options()).unwrap();
        let w = report.percent_agreement_wilson;
        assert_eq!((w.successes, w.n), (10, 10));
        let ci = w.ci95.unwrap();
        assert!((ci.lower - 0.722_467_200_137_110_6).abs() < 1e-12, "{ci:?}");
        let b = report.binary.unwrap();
        assert_eq!(
            (b.sensitivity_wilson.successes, b.sensitivity_wilson.n),
            (10, 10)
        );
        assert_eq!(b.specificity_wilson.n, 0);
        assert!(b.specificity_wilson.ci95.is_none());
        // 7 of 10 agree, 3 disagree: proportion_confint(7, 10, method="wilson").
        let mut pairs = vec![(1u8, 1u8); 7];
        pairs.extend([(1, 2), (2, 1), (0, 2)]);
        let ci = AgreementReport::compute(5, &pairs, &oa_options())
            .unwrap()
            .percent_agreement_wilson
            .ci95
            .unwrap();
        assert!(
            (ci.lower - 0.396_778_147_461_145_37).abs() < 1e-12,
            "{ci:?}"
        );
        assert!((ci.upper - 0.892_208_732_593_698_9).abs() < 1e-12, "{ci:?}");
    }

    #[test]
    fn report_of_single_category_has_no_nan() {
        let report = AgreementReport::compute(5, &[(2, 2); 25], &oa_options()).unwrap();
        assert_all_finite(&report);
        assert_eq!(report.percent_agreement.value, Some(1.0));
        assert_eq!(report.cohen_kappa.value, None);
        assert_eq!(report.cohen_kappa.ci95, None);
        assert_eq!(report.quadratic_weighted_kappa.value, None);
        let b = report.binary.unwrap();
        assert_eq!(b.sensitivity.value, Some(1.0));
        assert_eq!(b.specificity.value, None);
        let json = serde_json::to_value(&report).unwrap();
        assert!(json["cohen_kappa"]["value"].is_null());
        assert!(json["binary"]["specificity"]["value"].is_null());
        assert_eq!(json["percent_agreement"]["value"], 1.0);
        assert_eq!(json["percent_agreement"]["ci95"]["lower"], 1.0);
        // Round trip through text: serde_json would print NaN as null silently,
        // so also check every number that is present parses back as finite.
        let text = serde_json::to_string(&report).unwrap();
        let back: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back, json);
    }

    #[test]
    fn report_of_kl40_has_intervals_around_estimates() {
        let report = AgreementReport::compute(5, &kl40(), &oa_options()).unwrap();
        assert_all_finite(&report);
        assert_eq!(report.n, 40);
        for e in [report.cohen_kappa, report.quadratic_weighted_kappa] {
            let (v, ci) = (e.value.unwrap(), e.ci95.unwrap());
            assert!(ci.lower < v && v < ci.upper);
        }
        let b = report.binary.unwrap();
        assert_eq!(b.counts.true_positive, 17);
        let sens = b.sensitivity.ci95.unwrap();
        assert!(sens.lower < 0.68 && 0.68 < sens.upper);
        // Specificity is 15/15: its bootstrap interval collapses to [1, 1].
        assert_eq!(
            b.specificity.ci95.map(|c| (c.lower, c.upper)),
            Some((1.0, 1.0))
        );
        // The report's one-pass bootstrap draws the same resamples as bootstrap_ci.
        let options = oa_options();
        assert_eq!(
            report.cohen_kappa.ci95,
            bootstrap_ci(&kl40(), kappa_of, options.resamples, options.seed)
        );
        assert_eq!(
            report.quadratic_weighted_kappa.ci95,
            bootstrap_ci(&kl40(), qwk_of, options.resamples, options.seed)
        );
        let sensitivity = |p: &[(u8, u8)]| BinaryStats::new(p, 2).sensitivity();
        assert_eq!(
            b.sensitivity.ci95,
            bootstrap_ci(&kl40(), sensitivity, options.resamples, options.seed)
        );
        // Same options, same report.
        assert_eq!(
            AgreementReport::compute(5, &kl40(), &oa_options()).unwrap(),
            report
        );
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["binary"]["threshold"], 2);
        assert_eq!(json["binary"]["false_negative"], 8);
        assert_eq!(json["confusion_matrix"]["counts"][0][2], 7);
    }

    #[test]
    fn report_without_threshold_or_resamples() {
        let options = ReportOptions {
            positive_threshold: None,
            resamples: 0,
            seed: 0,
        };
        let report = AgreementReport::compute(5, &kl40(), &options).unwrap();
        assert!(report.binary.is_none());
        assert!(report.cohen_kappa.value.is_some());
        assert!(report.cohen_kappa.ci95.is_none());
    }
}
