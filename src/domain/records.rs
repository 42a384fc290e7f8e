//! Rows of the hospital's clinical exports, checked and turned into what the study
//! stores. A row is accepted whole or rejected with one reason; identifiers (MRN,
//! birth date) stop here: the MRN is handed back only to be hashed, the birth date
//! only becomes an age.

use super::dxa::Region;
use super::eligibility::{PatientFacts, RadioChemo, age_at};
use super::protocol::{Group, Phase, Protocol};
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

/// A column lookup for one CSV row: header name (lower case) to trimmed field, if present.
pub trait RowFields {
    fn field(&self, name: &str) -> Option<&str>;
}

fn opt<'a>(row: &'a dyn RowFields, name: &str) -> Option<&'a str> {
    row.field(name).map(str::trim).filter(|s| !s.is_empty())
}

fn required<'a>(row: &'a dyn RowFields, name: &str) -> Result<&'a str, String> {
    opt(row, name).ok_or_else(|| format!("{name} is empty"))
}

/// Parses a strict YYYY-MM-DD date.
pub fn parse_date(field: &str, s: &str) -> Result<NaiveDate, String> {
    let s = s.trim();
    let ok_shape = s.len() == 10
        && s.bytes().enumerate().all(|(i, b)| {
            if i == 4 || i == 7 {
                b == b'-'
            } else {
                b.is_ascii_digit()
            }
        });
    if !ok_shape {
        return Err(format!(
            "{field} '{s}' is not a date in the form YYYY-MM-DD"
        ));
    }
    let num = |r: std::ops::Range<usize>| s[r].parse::<u32>().unwrap_or(0);
    NaiveDate::from_ymd_opt(num(0..4) as i32, num(5..7), num(8..10))
        .ok_or(())
        .map_err(|_| format!("{field} '{s}' is not a real calendar date"))
}

fn opt_date(row: &dyn RowFields, name: &str) -> Result<Option<NaiveDate>, String> {
    opt(row, name).map(|s| parse_date(name, s)).transpose()
}

fn yes_no(row: &dyn RowFields, name: &str) -> Result<Option<bool>, String> {
    match opt(row, name) {
        None => Ok(None),
        Some(s) => match s.to_ascii_lowercase().as_str() {
            "yes" => Ok(Some(true)),
            "no" => Ok(Some(false)),
            _ => Err(format!("{name} '{s}' must be yes, no or empty")),
        },
    }
}

fn number(name: &str, s: &str, range: std::ops::RangeInclusive<f64>) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{name} '{}' is not a number", s.trim()))?;
    if !v.is_finite() || !range.contains(&v) {
        return Err(format!(
            "{name} {v} is outside the plausible range {} to {}",
            range.start(),
            range.end()
        ));
    }
    Ok(v)
}

fn opt_number(
    row: &dyn RowFields,
    name: &str,
    range: std::ops::RangeInclusive<f64>,
) -> Result<Option<f64>, String> {
    opt(row, name).map(|s| number(name, s, range)).transpose()
}

/// Sex as recorded by the hospital.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Sex {
    F,
    M,
}

impl Sex {
    pub fn code(self) -> &'static str {
        match self {
            Sex::F => "F",
            Sex::M => "M",
        }
    }
}

/// What the study keeps of a patient (no MRN, no birth date, no name).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PatientRecord {
    pub site: String,
    pub group: Group,
    pub phase: Phase,
    pub sex: Option<Sex>,
    /// Age at the index date in whole years.
    pub age: Option<i32>,
    pub index_date: Option<NaiveDate>,
    pub bmi: Option<f64>,
    pub deformity: Option<bool>,
    pub implant: Option<bool>,
    pub pathological_fracture: Option<bool>,
    pub malignancy: Option<bool>,
    pub steroid_long_term: Option<bool>,
    pub radio_chemo_last: RadioChemo,
}

impl PatientRecord {
    /// What screening reads of this record.
    pub fn facts(&self, has_image: bool) -> PatientFacts {
        PatientFacts {
            group: self.group,
            age: self.age,
            index_date: self.index_date,
            deformity: self.deformity,
            implant: self.implant,
            pathological_fracture: self.pathological_fracture,
            malignancy: self.malignancy,
            steroid_long_term: self.steroid_long_term,
            radio_chemo_last: self.radio_chemo_last,
            has_image,
        }
    }
}

