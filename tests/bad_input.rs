//! Bad input that had no test before (issue 7, item 4; the whole catalogue, with the
//! tests that already existed, is docs/BAD_INPUT.md): exports in the wrong encoding,
//! empty or binary "CSV" files, key files that hold no key, a file that is not a
//! marrow database, a database from a newer marrow, a missing image store, a full
//! disk, a read-only mount, and a terminal too small to draw in.
//!
//! The full-disk and read-only tests mount a small tmpfs, which needs root (CI runs
//! as root); elsewhere they say why they are skipped and pass.

mod common;
#[path = "common/os_accounts.rs"]
mod os_accounts;
use common::*;
use os_accounts::OsFixture;
use std::path::{Path, PathBuf};
use std::process::Command;

fn no_panic(out: &std::process::Output) {
    let err = stderr(out);
    assert!(!err.contains("panicked"), "{err}");
    assert!(!err.contains("RUST_BACKTRACE"), "{err}");
}

fn import(s: &TempStudy, kind: &str, file: &Path) -> std::process::Output {
    let out = s.run(&["import", kind, file.to_str().unwrap()]);
    no_panic(&out);
    out
}

// ---------------------------------------------------------------------------
// CSV files
// ---------------------------------------------------------------------------

#[test]
fn latin1_or_gbk_in_a_column_marrow_reads_refuses_the_row_naming_it_and_in_an_ignored_column_costs_nothing()
 {
    let s = TempStudy::init();
    // The export's name column is never read (no direct identifier is stored),
    // so Latin-1 or GBK there costs nothing; in a column the import reads it
    // refuses that row, naming the column.
    let mut bytes = b"mrn,site,phase,group,name,sex\nMRN001,PKUPH,retrospective,OA,".to_vec();
    bytes.extend(b"M\xfcller,F\n"); // Latin-1
    bytes.extend(b"MRN002,PKUPH,retrospective,OP,\xc0\xee\xc4\xc8,F\n"); // GBK for 李娜
    bytes.extend(b"MRN003,SYSMH,retrospective,OA,Chen,\xc9\n"); // Latin-1 É in sex
    bytes.extend(b"MRN004,SYSMH,retrospective,O\xc1,Wang,M\n"); // a stray byte in group
    bytes.extend(b"MRN005,SYSMH,retrospective,OA,Li,M\n");
    let f = s.path("latin1.csv");
    std::fs::write(&f, &bytes).unwrap();
    let out = import(&s, "patients", &f);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("line 4: column 'sex' is not valid UTF-8 (save the export as UTF-8)"),
        "{text}"
    );
    assert!(
        text.contains("line 5: column 'group' is not valid UTF-8"),
        "{text}"
    );
    assert!(
        !text.contains("line 2:") && !text.contains("line 3:"),
        "{text}"
    );
    assert!(text.contains("3 added"), "{text}");
    let rejected = std::fs::read(s.path("latin1.rejected.csv")).unwrap();
    assert_eq!(rejected.iter().filter(|b| **b == b'\n').count(), 3); // header + 2 rows
    let listed = stdout(&s.run(&["patients", "--json"]));
    let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(listed.as_array().map(Vec::len), Some(3), "{listed}");
    // (tests/followup.rs checks the same for the follow-up import.)
}

#[test]
fn a_utf16_export_is_refused_before_any_row_saying_it_is_utf16() {
    let s = TempStudy::init();
    // What spreadsheet programs write as "Unicode text": UTF-16LE with a BOM.
    let text = "mrn,site,phase,group\nMRN001,PKUPH,retrospective,OA\n";
    let mut bytes = vec![0xFF, 0xFE];
    for u in text.encode_utf16() {
        bytes.extend(u.to_le_bytes());
    }
    let f = s.path("utf16.csv");
    std::fs::write(&f, &bytes).unwrap();
    let out = import(&s, "patients", &f);
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "{} is UTF-16 text, not UTF-8: save the export as \"CSV UTF-8\"",
            f.display()
        )),
        "{err}"
    );
    // the same without a byte-order mark, and for the other imports
    std::fs::write(&f, &bytes[2..]).unwrap();
    for kind in ["patients", "dxa", "labs", "followup"] {
        let out = import(&s, kind, &f);
        assert_eq!(out.status.code(), Some(2), "{kind}");
        assert!(stderr(&out).contains("is UTF-16 text"), "{}", stderr(&out));
    }
    let out = s.run(&["reads", "import", f.to_str().unwrap()]);
    assert!(stderr(&out).contains("is UTF-16 text"), "{}", stderr(&out));
    assert!(
        s.open().patients(&Default::default()).unwrap().is_empty(),
        "nothing was imported"
    );
}

