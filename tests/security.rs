//! Security (issue 7, item 6): what marrow creates is private to its owner; a key
//! file others may read is refused naming it; no key, derived secret or identifier is
//! written to the log; roles are enforced in the data layer, not only by the command
//! line; `--as` works only for admins, also for a real non-admin OS account.
//!
//! Covered elsewhere, not repeated here:
//! - group modes with `init --group` (0660/0640/2770):
//!   `shared_group::a_study_shared_with_the_primary_group_gives_every_file_the_group`,
//!   and a group-readable key file in a private study:
//!   `shared_group::a_private_study_refuses_a_group_readable_key_file`;
//! - a reader cannot see another reader's grade (nor the DXA stage, the model, the
//!   final) before submitting, in the data layer:
//!   `reading::blinding_holds_in_the_data_layer_until_the_reader_submits`;
//! - `--as` through the API: `db::as_is_honoured_only_for_admins`.

mod common;
#[path = "common/os_accounts.rs"]
mod os_accounts;
use common::*;
use marrow::db::{DbError, Study};
use marrow::domain::eligibility::{Answer, Criterion};
use marrow::domain::user::Role;
use os_accounts::OsFixture;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .mode()
        & 0o7777
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    walkdir::WalkDir::new(dir)
        .min_depth(1)
        .into_iter()
        .map(|e| e.unwrap().into_path())
        .collect()
}

/// A study with patients, DXA, labs and radiographs imported (some waiting in
/// quarantine), cases made, and exports written: every kind of file marrow makes.
fn busy_study(s: &TempStudy) {
    let generated = s.path("gen");
    s.expect(
        &[
            "generate",
            "--patients",
            "20",
            "--out",
            generated.to_str().unwrap(),
        ],
        0,
    );
    s.expect(
        &[
            "generate",
            "--dicom",
            "3",
            "--rows",
            "32",
            "--cols",
            "32",
            "--out",
            generated.join("dicom").to_str().unwrap(),
        ],
        0,
    );
    for kind in ["patients", "dxa", "labs"] {
        let f = generated.join(format!("{kind}.csv"));
        let out = s.run(&["import", kind, f.to_str().unwrap()]);
        assert!(
            matches!(out.status.code(), Some(0 | 3)),
            "{kind}: {}",
            stderr(&out)
        );
    }
    s.expect(
        &["import", "dicom", generated.join("dicom").to_str().unwrap()],
        0,
    );
    s.expect(&["cases", "refresh"], 0);
}

#[test]
fn the_database_its_wal_key_log_and_store_are_private_to_their_owner() {
    let s = TempStudy::init();
    busy_study(&s);
    // Hold a connection open so the -wal and -shm files exist while we look.
    let held = s.open();
    let generated = s.path("gen");
    let mut checked = 0;
    let mut store_files = 0;
    for p in walk(s.dir.path()) {
        if p.starts_with(&generated) {
            continue; // the test's own inputs
        }
        let m = mode(&p);
        let name = p.display().to_string();
        if p.is_dir() {
            assert_eq!(m, 0o700, "{name} is {m:04o}");
        } else {
            assert_eq!(m, 0o600, "{name} is {m:04o}");
            if name.contains(".store/") {
                store_files += 1;
            }
        }
        checked += 1;
    }
    drop(held);
    for suffix in ["", ".key", ".log", ".store"] {
        let mut p = s.db.as_os_str().to_owned();
        p.push(suffix);
        assert!(PathBuf::from(&p).exists(), "{p:?} was not made");
    }
    assert!(store_files >= 3, "the store holds {store_files} files");
    assert!(checked >= 8, "only {checked} files and folders");

    // What marrow writes outside the study folder is private too.
    let out = s.path("exports");
    std::fs::create_dir(&out).unwrap();
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o755)).unwrap();
    let f = |n: &str| out.join(n).to_str().unwrap().to_string();
    s.expect(&["export", "analysis", "--out", &f("analysis.csv")], 0);
    s.expect(&["export", "summary", "--out", &f("summary.json")], 0);
    s.expect(&["export", "consort", "--out", &f("consort.json")], 0);
    for n in [
        "analysis.csv",
        "analysis.dictionary.csv",
        "summary.json",
        "consort.json",
    ] {
        let m = mode(&out.join(n));
        assert_eq!(m, 0o600, "{n} is {m:04o}");
    }
}