/// Required columns of patients.csv.
pub const PATIENT_COLUMNS: &[&str] = &["mrn", "site", "phase", "group"];
/// Required columns of dxa.csv.
pub const DXA_COLUMNS: &[&str] = &["mrn", "scan_date", "region", "t_score"];
/// Required columns of labs.csv.
pub const LAB_COLUMNS: &[&str] = &["mrn", "date", "analyte", "value", "unit"];

/// Refuses a date after `today` (the sites' local date, `domain::clock`).
pub fn not_in_future(column: &str, d: NaiveDate, today: NaiveDate) -> Result<NaiveDate, String> {
    if d > today {
        Err(format!(
            "{column} {d} is in the future (today at the site is {today})"
        ))
    } else {
        Ok(d)
    }
}

/// Checks one patients.csv row on `today` (the sites' local date); returns the MRN
/// (to be hashed) and the record to keep. The index date must lie in its phase's
/// period (`Protocol::periods`) and no date may be in the future.
pub fn parse_patient(
    row: &dyn RowFields,
    protocol: &Protocol,
    today: NaiveDate,
) -> Result<(String, PatientRecord), String> {
    let mrn = required(row, "mrn")?.to_string();
    let site = protocol.parse_site(required(row, "site")?)?;
    let phase: Phase = required(row, "phase")?.parse()?;
    let group: Group = required(row, "group")?.parse()?;
    let sex = match opt(row, "sex") {
        None => None,
        Some(s) => match s.to_ascii_uppercase().as_str() {
            "F" => Some(Sex::F),
            "M" => Some(Sex::M),
            _ => return Err(format!("sex '{s}' must be F, M or empty")),
        },
    };
    let birth = opt_date(row, "birth_date")?;
    let index_date = opt_date(row, "index_date")?;
    let age = match (birth, index_date) {
        (Some(b), Some(i)) if b > i => {
            return Err(format!("birth_date {b} is after index_date {i}"));
        }
        (Some(b), Some(i)) => Some(age_at(b, i)),
        _ => None,
    };
    if let Some(i) = index_date {
        protocol
            .periods
            .check_index_date("index_date", phase, i, today)?;
    }
    if let Some(b) = birth {
        not_in_future("birth_date", b, today)?;
    }
    if age.is_some_and(|a| a > 130) {
        return Err(format!(
            "age {} at the index date is impossible",
            age.unwrap_or(0)
        ));
    }
    let bmi = match opt_number(row, "bmi", 10.0..=80.0)? {
        Some(b) => Some(b),
        None => {
            let h = opt_number(row, "height_cm", 50.0..=250.0)?;
            let w = opt_number(row, "weight_kg", 20.0..=350.0)?;
            match (h, w) {
                (Some(h), Some(w)) => {
                    let b = w / (h / 100.0).powi(2);
                    let b = (b * 10.0).round() / 10.0;
                    if !(10.0..=80.0).contains(&b) {
                        return Err(format!(
                            "BMI {b} from height_cm {h} and weight_kg {w} is implausible (10 to 80)"
                        ));
                    }
                    Some(b)
                }
                _ => None,
            }
        }
    };
    let radio_chemo_last = match opt(row, "radio_chemo_last") {
        None => RadioChemo::Unknown,
        Some(s) if s.eq_ignore_ascii_case("none") => RadioChemo::Never,
        Some(s) => RadioChemo::Last(not_in_future(
            "radio_chemo_last",
            parse_date("radio_chemo_last", s)
                .map_err(|e| format!("{e}; use a date, 'none' or leave it empty"))?,
            today,
        )?),
    };
    Ok((
        mrn,
        PatientRecord {
            site,
            group,
            phase,
            sex,
            age,
            index_date,
            bmi,
            deformity: yes_no(row, "deformity")?,
            implant: yes_no(row, "implant")?,
            pathological_fracture: yes_no(row, "pathological_fracture")?,
            malignancy: yes_no(row, "malignancy")?,
            steroid_long_term: yes_no(row, "steroid_long_term")?,
            radio_chemo_last,
        },
    ))
}

