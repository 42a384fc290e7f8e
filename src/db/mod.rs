//! The encrypted study database: opening (SQLCipher key, WAL, foreign keys, busy
//! timeout), migrations, the audit trail and the typed repositories.

pub mod agreement;
pub mod audit;
pub mod export;
pub mod followup;
pub mod imaging;
pub mod inference;
pub mod keys;
pub mod migrate;
pub mod reading;
pub mod sharing;
pub mod study;

pub use keys::{Key, KeySource};
pub use study::Study;

use rusqlite::{Connection, OpenFlags};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long a writer waits for another process's transaction before giving up.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Errors of the database layer, each worded for the person at the terminal.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("{}", no_database_message(.0))]
    NoDatabase(PathBuf),
    #[error("{0} already exists; marrow init never overwrites a study database")]
    AlreadyExists(PathBuf),
    /// The path given as the study database is something else (a folder, an empty
    /// file, a plain SQLite database, another file): said before any key is sought.
    #[error("{0}")]
    NotAStudy(String),
    #[error(
        "no key for {db}: key file {key_file} does not exist and MARROW_KEY is not set; give the key with --key-file or MARROW_KEY"
    )]
    NoKey { db: PathBuf, key_file: PathBuf },
    #[error("{0}")]
    BadKey(String),
    #[error(
        "the key from {key_source} does not open {db}: wrong key, or not a marrow database; check --key-file / MARROW_KEY"
    )]
    WrongKey { db: PathBuf, key_source: KeySource },
    #[error(
        "this database has schema version {found}, newer than this marrow understands ({supported}; marrow {}); upgrade marrow to open it (nothing was changed)",
        env!("CARGO_PKG_VERSION")
    )]
    NewerSchema { found: i64, supported: i64 },
    #[error(
        "user '{user}' is not registered in this study; ask an admin ({admins}) to run `marrow users add {user} --role ROLE`"
    )]
    UnknownUser { user: String, admins: String },
    #[error("{user} (role {role}) may not {what}")]
    NotAllowed {
        user: String,
        role: String,
        what: String,
    },
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
    #[error("the study database is busy (another user's write has held it for over {}s); try again", BUSY_TIMEOUT.as_secs())]
    Busy,
    #[error(
        "the disk holding the study database is full; the change under way was rolled back (an import keeps the rows it had finished and a re-run skips them); free space and run it again"
    )]
    DiskFull,
    #[error("the study database is read-only here: {0}")]
    ReadOnly(String),
    #[error("database error: {0}")]
    Sqlite(rusqlite::Error),
}

impl From<rusqlite::Error> for DbError {
    fn from(e: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode as C;
        match e.sqlite_error_code() {
            Some(C::DatabaseBusy) | Some(C::DatabaseLocked) => DbError::Busy,
            Some(C::DiskFull) => DbError::DiskFull,
            Some(C::ReadOnly) => DbError::ReadOnly(read_only_message(&e)),
            _ => DbError::Sqlite(e),
        }
    }
}

pub type Result<T> = std::result::Result<T, DbError>;

/// Why there is no database at `path` for this user: permissions (a study group's
/// folder they are not in), else that it does not exist.
fn no_database_message(path: &Path) -> String {
    sharing::permission_problem(path, true).unwrap_or_else(|| {
        format!(
            "no study database at {0}: create one with `marrow init --db {0}`, or point --db / MARROW_DB at the right file",
            path.display()
        )
    })
}

/// The study databases this process has opened (one, but for tests): a write
/// refused as read-only is said with what is read-only about the study's files.
static STUDIES: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());

fn remember_study(path: &Path) {
    let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    if let Ok(mut s) = STUDIES.lock()
        && !s.contains(&path)
    {
        s.push(path);
    }
}

/// Whether this process has opened (or created) a study database.
pub fn opened_a_study() -> bool {
    STUDIES.lock().is_ok_and(|s| !s.is_empty())
}

/// What a write refused as read-only is said with: what about the study's files is
/// read-only ([`read_only_reason`]), else SQLite's words.
fn read_only_message(e: &rusqlite::Error) -> String {
    let only = STUDIES
        .lock()
        .ok()
        .and_then(|s| (s.len() == 1).then(|| s[0].clone()));
    only.and_then(|db| read_only_reason(&db))
        .unwrap_or_else(|| format!("{e}; ask an admin about file permissions"))
}