#[test]
fn an_empty_file_a_header_only_a_binary_file_and_a_folder() {
    let s = TempStudy::init();
    // empty: not an export
    let empty = s.write("empty.csv", "");
    let out = import(&s, "patients", &empty);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains(&format!("{} is empty: nothing to import", empty.display())),
        "{}",
        stderr(&out)
    );

    // a header and no rows: nothing to do, said so
    let header = s.write("header.csv", "mrn,site,phase,group\n");
    let out = import(&s, "patients", &header);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("0 rows"), "{}", stdout(&out));

    // a binary file (an image given by mistake)
    let png = s.path("photo.csv");
    let mut bytes = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
    bytes.extend((0..2000u32).map(|i| (i * 7 % 251) as u8));
    std::fs::write(&png, &bytes).unwrap();
    let out = import(&s, "dxa", &png);
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    assert!(
        stderr(&out).contains(&format!("{} is not a text file", png.display())),
        "{}",
        stderr(&out)
    );

    // a spreadsheet workbook (a zip) saved with a .csv name
    let xlsx = s.path("book.csv");
    let mut bytes = b"PK\x03\x04\x14\x00\x06\x00".to_vec();
    bytes.extend(b"[Content_Types].xml");
    std::fs::write(&xlsx, &bytes).unwrap();
    let out = import(&s, "patients", &xlsx);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("looks like a spreadsheet workbook"),
        "{}",
        stderr(&out)
    );

    // a folder
    let dir = s.path("a-folder");
    std::fs::create_dir(&dir).unwrap();
    let out = import(&s, "labs", &dir);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("a-folder") && stderr(&out).contains("Is a directory"),
        "{}",
        stderr(&out)
    );
    assert!(s.open().patients(&Default::default()).unwrap().is_empty());
    s.expect(&["audit", "verify"], 0);
}

// ---------------------------------------------------------------------------
// Keys and databases
// ---------------------------------------------------------------------------

#[test]
fn a_key_file_that_holds_no_key_is_refused_naming_it_without_echoing_it() {
    let s = TempStudy::init();
    let key = marrow::db::keys::default_key_file(&s.db);
    let good = std::fs::read_to_string(&key).unwrap();
    for text in [
        "",
        "\n",
        "correct horse battery staple\n",
        &good[..40],
        &format!("{}ff", good.trim()),
    ] {
        std::fs::write(&key, text).unwrap();
        let out = s.run(&["status"]);
        no_panic(&out);
        assert_eq!(out.status.code(), Some(2), "{text:?}");
        let err = stderr(&out);
        assert!(err.contains("must hold exactly 64 hex characters"), "{err}");
        assert!(err.contains(&key.display().to_string()), "{err}");
        assert!(
            text.trim().is_empty() || !err.contains(text.trim()),
            "the key file's text is echoed: {err}"
        );
    }
    std::fs::write(&key, &good).unwrap();
    s.expect(&["status"], 0);
}

#[test]
fn a_file_that_is_not_a_marrow_database_is_refused_untouched() {
    let s = TempStudy::init();
    for (name, bytes) in [
        ("notes.db", b"just some notes\n".to_vec()),
        ("plain.db", {
            // an ordinary, unencrypted SQLite database
            let p = s.path("plain-src.db");
            let c = rusqlite::Connection::open(&p).unwrap();
            c.execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (1);")
                .unwrap();
            drop(c);
            std::fs::read(&p).unwrap()
        }),
    ] {
        let db = s.path(name);
        std::fs::write(&db, &bytes).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_marrow"))
            .env_remove("MARROW_KEY")
            .arg("--db")
            .arg(&db)
            .arg("--key-file")
            .arg(marrow::db::keys::default_key_file(&s.db))
            .arg("status")
            .output()
            .unwrap();
        no_panic(&out);
        assert_eq!(out.status.code(), Some(2), "{name}");
        let err = stderr(&out);
        assert!(err.contains("wrong key, or not a marrow database"), "{err}");
        assert_eq!(std::fs::read(&db).unwrap(), bytes, "{name} was changed");
    }
}

