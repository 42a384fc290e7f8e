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

/// Checks one patients.csv row; returns the MRN (to be hashed) and the record to keep.
pub fn parse_patient(
    row: &dyn RowFields,
    protocol: &Protocol,
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
        Some(s) => RadioChemo::Last(
            parse_date("radio_chemo_last", s)
                .map_err(|e| format!("{e}; use a date, 'none' or leave it empty"))?,
        ),
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

/// Checks one dxa.csv row; returns the MRN and the record.
pub fn parse_dxa(row: &dyn RowFields) -> Result<(String, DxaRecord), String> {
    let mrn = required(row, "mrn")?.to_string();
    let scan_date = parse_date("scan_date", required(row, "scan_date")?)?;
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

/// One laboratory result, as imported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabRecord {
    pub date: NaiveDate,
    pub analyte: String,
    pub value: f64,
    pub unit: String,
}

/// Checks one labs.csv row; returns the MRN and the record.
pub fn parse_lab(row: &dyn RowFields) -> Result<(String, LabRecord), String> {
    let mrn = required(row, "mrn")?.to_string();
    let date = parse_date("date", required(row, "date")?)?;
    let raw = required(row, "analyte")?;
    let analyte = canonical_analyte(raw).ok_or_else(|| {
        format!(
            "analyte '{raw}' is not one the protocol collects ({})",
            ANALYTES.iter().map(|a| a.0).collect::<Vec<_>>().join(", ")
        )
    })?;
    let value = number("value", required(row, "value")?, 0.0..=1.0e6)?;
    let unit = required(row, "unit")?.to_string();
    Ok((
        mrn,
        LabRecord {
            date,
            analyte: analyte.to_string(),
            value,
            unit,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

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
        parse_patient(&patient(extra), &Protocol::default()).unwrap_err()
    }

    #[test]
    fn a_good_row_keeps_age_not_birth_date() {
        let (mrn, p) = parse_patient(&patient(&[]), &Protocol::default()).unwrap();
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
        let (_, d) = parse_dxa(&r).unwrap();
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
        assert!(parse_dxa(&r).unwrap_err().contains("region"));
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
        assert!(parse_lab(&r).unwrap_err().contains("glucose"));
    }
}
