//! Sixteen `marrow` processes at once on one study database, for a fixed time (30 s;
//! `MARROW_CONCURRENCY_SECS` shortens it locally): six readers taking and reading
//! cases (and correcting their reads when no case is left), two adjudicators, four
//! coordinators answering screening criteria on the same patients, three
//! coordinators importing patients, DXA and labs, and one importing DICOM images for
//! new patients (so new cases keep arriving). Every process is a separate run of the
//! binary, as a different study user, and each logs every acknowledged write (what,
//! and the value marrow answered) to a file of its own.
//!
//! Run as root (CI), the 16 users are 16 real OS accounts (`tests/common/os_accounts.rs`)
//! in a Unix group the study is shared with (`marrow init --group`), each process
//! opening the study as itself, with its own uid, as on a shared server. Otherwise (or
//! with `MARROW_CONCURRENCY_LAUNCH=as`) they are study users the admin acts as (`--as`).
//! The test prints which (`concurrency: mode: ...`); the checks are the same.
//!
//! Afterwards: no run showed "database is locked" or "busy" (exit statuses and
//! stderr), every acknowledged write is in the database with the acknowledged value
//! (and nothing is there that was not acknowledged), versions and counters add up,
//! `marrow audit verify` passes, and the audit trail has an entry for each
//! acknowledged write. The test prints p50/p99 of the write latency as the client
//! sees it (the whole run of the binary); `bench/concurrency.sh` reruns it.

mod common;
#[path = "common/os_accounts.rs"]
mod os_accounts;
use common::*;
use marrow::dicom::synth::{self, BodyPart, Spec, View};
use os_accounts::{OsFixture, User};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const READERS: [&str; 6] = ["r1", "r2", "r3", "r4", "r5", "r6"];
const ADJUDICATORS: [&str; 2] = ["adj1", "adj2"];
const SCREENERS: [&str; 4] = ["scr1", "scr2", "scr3", "scr4"];
const CSV_IMPORTERS: [&str; 3] = ["imp1", "imp2", "imp3"];
const DICOM_IMPORTER: &str = "img1";
/// The criteria each screener answers (every screener answers them on every
/// screening patient, so they contend for the same patient rows).
const SCREENER_CRITERIA: [[&str; 2]; 4] = [["I4", "E1"], ["I5", "E2"], ["E3", "E4"], ["E5", "I2"]];
/// OA patients with a bilateral knee image at the start: two cases each.
const READING_PATIENTS: usize = 40;
/// Patients only the screeners touch.
const SCREENING_PATIENTS: usize = 24;

const PATIENT_HEADER: &str = "mrn,site,phase,group,sex,birth_date,index_date,deformity,implant,pathological_fracture,malignancy,steroid_long_term,radio_chemo_last\n";

fn oa_row(mrn: &str) -> String {
    format!("{mrn},PKUPH,retrospective,OA,F,1960-05-01,2024-05-01,no,no,no,no,no,none\n")
}

fn knee(patient_id: &str, seed: u64) -> Spec {
    Spec {
        patient_id: patient_id.into(),
        body_part: BodyPart::Knee,
        laterality: None,
        view: View::Ap,
        rows: 48,
        cols: 40,
        study_date: chrono::NaiveDate::from_ymd_opt(2024, 5, 1).unwrap(),
        seed,
    }
}

/// Every worker (its label) and its study role.
fn roles() -> Vec<(&'static str, &'static str)> {
    READERS
        .iter()
        .map(|u| (*u, "reader"))
        .chain(ADJUDICATORS.iter().map(|u| (*u, "adjudicator")))
        .chain(SCREENERS.iter().map(|u| (*u, "coordinator")))
        .chain(CSV_IMPORTERS.iter().map(|u| (*u, "coordinator")))
        .chain([(DICOM_IMPORTER, "coordinator")])
        .collect()
}

/// How the workers start the binary.
enum Launch {
    /// As root: each worker an OS account of its own (`mrw<label><tag>`), in the Unix
    /// group the study is shared with, opening the study as itself (no `--as`).
    Accounts {
        fx: Box<OsFixture>,
        users: HashMap<&'static str, User>,
    },
    /// Otherwise: the admin acting as each study user (`--as <label>`).
    As,
}