#[test]
fn a_database_from_a_newer_marrow_says_to_upgrade_and_is_left_as_it_was() {
    let s = TempStudy::init();
    let raw = raw_connection(&s.db);
    let version: i64 = raw
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    raw.pragma_update(None, "user_version", version + 3)
        .unwrap();
    drop(raw);
    for args in [&["status"][..], &["audit", "verify"], &["patients"]] {
        let out = s.run(args);
        no_panic(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = stderr(&out);
        assert!(
            err.contains(&format!("schema version {}", version + 3)),
            "{err}"
        );
        assert!(err.contains("upgrade marrow"), "{err}");
        assert!(err.contains(env!("CARGO_PKG_VERSION")), "{err}");
    }
    let raw = raw_connection(&s.db);
    let after: i64 = raw
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(after, version + 3, "the version was changed");
}

// ---------------------------------------------------------------------------
// The image store
// ---------------------------------------------------------------------------

fn with_images() -> TempStudy {
    let s = TempStudy::init();
    let generated = s.path("gen");
    s.expect(
        &[
            "generate",
            "--dicom",
            "2",
            "--rows",
            "32",
            "--cols",
            "32",
            "--out",
            generated.to_str().unwrap(),
        ],
        0,
    );
    let out = s.expect(&["import", "dicom", generated.to_str().unwrap()], 0);
    assert!(out.contains("2 files: 2 imported"), "{out}");
    s
}

fn store_of(s: &TempStudy) -> PathBuf {
    marrow::dicom::store::root_for(&s.db)
}

#[test]
fn a_missing_store_folder_is_said_by_status_and_stops_a_dicom_import() {
    let s = with_images();
    let store = store_of(&s);
    let moved = s.path("moved-away");
    std::fs::rename(&store, &moved).unwrap();

    // status still works and says what is wrong
    let out = s.run(&["status"]);
    no_panic(&out);
    assert_eq!(out.status.code(), Some(0));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("the image store {} is missing", store.display())),
        "{err}"
    );
    assert!(
        err.contains("2 image(s)") && err.contains("backup"),
        "{err}"
    );

    // an import would count every file as already there: it does not run
    let out = s.run(&["import", "dicom", s.path("gen").to_str().unwrap()]);
    no_panic(&out);
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    assert!(stderr(&out).contains("is missing"), "{}", stderr(&out));
    assert!(!store.exists(), "the import made an empty store");
    // The refusal is the import's own, not only the command line's.
    let mut study = s.open();
    let refused = marrow::dicom::import_dicom(&mut study, &[s.path("gen")], |_| {})
        .expect_err("the library import refuses too");
    assert!(refused.to_string().contains("is missing"), "{refused}");
    assert!(!store.exists(), "the import made an empty store");
    drop(study);
    // The TUI says it on its first screen.
    let (worker, session) = marrow::tui::worker::Worker::spawn(s.db.clone(), None, None, |_| {})
        .expect("the TUI opens the study");
    let warning = session.warning.clone().expect("the TUI is told");
    assert!(warning.contains("is missing"), "{warning}");
    let app = marrow::tui::App::new(session);
    let mut t = ratatui::Terminal::new(ratatui::backend::TestBackend::new(200, 30)).unwrap();
    t.draw(|f| app.render(f)).unwrap();
    let screen: String = t
        .backend()
        .buffer()
        .content()
        .iter()
        .map(|c| c.symbol())
        .collect();
    assert!(screen.contains("the image store"), "{screen}");
    drop(worker);

    // put back, all is as before
    std::fs::rename(&moved, &store).unwrap();
    let out = s.run(&["status"]);
    assert!(stderr(&out).is_empty(), "{}", stderr(&out));
    let out = s.expect(&["import", "dicom", s.path("gen").to_str().unwrap()], 0);
    assert!(out.contains("2 already imported"), "{out}");
}

// ---------------------------------------------------------------------------
// Full disk and read-only mount (root: a small tmpfs)
// ---------------------------------------------------------------------------

