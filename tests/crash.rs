//! Imports killed with SIGKILL at random points, and the TUI killed mid-edit.
//!
//! For each import (patients, which also links waiting DICOM images; dxa; labs;
//! followup; dicom) at least ten trials: a copy of the same study (same key, so the same
//! hashes and UIDs), the import started and killed after a random delay (seeded;
//! the seed is printed, `MARROW_CRASH_SEED` repeats it), then the database must
//! open and pass `PRAGMA integrity_check`, `marrow audit verify` must pass, a
//! re-run must complete, and the result must equal an uninterrupted run into a
//! fresh copy: the same rows (a canonical dump of the tables without row ids and
//! timestamps, the audit trail included), and the same files in the image store,
//! byte for byte, each with its instance row and no row without its file.

mod common;
use common::tmux::{Tmux, shell_quote};
use common::*;
use marrow::dicom::synth::{self, BodyPart, Laterality, Spec, View};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Kill trials per import.
const TRIALS: usize = 10;
/// Patients generated: two transactions of the patients import (20,000 rows each).
const PATIENTS: usize = 21_000;
/// Rows kept of the generated dxa and labs exports (two transactions each).
const DXA_ROWS: usize = 30_000;
const LAB_ROWS: usize = 36_000;
/// Patients with follow-up visits (6 and 12 months): three transactions of 5,000 rows.
const FOLLOWUP_PATIENTS: usize = 5_500;
/// Images waiting for their patient before the patients import (it links them).
const WAITING_IMAGES: usize = 200;
/// Images of the dicom import (a third of them of patients not in the study).
const DICOM_IMAGES: usize = 600;

fn seed() -> u64 {
    static SEED: OnceLock<u64> = OnceLock::new();
    *SEED.get_or_init(|| {
        let seed = std::env::var("MARROW_CRASH_SEED")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_secs()
            });
        eprintln!("crash: seed {seed} (MARROW_CRASH_SEED={seed} repeats the kill delays)");
        seed
    })
}

fn marrow(db: &Path) -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_marrow"));
    c.arg("--db").arg(db);
    c.env_remove("MARROW_KEY")
        .env_remove("MARROW_DB")
        .env_remove("MARROW_KEY_FILE")
        .env("NO_COLOR", "1")
        // The generated visits are dated 2030: a clock after them, so that they
        // are past visits and not refused as future ones.
        .env("MARROW_TODAY", "2031-06-30");
    c
}

fn expect(db: &Path, args: &[&str], code: i32) -> String {
    let out = marrow(db).args(args).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(code),
        "marrow {args:?}\nstdout:\n{}\nstderr:\n{}",
        stdout(&out),
        stderr(&out)
    );
    stdout(&out)
}

fn radiograph(patient_id: &str, seed: u64) -> Spec {
    Spec {
        patient_id: patient_id.into(),
        body_part: BodyPart::Knee,
        laterality: Some(if seed.is_multiple_of(2) {
            Laterality::Left
        } else {
            Laterality::Right
        }),
        view: View::Ap,
        rows: 64,
        cols: 64,
        study_date: chrono::NaiveDate::from_ymd_opt(2024, 5, 1).unwrap(),
        seed,
    }
}

/// The inputs and the study templates every trial copies.
struct Fixture {
    _dir: tempfile::TempDir,
    patients: PathBuf,
    dxa: PathBuf,
    labs: PathBuf,
    followup: PathBuf,
    dicom: PathBuf,
    /// An empty study whose store holds images waiting for their patients.
    waiting: PathBuf,
    /// `waiting` after the patients import (the images linked).
    with_patients: PathBuf,
}

const DB: &str = "study.db";

