//! The demo's imaging cohort: radiograph phantoms for a share of the generated
//! patients, whose anatomy follows a latent grade (knee phantoms by KL grade per
//! knee, hip phantoms by the patient's WHO stage), then two demo readers who grade
//! most cases with realistic disagreement, an adjudicator who settles most of the
//! disagreements, and the shipped models' predictions. So the demo has worklists,
//! an adjudication queue, agreement figures, and enough final grades for
//! `marrow train` and `marrow evaluate`.
//!
//! Everything is deterministic: the same build gives the same study.

use crate::db::Study;
use crate::dicom::synth::{BodyPart, Laterality};
use crate::domain::reading::{FinalGrade, Grade, Oarsi, OpImpression, ReadInput, Side};
use crate::inference::phantom::{self, Rng};
use anyhow::{Context, Result};
use chrono::NaiveDate;
use std::collections::HashMap;
use std::path::Path;

/// Patients given images, per group and WHO stage (0 normal, 1 osteopenia,
/// 2 osteoporosis; `None`: any), first come first served among the eligible
/// generated patients. Controls get knees and a hip, so the OP stage has normal
/// cases too.
pub const QUOTAS: [(&str, Option<u8>, usize); 5] = [
    ("OA", None, 60),
    ("OP", Some(1), 20),
    ("OP", Some(2), 45),
    ("CONTROL", Some(0), 25),
    ("CONTROL", Some(1), 15),
];
/// Share of the cases each demo reader grades (the rest waits in their worklists).
const READ_SHARE: f64 = 0.9;
/// Adjudications left waiting for the demo adjudicator.
const LEFT_FOR_ADJUDICATION: usize = 4;

/// What the cohort step did.
#[derive(Debug, Clone, Default)]
pub struct CohortSummary {
    pub patients: usize,
    pub images: usize,
    pub reads: usize,
    pub adjudicated: usize,
}

fn unit(seed: u64) -> f64 {
    Rng::new(seed).unit()
}