/// One region of one DXA scan, as imported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DxaRecord {
    pub scan_date: NaiveDate,
    pub region: Region,
    pub t_score: f64,
    pub z_score: Option<f64>,
    pub bmd_g_cm2: Option<f64>,
}

/// Checks one dxa.csv row on `today`; returns the MRN and the record.
pub fn parse_dxa(row: &dyn RowFields, today: NaiveDate) -> Result<(String, DxaRecord), String> {
    let mrn = required(row, "mrn")?.to_string();
    let scan_date = not_in_future(
        "scan_date",
        parse_date("scan_date", required(row, "scan_date")?)?,
        today,
    )?;
    let region: Region = required(row, "region")?.parse()?;
    let t_score = number("t_score", required(row, "t_score")?, -10.0..=10.0)?;
    Ok((
        mrn,
        DxaRecord {
            scan_date,
            region,
            t_score,
            z_score: opt_number(row, "z_score", -10.0..=10.0)?,
            bmd_g_cm2: opt_number(row, "bmd_g_cm2", 0.01..=3.0)?,
        },
    ))
}

/// The laboratory markers the protocol collects: (canonical code, accepted spellings).
pub const ANALYTES: &[(&str, &[&str])] = &[
    ("p1np", &["p1np", "pinp", "totalp1np"]),
    (
        "beta_ctx",
        &["betactx", "bctx", "ctx", "βctx", "ctxi", "betacrosslaps"],
    ),
    ("calcium", &["calcium", "ca", "serumcalcium"]),
    ("phosphorus", &["phosphorus", "phosphate", "p", "phos"]),
    (
        "vitamin_d_25oh",
        &[
            "25ohvitamind",
            "25ohd",
            "vitamind",
            "25hydroxyvitamind",
            "vitamind25oh",
        ],
    ),
    ("pth", &["pth", "parathyroidhormone", "intactpth"]),
    ("alp", &["alp", "alkalinephosphatase", "alkphos"]),
];

/// Maps a hospital's spelling of an analyte to the study's code.
pub fn canonical_analyte(s: &str) -> Option<&'static str> {
    let key: String = s
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric())
        .collect();
    ANALYTES
        .iter()
        .find(|(_, names)| names.contains(&key.as_str()))
        .map(|(code, _)| *code)
}

/// One analyte's units: the canonical one the study stores, the others it accepts
/// with the factor that converts them to it, and the range of canonical values that
/// is physiologically possible (generous: a value outside it is a unit or typing
/// mistake, not a patient).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AnalyteUnits {
    /// The analyte's code (`ANALYTES`).
    pub analyte: &'static str,
    /// The unit values are stored in.
    pub canonical: &'static str,
    /// Every accepted unit (the canonical one first) and canonical = value x factor.
    pub units: &'static [(&'static str, f64)],
    /// Plausible canonical values, inclusive.
    pub plausible: (f64, f64),
}