#[test]
fn a_key_file_others_may_read_is_refused_naming_the_file_and_nothing_is_touched() {
    let s = TempStudy::init();
    let key = marrow::db::keys::default_key_file(&s.db);
    let before = std::fs::read(&s.db).unwrap();
    for m in [0o604, 0o644, 0o606, 0o666] {
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(m)).unwrap();
        let out = s.run(&["status"]);
        assert_eq!(out.status.code(), Some(2), "mode {m:o}");
        let err = stderr(&out);
        assert!(err.contains(&key.display().to_string()), "{err}");
        assert!(err.contains("readable by every user"), "{err}");
        assert!(
            err.contains(&format!("chmod 600 {}", key.display())),
            "{err}"
        );
        assert!(stdout(&out).is_empty(), "{}", stdout(&out));
        // the API refuses it too, with the same kind of error
        match Study::open(&s.db, None, None) {
            Err(DbError::BadKey(msg)) => assert!(msg.contains("readable by every user")),
            Err(e) => panic!("wrong error: {e}"),
            Ok(_) => panic!("opened with a key file mode {m:o}"),
        }
    }
    assert_eq!(
        std::fs::read(&s.db).unwrap(),
        before,
        "the database changed"
    );
    // chmod 600, as the message says, and it opens again
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    s.expect(&["status"], 0);
}

/// The identifier secret exactly as `marrow::db::keys` derives it (HKDF-SHA256 under
/// its label): it must never be logged either.
fn derived_secret_hex(key_hex: &str) -> String {
    let key = marrow::db::keys::Key::from_hex(key_hex, &marrow::db::keys::KeySource::Env).unwrap();
    hex::encode(key.derive(b"marrow/identifier-hmac/v1"))
}