fn hash_seed(s: &str) -> u64 {
    // FNV-1a: stable across runs and platforms.
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn pick(weights: &[f64], u: f64) -> u8 {
    let total: f64 = weights.iter().sum();
    let mut acc = 0.0;
    for (i, w) in weights.iter().enumerate() {
        acc += w / total;
        if u < acc {
            return i as u8;
        }
    }
    (weights.len() - 1) as u8
}

/// The latent KL grade of a knee.
fn true_kl(group: &str, mrn: &str, side: &str) -> u8 {
    let u = unit(hash_seed(&format!("{mrn}|{side}|kl")));
    match group {
        "OA" => pick(&[0.08, 0.17, 0.3, 0.27, 0.18], u),
        _ => pick(&[0.55, 0.35, 0.1, 0.0, 0.0], u),
    }
}

fn stage_index(who: &str) -> Option<u8> {
    let w = who.to_ascii_lowercase();
    if w.contains("osteoporosis") {
        Some(2)
    } else if w.contains("osteopenia") {
        Some(1)
    } else if w.contains("normal") {
        Some(0)
    } else {
        None
    }
}

fn op_of(stage: u8) -> OpImpression {
    match stage {
        0 => OpImpression::Normal,
        1 => OpImpression::Osteopenia,
        _ => OpImpression::Osteoporosis,
    }
}

/// A reader's grade: the truth, one off now and then.
fn noisy(truth: u8, max: u8, seed: u64) -> u8 {
    let u = unit(seed);
    if u < 0.12 && truth > 0 {
        truth - 1
    } else if u < 0.24 && truth < max {
        truth + 1
    } else {
        truth
    }
}

struct Chosen {
    mrn: String,
    site: String,
    group: String,
    date: NaiveDate,
    stage: u8,
}

/// Builds the cohort into the open demo study (acting as its admin).
pub fn build(
    study: &mut Study,
    db: &Path,
    patients_csv: &Path,
    dir: &Path,
) -> Result<CohortSummary> {
    let mut summary = CohortSummary::default();
    std::fs::create_dir_all(dir)?;
    // Eligible generated patients, first come first served per group.
    let mut reader = csv::Reader::from_path(patients_csv)
        .with_context(|| format!("cannot read {}", patients_csv.display()))?;
    let headers = reader.headers()?.clone();
    let col = |name: &str| headers.iter().position(|h| h == name);
    let (Some(c_mrn), Some(c_site), Some(c_group), Some(c_index)) =
        (col("mrn"), col("site"), col("group"), col("index_date"))
    else {
        anyhow::bail!(
            "{}: no mrn/site/group/index_date column",
            patients_csv.display()
        );
    };
    let mut wanted: HashMap<(String, Option<u8>), usize> = QUOTAS
        .iter()
        .map(|(g, st, n)| ((g.to_string(), *st), *n))
        .collect();
    let mut chosen = Vec::new();
    for rec in reader.records() {
        let rec = rec?;
        let group = rec.get(c_group).unwrap_or("").to_string();
        if !QUOTAS.iter().any(|(g, _, _)| *g == group) {
            continue;
        }
        let mrn = rec.get(c_mrn).unwrap_or("").to_string();
        let site = rec.get(c_site).unwrap_or("").trim().to_ascii_uppercase();
        let Ok(date) = NaiveDate::parse_from_str(rec.get(c_index).unwrap_or(""), "%Y-%m-%d") else {
            continue;
        };
        let hash = study.identifier_hash(&mrn);
        let row: Option<(String, Option<String>)> = study
            .conn()
            .query_row(
                "SELECT decision, who_stage FROM patients WHERE mrn_hash = unhex(?1) AND site = ?2",
                [&hash, &site],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .ok();
        let Some((decision, who)) = row else { continue };
        if decision != "eligible" {
            continue;
        }
        let who = who.as_deref().and_then(stage_index);
        let key = if group == "OA" {
            (group.clone(), None)
        } else {
            (group.clone(), who)
        };
        let Some(left) = wanted.get_mut(&key).filter(|n| **n > 0) else {
            continue;
        };
        *left -= 1;
        let stage = who.unwrap_or(0);
        chosen.push(Chosen {
            mrn,
            site,
            group,
            date,
            stage,
        });
    }
    // The phantoms, as DICOM files, imported like any hospital export.
    let mut truth: HashMap<(String, String), u8> = HashMap::new();
    for (i, c) in chosen.iter().enumerate() {
        let seed = hash_seed(&c.mrn);
        if c.group != "OA" {
            let p = phantom::hip(c.stage, seed);
            phantom::write_dicom(
                &dir.join(format!("{i:04}-hip.dcm")),
                &c.mrn,
                BodyPart::Hip,
                Laterality::Left,
                c.date,
                &p,
                seed,
            )?;
            summary.images += 1;
        }
        if c.group != "OP" {
            for (lat, side) in [(Laterality::Left, "left"), (Laterality::Right, "right")] {
                let kl = true_kl(&c.group, &c.mrn, side);
                let p = phantom::knee(kl, seed ^ hash_seed(side));
                phantom::write_dicom(
                    &dir.join(format!("{i:04}-knee-{side}.dcm")),
                    &c.mrn,
                    BodyPart::Knee,
                    lat,
                    c.date,
                    &p,
                    seed ^ hash_seed(side),
                )?;
                summary.images += 1;
            }
        }
    }
    summary.patients = chosen.len();
    crate::dicom::import_dicom(study, &[dir.to_path_buf()], |_| {})?;
    // The latent grades by study ID and side, for the simulated readers.
    for c in &chosen {
        let hash = study.identifier_hash(&c.mrn);
        let sid: String = study.conn().query_row(
            "SELECT study_id FROM patients WHERE mrn_hash = unhex(?1) AND site = ?2",
            [&hash, &c.site],
            |r| r.get(0),
        )?;
        if c.group != "OA" {
            truth.insert((sid.clone(), "patient".into()), c.stage);
        }
        if c.group != "OP" {
            for side in ["left", "right"] {
                truth.insert((sid.clone(), side.into()), true_kl(&c.group, &c.mrn, side));
            }
        }
    }
    study.refresh_cases()?;
    // Two readers.
    for name in ["demo-reader-1", "demo-reader-2"] {
        let mut as_reader = Study::open(db, None, Some(name))?;
        let cases: Vec<(String, Side, String)> = {
            // The admin sees study IDs; the reader does not need them.
            let mut st = study.conn().prepare(
                "SELECT c.id, c.side, p.study_id FROM reading_cases c JOIN patients p ON p.id = c.patient_id ORDER BY c.id",
            )?;
            st.query_map([], |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, String>(2)?,
                ))
            })?
            .filter_map(|x| x.ok())
            .filter_map(|(id, side, sid)| {
                let side: Side = side.parse().ok()?;
                Some((format!("C{id:05}"), side, sid))
            })
            .collect()
        };
        let share = (cases.len() as f64 * READ_SHARE).round() as usize;
        let mut done = 0;
        while done < share {
            let Some(taken) = as_reader.take_next_case()? else {
                break;
            };
            let Some((_, side, sid)) = cases.iter().find(|(c, _, _)| *c == taken.summary.case)
            else {
                break;
            };
            let seed = hash_seed(&format!("{}|{name}", taken.summary.case));
            let key = (sid.clone(), side.code().to_string());
            let t = truth.get(&key).copied().unwrap_or(0);
            let read = if side.is_knee() {
                ReadInput {
                    kl: Some(Grade::Value(noisy(t, 4, seed))),
                    oarsi: Oarsi::default(),
                    op_impression: None,
                    confidence: Some(3 + (seed % 3) as u8),
                }
            } else {
                ReadInput {
                    kl: None,
                    oarsi: Oarsi::default(),
                    op_impression: Some(op_of(noisy(t, 2, seed))),
                    confidence: Some(3 + (seed % 3) as u8),
                }
            };
            as_reader.submit_read(&taken.summary.case, &read, None)?;
            summary.reads += 1;
            done += 1;
        }
    }
    // The adjudicator settles all but a few disagreements with the latent grade.
    let mut adj = Study::open(db, None, Some("demo-adjudicator"))?;
    let queue = adj.adjudication_queue()?;
    let settle = queue.len().saturating_sub(LEFT_FOR_ADJUDICATION);
    for item in queue.iter().take(settle) {
        let view = adj.case_view(&item.summary.case)?;
        let Some(sid) = view.study_id.shown().cloned() else {
            continue;
        };
        let t = truth
            .get(&(sid, view.side.code().to_string()))
            .copied()
            .unwrap_or(0);
        let grade = if view.side.is_knee() {
            FinalGrade {
                kl: Some(Grade::Value(t)),
                op_stage: None,
            }
        } else {
            FinalGrade {
                kl: None,
                op_stage: Some(op_of(t)),
            }
        };
        adj.adjudicate(
            &item.summary.case,
            &grade,
            "demo: the adjudicator's reading of the image",
            Some(view.version),
        )?;
        summary.adjudicated += 1;
    }
    Ok(summary)
}
