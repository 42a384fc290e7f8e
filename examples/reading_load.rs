//! Load generator for the issue-4 figure "submitting a read or an adjudication: under
//! 20 ms from key to the next frame with 20 readers working on one database".
//! `bench/reading.py` runs many of these processes at once on one study.
//!
//! ```sh
//! reading_load fixture DIR PATIENTS        # DIR/patients.csv + DIR/dicom/*.dcm (OA, bilateral knee)
//! reading_load read DB USER COUNT [--think-ms N] [--seed S]
//! reading_load adjudicate DB USER [--stop-file PATH] [--max N] [--seed S]
//! ```
//!
//! The process opens the study as USER the way the tests do
//! (`Study::open(db, None, Some(user))`: the OS user is the study's admin) and prints
//! one JSON line per operation, with each part timed separately (milliseconds):
//!
//! - a reader: `take_next_case` (`take`), then what one "key to next frame" of the
//!   TUI's read screen costs: `submit_read` (`submit`) and the reload the TUI's worker
//!   does before it answers (`case_view` + `case_images`: `reload`); `frame` is their
//!   sum. After that answer the TUI asks for the reader worklist (`worklist`); `total`
//!   includes it.
//! - an adjudicator: `adjudication_queue` (`queue`), opening the case (`case_view` +
//!   `case_images`: `open`), then the key: `adjudicate` with the version shown
//!   (`adjudicate`), the worker's reload (`reload`), `frame` their sum, and the queue
//!   reload that follows (`queue_reload`; `total` includes it).
//!
//! An operation that fails is printed with `"ok": false`, the error kind (`busy`,
//! `conflict`, `other`) and its message; the loop goes on.
//!
//! Two experiments (not what marrow does) replace SQLite's busy handler on this
//! process's connection (its backoff sleeps 1, 2, 5 ... 100 ms between tries), each
//! for 10 s in all like marrow's busy timeout: `--busy-retry-us N` retries every ~N
//! microseconds; `--busy-cap-us N` sleeps 0.25 ms, doubling, at most N microseconds,
//! each pause jittered by +-50%.

use marrow::db::reading::Blinded;
use marrow::db::{DbError, Study};
use marrow::dicom::synth::{self, BodyPart, Spec, View};
use marrow::domain::reading::{FinalGrade, Grade, Oarsi, ReadInput};
use rand::{Rng, SeedableRng};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

// The same allocator as the marrow binary (the TUI is that binary).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const USAGE: &str = "usage:
  reading_load fixture DIR PATIENTS
  reading_load read DB USER COUNT [--think-ms N] [--seed S] [--busy-retry-us N] [--busy-cap-us N]
  reading_load adjudicate DB USER [--stop-file PATH] [--max N] [--seed S] [--busy-retry-us N] [--busy-cap-us N]";

fn main() -> ExitCode {
    marrow::process_start();
    marrow::db::configure_sqlite();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("fixture") if args.len() == 3 => args[2]
            .parse()
            .map_err(|e| format!("PATIENTS: {e}"))
            .and_then(|n| fixture(Path::new(&args[1]), n)),
        Some("read") if args.len() >= 4 => Opts::parse(&args[4..]).and_then(|o| {
            let count = args[3].parse().map_err(|e| format!("COUNT: {e}"))?;
            read(Path::new(&args[1]), &args[2], count, &o)
        }),
        Some("adjudicate") if args.len() >= 3 => {
            Opts::parse(&args[3..]).and_then(|o| adjudicate(Path::new(&args[1]), &args[2], &o))
        }
        _ => Err(USAGE.to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("reading_load: {e}");
            ExitCode::FAILURE
        }
    }
}

#[derive(Default)]
struct Opts {
    think_ms: u64,
    seed: u64,
    stop_file: Option<PathBuf>,
    max: Option<usize>,
    busy_retry_us: u64,
    busy_cap_us: u64,
}

