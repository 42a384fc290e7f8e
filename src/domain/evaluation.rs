//! The study's primary outcome (issue 5): how well the model's probabilities agree
//! with the reference standard (the final, adjudicated grades).
//!
//! Pure: labels and probabilities in, figures out. Every figure comes with a
//! percentile bootstrap 95% interval (the same resamples for all of them, drawn from
//! a seeded generator: the same input gives the same table). The resampling unit is
//! the cluster each case belongs to ([`evaluate_clustered`]: a patient with both
//! knees is drawn whole), or the case itself ([`evaluate`]); the table says which.
//! Beside the bootstrap: DeLong's interval of the binary AUC and Wilson score
//! intervals of sensitivity, specificity and accuracy (which, unlike a percentile
//! bootstrap, do not collapse to [1, 1] at 10 of 10).
//!
//! - AUC one-vs-rest per class, and the binary AUC of the study's outcome
//!   (OA = KL >= 2; osteoporosis = stage 2), scored by the summed probability of the
//!   positive classes;
//! - sensitivity and specificity of the binary outcome at the operating point
//!   `P(positive) >= threshold`;
//! - accuracy, quadratic-weighted kappa and the confusion matrix of the most
//!   probable class against the reference.

use super::agreement::{
    ConfidenceInterval, ConfusionMatrix, Estimate, Weights, percentile_interval,
};
use super::roc::{self, RocPoint};
pub use super::stats::Proportion;
use super::stats::{self, DelongAuc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

/// The reference standard a task's figures are computed against (PROTOCOL.md,
/// "Reference standards"): one per task, used alike by `evaluate`, `train`, the
/// report, the model screen and the analysis export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReferenceStandard {
    /// Osteoporosis: the DXA WHO stage (lowest T-score of lumbar spine, femoral neck
    /// and total hip on the scan in the DXA window closest to the index date) of
    /// eligible patients aged 50 or more at the index date.
    DxaWho,
    /// Knee OA: the final KL grade of each knee (adjudicated, or the readers'
    /// consensus) of eligible patients.
    FinalKl,
}

impl ReferenceStandard {
    pub fn of(task: crate::inference::Task) -> ReferenceStandard {
        match task {
            crate::inference::Task::Kl => ReferenceStandard::FinalKl,
            crate::inference::Task::Op => ReferenceStandard::DxaWho,
        }
    }

    /// `"dxa_who"` or `"final_kl"`, as the JSON says it.
    pub fn code(self) -> &'static str {
        match self {
            ReferenceStandard::DxaWho => "dxa_who",
            ReferenceStandard::FinalKl => "final_kl",
        }
    }

    /// One line for screens and reports.
    pub fn describe(self) -> &'static str {
        match self {
            ReferenceStandard::DxaWho => {
                "the DXA WHO stage (lowest T-score of lumbar spine, femoral neck and total hip on the scan closest to the index date in the DXA window) of eligible patients aged 50 or more"
            }
            ReferenceStandard::FinalKl => {
                "the final KL grade of each knee (adjudicated, or the readers' consensus) of eligible patients"
            }
        }
    }

    /// A few words, for narrow screens.
    pub fn short(self) -> &'static str {
        match self {
            ReferenceStandard::DxaWho => "DXA WHO stage, eligible patients aged 50+",
            ReferenceStandard::FinalKl => "final KL grade per knee, eligible patients",
        }
    }

    /// What the reference calls a case: `"patients"` or `"knees"`.
    pub fn unit(self) -> &'static str {
        match self {
            ReferenceStandard::DxaWho => "patients",
            ReferenceStandard::FinalKl => "knees",
        }
    }
}