/// The file (`<db>-wal`, `<db>-shm`) SQLite keeps beside `db`.
pub fn sidecar(db: &Path, suffix: &str) -> PathBuf {
    let mut s = db.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Why this process may not write `db`, in words naming what is read-only: the file
/// system, the database file, its `-wal` or `-shm`, or the folder they are made in.
/// `None` when all of them may be written.
pub fn read_only_reason(db: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let dir = sharing::db_folder(db);
    let denied = |p: &Path| -> Option<std::io::Error> {
        use std::os::unix::ffi::OsStrExt;
        let c = std::ffi::CString::new(p.as_os_str().as_bytes()).ok()?;
        // SAFETY: a NUL-terminated path that outlives the call.
        (unsafe { libc::access(c.as_ptr(), libc::W_OK) } != 0)
            .then(std::io::Error::last_os_error)
            .filter(|e| e.kind() != std::io::ErrorKind::NotFound)
    };
    let erofs = |e: &std::io::Error| e.raw_os_error() == Some(libc::EROFS);
    if denied(db)
        .or_else(|| denied(&dir))
        .is_some_and(|e| erofs(&e))
    {
        return Some(format!(
            "the folder {} is on a read-only file system; reading works, but to change the study copy its folder somewhere writable",
            dir.display()
        ));
    }
    let file = |p: &Path| {
        let m = std::fs::metadata(p).ok()?;
        let mode = if m.mode() & 0o060 == 0o060 { 660 } else { 600 };
        Some(format!(
            "the file {} is read-only for you ({}); its owner can allow writing with `chmod {mode} {}`",
            p.display(),
            sharing::describe(&m),
            p.display()
        ))
    };
    if denied(db).is_some() {
        return file(db);
    }
    for suffix in ["-wal", "-shm"] {
        let p = sidecar(db, suffix);
        if denied(&p).is_some() {
            return file(&p);
        }
    }
    if denied(&dir).is_some() {
        let m = std::fs::metadata(&dir).ok()?;
        return Some(format!(
            "you may not write in the folder {} ({}), where SQLite makes the -wal and -shm files it needs to write; ask an admin about its permissions",
            dir.display(),
            sharing::describe(&m)
        ));
    }
    None
}

/// The page size of every marrow database (`cipher_page_size` in [`CIPHER_SETTINGS`]):
/// an encrypted database is a whole number of these.
pub const PAGE_SIZE: u64 = 16384;

/// Whether `db` is absent, or an empty file with nothing in a `-wal` beside it: a
/// place `init` may write a new study.
pub fn absent_or_empty(db: &Path) -> bool {
    match std::fs::symlink_metadata(db) {
        Err(e) => e.kind() == std::io::ErrorKind::NotFound,
        Ok(m) => m.is_file() && m.len() == 0 && !wal_has_pages(db),
    }
}

fn wal_has_pages(db: &Path) -> bool {
    std::fs::metadata(sidecar(db, "-wal")).is_ok_and(|m| m.len() > 0)
}

/// Refuses, before any key is sought and without writing anything, a path given as
/// the study database that is not one: missing, a folder, not a regular file, empty,
/// a plain (unencrypted) SQLite database, or a file that cannot be an encrypted one
/// (text, or a size that is not a whole number of pages). An encrypted database
/// looks like random bytes, so one that passes is told apart only by its key.
pub fn check_study_file(path: &Path) -> Result<()> {
    use std::io::Read;
    let Ok(meta) = std::fs::metadata(path) else {
        return Err(DbError::NoDatabase(path.to_path_buf()));
    };
    let p = path.display();
    let not = |what: String| Err(DbError::NotAStudy(format!("{p} {what}")));
    if meta.is_dir() {
        return not(format!(
            "is a directory, not a marrow study: point --db (or MARROW_DB) at the study's database file in it, or run `marrow init --db {p}/marrow.db` to create one there"
        ));
    }
    if !meta.is_file() {
        return not("is not a regular file (a device, a pipe or a socket), not a marrow study; point --db (or MARROW_DB) at the study's database file".into());
    }
    // Pages may wait in the -wal (a database being written): SQLite decides.
    if wal_has_pages(path) {
        return Ok(());
    }
    if meta.len() == 0 {
        return not(format!(
            "is empty: not a marrow study (run `marrow init --db {p}` to create one)"
        ));
    }
    let mut head = Vec::with_capacity(4096);
    let Ok(file) = std::fs::File::open(path) else {
        return Ok(()); // the open names the permission problem
    };
    if file.take(4096).read_to_end(&mut head).is_err() {
        return Ok(());
    }
    if head.starts_with(b"SQLite format 3\0") {
        return not(
            "begins with 'SQLite format 3': a plain SQLite database, not an encrypted marrow study (marrow opens only the databases `marrow init` creates)".into(),
        );
    }
    let text = std::str::from_utf8(&head).is_ok_and(|t| {
        t.chars()
            .all(|c| !c.is_control() || matches!(c, '\n' | '\r' | '\t'))
    });
    if text || meta.len() % PAGE_SIZE != 0 {
        let looks = if text {
            "it holds text".to_string()
        } else {
            format!(
                "its {} bytes are not a whole number of {PAGE_SIZE}-byte pages",
                meta.len()
            )
        };
        return not(format!(
            "is not a marrow study (it is neither a SQLCipher database nor SQLite: {looks})"
        ));
    }
    Ok(())
}

/// SQLCipher settings every connection applies right after the key. Page HMACs use
/// SHA-256, which current server CPUs compute in hardware (SHA-NI): reading a page
/// then costs a third of the default SHA-512's time. Any other SQLCipher client must
/// apply the same settings to open a marrow database.
pub const CIPHER_SETTINGS: &str =
    "PRAGMA cipher_hmac_algorithm = HMAC_SHA256; PRAGMA cipher_page_size = 16384;";

/// Process-wide SQLite settings; call once before the first connection (main does).
pub fn configure_sqlite() {
    // Without memory statistics every allocation skips a global mutex; marrow never
    // reads them.
    // SAFETY: called before SQLite is initialised, as sqlite3_config requires; a
    // late call just returns SQLITE_MISUSE, which is harmless.
    unsafe {
        rusqlite::ffi::sqlite3_config(rusqlite::ffi::SQLITE_CONFIG_MEMSTATUS, 0 as std::ffi::c_int);
    }
}

fn apply_key(conn: &Connection, key: &Key) -> Result<()> {
    // SQLCipher logs a wrong key to stderr, which would garble the TUI. Zeroing every
    // freed allocation costs a third of an import; SQLCipher wipes its key material anyway.
    conn.execute_batch("PRAGMA cipher_log_level = NONE; PRAGMA cipher_memory_security = OFF;")?;
    conn.execute_batch(&format!("PRAGMA key = {};", key.sql_literal()))?;
    conn.execute_batch(CIPHER_SETTINGS)?;
    Ok(())
}

/// Statements each connection keeps prepared (rusqlite's default is 16; the reading
/// and screening paths alone use more).
const STATEMENT_CACHE: usize = 64;

fn set_pragmas(conn: &Connection) -> Result<()> {
    // SQLite's own busy handler (sleeps of 1, 2, 5, 10 ... 100 ms). A handler retrying
    // every 0.25-2 ms cut the longest waits under saturation but tripled p95 and cost
    // throughput (docs/BENCHMARKS.md, "Reading"), so it is not used.
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    conn.execute_batch(
        "PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL; PRAGMA cache_size = -32768;",
    )?;
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        tracing::warn!("journal_mode is {mode}, not WAL");
    }
    Ok(())
}