impl Opts {
    fn parse(args: &[String]) -> Result<Opts, String> {
        let mut o = Opts::default();
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            let value = it
                .next()
                .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
            let num = || {
                value
                    .parse::<u64>()
                    .map_err(|e| format!("{flag} {value}: {e}"))
            };
            match flag.as_str() {
                "--think-ms" => o.think_ms = num()?,
                "--seed" => o.seed = num()?,
                "--max" => o.max = Some(num()? as usize),
                "--stop-file" => o.stop_file = Some(PathBuf::from(value)),
                "--busy-retry-us" => o.busy_retry_us = num()?,
                "--busy-cap-us" => o.busy_cap_us = num()?,
                _ => return Err(format!("unknown option {flag}\n{USAGE}")),
            }
        }
        Ok(o)
    }
}

/// `patients` eligible OA patients, each with one knee image that names no side (a
/// bilateral view): two cases per patient, as in tests/reading.rs.
fn fixture(dir: &Path, patients: usize) -> Result<(), String> {
    let images = dir.join("dicom");
    std::fs::create_dir_all(&images).map_err(|e| format!("{}: {e}", images.display()))?;
    let mut csv = String::from(
        "mrn,site,phase,group,sex,birth_date,index_date,deformity,implant,pathological_fracture,malignancy,steroid_long_term,radio_chemo_last\n",
    );
    for i in 1..=patients {
        let site = if i % 2 == 0 { "PKUPH" } else { "SYSMH" };
        csv.push_str(&format!(
            "BENCH{i:06},{site},retrospective,OA,F,1960-05-01,2024-05-01,no,no,no,no,no,none\n"
        ));
        let spec = Spec {
            patient_id: format!("BENCH{i:06}"),
            body_part: BodyPart::Knee,
            laterality: None,
            view: View::Ap,
            rows: 64,
            cols: 48,
            study_date: chrono::NaiveDate::from_ymd_opt(2024, 5, 1).expect("date"),
            seed: i as u64,
        };
        synth::write_radiograph(images.join(format!("{i:06}.dcm")), &spec)
            .map_err(|e| format!("writing image {i}: {e}"))?;
    }
    let p = dir.join("patients.csv");
    std::fs::write(&p, csv).map_err(|e| format!("{}: {e}", p.display()))?;
    println!(
        "wrote {patients} OA patients and {patients} knee images into {}",
        dir.display()
    );
    Ok(())
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

fn kind(e: &DbError) -> &'static str {
    match e {
        DbError::Busy => "busy",
        DbError::Conflict(_) => "conflict",
        _ => "other",
    }
}

/// Microseconds between tries of [`busy_retry`].
static BUSY_RETRY_US: AtomicU64 = AtomicU64::new(1000);

/// A busy handler that retries every ~N microseconds (jittered), 10 s in all.
extern "C" fn busy_retry(_: *mut std::ffi::c_void, tries: std::ffi::c_int) -> std::ffi::c_int {
    let us = BUSY_RETRY_US.load(Ordering::Relaxed).max(1);
    if tries as u64 * us >= 10_000_000 {
        return 0;
    }
    let jitter = (tries as u64)
        .wrapping_mul(7919)
        .wrapping_add(std::process::id() as u64)
        % us;
    std::thread::sleep(Duration::from_micros(us / 2 + jitter));
    1
}

/// The longest pause of [`busy_capped`].
static BUSY_CAP_US: AtomicU64 = AtomicU64::new(2000);

thread_local! {
    static WAIT_SINCE: std::cell::Cell<Option<Instant>> = const { std::cell::Cell::new(None) };
}

/// A busy handler sleeping 0.25 ms, doubling, at most `--busy-cap-us`, each pause
/// jittered by +-50%; 10 s in all.
extern "C" fn busy_capped(_: *mut std::ffi::c_void, tries: std::ffi::c_int) -> std::ffi::c_int {
    let now = Instant::now();
    let since = WAIT_SINCE.with(|c| {
        let since = match c.get() {
            Some(t) if tries > 0 => t,
            _ => now,
        };
        c.set(Some(since));
        since
    });
    if now.duration_since(since) >= Duration::from_secs(10) {
        return 0;
    }
    let base = (250u64 << tries.clamp(0, 10)).min(BUSY_CAP_US.load(Ordering::Relaxed).max(1));
    std::thread::sleep(Duration::from_micros(
        base / 2 + rand::random_range(0..=base),
    ));
    1
}