/// A tmpfs of `size` mounted on a new folder, unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Option<Tmpfs> {
        // SAFETY: a plain system call.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: mounting a tmpfs needs root (CI runs as root)");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700")])
            .arg("tmpfs")
            .arg(dir.path())
            .output();
        match out {
            Ok(o) if o.status.success() => Some(Tmpfs { dir }),
            Ok(o) => {
                eprintln!(
                    "skipped: mount -t tmpfs is not permitted here: {}",
                    stderr(&o).trim()
                );
                None
            }
            Err(e) => {
                eprintln!("skipped: no mount command: {e}");
                None
            }
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn remount(&self, opts: &str) {
        let out = Command::new("mount")
            .args(["-o", &format!("remount,{opts}")])
            .arg(self.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "remount {opts}: {}", stderr(&out));
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).output();
    }
}

fn study_in(dir: &Path) -> TempStudy {
    // TempStudy's own folder only holds the inputs; the database lives on the mount.
    let s = TempStudy::empty();
    TempStudy {
        db: dir.join("study.db"),
        dir: s.dir,
    }
}

#[test]
fn a_full_disk_is_said_plainly_and_loses_nothing_already_written() {
    let Some(fs) = Tmpfs::mount("3m") else {
        return;
    };
    let s = study_in(fs.path());
    s.expect(&["init"], 0);
    let small = s.write("small.csv", PATIENTS);
    s.expect(&["import", "patients", small.to_str().unwrap()], 0);
    // far more rows than the disk has room for
    let generated = s.path("gen");
    s.expect(
        &[
            "generate",
            "--patients",
            "30000",
            "--out",
            generated.to_str().unwrap(),
        ],
        0,
    );
    let big = generated.join("patients.csv");
    let out = s.run(&["import", "patients", big.to_str().unwrap()]);
    no_panic(&out);
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(err.contains("disk is full"), "{err}");
    assert!(err.contains("re-run"), "{err}");
    assert!(
        !err.contains("tracing") && !err.contains("os error 28"),
        "the log's failure is shown to the user: {err}"
    );

    // Room again: the database opens, its trail verifies, the earlier rows are there,
    // and the same import completes.
    fs.remount("size=64m");
    s.expect(&["audit", "verify"], 0);
    let list = s.expect(&["patients", "--json"], 0);
    for sid in ["PKUPH-OA-0001", "PKUPH-OP-0001", "SYSMH-CONTROL-0001"] {
        assert!(list.contains(sid), "{sid} lost: {list}");
    }
    let out = s.run(&["import", "patients", big.to_str().unwrap()]);
    assert!(matches!(out.status.code(), Some(0 | 3)), "{}", stderr(&out));
    s.expect(&["audit", "verify"], 0);
}

#[test]
fn init_on_a_full_disk_leaves_nothing_half_made() {
    let Some(fs) = Tmpfs::mount("1m") else {
        return;
    };
    let s = study_in(fs.path());
    let out = s.run(&["init"]);
    no_panic(&out);
    if out.status.success() {
        eprintln!("skipped: init fitted in 1 MB here; nothing to check");
        return;
    }
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("is full"), "{err}");
    assert!(err.contains("half-made database was removed"), "{err}");
    let left: Vec<_> = std::fs::read_dir(fs.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().starts_with("study.db"))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    // with room, init simply works
    fs.remount("size=16m");
    s.expect(&["init"], 0);
    s.expect(&["status"], 0);
}

#[test]
fn a_read_only_mount_is_said_plainly_and_nothing_is_written() {
    let Some(fs) = Tmpfs::mount("16m") else {
        return;
    };
    let s = study_in(fs.path());
    s.expect(&["init"], 0);
    let p = s.write("p.csv", PATIENTS);
    s.expect(&["import", "patients", p.to_str().unwrap()], 0);
    fs.remount("ro");
    for args in [
        &["status"][..],
        &[
            "screen",
            "PKUPH-OA-0001",
            "--set",
            "I4=no",
            "--reason",
            "valgus",
        ],
        &["import", "patients", p.to_str().unwrap()],
    ] {
        let out = s.run(args);
        no_panic(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stdout(&out));
        let err = stderr(&out);
        assert!(err.contains("read-only"), "{args:?}: {err}");
        assert!(
            err.contains(&fs.path().display().to_string()),
            "the folder is named: {err}"
        );
        assert!(!err.contains("setgid"), "a wrong hint: {err}");
    }
    fs.remount("rw");
    s.expect(&["audit", "verify"], 0);
    let check = s.expect(&["screen", "PKUPH-OA-0001"], 0);
    assert!(!check.contains("valgus"), "{check}");
}

