//! The reference standard of each task (issue 14 item 1): osteoporosis figures are
//! scored against the DXA WHO stage of eligible patients aged 50 or more, never
//! against the readers' impression; what is left out is counted by reason.

mod common;

use common::TempStudy;
use marrow::domain::evaluation::ReferenceStandard;
use marrow::domain::protocol::Phase;
use marrow::inference::Task;
use std::collections::BTreeMap;

const PATIENTS: &str = "mrn,site,phase,group,sex,birth_date,index_date,deformity,implant,pathological_fracture,malignancy,steroid_long_term,radio_chemo_last
M1,PKUPH,retrospective,OP,F,1950-01-01,2024-05-01,no,no,no,no,no,none
M2,PKUPH,retrospective,OP,F,1960-01-01,2024-05-01,no,no,no,no,no,none
M3,PKUPH,retrospective,CONTROL,M,1955-01-01,2024-05-01,no,no,no,no,no,none
M4,PKUPH,retrospective,OP,F,1975-01-01,2024-05-01,no,no,no,no,no,none
M5,PKUPH,retrospective,OP,F,1974-05-01,2024-05-01,no,no,no,no,no,none
M6,PKUPH,retrospective,OP,F,1950-01-01,2024-05-01,no,no,no,no,no,none
M7,PKUPH,retrospective,OA,F,1950-01-01,2024-05-01,no,no,no,no,no,none
M8,PKUPH,retrospective,OP,F,1950-01-01,2024-05-01,no,no,no,no,yes,none
M9,SYSMH,prospective,OP,M,1950-01-01,2026-01-10,no,no,no,no,no,none
";

/// Lowest T-score per scan (hand-worked WHO stage): M1 -2.7 osteoporosis, M2 -1.8
/// osteopenia, M3 -0.5 normal, M4 -2.8 but 49 at the index date, M5 -3.0 and 50
/// exactly, M6 no scan, M8 -2.9 but on long-term steroids (E3), M9 -2.6.
const DXA: &str = "mrn,scan_date,region,t_score,z_score
M1,2024-04-21,lumbar_spine,-2.1,-1.0
M1,2024-04-21,total_hip,-2.7,-1.5
M2,2024-04-21,lumbar_spine,-1.2,-0.4
M2,2024-04-21,femoral_neck,-1.8,-0.9
M3,2024-04-21,total_hip,-0.5,0.1
M4,2024-04-21,total_hip,-2.8,-2.1
M5,2024-04-21,total_hip,-3.0,-2.2
M8,2024-04-21,total_hip,-2.9,-1.9
M9,2026-01-02,femoral_neck,-2.6,-1.4
";

fn study() -> TempStudy {
    let s = TempStudy::init();
    let p = s.write("p.csv", PATIENTS);
    s.expect(&["import", "patients", p.to_str().unwrap()], 0);
    let d = s.write("d.csv", DXA);
    s.expect(&["import", "dxa", d.to_str().unwrap()], 0);
    s
}

#[test]
fn the_op_reference_is_the_dxa_who_stage_of_eligible_patients_aged_50_or_more() {
    let s = study();
    let study = s.open();
    let r = study
        .reference_cases(Task::Op, Some(Phase::Retrospective))
        .unwrap();
    assert_eq!(r.reference, ReferenceStandard::DxaWho);
    assert_eq!(r.reference.code(), "dxa_who");
    let labels: BTreeMap<String, u8> = r
        .cases
        .iter()
        .map(|c| (c.study_id.clone(), c.label))
        .collect();
    let want: BTreeMap<String, u8> = [
        ("PKUPH-CONTROL-0001", 0), // M3 normal
        ("PKUPH-OP-0001", 2),      // M1 osteoporosis
        ("PKUPH-OP-0002", 1),      // M2 osteopenia
        ("PKUPH-OP-0004", 2),      // M5, 50 at the index date
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(labels, want);
    assert!(r.cases.iter().all(|c| c.side == "patient"));
    let excluded: Vec<(&str, usize)> = r.excluded.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    assert_eq!(
        excluded,
        vec![
            ("ineligible", 1),                                        // M8
            ("screening pending", 1),                                 // M6: no DXA, E5 waits
            ("under 50 (the Z-score rule applies, no WHO stage)", 1), // M4
        ]
    );
    // The OA patient without DXA is not part of the OP figures at all; the
    // prospective patient is in its own cohort.
    let all = study.reference_cases(Task::Op, None).unwrap();
    assert_eq!(all.cases.len(), 5);
    assert!(
        all.cases
            .iter()
            .any(|c| c.study_id == "SYSMH-OP-0001" && c.label == 2)
    );
    let pro = study
        .reference_cases(Task::Op, Some(Phase::Prospective))
        .unwrap();
    assert_eq!(pro.cases.len(), 1);
    assert!(pro.excluded.is_empty(), "{:?}", pro.excluded);
}

#[test]
fn readers_never_get_a_reference_standard() {
    let s = study();
    s.expect(&["users", "add", "r1", "--role", "reader"], 0);
    let reader = marrow::db::Study::open(&s.db, None, Some("r1")).unwrap();
    let err = reader
        .reference_cases(Task::Op, None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("blinded"), "{err}");
}

#[test]
fn evaluate_says_why_it_has_nothing_to_score_and_refuses_an_unknown_cohort() {
    let s = study();
    // no image, so no prediction
    let out = s.run(&["evaluate", "--task", "op"]);
    assert_ne!(out.status.code(), Some(0));
    let err = common::stderr(&out);
    assert!(err.contains("predicted nothing yet"), "{err}");
    let out = s.run(&["evaluate", "--task", "op", "--cohort", "neither"]);
    let err = common::stderr(&out);
    assert!(
        err.contains("--cohort neither") && err.contains("prospective, retrospective or all"),
        "{err}"
    );
}

/// The analysis export carries the same reference: `op_reference` is the WHO stage
/// of exactly the patients `reference_cases` labels, empty for the others.
#[test]
fn the_analysis_export_marks_the_op_reference_as_evaluate_uses_it() {
    let s = study();
    let out = s.path("analysis.csv");
    s.expect(&["export", "analysis", "--out", out.to_str().unwrap()], 0);
    let mut r = csv::Reader::from_path(&out).unwrap();
    let head = r.headers().unwrap().clone();
    let col = |name: &str| head.iter().position(|h| h == name).unwrap();
    let (sid, op) = (col("study_id"), col("op_reference"));
    let got: BTreeMap<String, String> = r
        .records()
        .map(|row| {
            let row = row.unwrap();
            (row[sid].to_string(), row[op].to_string())
        })
        .collect();
    let reference = s
        .open()
        .reference_cases(Task::Op, None)
        .unwrap()
        .cases
        .into_iter()
        .map(|c| {
            (
                c.study_id,
                ["normal", "osteopenia", "osteoporosis"][c.label as usize],
            )
        })
        .collect::<BTreeMap<_, _>>();
    for (id, v) in &got {
        assert_eq!(reference.get(id).copied().unwrap_or(""), v, "{id}: {got:?}");
    }
    // the 49-year-old with a T-score of -2.8 is not in it
    assert_eq!(got["PKUPH-OP-0003"], "");
    assert_eq!(got["PKUPH-OP-0004"], "osteoporosis");
}