/// "3 not eligible, 2 no DXA scan in the window": what a figure left out, by reason.
pub fn left_out(excluded: &std::collections::BTreeMap<String, usize>) -> String {
    excluded
        .iter()
        .map(|(why, n)| format!("{n} {why}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A published figure to set the study's own beside (PROTOCOL.md).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Reference {
    pub source: &'static str,
    pub figures: &'static str,
}

/// The published references of PROTOCOL.md for a task (`"kl"` or `"op"`).
pub fn published(task: crate::inference::Task) -> Vec<Reference> {
    let r = |source, figures| Reference { source, figures };
    match task {
        crate::inference::Task::Kl => vec![
            r(
                "Tiulpin 2018, OAI (CNN)",
                "quadratic-weighted kappa 0.83, accuracy 66.7%",
            ),
            r(
                "Thomas 2020 (CNN)",
                "accuracy 0.71, weighted kappa vs committee 0.86",
            ),
            r("2024 ensemble, MOST", "accuracy 75.7%"),
            r(
                "Radiologists",
                "inter-reader kappa 0.46-0.50; weighted kappa vs gold standard 0.56-0.85",
            ),
        ],
        crate::inference::Task::Op => vec![
            r("Hsieh 2021 (radiographs)", "AUROC 0.97 hip, 0.92 spine"),
            r("Jang 2021", "AUC 0.867 (0.70 external)"),
            r("Chest X-ray, three classes", "AUC 0.89 / 0.70 / 0.84"),
        ],
    }
}

/// The binary outcome of a task, in words.
pub fn positive_name(task: crate::inference::Task) -> &'static str {
    match task {
        crate::inference::Task::Kl => "radiographic OA (KL >= 2)",
        crate::inference::Task::Op => "osteoporosis vs not",
    }
}

/// What to compute.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EvalOptions {
    /// Number of classes.
    pub k: usize,
    /// First class of the binary outcome.
    pub positive_from: u8,
    /// Call a case positive when `P(positive) >= threshold`.
    pub threshold: f64,
    pub resamples: usize,
    pub seed: u64,
}

/// The outcome table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Evaluation {
    pub n: usize,
    /// Reference cases per class.
    pub class_counts: Vec<u64>,
    pub threshold: f64,
    /// One-vs-rest AUC per class (undefined for a class with no case, or all).
    pub auc_per_class: Vec<Estimate>,
    pub auc_binary: Estimate,
    pub sensitivity: Estimate,
    pub specificity: Estimate,
    pub accuracy: Estimate,
    pub quadratic_kappa: Estimate,
    /// `[reference][predicted]`.
    pub confusion: Vec<Vec<u64>>,
    /// The binary ROC curve (empty when undefined).
    pub roc: Vec<RocPoint>,
    /// The threshold with the largest Youden index on this sample (a suggestion for
    /// the operating point; choosing it here and reporting here is optimistic).
    pub youden_threshold: Option<f64>,
    /// What the bootstrap resampled: `"case"` or `"patient"`.
    pub resampling_unit: &'static str,
    /// Clusters (patients) behind the `n` cases.
    pub clusters: usize,
    /// The binary AUC with DeLong's standard error and interval (cases independent).
    pub auc_binary_delong: Option<DelongAuc>,
    /// Counts and Wilson score 95% intervals of the proportions.
    pub sensitivity_wilson: Proportion,
    pub specificity_wilson: Proportion,
    pub accuracy_wilson: Proportion,
}

/// Why there is no evaluation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvalError {
    #[error("no case has both a final grade and a prediction")]
    Empty,
    #[error("case {index}: label {label} is outside the {k} classes")]
    BadLabel { index: usize, label: u8, k: usize },
    #[error("case {index}: {got} probabilities for {k} classes")]
    BadProbs { index: usize, got: usize, k: usize },
}

/// Point figures of one sample (a resample or the whole).
struct Point {
    auc_per_class: Vec<Option<f64>>,
    auc_binary: Option<f64>,
    sensitivity: Option<f64>,
    specificity: Option<f64>,
    accuracy: Option<f64>,
    kappa: Option<f64>,
}

fn positive_score(p: &[f64], from: u8) -> f64 {
    p.iter().skip(usize::from(from)).sum()
}

fn argmax(p: &[f64]) -> u8 {
    let mut best = 0;
    for (i, v) in p.iter().enumerate() {
        if *v > p[best] {
            best = i;
        }
    }
    best as u8
}