/// The accepted units of every analyte, with conversion factors (PROTOCOL.md,
/// "Reference standards": calcium mg/dL / 4.008, phosphorus mg/dL / 3.097, 25-OH
/// vitamin D ng/mL x 2.496, PTH pg/mL / 9.43; ug/L is ng/mL, ng/L is pg/mL, IU/L is
/// U/L) and the plausible range of each (in the canonical unit). Units are matched
/// case-insensitively, without spaces, with µ/μ/mc read as u (`µg/L` = `ug/L` =
/// `mcg/L`).
pub const LAB_UNITS: &[AnalyteUnits] = &[
    AnalyteUnits {
        analyte: "p1np",
        canonical: "ng/mL",
        units: &[("ng/mL", 1.0), ("ug/L", 1.0)],
        plausible: (0.0, 2000.0),
    },
    AnalyteUnits {
        analyte: "beta_ctx",
        canonical: "ng/mL",
        units: &[("ng/mL", 1.0), ("ug/L", 1.0), ("pg/mL", 0.001)],
        plausible: (0.0, 10.0),
    },
    AnalyteUnits {
        analyte: "calcium",
        canonical: "mmol/L",
        units: &[("mmol/L", 1.0), ("mg/dL", 1.0 / 4.008)],
        plausible: (0.5, 5.0),
    },
    AnalyteUnits {
        analyte: "phosphorus",
        canonical: "mmol/L",
        units: &[("mmol/L", 1.0), ("mg/dL", 1.0 / 3.097)],
        plausible: (0.1, 5.0),
    },
    AnalyteUnits {
        analyte: "vitamin_d_25oh",
        canonical: "nmol/L",
        units: &[("nmol/L", 1.0), ("ng/mL", 2.496), ("ug/L", 2.496)],
        plausible: (0.0, 500.0),
    },
    AnalyteUnits {
        analyte: "pth",
        canonical: "pmol/L",
        units: &[("pmol/L", 1.0), ("pg/mL", 1.0 / 9.43), ("ng/L", 1.0 / 9.43)],
        plausible: (0.0, 300.0),
    },
    AnalyteUnits {
        analyte: "alp",
        canonical: "U/L",
        units: &[("U/L", 1.0), ("IU/L", 1.0)],
        plausible: (0.0, 3000.0),
    },
];

/// The units table of an analyte code.
pub fn analyte_units(analyte: &str) -> Option<&'static AnalyteUnits> {
    LAB_UNITS.iter().find(|u| u.analyte == analyte)
}

/// A unit as compared: lower case, no spaces, µ (micro sign or Greek mu) and "mc" as u.
fn unit_key(s: &str) -> String {
    let k: String = s
        .trim()
        .chars()
        .filter(|c| !c.is_whitespace())
        .map(|c| match c {
            '\u{b5}' | '\u{3bc}' | '\u{39c}' => 'u',
            c => c.to_ascii_lowercase(),
        })
        .collect();
    k.strip_prefix("mc").map_or(k.clone(), |r| format!("u{r}"))
}

/// Rounds a converted value to 3 decimals (the migration of stored rows rounds the same).
fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

impl AnalyteUnits {
    /// The factor of one spelling of a unit, with its canonical spelling.
    pub fn factor(&self, unit: &str) -> Option<(&'static str, f64)> {
        let k = unit_key(unit);
        self.units
            .iter()
            .find(|(u, _)| unit_key(u) == k)
            .map(|(u, f)| (*u, *f))
    }

    /// `value unit` in the canonical unit (unchanged when already canonical, else
    /// rounded to 3 decimals); `None` for a unit this analyte does not accept.
    pub fn to_canonical(&self, value: f64, unit: &str) -> Option<f64> {
        self.factor(unit)
            .map(|(_, f)| if f == 1.0 { value } else { round3(value * f) })
    }

    /// A canonical value in another accepted unit (e.g. for a model trained in it).
    pub fn from_canonical(&self, value: f64, unit: &str) -> Option<f64> {
        self.factor(unit)
            .map(|(_, f)| if f == 1.0 { value } else { value / f })
    }