/// Opens an existing database with its key; never creates one. Where the folder
/// cannot be written (a read-only mount), it is opened read-only: reads work and
/// a write is refused saying what is read-only ([`read_only_reason`]).
pub fn open_connection(path: &Path, key: &Key, source: &KeySource) -> Result<Connection> {
    check_study_file(path)?;
    sharing::fit_sidecar_modes(path);
    let shared = sharing::prepare_wal_files(path);
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::CannotOpen) => {
            DbError::Invalid(sharing::permission_problem(path, true).unwrap_or_else(|| {
                format!(
                    "cannot open {}: {e} (check the file's permissions)",
                    path.display()
                )
            }))
        }
        _ => DbError::from(e),
    })?;
    // Before the first read: opening while another process checkpoints, recovers or
    // resets the WAL is a brief lock that must be waited out, not shown as "busy".
    conn.busy_timeout(BUSY_TIMEOUT)?;
    apply_key(&conn, key)?;
    let first_read = || {
        conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| {
            r.get::<_, i64>(0)
        })
    };
    let mut read = first_read();
    // In a shared study, the -wal/-shm files may have been removed by the last
    // member to close and made again by another with its umask, widened a moment
    // later: wait for that (within the busy timeout) before calling it a problem.
    let started = std::time::Instant::now();
    while shared
        && matches!(&read, Err(e) if e.sqlite_error_code() == Some(rusqlite::ErrorCode::CannotOpen))
        && started.elapsed() < std::time::Duration::from_secs(2)
    {
        std::thread::sleep(std::time::Duration::from_millis(20));
        sharing::prepare_wal_files(path);
        read = first_read();
    }
    match read {
        Ok(_) => {}
        Err(e) if e.sqlite_error_code() == Some(rusqlite::ErrorCode::NotADatabase) => {
            return Err(DbError::WrongKey {
                db: path.to_path_buf(),
                key_source: source.clone(),
            });
        }
        Err(e)
            if matches!(
                e.sqlite_error_code(),
                Some(rusqlite::ErrorCode::CannotOpen) | Some(rusqlite::ErrorCode::ReadOnly)
            ) && unwritable_folder(path).is_some() =>
        {
            // The folder cannot be written (a read-only mount, or no write permission):
            // SQLite cannot make the -wal and -shm files it needs; read-only, it reads.
            if let Some(why) = unwritable_folder(path) {
                drop(conn);
                return open_read_only(path, key, source).map_err(|e| {
                    DbError::ReadOnly(format!(
                        "{why}, and SQLite cannot read {} without making its -wal and -shm files there ({e}); \
                         copy the study folder somewhere writable",
                        path.display()
                    ))
                });
            }
            return Err(e.into());
        }
        Err(e) if e.sqlite_error_code() == Some(rusqlite::ErrorCode::CannotOpen) => {
            // The database opened, its -wal or -shm did not: another member made them
            // without the group's rights.
            return Err(DbError::Invalid(format!(
                "cannot open the files beside {} (-wal, -shm): {e}; {}",
                path.display(),
                "in a study shared with a group, its folder must be setgid and the group's (chmod 2770)"
            )));
        }
        Err(e) => return Err(e.into()),
    }
    set_pragmas(&conn)?;
    if shared {
        keep_wal_files(&conn);
    }
    sharing::fit_wal_files(path);
    remember_study(path);
    Ok(conn)
}