fn point(opts: &EvalOptions, labels: &[u8], probs: &[&[f64]]) -> Point {
    let k = opts.k;
    let owned: Vec<Vec<f64>> = probs.iter().map(|p| p.to_vec()).collect();
    let auc_per_class = roc::auc_one_vs_rest(&owned, labels, k);
    let scores: Vec<f64> = probs
        .iter()
        .map(|p| positive_score(p, opts.positive_from))
        .collect();
    let truth: Vec<bool> = labels.iter().map(|&l| l >= opts.positive_from).collect();
    let auc_binary = roc::auc(&scores, &truth);
    let (mut tp, mut fn_, mut tn, mut fp) = (0u64, 0u64, 0u64, 0u64);
    for (s, &t) in scores.iter().zip(&truth) {
        match (t, *s >= opts.threshold) {
            (true, true) => tp += 1,
            (true, false) => fn_ += 1,
            (false, false) => tn += 1,
            (false, true) => fp += 1,
        }
    }
    let ratio = |a: u64, b: u64| (b > 0).then(|| a as f64 / b as f64);
    let pairs: Vec<(u8, u8)> = labels
        .iter()
        .zip(probs)
        .map(|(&l, p)| (l, argmax(p)))
        .collect();
    let (accuracy, kappa) = match ConfusionMatrix::new(k, &pairs) {
        Ok(m) => (m.percent_agreement(), m.weighted_kappa(Weights::Quadratic)),
        Err(_) => (None, None),
    };
    Point {
        auc_per_class,
        auc_binary,
        sensitivity: ratio(tp, tp + fn_),
        specificity: ratio(tn, tn + fp),
        accuracy,
        kappa,
    }
}

/// Evaluates `probs` (one row of `k` probabilities per case) against `labels`, each
/// case resampled on its own.
pub fn evaluate(
    opts: &EvalOptions,
    labels: &[u8],
    probs: &[Vec<f64>],
) -> Result<Evaluation, EvalError> {
    let clusters: Vec<u64> = (0..labels.len() as u64).collect();
    let mut e = evaluate_clustered(opts, labels, probs, &clusters)?;
    e.resampling_unit = "case";
    Ok(e)
}