fn open(db: &Path, user: &str, o: &Opts) -> Result<Study, String> {
    let t = Instant::now();
    let study = Study::open(db, None, Some(user)).map_err(|e| format!("open as {user}: {e}"))?;
    if o.busy_cap_us > 0 {
        BUSY_CAP_US.store(o.busy_cap_us, Ordering::Relaxed);
        // SAFETY: as below.
        let rc = unsafe {
            rusqlite::ffi::sqlite3_busy_handler(
                study.conn().handle(),
                Some(busy_capped),
                std::ptr::null_mut(),
            )
        };
        if rc != rusqlite::ffi::SQLITE_OK {
            return Err(format!("busy handler: SQLite error {rc}"));
        }
    }
    if o.busy_retry_us > 0 {
        BUSY_RETRY_US.store(o.busy_retry_us, Ordering::Relaxed);
        // SAFETY: the handle is this process's open connection, which outlives the
        // handler's use; the handler touches no SQLite state.
        let rc = unsafe {
            rusqlite::ffi::sqlite3_busy_handler(
                study.conn().handle(),
                Some(busy_retry),
                std::ptr::null_mut(),
            )
        };
        if rc != rusqlite::ffi::SQLITE_OK {
            return Err(format!("busy handler: SQLite error {rc}"));
        }
    }
    println!(
        "{}",
        json!({"user": user, "op": "open", "ok": true, "open": ms(t.elapsed())})
    );
    Ok(study)
}

/// A reader: takes a case, submits a KL grade (a hidden "true" grade per case, kept
/// 60% of the time, else a random one, so that some cases agree and many go to
/// adjudication), then reloads what the TUI reloads.
fn read(db: &Path, user: &str, count: usize, o: &Opts) -> Result<(), String> {
    let mut study = open(db, user, o)?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(o.seed);
    for _ in 0..count {
        let t = Instant::now();
        let taken = study.take_next_case();
        let take = ms(t.elapsed());
        let taken = match taken {
            Ok(Some(t)) => t,
            Ok(None) => {
                println!(
                    "{}",
                    json!({"user": user, "op": "take", "ok": true, "take": take, "none": true})
                );
                break;
            }
            Err(e) => {
                println!(
                    "{}",
                    json!({"user": user, "op": "take", "ok": false, "take": take,
                           "kind": kind(&e), "error": e.to_string()})
                );
                continue;
            }
        };
        let case = taken.summary.case.clone();
        if o.think_ms > 0 {
            std::thread::sleep(Duration::from_millis(rng.random_range(0..=2 * o.think_ms)));
        }
        let truth = marrow::db::reading::parse_case_ref(&case).unwrap_or(0) % 5;
        let kl = if rng.random_bool(0.6) {
            truth as u8
        } else {
            rng.random_range(0..=4)
        };
        let input = ReadInput {
            kl: Some(Grade::Value(kl)),
            oarsi: Oarsi::default(),
            op_impression: None,
            confidence: Some(rng.random_range(1..=5)),
        };

        let t0 = Instant::now();
        let submitted = study.submit_read(&case, &input, None);
        let t1 = Instant::now();
        let reloaded = study
            .case_view(&case)
            .and_then(|v| study.case_images(&case).map(|i| (v, i)));
        let t2 = Instant::now();
        let worklist = study.reader_worklist();
        let t3 = Instant::now();
        let mut line = json!({
            "user": user, "op": "read", "case": case, "newly_assigned": taken.newly_assigned,
            "take": take, "submit": ms(t1 - t0), "reload": ms(t2 - t1),
            "frame": ms(t2 - t0), "worklist": ms(t3 - t2), "total": ms(t3 - t0),
            "ok": submitted.is_ok() && reloaded.is_ok() && worklist.is_ok(),
        });
        match (&submitted, &reloaded, &worklist) {
            (Ok(s), Ok(_), Ok(w)) => {
                line["state"] = json!(s.state.code());
                line["worklist_rows"] = json!(w.len());
            }
            (Err(e), ..) => {
                line["kind"] = json!(kind(e));
                line["error"] = json!(format!("submit: {e}"));
            }
            (_, Err(e), _) | (_, _, Err(e)) => {
                line["kind"] = json!(kind(e));
                line["error"] = json!(format!("reload: {e}"));
            }
        }
        println!("{line}");
    }
    Ok(())
}

