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
    #[error("the study database is read-only here ({0}); ask an admin about file permissions")]
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
            Some(C::ReadOnly) => DbError::ReadOnly(e.to_string()),
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

/// Opens an existing database with its key; never creates one.
pub fn open_connection(path: &Path, key: &Key, source: &KeySource) -> Result<Connection> {
    if !path.exists() {
        return Err(DbError::NoDatabase(path.to_path_buf()));
    }
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
        Err(e) if e.sqlite_error_code() == Some(rusqlite::ErrorCode::CannotOpen) => {
            // The folder cannot be written (a read-only mount, or no write permission):
            // SQLite cannot make the -wal and -shm files it needs even to read.
            if let Some(why) = unwritable_folder(path) {
                return Err(DbError::ReadOnly(format!(
                    "{why}, and marrow writes its -wal and -shm files beside {} even to read it; \
                     copy the study folder somewhere writable",
                    path.display()
                )));
            }
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
    Ok(conn)
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
    if path.exists() {
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
