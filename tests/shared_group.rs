//! A study shared by a Unix group of study staff (`marrow init --group`), with real
//! OS accounts.
//!
//! `a_study_shared_with_the_primary_group_gives_every_file_the_group` runs as any
//! user: it shares a study with the user's own primary group and checks the mode and
//! group of every file marrow and SQLite make.
//!
//! `three_os_users_of_one_group_read_and_view_and_an_outsider_is_refused` needs root
//! (CI and the development container run as root): it creates a group and four users
//! with `groupadd`/`useradd` (unique names, removed at the end even when the test
//! fails), then runs the built `marrow` as each of them (fork, `setgroups`, `setgid`,
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
use common::tmux::{Tmux, shell_quote};
use std::ffi::CString;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
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

/// An OS account made for the test.
#[derive(Clone)]
struct User {
    name: String,
    uid: u32,
    gid: u32,
    groups: Vec<u32>,
    home: PathBuf,
    /// A copy of the binary this user may run (the build folder is under root's
    /// home, which only root may enter).
    bin: PathBuf,
}

/// Removes the users and the group it made, on every way out of the test.
struct Accounts {
    users: Vec<String>,
    group: Option<String>,
}

impl Drop for Accounts {
    fn drop(&mut self) {
        for u in &self.users {
            // A process of the user that was just told to end (a terminal's shell on
            // SIGHUP) may still be going: userdel refuses until it has.
            let mut tries = 0;
            loop {
                let out = Command::new("userdel").arg(u).output();
                if out.as_ref().is_ok_and(|o| o.status.success()) {
                    break;
                }
                tries += 1;
                if tries == 50 {
                    eprintln!("warning: userdel {u}: {out:?}");
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        }
        if let Some(g) = &self.group {
            let out = Command::new("groupdel").arg(g).output();
            if !out.as_ref().is_ok_and(|o| o.status.success()) {
                eprintln!("warning: groupdel {g}: {out:?}");
            }
        }
    }
}

fn found(tool: &str) -> bool {
    ["/usr/sbin", "/usr/bin", "/sbin", "/bin"]
        .iter()
        .any(|d| Path::new(d).join(tool).exists())
}

fn sh(cmd: &str, args: &[&str]) {
    let out = Command::new(cmd).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}{}",
        stdout(&out),
        stderr(&out)
    );
}

/// uid and primary gid of a user name.
fn passwd(name: &str) -> (u32, u32) {
    let c = CString::new(name).unwrap();
    // SAFETY: getpwnam's result is read at once, on this thread.
    unsafe {
        let p = libc::getpwnam(c.as_ptr());
        assert!(!p.is_null(), "no user {name}");
        ((*p).pw_uid, (*p).pw_gid)
    }
}

impl User {
    /// `marrow ARGS` as this user: their uid, primary and supplementary groups, umask
    /// 077 (so only marrow's own modes can make a file the group's), their HOME.
    fn marrow(&self, args: &[&str]) -> Output {
        self.command(&self.bin, args).output().expect("run marrow")
    }

    fn command(&self, bin: &Path, args: &[&str]) -> Command {
        let mut c = Command::new(bin);
        c.args(args)
            .current_dir(&self.home)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("HOME", &self.home)
            .env("USER", &self.name)
            .env("LOGNAME", &self.name)
            .env("NO_COLOR", "1")
            .env("LANG", "C.UTF-8");
        let (uid, gid, groups) = (self.uid, self.gid, self.groups.clone());
        // SAFETY: only system calls between fork and exec.
        unsafe {
            c.pre_exec(move || become_user(uid, gid, &groups));
        }
        c
    }

    fn expect(&self, args: &[&str]) -> String {
        let out = self.marrow(args);
        assert!(
            out.status.success(),
            "{} as {}: exit {:?}\n{}{}",
            args.join(" "),
            self.name,
            out.status.code(),
            stdout(&out),
            stderr(&out)
        );
        stdout(&out)
    }
}