fn first_lines(path: &Path, n: usize) {
    let text = std::fs::read_to_string(path).unwrap();
    let kept: String = text.split_inclusive('\n').take(n + 1).collect();
    std::fs::write(path, kept).unwrap();
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let gen_dir = dir.path().join("exports");
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_marrow"))
            .args([
                "generate",
                "--seed",
                "11",
                "--patients",
                &PATIENTS.to_string(),
                "--out",
            ])
            .arg(&gen_dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        let patients = gen_dir.join("patients.csv");
        let dxa = gen_dir.join("dxa.csv");
        let labs = gen_dir.join("labs.csv");
        first_lines(&dxa, DXA_ROWS);
        first_lines(&labs, LAB_ROWS);
        let mrns: Vec<String> = std::fs::read_to_string(&patients)
            .unwrap()
            .lines()
            .skip(1)
            .map(|l| l.split(',').next().unwrap().to_string())
            .collect();
        assert_eq!(mrns.len(), PATIENTS);
        let followup = gen_dir.join("followup.csv");
        let mut visits =
            String::from("mrn,visit_month,visit_date,vas,oks,new_fragility_fracture\n");
        for (i, mrn) in mrns.iter().take(FOLLOWUP_PATIENTS).enumerate() {
            visits.push_str(&format!("{mrn},6,2030-01-0{},{},,no\n", 1 + i % 9, i % 11));
            visits.push_str(&format!("{mrn},12,2030-07-0{},,{},\n", 1 + i % 9, i % 49));
        }
        std::fs::write(&followup, visits).unwrap();

        // Images of the first patients, imported before them: they wait.
        let early = dir.path().join("early-dicom");
        std::fs::create_dir_all(&early).unwrap();
        for (i, mrn) in mrns.iter().take(WAITING_IMAGES).enumerate() {
            synth::write_radiograph(
                early.join(format!("{i:04}.dcm")),
                &radiograph(mrn, i as u64),
            )
            .unwrap();
        }
        // The dicom import's images: later patients, and a third of unknown patients.
        let dicom = dir.path().join("dicom");
        std::fs::create_dir_all(&dicom).unwrap();
        for i in 0..DICOM_IMAGES {
            let pid = if i % 3 == 2 {
                format!("UNKNOWN{i}")
            } else {
                mrns[WAITING_IMAGES + i].clone()
            };
            synth::write_radiograph(
                dicom.join(format!("{i:04}.dcm")),
                &radiograph(&pid, 1000 + i as u64),
            )
            .unwrap();
        }

        let waiting = dir.path().join("waiting");
        std::fs::create_dir_all(&waiting).unwrap();
        let db = waiting.join(DB);
        expect(&db, &["init"], 0);
        let out = expect(&db, &["import", "dicom", early.to_str().unwrap()], 0);
        assert!(
            out.contains(&format!(
                "{WAITING_IMAGES} imported ({WAITING_IMAGES} waiting"
            )),
            "{out}"
        );

        let with_patients = dir.path().join("with-patients");
        copy_dir(&waiting, &with_patients);
        let out = expect(
            &with_patients.join(DB),
            &["import", "patients", patients.to_str().unwrap()],
            0,
        );
        assert!(
            out.contains(&format!("{WAITING_IMAGES} waiting DICOM images linked")),
            "{out}"
        );
        Fixture {
            _dir: dir,
            patients,
            dxa,
            labs,
            followup,
            dicom,
            waiting,
            with_patients,
        }
    })
}

/// Rows of a query, each column's value written out, sorted.
fn rows(conn: &rusqlite::Connection, sql: &str) -> Vec<String> {
    let mut st = conn.prepare(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
    let n = st.column_count();
    let mut out: Vec<String> = st
        .query_map([], |r| {
            let mut line = String::new();
            for i in 0..n {
                line.push_str(&format!("{:?}|", r.get_ref(i)?));
            }
            Ok(line)
        })
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    out.sort();
    out
}

/// The study's content without row ids and timestamps (which differ between runs
/// legitimately), foreign keys written as the rows they point at.
fn dump(db: &Path) -> BTreeMap<&'static str, Vec<String>> {
    let c = raw_connection(db);
    let tables: [(&str, &str); 14] = [
        ("users", "SELECT name, role, added_by FROM users"),
        (
            "meta",
            "SELECT key, value FROM meta WHERE key != 'audit_head'",
        ),
        (
            "study_id_counters",
            "SELECT site, grp, next FROM study_id_counters",
        ),
        (
            "patients",
            "SELECT study_id, hex(mrn_hash), site, grp, phase, sex, age, index_date, bmi, deformity, implant, \
             pathological_fracture, malignancy, steroid_long_term, radio_chemo_last, has_image, decision, \
             reasons, pending, flags, missing_dxa, who_stage, version, updated_by FROM patients",
        ),
        (
            "dxa_scans",
            "SELECT p.study_id, d.scan_date, d.region, d.t_score, d.z_score, d.bmd_g_cm2 \
             FROM dxa_scans d JOIN patients p ON p.id = d.patient_id",
        ),
        (
            "labs",
            "SELECT p.study_id, l.date, l.analyte, l.value, l.unit FROM labs l JOIN patients p ON p.id = l.patient_id",
        ),
        (
            "screening_answers",
            "SELECT p.study_id, s.criterion, s.answer, s.reason, s.answered_by \
             FROM screening_answers s JOIN patients p ON p.id = s.patient_id",
        ),
        (
            "follow_up_visits",
            "SELECT p.study_id, v.visit_month, v.visit_date, v.vas, v.oks, v.new_fragility_fracture, v.source, \
             v.version, v.updated_by FROM follow_up_visits v JOIN patients p ON p.id = v.patient_id",
        ),
        (
            "image_studies",
            "SELECT study_uid, study_date FROM image_studies",
        ),
        (
            "image_series",
            "SELECT s.series_uid, st.study_uid, s.modality, s.body_part, s.series_number \
             FROM image_series s JOIN image_studies st ON st.id = s.study",
        ),
        (
            "image_instances",
            "SELECT i.sop_uid, hex(i.source_uid_hash), s.series_uid, p.study_id, i.sop_class_uid, i.laterality, \
             i.view_position, i.image_rows, i.image_columns, i.bits_allocated, i.bits_stored, i.photometric, \
             i.transfer_syntax, i.pixel_spacing_row, i.pixel_spacing_col, i.frames, i.store_path, i.bytes, \
             i.burned_in_review, i.review_reason, i.imported_by \
             FROM image_instances i JOIN image_series s ON s.id = i.series LEFT JOIN patients p ON p.id = i.patient_id",
        ),
        (
            "image_quarantine",
            "SELECT i.sop_uid, hex(q.patient_hash) FROM image_quarantine q JOIN image_instances i ON i.id = q.instance_id",
        ),
        (
            "reading_cases",
            "SELECT p.study_id, c.side, c.state, c.version FROM reading_cases c JOIN patients p ON p.id = c.patient_id",
        ),
        (
            "audit_log",
            "SELECT actor, real_actor, action, entity, entity_id, patient, before, after, reason FROM audit_log",
        ),
    ];
    tables
        .iter()
        .map(|(name, sql)| (*name, rows(&c, sql)))
        .collect()
}