/// [`evaluate`] with the bootstrap drawing whole clusters: `clusters[i]` names the
/// patient of case `i` (both knees of a patient share one), so the intervals of
/// per-knee figures account for the two knees of one person being alike.
pub fn evaluate_clustered(
    opts: &EvalOptions,
    labels: &[u8],
    probs: &[Vec<f64>],
    clusters: &[u64],
) -> Result<Evaluation, EvalError> {
    let k = opts.k;
    if labels.is_empty() || labels.len() != probs.len() || clusters.len() != labels.len() {
        return Err(EvalError::Empty);
    }
    for (index, (&label, p)) in labels.iter().zip(probs).enumerate() {
        if usize::from(label) >= k {
            return Err(EvalError::BadLabel { index, label, k });
        }
        if p.len() != k {
            return Err(EvalError::BadProbs {
                index,
                got: p.len(),
                k,
            });
        }
    }
    let rows: Vec<&[f64]> = probs.iter().map(Vec::as_slice).collect();
    let whole = point(opts, labels, &rows);
    // The cases of each cluster, clusters in order of first appearance.
    let n = labels.len();
    let mut members: Vec<Vec<usize>> = Vec::new();
    {
        let mut index: std::collections::HashMap<u64, usize> = std::collections::HashMap::new();
        for (i, c) in clusters.iter().enumerate() {
            let slot = *index.entry(*c).or_insert_with(|| {
                members.push(Vec::new());
                members.len() - 1
            });
            members[slot].push(i);
        }
    }
    // The same resamples for every figure; with one case per cluster these are the
    // draws of a case bootstrap.
    let m = members.len();
    let mut rng = StdRng::seed_from_u64(opts.seed);
    let mut draws: Vec<Point> = Vec::with_capacity(opts.resamples);
    let mut l = Vec::with_capacity(n);
    let mut p: Vec<&[f64]> = Vec::with_capacity(n);
    for _ in 0..opts.resamples {
        l.clear();
        p.clear();
        for _ in 0..m {
            for &i in &members[rng.random_range(0..m)] {
                l.push(labels[i]);
                p.push(rows[i]);
            }
        }
        draws.push(point(opts, &l, &p));
    }
    let ci = |f: &dyn Fn(&Point) -> Option<f64>| -> Option<ConfidenceInterval> {
        let values: Vec<f64> = draws
            .iter()
            .filter_map(f)
            .filter(|v| v.is_finite())
            .collect();
        percentile_interval(values, opts.resamples)
    };
    let est = |value: Option<f64>, f: &dyn Fn(&Point) -> Option<f64>| Estimate {
        value,
        ci95: value.and_then(|_| ci(f)),
    };
    let auc_per_class = (0..k)
        .map(|c| est(whole.auc_per_class[c], &|d: &Point| d.auc_per_class[c]))
        .collect();
    let mut confusion = vec![vec![0u64; k]; k];
    let mut class_counts = vec![0u64; k];
    for (&label, p) in labels.iter().zip(&rows) {
        confusion[usize::from(label)][usize::from(argmax(p))] += 1;
        class_counts[usize::from(label)] += 1;
    }
    let scores: Vec<f64> = rows
        .iter()
        .map(|p| positive_score(p, opts.positive_from))
        .collect();
    let truth: Vec<bool> = labels.iter().map(|&l| l >= opts.positive_from).collect();
    let curve = roc::roc_curve(&scores, &truth).unwrap_or_default();
    let youden_threshold = roc::youden_point(&curve).map(|p| p.threshold);
    let (mut tp, mut pos, mut tn, mut neg) = (0u64, 0u64, 0u64, 0u64);
    for (s, &t) in scores.iter().zip(&truth) {
        if t {
            pos += 1;
            tp += u64::from(*s >= opts.threshold);
        } else {
            neg += 1;
            tn += u64::from(*s < opts.threshold);
        }
    }
    let correct: u64 = (0..k).map(|c| confusion[c][c]).sum();
    Ok(Evaluation {
        n,
        class_counts,
        threshold: opts.threshold,
        auc_per_class,
        auc_binary: est(whole.auc_binary, &|d: &Point| d.auc_binary),
        sensitivity: est(whole.sensitivity, &|d: &Point| d.sensitivity),
        specificity: est(whole.specificity, &|d: &Point| d.specificity),
        accuracy: est(whole.accuracy, &|d: &Point| d.accuracy),
        quadratic_kappa: est(whole.kappa, &|d: &Point| d.kappa),
        confusion,
        roc: curve,
        youden_threshold,
        resampling_unit: "patient",
        clusters: m,
        auc_binary_delong: stats::delong(&scores, &truth),
        sensitivity_wilson: Proportion::new(tp, pos),
        specificity_wilson: Proportion::new(tn, neg),
        accuracy_wilson: Proportion::new(correct, n as u64),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(k: usize, from: u8) -> EvalOptions {
        EvalOptions {
            k,
            positive_from: from,
            threshold: 0.5,
            resamples: 200,
            seed: 7,
        }
    }

    fn one_hot(k: usize, c: usize, p: f64) -> Vec<f64> {
        let rest = (1.0 - p) / (k - 1) as f64;
        (0..k).map(|i| if i == c { p } else { rest }).collect()
    }

    #[test]
    fn a_perfect_model_scores_one_everywhere() {
        let labels = [0u8, 1, 2, 0, 1, 2, 2, 0];
        let probs: Vec<Vec<f64>> = labels.iter().map(|&l| one_hot(3, l.into(), 0.8)).collect();
        let e = evaluate(&opts(3, 2), &labels, &probs).unwrap();
        assert_eq!(e.n, 8);
        assert_eq!(e.class_counts, vec![3, 2, 3]);
        assert_eq!(e.auc_binary.value, Some(1.0));
        assert_eq!(e.sensitivity.value, Some(1.0));
        assert_eq!(e.specificity.value, Some(1.0));
        assert_eq!(e.accuracy.value, Some(1.0));
        assert_eq!(e.quadratic_kappa.value, Some(1.0));
        assert_eq!(
            e.confusion,
            vec![vec![3, 0, 0], vec![0, 2, 0], vec![0, 0, 3]]
        );
        for a in &e.auc_per_class {
            assert_eq!(a.value, Some(1.0));
        }
        let ci = e.auc_binary.ci95.unwrap();
        assert_eq!((ci.lower, ci.upper), (1.0, 1.0));
    }

    #[test]
    fn hand_worked_binary_figures() {
        // OP: positive = stage 2. Scores P(stage 2): 0.9 0.6 0.4 | 0.7 0.2 0.1
        let labels = [2u8, 2, 2, 0, 1, 0];
        let probs = vec![
            vec![0.05, 0.05, 0.9],
            vec![0.2, 0.2, 0.6],
            vec![0.3, 0.3, 0.4],
            vec![0.1, 0.2, 0.7],
            vec![0.5, 0.3, 0.2],
            vec![0.8, 0.1, 0.1],
        ];
        let e = evaluate(&opts(3, 2), &labels, &probs).unwrap();
        // Positives 0.9, 0.6, 0.4 against negatives 0.7, 0.2, 0.1: pairs won
        // 3 + 2 + 2 = 7 of 9.
        assert!((e.auc_binary.value.unwrap() - 7.0 / 9.0).abs() < 1e-12);
        // At 0.5: TP 2 (0.9, 0.6), FN 1 (0.4), FP 1 (0.7), TN 2.
        assert!((e.sensitivity.value.unwrap() - 2.0 / 3.0).abs() < 1e-12);
        assert!((e.specificity.value.unwrap() - 2.0 / 3.0).abs() < 1e-12);
        // argmax: 2 2 2 2 0 0 against 2 2 2 0 1 0: right 4 of 6.
        assert!((e.accuracy.value.unwrap() - 4.0 / 6.0).abs() < 1e-12);
        assert_eq!(e.confusion[0], vec![1, 0, 1]);
        assert_eq!(e.confusion[1], vec![1, 0, 0]);
        assert_eq!(e.confusion[2], vec![0, 0, 3]);
        let ci = e.auc_binary.ci95.unwrap();
        assert!(ci.lower <= 7.0 / 9.0 && 7.0 / 9.0 <= ci.upper, "{ci:?}");
        assert!(ci.lower < ci.upper);
        // The ROC runs from (0,0) to (1,1); Youden's index tpr - fpr is largest
        // at 0.4 (tpr 1, fpr 1/3: 2/3; 0.9 and 0.6 give 1/3, 0.7 gives 0).
        assert_eq!(e.roc.first().map(|p| (p.fpr, p.tpr)), Some((0.0, 0.0)));
        assert_eq!(e.roc.last().map(|p| (p.fpr, p.tpr)), Some((1.0, 1.0)));
        assert_eq!(e.youden_threshold, Some(0.4));
    }

    #[test]
    fn same_seed_same_intervals_and_a_lower_threshold_trades_specificity() {
        let labels: Vec<u8> = (0..40).map(|i| (i % 5) as u8).collect();
        let probs: Vec<Vec<f64>> = labels
            .iter()
            .enumerate()
            .map(|(i, &l)| one_hot(5, (usize::from(l) + i % 2) % 5, 0.6))
            .collect();
        let a = evaluate(&opts(5, 2), &labels, &probs).unwrap();
        let b = evaluate(&opts(5, 2), &labels, &probs).unwrap();
        assert_eq!(a, b);
        let mut low = opts(5, 2);
        low.threshold = 0.05;
        let c = evaluate(&low, &labels, &probs).unwrap();
        assert!(c.sensitivity.value >= a.sensitivity.value);
        assert!(c.specificity.value <= a.specificity.value);
        assert_eq!(c.specificity.value, Some(0.0));
    }

    #[test]
    fn refuses_bad_input() {
        assert_eq!(evaluate(&opts(3, 2), &[], &[]), Err(EvalError::Empty));
        assert!(matches!(
            evaluate(&opts(3, 2), &[3], &[vec![0.2, 0.3, 0.5]]),
            Err(EvalError::BadLabel { label: 3, .. })
        ));
        assert!(matches!(
            evaluate(&opts(3, 2), &[1], &[vec![0.5, 0.5]]),
            Err(EvalError::BadProbs { got: 2, .. })
        ));
    }

    #[test]
    fn proportions_carry_wilson_intervals_and_the_auc_delong() {
        // 10 positives all found, 10 negatives of which 8 are called negative.
        let mut labels = vec![1u8; 10];
        labels.extend([0u8; 10]);
        let mut probs: Vec<Vec<f64>> = (0..10).map(|i| vec![0.1, 0.6 + 0.03 * i as f64]).collect();
        probs.extend((0..10).map(|i| {
            let p = if i < 2 { 0.7 } else { 0.05 * i as f64 };
            vec![1.0 - p, p]
        }));
        let e = evaluate(&opts(2, 1), &labels, &probs).unwrap();
        assert_eq!(
            (e.sensitivity_wilson.successes, e.sensitivity_wilson.n),
            (10, 10)
        );
        // statsmodels proportion_confint(10, 10, method="wilson")
        let ci = e.sensitivity_wilson.ci95.unwrap();
        assert!((ci.lower - 0.722_467_200_137_110_6).abs() < 1e-12, "{ci:?}");
        assert_eq!(ci.upper, 1.0);
        assert_eq!(
            (e.specificity_wilson.successes, e.specificity_wilson.n),
            (8, 10)
        );
        assert_eq!((e.accuracy_wilson.successes, e.accuracy_wilson.n), (18, 20));
        // By hand: the 4 positives below 0.7 lose to the 2 negatives at 0.7, so 8 of
        // the 100 pairs are wrong: AUC 0.92 (the Mann-Whitney and DeLong forms agree).
        let d = e.auc_binary_delong.unwrap();
        assert!((d.auc - 0.92).abs() < 1e-12);
        assert!((e.auc_binary.value.unwrap() - 0.92).abs() < 1e-12);
        assert!(d.ci.lower < 0.92 && d.ci.upper <= 1.0);
        assert_eq!(e.resampling_unit, "case");
        assert_eq!(e.clusters, 20);
    }

    #[test]
    fn one_case_per_cluster_is_the_case_bootstrap() {
        let labels: Vec<u8> = (0..30).map(|i| (i % 3) as u8).collect();
        let probs: Vec<Vec<f64>> = labels
            .iter()
            .enumerate()
            .map(|(i, &l)| one_hot(3, (usize::from(l) + i % 4 / 3) % 3, 0.7))
            .collect();
        let ids: Vec<u64> = (100..130).collect();
        let a = evaluate(&opts(3, 2), &labels, &probs).unwrap();
        let mut b = evaluate_clustered(&opts(3, 2), &labels, &probs, &ids).unwrap();
        assert_eq!(b.resampling_unit, "patient");
        b.resampling_unit = "case";
        assert_eq!(a, b);
    }

    #[test]
    fn resampling_patients_widens_intervals_when_both_knees_agree() {
        // 40 patients, both knees with the same grade and prediction: a knee bootstrap
        // counts 80 independent knees, a patient bootstrap 40.
        let mut labels = Vec::new();
        let mut probs = Vec::new();
        let mut ids = Vec::new();
        for p in 0..40u64 {
            let l = (p % 2) as u8;
            let right = p % 5 != 0;
            let guess = if right { l } else { 1 - l };
            for _ in 0..2 {
                labels.push(l);
                probs.push(one_hot(2, guess.into(), 0.8));
                ids.push(p);
            }
        }
        let mut o = opts(2, 1);
        o.resamples = 1000;
        let by_knee = evaluate(&o, &labels, &probs).unwrap();
        let by_patient = evaluate_clustered(&o, &labels, &probs, &ids).unwrap();
        assert_eq!(by_patient.clusters, 40);
        let width = |e: &Evaluation| {
            let ci = e.accuracy.ci95.unwrap();
            ci.upper - ci.lower
        };
        assert_eq!(by_knee.accuracy.value, by_patient.accuracy.value);
        assert!(
            width(&by_patient) > 1.2 * width(&by_knee),
            "{} vs {}",
            width(&by_patient),
            width(&by_knee)
        );
    }

    #[test]
    fn clusters_must_match_the_cases() {
        assert_eq!(
            evaluate_clustered(
                &opts(2, 1),
                &[0, 1],
                &[vec![0.5, 0.5], vec![0.5, 0.5]],
                &[1]
            ),
            Err(EvalError::Empty)
        );
    }
}
