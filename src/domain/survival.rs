//! Time-to-event figures of the secondary outcomes: the Kaplan–Meier estimate with
//! Greenwood's variance, numbers at risk, and the log-rank test between groups.
//!
//! Pure functions. An observation is a time (months from the index date) and whether
//! the event (a new fragility fracture) was seen then or the patient was censored
//! (the last completed visit without one). The tests hold the figures to lifelines'
//! `KaplanMeierFitter` and `multivariate_logrank_test` on the same data.

use serde::Serialize;

use super::stats::{Z_95, chi2_sf};

/// One observation: the time and whether the event happened then (`false`: censored).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Observation {
    pub time: f64,
    pub event: bool,
}

/// The estimate just after one distinct event time.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct KmStep {
    pub time: f64,
    /// Observations with time `>= self.time`.
    pub at_risk: u64,
    pub events: u64,
    /// Observations censored at exactly this time.
    pub censored: u64,
    /// S(t), the share still free of the event.
    pub survival: f64,
    /// Greenwood's variance of S(t).
    pub variance: f64,
    /// 95% interval of S(t) on the log(-log) scale (lifelines' default, the
    /// "exponential Greenwood" interval); `(1, 1)` while S is 1 and `(0, 0)` at 0.
    pub lower: f64,
    pub upper: f64,
}

impl KmStep {
    /// The cumulative incidence 1 - S(t) with its interval.
    pub fn incidence(&self) -> (f64, f64, f64) {
        (1.0 - self.survival, 1.0 - self.upper, 1.0 - self.lower)
    }
}

/// The Kaplan–Meier estimate: one step per distinct time at which an event or a
/// censoring happened, in time order. Non-finite or negative times are ignored.
pub fn kaplan_meier(obs: &[Observation]) -> Vec<KmStep> {
    let mut sorted: Vec<Observation> = obs
        .iter()
        .copied()
        .filter(|o| o.time.is_finite() && o.time >= 0.0)
        .collect();
    sorted.sort_by(|a, b| a.time.total_cmp(&b.time));
    let mut steps = Vec::new();
    let mut at_risk = sorted.len() as u64;
    let mut survival = 1.0;
    let mut greenwood_sum = 0.0;
    let mut i = 0;
    while i < sorted.len() {
        let t = sorted[i].time;
        let mut j = i;
        let (mut events, mut censored) = (0u64, 0u64);
        while j < sorted.len() && sorted[j].time == t {
            if sorted[j].event {
                events += 1;
            } else {
                censored += 1;
            }
            j += 1;
        }
        if events > 0 {
            let (n, d) = (at_risk as f64, events as f64);
            survival *= 1.0 - d / n;
            if at_risk > events {
                greenwood_sum += d / (n * (n - d));
            } else {
                greenwood_sum = f64::INFINITY;
            }
        }
        let variance = if survival > 0.0 {
            survival * survival * greenwood_sum
        } else {
            0.0
        };
        let (lower, upper) = log_log_interval(survival, greenwood_sum);
        steps.push(KmStep {
            time: t,
            at_risk,
            events,
            censored,
            survival,
            variance,
            lower,
            upper,
        });
        at_risk -= events + censored;
        i = j;
    }
    steps
}

/// S^exp(±z·sqrt(Σ d/(n(n-d))) / ln S).
fn log_log_interval(s: f64, greenwood_sum: f64) -> (f64, f64) {
    if s >= 1.0 {
        return (1.0, 1.0);
    }
    if s <= 0.0 || !greenwood_sum.is_finite() {
        return (0.0, 0.0);
    }
    let ln_s = s.ln();
    let half = Z_95 * greenwood_sum.sqrt() / ln_s.abs();
    (s.powf((half).exp()), s.powf((-half).exp()))
}

/// S(t) read off the steps (a step function, right-continuous); 1 before the first.
pub fn survival_at(steps: &[KmStep], t: f64) -> Option<&KmStep> {
    steps.iter().take_while(|s| s.time <= t).last()
}