/// Every file of the image store (relative path -> SHA-256), the partial files apart.
fn store_files(db: &Path) -> (BTreeMap<String, String>, Vec<String>) {
    let mut root = db.as_os_str().to_owned();
    root.push(".store");
    let root = PathBuf::from(root);
    let mut files = BTreeMap::new();
    let mut partial = Vec::new();
    if !root.exists() {
        return (files, partial);
    }
    for e in walkdir::WalkDir::new(&root)
        .into_iter()
        .filter_map(|e| e.ok())
    {
        if !e.file_type().is_file() {
            continue;
        }
        let rel = e
            .path()
            .strip_prefix(&root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        if rel == ".lock" {
            continue;
        }
        if rel.starts_with(".partial/") {
            partial.push(rel);
            continue;
        }
        let hash = hex::encode(Sha256::digest(std::fs::read(e.path()).unwrap()));
        files.insert(rel, hash);
    }
    (files, partial)
}

/// The study after an import: its dump and store; checks the store against the rows.
struct Outcome {
    dump: BTreeMap<&'static str, Vec<String>>,
    store: BTreeMap<String, String>,
}

fn outcome(db: &Path) -> Outcome {
    let c = raw_connection(db);
    let check: String = c
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok", "{}", db.display());
    let fk: i64 = c
        .query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(fk, 0, "rows pointing at missing rows");
    let rows: std::collections::BTreeSet<String> = c
        .prepare("SELECT store_path FROM image_instances")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    drop(c);
    let (store, partial) = store_files(db);
    assert!(partial.is_empty(), "partial files left: {partial:?}");
    let files: std::collections::BTreeSet<String> = store.keys().cloned().collect();
    let orphans: Vec<&String> = files.difference(&rows).collect();
    let missing: Vec<&String> = rows.difference(&files).collect();
    assert!(
        orphans.is_empty(),
        "store files without an instance row: {orphans:?}"
    );
    assert!(
        missing.is_empty(),
        "instance rows without their file: {missing:?}"
    );
    Outcome {
        dump: dump(db),
        store,
    }
}

fn assert_same(what: &str, got: &Outcome, want: &Outcome) {
    for (table, want_rows) in &want.dump {
        let got_rows = &got.dump[table];
        if got_rows != want_rows {
            let extra: Vec<&String> = got_rows
                .iter()
                .filter(|r| !want_rows.contains(r))
                .take(5)
                .collect();
            let lacking: Vec<&String> = want_rows
                .iter()
                .filter(|r| !got_rows.contains(r))
                .take(5)
                .collect();
            panic!(
                "{what}: table {table} differs from the uninterrupted run ({} rows vs {}):\n\
                 only after the kill and re-run: {extra:#?}\nonly in the uninterrupted run: {lacking:#?}",
                got_rows.len(),
                want_rows.len()
            );
        }
    }
    assert_eq!(
        got.store, want.store,
        "{what}: the image store differs from the uninterrupted run"
    );
}

/// Copies a study folder with its files' modes (the store must stay 0700).
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let t = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &t);
        } else {
            std::fs::copy(e.path(), &t).unwrap();
        }
    }
    std::fs::set_permissions(to, std::fs::metadata(from).unwrap().permissions()).unwrap();
}