impl Launch {
    /// OS accounts where this process may make them, else `--as`; with a line saying which.
    fn choose() -> (Launch, String) {
        if std::env::var("MARROW_CONCURRENCY_LAUNCH").as_deref() == Ok("as") {
            return (
                Launch::As,
                "the admin acting as 16 study users (--as), as MARROW_CONCURRENCY_LAUNCH=as asks"
                    .into(),
            );
        }
        match OsFixture::new(true) {
            Err(why) => (
                Launch::As,
                format!("the admin acting as 16 study users (--as): {why}"),
            ),
            Ok(mut fx) => {
                // The input files the test writes for the importers must be readable
                // by the group whatever umask the test was started with.
                // SAFETY: a plain system call; this binary runs this one test.
                unsafe { libc::umask(0o022) };
                let users = roles()
                    .into_iter()
                    .map(|(label, _)| (label, fx.user(label, true)))
                    .collect();
                let line = format!(
                    "16 OS accounts (mrw<role>{}) in the study's group {}, each opening the study as itself",
                    fx.tag,
                    fx.group()
                );
                (
                    Launch::Accounts {
                        fx: Box::new(fx),
                        users,
                    },
                    line,
                )
            }
        }
    }

    /// The study user name of worker `label`.
    fn name(&self, label: &str) -> String {
        match self {
            Launch::As => label.to_string(),
            Launch::Accounts { users, .. } => users[label].name.clone(),
        }
    }

    /// `marrow --db DB` as worker `label`, to be given its arguments.
    fn command(&self, s: &TempStudy, label: &str) -> std::process::Command {
        match self {
            Launch::As => {
                let mut c = s.cmd();
                c.args(["--as", label]);
                c
            }
            Launch::Accounts { users, .. } => {
                let mut c = users[label].command(&[]);
                c.arg("--db").arg(&s.db);
                c
            }
        }
    }

    /// A new study, made by root (its admin): private for `--as`, shared with the
    /// accounts' group (in a folder they may reach) otherwise.
    fn study(&self) -> TempStudy {
        match self {
            Launch::As => TempStudy::init(),
            Launch::Accounts { fx, .. } => {
                let dir = tempfile::Builder::new()
                    .prefix("study-")
                    .tempdir_in(fx.base.path())
                    .unwrap();
                let s = TempStudy {
                    db: dir.path().join("study.db"),
                    dir,
                };
                s.expect(&["init", "--group", fx.group()], 0);
                s
            }
        }
    }
}

/// What one run of the binary gave.
struct Run {
    args: Vec<String>,
    code: Option<i32>,
    stdout: String,
    stderr: String,
    ms: f64,
}

/// One worker: a study user running the binary over and over, logging what marrow
/// acknowledged to `acks-USER.log` (tab-separated: kind, then the fields).
struct Worker<'a> {
    s: &'a TempStudy,
    launch: &'a Launch,
    /// The worker's label (its log file, its reasons).
    user: &'static str,
    /// Its study user name (the label under `--as`, the OS account's name otherwise).
    name: String,
    log: std::fs::File,
    rng: StdRng,
    /// (kind of write, milliseconds) of each acknowledged write.
    latencies: Vec<(&'static str, f64)>,
    /// Runs that showed a user "busy"/"locked", or failed unexpectedly.
    failures: Vec<String>,
    /// Refusals the domain expects under concurrency (an adjudication that lost a race).
    refusals: u64,
    runs: u64,
}

