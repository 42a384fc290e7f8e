//! ROC curves and the area under them (issue 5: the study's primary outcome).
//!
//! Pure domain code: no I/O. A sample is a slice of scores (higher = more likely
//! positive, e.g. a model's probability) and a slice of truths. The area is the
//! Mann-Whitney statistic: the probability that a random positive scores above a
//! random negative, ties counting one half. This is what scikit-learn's
//! `roc_auc_score` computes (the trapezoidal area under the ROC curve with tied
//! scores merged into one step).
//!
//! Undefined is `None`, never NaN: no positive or no negative case, an empty
//! sample, mismatched lengths, or a non-finite score.

use serde::Serialize;

/// One point of an ROC curve: calling a case positive when its score is
/// `>= threshold` gives this false-positive and true-positive rate.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RocPoint {
    pub threshold: f64,
    pub fpr: f64,
    pub tpr: f64,
}

/// Area under the ROC curve of `scores` against `positive`.
///
/// `None` when the slices differ in length, a score is not finite, or the sample
/// has no positive or no negative case.
pub fn auc(scores: &[f64], positive: &[bool]) -> Option<f64> {
    if scores.len() != positive.len() || scores.iter().any(|s| !s.is_finite()) {
        return None;
    }
    let n_pos = positive.iter().filter(|&&p| p).count();
    let n_neg = positive.len() - n_pos;
    if n_pos == 0 || n_neg == 0 {
        return None;
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    // Sum of the (mid-)ranks of the positives, ranks from 1; doubled to stay integer.
    let mut twice_rank_sum: u128 = 0;
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && scores[order[j + 1]] == scores[order[i]] {
            j += 1;
        }
        // ranks i+1 ..= j+1 share the mid-rank (i + j + 2) / 2
        let twice_mid = (i + j + 2) as u128;
        let pos_in_tie = order[i..=j].iter().filter(|&&k| positive[k]).count() as u128;
        twice_rank_sum += twice_mid * pos_in_tie;
        i = j + 1;
    }
    let (p, n) = (n_pos as u128, n_neg as u128);
    // U = R - p(p+1)/2; AUC = U / (p n)
    let twice_u = twice_rank_sum - p * (p + 1);
    Some(twice_u as f64 / (2 * p * n) as f64)
}

/// One-vs-rest AUC for each class `0..k`: the score of class `c` is `probs[i][c]`,
/// and a case is positive when `labels[i] == c`. A class absent from the labels
/// (or present in every case) gets `None`.
pub fn auc_one_vs_rest(probs: &[Vec<f64>], labels: &[u8], k: usize) -> Vec<Option<f64>> {
    (0..k)
        .map(|c| {
            if probs.len() != labels.len() || probs.iter().any(|p| p.len() != k) {
                return None;
            }
            let scores: Vec<f64> = probs.iter().map(|p| p[c]).collect();
            let pos: Vec<bool> = labels.iter().map(|&l| usize::from(l) == c).collect();
            auc(&scores, &pos)
        })
        .collect()
}

/// Unweighted mean of the defined one-vs-rest AUCs (scikit-learn's
/// `multi_class="ovr", average="macro"` when every class is present).
pub fn macro_auc(per_class: &[Option<f64>]) -> Option<f64> {
    let defined: Vec<f64> = per_class.iter().flatten().copied().collect();
    if defined.is_empty() {
        None
    } else {
        Some(defined.iter().sum::<f64>() / defined.len() as f64)
    }
}

/// Binary AUC of an ordinal prediction: "positive" means class `>= threshold`
/// (OA: KL >= 2; osteoporosis: stage >= 2), scored by the summed probability of
/// the classes `>= threshold`.
pub fn auc_binary(probs: &[Vec<f64>], labels: &[u8], threshold: u8) -> Option<f64> {
    if probs.len() != labels.len() {
        return None;
    }
    let t = usize::from(threshold);
    let scores: Vec<f64> = probs
        .iter()
        .map(|p| p.iter().skip(t).sum::<f64>())
        .collect();
    let pos: Vec<bool> = labels.iter().map(|&l| l >= threshold).collect();
    auc(&scores, &pos)
}

/// The ROC curve, from (0, 0) (threshold +infinity) to (1, 1), one point per
/// distinct score in decreasing order. `None` where [`auc`] is `None`.
pub fn roc_curve(scores: &[f64], positive: &[bool]) -> Option<Vec<RocPoint>> {
    auc(scores, positive)?;
    let n_pos = positive.iter().filter(|&&p| p).count() as f64;
    let n_neg = positive.len() as f64 - n_pos;
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let mut points = vec![RocPoint {
        threshold: f64::INFINITY,
        fpr: 0.0,
        tpr: 0.0,
    }];
    let (mut tp, mut fp) = (0usize, 0usize);
    let mut i = 0;
    while i < order.len() {
        let s = scores[order[i]];
        while i < order.len() && scores[order[i]] == s {
            if positive[order[i]] {
                tp += 1;
            } else {
                fp += 1;
            }
            i += 1;
        }
        points.push(RocPoint {
            threshold: s,
            fpr: fp as f64 / n_neg,
            tpr: tp as f64 / n_pos,
        });
    }
    Some(points)
}