/// Drops root for `uid` (between fork and exec): groups first, then the gid, then the
/// uid; umask 077.
fn become_user(uid: u32, gid: u32, groups: &[u32]) -> std::io::Result<()> {
    // SAFETY: plain system calls with a slice that outlives them.
    unsafe {
        libc::umask(0o077);
        if libc::setgroups(groups.len(), groups.as_ptr()) != 0
            || libc::setgid(gid) != 0
            || libc::setuid(uid) != 0
        {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Root's set-up for the tests with real accounts: a new group, a folder every test
/// user may enter holding a copy of the binary and their homes; the accounts and the
/// group are removed when it is dropped.
struct OsFixture {
    group: String,
    gid: u32,
    tag: String,
    homes: PathBuf,
    bin: PathBuf,
    // Dropped after the accounts: the folder goes last.
    accounts: Accounts,
    base: tempfile::TempDir,
}

impl OsFixture {
    /// `None` (with the reason printed) where the test cannot make accounts.
    fn new() -> Option<OsFixture> {
        // SAFETY: a plain system call.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!(
                "skipped: making OS users and a group needs root (this test runs as root in CI); \
                 the group modes are checked without root by a_study_shared_with_the_primary_group_gives_every_file_the_group"
            );
            return None;
        }
        if !["useradd", "userdel", "groupadd", "groupdel"]
            .iter()
            .all(|t| found(t))
        {
            eprintln!("skipped: useradd/userdel/groupadd/groupdel are not installed");
            return None;
        }
        // Short unique names (user names are at most 32 characters).
        static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let tag = format!("{:x}", (std::process::id() << 12) ^ nanos ^ (seq << 28));
        let tag = tag[tag.len().saturating_sub(6)..].to_string();
        let group = format!("mrwg{tag}");
        let mut accounts = Accounts {
            users: Vec::new(),
            group: None,
        };
        sh("groupadd", &[&group]);
        accounts.group = Some(group.clone());
        let gid = marrow::db::sharing::group_id(&group).expect("the new group");

        let base = tempfile::Builder::new()
            .prefix("marrow-shared-")
            .tempdir_in("/tmp")
            .unwrap();
        std::fs::set_permissions(base.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let bin = base.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        let copy = bin.join("marrow");
        std::fs::copy(marrow_bin(), &copy).unwrap();
        std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
        let homes = base.path().join("home");
        std::fs::create_dir(&homes).unwrap();
        std::fs::set_permissions(&homes, std::fs::Permissions::from_mode(0o755)).unwrap();
        Some(OsFixture {
            group,
            gid,
            tag,
            homes,
            bin: copy,
            accounts,
            base,
        })
    }

    /// A new account `mrw<role><tag>`, in the study group when `member`, with a
    /// private home of its own.
    fn user(&mut self, role: &str, member: bool) -> User {
        let name = format!("mrw{role}{}", self.tag);
        let mut args = vec!["-M", "-N", "-s", "/bin/sh"];
        if member {
            args.extend(["-G", self.group.as_str()]);
        }
        args.push(&name);
        sh("useradd", &args);
        self.accounts.users.push(name.clone());
        let (uid, primary) = passwd(&name);
        assert_ne!(
            primary, self.gid,
            "the study group must not be their primary group"
        );
        let home = self.homes.join(&name);
        std::fs::create_dir(&home).unwrap();
        std::os::unix::fs::chown(&home, Some(uid), Some(primary)).unwrap();
        std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o700)).unwrap();
        let mut groups = vec![primary];
        if member {
            groups.push(self.gid);
        }
        User {
            name,
            uid,
            gid: primary,
            groups,
            home,
            bin: self.bin.clone(),
        }
    }

    /// A new, empty folder for the study, owned by `admin`; `init --group` makes it
    /// the group's.
    fn study_dir(&self, admin: &User) -> PathBuf {
        let dir = self.base.path().join("study");
        std::fs::create_dir(&dir).unwrap();
        std::os::unix::fs::chown(&dir, Some(admin.uid), Some(admin.gid)).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        dir
    }
}

#[test]
fn three_os_users_of_one_group_read_and_view_and_an_outsider_is_refused() {
    let Some(mut fx) = OsFixture::new() else {
        return;
    };
    let (group, gid) = (fx.group.clone(), fx.gid);
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
    let Some(mut fx) = OsFixture::new() else {
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
    admin.expect(&["--db", dbs, "init", "--group", &fx.group]);
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
    t1.keys(&["2", "1", "j", "j", "j", "j"]);
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
    t2.keys(&["4", "j", "j", "j", "j", "j"]);
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
    t3.keys(&["3", "j"]);
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
            assert_eq!((mode(f), gid_of(f)), (0o660, fx.gid), "{}", f.display());
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
            .command(
                &user.bin,
                &[
                    "--db",
                    db.to_str().unwrap(),
                    "import",
                    "patients",
                    fifo.to_str().unwrap(),
                ],
            )
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
