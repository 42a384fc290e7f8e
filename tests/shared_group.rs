//! A study shared by a Unix group of study staff (`marrow init --group`), with real
//! OS accounts.
//!
//! `a_study_shared_with_the_primary_group_gives_every_file_the_group` runs as any
//! user: it shares a study with the user's own primary group and checks the mode and
//! group of every file marrow and SQLite make.
//!
//! `three_os_users_of_one_group_read_and_view_and_an_outsider_is_refused` needs root
//! (CI and the development container run as root): it creates a group and four users
//! with `groupadd`/`useradd` (`tests/common/os_accounts.rs`: unique names, removed at
//! the end even when the test fails), then runs the built `marrow` as each of them (fork, `setgroups`, `setgid`,
//! `setuid`, umask 077, `HOME` set to a home of their own): the admin creates the study
//! for the group and imports the demo data, two readers take and submit reads of the
//! same case while the admin holds the database open in another process (so they open
//! the `-wal` and `-shm` files the admin's process created), both view a stored copy,
//! and a user outside the group is refused with "permission denied" naming the folder.
//!
//! `three_os_users_in_three_terminals_take_a_case_to_final_in_a_shared_study` (root
//! too): two readers and an adjudicator, each an OS account running the TUI in a tmux
//! session of their own, take a case from unread to an adjudicated final grade, the
//! blinding checked on each screen.
//!
//! Not root (or without `useradd`): these say why they are skipped and pass.

mod common;
#[path = "common/os_accounts.rs"]
mod os_accounts;
use common::tmux::{Tmux, shell_quote};
use os_accounts::{OsFixture, User, found};
use std::ffi::CString;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

fn marrow_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_marrow"))
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .mode()
        & 0o7777
}

fn gid_of(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().gid()
}