/// A fresh copy of a template study in a folder of its own.
fn copy_of(template: &Path) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(template, dir.path());
    dir
}

/// Runs `args` uninterrupted on a copy of `template` (the reference), then
/// `TRIALS` times: a fresh copy, the same command killed with SIGKILL after a
/// random delay (retried with a shorter delay on a fresh copy when it finished
/// first), and the checks of the module's doc.
fn kill_trials(name: &str, template: &Path, args: &[&str], salt: u64) {
    let seed = seed();
    let reference = copy_of(template);
    let db = reference.path().join(DB);
    let t = Instant::now();
    let out = expect(&db, args, 0);
    let full = t.elapsed();
    let want = outcome(&db);
    expect(&db, &["audit", "verify"], 0);
    eprintln!(
        "crash {name}: an uninterrupted run takes {:.0} ms: {}",
        full.as_secs_f64() * 1e3,
        out.trim()
    );

    let mut rng = StdRng::seed_from_u64(seed ^ salt);
    for trial in 1..=TRIALS {
        let mut delay = Duration::from_secs_f64(rng.random_range(0.0..1.0) * full.as_secs_f64());
        let mut attempt = 0;
        let dir = loop {
            attempt += 1;
            assert!(
                attempt <= 12,
                "{name} trial {trial}: the import always finished before the kill"
            );
            let dir = copy_of(template);
            let db = dir.path().join(DB);
            let mut child = marrow(&db)
                .args(args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            std::thread::sleep(delay);
            if child.try_wait().unwrap().is_some() {
                // It finished first: again on a fresh copy, killed sooner.
                delay /= 2;
                continue;
            }
            child.kill().unwrap(); // SIGKILL
            let status = child.wait().unwrap();
            if status.code().is_some() {
                // It ended between the check and the kill: again, killed sooner.
                delay /= 2;
                continue;
            }
            assert_eq!(status.signal(), Some(9), "{name} trial {trial}");
            break dir;
        };
        eprintln!(
            "crash {name} trial {trial}: killed after {:.0} ms (seed {seed})",
            delay.as_secs_f64() * 1e3
        );
        let what = format!(
            "{name} trial {trial}, killed after {:?} (MARROW_CRASH_SEED={seed})",
            delay
        );
        let db = dir.path().join(DB);
        // The database opens (as marrow opens it) and its audit trail verifies.
        let status = marrow(&db).arg("status").output().unwrap();
        assert!(
            status.status.success(),
            "{what}: the study does not open: {}",
            stderr(&status)
        );
        expect(&db, &["audit", "verify"], 0);
        // A re-run completes, and the study is as if never interrupted.
        let rerun = marrow(&db).args(args).output().unwrap();
        assert!(
            rerun.status.success(),
            "{what}: the re-run failed:\n{}\n{}",
            stdout(&rerun),
            stderr(&rerun)
        );
        expect(&db, &["audit", "verify"], 0);
        // What the re-run found already done (rows unchanged, copies recovered).
        let said = stdout(&rerun);
        let summary: Vec<&str> = said
            .lines()
            .filter(|l| {
                l.contains(" rows: ") || l.contains(" files: ") || l.contains("interrupted")
            })
            .collect();
        eprintln!(
            "crash {name} trial {trial}: the re-run: {}",
            summary.join("; ")
        );
        assert_same(&what, &outcome(&db), &want);
    }
}

#[test]
fn a_patients_import_killed_anywhere_even_while_linking_waiting_images_finishes_on_a_re_run() {
    let f = fixture();
    kill_trials(
        "patients",
        &f.waiting,
        &["import", "patients", f.patients.to_str().unwrap()],
        1,
    );
}

#[test]
fn a_dxa_import_killed_anywhere_finishes_on_a_re_run() {
    let f = fixture();
    kill_trials(
        "dxa",
        &f.with_patients,
        &["import", "dxa", f.dxa.to_str().unwrap()],
        2,
    );
}

#[test]
fn a_labs_import_killed_anywhere_finishes_on_a_re_run() {
    let f = fixture();
    kill_trials(
        "labs",
        &f.with_patients,
        &["import", "labs", f.labs.to_str().unwrap()],
        3,
    );
}

#[test]
fn a_followup_import_killed_anywhere_finishes_on_a_re_run() {
    let f = fixture();
    kill_trials(
        "followup",
        &f.with_patients,
        &["import", "followup", f.followup.to_str().unwrap()],
        5,
    );
}

#[test]
fn a_dicom_import_killed_anywhere_leaves_no_orphan_and_finishes_on_a_re_run() {
    let f = fixture();
    kill_trials(
        "dicom",
        &f.with_patients,
        &["import", "dicom", f.dicom.to_str().unwrap()],
        4,
    );
}

// ---------------------------------------------------------------------------
// The TUI killed mid-edit (tmux)
// ---------------------------------------------------------------------------

fn tmux_available() -> bool {
    std::process::Command::new("tmux")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The child process of `parent` running `name` (from /proc).
fn child_named(parent: u32, name: &str) -> Option<u32> {
    for e in std::fs::read_dir("/proc").ok()?.filter_map(|e| e.ok()) {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // pid (comm) state ppid ...
        let Some(close) = stat.rfind(')') else {
            continue;
        };
        let comm = &stat[stat.find('(').unwrap_or(0) + 1..close];
        let ppid: Option<u32> = stat[close + 1..]
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse().ok());
        if ppid == Some(parent) && comm == name {
            return Some(pid);
        }
    }
    None
}

const TUI_PATIENTS: &str = "\
mrn,site,phase,group,sex,birth_date,index_date,deformity,implant,pathological_fracture,malignancy,steroid_long_term,radio_chemo_last
A1,PKUPH,retrospective,OA,F,1960-03-15,2024-03-14,,no,no,no,no,none
A2,PKUPH,retrospective,OA,M,1955-07-01,2024-02-01,no,no,no,no,no,none
B1,SYSMH,prospective,OP,F,1948-11-30,2025-12-10,no,no,no,no,no,
";

#[test]
fn the_tui_killed_mid_edit_loses_only_the_unsaved_field() {
    if !tmux_available() {
        eprintln!(
            "skipped: tmux is not installed (or does not run); this test drives the TUI inside tmux"
        );
        return;
    }
    let s = TempStudy::init();
    let p = s.write("patients.csv", TUI_PATIENTS);
    s.expect(&["import", "patients", p.to_str().unwrap()], 0);
    let command = format!(
        "env -u MARROW_KEY -u MARROW_DB -u MARROW_KEY_FILE NO_COLOR=1 {} --db {}; echo MARROW-EXIT=$?; sleep 600",
        shell_quote(Path::new(env!("CARGO_BIN_EXE_marrow"))),
        shell_quote(&s.db)
    );
    let tmux = Tmux::start(100, 30, &command);
    let wait = Duration::from_secs(30);
    tmux.wait_for("Patients 3 of 3", wait);
    // PKUPH-OA-0001 opened, I4 answered and saved.
    tmux.answer_i4_of_oa_0001("saved before the kill", wait);

    // I5 typed, not saved.
    tmux.keys(&["j"]);
    tmux.keys(&["Enter"]);
    tmux.wait_for("Answer I5 by hand", wait);
    tmux.keys(&["n"]);
    tmux.type_text("typed but never saved");
    tmux.wait_for("typed but never saved", wait);

    // kill -9 the marrow process (the pane's shell is its parent).
    let pane = tmux.run(&["display-message", "-p", "-t", "main", "#{pane_pid}"]);
    let shell: u32 = String::from_utf8_lossy(&pane.stdout)
        .trim()
        .parse()
        .unwrap();
    let pid = child_named(shell, "marrow").expect("the marrow process in the pane");
    // SAFETY: a plain kill(2) of the process this test started in tmux.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGKILL) }, 0);
    tmux.wait_for("MARROW-EXIT=137", wait);

    // The database is fine, the saved answer is there, the unsaved one is not.
    s.expect(&["audit", "verify"], 0);
    let c = raw_connection(&s.db);
    let check: String = c
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    drop(c);
    let study = s.open();
    let p = study.patient("PKUPH-OA-0001").unwrap();
    let manual: Vec<(String, String)> = p
        .manual
        .iter()
        .map(|m| (m.criterion.code().to_string(), m.reason.clone()))
        .collect();
    assert_eq!(
        manual,
        [("I4".to_string(), "saved before the kill".to_string())]
    );
    let log = study.audit_log(None).unwrap();
    assert!(
        !log.iter()
            .any(|r| r.reason.as_deref() == Some("typed but never saved"))
    );
    drop(study);

    // And it opens again in the TUI.
    let again = Tmux::start(100, 30, &command);
    again.wait_for("Patients 3 of 3", wait);
    again.keys(&["q"]);
    again.wait_for("MARROW-EXIT=0", wait);
}