    /// The accepted units, for messages: "pmol/L, pg/mL, ng/L".
    pub fn accepted(&self) -> String {
        self.units
            .iter()
            .map(|u| u.0)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// One laboratory result: the value in the analyte's canonical unit (`LAB_UNITS`),
/// and the value and unit as the hospital reported them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabRecord {
    pub date: NaiveDate,
    pub analyte: String,
    /// In `unit`, the analyte's canonical unit.
    pub value: f64,
    pub unit: String,
    /// As reported.
    pub original_value: f64,
    pub original_unit: String,
}

/// Checks a lab value in the unit it was reported in: the unit must be one the
/// analyte accepts and the value, converted to the canonical unit, plausible.
/// Returns (canonical value, canonical unit).
pub fn check_lab_value(
    analyte: &str,
    value: f64,
    unit: &str,
) -> Result<(f64, &'static str), String> {
    let units =
        analyte_units(analyte).ok_or_else(|| format!("analyte '{analyte}' has no units table"))?;
    let canonical = units.to_canonical(value, unit).ok_or_else(|| {
        format!(
            "unit '{}' is not a unit of {analyte} (accepted: {})",
            unit.trim(),
            units.accepted()
        )
    })?;
    let (lo, hi) = units.plausible;
    if !(lo..=hi).contains(&canonical) {
        let shown = if units.factor(unit).is_some_and(|(_, f)| f != 1.0) {
            format!(
                "value {value} {} ({canonical} {})",
                unit.trim(),
                units.canonical
            )
        } else {
            format!("value {value} {}", units.canonical)
        };
        return Err(format!(
            "{shown} is outside the plausible range of {analyte} ({lo} to {hi} {})",
            units.canonical
        ));
    }
    Ok((canonical, units.canonical))
}

/// Checks one labs.csv row on `today`; returns the MRN and the record, its value
/// converted to the analyte's canonical unit (the reported value and unit kept).
pub fn parse_lab(row: &dyn RowFields, today: NaiveDate) -> Result<(String, LabRecord), String> {
    let mrn = required(row, "mrn")?.to_string();
    let date = not_in_future("date", parse_date("date", required(row, "date")?)?, today)?;
    let raw = required(row, "analyte")?;
    let analyte = canonical_analyte(raw).ok_or_else(|| {
        format!(
            "analyte '{raw}' is not one the protocol collects ({})",
            ANALYTES.iter().map(|a| a.0).collect::<Vec<_>>().join(", ")
        )
    })?;
    let value = number("value", required(row, "value")?, 0.0..=1.0e6)?;
    let unit = required(row, "unit")?.to_string();
    let (canonical, canonical_unit) = check_lab_value(analyte, value, &unit)?;
    Ok((
        mrn,
        LabRecord {
            date,
            analyte: analyte.to_string(),
            value: canonical,
            unit: canonical_unit.to_string(),
            original_value: value,
            original_unit: unit,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// The day the tests run on, as the sites see it.
    fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 12, 4).unwrap()
    }

    struct Row(HashMap<&'static str, &'static str>);
    impl RowFields for Row {
        fn field(&self, name: &str) -> Option<&str> {
            self.0.get(name).copied()
        }
    }

    fn patient(extra: &[(&'static str, &'static str)]) -> Row {
        let mut m: HashMap<&'static str, &'static str> = [
            ("mrn", "A1"),
            ("site", "pkuph"),
            ("phase", "retrospective"),
            ("group", "OA"),
            ("sex", "F"),
            ("birth_date", "1960-03-15"),
            ("index_date", "2024-03-14"),
        ]
        .into_iter()
        .collect();
        for (k, v) in extra {
            m.insert(k, v);
        }
        Row(m)
    }

    fn reject(extra: &[(&'static str, &'static str)]) -> String {
        parse_patient(&patient(extra), &Protocol::default(), today()).unwrap_err()
    }

    #[test]
    fn a_good_row_keeps_age_not_birth_date() {
        let (mrn, p) = parse_patient(&patient(&[]), &Protocol::default(), today()).unwrap();
        assert_eq!(mrn, "A1");
        assert_eq!(p.site, "PKUPH");
        assert_eq!(p.age, Some(63));
        assert_eq!(p.radio_chemo_last, RadioChemo::Unknown);
    }

    #[test]
    fn bad_rows_say_what_is_wrong() {
        assert!(reject(&[("birth_date", "2025-01-01")]).contains("after index_date"));
        assert!(reject(&[("site", "MGH")]).contains("unknown site"));
        assert!(reject(&[("group", "RA")]).contains("unknown group"));
        assert!(reject(&[("phase", "later")]).contains("unknown phase"));
        assert!(reject(&[("sex", "X")]).contains("sex"));
        assert!(reject(&[("index_date", "2023-02-30")]).contains("not a real calendar date"));
        assert!(reject(&[("index_date", "14/03/2024")]).contains("YYYY-MM-DD"));
        assert!(reject(&[("implant", "maybe")]).contains("implant 'maybe'"));
        assert!(reject(&[("mrn", " ")]).contains("mrn is empty"));
        assert!(reject(&[("radio_chemo_last", "soon")]).contains("radio_chemo_last"));
        assert!(reject(&[("bmi", "5")]).contains("bmi"));
    }

    #[test]
    fn bmi_from_height_and_weight() {
        let (_, p) = parse_patient(
            &patient(&[("height_cm", "160"), ("weight_kg", "64")]),
            &Protocol::default(),
            today(),
        )
        .unwrap();
        assert_eq!(p.bmi, Some(25.0));
    }

    #[test]
    fn dxa_and_lab_rows() {
        let r = Row([
            ("mrn", "A1"),
            ("scan_date", "2024-01-02"),
            ("region", "Total_Hip"),
            ("t_score", "-2.5"),
        ]
        .into_iter()
        .collect());
        let (_, d) = parse_dxa(&r, today()).unwrap();
        assert_eq!(d.region, Region::TotalHip);
        assert_eq!(d.t_score, -2.5);
        let r = Row([
            ("mrn", "A1"),
            ("scan_date", "2024-01-02"),
            ("region", "wrist"),
            ("t_score", "-2.5"),
        ]
        .into_iter()
        .collect());
        assert!(parse_dxa(&r, today()).unwrap_err().contains("region"));
        assert_eq!(canonical_analyte("25(OH)D"), Some("vitamin_d_25oh"));
        assert_eq!(canonical_analyte("β-CTX"), Some("beta_ctx"));
        assert_eq!(canonical_analyte("Alkaline Phosphatase"), Some("alp"));
        let r = Row([
            ("mrn", "A1"),
            ("date", "2024-01-02"),
            ("analyte", "glucose"),
            ("value", "5"),
            ("unit", "mmol/L"),
        ]
        .into_iter()
        .collect());
        assert!(parse_lab(&r, today()).unwrap_err().contains("glucose"));
    }

    #[test]
    fn dates_in_the_future_or_outside_the_phase_period_are_refused() {
        assert_eq!(
            reject(&[("index_date", "2030-01-01")]),
            "index_date 2030-01-01 is in the future (today at the site is 2026-12-04)"
        );
        assert_eq!(
            reject(&[("index_date", "2005-10-31")]),
            "index_date 2005-10-31 is outside the retrospective period (2005-11-01 to 2025-11-30)"
        );
        assert!(
            parse_patient(
                &patient(&[("index_date", "2005-11-01")]),
                &Protocol::default(),
                today()
            )
            .is_ok()
        );
        assert!(
            reject(&[("phase", "prospective"), ("index_date", "2025-11-30")])
                .contains("before prospective recruitment began (2025-12-01)")
        );
        let ok = |extra: &[(&'static str, &'static str)]| {
            parse_patient(&patient(extra), &Protocol::default(), today()).is_ok()
        };
        assert!(ok(&[
            ("phase", "prospective"),
            ("index_date", "2026-12-04")
        ]));
        assert!(!ok(&[
            ("phase", "prospective"),
            ("index_date", "2026-12-05")
        ]));
        assert!(
            reject(&[("radio_chemo_last", "2027-01-01")])
                .contains("radio_chemo_last 2027-01-01 is in the future")
        );
        // a birth date after the index date keeps its own message
        assert!(reject(&[("birth_date", "2030-01-01")]).contains("after index_date"));
        assert!(
            reject(&[("index_date", ""), ("birth_date", "2027-01-01")])
                .contains("birth_date 2027-01-01 is in the future")
        );
        let dxa = |date: &'static str| {
            parse_dxa(
                &Row([
                    ("mrn", "A1"),
                    ("scan_date", date),
                    ("region", "total_hip"),
                    ("t_score", "-1"),
                ]
                .into_iter()
                .collect()),
                today(),
            )
        };
        assert!(dxa("2026-12-04").is_ok());
        assert_eq!(
            dxa("2099-01-01").unwrap_err(),
            "scan_date 2099-01-01 is in the future (today at the site is 2026-12-04)"
        );
        assert!(
            lab("2026-12-05", "calcium", "2.3", "mmol/L")
                .unwrap_err()
                .contains("date 2026-12-05 is in the future")
        );
    }

    fn lab(
        date: &'static str,
        analyte: &'static str,
        value: &'static str,
        unit: &'static str,
    ) -> Result<LabRecord, String> {
        parse_lab(
            &Row([
                ("mrn", "A1"),
                ("date", date),
                ("analyte", analyte),
                ("value", value),
                ("unit", unit),
            ]
            .into_iter()
            .collect()),
            today(),
        )
        .map(|(_, l)| l)
    }

    #[test]
    fn lab_values_are_stored_in_the_canonical_unit_with_the_original_kept() {
        let l = lab("2024-01-02", "Ca", "9.2", "mg/dL").unwrap();
        assert_eq!((l.value, l.unit.as_str()), (2.295, "mmol/L"));
        assert_eq!((l.original_value, l.original_unit.as_str()), (9.2, "mg/dL"));
        let l = lab("2024-01-02", "calcium", "2.31", "MMOL/l").unwrap();
        assert_eq!((l.value, l.unit.as_str()), (2.31, "mmol/L"));
        assert_eq!(l.original_unit, "MMOL/l");
        assert_eq!(
            lab("2024-01-02", "phosphorus", "3.5", "mg/dl")
                .unwrap()
                .value,
            1.13
        );
        assert_eq!(
            lab("2024-01-02", "25(OH)D", "18.4", "ng/mL").unwrap().value,
            45.926
        );
        assert_eq!(
            lab("2024-01-02", "PTH", "45", "pg/mL").unwrap().value,
            4.772
        );
        assert_eq!(lab("2024-01-02", "PTH", "45", "ng/L").unwrap().value, 4.772);
        assert_eq!(lab("2024-01-02", "P1NP", "48", "µg/L").unwrap().value, 48.0);
        assert_eq!(lab("2024-01-02", "P1NP", "48", "μg/L").unwrap().value, 48.0);
        assert_eq!(
            lab("2024-01-02", "P1NP", "48", "mcg/L").unwrap().value,
            48.0
        );
        assert_eq!(
            lab("2024-01-02", "β-CTX", "420", "pg/mL").unwrap().value,
            0.42
        );
        assert_eq!(lab("2024-01-02", "ALP", "80", "IU/L").unwrap().unit, "U/L");
    }

    #[test]
    fn unknown_units_and_implausible_values_refuse_the_row() {
        assert_eq!(
            lab("2024-01-02", "PTH", "45", "mmol/L").unwrap_err(),
            "unit 'mmol/L' is not a unit of pth (accepted: pmol/L, pg/mL, ng/L)"
        );
        assert_eq!(
            lab("2024-01-02", "P1NP", "48", "kg").unwrap_err(),
            "unit 'kg' is not a unit of p1np (accepted: ng/mL, ug/L)"
        );
        assert_eq!(
            lab("2024-01-02", "calcium", "23", "mmol/L").unwrap_err(),
            "value 23 mmol/L is outside the plausible range of calcium (0.5 to 5 mmol/L)"
        );
        assert_eq!(
            lab("2024-01-02", "calcium", "92", "mg/dL").unwrap_err(),
            "value 92 mg/dL (22.954 mmol/L) is outside the plausible range of calcium (0.5 to 5 mmol/L)"
        );
        assert!(lab("2024-01-02", "calcium", "0.5", "mmol/L").is_ok());
        assert!(lab("2024-01-02", "calcium", "5", "mmol/L").is_ok());
        assert!(lab("2024-01-02", "calcium", "0.49", "mmol/L").is_err());
        assert!(lab("2024-01-02", "beta_ctx", "11", "ng/mL").is_err());
        assert!(lab("2024-01-02", "alp", "3001", "U/L").is_err());
    }

    #[test]
    fn every_analyte_has_a_units_table_and_converts_back() {
        for (code, _) in ANALYTES {
            let u = analyte_units(code).unwrap_or_else(|| panic!("{code}"));
            assert_eq!(u.units[0], (u.canonical, 1.0), "{code}: canonical first");
            for (unit, _) in u.units {
                let c = u.to_canonical(100.0, unit).unwrap();
                let back = u.from_canonical(c, unit).unwrap();
                assert!((back - 100.0).abs() < 1e-2, "{code} {unit}: {back}");
            }
        }
    }
}
