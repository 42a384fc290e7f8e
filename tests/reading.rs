//! Blinded reading and adjudication end to end: cases, slots, blinding, locked reads
//! and corrections, consensus, adjudication, concurrency with separate processes on
//! one database, and the reads import.

mod common;
use common::*;
use marrow::db::Study;
use marrow::db::reading::{Blinded, CaseState, FinalMethod};
use marrow::dicom::synth::{self, BodyPart, Laterality, Spec, View};
use marrow::domain::reading::{FinalGrade, Grade, Oarsi, OpImpression, Outcome, ReadInput};
use std::collections::{HashMap, HashSet};

/// OA patients OA1..OA{n} (eligible), one OP patient with a DXA (eligible), one
/// CONTROL with a hip image, one OA patient who is ineligible (malignancy).
fn patients_csv(n_oa: usize) -> String {
    let mut s = String::from(
        "mrn,site,phase,group,sex,birth_date,index_date,deformity,implant,pathological_fracture,malignancy,steroid_long_term,radio_chemo_last\n",
    );
    for i in 1..=n_oa {
        s.push_str(&format!(
            "OA{i},PKUPH,retrospective,OA,F,1960-05-01,2024-05-01,no,no,no,no,no,none\n"
        ));
    }
    s.push_str("OP1,PKUPH,retrospective,OP,F,1950-01-01,2024-05-01,no,no,no,no,no,none\n");
    s.push_str("CT1,SYSMH,retrospective,CONTROL,M,1955-01-01,2024-05-01,no,no,no,no,no,none\n");
    s.push_str("BAD1,PKUPH,retrospective,OA,F,1960-05-01,2024-05-01,no,no,no,yes,no,none\n");
    s
}

const DXA: &str = "mrn,scan_date,region,t_score,z_score\n\
OP1,2024-04-20,femoral_neck,-2.7,-1.0\n\
CT1,2024-04-20,total_hip,-0.5,0.1\n";

fn image(id: &str, part: BodyPart, lat: Option<Laterality>, seed: u64) -> Spec {
    Spec {
        patient_id: id.into(),
        body_part: part,
        laterality: lat,
        view: View::Ap,
        rows: 48,
        cols: 40,
        study_date: chrono::NaiveDate::from_ymd_opt(2024, 5, 1).unwrap(),
        seed,
    }
}

const READERS: [&str; 8] = ["r1", "r2", "r3", "r4", "r5", "r6", "r7", "r8"];

/// A study with users, patients, DXA and images. OA patients' knee images say
/// no side (a bilateral view): a case per knee.
fn setup(n_oa: usize) -> TempStudy {
    let s = TempStudy::init();
    for r in READERS {
        s.expect(&["users", "add", r, "--role", "reader"], 0);
    }
    for (u, role) in [
        ("adj1", "adjudicator"),
        ("adj2", "adjudicator"),
        ("coord", "coordinator"),
        ("boss", "pi"),
    ] {
        s.expect(&["users", "add", u, "--role", role], 0);
    }
    let p = s.write("patients.csv", &patients_csv(n_oa));
    s.expect(&["import", "patients", p.to_str().unwrap()], 0);
    let d = s.write("dxa.csv", DXA);
    s.expect(&["import", "dxa", d.to_str().unwrap()], 0);
    let dir = s.path("dicom");
    std::fs::create_dir_all(&dir).unwrap();
    let mut specs = vec![
        image("OP1", BodyPart::Hip, Some(Laterality::Left), 100),
        image("CT1", BodyPart::Hip, Some(Laterality::Right), 101),
        image("BAD1", BodyPart::Knee, None, 102),
    ];
    for i in 1..=n_oa {
        specs.push(image(&format!("OA{i}"), BodyPart::Knee, None, i as u64));
    }
    for (i, spec) in specs.iter().enumerate() {
        synth::write_radiograph(dir.join(format!("{i:03}.dcm")), spec).unwrap();
    }
    s.expect(&["import", "dicom", dir.to_str().unwrap()], 0);
    s
}

fn as_user(s: &TempStudy, user: &str) -> Study {
    Study::open(&s.db, None, Some(user)).expect("open as user")
}