// ---------------------------------------------------------------------------
// The terminal
// ---------------------------------------------------------------------------

#[test]
fn a_terminal_too_small_says_so_at_any_size_without_panicking() {
    use marrow::domain::user::Role;
    use marrow::tui::{App, Theme, fixture};
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;
    let mut app = App::with_patients(fixture::session(Role::Admin), fixture::worklist(3));
    app.set_theme(Theme::plain());
    let draw = |app: &App, w: u16, h: u16| {
        let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
        t.draw(|f| app.render(f)).unwrap();
        t.backend().to_string()
    };
    let text = draw(&app, 30, 8);
    assert!(text.contains("terminal too small"), "{text}");
    assert!(text.contains("30x8"), "{text}");
    // degenerate sizes draw something (or nothing) but never panic
    for (w, h) in [(1, 1), (2, 40), (200, 1), (10, 3)] {
        let _ = draw(&app, w, h);
    }
    // and at a normal size, the worklist again
    assert!(
        draw(&app, 100, 30).contains("PKUPH"),
        "{}",
        draw(&app, 100, 30)
    );
}

/// A database file its (non-root) owner may not write: reading works, a write is
/// refused saying the database is read-only, once. Root ignores file modes, so this
/// runs as a new OS account (root only; skipped elsewhere, saying why).
#[test]
fn a_database_file_its_user_may_not_write_is_said_plainly_once() {
    use std::os::unix::fs::PermissionsExt;
    let mut fx = match OsFixture::new(false) {
        Ok(fx) => fx,
        Err(why) => {
            eprintln!("skipped: {why}");
            return;
        }
    };
    let user = fx.user("ro", false);
    let (name, uid, gid) = (user.name.clone(), user.uid, user.gid);
    let dir = fx.base.path().join("study");
    std::fs::create_dir(&dir).unwrap();
    let db = dir.join("s.db");
    let csv = dir.join("p.csv");
    std::fs::write(&csv, PATIENTS).unwrap();
    // a new patient: importing it has to write
    let more = dir.join("more.csv");
    std::fs::write(
        &more,
        "mrn,site,phase,group\nMRN900,SYSMH,retrospective,OP\n",
    )
    .unwrap();
    let marrow = |as_user: bool, args: &[&str]| {
        let mut c = if as_user {
            user.command(&[])
        } else {
            let mut c = Command::new(&fx.bin);
            c.env_remove("MARROW_KEY");
            c
        };
        c.arg("--db").arg(&db).args(args);
        c.output().unwrap()
    };
    assert!(marrow(false, &["init"]).status.success());
    assert!(
        marrow(false, &["users", "add", &name, "--role", "admin"])
            .status
            .success()
    );
    assert!(
        marrow(false, &["import", "patients", csv.to_str().unwrap()])
            .status
            .success()
    );
    for p in std::iter::once(dir.clone())
        .chain(std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()))
    {
        std::os::unix::fs::chown(&p, Some(uid), Some(gid)).unwrap();
    }
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o400)).unwrap();

    let out = marrow(true, &["status"]);
    assert!(out.status.success(), "reading works: {}", stderr(&out));
    for args in [
        &["import", "patients", more.to_str().unwrap()][..],
        &[
            "screen",
            "PKUPH-OA-0001",
            "--set",
            "I4=no",
            "--reason",
            "valgus",
        ],
    ] {
        let out = marrow(true, args);
        no_panic(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stdout(&out));
        let err = stderr(&out);
        assert_eq!(err.matches("read-only").count(), 1, "said once: {err}");
        assert!(
            err.contains("the study database is read-only here"),
            "{err}"
        );
    }
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = marrow(true, &["screen", "PKUPH-OA-0001"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stdout(&out).contains("valgus"), "{}", stdout(&out));
}