/// The point of `curve` with the largest Youden index (tpr - fpr); the first such
/// point (highest threshold) on ties. `None` for an empty curve.
pub fn youden_point(curve: &[RocPoint]) -> Option<RocPoint> {
    let mut best: Option<RocPoint> = None;
    for p in curve.iter().filter(|p| p.threshold.is_finite()) {
        if best.is_none_or(|b| p.tpr - p.fpr > b.tpr - b.fpr) {
            best = Some(*p);
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: Option<f64>, b: f64) {
        let a = a.expect("defined");
        assert!((a - b).abs() < 1e-12, "{a} != {b}");
    }

    #[test]
    fn hand_worked_values() {
        // perfectly separated
        close(auc(&[0.1, 0.2, 0.8, 0.9], &[false, false, true, true]), 1.0);
        // perfectly reversed
        close(auc(&[0.9, 0.8, 0.2, 0.1], &[false, false, true, true]), 0.0);
        // all tied: one half
        close(auc(&[0.5; 4], &[false, true, false, true]), 0.5);
        // pairs (pos, neg): (0.35 vs 0.1) win, (0.35 vs 0.4) lose, (0.8 vs both) win
        // -> 3 of 4
        close(
            auc(&[0.1, 0.4, 0.35, 0.8], &[false, false, true, true]),
            0.75,
        );
        // a tie between a positive and a negative counts one half:
        // pos 0.5 vs neg {0.5 (1/2), 0.2 (1)}, pos 0.9 vs both (2) -> 3.5 / 4
        close(
            auc(&[0.2, 0.5, 0.5, 0.9], &[false, false, true, true]),
            0.875,
        );
    }

    #[test]
    fn undefined_cases_are_none() {
        assert_eq!(auc(&[], &[]), None);
        assert_eq!(auc(&[0.1, 0.2], &[true, true]), None);
        assert_eq!(auc(&[0.1, 0.2], &[false, false]), None);
        assert_eq!(auc(&[0.1], &[true, false]), None);
        assert_eq!(auc(&[f64::NAN, 0.2], &[true, false]), None);
    }

    // Reference values from scikit-learn 1.x, roc_auc_score (fixed here):
    //   y = [0,0,1,1,0,1,0,1,1,0,0,1]
    //   s = [0.1,0.4,0.35,0.8,0.2,0.7,0.6,0.55,0.9,0.3,0.65,0.6]
    //   roc_auc_score(y, s) = 0.8194444444444444
    #[test]
    fn matches_scikit_learn_binary() {
        let y = [0, 0, 1, 1, 0, 1, 0, 1, 1, 0, 0, 1];
        let s = [
            0.1, 0.4, 0.35, 0.8, 0.2, 0.7, 0.6, 0.55, 0.9, 0.3, 0.65, 0.6,
        ];
        let pos: Vec<bool> = y.iter().map(|&v| v == 1).collect();
        let a = auc(&s, &pos).unwrap();
        assert!((a - SK_BINARY).abs() < 1e-12, "{a}");
    }

    const SK_BINARY: f64 = 0.8194444444444444;

    // scikit-learn: roc_auc_score(y, P, multi_class="ovr", average=None) and
    // average="macro" for the 3-class sample below.
    const P3: [[f64; 3]; 9] = [
        [0.7, 0.2, 0.1],
        [0.5, 0.3, 0.2],
        [0.2, 0.5, 0.3],
        [0.3, 0.4, 0.3],
        [0.1, 0.3, 0.6],
        [0.2, 0.2, 0.6],
        [0.4, 0.4, 0.2],
        [0.1, 0.6, 0.3],
        [0.3, 0.3, 0.4],
    ];
    const Y3: [u8; 9] = [0, 0, 1, 1, 2, 2, 1, 0, 2];
    const SK_OVR: [f64; 3] = [0.6944444444444444, 0.8333333333333334, 1.0];
    const SK_MACRO: f64 = 0.8425925925925926;
    // roc_auc_score(y >= 2, P[:, 2])
    const SK_BIN_2: f64 = 1.0;

    #[test]
    fn matches_scikit_learn_one_vs_rest() {
        let probs: Vec<Vec<f64>> = P3.iter().map(|r| r.to_vec()).collect();
        let per = auc_one_vs_rest(&probs, &Y3, 3);
        for (a, b) in per.iter().zip(SK_OVR) {
            assert!((a.unwrap() - b).abs() < 1e-12, "{a:?} != {b}");
        }
        assert!((macro_auc(&per).unwrap() - SK_MACRO).abs() < 1e-12);
        assert!((auc_binary(&probs, &Y3, 2).unwrap() - SK_BIN_2).abs() < 1e-12);
    }

    #[test]
    fn curve_runs_from_origin_to_one_and_its_area_is_the_auc() {
        let s = [0.1, 0.4, 0.35, 0.8, 0.2, 0.7];
        let y = [false, false, true, true, false, true];
        let curve = roc_curve(&s, &y).unwrap();
        assert_eq!((curve[0].fpr, curve[0].tpr), (0.0, 0.0));
        let last = curve.last().unwrap();
        assert_eq!((last.fpr, last.tpr), (1.0, 1.0));
        let area: f64 = curve
            .windows(2)
            .map(|w| (w[1].fpr - w[0].fpr) * (w[1].tpr + w[0].tpr) / 2.0)
            .sum();
        assert!((area - auc(&s, &y).unwrap()).abs() < 1e-12);
        let best = youden_point(&curve).unwrap();
        assert!(best.tpr - best.fpr > 0.0);
    }
}