/// Number of observations still at risk at `t` (time `>= t`), as lifelines counts
/// them for its at-risk table.
pub fn at_risk(obs: &[Observation], t: f64) -> u64 {
    obs.iter().filter(|o| o.time >= t).count() as u64
}

/// The log-rank test of equal hazards across groups.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LogRank {
    pub chi2: f64,
    pub df: u32,
    pub p: f64,
}

/// The (multivariate) log-rank test across `groups` (at least two with an
/// observation). `None` when fewer than two groups have observations or nobody had
/// the event.
pub fn logrank(groups: &[Vec<Observation>]) -> Option<LogRank> {
    let groups: Vec<&Vec<Observation>> = groups.iter().filter(|g| !g.is_empty()).collect();
    let k = groups.len();
    if k < 2 {
        return None;
    }
    let mut times: Vec<f64> = groups
        .iter()
        .flat_map(|g| g.iter().filter(|o| o.event).map(|o| o.time))
        .collect();
    times.sort_by(f64::total_cmp);
    times.dedup();
    if times.is_empty() {
        return None;
    }
    let mut o_minus_e = vec![0.0; k];
    let mut v = vec![vec![0.0; k]; k];
    for &t in &times {
        let n_j: Vec<f64> = groups
            .iter()
            .map(|g| g.iter().filter(|o| o.time >= t).count() as f64)
            .collect();
        let d_j: Vec<f64> = groups
            .iter()
            .map(|g| g.iter().filter(|o| o.event && o.time == t).count() as f64)
            .collect();
        let n: f64 = n_j.iter().sum();
        let d: f64 = d_j.iter().sum();
        for a in 0..k {
            o_minus_e[a] += d_j[a] - d * n_j[a] / n;
        }
        if n > 1.0 {
            let f = d * (n - d) / (n * n * (n - 1.0));
            for a in 0..k {
                for b in 0..k {
                    let delta = if a == b { n } else { 0.0 };
                    v[a][b] += f * n_j[a] * (delta - n_j[b]);
                }
            }
        }
    }
    // chi2 = u' V⁻¹ u over the first k-1 groups.
    let m = k - 1;
    let u: Vec<f64> = o_minus_e[..m].to_vec();
    let a: Vec<Vec<f64>> = v[..m].iter().map(|row| row[..m].to_vec()).collect();
    let x = solve(a, u.clone())?;
    let chi2: f64 = u.iter().zip(&x).map(|(a, b)| a * b).sum();
    Some(LogRank {
        chi2,
        df: m as u32,
        p: chi2_sf(chi2, m as f64),
    })
}

