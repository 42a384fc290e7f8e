//! The command line end to end: init, keys, imports, screening, roles, audit.

mod common;
use common::*;
use std::os::unix::fs::PermissionsExt;

#[test]
fn init_creates_an_encrypted_database_and_a_private_key_file() {
    let s = TempStudy::init();
    let key = marrow::db::keys::default_key_file(&s.db);
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let text = std::fs::read_to_string(&key).unwrap();
    assert_eq!(text.trim().len(), 64);
    assert!(text.trim().chars().all(|c| c.is_ascii_hexdigit()));
    let db_mode = std::fs::metadata(&s.db).unwrap().permissions().mode() & 0o777;
    assert_eq!(db_mode, 0o600);
    let head = std::fs::read(&s.db).unwrap();
    assert!(
        !head.starts_with(b"SQLite format 3"),
        "database header is plaintext"
    );
    // a second init must not overwrite the study
    let out = s.run(&["init"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("already exists"), "{}", stderr(&out));
}

#[test]
fn wrong_or_missing_key_is_a_clear_error_and_never_a_new_database() {
    let s = TempStudy::init();
    let key = marrow::db::keys::default_key_file(&s.db);
    let before = std::fs::read(&s.db).unwrap();
    std::fs::write(&key, format!("{}\n", "ab".repeat(32))).unwrap();
    let out = s.run(&["status"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("does not open"), "{err}");
    assert!(err.contains(&key.display().to_string()), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(std::fs::read(&s.db).unwrap().len(), before.len());

    std::fs::remove_file(&key).unwrap();
    let out = s.run(&["status"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("no key for"), "{}", stderr(&out));

    let other = TempStudy::empty();
    let out = other.run(&["status"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("no study database"),
        "{}",
        stderr(&out)
    );
    assert!(
        !other.db.exists(),
        "opening a missing database must not create one"
    );
}

#[test]
fn a_key_file_readable_by_everyone_is_refused() {
    let s = TempStudy::init();
    let key = marrow::db::keys::default_key_file(&s.db);
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = s.run(&["status"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("chmod 600"), "{}", stderr(&out));
}

#[test]
fn marrow_key_from_the_environment_needs_no_key_file() {
    let s = TempStudy::empty();
    let key = "0f".repeat(32);
    let out = s
        .cmd()
        .env("MARROW_KEY", &key)
        .arg("init")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!marrow::db::keys::default_key_file(&s.db).exists());
    let out = s
        .cmd()
        .env("MARROW_KEY", &key)
        .args(["status", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let out = s
        .cmd()
        .env("MARROW_KEY", "1f".repeat(32))
        .arg("status")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("$MARROW_KEY"), "{}", stderr(&out));
}

#[test]
fn protocol_file_overrides_targets_window_and_sites() {
    let s = TempStudy::empty();
    let p = s.write(
        "protocol.toml",
        "sites = [\"PKUPH\", \"SYSMH\", \"XH\"]\ndxa_window_days = 30\n[targets]\nretrospective = 10\n",
    );
    s.expect(&["init", "--protocol", p.to_str().unwrap()], 0);
    let v: serde_json::Value = serde_json::from_str(&s.expect(&["status", "--json"], 0)).unwrap();
    let cohorts = v["cohorts"].as_array().unwrap();
    assert_eq!(cohorts.len(), 18);
    assert!(cohorts.iter().any(|c| c["site"] == "XH"));
    assert!(
        cohorts
            .iter()
            .filter(|c| c["phase"] == "retrospective")
            .all(|c| c["target"] == 10)
    );
    // a 30-day window: a DXA 40 days away does not count
    s.write(
        "p.csv",
        "mrn,site,phase,group,birth_date,index_date\nX1,XH,retrospective,OP,1950-01-01,2024-05-01\n",
    );
    s.write(
        "d.csv",
        "mrn,scan_date,region,t_score\nX1,2024-06-10,total_hip,-2.0\n",
    );
    s.expect(
        &["import", "patients", s.path("p.csv").to_str().unwrap()],
        0,
    );
    s.expect(&["import", "dxa", s.path("d.csv").to_str().unwrap()], 0);
    let flags = s.expect(&["patients", "--flag", "missing_dxa", "--json"], 0);
    assert!(flags.contains("XH-OP-0001"), "{flags}");
    let bad = s.write("bad.toml", "dxa_windw_days = 3\n");
    let other = TempStudy::empty();
    let out = other.run(&["init", "--protocol", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("dxa_windw_days"), "{}", stderr(&out));
}

#[test]
fn import_takes_good_rows_lists_bad_ones_and_is_idempotent() {
    let s = TempStudy::init();
    let csv = format!(
        "{PATIENTS}MRN004,PKUPH,retrospective,OA,F,2030-01-01,2024-05-01,no,no,no,no,no,none,X,Y\n\
         MRN005,MGH,retrospective,OA,F,1960-01-01,2024-05-01,no,no,no,no,no,none,X,Y\n\
         MRN006,PKUPH,retrospective,OA,F,1960-01-01,2024-05-01,maybe,no,no,no,no,none,X,Y\n\
         MRN007,PKUPH,retrospective,OA,F,1960-01-01\n"
    );
    let file = s.write("patients.csv", &csv);
    let out = s.expect(&["import", "patients", file.to_str().unwrap()], 3);
    assert!(
        out.contains("line 5: birth_date 2030-01-01 is after index_date 2024-05-01"),
        "{out}"
    );
    assert!(out.contains("line 6: unknown site 'MGH'"), "{out}");
    assert!(out.contains("line 7: deformity 'maybe'"), "{out}");
    assert!(
        out.contains("line 8: has 6 fields but the header has 15"),
        "{out}"
    );
    assert!(out.contains("3 added"), "{out}");
    let rejected = std::fs::read_to_string(s.path("patients.rejected.csv")).unwrap();
    let lines: Vec<&str> = rejected.lines().collect();
    assert_eq!(lines.len(), 5, "{rejected}");
    assert!(lines[0].ends_with(",reason"));
    assert!(lines[1].starts_with("MRN004,") && lines[1].contains("after index_date"));

    // the same file again changes nothing
    let audit_before = s.open().audit_log(None).unwrap().len();
    let out = s.expect(&["import", "patients", file.to_str().unwrap()], 3);
    assert!(out.contains("0 added, 0 updated, 3 unchanged"), "{out}");
    assert_eq!(s.open().audit_log(None).unwrap().len(), audit_before);

    // a changed row updates the record, audited with before and after
    let changed = s.write(
        "patients2.csv",
        "mrn,site,phase,group,sex,birth_date,index_date,deformity\nMRN001,PKUPH,retrospective,OA,F,1960-05-01,2024-05-01,yes\n",
    );
    let out = s.expect(&["import", "patients", changed.to_str().unwrap()], 0);
    assert!(out.contains("1 updated"), "{out}");
    let log = s.open().audit_log(Some("PKUPH-OA-0001")).unwrap();
    let upd = log
        .iter()
        .find(|r| r.action == "patient.update")
        .expect("update audited");
    assert!(
        upd.before
            .as_deref()
            .unwrap()
            .contains("\"deformity\":false")
    );
    assert!(upd.after.as_deref().unwrap().contains("\"deformity\":true"));
    let check = s.expect(&["screen", "PKUPH-OA-0001"], 0);
    assert!(
        check.contains("INELIGIBLE") && check.contains("I4"),
        "{check}"
    );
    // a clean re-run removes the stale rejected list
    let good = s.write("patients.csv", PATIENTS);
    s.expect(&["import", "patients", good.to_str().unwrap()], 0);
    assert!(!s.path("patients.rejected.csv").exists());
}

#[test]
fn import_reads_bom_crlf_quotes_any_column_order_and_any_case() {
    let s = TempStudy::init();
    let text = "\u{feff}Group,\"Phone\",SITE,Mrn,Phase,Index_Date,BIRTH_DATE,Height_cm,Weight_kg\r\n\
                OP,\"+86 10, ext 5\",pkuph,Q1,Retrospective,2024-05-01,1950-05-01,160,64\r\n";
    let f = s.write("p.csv", text);
    let out = s.expect(&["import", "patients", f.to_str().unwrap()], 0);
    assert!(out.contains("1 added"), "{out}");
    let d = s.open().patient("PKUPH-OP-0001").unwrap();
    assert_eq!(d.record.age, Some(74));
    assert_eq!(d.record.bmi, Some(25.0));
}

#[test]
fn an_export_missing_a_required_column_cannot_run() {
    let s = TempStudy::init();
    let f = s.write("p.csv", "mrn,site,group\nA,PKUPH,OA\n");
    let out = s.run(&["import", "patients", f.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("lacks the column(s) phase"),
        "{}",
        stderr(&out)
    );
    let out = s.run(&["import", "dxa", s.path("nope.csv").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("nope.csv"), "{}", stderr(&out));
}

#[test]
fn dxa_and_labs_link_by_mrn_and_reject_unknown_patients() {
    let s = TempStudy::init();
    let p = s.write("patients.csv", PATIENTS);
    s.expect(&["import", "patients", p.to_str().unwrap()], 0);
    let d = s.write(
        "dxa.csv",
        "mrn,scan_date,region,t_score,z_score\nmrn002,2024-04-01,femoral_neck,-2.5,-1.1\nMRN002,2024-04-01,total_hip,-1.9,\nNOPE,2024-04-01,total_hip,-1.9,\n",
    );
    let out = s.expect(&["import", "dxa", d.to_str().unwrap()], 3);
    assert!(out.contains("line 4: mrn is not a known patient"), "{out}");
    let l = s.write(
        "labs.csv",
        "mrn,date,analyte,value,unit\nMRN002,2024-04-02,25(OH)D,18,ng/mL\nMRN002,2024-04-02,glucose,5,mmol/L\n",
    );
    let out = s.expect(&["import", "labs", l.to_str().unwrap()], 3);
    assert!(out.contains("line 3: analyte 'glucose'"), "{out}");
    let detail = s.open().patient("PKUPH-OP-0001").unwrap();
    assert_eq!(detail.summary.decision.code(), "eligible");
    assert_eq!(detail.summary.who_stage.as_deref(), Some("Osteoporosis"));
    assert_eq!(detail.labs.len(), 1);
    assert_eq!(detail.labs[0].analyte, "vitamin_d_25oh");
    let status: serde_json::Value =
        serde_json::from_str(&s.expect(&["status", "--json"], 0)).unwrap();
    assert_eq!(status["patients"], 3);
    assert_eq!(status["eligibility"]["eligible"], 2);
    assert_eq!(status["eligibility"]["ineligible"], 1); // chemotherapy 2 months before index
    assert_eq!(status["missing_dxa"], 0);
    assert_eq!(status["cohorts"].as_array().unwrap().len(), 12);
}

#[test]
fn screening_by_hand_needs_a_reason_wins_and_is_audited() {
    let s = TempStudy::init();
    let p = s.write("patients.csv", PATIENTS);
    s.expect(&["import", "patients", p.to_str().unwrap()], 0);
    let out = s.run(&["screen", "PKUPH-OA-0001", "--set", "E5=yes"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--reason is required"));
    let out = s.expect(
        &[
            "screen",
            "PKUPH-OA-0001",
            "--set",
            "E5=yes",
            "--reason",
            "motion blur on both views",
        ],
        0,
    );
    assert!(out.contains("INELIGIBLE"), "{out}");
    assert!(
        out.contains("MANUAL applies by root (motion blur on both views)"),
        "{out}"
    );
    let log = s.expect(&["audit", "log", "--patient", "PKUPH-OA-0001", "--json"], 0);
    let rows: serde_json::Value = serde_json::from_str(&log).unwrap();
    let last = rows.as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["action"], "screening.set");
    assert_eq!(last["reason"], "motion blur on both views");
    assert_eq!(last["entity_id"], "PKUPH-OA-0001/E5");
    let out = s.expect(
        &[
            "screen",
            "PKUPH-OA-0001",
            "--clear",
            "E5",
            "--reason",
            "re-read: fine",
        ],
        0,
    );
    assert!(
        out.contains("ELIGIBLE") && !out.contains("INELIGIBLE"),
        "{out}"
    );
    let out = s.run(&[
        "screen",
        "PKUPH-OA-0001",
        "--set",
        "I9=yes",
        "--reason",
        "x",
    ]);
    assert!(
        stderr(&out).contains("unknown criterion 'I9'"),
        "{}",
        stderr(&out)
    );
    let out = s.run(&["screen", "PKUPH-XX-0001"]);
    assert!(
        stderr(&out).contains("no patient with study ID"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn roles_pi_is_read_only_and_unknown_users_are_told_whom_to_ask() {
    let s = TempStudy::init();
    s.expect(&["users", "add", "pat", "--role", "pi"], 0);
    s.expect(&["users", "add", "cora", "--role", "coordinator"], 0);
    let list = s.expect(&["users", "list"], 0);
    assert!(
        list.contains("pat") && list.contains("cora") && list.contains("root"),
        "{list}"
    );
    let p = s.write("patients.csv", PATIENTS);
    let out = s.run(&["--as", "pat", "import", "patients", p.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out)
            .contains("pat (role pi) may not import clinical data (PIs have read-only access)"),
        "{}",
        stderr(&out)
    );
    s.expect(
        &["--as", "cora", "import", "patients", p.to_str().unwrap()],
        0,
    );
    s.expect(&["--as", "pat", "status"], 0);
    let out = s.run(&[
        "--as",
        "pat",
        "screen",
        "PKUPH-OA-0001",
        "--set",
        "I4=no",
        "--reason",
        "x",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let out = s.run(&["--as", "cora", "users", "add", "x", "--role", "admin"]);
    assert!(
        stderr(&out).contains("may not manage users"),
        "{}",
        stderr(&out)
    );
    let out = s.run(&["--as", "nobody", "status"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("ask an admin (root)"),
        "{}",
        stderr(&out)
    );
    // the audit trail records both the acting user and the OS user
    let log: serde_json::Value =
        serde_json::from_str(&s.expect(&["audit", "log", "--json"], 0)).unwrap();
    let add = log
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["action"] == "patient.add")
        .unwrap();
    assert_eq!(add["actor"], "cora");
    assert_eq!(add["real_actor"], "root");
}

#[test]
fn audit_verify_names_the_first_altered_or_removed_row() {
    let s = TempStudy::init();
    let p = s.write("patients.csv", PATIENTS);
    s.expect(&["import", "patients", p.to_str().unwrap()], 0);
    let ok = s.expect(&["audit", "verify"], 0);
    assert!(ok.contains("intact: 5 rows"), "{ok}");

    let raw = raw_connection(&s.db);
    // marrow itself refuses to change the trail
    assert!(
        raw.execute("UPDATE audit_log SET reason = 'x' WHERE id = 4", [])
            .is_err()
    );
    // someone going around the triggers is caught
    raw.execute_batch("DROP TRIGGER audit_log_no_update; DROP TRIGGER audit_log_no_delete;")
        .unwrap();
    raw.execute(
        "UPDATE audit_log SET after = replace(after, 'OP', 'OA') WHERE id = 4",
        [],
    )
    .unwrap();
    let out = s.run(&["audit", "verify"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("row 4"), "{}", stderr(&out));
    drop(raw);

    let s2 = TempStudy::init();
    let p = s2.write("patients.csv", PATIENTS);
    s2.expect(&["import", "patients", p.to_str().unwrap()], 0);
    let raw = raw_connection(&s2.db);
    raw.execute_batch("DROP TRIGGER audit_log_no_delete;")
        .unwrap();
    raw.execute("DELETE FROM audit_log WHERE id = 3", [])
        .unwrap();
    let out = s2.run(&["audit", "verify"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("row 3 is missing"),
        "{}",
        stderr(&out)
    );
    raw.execute("DELETE FROM audit_log WHERE id > 3", [])
        .unwrap();
    let out = s2.run(&["audit", "verify"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("removed from the end"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn status_patients_and_flags_agree() {
    let s = TempStudy::init();
    let p = s.write("patients.csv", PATIENTS);
    s.expect(&["import", "patients", p.to_str().unwrap()], 0);
    let status: serde_json::Value =
        serde_json::from_str(&s.expect(&["status", "--json"], 0)).unwrap();
    let all: serde_json::Value =
        serde_json::from_str(&s.expect(&["patients", "--json"], 0)).unwrap();
    assert_eq!(
        all.as_array().unwrap().len() as u64,
        status["patients"].as_u64().unwrap()
    );
    for d in ["eligible", "ineligible", "pending"] {
        let rows: serde_json::Value =
            serde_json::from_str(&s.expect(&["patients", "--json", "--decision", d], 0)).unwrap();
        assert_eq!(
            rows.as_array().unwrap().len() as u64,
            status["eligibility"][d].as_u64().unwrap(),
            "{d}"
        );
    }
    let flags: serde_json::Value =
        serde_json::from_str(&s.expect(&["flags", "--json"], 0)).unwrap();
    let flagged = flags["patients"].as_array().unwrap();
    assert_eq!(flagged.len(), 1);
    assert_eq!(flagged[0]["study_id"], "PKUPH-OP-0001");
    assert_eq!(flagged[0]["flags"][0], "missing_dxa");
    let table = s.expect(&["status"], 0);
    assert!(table.contains("missing DXA 1"), "{table}");
    let out = s.run(&["patients", "--decision", "maybe"]);
    assert!(
        stderr(&out).contains("unknown decision"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn init_in_a_missing_folder_says_so() {
    let mut s = TempStudy::empty();
    s.db = s.path("nope/study.db");
    let out = s.run(&["init"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("does not exist"), "{}", stderr(&out));
}

#[test]
fn demo_builds_a_study_whose_figures_agree_with_status() {
    let s = TempStudy::empty();
    let dir = s.path("demo");
    let out = s
        .cmd()
        .args(["demo", "--no-tui", "--dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("patients_bad.csv"), "{text}");
    assert!(text.contains("on purpose"), "{text}");
    let db = dir.join("demo.db");
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_marrow"))
        .arg("--db")
        .arg(&db)
        .args(["status", "--json"])
        .env_remove("MARROW_KEY")
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let total = v["patients"].as_u64().unwrap();
    // 42 edge cases, 3 good rows of the bad-rows file, the generated cohort
    assert_eq!(total, 42 + 3 + marrow::cli::DEMO_GENERATED_PATIENTS as u64);
    for d in ["eligible", "ineligible", "pending"] {
        assert!(
            v["eligibility"][d].as_u64().unwrap() > 0,
            "no {d} patient in the demo"
        );
    }
    assert!(v["missing_dxa"].as_u64().unwrap() > 0);
    assert!(text.contains(&format!("patients {total}")), "{text}");
    // the synthetic radiographs: all stored, the one without a patient waiting
    use marrow::dicom::synth;
    assert!(text.contains("dicom/"), "{text}");
    // ... and the phantom radiographs of the demo's imaging cohort (all linked)
    let cohort = std::fs::read_dir(dir.join("dicom-cohort")).unwrap().count() as u64;
    assert!(cohort >= 100, "{cohort}");
    assert!(text.contains("dicom-cohort/"), "{text}");
    assert_eq!(
        v["images"].as_u64(),
        Some(synth::fixture_specs().len() as u64 + cohort)
    );
    let unmatched = synth::fixture_specs()
        .iter()
        .filter(|(_, s)| s.patient_id == synth::UNMATCHED_PATIENT_ID)
        .count() as u64;
    assert_eq!(v["quarantined"].as_u64(), Some(unmatched));
    // a second demo into the same folder refuses rather than overwriting
    let again = s
        .cmd()
        .args(["demo", "--no-tui", "--dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(2));
    assert!(
        stderr(&again).contains("already holds a demo"),
        "{}",
        stderr(&again)
    );
}

#[test]
fn a_pi_refused_cases_refresh_is_told_pis_have_read_only_access() {
    let s = TempStudy::init();
    s.expect(&["users", "add", "pat", "--role", "pi"], 0);
    let out = s.run(&["--as", "pat", "cases", "refresh"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out)
            .contains("pat (role pi) may not create reading cases (PIs have read-only access)"),
        "{}",
        stderr(&out)
    );
}

/// Case (study ID, side) -> case ID, as `cases --json` lists them in a demo built in `dir`.
fn demo_case_ids(s: &TempStudy, dir: &std::path::Path) -> Vec<(String, String, String)> {
    let out = s
        .cmd()
        .args(["demo", "--no-tui", "--dir"])
        .arg(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_marrow"))
        .arg("--db")
        .arg(dir.join("demo.db"))
        .args(["cases", "--json"])
        .env_remove("MARROW_KEY")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut ids: Vec<(String, String, String)> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["study_id"].as_str().unwrap().to_string(),
                c["side"].as_str().unwrap().to_string(),
                c["case"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    ids.sort();
    ids
}

#[test]
fn two_demo_runs_give_the_same_case_ids_to_the_same_patients_and_knees() {
    // Each study has its own key, so the keyed MRN hashes (and the order new patients'
    // rows go in) differ between the two: case IDs must not follow them.
    let s = TempStudy::empty();
    let a = demo_case_ids(&s, &s.path("demo-a"));
    let b = demo_case_ids(&s, &s.path("demo-b"));
    assert!(a.len() > 100, "{}", a.len());
    assert_eq!(a, b);
}

/// Runs `marrow` on the sites' day `today` (the `MARROW_TODAY` override).
fn run_on(s: &TempStudy, today: &str, args: &[&str]) -> std::process::Output {
    s.cmd()
        .env("MARROW_TODAY", today)
        .args(args)
        .output()
        .expect("run marrow")
}

#[test]
fn dates_in_the_future_and_index_dates_outside_their_period_are_refused_with_line_and_column() {
    let s = TempStudy::init();
    let csv = "mrn,site,phase,group,sex,birth_date,index_date\n\
               F1,PKUPH,retrospective,OA,F,1960-01-01,2030-01-01\n\
               F2,PKUPH,retrospective,OA,F,1960-01-01,2005-10-31\n\
               F3,PKUPH,retrospective,OA,F,1960-01-01,2005-11-01\n\
               F4,PKUPH,prospective,OA,F,1960-01-01,2025-11-30\n\
               F5,PKUPH,prospective,OA,F,1960-01-01,2026-12-04\n\
               F6,PKUPH,prospective,OA,F,1960-01-01,2026-12-05\n";
    let f = s.write("patients.csv", csv);
    let out = run_on(
        &s,
        "2026-12-04",
        &["import", "patients", f.to_str().unwrap()],
    );
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(3), "{text}{}", stderr(&out));
    assert!(
        text.contains(
            "line 2: index_date 2030-01-01 is in the future (today at the site is 2026-12-04)"
        ),
        "{text}"
    );
    assert!(
        text.contains("line 3: index_date 2005-10-31 is outside the retrospective period (2005-11-01 to 2025-11-30)"),
        "{text}"
    );
    assert!(
        text.contains(
            "line 5: index_date 2025-11-30 is before prospective recruitment began (2025-12-01)"
        ),
        "{text}"
    );
    assert!(
        text.contains("line 7: index_date 2026-12-05 is in the future"),
        "{text}"
    );
    assert!(text.contains("2 added"), "{text}");
    let rejected = std::fs::read_to_string(s.path("patients.rejected.csv")).unwrap();
    assert!(
        rejected
            .lines()
            .any(|l| l.starts_with("F1,") && l.contains("in the future"))
    );

    let d = s.write(
        "dxa.csv",
        "mrn,scan_date,region,t_score\nF3,2099-01-01,total_hip,-2.6\nF3,2024-01-01,total_hip,-2.6\n",
    );
    let out = run_on(&s, "2026-12-04", &["import", "dxa", d.to_str().unwrap()]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(3), "{text}");
    assert!(
        text.contains(
            "line 2: scan_date 2099-01-01 is in the future (today at the site is 2026-12-04)"
        ),
        "{text}"
    );
    assert!(text.contains("1 added"), "{text}");
    let l = s.write(
        "labs.csv",
        "mrn,date,analyte,value,unit\nF3,2027-01-01,calcium,2.3,mmol/L\n",
    );
    let out = run_on(&s, "2026-12-04", &["import", "labs", l.to_str().unwrap()]);
    assert!(
        stdout(&out).contains("line 2: date 2027-01-01 is in the future"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn lab_units_are_checked_converted_to_the_canonical_unit_and_the_original_kept() {
    let s = TempStudy::init();
    let p = s.write("patients.csv", PATIENTS);
    s.expect(&["import", "patients", p.to_str().unwrap()], 0);
    let l = s.write(
        "labs.csv",
        "mrn,date,analyte,value,unit\n\
         MRN002,2024-04-02,PTH,45,mmol/L\n\
         MRN002,2024-04-02,P1NP,48,kg\n\
         MRN002,2024-04-02,Calcium,9.2,mg/dL\n\
         MRN002,2024-04-02,25(OH)D,18.4,ng/mL\n\
         MRN002,2024-04-02,ALP,80,IU/L\n\
         MRN002,2024-04-03,Calcium,23,mmol/L\n\
         MRN002,2024-04-02,β-CTX,0.5,µg/L\n",
    );
    let out = s.expect(&["import", "labs", l.to_str().unwrap()], 3);
    assert!(
        out.contains("line 2: unit 'mmol/L' is not a unit of pth (accepted: pmol/L, pg/mL, ng/L)"),
        "{out}"
    );
    assert!(
        out.contains("line 3: unit 'kg' is not a unit of p1np (accepted: ng/mL, ug/L)"),
        "{out}"
    );
    assert!(
        out.contains(
            "line 7: value 23 mmol/L is outside the plausible range of calcium (0.5 to 5 mmol/L)"
        ),
        "{out}"
    );
    assert!(out.contains("4 added"), "{out}");
    let detail = s.open().patient("PKUPH-OP-0001").unwrap();
    let get = |a: &str| detail.labs.iter().find(|l| l.analyte == a).unwrap().clone();
    let ca = get("calcium");
    assert_eq!((ca.value, ca.unit.as_str()), (2.295, "mmol/L"));
    assert_eq!(
        (ca.original_value, ca.original_unit.as_str()),
        (9.2, "mg/dL")
    );
    let vd = get("vitamin_d_25oh");
    assert_eq!((vd.value, vd.unit.as_str()), (45.926, "nmol/L"));
    assert_eq!(get("alp").unit, "U/L");
    assert_eq!(get("beta_ctx").original_unit, "µg/L");
    // the stored row holds both, and the export reads the canonical value
    let conn = raw_connection(&s.db);
    let row: (f64, String, f64, String) = conn
        .query_row(
            "SELECT value, unit, original_value, original_unit FROM labs WHERE analyte = 'calcium'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap();
    assert_eq!(row, (2.295, "mmol/L".into(), 9.2, "mg/dL".into()));
    // the same file again changes nothing
    let out = s.expect(&["import", "labs", l.to_str().unwrap()], 3);
    assert!(out.contains("0 added, 0 updated, 4 unchanged"), "{out}");
}
