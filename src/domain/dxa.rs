//! WHO staging of bone density from DXA T-scores, the Z-score rule for younger
//! patients, and the DXA-window rule that makes a scan the gold standard.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// DXA measurement region.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Region {
    LumbarSpine,
    FemoralNeck,
    TotalHip,
}

impl Region {
    pub fn code(self) -> &'static str {
        match self {
            Region::LumbarSpine => "lumbar_spine",
            Region::FemoralNeck => "femoral_neck",
            Region::TotalHip => "total_hip",
        }
    }
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl FromStr for Region {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "lumbar_spine" => Ok(Region::LumbarSpine),
            "femoral_neck" => Ok(Region::FemoralNeck),
            "total_hip" => Ok(Region::TotalHip),
            other => Err(format!(
                "unknown region '{other}' (expected lumbar_spine, femoral_neck or total_hip)"
            )),
        }
    }
}

/// One region of one DXA scan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DxaScan {
    pub scan_date: NaiveDate,
    pub region: Region,
    pub t_score: f64,
    pub z_score: Option<f64>,
    pub bmd_g_cm2: Option<f64>,
}

/// WHO bone-density category from a T-score.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WhoStage {
    Normal,
    Osteopenia,
    Osteoporosis,
}

impl WhoStage {
    /// WHO: normal T >= -1.0; osteopenia -2.5 < T < -1.0; osteoporosis T <= -2.5.
    pub fn from_t_score(t: f64) -> WhoStage {
        if t >= -1.0 {
            WhoStage::Normal
        } else if t > -2.5 {
            WhoStage::Osteopenia
        } else {
            WhoStage::Osteoporosis
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            WhoStage::Normal => "Normal",
            WhoStage::Osteopenia => "Osteopenia",
            WhoStage::Osteoporosis => "Osteoporosis",
        }
    }
}

/// Age from which T-scores (and so WHO staging) apply.
pub const T_SCORE_MIN_AGE: i32 = 50;

/// Whether a patient of `age` (at the index date) is in the osteoporosis reference
/// standard by age: known and at least [`T_SCORE_MIN_AGE`] (the WHO T-score rule).
pub fn in_who_reference_age(age: Option<i32>) -> bool {
    age.is_some_and(|a| a >= T_SCORE_MIN_AGE)
}
/// Z-score at or below which bone density is "below the expected range for age".
pub const Z_SCORE_LOW: f64 = -2.0;

/// The bone-density reading for a patient, from the gold-standard DXA scan.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum OpReading {
    /// No DXA scan within the window of the index date.
    NoGoldStandard,
    /// WHO stage from the lowest T-score of the scan closest to the index date.
    Who {
        stage: WhoStage,
        t_score: f64,
        region: Region,
        scan_date: NaiveDate,
    },
    /// Patient under 50: the Z-score applies and no WHO stage is given.
    ZScore {
        /// Lowest Z-score of the scan, when recorded.
        z_score: Option<f64>,
        region: Option<Region>,
        scan_date: NaiveDate,
    },
}

impl OpReading {
    /// A one-line description for screens and listings.
    pub fn describe(&self) -> String {
        match self {
            OpReading::NoGoldStandard => "no DXA in the window".into(),
            OpReading::Who {
                stage,
                t_score,
                region,
                scan_date,
            } => format!(
                "{} (lowest T {t_score:+.1}, {region}, {scan_date})",
                stage.label()
            ),
            OpReading::ZScore {
                z_score: Some(z),
                region,
                scan_date,
            } => {
                let verdict = if *z <= Z_SCORE_LOW {
                    "below the expected range for age"
                } else {
                    "within the expected range for age"
                };
                let region = region.map(|r| format!(", {r}")).unwrap_or_default();
                format!("Z {z:+.1}{region}: {verdict} (under 50, not WHO-staged; {scan_date})")
            }
            OpReading::ZScore {
                z_score: None,
                scan_date,
                ..
            } => format!("under 50: Z-score applies but none recorded ({scan_date})"),
        }
    }

    /// The WHO stage, when one applies.
    pub fn who_stage(&self) -> Option<WhoStage> {
        match self {
            OpReading::Who { stage, .. } => Some(*stage),
            _ => None,
        }
    }
}

/// Whether `scan` lies within `window_days` of `index` (inclusive, either side).
pub fn in_window(scan: NaiveDate, index: NaiveDate, window_days: i64) -> bool {
    (scan - index).num_days().abs() <= window_days
}

/// The date of the scan in the window closest to the index date (the earlier one on a tie).
pub fn gold_standard_date(
    scans: &[DxaScan],
    index: NaiveDate,
    window_days: i64,
) -> Option<NaiveDate> {
    scans
        .iter()
        .map(|s| s.scan_date)
        .filter(|d| in_window(*d, index, window_days))
        .min_by_key(|d| ((*d - index).num_days().abs(), *d))
}