/// Opens `path` read-only where its folder cannot be written: with its `-wal` and
/// `-shm` when both are there (SQLite reads them without writing), else, when no
/// `-wal` holds pages, as an immutable file (nobody can be writing it: a writer
/// would have made the `-wal`). A write on it fails as read-only.
fn open_read_only(path: &Path, key: &Key, source: &KeySource) -> Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let sidecars = sidecar(path, "-wal").exists() && sidecar(path, "-shm").exists();
    let conn = if sidecars {
        Connection::open_with_flags(path, flags)?
    } else if !wal_has_pages(path) {
        Connection::open_with_flags(immutable_uri(path)?, flags | OpenFlags::SQLITE_OPEN_URI)?
    } else {
        return Err(DbError::Invalid(format!(
            "{} holds changes not yet in the database, and there is no -shm beside it",
            sidecar(path, "-wal").display()
        )));
    };
    conn.busy_timeout(BUSY_TIMEOUT)?;
    apply_key(&conn, key)?;
    match conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| {
        r.get::<_, i64>(0)
    }) {
        Ok(_) => {}
        Err(e) if e.sqlite_error_code() == Some(rusqlite::ErrorCode::NotADatabase) => {
            return Err(DbError::WrongKey {
                db: path.to_path_buf(),
                key_source: source.clone(),
            });
        }
        Err(e) => return Err(DbError::Sqlite(e)),
    }
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    conn.execute_batch("PRAGMA foreign_keys = ON; PRAGMA cache_size = -32768;")?;
    tracing::info!(
        "{} opened read-only (its folder cannot be written)",
        path.display()
    );
    remember_study(path);
    Ok(conn)
}