impl<'a> Worker<'a> {
    fn new(s: &'a TempStudy, launch: &'a Launch, user: &'static str, seed: u64) -> Worker<'a> {
        let log = std::fs::File::create(log_path(s, user)).unwrap();
        Worker {
            s,
            launch,
            user,
            name: launch.name(user),
            log,
            rng: StdRng::seed_from_u64(seed),
            latencies: Vec::new(),
            failures: Vec::new(),
            refusals: 0,
            runs: 0,
        }
    }

    fn run(&mut self, args: &[&str]) -> Run {
        let mut cmd = self.launch.command(self.s, self.user);
        cmd.args(args);
        let t = Instant::now();
        let out = cmd.output().expect("run marrow");
        let ms = t.elapsed().as_secs_f64() * 1000.0;
        self.runs += 1;
        let r = Run {
            args: args.iter().map(|a| a.to_string()).collect(),
            code: out.status.code(),
            stdout: stdout(&out),
            stderr: stderr(&out),
            ms,
        };
        let lower = format!("{}\n{}", r.stderr, r.stdout).to_lowercase();
        if lower.contains("database is locked")
            || lower.contains("busy")
            || r.stderr.to_lowercase().contains("locked")
        {
            self.failures.push(format!(
                "{} {:?}: the user was shown busy/locked (exit {:?}):\n{}{}",
                self.user, r.args, r.code, r.stderr, r.stdout
            ));
        }
        r
    }

    /// A run that must succeed: records a failure otherwise.
    fn ok(&mut self, r: &Run) -> bool {
        if r.code == Some(0) {
            return true;
        }
        self.failures.push(format!(
            "{} {:?}: exit {:?}\nstderr: {}\nstdout: {}",
            self.user, r.args, r.code, r.stderr, r.stdout
        ));
        false
    }

    /// Logs an acknowledged write and the latency of the run that made it.
    fn ack(&mut self, kind: &'static str, ms: f64, fields: &[&str]) {
        self.ack_rows(kind, ms, &[fields]);
    }

    /// Logs the rows one run wrote (an import), with the run's latency once.
    fn ack_rows(&mut self, kind: &'static str, ms: f64, rows: &[&[&str]]) {
        for fields in rows {
            writeln!(self.log, "{kind}\t{}", fields.join("\t")).unwrap();
        }
        self.latencies.push((kind, ms));
    }
}

fn log_path(s: &TempStudy, user: &str) -> PathBuf {
    s.path(&format!("acks-{user}.log"))
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// A reader: takes the next case and reads it; with no case left, corrects one of
/// their earlier reads (a new version).
fn reader(w: &mut Worker, until: Instant) {
    // case -> the last version this reader was acknowledged
    let mut mine: BTreeMap<String, i64> = BTreeMap::new();
    let mut n = 0u64;
    while Instant::now() < until {
        n += 1;
        let r = w.run(&["read", "next", "--json"]);
        if !w.ok(&r) {
            continue;
        }
        let v = json(&r.stdout);
        let (case, correction) = if v.is_null() {
            if mine.is_empty() {
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
            let i = w.rng.random_range(0..mine.len());
            (mine.keys().nth(i).unwrap().clone(), true)
        } else {
            let case = v["summary"]["case"].as_str().unwrap().to_string();
            if v["newly_assigned"] == true {
                let slot = v["slot"].as_i64().unwrap().to_string();
                w.ack("take", r.ms, &[&case, &slot]);
            }
            (case, false)
        };
        let kl = w.rng.random_range(0..=4u8).to_string();
        let confidence = w.rng.random_range(1..=5u8).to_string();
        let reason = format!("{} correction {n}", w.user);
        let mut args = vec![
            "read",
            "submit",
            &case,
            "--kl",
            &kl,
            "--confidence",
            &confidence,
            "--json",
        ];
        if correction {
            args.extend(["--correct", "--reason", &reason]);
        }
        let r = w.run(&args);
        if !w.ok(&r) {
            continue;
        }
        let out = json(&r.stdout);
        let version = out["read"]["version"].as_i64().unwrap();
        let expected = mine.get(&case).map_or(1, |v| v + 1);
        if version != expected {
            w.failures.push(format!(
                "{} {case}: acknowledged version {version}, expected {expected}",
                w.user
            ));
        }
        mine.insert(case.clone(), version);
        let kind = if correction { "correct" } else { "read" };
        w.ack(kind, r.ms, &[&case, &version.to_string(), &kl, &confidence]);
    }
}

/// An adjudicator: decides a case of the queue with the version it listed.
fn adjudicator(w: &mut Worker, until: Instant) {
    let mut n = 0u64;
    while Instant::now() < until {
        n += 1;
        let r = w.run(&["adjudicate", "list", "--json"]);
        if !w.ok(&r) {
            continue;
        }
        let queue = json(&r.stdout);
        let queue = queue.as_array().unwrap();
        if queue.is_empty() {
            std::thread::sleep(Duration::from_millis(100));
            continue;
        }
        let item = &queue[w.rng.random_range(0..queue.len())];
        let case = item["summary"]["case"].as_str().unwrap().to_string();
        let version = item["summary"]["version"].as_i64().unwrap().to_string();
        let kl = w.rng.random_range(0..=4u8).to_string();
        let rationale = format!("{} decision {n}", w.user);
        let r = w.run(&[
            "adjudicate",
            "submit",
            &case,
            "--kl",
            &kl,
            "--rationale",
            &rationale,
            "--expect-version",
            &version,
            "--json",
        ]);
        match r.code {
            Some(0) => {
                let rec = json(&r.stdout);
                assert_eq!(rec["decided_by"], w.name.as_str(), "{rec}");
                w.ack("adjudicate", r.ms, &[&case, &kl, &rationale]);
            }
            // Another adjudicator decided first, or a corrected read changed the case.
            Some(2)
                if [
                    "already decided",
                    "changed after you opened it",
                    "not waiting for adjudication",
                ]
                .iter()
                .any(|m| r.stderr.contains(m)) =>
            {
                w.refusals += 1
            }
            _ => {
                w.ok(&r);
            }
        }
    }
}

/// A screener: answers their criteria on the screening patients, each with a reason
/// of its own (so the audit row of each write can be found).
fn screener(w: &mut Worker, criteria: [&str; 2], until: Instant) {
    let mut n = 0u64;
    while Instant::now() < until {
        n += 1;
        let p = w.rng.random_range(1..=SCREENING_PATIENTS);
        let sid = format!("SYSMH-CONTROL-{p:04}");
        let c = criteria[w.rng.random_range(0..2)];
        let a = ["yes", "no", "unknown"][w.rng.random_range(0..3)];
        let reason = format!("{} answer {n}", w.user);
        let set = format!("{c}={a}");
        let r = w.run(&["screen", &sid, "--set", &set, "--reason", &reason, "--json"]);
        if w.ok(&r) {
            let detail = json(&r.stdout);
            let stored = detail["manual"]
                .as_array()
                .unwrap()
                .iter()
                .find(|m| m["criterion"] == c)
                .map(|m| m["reason"].as_str().unwrap_or("").to_string());
            if stored.as_deref() != Some(reason.as_str()) {
                w.failures.push(format!(
                    "{} {sid} {c}: acknowledged {stored:?}, expected {reason}",
                    w.user
                ));
            }
            w.ack("screen", r.ms, &[&sid, c, a, &reason]);
        }
    }
}

/// A CSV importer: each round a patients file of new patients, then their DXA and labs.
fn csv_importer(w: &mut Worker, until: Instant) {
    let dir = w.s.path(&format!("in-{}", w.user));
    std::fs::create_dir_all(&dir).unwrap();
    let mut round = 0u64;
    while Instant::now() < until {
        round += 1;
        let mrns: Vec<String> = (0..4)
            .map(|k| format!("{}R{round}K{k}", w.user.to_uppercase()))
            .collect();
        let mut patients = String::from(PATIENT_HEADER);
        let mut dxa = String::from("mrn,scan_date,region,t_score,z_score\n");
        let mut labs = String::from("mrn,date,analyte,value,unit\n");
        let mut dxa_rows = Vec::new();
        let mut lab_rows = Vec::new();
        for (k, mrn) in mrns.iter().enumerate() {
            let group = if k.is_multiple_of(2) { "CONTROL" } else { "OP" };
            patients.push_str(&format!(
                "{mrn},SYSMH,retrospective,{group},M,1955-01-01,2024-05-01,no,no,no,no,no,none\n"
            ));
            let t = format!("{:.1}", -(w.rng.random_range(0..30u32) as f64) / 10.0);
            dxa.push_str(&format!("{mrn},2024-04-20,total_hip,{t},0.1\n"));
            dxa_rows.push((mrn.clone(), t));
            let v = format!("{:.2}", 2.0 + w.rng.random_range(0..60u32) as f64 / 100.0);
            labs.push_str(&format!("{mrn},2024-04-21,serum calcium,{v},mmol/L\n"));
            lab_rows.push((mrn.clone(), v));
        }
        for (kind, text) in [("patients", &patients), ("dxa", &dxa), ("labs", &labs)] {
            let f = dir.join(format!("{kind}-{round}.csv"));
            std::fs::write(&f, text).unwrap();
            let r = w.run(&["import", kind, f.to_str().unwrap()]);
            if !w.ok(&r) {
                break;
            }
            if !r
                .stdout
                .contains("4 rows: 4 added, 0 updated, 0 unchanged, 0 rejected")
            {
                w.failures
                    .push(format!("{} {kind} round {round}: {}", w.user, r.stdout));
                break;
            }
            match kind {
                "patients" => {
                    let rows: Vec<[&str; 3]> = mrns
                        .iter()
                        .enumerate()
                        .map(|(k, m)| {
                            [
                                m.as_str(),
                                "SYSMH",
                                if k.is_multiple_of(2) { "CONTROL" } else { "OP" },
                            ]
                        })
                        .collect();
                    let rows: Vec<&[&str]> = rows.iter().map(|r| r.as_slice()).collect();
                    w.ack_rows("patients", r.ms, &rows);
                }
                "dxa" => {
                    let rows: Vec<[&str; 2]> = dxa_rows
                        .iter()
                        .map(|(m, t)| [m.as_str(), t.as_str()])
                        .collect();
                    let rows: Vec<&[&str]> = rows.iter().map(|r| r.as_slice()).collect();
                    w.ack_rows("dxa", r.ms, &rows);
                }
                _ => {
                    let rows: Vec<[&str; 2]> = lab_rows
                        .iter()
                        .map(|(m, v)| [m.as_str(), v.as_str()])
                        .collect();
                    let rows: Vec<&[&str]> = rows.iter().map(|r| r.as_slice()).collect();
                    w.ack_rows("labs", r.ms, &rows);
                }
            }
        }
    }
}

/// The DICOM importer: each round a new OA patient and a bilateral knee image of
/// them; in odd rounds the image comes first and waits for its patient.
fn dicom_importer(w: &mut Worker, until: Instant) {
    let dir = w.s.path("in-dicom");
    let mut round = 0u64;
    while Instant::now() < until {
        round += 1;
        let mrn = format!("IMG{round}");
        let folder = dir.join(format!("round-{round}"));
        std::fs::create_dir_all(&folder).unwrap();
        let csv = dir.join(format!("patients-{round}.csv"));
        std::fs::write(&csv, format!("{PATIENT_HEADER}{}", oa_row(&mrn))).unwrap();
        let file = folder.join("knee.dcm");
        synth::write_radiograph(&file, &knee(&mrn, 10_000 + round)).unwrap();
        // The synthetic writer names its own SOP Instance UID: read it back.
        let obj = dicom_object::OpenFileOptions::new()
            .open_file(&file)
            .unwrap();
        let source_sop = obj
            .element(dicom_core::Tag(0x0008, 0x0018))
            .unwrap()
            .to_str()
            .unwrap()
            .trim_end_matches(['\0', ' '])
            .to_string();
        let steps: [&str; 2] = if round % 2 == 1 {
            ["dicom", "patients"]
        } else {
            ["patients", "dicom"]
        };
        for step in steps {
            if step == "patients" {
                let r = w.run(&["import", "patients", csv.to_str().unwrap()]);
                if !w.ok(&r) {
                    break;
                }
                w.ack("patients", r.ms, &[&mrn, "PKUPH", "OA"]);
            } else {
                let r = w.run(&["import", "dicom", folder.to_str().unwrap()]);
                if !w.ok(&r) {
                    break;
                }
                if !r.stdout.contains("1 files: 1 imported") {
                    w.failures
                        .push(format!("{} round {round}: {}", w.user, r.stdout));
                    break;
                }
                w.ack("image", r.ms, &[&source_sop, &mrn]);
            }
        }
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn read_log(s: &TempStudy, user: &str) -> Vec<Vec<String>> {
    std::fs::read_to_string(log_path(s, user))
        .unwrap()
        .lines()
        .map(|l| l.split('\t').map(str::to_string).collect())
        .collect()
}

fn setup(launch: &Launch) -> TempStudy {
    let s = launch.study();
    for (u, role) in roles() {
        s.expect(&["users", "add", &launch.name(u), "--role", role], 0);
    }
    let mut csv = String::from(PATIENT_HEADER);
    for i in 1..=READING_PATIENTS {
        csv.push_str(&oa_row(&format!("RD{i}")));
    }
    for i in 1..=SCREENING_PATIENTS {
        csv.push_str(&format!(
            "SC{i},SYSMH,prospective,CONTROL,F,1958-01-01,2025-12-10,no,no,no,no,no,none\n"
        ));
    }
    let p = s.write("patients.csv", &csv);
    s.expect(&["import", "patients", p.to_str().unwrap()], 0);
    let dir = s.path("dicom");
    std::fs::create_dir_all(&dir).unwrap();
    for i in 1..=READING_PATIENTS {
        synth::write_radiograph(
            dir.join(format!("{i:03}.dcm")),
            &knee(&format!("RD{i}"), i as u64),
        )
        .unwrap();
    }
    s.expect(&["import", "dicom", dir.to_str().unwrap()], 0);
    s.expect(&["cases", "refresh"], 0);
    s
}

#[test]
fn sixteen_processes_lose_no_acknowledged_write_and_never_show_busy() {
    let secs: u64 = std::env::var("MARROW_CONCURRENCY_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    let seed: u64 = std::env::var("MARROW_CONCURRENCY_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs()
        });
    eprintln!(
        "concurrency: {secs} s, seed {seed} (MARROW_CONCURRENCY_SEED={seed} repeats the choices)"
    );
    let (launch, mode) = Launch::choose();
    eprintln!("concurrency: mode: {mode}");
    let s = setup(&launch);
    let raw = raw_connection(&s.db);
    let screening_versions: HashMap<String, i64> = raw
        .prepare("SELECT study_id, version FROM patients WHERE study_id LIKE 'SYSMH-CONTROL-%'")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    assert_eq!(screening_versions.len(), SCREENING_PATIENTS);
    drop(raw);

    let until = Instant::now() + Duration::from_secs(secs);
    let started = Instant::now();
    let s_ref = &s;
    let l_ref = &launch;
    let workers: Vec<Worker> = std::thread::scope(|scope| {
        let mut handles = Vec::new();
        let mut k = 0u64;
        let mut next_seed = || {
            k += 1;
            seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(k)
        };
        for u in READERS {
            let sd = next_seed();
            handles.push(scope.spawn(move || {
                let mut w = Worker::new(s_ref, l_ref, u, sd);
                reader(&mut w, until);
                w
            }));
        }
        for u in ADJUDICATORS {
            let sd = next_seed();
            handles.push(scope.spawn(move || {
                let mut w = Worker::new(s_ref, l_ref, u, sd);
                adjudicator(&mut w, until);
                w
            }));
        }
        for (i, u) in SCREENERS.into_iter().enumerate() {
            let sd = next_seed();
            handles.push(scope.spawn(move || {
                let mut w = Worker::new(s_ref, l_ref, u, sd);
                screener(&mut w, SCREENER_CRITERIA[i], until);
                w
            }));
        }
        for u in CSV_IMPORTERS {
            let sd = next_seed();
            handles.push(scope.spawn(move || {
                let mut w = Worker::new(s_ref, l_ref, u, sd);
                csv_importer(&mut w, until);
                w
            }));
        }
        let sd = next_seed();
        handles.push(scope.spawn(move || {
            let mut w = Worker::new(s_ref, l_ref, DICOM_IMPORTER, sd);
            dicom_importer(&mut w, until);
            w
        }));
        assert_eq!(handles.len(), 16);
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let elapsed = started.elapsed().as_secs_f64();

    // ----- latency (printed first, so a failed run still shows it) -----
    let mut all: Vec<f64> = workers
        .iter()
        .flat_map(|w| w.latencies.iter().map(|(_, ms)| *ms))
        .collect();
    all.sort_by(f64::total_cmp);
    let runs: u64 = workers.iter().map(|w| w.runs).sum();
    let refusals: u64 = workers.iter().map(|w| w.refusals).sum();
    eprintln!(
        "concurrency: 16 processes for {elapsed:.1} s: {runs} runs of marrow, {} of them acknowledged writes, {refusals} adjudications refused as already decided/changed",
        all.len()
    );
    let mut by_kind: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for w in &workers {
        for (k, ms) in &w.latencies {
            by_kind.entry(k).or_default().push(*ms);
        }
    }
    eprintln!(
        "concurrency: write latency (one run of the binary, as the client sees it): p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        percentile(&all, 50.0),
        percentile(&all, 99.0),
        all.last().copied().unwrap_or(f64::NAN)
    );
    for (k, v) in &mut by_kind {
        v.sort_by(f64::total_cmp);
        eprintln!(
            "concurrency:   {k:<11} n={:<5} p50 {:>5.0} ms  p99 {:>5.0} ms",
            v.len(),
            percentile(v, 50.0),
            percentile(v, 99.0)
        );
    }

    // ----- nobody was shown busy, nothing failed -----
    let failures: Vec<&String> = workers.iter().flat_map(|w| &w.failures).collect();
    assert!(
        failures.is_empty(),
        "{} failed runs:\n{}",
        failures.len(),
        failures
            .iter()
            .take(10)
            .map(|f| f.as_str())
            .collect::<Vec<_>>()
            .join("\n---\n")
    );

    // ----- every acknowledged write is in the database, with its value -----
    s.expect(&["audit", "verify"], 0);
    let study = s.open();
    let raw = raw_connection(&s.db);
    let audit_count = |action: &str, entity_id: &str, extra: &str, arg: &str| -> i64 {
        raw.query_row(
            &format!("SELECT count(*) FROM audit_log WHERE action = ?1 AND entity_id = ?2 {extra}"),
            rusqlite::params![action, entity_id, arg],
            |r| r.get(0),
        )
        .unwrap()
    };
    let case_id = |case: &str| -> i64 { case.trim_start_matches('C').parse().unwrap() };

    // Reads: each acknowledged version with its grade; none that was not acknowledged.
    let mut acked_reads: HashSet<(i64, String, i64)> = HashSet::new();
    let mut takes = 0;
    for label in READERS {
        let name = launch.name(label);
        let u = name.as_str();
        for f in read_log(&s, label) {
            match f[0].as_str() {
                "take" => {
                    takes += 1;
                    let slot: i64 = f[2].parse().unwrap();
                    let held: i64 = raw
                        .query_row(
                            "SELECT count(*) FROM reading_assignments WHERE case_id = ?1 AND reader = ?2 AND slot = ?3",
                            rusqlite::params![case_id(&f[1]), u, slot],
                            |r| r.get(0),
                        )
                        .unwrap();
                    assert_eq!(
                        held, 1,
                        "{u} took {} slot {slot}: not in the database",
                        f[1]
                    );
                    assert_eq!(
                        audit_count(
                            "case.assign",
                            &format!("{}/{slot}", f[1]),
                            "AND actor = ?3",
                            u
                        ),
                        1,
                        "audit row of {u} taking {} slot {slot}",
                        f[1]
                    );
                }
                "read" | "correct" => {
                    let (case, version, kl, conf) =
                        (&f[1], f[2].parse::<i64>().unwrap(), &f[3], &f[4]);
                    let row: (i64, i64) = raw
                        .query_row(
                            "SELECT kl, confidence FROM reads WHERE case_id = ?1 AND reader = ?2 AND version = ?3",
                            rusqlite::params![case_id(case), u, version],
                            |r| Ok((r.get(0)?, r.get(1)?)),
                        )
                        .unwrap_or_else(|e| panic!("{u}'s acknowledged read {case} v{version} is missing: {e}"));
                    assert_eq!(
                        (row.0.to_string(), row.1.to_string()),
                        (kl.clone(), conf.clone()),
                        "{u} {case} v{version}"
                    );
                    let action = if version == 1 {
                        "read.submit"
                    } else {
                        "read.correct"
                    };
                    assert_eq!(
                        audit_count(
                            action,
                            &format!("{case}/{u}/v{version}"),
                            "AND actor = ?3",
                            u
                        ),
                        1,
                        "audit row of {u}'s read {case} v{version}"
                    );
                    assert!(acked_reads.insert((case_id(case), u.to_string(), version)));
                }
                other => panic!("unexpected log line {other}"),
            }
        }
    }
    let stored_reads: HashSet<(i64, String, i64)> = raw
        .prepare("SELECT case_id, reader, version FROM reads")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    assert_eq!(
        stored_reads, acked_reads,
        "the reads stored are exactly those acknowledged"
    );
    // Versions of each reader's read of a case run 1..n without a gap.
    let mut versions: HashMap<(i64, String), Vec<i64>> = HashMap::new();
    for (c, r, v) in &stored_reads {
        versions.entry((*c, r.clone())).or_default().push(*v);
    }
    for (k, mut v) in versions {
        v.sort();
        assert_eq!(
            v,
            (1..=v.len() as i64).collect::<Vec<_>>(),
            "versions of {k:?}"
        );
    }
    // Slot counters match the assignments; no case has more readers than slots.
    let bad: i64 = raw
        .query_row(
            "SELECT count(*) FROM reading_cases c WHERE c.slots_taken != \
             (SELECT count(*) FROM reading_assignments a WHERE a.case_id = c.id) \
             OR c.slots_taken > 2 \
             OR (SELECT count(DISTINCT reader) FROM reads r WHERE r.case_id = c.id) > c.slots_taken \
             OR (c.state = 'final') != EXISTS (SELECT 1 FROM case_finals f WHERE f.case_id = c.id)",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        bad, 0,
        "cases whose counters or state disagree with their rows"
    );
    assert!(
        takes > 0 && !acked_reads.is_empty(),
        "the readers got no work done"
    );

    // Adjudications: each acknowledged one is the case's final; no other adjudication.
    let mut acked_finals = HashSet::new();
    for label in ADJUDICATORS {
        let name = launch.name(label);
        let u = name.as_str();
        for f in read_log(&s, label) {
            let (case, kl, rationale) = (&f[1], &f[2], &f[3]);
            let row: (i64, String, String, String) = raw
                .query_row(
                    "SELECT kl, method, decided_by, rationale FROM case_finals WHERE case_id = ?1",
                    [case_id(case)],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
                )
                .unwrap_or_else(|e| panic!("{u}'s adjudication of {case} is missing: {e}"));
            assert_eq!(
                row,
                (
                    kl.parse().unwrap(),
                    "adjudicated".into(),
                    u.to_string(),
                    rationale.clone()
                ),
                "{case}"
            );
            assert_eq!(
                audit_count("case.adjudicate", case, "AND reason = ?3", rationale),
                1
            );
            assert!(
                acked_finals.insert(case_id(case)),
                "{case} adjudicated twice"
            );
        }
    }
    let adjudicated: HashSet<i64> = raw
        .prepare("SELECT case_id FROM case_finals WHERE method = 'adjudicated'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    assert_eq!(adjudicated, acked_finals);

    // Screening: the last acknowledged answer of each criterion is the stored one;
    // each patient's version went up once per acknowledged answer.
    let mut last: HashMap<(String, String), (String, String)> = HashMap::new();
    let mut per_patient: HashMap<String, i64> = HashMap::new();
    for label in SCREENERS {
        let name = launch.name(label);
        let u = name.as_str();
        for f in read_log(&s, label) {
            let (sid, c, a, reason) = (&f[1], &f[2], &f[3], &f[4]);
            last.insert((sid.clone(), c.clone()), (a.clone(), reason.clone()));
            *per_patient.entry(sid.clone()).or_default() += 1;
            assert_eq!(
                audit_count(
                    "screening.set",
                    &format!("{sid}/{c}"),
                    "AND reason = ?3",
                    reason
                ),
                1,
                "audit row of {u}'s answer {sid} {c} ({reason})"
            );
        }
    }
    assert!(!last.is_empty(), "the screeners got nothing done");
    for ((sid, c), (a, reason)) in &last {
        let stored: (String, String) = raw
            .query_row(
                "SELECT s.answer, s.reason FROM screening_answers s JOIN patients p ON p.id = s.patient_id \
                 WHERE p.study_id = ?1 AND s.criterion = ?2",
                [sid, c],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!(&stored, &(a.clone(), reason.clone()), "{sid} {c}");
    }
    for (sid, v0) in &screening_versions {
        let v: i64 = raw
            .query_row(
                "SELECT version FROM patients WHERE study_id = ?1",
                [sid],
                |r| r.get(0),
            )
            .unwrap();
        let n = per_patient.get(sid).copied().unwrap_or(0);
        assert_eq!(v, v0 + n, "{sid}: version {v0} + {n} acknowledged answers");
    }

    // Imports: each acknowledged patient, DXA, lab and image row is there, audited once.
    let study_id_of = |mrn: &str| -> (String, String, String) {
        raw.query_row(
            "SELECT study_id, site, grp FROM patients WHERE mrn_hash = unhex(?1)",
            [study.identifier_hash(mrn)],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap_or_else(|e| panic!("acknowledged patient {mrn} is missing: {e}"))
    };
    let mut imported = 0;
    for label in CSV_IMPORTERS.iter().chain([&DICOM_IMPORTER]) {
        let name = launch.name(label);
        let u = name.as_str();
        for f in read_log(&s, label) {
            imported += 1;
            match f[0].as_str() {
                "patients" => {
                    let (sid, site, grp) = study_id_of(&f[1]);
                    assert_eq!(
                        (site.as_str(), grp.as_str()),
                        (f[2].as_str(), f[3].as_str())
                    );
                    assert_eq!(
                        audit_count("patient.add", &sid, "AND actor = ?3", u),
                        1,
                        "{sid}"
                    );
                }
                "dxa" => {
                    let (sid, ..) = study_id_of(&f[1]);
                    let t: f64 = raw
                        .query_row(
                            "SELECT d.t_score FROM dxa_scans d JOIN patients p ON p.id = d.patient_id WHERE p.study_id = ?1",
                            [&sid],
                            |r| r.get(0),
                        )
                        .unwrap();
                    assert_eq!(t, f[2].parse::<f64>().unwrap(), "{sid}");
                    assert_eq!(
                        audit_count(
                            "dxa.add",
                            &format!("{sid}/2024-04-20/total_hip"),
                            "AND actor = ?3",
                            u
                        ),
                        1
                    );
                }
                "labs" => {
                    let (sid, ..) = study_id_of(&f[1]);
                    let v: f64 = raw
                        .query_row(
                            "SELECT l.value FROM labs l JOIN patients p ON p.id = l.patient_id WHERE p.study_id = ?1",
                            [&sid],
                            |r| r.get(0),
                        )
                        .unwrap();
                    assert_eq!(v, f[2].parse::<f64>().unwrap(), "{sid}");
                    let audited: i64 = raw
                        .query_row(
                            "SELECT count(*) FROM audit_log WHERE action = 'lab.add' AND patient = ?1 AND actor = ?2",
                            rusqlite::params![sid, u],
                            |r| r.get(0),
                        )
                        .unwrap();
                    assert_eq!(audited, 1, "{sid}");
                }
                "image" => {
                    let (sid, ..) = study_id_of(&f[2]);
                    let (sop, path, linked): (String, String, Option<String>) = raw
                        .query_row(
                            "SELECT i.sop_uid, i.store_path, p.study_id FROM image_instances i \
                             LEFT JOIN patients p ON p.id = i.patient_id WHERE i.source_uid_hash = unhex(?1)",
                            [study.identifier_hash(&f[1])],
                            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                        )
                        .unwrap_or_else(|e| panic!("acknowledged image {} is missing: {e}", f[1]));
                    assert_eq!(
                        audit_count("image.add", &sop, "AND actor = ?3", u),
                        1,
                        "{sop}"
                    );
                    let mut store = s.db.as_os_str().to_owned();
                    store.push(".store");
                    assert!(Path::new(&store).join(&path).is_file(), "{path}");
                    // Linked by now, unless its patient's import came last and the
                    // run ended between the two.
                    if linked.is_some() {
                        assert_eq!(linked.as_deref(), Some(sid.as_str()));
                    }
                }
                other => panic!("unexpected log line {other}"),
            }
        }
    }
    assert!(imported > 0, "the importers got nothing done");
    // Study numbers: unique (the schema) and handed out without a gap, the counter one past the last.
    let mut st = raw
        .prepare("SELECT site, grp, next FROM study_id_counters")
        .unwrap();
    let counters: Vec<(String, String, i64)> = st
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    for (site, grp, next) in counters {
        let (n, max): (i64, i64) = raw
            .query_row(
                "SELECT count(*), coalesce(max(CAST(substr(study_id, -4) AS INTEGER)), 0) FROM patients WHERE site = ?1 AND grp = ?2",
                [&site, &grp],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!(
            (n, max),
            (next - 1, next - 1),
            "{site} {grp}: counter {next}"
        );
    }
}