/// The bone-density reading from the gold-standard scan (see [`OpReading`]).
/// An unknown age is staged by T-score: the age rule can only be applied when it is known.
pub fn op_reading(
    age: Option<i32>,
    index: Option<NaiveDate>,
    scans: &[DxaScan],
    window_days: i64,
) -> OpReading {
    let Some(index) = index else {
        return OpReading::NoGoldStandard;
    };
    let Some(date) = gold_standard_date(scans, index, window_days) else {
        return OpReading::NoGoldStandard;
    };
    let regions: Vec<&DxaScan> = scans.iter().filter(|s| s.scan_date == date).collect();
    if age.is_some_and(|a| a < T_SCORE_MIN_AGE) {
        let lowest = regions
            .iter()
            .filter_map(|s| s.z_score.map(|z| (z, s.region)))
            .min_by(|a, b| a.0.total_cmp(&b.0));
        return OpReading::ZScore {
            z_score: lowest.map(|l| l.0),
            region: lowest.map(|l| l.1),
            scan_date: date,
        };
    }
    let lowest = regions
        .iter()
        .min_by(|a, b| a.t_score.total_cmp(&b.t_score))
        .expect("a gold-standard date comes from at least one scan");
    OpReading::Who {
        stage: WhoStage::from_t_score(lowest.t_score),
        t_score: lowest.t_score,
        region: lowest.region,
        scan_date: date,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    fn scan(date: &str, region: Region, t: f64, z: Option<f64>) -> DxaScan {
        DxaScan {
            scan_date: d(date),
            region,
            t_score: t,
            z_score: z,
            bmd_g_cm2: None,
        }
    }

    #[test]
    fn who_thresholds_at_their_boundaries() {
        assert_eq!(WhoStage::from_t_score(-1.0), WhoStage::Normal);
        assert_eq!(WhoStage::from_t_score(0.4), WhoStage::Normal);
        assert_eq!(WhoStage::from_t_score(-1.1), WhoStage::Osteopenia);
        assert_eq!(WhoStage::from_t_score(-2.4), WhoStage::Osteopenia);
        assert_eq!(WhoStage::from_t_score(-2.5), WhoStage::Osteoporosis);
        assert_eq!(WhoStage::from_t_score(-3.9), WhoStage::Osteoporosis);
    }

    #[test]
    fn window_is_inclusive_on_both_sides() {
        let idx = d("2024-06-01");
        assert!(in_window(d("2025-06-01"), idx, 365));
        assert!(in_window(d("2023-06-02"), idx, 365));
        assert!(!in_window(d("2025-06-02"), idx, 365));
        assert!(!in_window(d("2023-06-01"), idx, 365));
    }

    #[test]
    fn lowest_t_of_the_closest_scan_in_the_window_stages() {
        let scans = vec![
            // further away but lower: must not be used
            scan("2024-01-01", Region::LumbarSpine, -3.5, None),
            scan("2024-05-20", Region::LumbarSpine, -1.2, None),
            scan("2024-05-20", Region::FemoralNeck, -2.6, None),
            scan("2024-05-20", Region::TotalHip, -0.3, None),
        ];
        let r = op_reading(Some(66), Some(d("2024-06-01")), &scans, 365);
        assert_eq!(
            r,
            OpReading::Who {
                stage: WhoStage::Osteoporosis,
                t_score: -2.6,
                region: Region::FemoralNeck,
                scan_date: d("2024-05-20")
            }
        );
    }

    #[test]
    fn a_scan_outside_the_window_is_no_gold_standard() {
        let scans = vec![scan("2023-05-31", Region::TotalHip, -3.0, None)];
        assert_eq!(
            op_reading(Some(70), Some(d("2024-06-01")), &scans, 365),
            OpReading::NoGoldStandard
        );
        assert_eq!(
            op_reading(Some(70), None, &scans, 365),
            OpReading::NoGoldStandard
        );
    }

    #[test]
    fn under_fifty_reads_the_z_score_instead_of_staging() {
        let scans = vec![
            scan("2024-06-01", Region::LumbarSpine, -2.8, Some(-2.1)),
            scan("2024-06-01", Region::TotalHip, -1.5, Some(-0.9)),
        ];
        let r = op_reading(Some(49), Some(d("2024-06-01")), &scans, 365);
        assert_eq!(r.who_stage(), None);
        assert!(matches!(r, OpReading::ZScore { z_score: Some(z), .. } if z == -2.1));
        assert!(r.describe().contains("below the expected range"));
        let r50 = op_reading(Some(50), Some(d("2024-06-01")), &scans, 365);
        assert_eq!(r50.who_stage(), Some(WhoStage::Osteoporosis));
    }

    #[test]
    fn tie_between_before_and_after_takes_the_earlier_scan() {
        let scans = vec![
            scan("2024-06-11", Region::TotalHip, -0.5, None),
            scan("2024-05-22", Region::TotalHip, -2.0, None),
        ];
        assert_eq!(
            gold_standard_date(&scans, d("2024-06-01"), 365),
            Some(d("2024-05-22"))
        );
    }
}