/// `file:PATH?immutable=1`, the path made absolute and escaped for a URI.
fn immutable_uri(path: &Path) -> Result<String> {
    let abs = std::path::absolute(path)
        .map_err(|e| DbError::Invalid(format!("{}: {e}", path.display())))?;
    let text = abs.to_str().ok_or_else(|| {
        DbError::Invalid(format!(
            "{}: a path that is not UTF-8 cannot be opened read-only",
            abs.display()
        ))
    })?;
    let mut uri = String::from("file:");
    for c in text.chars() {
        match c {
            '%' | '?' | '#' => uri.push_str(&format!("%{:02X}", c as u32)),
            c => uri.push(c),
        }
    }
    uri.push_str("?immutable=1");
    Ok(uri)
}

/// Asks SQLite to keep the -wal and -shm files when this connection is the last
/// to close (SQLITE_FCNTL_PERSIST_WAL). In a study shared with a group they are
/// made once with the group's mode and stay: removed and remade by the next
/// member under its umask, a third member could find them 0600 for a moment and
/// SQLite would open the -shm read-only, its writes then refused as "readonly
/// database".
fn keep_wal_files(conn: &Connection) {
    let mut on: std::os::raw::c_int = 1;
    // SAFETY: the handle is this open connection's; the argument is the int the
    // file control reads and writes, alive for the call.
    let rc = unsafe {
        rusqlite::ffi::sqlite3_file_control(
            conn.handle(),
            c"main".as_ptr(),
            rusqlite::ffi::SQLITE_FCNTL_PERSIST_WAL,
            (&mut on as *mut std::os::raw::c_int).cast(),
        )
    };
    if rc != rusqlite::ffi::SQLITE_OK {
        tracing::warn!("cannot keep the -wal and -shm files (SQLite code {rc})");
    }
    // A kept WAL is cut back to this size when the last member closes.
    if let Err(e) = conn.execute_batch("PRAGMA journal_size_limit = 16777216") {
        tracing::warn!("cannot limit the kept WAL: {e}");
    }
}

/// Why the folder of `db` cannot be written by this process, if it cannot: a
/// read-only file system (which binds root too) or missing write permission.
fn unwritable_folder(db: &Path) -> Option<String> {
    use std::os::unix::ffi::OsStrExt;
    let dir = db
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: a NUL-terminated path that outlives the call.
    if unsafe { libc::access(c.as_ptr(), libc::W_OK) } == 0 {
        return None;
    }
    let e = std::io::Error::last_os_error();
    Some(match e.raw_os_error() {
        Some(libc::EROFS) => format!("the folder {} is on a read-only file system", dir.display()),
        Some(libc::EACCES) | Some(libc::EPERM) => {
            format!("you may not write in the folder {}", dir.display())
        }
        _ => format!("the folder {} cannot be written ({e})", dir.display()),
    })
}

/// Creates a new, empty encrypted database file (refusing one that exists).
pub fn create_connection(path: &Path, key: &Key) -> Result<Connection> {
    if !absent_or_empty(path) {
        return Err(DbError::AlreadyExists(path.to_path_buf()));
    }
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    apply_key(&conn, key)?;
    set_pragmas(&conn)?;
    restrict_permissions(path)?;
    remember_study(path);
    Ok(conn)
}

/// Makes a file private to its owner (0600).
pub fn restrict_permissions(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| DbError::Invalid(format!("cannot make {} private: {e}", path.display())))
}

/// The OS user running this process: the study's notion of identity.
pub fn os_user() -> String {
    // SAFETY: getpwuid_r writes into the buffers we own; the pointers are checked.
    unsafe {
        let uid = libc::getuid();
        let mut pwd: libc::passwd = std::mem::zeroed();
        let mut buf = vec![0 as libc::c_char; 4096];
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        let rc = libc::getpwuid_r(uid, &mut pwd, buf.as_mut_ptr(), buf.len(), &mut result);
        if rc == 0 && !result.is_null() && !pwd.pw_name.is_null() {
            return std::ffi::CStr::from_ptr(pwd.pw_name)
                .to_string_lossy()
                .into_owned();
        }
        format!("uid{uid}")
    }
}

/// The current UTC time as stored everywhere (RFC 3339, milliseconds).
pub fn now_utc() -> String {
    use chrono::{Datelike, Timelike};
    let t = chrono::Utc::now();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        t.month(),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.timestamp_subsec_millis().min(999)
    )
}