fn with_suffix(db: &Path, suffix: &str) -> PathBuf {
    let mut s = db.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

fn group_name(gid: u32) -> String {
    marrow::db::sharing::group_name(gid)
}

#[test]
fn a_study_shared_with_the_primary_group_gives_every_file_the_group() {
    // SAFETY: plain system calls.
    let (gid, umask) = unsafe { (libc::getegid(), libc::umask(0o022)) };
    // SAFETY: restores the umask read above.
    unsafe { libc::umask(umask) };
    let group = group_name(gid);
    let base = tempfile::tempdir().unwrap();
    let dir = base.path().join("study");
    std::fs::create_dir(&dir).unwrap();
    let db = dir.join("s.db");
    let run = |args: &[&str]| -> Output {
        Command::new(marrow_bin())
            .arg("--db")
            .arg(&db)
            .args(args)
            .env_remove("MARROW_KEY")
            .env_remove("MARROW_DB")
            .env_remove("MARROW_KEY_FILE")
            .env("NO_COLOR", "1")
            .output()
            .unwrap()
    };
    let out = run(&["init", "--group", &group]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains(&format!("shared with the group {group}")));
    assert_eq!(mode(&dir), 0o2770);
    assert_eq!(mode(&db), 0o660);
    let key = with_suffix(&db, ".key");
    assert_eq!(mode(&key), 0o640);
    assert_eq!(mode(&with_suffix(&db, ".log")), 0o660);
    for f in [&dir, &db, &key] {
        assert_eq!(gid_of(f), gid, "{}", f.display());
    }
    // Images: the store and its folders 2770, the lock 0660, the copies 0640.
    let dicom = base.path().join("dicom");
    marrow::dicom::synth::write_fixtures(&dicom).unwrap();
    let out = run(&["import", "dicom", dicom.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let store = with_suffix(&db, ".store");
    assert_eq!(mode(&store), 0o2770);
    assert_eq!(mode(&store.join(".partial")), 0o2770);
    assert_eq!(mode(&store.join(".lock")), 0o660);
    let mut copies = 0;
    for e in walk(&store) {
        let m = mode(&e);
        if e.is_dir() {
            assert_eq!(m, 0o2770, "{}", e.display());
        } else if e.extension().is_some_and(|x| x == "dcm") {
            assert_eq!(m, 0o640, "{}", e.display());
            copies += 1;
        }
        assert_eq!(gid_of(&e), gid, "{}", e.display());
    }
    assert!(copies > 0, "no stored copy under {}", store.display());

    // A key file readable by everyone is refused, shared study or not.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = run(&["status"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("readable by every user"),
        "{}",
        stderr(&out)
    );
    // Group-writable: refused too.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o660)).unwrap();
    let out = run(&["status"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("chmod 640"), "{}", stderr(&out));
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
    let out = run(&["status"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn a_private_study_refuses_a_group_readable_key_file() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("s.db");
    let run = |args: &[&str]| -> Output {
        Command::new(marrow_bin())
            .arg("--db")
            .arg(&db)
            .args(args)
            .env_remove("MARROW_KEY")
            .env_remove("MARROW_DB")
            .env_remove("MARROW_KEY_FILE")
            .env("NO_COLOR", "1")
            .output()
            .unwrap()
    };
    let out = run(&["init"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(mode(&db), 0o600);
    let key = with_suffix(&db, ".key");
    assert_eq!(mode(&key), 0o600);
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
    let out = run(&["status"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("private to its owner"), "{err}");
    assert!(err.contains("chmod 600"), "{err}");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        }
        out.push(p);
    }
    out
}

/// The fixture with a study group, or `None` (saying why the test is skipped).
fn os_fixture() -> Option<OsFixture> {
    OsFixture::new(true)
        .map_err(|why| {
            eprintln!(
                "skipped: {why}; the group modes are checked without root by \
                 a_study_shared_with_the_primary_group_gives_every_file_the_group"
            )
        })
        .ok()
}

#[test]
fn three_os_users_of_one_group_read_and_view_and_an_outsider_is_refused() {
    let Some(mut fx) = os_fixture() else {
        return;
    };
    let (group, gid) = (fx.group().to_string(), fx.gid());
    let admin = fx.user("a", true);
    let r1 = fx.user("r1", true);
    let r2 = fx.user("r2", true);
    let outsider = fx.user("x", false);

    // The study's folder: new and empty, the admin's; `init --group` makes it the group's.
    let dir = fx.study_dir(&admin);
    let db = dir.join("study.db");
    let dbs = db.to_str().unwrap();
    let out = admin.expect(&["--db", dbs, "init", "--group", &group]);
    assert!(
        out.contains(&format!("{} is the study's admin", admin.name)),
        "{out}"
    );
    assert_eq!(mode(&dir), 0o2770);
    assert_eq!(gid_of(&dir), gid);
    assert_eq!((mode(&db), gid_of(&db)), (0o660, gid));
    let key = with_suffix(&db, ".key");
    assert_eq!((mode(&key), gid_of(&key)), (0o640, gid));

    // The demo's exports and images, written by the admin in their home, imported.
    let demo = admin.home.join("demo");
    admin.expect(&["demo", "--dir", demo.to_str().unwrap(), "--no-tui"]);
    for (kind, file) in [
        ("patients", "exports/patients.csv"),
        ("dxa", "exports/dxa.csv"),
        ("labs", "exports/labs.csv"),
        ("patients", "generated/patients.csv"),
        ("dxa", "generated/dxa.csv"),
        ("labs", "generated/labs.csv"),
    ] {
        let out = admin.marrow(&[
            "--db",
            dbs,
            "import",
            kind,
            demo.join(file).to_str().unwrap(),
        ]);
        assert!(
            out.status.code() == Some(0) || out.status.code() == Some(3),
            "import {kind} {file}: {}",
            stderr(&out)
        );
    }
    admin.expect(&[
        "--db",
        dbs,
        "import",
        "dicom",
        demo.join("dicom").to_str().unwrap(),
    ]);
    for u in [&r1, &r2, &outsider] {
        admin.expect(&["--db", dbs, "users", "add", &u.name, "--role", "reader"]);
    }
    let refreshed = admin.expect(&["--db", dbs, "cases", "refresh", "--json"]);
    let total = json(&refreshed)["total"].as_u64().unwrap();
    assert!(total > 0, "no reading case: {refreshed}");

    // The readers work while the admin holds the study open in another process: they
    // open the -wal and -shm that the admin's process made (umask 077) and write
    // through them.
    let holder = Holder::start(&admin, &db, fx.base.path().join("hold.fifo"));
    for f in [with_suffix(&db, "-wal"), with_suffix(&db, "-shm")] {
        let m = std::fs::metadata(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        assert_eq!(
            m.uid(),
            admin.uid,
            "{} was made by the admin's process",
            f.display()
        );
        assert_eq!((m.mode() & 0o777, m.gid()), (0o660, gid), "{}", f.display());
    }

    // r1 takes a case and submits it.
    let next = json(&r1.expect(&["--db", dbs, "read", "next", "--json"]));
    let case = next["summary"]["case"].as_str().unwrap().to_string();
    let grade: Vec<&str> = if next["summary"]["side"] == "patient" {
        vec!["--op-impression", "normal"]
    } else {
        vec!["--kl", "2"]
    };
    let submit = |u: &User| {
        let mut args = vec!["--db", dbs, "read", "submit", &case, "--confidence", "4"];
        args.extend(&grade);
        let out = u.expect(&args);
        assert!(out.contains("submitted and locked"), "{out}");
    };
    // The images of the case: the stored copies are the group's, 0640, and a reader views one.
    let shown = json(&r1.expect(&["--db", dbs, "read", "show", &case, "--json"]));
    let image = shown["images"][0]["store_path"]
        .as_str()
        .unwrap_or_else(|| panic!("no image: {shown}"))
        .to_string();
    let copy = with_suffix(&db, ".store").join(&image);
    assert_eq!((mode(&copy), gid_of(&copy)), (0o640, gid));
    let view = r1.expect(&["view", copy.to_str().unwrap(), "--info"]);
    assert!(!view.trim().is_empty());
    submit(&r1);

    let next2 = json(&r2.expect(&["--db", dbs, "read", "next", "--json"]));
    assert_eq!(
        next2["summary"]["case"], next["summary"]["case"],
        "the case with a slot taken comes first"
    );
    submit(&r2);
    let view = r2.expect(&["view", copy.to_str().unwrap(), "--info"]);
    assert!(!view.trim().is_empty());
    holder.stop();

    // Both reads are in, and the audit chain holds.
    let cases = json(&admin.expect(&["--db", dbs, "cases", "--json"]));
    let row = cases
        .as_array()
        .and_then(|a| a.iter().find(|c| c["case"] == case.as_str()))
        .unwrap_or_else(|| panic!("{case} not in {cases}"));
    assert_eq!(row["reads_submitted"], 2, "{row}");
    admin.expect(&["--db", dbs, "audit", "verify"]);
    let log = with_suffix(&db, ".log");
    assert_eq!((mode(&log), gid_of(&log)), (0o660, gid));

    // A registered user outside the group is refused by the file system, and told so.
    let out = outsider.marrow(&["--db", dbs, "read", "next"]);
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(err.contains("permission denied"), "{err}");
    assert!(err.contains(dir.to_str().unwrap()), "{err}");
    assert!(err.contains(&group), "{err}");
    eprintln!("a user outside the group is told: {err}");
    let out = outsider.marrow(&["view", copy.to_str().unwrap(), "--info"]);
    assert_ne!(out.status.code(), Some(0));
    drop(fx);
}

impl User {
    /// The shell command a tmux window runs to start the TUI as this user: their uid,
    /// groups and umask 077, a clean environment, in their home; then it prints the
    /// exit status and stays open so the test can read it.
    fn tui_command(&self, db: &Path) -> String {
        let groups: Vec<String> = self.groups.iter().map(u32::to_string).collect();
        let inner = format!(
            "cd {} && umask 077 && {} --db {}; echo MARROW-EXIT=$?; sleep 600",
            shell_quote(&self.home),
            shell_quote(&self.bin),
            shell_quote(db)
        );
        format!(
            "setpriv --reuid={} --regid={} --groups={} env -i HOME={} USER={} LOGNAME={} \
             PATH=/usr/bin:/bin TERM=tmux-256color NO_COLOR=1 LANG=C.UTF-8 sh -c {}",
            self.uid,
            self.gid,
            groups.join(","),
            shell_quote(&self.home),
            self.name,
            self.name,
            shell_quote(Path::new(&inner))
        )
    }
}

/// Issue 4's end-to-end check with real accounts: a study shared with a group; two
/// readers and an adjudicator, each an OS user in a terminal of their own (a tmux
/// session running the TUI under their uid), take one case from blinded reads to an
/// adjudicated final grade, with the blinding holding at every step (neither reader
/// sees the other's grade or the model's prediction before submitting). Nobody uses
/// `--as`: each is who the OS says they are.
#[test]
fn three_os_users_in_three_terminals_take_a_case_to_final_in_a_shared_study() {
    let Some(mut fx) = os_fixture() else {
        return;
    };
    if !found("setpriv") {
        eprintln!("skipped: setpriv (util-linux) is not installed");
        return;
    }
    let admin = fx.user("a", true);
    let r1 = fx.user("r1", true);
    let r2 = fx.user("r2", true);
    let adj = fx.user("j", true);
    let dir = fx.study_dir(&admin);
    let db = dir.join("study.db");
    let dbs = db.to_str().unwrap();
    admin.expect(&["--db", dbs, "init", "--group", fx.group()]);
    for (u, role) in [(&r1, "reader"), (&r2, "reader"), (&adj, "adjudicator")] {
        admin.expect(&["--db", dbs, "users", "add", &u.name, "--role", role]);
    }
    // One eligible OA patient with a left-knee radiograph: one case.
    let patients = admin.home.join("patients.csv");
    std::fs::write(
        &patients,
        "mrn,site,phase,group,sex,birth_date,index_date,deformity,implant,pathological_fracture,malignancy,steroid_long_term,radio_chemo_last\n\
         OA1,PKUPH,retrospective,OA,F,1960-05-01,2024-05-01,no,no,no,no,no,none\n",
    )
    .unwrap();
    let dicom = admin.home.join("dicom");
    std::fs::create_dir(&dicom).unwrap();
    let spec = marrow::dicom::synth::Spec {
        patient_id: "OA1".into(),
        body_part: marrow::dicom::synth::BodyPart::Knee,
        laterality: Some(marrow::dicom::synth::Laterality::Left),
        view: marrow::dicom::synth::View::Ap,
        rows: 48,
        cols: 40,
        study_date: chrono::NaiveDate::from_ymd_opt(2024, 5, 1).unwrap(),
        seed: 7,
    };
    marrow::dicom::synth::write_radiograph(dicom.join("knee.dcm"), &spec).unwrap();
    for p in [&patients, &dicom, &dicom.join("knee.dcm")] {
        std::os::unix::fs::chown(p, Some(admin.uid), Some(admin.gid)).unwrap();
    }
    admin.expect(&[
        "--db",
        dbs,
        "import",
        "patients",
        patients.to_str().unwrap(),
    ]);
    admin.expect(&["--db", dbs, "import", "dicom", dicom.to_str().unwrap()]);
    // The model's second opinion exists before anyone reads.
    admin.expect(&["--db", dbs, "infer", "--all"]);

    let wait = Duration::from_secs(60);
    let terminal = |u: &User| Tmux::start(120, 40, &u.tui_command(&db));

    // r1 takes the case and reads it.
    let t1 = terminal(&r1);
    t1.wait_for(&format!("{} (reader)", r1.name), wait);
    t1.wait_for("Your reading worklist · 0 cases", wait);
    t1.keys(&["t"]);
    let screen = t1.wait_for("Your read of C00001", wait);
    assert!(
        screen.contains("blinded until you submit your read of C00001"),
        "{screen}"
    );
    assert!(
        !screen.contains("phantom"),
        "the model shows to r1:\n{screen}"
    );
    t1.keys(&["2", "j", "1", "j", "j", "j", "j", "j"]);
    t1.wait_for("▶ confidence", wait);
    t1.keys(&["4", "Enter"]);
    t1.wait_for("Submit your read?", wait);
    t1.keys(&["y"]);
    t1.wait_for("submitted and locked", wait);

    // r2, in a terminal of their own with r1's still open, takes the same case:
    // nothing of r1's read shows until r2 submits.
    let t2 = terminal(&r2);
    t2.wait_for(&format!("{} (reader)", r2.name), wait);
    t2.wait_for("Your reading worklist", wait);
    t2.keys(&["t"]);
    let screen = t2.wait_for("Your read of C00001", wait);
    assert!(
        !screen.contains("KL 2"),
        "r1's grade shows to r2:\n{screen}"
    );
    assert!(!screen.contains(&r1.name), "r1 shows to r2:\n{screen}");
    assert!(screen.contains("hidden"), "{screen}");
    assert!(
        !screen.contains("phantom"),
        "the model shows to r2:\n{screen}"
    );
    t2.keys(&["4", "j", "j", "j", "j", "j", "j"]);
    t2.wait_for("▶ confidence", wait);
    t2.keys(&["3", "Enter"]);
    t2.wait_for("Submit your read?", wait);
    t2.keys(&["y"]);
    let screen = t2.wait_for(&format!("read by {} v1: KL 2", r1.name), wait);
    assert!(screen.contains("adjudication"), "{screen}");
    assert!(
        screen.contains("0.1.0-phantom"),
        "the model after r2's read:\n{screen}"
    );

    // The adjudicator, in a third terminal, decides with a rationale.
    let t3 = terminal(&adj);
    t3.wait_for(&format!("{} (adjudicator)", adj.name), wait);
    t3.keys(&["A"]);
    t3.wait_for("Adjudication queue · 1 case", wait);
    t3.keys(&["Enter"]);
    let screen = t3.wait_for("Final grade of C00001", wait);
    assert!(
        screen.contains(&format!("read by {} v1: KL 2", r1.name)),
        "{screen}"
    );
    assert!(
        screen.contains(&format!("read by {} v1: KL 4", r2.name)),
        "{screen}"
    );
    t3.keys(&["3", "j", "j"]);
    t3.wait_for("▶ rationale", wait);
    t3.type_text("definite JSN on the AP view");
    t3.wait_for("definite JSN on the AP view", wait);
    t3.keys(&["Enter"]);
    t3.wait_for("Record the final grade?", wait);
    t3.keys(&["y"]);
    t3.wait_for(&format!("final: KL 3 by {}", adj.name), wait);

    // r1's terminal, still open, reloads and shows the final grade.
    t1.keys(&["r"]);
    t1.wait_for(&format!("final: KL 3 by {}", adj.name), wait);
    for t in [&t1, &t2, &t3] {
        t.keys(&["q"]);
        t.wait_for("MARROW-EXIT=0", wait);
    }

    // Every file the four processes made is the group's, and the record holds.
    for f in [&db, &with_suffix(&db, "-wal"), &with_suffix(&db, ".log")] {
        if f.exists() {
            assert_eq!((mode(f), gid_of(f)), (0o660, fx.gid()), "{}", f.display());
        }
    }
    let shown = admin.expect(&["--db", dbs, "read", "show", "C00001"]);
    assert!(
        shown.contains(&format!("adjudicated: KL 3 by {} at", adj.name)),
        "{shown}"
    );
    assert!(shown.contains("definite JSN on the AP view"), "{shown}");
    for u in [&r1, &r2] {
        assert!(shown.contains(&u.name), "{} missing:\n{shown}", u.name);
    }
    admin.expect(&["--db", dbs, "audit", "verify"]);
    // The terminals close (their shells end) before the accounts are removed.
    drop((t1, t2, t3));
    drop(fx);
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// A process of `user` holding the study open (as a TUI left open would): `marrow
/// import patients FIFO` opens the study, then waits for the named pipe to be written
/// and closed. Opening the study ran queries, so SQLite's `-wal` and `-shm` exist,
/// made by that process.
struct Holder {
    child: Option<std::process::Child>,
    fifo: PathBuf,
    writer: Option<std::fs::File>,
}

impl Holder {
    fn start(user: &User, db: &Path, fifo: PathBuf) -> Holder {
        let c = CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
        std::os::unix::fs::chown(&fifo, Some(user.uid), Some(user.gid)).unwrap();
        let child = user
            .command(&[
                "--db",
                db.to_str().unwrap(),
                "import",
                "patients",
                fifo.to_str().unwrap(),
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut h = Holder {
            child: Some(child),
            fifo,
            writer: None,
        };
        // The pipe opens for writing once the holder opens it for reading, which it
        // does after opening the study.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        while h.writer.is_none() {
            use std::os::unix::fs::OpenOptionsExt;
            match std::fs::OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(&h.fifo)
            {
                Ok(f) => h.writer = Some(f),
                Err(e) if e.raw_os_error() == Some(libc::ENXIO) => {
                    if let Some(status) = h.child.as_mut().unwrap().try_wait().unwrap() {
                        panic!("the holder ended before opening the pipe: {status}");
                    }
                    assert!(
                        std::time::Instant::now() < deadline,
                        "the holder never opened the pipe"
                    );
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(e) => panic!("{}: {e}", h.fifo.display()),
            }
        }
        h
    }

    /// Gives the holder a patients file with a header and no rows; it imports
    /// nothing and ends.
    fn stop(mut self) {
        use std::io::Write;
        let mut w = self.writer.take().unwrap();
        w.write_all(b"mrn,site,phase,group\n").unwrap();
        drop(w);
        let out = self.child.take().unwrap().wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "holder: {}{}",
            stdout(&out),
            stderr(&out)
        );
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        self.writer.take();
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Sixteen members of the group open a shared study at the same moment, again and
/// again, with umask 077: none is refused. (The -wal and -shm files vanish when the
/// last member closes; the next opener used to have SQLite make them 0600 under its
/// umask and widen them only afterwards, and a member opening in between was told
/// "cannot open the files beside ... (-wal, -shm)": 75 of 240 opens, before.)
#[test]
fn sixteen_members_opening_a_shared_study_at_once_are_never_refused() {
    let Some(mut fx) = os_fixture() else {
        return;
    };
    let group = fx.group().to_string();
    let admin = fx.user("a", true);
    let members: Vec<User> = (0..16).map(|i| fx.user(&format!("m{i}"), true)).collect();
    let dir = fx.study_dir(&admin);
    let db = dir.join("study.db");
    let dbs = db.to_str().unwrap();
    admin.expect(&["--db", dbs, "init", "--group", &group]);
    for m in &members {
        admin.expect(&[
            "--db",
            dbs,
            "users",
            "add",
            &m.name,
            "--role",
            "coordinator",
        ]);
    }
    let mut refused = Vec::new();
    for round in 0..12 {
        let running: Vec<_> = members
            .iter()
            .map(|m| {
                m.command(&["--db", dbs, "status", "--json"])
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .expect("start marrow")
            })
            .collect();
        for (m, child) in members.iter().zip(running) {
            let out = child.wait_with_output().expect("marrow ends");
            if !out.status.success() {
                refused.push(format!("round {round}, {}: {}", m.name, stderr(&out)));
            }
        }
    }
    assert!(
        refused.is_empty(),
        "{} of 192 opens refused:\n{}",
        refused.len(),
        refused.join("\n")
    );
    // The files beside the database are the group's whenever they exist.
    for suffix in ["-wal", "-shm"] {
        let p = with_suffix(&db, suffix);
        if p.exists() {
            assert_eq!(mode(&p) & 0o060, 0o060, "{}", p.display());
        }
    }
}