/// An adjudicator: loads the queue, opens one of its first cases (two adjudicators
/// sometimes pick the same one: the second must get a conflict, never overwrite),
/// decides it with the version shown, then reloads what the TUI reloads. Stops after
/// `--max` decisions or once `--stop-file` exists.
fn adjudicate(db: &Path, user: &str, o: &Opts) -> Result<(), String> {
    let mut study = open(db, user, o)?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(o.seed);
    let stop = || o.stop_file.as_ref().is_some_and(|p| p.exists());
    let mut decided = 0usize;
    while o.max.is_none_or(|m| decided < m) && !stop() {
        let t = Instant::now();
        let queue = study.adjudication_queue();
        let queue_ms = ms(t.elapsed());
        let queue = match queue {
            Ok(q) => q,
            Err(e) => {
                println!(
                    "{}",
                    json!({"user": user, "op": "queue", "ok": false, "queue": queue_ms,
                           "kind": kind(&e), "error": e.to_string()})
                );
                continue;
            }
        };
        if queue.is_empty() {
            std::thread::sleep(Duration::from_millis(100));
            continue;
        }
        let pick = rng.random_range(0..queue.len().min(3));
        let case = queue[pick].summary.case.clone();
        let t = Instant::now();
        let opened = study
            .case_view(&case)
            .and_then(|v| study.case_images(&case).map(|_| v));
        let open_ms = ms(t.elapsed());
        let view = match opened {
            Ok(v) => v,
            Err(e) => {
                println!(
                    "{}",
                    json!({"user": user, "op": "open_case", "ok": false, "open": open_ms,
                           "kind": kind(&e), "error": e.to_string()})
                );
                continue;
            }
        };
        if o.think_ms > 0 {
            std::thread::sleep(Duration::from_millis(rng.random_range(0..=2 * o.think_ms)));
        }
        // The final grade: the higher of the reads' KL grades.
        let kl = match &view.other_reads {
            Blinded::Shown(reads) => reads
                .iter()
                .filter_map(|r| match &r.read.kl {
                    Some(Grade::Value(k)) => Some(*k),
                    _ => None,
                })
                .max()
                .unwrap_or(2),
            Blinded::Hidden(_) => 2,
        };
        let grade = FinalGrade {
            kl: Some(Grade::Value(kl)),
            op_stage: None,
        };
        let t0 = Instant::now();
        let decision = study.adjudicate(
            &case,
            &grade,
            "bench: the higher grade of the two reads",
            Some(view.version),
        );
        let t1 = Instant::now();
        let reloaded = study
            .case_view(&case)
            .and_then(|v| study.case_images(&case).map(|i| (v, i)));
        let t2 = Instant::now();
        let queue_again = study.adjudication_queue();
        let t3 = Instant::now();
        let mut line = json!({
            "user": user, "op": "adjudicate", "case": case, "queue": queue_ms,
            "queue_len": queue.len(), "open": open_ms,
            "adjudicate": ms(t1 - t0), "reload": ms(t2 - t1), "frame": ms(t2 - t0),
            "queue_reload": ms(t3 - t2), "total": ms(t3 - t0),
            "ok": decision.is_ok() && reloaded.is_ok() && queue_again.is_ok(),
        });
        match (&decision, &reloaded, &queue_again) {
            (Ok(_), Ok(_), Ok(_)) => decided += 1,
            (Err(e), ..) => {
                line["kind"] = json!(kind(e));
                line["error"] = json!(format!("adjudicate: {e}"));
            }
            (_, Err(e), _) | (_, _, Err(e)) => {
                line["kind"] = json!(kind(e));
                line["error"] = json!(format!("reload: {e}"));
            }
        }
        println!("{line}");
    }
    Ok(())
}