fn kl_read(k: u8) -> ReadInput {
    ReadInput {
        kl: Some(Grade::Value(k)),
        oarsi: Oarsi::default(),
        op_impression: None,
        confidence: Some(4),
    }
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// The study ID of a case, as an admin sees it.
fn study_id_of(s: &TempStudy, case: &str) -> String {
    s.open()
        .case_view(case)
        .unwrap()
        .study_id
        .shown()
        .unwrap()
        .clone()
}

#[test]
fn cases_are_made_per_knee_for_oa_and_per_patient_for_op_idempotently_and_audited() {
    let s = setup(2);
    let out = json(&s.expect(&["cases", "refresh", "--json"], 0));
    // OA1, OA2: left and right; OP1: patient; CT1 (hip): patient; BAD1 ineligible: none
    assert_eq!(out["added"].as_array().unwrap().len(), 6, "{out}");
    assert_eq!(out["total"], 6);
    let again = json(&s.expect(&["cases", "refresh", "--json"], 0));
    assert_eq!(again["added"].as_array().unwrap().len(), 0);
    assert_eq!(again["total"], 6);
    let cases = json(&s.expect(&["cases", "--json"], 0));
    let mut by_patient: HashMap<String, Vec<String>> = HashMap::new();
    for c in cases.as_array().unwrap() {
        by_patient
            .entry(c["study_id"].as_str().unwrap().to_string())
            .or_default()
            .push(c["side"].as_str().unwrap().to_string());
        assert_eq!(c["state"], "open");
    }
    assert_eq!(by_patient["PKUPH-OA-0001"], vec!["left", "right"]);
    assert_eq!(by_patient["PKUPH-OP-0001"], vec!["patient"]);
    assert_eq!(by_patient["SYSMH-CONTROL-0001"], vec!["patient"]);
    assert!(
        !by_patient.keys().any(|k| k == "PKUPH-OA-0003"),
        "ineligible patient got a case"
    );
    let log = json(&s.expect(&["audit", "log", "--json"], 0));
    let adds = log
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["action"] == "case.add")
        .count();
    assert_eq!(adds, 6);
    s.expect(&["audit", "verify"], 0);
    // a PI only looks
    let out = s.run(&["--as", "boss", "cases", "refresh"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn blinding_holds_in_the_data_layer_until_the_reader_submits() {
    // no OA patients: OP1's and CT1's patient cases, each with a DXA stage to hide
    let s = setup(0);
    s.expect(&["cases", "refresh"], 0);
    // the OP case: r1 and r2 both take it (cases already started come first)
    let mut r1 = as_user(&s, "r1");
    let mut r2 = as_user(&s, "r2");
    let t1 = r1.take_next_case().unwrap().unwrap();
    let t2 = r2.take_next_case().unwrap().unwrap();
    assert_eq!(t1.summary.case, t2.summary.case);
    assert_ne!(t1.slot, t2.slot);
    let case = t1.summary.case.clone();
    assert!(t1.summary.study_id.is_none(), "readers get no study ID");
    let sid = study_id_of(&s, &case);
    let admin_view = s.open().case_view(&case).unwrap();
    let stage = admin_view.dxa_stage.shown().cloned().flatten().unwrap();
    assert!(stage == "Osteoporosis" || stage == "Normal", "{stage}");
    let first = if !t1.summary.side.is_knee() {
        ReadInput {
            kl: None,
            oarsi: Oarsi::default(),
            op_impression: Some(OpImpression::Osteopenia),
            confidence: Some(3),
        }
    } else {
        kl_read(2)
    };
    let second = if !t1.summary.side.is_knee() {
        ReadInput {
            op_impression: Some(OpImpression::Osteoporosis),
            ..first.clone()
        }
    } else {
        kl_read(3)
    };

    // before anyone reads: both blinded
    let v = r2.case_view(&case).unwrap();
    assert!(v.other_reads.is_hidden() && v.dxa_stage.is_hidden());
    r1.submit_read(&case, &first, None).unwrap();

    // r2 has not read: r1's read, the DXA stage, the model, the state, the final are hidden
    let v = r2.case_view(&case).unwrap();
    for (name, hidden) in [
        ("other reads", v.other_reads.is_hidden()),
        ("superseded reads", v.superseded_reads.is_hidden()),
        ("dxa stage", v.dxa_stage.is_hidden()),
        ("model", v.model_prediction.is_hidden()),
        ("state", v.state.is_hidden()),
        ("study id", v.study_id.is_hidden()),
        ("disagreements", v.disagreements.is_hidden()),
        ("final", v.final_grade.is_hidden()),
    ] {
        assert!(hidden, "{name} shown to a reader before their read");
    }
    match &v.other_reads {
        Blinded::Hidden(why) => assert!(why.contains("blinded until you submit"), "{why}"),
        Blinded::Shown(_) => unreachable!(),
    }
    assert_eq!(v.reads_submitted, 1);
    assert!(v.your_reads.is_empty());
    // ... and through the CLI, in JSON and text: nothing of r1's read
    let text = s.expect(&["--as", "r2", "read", "show", &case, "--json"], 0);
    assert!(!text.contains("\"r1\""), "{text}");
    assert!(
        !text.contains("osteopenia") && !text.contains(&stage),
        "{text}"
    );
    let text = s.expect(&["--as", "r2", "read", "show", &case], 0);
    assert!(text.contains("blinded until you submit"), "{text}");
    assert!(!text.contains("r1"), "{text}");
    let list = json(&s.expect(&["--as", "r2", "cases", "--json"], 0));
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .all(|c| c["state"].is_null() && c["study_id"].is_null())
    );
    // the audit trail holds r1's grade, every DXA row, patient row (its group), image
    // row and prediction: none of it for r2, who sees only what r2 did
    let log = s.expect(&["--as", "r2", "audit", "log", "--json"], 0);
    assert!(!log.contains("read.submit"), "{log}");
    let full = s.expect(&["audit", "log", "--json"], 0);
    for action in ["read.submit", "patient.add", "dxa.add"] {
        assert!(
            full.contains(action),
            "{action} missing from the full trail"
        );
        assert!(!log.contains(action), "{action} shown to a reader: {log}");
    }
    let rows = json(&log);
    assert!(
        rows.as_array().unwrap().iter().all(|r| r["actor"] == "r2"),
        "{log}"
    );
    // nor through the patient lists and the screening record: refused in the data layer
    for args in [
        &["--as", "r2", "patients", "--json"][..],
        &["--as", "r2", "flags"][..],
    ] {
        let out = s.run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(stderr(&out).contains("blinded"), "{}", stderr(&out));
    }
    let err = as_user(&s, "r2")
        .patients(&Default::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("site, group and screening"), "{err}");
    // nor a patient's images by study ID (the TUI's images screen asks this way)
    let err = as_user(&s, "r2")
        .patient_images(&sid)
        .unwrap_err()
        .to_string();
    assert!(err.contains("blinded"), "{err}");
    assert!(s.open().patient_images(&sid).is_ok());
    let admin_pats = s.expect(&["patients", "--json"], 0);
    assert!(admin_pats.contains(&stage), "{admin_pats}");
    let out = s.run(&["--as", "r2", "screen", &sid]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("blinded"), "{}", stderr(&out));
    // a reader not assigned to the case cannot open it at all
    let err = as_user(&s, "r3").case_view(&case).unwrap_err().to_string();
    assert!(err.contains("not assigned to you"), "{err}");
    // a coordinator sees the case, not the grades
    let v = as_user(&s, "coord").case_view(&case).unwrap();
    assert!(v.other_reads.is_hidden() && v.dxa_stage.is_hidden());
    assert_eq!(v.study_id.shown(), Some(&sid));

    // r1 has read: sees the DXA stage; r2's read does not exist yet
    let v = r1.case_view(&case).unwrap();
    assert_eq!(v.other_reads.shown().map(|r| r.len()), Some(0));
    assert!(!v.dxa_stage.is_hidden());
    assert_eq!(v.model_prediction, Blinded::Shown(None));
    assert_eq!(v.your_reads.len(), 1);

    // r2 submits: now both see each other's read
    let out = r2.submit_read(&case, &second, None).unwrap();
    assert!(matches!(out.outcome, Outcome::Adjudicate { .. }), "{out:?}");
    assert_eq!(out.state, CaseState::Adjudication);
    let v = r2.case_view(&case).unwrap();
    let others = v.other_reads.shown().unwrap();
    assert_eq!(others.len(), 1);
    assert_eq!(others[0].reader, "r1");
    assert_eq!(others[0].read, first);
    assert_eq!(
        v.dxa_stage.shown().unwrap().as_deref(),
        Some(stage.as_str())
    );
    assert_eq!(v.state, Blinded::Shown(CaseState::Adjudication));
    assert!(!v.disagreements.shown().unwrap().is_empty());
    let v = r1.case_view(&case).unwrap();
    assert_eq!(v.other_reads.shown().unwrap()[0].read, second);
    // an adjudicator and a PI see everything
    for u in ["adj1", "boss"] {
        let v = as_user(&s, u).case_view(&case).unwrap();
        assert_eq!(v.other_reads.shown().unwrap().len(), 2, "{u}");
        assert!(v.dxa_stage.shown().is_some());
    }
}

#[test]
fn a_read_is_locked_and_a_correction_is_a_new_audited_version() {
    let s = setup(1);
    let next = json(&s.expect(&["--as", "r1", "read", "next", "--json"], 0));
    let case = next["summary"]["case"].as_str().unwrap().to_string();
    let patient_case = next["summary"]["side"] == "patient";
    let grade: Vec<&str> = if patient_case {
        vec!["--op-impression", "normal"]
    } else {
        vec!["--kl", "1", "--jsn-medial", "1"]
    };
    let mut args = vec!["--as", "r1", "read", "submit", &case, "--confidence", "4"];
    args.extend(&grade);
    let out = s.expect(&args, 0);
    assert!(out.contains("submitted and locked"), "{out}");
    // a second submission without --correct is refused, naming when it was locked
    let out = s.run(&args);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("locked"), "{}", stderr(&out));
    // --correct needs --reason
    let mut no_reason = args.clone();
    no_reason.push("--correct");
    assert_eq!(s.run(&no_reason).status.code(), Some(2));
    // confidence is required, and checked
    let out = s.run(&["--as", "r1", "read", "submit", &case, "--kl", "2"]);
    assert_eq!(out.status.code(), Some(2));
    let out = s.run(&[
        "--as",
        "r1",
        "read",
        "submit",
        &case,
        "--kl",
        "7",
        "--confidence",
        "3",
    ]);
    assert_eq!(out.status.code(), Some(2));
    // the correction
    let mut corr = vec!["--as", "r1", "read", "submit", &case, "--confidence", "5"];
    let fixed: Vec<&str> = if patient_case {
        vec!["--op-impression", "osteopenia"]
    } else {
        vec!["--kl", "2"]
    };
    corr.extend(&fixed);
    corr.extend(["--correct", "--reason", "misread the joint space"]);
    let out = s.expect(&corr, 0);
    assert!(out.contains("v2"), "{out}");
    let v = as_user(&s, "r1").case_view(&case).unwrap();
    assert_eq!(v.your_reads.len(), 2);
    assert_eq!(v.your_reads[0].version, 1);
    assert_eq!(v.your_reads[1].version, 2);
    assert_eq!(
        v.your_reads[1].correction_reason.as_deref(),
        Some("misread the joint space")
    );
    assert_eq!(v.your_reads[1].read.confidence, Some(5));
    // an adjudicator sees the current version and, apart, the one it replaced
    let v = as_user(&s, "adj1").case_view(&case).unwrap();
    let current = v.other_reads.shown().unwrap();
    assert_eq!(current.len(), 1);
    assert_eq!((current[0].reader.as_str(), current[0].version), ("r1", 2));
    let old = v.superseded_reads.shown().unwrap();
    assert_eq!(old.len(), 1);
    assert_eq!(old[0].version, 1);
    assert_eq!(old[0].read.confidence, Some(4));
    // both versions are in the audit trail, the correction with its reason and the old read
    let log = json(&s.expect(&["audit", "log", "--json"], 0));
    let rows = log.as_array().unwrap();
    let submit = rows.iter().find(|r| r["action"] == "read.submit").unwrap();
    assert_eq!(submit["actor"], "r1");
    let correct = rows.iter().find(|r| r["action"] == "read.correct").unwrap();
    assert_eq!(correct["reason"], "misread the joint space");
    assert!(
        correct["before"]
            .as_str()
            .unwrap()
            .contains("confidence\":4")
    );
    assert!(
        correct["after"]
            .as_str()
            .unwrap()
            .contains("confidence\":5")
    );
    s.expect(&["audit", "verify"], 0);
    // the stored reads cannot be changed behind marrow's back
    let raw = raw_connection(&s.db);
    assert!(raw.execute("UPDATE reads SET kl = 4", []).is_err());
    assert!(raw.execute("DELETE FROM reads", []).is_err());
    let n: i64 = raw
        .query_row("SELECT count(*) FROM reads", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 2);
}

#[test]
fn agreeing_reads_become_a_consensus_final_and_status_counts_it() {
    let s = setup(1);
    s.expect(&["cases", "refresh"], 0);
    let v = json(&s.expect(&["status", "--json"], 0));
    // OA1 left+right, OP1, CT1: 4 cases x 2 reads
    assert_eq!(v["reads_pending"], 8, "{v}");
    assert_eq!(v["adjudication_pending"], 0);
    assert_eq!(v["final_graded"], 0);
    let mut r1 = as_user(&s, "r1");
    let mut r2 = as_user(&s, "r2");
    let case = r1.take_next_case().unwrap().unwrap().summary;
    assert_eq!(
        r2.take_next_case().unwrap().unwrap().summary.case,
        case.case
    );
    let read = if case.side.is_knee() {
        kl_read(3)
    } else {
        ReadInput {
            kl: None,
            oarsi: Oarsi::default(),
            op_impression: Some(OpImpression::Osteoporosis),
            confidence: Some(4),
        }
    };
    let a = r1.submit_read(&case.case, &read, None).unwrap();
    assert!(matches!(
        a.outcome,
        Outcome::Incomplete { have: 1, need: 2 }
    ));
    assert_eq!(a.state, CaseState::Open);
    let b = r2.submit_read(&case.case, &read, None).unwrap();
    assert_eq!(b.state, CaseState::Final);
    let f = as_user(&s, "adj1")
        .case_view(&case.case)
        .unwrap()
        .final_grade
        .shown()
        .cloned()
        .flatten()
        .unwrap();
    assert_eq!(f.method, FinalMethod::Consensus);
    assert_eq!(f.meaning, "consensus");
    assert_eq!(f.reads.len(), 2);
    let v = json(&s.expect(&["status", "--json"], 0));
    assert_eq!(v["reads_pending"], 6);
    assert_eq!(v["final_graded"], 1);
    let text = s.expect(&["status"], 0);
    assert!(text.contains("6 reads pending"), "{text}");
    assert!(text.contains("1 cases final"), "{text}");
    let log = s.expect(&["audit", "log", "--json"], 0);
    assert!(log.contains("final.consensus"));
    // a consensus case is not in the adjudication queue and cannot be adjudicated
    let out = s.run(&[
        "--as",
        "adj1",
        "adjudicate",
        "submit",
        &case.case,
        "--kl",
        "1",
        "--rationale",
        "x",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("already decided"), "{}", stderr(&out));
    // the export: final grades, no MRN, no staff names
    let out_file = s.path("finals.csv");
    s.expect(
        &[
            "--as",
            "boss",
            "reads",
            "export",
            "--out",
            out_file.to_str().unwrap(),
        ],
        0,
    );
    let csv = std::fs::read_to_string(&out_file).unwrap();
    assert!(
        csv.starts_with("case,study_id,site,group,phase,side,kl,not_assessable,op_stage,method")
    );
    assert_eq!(csv.lines().count(), 2, "{csv}");
    assert!(csv.contains("consensus"));
    assert!(
        !csv.contains("OA1") && !csv.contains("OP1") && !csv.contains("r1"),
        "{csv}"
    );
    // a correction that breaks the agreement withdraws the consensus (audited) and
    // sends the case to adjudication; a correction that restores it makes it final again
    let broken = if case.side.is_knee() {
        kl_read(0)
    } else {
        ReadInput {
            op_impression: Some(OpImpression::Normal),
            ..read.clone()
        }
    };
    let out = r1
        .submit_read(&case.case, &broken, Some("wrong image"))
        .unwrap();
    assert_eq!(out.state, CaseState::Adjudication);
    assert!(matches!(out.outcome, Outcome::Adjudicate { .. }));
    let v = as_user(&s, "adj1").case_view(&case.case).unwrap();
    assert_eq!(v.final_grade, Blinded::Shown(None));
    assert!(
        s.expect(&["audit", "log", "--json"], 0)
            .contains("final.withdraw")
    );
    let out = r1
        .submit_read(&case.case, &read, Some("right image after all"))
        .unwrap();
    assert_eq!(out.state, CaseState::Final);
    s.expect(&["audit", "verify"], 0);
    // readers may not export (it shows every final grade)
    let out = s.run(&[
        "--as",
        "r1",
        "reads",
        "export",
        "--out",
        out_file.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
}

/// Two readers disagree on the first OA knee case they take: returns the case.
fn disagreeing_case(s: &TempStudy) -> String {
    s.expect(&["cases", "refresh"], 0);
    let mut r1 = as_user(s, "r1");
    let mut r2 = as_user(s, "r2");
    loop {
        let c = r1.take_next_case().unwrap().unwrap().summary;
        let c2 = r2.take_next_case().unwrap().unwrap().summary;
        assert_eq!(c.case, c2.case);
        if c.side.is_knee() {
            r1.submit_read(&c.case, &kl_read(1), None).unwrap();
            let out = r2.submit_read(&c.case, &kl_read(3), None).unwrap();
            assert_eq!(out.state, CaseState::Adjudication);
            return c.case;
        }
        let op = ReadInput {
            kl: None,
            oarsi: Oarsi::default(),
            op_impression: Some(OpImpression::Normal),
            confidence: Some(4),
        };
        r1.submit_read(&c.case, &op, None).unwrap();
        r2.submit_read(&c.case, &op, None).unwrap();
    }
}

#[test]
fn an_adjudication_is_a_signed_record_that_is_never_overwritten() {
    let s = setup(1);
    let case = disagreeing_case(&s);
    let queue = json(&s.expect(&["--as", "adj1", "adjudicate", "list", "--json"], 0));
    let items = queue.as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["summary"]["case"], case.as_str());
    let rules: Vec<&str> = items[0]["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["rule"].as_str().unwrap())
        .collect();
    assert_eq!(rules, vec!["kl_difference", "kl_oa_split"]);
    assert_eq!(
        json(&s.expect(&["status", "--json"], 0))["adjudication_pending"],
        1
    );
    // readers and PIs may not adjudicate; a rationale is required
    for u in ["r1", "boss"] {
        let out = s.run(&[
            "--as",
            u,
            "adjudicate",
            "submit",
            &case,
            "--kl",
            "2",
            "--rationale",
            "x",
        ]);
        assert_eq!(out.status.code(), Some(2), "{u}");
    }
    let out = s.run(&[
        "--as",
        "adj1",
        "adjudicate",
        "submit",
        &case,
        "--kl",
        "2",
        "--rationale",
        " ",
    ]);
    assert_eq!(out.status.code(), Some(2));
    // a stale version is refused
    let v = as_user(&s, "adj1").case_view(&case).unwrap();
    let stale = (v.version - 1).to_string();
    let out = s.run(&[
        "--as",
        "adj1",
        "adjudicate",
        "submit",
        &case,
        "--kl",
        "2",
        "--rationale",
        "r",
        "--expect-version",
        &stale,
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("changed after you opened it"),
        "{}",
        stderr(&out)
    );
    let ver = v.version.to_string();
    let rec = json(&s.expect(
        &[
            "--as",
            "adj1",
            "adjudicate",
            "submit",
            &case,
            "--kl",
            "2",
            "--rationale",
            "definite osteophytes on the lateral view",
            "--expect-version",
            &ver,
            "--json",
        ],
        0,
    ));
    assert_eq!(rec["decided_by"], "adj1");
    assert_eq!(rec["meaning"], "adjudicated");
    assert_eq!(rec["method"], "adjudicated");
    assert!(rec["decided_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(rec["grade"]["kl"]["value"], 2);
    // the second adjudicator is told who decided what and when
    let out = s.run(&[
        "--as",
        "adj2",
        "adjudicate",
        "submit",
        &case,
        "--kl",
        "4",
        "--rationale",
        "no",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("already decided"), "{err}");
    assert!(err.contains("adj1") && err.contains("KL 2"), "{err}");
    assert!(err.contains(rec["decided_at"].as_str().unwrap()), "{err}");
    // a corrected read after the adjudication leaves the final grade as it is
    let mut r1 = as_user(&s, "r1");
    let out = r1
        .submit_read(&case, &kl_read(2), Some("second look"))
        .unwrap();
    assert!(out.note.unwrap().contains("stands"));
    let f = as_user(&s, "adj2").case_view(&case).unwrap();
    let f = f.final_grade.shown().cloned().flatten().unwrap();
    assert_eq!(
        (f.decided_by.as_str(), f.grade.kl.clone()),
        ("adj1", Some(Grade::Value(2)))
    );
    let raw = raw_connection(&s.db);
    assert!(raw.execute("UPDATE case_finals SET kl = 4", []).is_err());
    assert!(raw.execute("DELETE FROM case_finals", []).is_err());
    s.expect(&["audit", "verify"], 0);
    let v = json(&s.expect(&["status", "--json"], 0));
    assert_eq!(v["adjudication_pending"], 0);
    assert!(v["final_graded"].as_u64().unwrap() >= 1);
}

/// A reader who later becomes an adjudicator is never offered, and may never
/// adjudicate, a case they read (refused in the data layer, with the reason).
#[test]
fn a_case_s_reader_cannot_adjudicate_it_and_is_not_offered_it() {
    let s = setup(1);
    let case = disagreeing_case(&s);
    // r1 read the case first (reader 1), r2 second
    s.expect(&["users", "add", "r1", "--role", "adjudicator"], 0);
    s.expect(&["users", "add", "r2", "--role", "adjudicator"], 0);
    for (u, n) in [("r1", 1), ("r2", 2)] {
        let queue = json(&s.expect(&["--as", u, "adjudicate", "list", "--json"], 0));
        assert!(
            queue
                .as_array()
                .unwrap()
                .iter()
                .all(|i| i["summary"]["case"] != case.as_str()),
            "{u} is offered {case}: {queue}"
        );
        let out = s.run(&[
            "--as",
            u,
            "adjudicate",
            "submit",
            &case,
            "--kl",
            "2",
            "--rationale",
            "my own read was right",
        ]);
        assert_eq!(out.status.code(), Some(2), "{u}: {}", stdout(&out));
        let err = stderr(&out);
        assert!(
            err.contains(&format!(
                "you read {case} (as reader {n}): a case's reader cannot adjudicate it; another adjudicator must"
            )),
            "{u}: {err}"
        );
        // the data layer refuses it too, and the queue there leaves it out
        let mut st = as_user(&s, u);
        assert!(
            st.adjudication_queue()
                .unwrap()
                .iter()
                .all(|i| i.summary.case != case)
        );
        let e = st
            .adjudicate(
                &case,
                &FinalGrade {
                    kl: Some(Grade::Value(2)),
                    op_stage: None,
                },
                "mine",
                None,
            )
            .unwrap_err();
        assert!(matches!(e, marrow::db::DbError::NotAllowed { .. }), "{e}");
    }
    assert_eq!(
        as_user(&s, "adj1").case_view(&case).unwrap().state,
        Blinded::Shown(CaseState::Adjudication),
        "nothing was saved"
    );
    // another adjudicator is offered it and decides it
    let queue = json(&s.expect(&["--as", "adj1", "adjudicate", "list", "--json"], 0));
    assert_eq!(queue[0]["summary"]["case"], case.as_str());
    s.expect(
        &[
            "--as",
            "adj1",
            "adjudicate",
            "submit",
            &case,
            "--kl",
            "2",
            "--rationale",
            "definite osteophytes",
        ],
        0,
    );
}

/// Where each column of a CLI table starts (left-aligned) or ends (right-aligned),
/// from the header line, in chars; `None` for a name not found.
fn header_columns(header: &str, names: &[(&str, bool)]) -> Vec<usize> {
    let mut from = 0;
    names
        .iter()
        .map(|(n, right)| {
            let b = header[from..]
                .find(n)
                .unwrap_or_else(|| panic!("{n} in {header}"))
                + from;
            from = b + n.len();
            let start = header[..b].chars().count();
            if *right {
                start + n.chars().count()
            } else {
                start
            }
        })
        .collect()
}

/// Every row of a table has a cell starting (or, right-aligned, ending) exactly
/// where the header's column does.
fn assert_lined_up(what: &str, lines: &[&str], names: &[(&str, bool)]) {
    let cols = header_columns(lines[0], names);
    for l in &lines[1..] {
        let c: Vec<char> = l.chars().collect();
        let at = |i: usize| c.get(i).copied().unwrap_or(' ');
        for ((name, right), col) in names.iter().zip(&cols) {
            let ok = if *right {
                *col > 0 && at(col - 1) != ' ' && at(*col) == ' '
            } else {
                at(*col) != ' ' && (*col == 0 || at(col - 1) == ' ')
            };
            assert!(
                ok,
                "{what}: column {name:?} (char {col}) does not line up in\n{l}\n{}",
                lines.join("\n")
            );
        }
    }
}

/// Issue 13 item 13c: `cases`, `read list` and `agreement` line their columns up,
/// however long a study ID or a reader's name is.
#[test]
fn case_read_list_and_agreement_tables_line_up() {
    let s = setup(1);
    let (a, b) = ("radiologist-alexandra", "radiologist-benjamin");
    for u in [a, b] {
        s.expect(&["users", "add", u, "--role", "reader"], 0);
    }
    s.expect(&["cases", "refresh"], 0);
    let mut ra = as_user(&s, a);
    let mut rb = as_user(&s, b);
    // both read every case: the knees 1 and 3 (they disagree), the rest agree
    while let Some(t) = ra.take_next_case().unwrap() {
        let c = t.summary;
        rb.take_next_case().unwrap().unwrap();
        let (x, y) = if c.side.is_knee() {
            (kl_read(1), kl_read(3))
        } else {
            let op = ReadInput {
                kl: None,
                oarsi: Oarsi::default(),
                op_impression: Some(OpImpression::Normal),
                confidence: Some(4),
            };
            (op.clone(), op)
        };
        ra.submit_read(&c.case, &x, None).unwrap();
        rb.submit_read(&c.case, &y, None).unwrap();
    }
    let cols = [
        ("case", false),
        ("side", false),
        ("state", false),
        ("study ID", false),
        ("reads", true),
        ("yours", false),
    ];
    let text = s.expect(&["cases"], 0);
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with('C') || l.starts_with("case"))
        .collect();
    assert!(lines.len() >= 4, "{text}");
    assert!(
        text.contains("-CONTROL-") || text.contains("-OP-"),
        "{text}"
    );
    // the admin's rows have no "yours": only the first five columns
    assert_lined_up("cases", &lines, &cols[..5]);
    let text = s.expect(&["--as", a, "read", "list"], 0);
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with('C') || l.starts_with("case"))
        .collect();
    assert!(lines.len() >= 4, "{text}");
    assert_lined_up("read list", &lines, &cols);
    let text = s.expect(&["--as", "adj1", "agreement", "--resamples", "50"], 0);
    let mut tables = 0;
    let all: Vec<&str> = text.lines().collect();
    for (i, l) in all.iter().enumerate() {
        if !l.trim_start().starts_with("comparison") {
            continue;
        }
        let rows: Vec<&str> = all[i..]
            .iter()
            .take_while(|l| {
                !l.trim().is_empty()
                    && !l.contains("confusion matrix")
                    // the note under the table says what "vs final" compares with
                    && !l.contains("\"vs final\":")
            })
            .copied()
            .collect();
        assert!(rows.len() >= 3, "{text}");
        assert!(
            rows.iter().any(|r| r.contains(&format!("{a} vs {b}"))),
            "{text}"
        );
        assert_lined_up(
            "agreement",
            &rows,
            &[
                ("comparison", false),
                ("n", true),
                ("agreement", false),
                ("kappa", false),
                ("weighted kappa (quad.)", false),
                ("sensitivity", false),
                ("specificity", false),
            ],
        );
        tables += 1;
    }
    assert_eq!(tables, 2, "KL and OP tables:\n{text}");
}

#[test]
fn readers_taking_work_at_once_in_separate_processes_never_share_a_slot() {
    // 6 OA patients x 2 knees + OP1 + CT1 = 14 cases, 28 slots; 8 readers x 3 rounds.
    let s = setup(6);
    s.expect(&["cases", "refresh"], 0);
    let mut taken: Vec<(String, i64, String)> = Vec::new();
    for round in 0..3 {
        let children: Vec<(&str, std::process::Child)> = READERS
            .iter()
            .map(|r| {
                let child = s
                    .cmd()
                    .args(["--as", r, "read", "next", "--json"])
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap();
                (*r, child)
            })
            .collect();
        let mut this_round = Vec::new();
        for (r, child) in children {
            let out = child.wait_with_output().unwrap();
            assert!(out.status.success(), "round {round} {r}: {}", stderr(&out));
            let v = json(&stdout(&out));
            assert_eq!(v["newly_assigned"], true, "{v}");
            this_round.push((
                v["summary"]["case"].as_str().unwrap().to_string(),
                v["slot"].as_i64().unwrap(),
                r.to_string(),
            ));
        }
        // everyone submits at once (not-assessable keeps it simple for both kinds of case)
        let children: Vec<std::process::Child> = this_round
            .iter()
            .map(|(case, _, r)| {
                s.cmd()
                    .args([
                        "--as",
                        r,
                        "read",
                        "submit",
                        case,
                        "--not-assessable",
                        "test",
                        "--confidence",
                        "3",
                    ])
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for c in children {
            let out = c.wait_with_output().unwrap();
            assert!(out.status.success(), "{}", stderr(&out));
        }
        taken.extend(this_round);
    }
    assert_eq!(taken.len(), 24);
    let slots: HashSet<(String, i64)> = taken.iter().map(|(c, s, _)| (c.clone(), *s)).collect();
    assert_eq!(
        slots.len(),
        taken.len(),
        "a slot was handed out twice: {taken:?}"
    );
    let pairs: HashSet<(String, String)> = taken
        .iter()
        .map(|(c, _, r)| (c.clone(), r.clone()))
        .collect();
    assert_eq!(
        pairs.len(),
        taken.len(),
        "a reader got a case twice: {taken:?}"
    );
    assert!(taken.iter().all(|(_, slot, _)| (1..=2).contains(slot)));
    let mut per_case: HashMap<&str, usize> = HashMap::new();
    for (c, _, _) in &taken {
        *per_case.entry(c).or_default() += 1;
    }
    assert!(per_case.values().all(|n| *n <= 2), "{per_case:?}");
    // the database agrees
    let raw = raw_connection(&s.db);
    let (rows, distinct): (i64, i64) = raw
        .query_row(
            "SELECT count(*), count(DISTINCT case_id || '/' || reader) FROM reading_assignments",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((rows, distinct), (24, 24));
    s.expect(&["audit", "verify"], 0);
}

#[test]
fn two_adjudicators_submitting_at_once_in_separate_processes_one_wins_and_nothing_is_lost() {
    let s = setup(1);
    let case = disagreeing_case(&s);
    let children: Vec<(&str, &str, std::process::Child)> = [("adj1", "2"), ("adj2", "3")]
        .into_iter()
        .map(|(u, kl)| {
            let c = s
                .cmd()
                .args([
                    "--as",
                    u,
                    "adjudicate",
                    "submit",
                    &case,
                    "--kl",
                    kl,
                    "--rationale",
                    &format!("decided by {u}"),
                    "--json",
                ])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            (u, kl, c)
        })
        .collect();
    let mut winners = Vec::new();
    let mut losers = Vec::new();
    for (u, kl, c) in children {
        let out = c.wait_with_output().unwrap();
        match out.status.code() {
            Some(0) => winners.push((u, kl, json(&stdout(&out)))),
            Some(2) => losers.push((u, stderr(&out))),
            other => panic!("{u}: exit {other:?}: {}", stderr(&out)),
        }
    }
    assert_eq!(
        winners.len(),
        1,
        "exactly one adjudication wins: {losers:?}"
    );
    assert_eq!(losers.len(), 1);
    let (wu, wkl, rec) = &winners[0];
    let (_, err) = &losers[0];
    assert!(err.contains("already decided"), "{err}");
    assert!(err.contains(wu), "the error names the winner: {err}");
    assert!(err.contains(&format!("KL {wkl}")), "{err}");
    // the stored record is the winner's, whole
    let f = as_user(&s, "boss").case_view(&case).unwrap();
    let f = f.final_grade.shown().cloned().flatten().unwrap();
    assert_eq!(f.decided_by, *wu);
    assert_eq!(f.method, FinalMethod::Adjudicated);
    assert_eq!(
        f.rationale.as_deref(),
        Some(format!("decided by {wu}").as_str())
    );
    assert_eq!(
        f.grade,
        FinalGrade {
            kl: Some(Grade::Value(wkl.parse().unwrap())),
            op_stage: None
        }
    );
    assert_eq!(rec["decided_at"].as_str().unwrap(), f.decided_at);
    let log = json(&s.expect(&["audit", "log", "--json"], 0));
    let adj: Vec<&serde_json::Value> = log
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["action"] == "case.adjudicate")
        .collect();
    assert_eq!(adj.len(), 1);
    assert_eq!(adj[0]["actor"], *wu);
    s.expect(&["audit", "verify"], 0);
}

#[test]
fn reads_import_checks_every_row_and_writes_the_rejected_ones() {
    let s = setup(2);
    let file = s.write(
        "reads.csv",
        "reader,mrn,study_id,side,kl,op_impression,read_date\n\
r1,OA1,,left,2,,2023-01-05\n\
r2,,PKUPH-OA-0001,left,2,,2023-01-06\n\
r1,OA1,,right,5,,2023-01-05\n\
r1,NOPE,,left,1,,2023-01-05\n\
ghost,OA1,,right,1,,2023-01-05\n\
adj1,OA1,,right,1,,2023-01-05\n\
r1,OP1,,patient,,osteopenia,2023-02-01\n\
r1,OA2,,middle,1,,2023-01-05\n\
r1,OA2,,left,1,,05/01/2023\n\
r1,OP1,,left,1,,2023-01-05\n\
r1,OA2,,right,1,,2023-01-05\n\
r1,OA2,,right,3,,2023-01-05\n\
r3,OA1,,left,2,,2023-01-07\n",
    );
    let out = s.run(&["--as", "coord", "reads", "import", file.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let text = stdout(&out);
    for (line, why) in [
        (4, "outside 0-4"),
        (5, "not a known patient"),
        (6, "not a registered user"),
        (7, "not reader"),
        (9, "unknown side"),
        (10, "not a date"),
        (11, "no left case"),
        (13, "line 12 with different values"),
        (14, "already has its 2 readers"),
    ] {
        assert!(
            text.contains(&format!("line {line}: ")) && text.contains(why),
            "line {line} ({why}):\n{text}"
        );
    }
    assert!(
        text.contains("13 rows: 4 added, 0 unchanged, 9 rejected"),
        "{text}"
    );
    let rejected = std::fs::read_to_string(s.path("reads.rejected.csv")).unwrap();
    assert_eq!(rejected.lines().count(), 10, "{rejected}");
    assert!(rejected.lines().next().unwrap().ends_with(",reason"));
    assert!(rejected.contains("ghost,OA1"));
    // the two agreeing imported reads of OA1's left knee made a consensus
    let boss = as_user(&s, "boss");
    let cases = boss.cases().unwrap();
    let left = cases
        .iter()
        .find(|c| c.study_id.as_deref() == Some("PKUPH-OA-0001") && c.side.code() == "left")
        .unwrap();
    assert_eq!(left.state, Some(CaseState::Final));
    let v = boss.case_view(&left.case).unwrap();
    let reads = v.other_reads.shown().unwrap();
    assert_eq!(reads.len(), 2);
    assert!(
        reads
            .iter()
            .all(|r| r.source == "import" && r.read.confidence.is_none())
    );
    assert_eq!(reads[0].read_date.as_deref(), Some("2023-01-05"));
    // re-importing adds nothing
    let out = s.run(&["--as", "coord", "reads", "import", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        stdout(&out).contains("0 added, 4 unchanged"),
        "{}",
        stdout(&out)
    );
    // readers may not import; a file without the columns is refused as a whole
    assert_eq!(
        s.run(&["--as", "r1", "reads", "import", file.to_str().unwrap()])
            .status
            .code(),
        Some(2)
    );
    let bad = s.write("bad.csv", "who,what\nr1,2\n");
    let out = s.run(&["--as", "coord", "reads", "import", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("not a reads export"),
        "{}",
        stderr(&out)
    );
    s.expect(&["audit", "verify"], 0);
}

#[test]
fn roles_decide_who_reads_and_who_adjudicates() {
    let s = setup(1);
    for u in ["adj1", "coord", "boss"] {
        let out = s.run(&["--as", u, "read", "next"]);
        assert_eq!(out.status.code(), Some(2), "{u}");
    }
    // the admin sees everything, so cannot read blinded
    let out = s.run(&["read", "next"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("readers only"), "{}", stderr(&out));
    // read next hands out a slot, then the same one until it is read
    let out = s.expect(&["--as", "r1", "read", "next"], 0);
    assert!(out.contains("slot 1 is yours"), "{out}");
    let out = s.expect(&["--as", "r1", "read", "next"], 0);
    assert!(out.contains("have not read it yet"), "{out}");
    let out = s.run(&["--as", "r1", "adjudicate", "list"]);
    assert_eq!(out.status.code(), Some(2));
    // a reader may not submit on a case that is not theirs
    let other = s.open().cases().unwrap();
    let mine = as_user(&s, "r1").reader_worklist().unwrap();
    let not_mine = other.iter().find(|c| c.case != mine[0].case).unwrap();
    let out = s.run(&[
        "--as",
        "r1",
        "read",
        "submit",
        &not_mine.case,
        "--kl",
        "1",
        "--confidence",
        "3",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("not assigned to you"),
        "{}",
        stderr(&out)
    );
}

/// `marrow agreement`: the pairs it compares are the readers' current grades,
/// case by case, and its figures are the domain statistics over exactly those
/// pairs; readers may not ask.
#[test]
fn agreement_compares_the_current_reads_case_by_case_and_is_refused_to_readers() {
    use marrow::domain::agreement::{AgreementReport, ReportOptions};
    let s = setup(4);
    s.expect(&["cases", "refresh"], 0);
    // r1 and r2 read the 8 knee cases; r2 disagrees on the last three.
    let mut r1 = as_user(&s, "r1");
    let mut r2 = as_user(&s, "r2");
    let r1_grades = [0u8, 1, 2, 3, 4, 2, 1, 0];
    let r2_grades = [0u8, 1, 2, 3, 4, 4, 3, 1];
    let op_read = ReadInput {
        kl: None,
        oarsi: Oarsi::default(),
        op_impression: Some(OpImpression::Normal),
        confidence: Some(3),
    };
    // r1 reads every case: the knees in the order given out.
    let mut knee_of: HashMap<String, usize> = HashMap::new();
    while let Some(taken) = r1.take_next_case().unwrap() {
        let case = taken.summary;
        if case.side == marrow::domain::reading::Side::Patient {
            r1.submit_read(&case.case, &op_read, None).unwrap();
            continue;
        }
        let i = knee_of.len();
        r1.submit_read(&case.case, &kl_read(r1_grades[i]), None)
            .unwrap();
        knee_of.insert(case.case.clone(), i);
    }
    assert_eq!(knee_of.len(), 8, "four OA patients, two knees each");
    let mut pairs = Vec::new();
    while let Some(taken) = r2.take_next_case().unwrap() {
        let case = taken.summary;
        match knee_of.get(&case.case) {
            Some(&i) => {
                r2.submit_read(&case.case, &kl_read(r2_grades[i]), None)
                    .unwrap();
                pairs.push((r1_grades[i], r2_grades[i]));
            }
            None => {
                r2.submit_read(&case.case, &op_read, None).unwrap();
            }
        }
    }
    assert_eq!(pairs.len(), 8);
    let out = s.run(&["--as", "r1", "agreement", "--json"]);
    assert!(
        !out.status.success(),
        "a reader must not see the agreement figures"
    );

    let v = json(&s.expect(
        &["--as", "boss", "agreement", "--json", "--resamples", "200"],
        0,
    ));
    let expected = AgreementReport::compute(
        5,
        &pairs,
        &ReportOptions {
            positive_threshold: Some(2),
            resamples: 200,
            ..ReportOptions::default()
        },
    )
    .unwrap();
    let pooled = &v["kl"]["readers_pooled"];
    assert_eq!(pooled["n"], 8, "{v}");
    assert_eq!(v["kl"]["reader_vs_reader"][0]["first"], "r1");
    assert_eq!(v["kl"]["reader_vs_reader"][0]["second"], "r2");
    for field in [
        "percent_agreement",
        "cohen_kappa",
        "quadratic_weighted_kappa",
    ] {
        let got = pooled[field]["value"].as_f64().unwrap();
        let want = match field {
            "percent_agreement" => expected.percent_agreement.value,
            "cohen_kappa" => expected.cohen_kappa.value,
            _ => expected.quadratic_weighted_kappa.value,
        }
        .unwrap();
        assert!((got - want).abs() < 1e-12, "{field}: {got} vs {want}");
    }
    // 5 of 8 agree.
    assert!((pooled["percent_agreement"]["value"].as_f64().unwrap() - 0.625).abs() < 1e-12);
    // The consensus cases have a final grade: each reader is compared with it.
    let finals = v["kl"]["reader_vs_final"].as_array().unwrap();
    assert_eq!(finals.len(), 2, "{v}");
    assert_eq!(
        finals[0]["n"], 5,
        "the five agreed cases are final by consensus"
    );
    let text = s.expect(&["--as", "boss", "agreement", "--resamples", "200"], 0);
    assert!(
        text.contains("r1 vs r2") && text.contains("62.5%"),
        "{text}"
    );
}

/// A reader who holds a slot and never reads (left the study, on leave) does not
/// block the case: an adjudicator frees the slot with a reason, another reader
/// takes it; a submitted read is never released.
#[test]
fn an_unread_slot_can_be_released_by_an_adjudicator_with_a_reason_and_is_audited() {
    let s = setup(1);
    s.expect(&["cases", "refresh"], 0);
    let mut r1 = as_user(&s, "r1");
    let held = r1.take_next_case().unwrap().expect("a case").summary.case;
    // A reader may not release; an adjudicator without a reason may not either.
    let out = s.run(&[
        "--as", "r2", "read", "release", &held, "--reader", "r1", "--reason", "away",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let out = s.run(&[
        "--as", "adj1", "read", "release", &held, "--reader", "r1", "--reason", " ",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("reason"), "{}", stderr(&out));
    s.expect(
        &[
            "--as",
            "adj1",
            "read",
            "release",
            &held,
            "--reader",
            "r1",
            "--reason",
            "r1 left the study",
        ],
        0,
    );
    // The slot is free: r1 no longer holds the case and the audit trail says why.
    assert!(
        r1.reader_worklist().unwrap().iter().all(|c| c.case != held),
        "r1 still holds {held}"
    );
    let log = s.expect(&["audit", "log", "--json"], 0);
    assert!(
        log.contains("case.release") && log.contains("r1 left the study"),
        "{log}"
    );
    // Once read, a slot stays.
    let mut r2 = as_user(&s, "r2");
    let taken = r2.take_next_case().unwrap().expect("a case").summary;
    let read = if taken.side == marrow::domain::reading::Side::Patient {
        ReadInput {
            kl: None,
            oarsi: Oarsi::default(),
            op_impression: Some(OpImpression::Osteopenia),
            confidence: Some(3),
        }
    } else {
        kl_read(2)
    };
    let case = taken.case;
    r2.submit_read(&case, &read, None).unwrap();
    let out = s.run(&[
        "--as", "adj1", "read", "release", &case, "--reader", "r2", "--reason", "mistake",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("submitted a read"),
        "{}",
        stderr(&out)
    );
    s.expect(&["audit", "verify"], 0);
}

/// Cases are refreshed when something they depend on changes (migration 0004's
/// flag), not on every `read next`: a patient and image imported after the
/// readers started still become cases that `read next` hands out.
#[test]
fn a_patient_imaged_after_reading_started_gets_cases_at_the_next_take() {
    let s = setup(1);
    let mut r1 = as_user(&s, "r1");
    let op_read = ReadInput {
        kl: None,
        oarsi: Oarsi::default(),
        op_impression: Some(OpImpression::Normal),
        confidence: Some(3),
    };
    let mut read = 0;
    while let Some(t) = r1.take_next_case().unwrap() {
        let r = if t.summary.side == marrow::domain::reading::Side::Patient {
            op_read.clone()
        } else {
            kl_read(1)
        };
        r1.submit_read(&t.summary.case, &r, None).unwrap();
        read += 1;
    }
    assert!(read >= 3, "r1 read {read} cases");
    // A new OA patient with a bilateral knee image.
    let csv = "mrn,site,phase,group,sex,birth_date,index_date,deformity,implant,pathological_fracture,malignancy,steroid_long_term,radio_chemo_last\n\
               LATE1,PKUPH,retrospective,OA,F,1961-05-01,2024-05-01,no,no,no,no,no,none\n";
    let p = s.write("late.csv", csv);
    s.expect(&["import", "patients", p.to_str().unwrap()], 0);
    let dir = s.path("late");
    std::fs::create_dir_all(&dir).unwrap();
    synth::write_radiograph(
        dir.join("late.dcm"),
        &image("LATE1", BodyPart::Knee, None, 777),
    )
    .unwrap();
    s.expect(&["import", "dicom", dir.to_str().unwrap()], 0);
    let next = r1
        .take_next_case()
        .unwrap()
        .expect("the new patient's knees are cases");
    assert_ne!(next.summary.side, marrow::domain::reading::Side::Patient);
    assert!(
        r1.take_next_case()
            .unwrap()
            .is_some_and(|t| !t.newly_assigned)
    );
}