/// Solves `a x = b` by Gaussian elimination with partial pivoting; `None` when `a`
/// is singular.
fn solve(mut a: Vec<Vec<f64>>, mut b: Vec<f64>) -> Option<Vec<f64>> {
    let n = b.len();
    for col in 0..n {
        let pivot = (col..n).max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))?;
        if a[pivot][col].abs() < 1e-12 {
            return None;
        }
        a.swap(col, pivot);
        b.swap(col, pivot);
        for row in col + 1..n {
            let f = a[row][col] / a[col][col];
            let (upper, lower) = a.split_at_mut(row);
            for (x, p) in lower[0][col..n].iter_mut().zip(&upper[col][col..n]) {
                *x -= f * p;
            }
            b[row] -= f * b[col];
        }
    }
    let mut x = vec![0.0; n];
    for row in (0..n).rev() {
        let s: f64 = (row + 1..n).map(|c| a[row][c] * x[c]).sum();
        x[row] = (b[row] - s) / a[row][row];
    }
    Some(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) {
        assert!((a - b).abs() <= tol, "{a} is not within {tol} of {b}");
    }

    fn obs(pairs: &[(f64, bool)]) -> Vec<Observation> {
        pairs
            .iter()
            .map(|&(time, event)| Observation { time, event })
            .collect()
    }

    // Months to a new fragility fracture (true) or to the last completed visit
    // (false), on the protocol's visit months.
    fn group_a() -> Vec<Observation> {
        obs(&[
            (6.0, true),
            (6.0, false),
            (12.0, true),
            (12.0, true),
            (12.0, false),
            (24.0, false),
            (24.0, true),
            (36.0, false),
            (36.0, false),
            (36.0, true),
        ])
    }

    fn group_b() -> Vec<Observation> {
        obs(&[
            (6.0, false),
            (12.0, false),
            (12.0, false),
            (24.0, true),
            (24.0, false),
            (36.0, false),
            (36.0, false),
            (36.0, false),
        ])
    }

    fn group_c() -> Vec<Observation> {
        obs(&[
            (6.0, true),
            (6.0, true),
            (12.0, true),
            (12.0, false),
            (24.0, true),
            (36.0, false),
        ])
    }

    #[test]
    fn kaplan_meier_by_hand() {
        // Group A: at 6, 10 at risk, 1 event: S = 0.9; at 12, 8 at risk, 2 events:
        // S = 0.9 · 6/8 = 0.675; at 24, 5 at risk, 1 event: S = 0.54; at 36, 3 at
        // risk, 1 event: S = 0.36.
        let km = kaplan_meier(&group_a());
        let s: Vec<(f64, u64, f64)> = km.iter().map(|k| (k.time, k.at_risk, k.survival)).collect();
        assert_eq!(s.len(), 4);
        for (got, want) in s.iter().zip([
            (6.0, 10, 0.9),
            (12.0, 8, 0.675),
            (24.0, 5, 0.54),
            (36.0, 3, 0.36),
        ]) {
            assert_eq!((got.0, got.1), (want.0, want.1));
            close(got.2, want.2, 1e-15);
        }
        // Greenwood at 12: 0.675² (1/(10·9) + 2/(8·6)).
        close(
            km[1].variance,
            0.675f64.powi(2) * (1.0 / 90.0 + 2.0 / 48.0),
            1e-15,
        );
    }

    #[test]
    fn kaplan_meier_matches_lifelines() {
        // lifelines 0.30.3 KaplanMeierFitter().fit(T, E): survival_function_ and
        // confidence_interval_ (alpha 0.05, exponential Greenwood).
        let km = kaplan_meier(&group_a());
        let want = [
            (0.9, 0.473_009_271_362_050_84, 0.985_281_393_367_343),
            (0.675, 0.290_585_357_403_132_57, 0.882_496_733_708_740_2),
            (0.54, 0.181_165_338_404_123_35, 0.800_712_517_333_869_4),
            (0.36, 0.062_941_679_236_599_23, 0.685_628_388_501_420_7),
        ];
        for (k, (s, lo, hi)) in km.iter().zip(want) {
            close(k.survival, s, 1e-12);
            close(k.lower, lo, 1e-9);
            close(k.upper, hi, 1e-9);
        }
        assert_eq!(at_risk(&group_a(), 24.0), 5);
        assert_eq!(at_risk(&group_a(), 25.0), 3);
    }

    #[test]
    fn logrank_matches_lifelines() {
        // lifelines.statistics.logrank_test(A, B) and multivariate_logrank_test(A, B, C)
        let two = logrank(&[group_a(), group_b()]).unwrap();
        assert_eq!(two.df, 1);
        close(two.chi2, 2.512_182_249_978_01, 1e-9);
        close(two.p, 0.112_969_398_354_108_26, 1e-9);
        let three = logrank(&[group_a(), group_b(), group_c()]).unwrap();
        assert_eq!(three.df, 2);
        close(three.chi2, 4.708_681_993_171_424, 1e-9);
        close(three.p, 0.094_956_062_289_387_29, 1e-9);
    }

    #[test]
    fn logrank_needs_two_groups_and_an_event() {
        assert!(logrank(&[group_a()]).is_none());
        let none = obs(&[(6.0, false), (12.0, false)]);
        assert!(logrank(&[none.clone(), none]).is_none());
    }

    #[test]
    fn survival_at_is_a_right_continuous_step() {
        let km = kaplan_meier(&group_a());
        assert!(survival_at(&km, 5.9).is_none());
        close(survival_at(&km, 6.0).unwrap().survival, 0.9, 1e-15);
        close(survival_at(&km, 23.0).unwrap().survival, 0.675, 1e-15);
    }
}
