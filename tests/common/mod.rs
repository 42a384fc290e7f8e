//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod demo;
pub mod tmux;

use std::path::{Path, PathBuf};
use std::process::Output;

/// A temporary study folder with an initialised database.
pub struct TempStudy {
    pub dir: tempfile::TempDir,
    pub db: PathBuf,
}

impl TempStudy {
    /// A fresh folder without a database.
    pub fn empty() -> TempStudy {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = dir.path().join("study.db");
        TempStudy { dir, db }
    }

    /// A fresh folder with `marrow init` run in it.
    pub fn init() -> TempStudy {
        let s = TempStudy::empty();
        let out = s.run(&["init"]);
        assert!(out.status.success(), "init failed: {}", stderr(&out));
        s
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes a file into the study folder and returns its path.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, text).expect("write fixture");
        p
    }

    /// A `marrow --db <db>` command with no key in the environment.
    pub fn cmd(&self) -> std::process::Command {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_marrow"));
        c.arg("--db").arg(&self.db);
        c.env_remove("MARROW_KEY")
            .env_remove("MARROW_DB")
            .env_remove("MARROW_KEY_FILE")
            .env("NO_COLOR", "1");
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().expect("run marrow")
    }

    /// Runs and asserts exit status `code`, returning stdout.
    pub fn expect(&self, args: &[&str], code: i32) -> String {
        let out = self.run(args);
        assert_eq!(
            out.status.code(),
            Some(code),
            "marrow {args:?}\nstdout:\n{}\nstderr:\n{}",
            stdout(&out),
            stderr(&out)
        );
        stdout(&out)
    }

    pub fn open(&self) -> marrow::db::Study {
        marrow::db::Study::open(&self.db, None, None).expect("open study")
    }
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Opens the raw SQLCipher connection (bypassing marrow) with the study's key file.
pub fn raw_connection(db: &Path) -> rusqlite::Connection {
    let key = std::fs::read_to_string(marrow::db::keys::default_key_file(db)).expect("key file");
    let c = rusqlite::Connection::open(db).expect("open raw");
    c.execute_batch(&format!(
        "PRAGMA cipher_log_level = NONE; PRAGMA key = \"x'{}'\"; {}",
        key.trim(),
        marrow::db::CIPHER_SETTINGS
    ))
    .expect("key");
    c
}

/// A patients export with one row per cohort edge the tests need.
pub const PATIENTS: &str = "\
mrn,site,phase,group,sex,birth_date,index_date,deformity,implant,pathological_fracture,malignancy,steroid_long_term,radio_chemo_last,name,address
MRN001,PKUPH,retrospective,OA,F,1960-05-01,2024-05-01,no,no,no,no,no,none,Wang Fang,1 Xizhimen St
MRN002,PKUPH,retrospective,OP,F,1950-01-01,2024-05-01,no,no,no,no,no,none,李娜,2 Road
MRN003,SYSMH,prospective,CONTROL,M,1970-03-03,2025-12-10,no,no,no,no,no,2025-10-01,Chen Wei,3 Lane
";