#[test]
fn no_key_secret_or_identifier_is_written_to_the_log() {
    let s = TempStudy::empty();
    let key = "5a".repeat(8) + &"c3".repeat(8) + &"e1".repeat(8) + &"07".repeat(8);
    let wrong = "9d".repeat(32);
    let run = |key: &str, args: &[&str]| {
        s.cmd()
            .env("MARROW_KEY", key)
            // the most verbose log there is
            .env("RUST_LOG", "trace")
            .args(args)
            .output()
            .unwrap()
    };
    let out = run(&key, &["init"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let p = s.write("patients.csv", PATIENTS);
    let out = run(&key, &["import", "patients", p.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    // a file with a row that is refused: its reason quotes the row back to the user
    // on the terminal, but not into the log
    let bad = s.write(
        "bad.csv",
        "mrn,site,phase,group,birth_date,index_date,name\n\
         MRN777,PKUPH,retrospective,OA,2031-02-03,2024-05-01,Zhou Xiaoling\n",
    );
    let out = run(&key, &["import", "patients", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let out = run(&key, &["screen", "PKUPH-OA-0001", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    // a wrong key: refused, and neither key is printed or logged
    let out = run(&wrong, &["status"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(!err.contains(&wrong) && !err.contains(&key), "{err}");
    // a key file holding something that is not a key is not echoed either
    let kf = s.write("odd.key", "not-a-key-but-a-Secret-Passphrase-42\n");
    std::fs::set_permissions(&kf, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = s
        .cmd()
        .env("RUST_LOG", "trace")
        .args(["--key-file", kf.to_str().unwrap(), "status"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        !stderr(&out).contains("Secret-Passphrase"),
        "{}",
        stderr(&out)
    );

    let mut log = s.db.as_os_str().to_owned();
    log.push(".log");
    let log = std::fs::read_to_string(PathBuf::from(log)).expect("a log beside the database");
    assert!(log.contains("import: rows written"), "{log}");
    assert!(
        log.contains("does not open"),
        "the failure is logged: {log}"
    );
    let secret = derived_secret_hex(&key);
    for needle in [
        key.as_str(),
        &key.to_uppercase(),
        wrong.as_str(),
        secret.as_str(),
        "Secret-Passphrase",
        "MRN001",
        "MRN777",
        "Wang Fang",
        "李娜",
        "Chen Wei",
        "Zhou Xiaoling",
        "Xizhimen",
        "1960-05-01",
        "1950-01-01",
        "2031-02-03",
    ] {
        assert!(!log.contains(needle), "{needle} is in the log:\n{log}");
    }
    // the hash of an MRN is no identifier, but the log has no business with it
    let hash = s.open_with_key(&key).identifier_hash("MRN001");
    assert!(!log.contains(&hash), "an MRN hash is in the log");
}

trait OpenWithKey {
    fn open_with_key(&self, key: &str) -> Study;
}

impl OpenWithKey for TempStudy {
    fn open_with_key(&self, key: &str) -> Study {
        let k = marrow::db::keys::Key::from_hex(key, &marrow::db::keys::KeySource::Env).unwrap();
        Study::open_with_key(
            &self.db,
            &k,
            &marrow::db::keys::KeySource::Env,
            "root",
            None,
        )
        .expect("open with the key")
    }
}

fn refused<T>(what: &str, r: Result<T, DbError>) {
    match r {
        Err(e @ DbError::NotAllowed { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains("(role pi) may not"), "{what}: {msg}");
        }
        Err(e) => panic!("{what}: refused for the wrong reason: {e}"),
        Ok(_) => panic!("{what}: a PI wrote to the study"),
    }
}

#[test]
fn a_pi_cannot_write_through_the_data_layer() {
    let s = TempStudy::init();
    let p = s.write("patients.csv", PATIENTS);
    s.expect(&["import", "patients", p.to_str().unwrap()], 0);
    s.expect(&["users", "add", "pat", "--role", "pi"], 0);
    s.expect(&["users", "add", "rita", "--role", "reader"], 0);
    let audit_before = s.open().audit_log(None).unwrap().len();
    let version_before = s.open().patient("PKUPH-OA-0001").unwrap().summary.version;

    let mut pi = Study::open_for(&s.db, None, "root", Some("pat")).unwrap();
    assert_eq!(pi.role(), Role::Pi);
    // reading is allowed
    assert!(pi.patient("PKUPH-OA-0001").is_ok());
    // every write is refused by the data layer itself
    refused(
        "set_answer",
        pi.set_answer(
            "PKUPH-OA-0001",
            Criterion::I4,
            Some(Answer::No),
            "PI says so",
            None,
        ),
    );
    let err = pi
        .set_answer("PKUPH-OA-0001", Criterion::I4, None, "clear it", None)
        .unwrap_err();
    assert!(
        err.to_string().contains("PIs have read-only access"),
        "{err}"
    );
    refused("add_user", pi.add_user("eve", Role::Admin));
    refused("batch", pi.batch().map(|_| ()));
    refused("refresh_cases", pi.refresh_cases());
    refused("take_next_case", pi.take_next_case());
    let changed = s.write(
        "changed.csv",
        "mrn,site,phase,group,deformity\nMRN001,PKUPH,retrospective,OA,yes\n",
    );
    match marrow::import::import_csv(
        &mut pi,
        marrow::import::ImportKind::Patients,
        &changed,
        |_, _| {},
    ) {
        Err(marrow::import::ImportError::Database { error, .. }) => {
            refused("import_csv", Err::<(), _>(error))
        }
        Err(e) => panic!("import_csv refused for the wrong reason: {e}"),
        Ok(r) => panic!("a PI imported: {r:?}"),
    }
    drop(pi);

    let admin = s.open();
    assert_eq!(admin.audit_log(None).unwrap().len(), audit_before);
    let now = admin.patient("PKUPH-OA-0001").unwrap();
    assert_eq!(now.summary.version, version_before);
    assert!(now.manual.is_empty());
    assert!(!now.record.deformity.unwrap_or(false));
    assert!(admin.users().unwrap().iter().all(|u| u.name != "eve"));
}

// ---------------------------------------------------------------------------
// `--as` with a real non-admin OS account (root only)
// ---------------------------------------------------------------------------

fn chown_all(dir: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::chown(dir, Some(uid), Some(gid)).unwrap();
    for p in walk(dir) {
        std::os::unix::fs::lchown(&p, Some(uid), Some(gid)).unwrap();
    }
}

#[test]
fn as_works_only_for_admins_also_for_a_real_os_account() {
    let mut fx = match OsFixture::new(false) {
        Ok(fx) => fx,
        Err(why) => {
            eprintln!(
                "skipped: {why}; the same rule through the API is db::as_is_honoured_only_for_admins"
            );
            return;
        }
    };
    let account = fx.user("as", false);
    let (name, uid, gid) = (account.name.clone(), account.uid, account.gid);
    let dir = fx.base.path().join("study");
    std::fs::create_dir(&dir).unwrap();
    let db = dir.join("s.db");
    let as_root = |args: &[&str]| {
        let out = Command::new(&fx.bin)
            .arg("--db")
            .arg(&db)
            .args(args)
            .env_remove("MARROW_KEY")
            .env("NO_COLOR", "1")
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    };
    as_root(&["init"]);
    as_root(&["users", "add", &name, "--role", "coordinator"]);
    as_root(&["users", "add", "bob", "--role", "reader"]);
    // The account owns the private study (as the admin who made it would).
    chown_all(&dir, uid, gid);
    let as_account = |args: &[&str]| {
        let mut c = account.command(&[]);
        c.arg("--db").arg(&db).args(args);
        c.output().unwrap()
    };
    // as themselves: fine
    let out = as_account(&["status"]);
    assert!(out.status.success(), "{}", stderr(&out));
    // as someone else: refused, and the trail records nothing done as bob
    for who in ["bob", "root"] {
        let out = as_account(&["--as", who, "status"]);
        assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
        let err = stderr(&out);
        assert!(err.contains("--as is for admins"), "{err}");
        assert!(err.contains(&name), "the message names who asked: {err}");
    }
    // made an admin, the same account may act as bob
    chown_all(&dir, 0, 0);
    as_root(&["users", "add", &name, "--role", "admin"]);
    chown_all(&dir, uid, gid);
    let out = as_account(&["--as", "bob", "read", "next"]);
    let err = stderr(&out);
    assert!(!err.contains("--as is for admins"), "{err}");
    let out = as_account(&["--as", "bob", "status"]);
    assert!(out.status.success(), "{}", stderr(&out));
}
