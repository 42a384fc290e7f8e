//! Who may use a study's files.
//!
//! By default only the user who created the study: the database (and SQLite's `-wal`
//! and `-shm` beside it), the key file, the log, the image store's lock and every
//! stored copy are 0600, the image store and its folders 0700.
//!
//! A study set up for a Unix group of study staff (`marrow init --group NAME`) is
//! shared with that group and with nobody else: the folder holding the database and
//! the image store's folders are 2770 (setgid: a file created in them belongs to the
//! group whoever creates it), the files several members write (database, `-wal`,
//! `-shm`, log, lock file) 0660, the files written once and then only read (key file,
//! stored copies) 0640.
//!
//! The database file says which: a study is shared when its database is group
//! read-write, and its group is the study's group. Files created later follow it.
//! SQLite creates `-wal` and `-shm` with the database's mode, past the umask (it
//! `fchmod`s a new file to the database's permissions); marrow sets the mode and group
//! of the files it creates itself right after creating them. So the umask of whoever
//! opens the study first never matters, and the umask itself is never changed (it is
//! per process, and the TUI runs threads).

use std::ffi::{CStr, CString};
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

/// Who may use a study's files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sharing {
    /// Only the owner (0600 files, 0700 folders).
    Private,
    /// The owner and the members of this group (by gid).
    Group(u32),
}

/// Whether a folder's mode and group make it a study group's folder: setgid and
/// group read-write-search.
fn is_group_folder(m: &fs::Metadata) -> bool {
    m.mode() & 0o2070 == 0o2070
}

/// The folder holding `db` ("." for a bare file name).
pub fn db_folder(db: &Path) -> PathBuf {
    match db.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

impl Sharing {
    /// The sharing of a study, read from its database file (group read-write: shared
    /// with the file's group). A database not created yet follows its folder: a
    /// setgid, group read-write folder is a study group's.
    pub fn of_study(db: &Path) -> Sharing {
        match fs::metadata(db) {
            Ok(m) if m.mode() & 0o060 == 0o060 => Sharing::Group(m.gid()),
            Ok(_) => Sharing::Private,
            Err(_) => Sharing::of_folder(&db_folder(db)),
        }
    }

    /// The sharing of a folder marrow made (a store folder): setgid and group
    /// read-write-search is a group's.
    pub fn of_folder(dir: &Path) -> Sharing {
        match fs::metadata(dir) {
            Ok(m) if is_group_folder(&m) => Sharing::Group(m.gid()),
            _ => Sharing::Private,
        }
    }

    pub fn gid(self) -> Option<u32> {
        match self {
            Sharing::Private => None,
            Sharing::Group(g) => Some(g),
        }
    }

    /// Mode of the files every member writes: database, log, lock file.
    pub fn shared_file_mode(self) -> u32 {
        match self {
            Sharing::Private => 0o600,
            Sharing::Group(_) => 0o660,
        }
    }

    /// Mode of the files written once and read by every member: key file, stored copies.
    pub fn read_file_mode(self) -> u32 {
        match self {
            Sharing::Private => 0o600,
            Sharing::Group(_) => 0o640,
        }
    }

    /// Mode of the folders marrow makes (the image store and its folders).
    pub fn dir_mode(self) -> u32 {
        match self {
            Sharing::Private => 0o700,
            Sharing::Group(_) => 0o2770,
        }
    }

    /// Gives an open file (one this process created) `mode` and the group, past the
    /// umask. A file of another member is left as it is (only its owner could change it).
    pub fn fit_file(self, file: &File, mode: u32) -> io::Result<()> {
        let m = file.metadata()?;
        // SAFETY: plain system calls.
        if m.uid() != unsafe { libc::geteuid() } {
            return Ok(());
        }
        if let Sharing::Group(gid) = self
            && m.gid() != gid
        {
            // SAFETY: fchown on a descriptor `file` owns; -1 keeps the owner.
            if unsafe { libc::fchown(file.as_raw_fd(), u32::MAX, gid) } != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        if m.mode() & 0o7777 != mode {
            file.set_permissions(fs::Permissions::from_mode(mode))?;
        }
        Ok(())
    }

    /// [`Sharing::fit_file`] by path (a file or folder this user owns; others' are
    /// left alone). Symbolic links are not followed.
    pub fn fit_path(self, path: &Path, mode: u32) -> io::Result<()> {
        let m = fs::symlink_metadata(path)?;
        // SAFETY: plain system calls.
        if m.uid() != unsafe { libc::geteuid() } || m.file_type().is_symlink() {
            return Ok(());
        }
        if let Sharing::Group(gid) = self
            && m.gid() != gid
        {
            let c = cpath(path)?;
            // SAFETY: a NUL-terminated path; -1 keeps the owner.
            if unsafe { libc::lchown(c.as_ptr(), u32::MAX, gid) } != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        // The group first: a chown may clear the setgid bit, the chmod sets it.
        if m.mode() & 0o7777 != mode {
            fs::set_permissions(path, fs::Permissions::from_mode(mode))?;
        }
        Ok(())
    }

    /// Creates a folder with [`Sharing::dir_mode`] (and the group), or accepts one that
    /// exists.
    pub fn make_dir(self, path: &Path) -> io::Result<()> {
        match fs::DirBuilder::new().mode(0o700).create(path) {
            Ok(()) => self.fit_path(path, self.dir_mode()),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && path.is_dir() => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Opens (creating it with this sharing's mode) a file every member appends to: the log.
    pub fn open_append(self, path: &Path) -> io::Result<File> {
        let f = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)?;
        self.fit_file(&f, self.shared_file_mode())?;
        Ok(f)
    }
}

fn cpath(path: &Path) -> io::Result<CString> {
    use std::os::unix::ffi::OsStrExt;
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a path with a NUL byte"))
}

/// The gid of a group name.
pub fn group_id(name: &str) -> Option<u32> {
    let c = CString::new(name).ok()?;
    let mut buf = vec![0 as libc::c_char; 16384];
    // SAFETY: getgrnam_r writes into buffers we own; the result pointer is checked.
    unsafe {
        let mut grp: libc::group = std::mem::zeroed();
        let mut out: *mut libc::group = std::ptr::null_mut();
        let rc = libc::getgrnam_r(c.as_ptr(), &mut grp, buf.as_mut_ptr(), buf.len(), &mut out);
        (rc == 0 && !out.is_null()).then_some(grp.gr_gid)
    }
}

/// The name of a group (its number when it has none).
pub fn group_name(gid: u32) -> String {
    let mut buf = vec![0 as libc::c_char; 16384];
    // SAFETY: getgrgid_r writes into buffers we own; the pointers are checked.
    unsafe {
        let mut grp: libc::group = std::mem::zeroed();
        let mut out: *mut libc::group = std::ptr::null_mut();
        let rc = libc::getgrgid_r(gid, &mut grp, buf.as_mut_ptr(), buf.len(), &mut out);
        if rc == 0 && !out.is_null() && !grp.gr_name.is_null() {
            return CStr::from_ptr(grp.gr_name).to_string_lossy().into_owned();
        }
    }
    gid.to_string()
}

/// The name of a user (their number when they have none).
pub fn user_name(uid: u32) -> String {
    let mut buf = vec![0 as libc::c_char; 16384];
    // SAFETY: getpwuid_r writes into buffers we own; the pointers are checked.
    unsafe {
        let mut pwd: libc::passwd = std::mem::zeroed();
        let mut out: *mut libc::passwd = std::ptr::null_mut();
        let rc = libc::getpwuid_r(uid, &mut pwd, buf.as_mut_ptr(), buf.len(), &mut out);
        if rc == 0 && !out.is_null() && !pwd.pw_name.is_null() {
            return CStr::from_ptr(pwd.pw_name).to_string_lossy().into_owned();
        }
    }
    uid.to_string()
}

/// Whether this process acts with the rights of group `gid` (root always does).
pub fn in_group(gid: u32) -> bool {
    // SAFETY: plain system calls; getgroups fills a buffer of the size it was asked.
    unsafe {
        if libc::geteuid() == 0 || libc::getegid() == gid {
            return true;
        }
        let n = libc::getgroups(0, std::ptr::null_mut());
        if n <= 0 {
            return false;
        }
        let mut groups = vec![0 as libc::gid_t; n as usize];
        let n = libc::getgroups(n, groups.as_mut_ptr());
        n > 0 && groups[..n as usize].contains(&gid)
    }
}

pub(crate) fn describe(m: &fs::Metadata) -> String {
    format!(
        "owner {}, group {}, mode {:04o}",
        user_name(m.uid()),
        group_name(m.gid()),
        m.mode() & 0o7777
    )
}

fn may(path: &Path, what: libc::c_int) -> bool {
    // SAFETY: a NUL-terminated path.
    cpath(path).is_ok_and(|c| unsafe { libc::access(c.as_ptr(), what) } == 0)
}

/// Why this user may not use `path` (a study file), in words, when permissions are
/// the reason: the folder on the way that they may not enter, or the file itself
/// they may not read and write; with what to ask for. `None` when permissions are
/// not what stops them (the file is missing, or usable).
pub fn permission_problem(path: &Path, write: bool) -> Option<String> {
    // SAFETY: a plain system call.
    let me = user_name(unsafe { libc::getuid() });
    let hint = |m: &fs::Metadata| {
        if m.mode() & 0o070 != 0 {
            let g = group_name(m.gid());
            format!(
                "it belongs to the study group {g}, and you ({me}) are not in it: ask the system administrator to add you (`usermod -aG {g} {me}`), then log in again"
            )
        } else {
            format!(
                "it is private to {}: ask them to set the study up for a group (see \"Shared server\" in the README)",
                user_name(m.uid())
            )
        }
    };
    let abs = std::path::absolute(path).ok()?;
    let mut dirs: Vec<&Path> = abs.ancestors().skip(1).collect();
    dirs.reverse();
    for dir in dirs {
        if !may(dir, libc::X_OK) {
            let m = fs::metadata(dir).ok()?;
            return Some(format!(
                "permission denied: {} is in the folder {} ({}), which you may not enter; {}",
                path.display(),
                dir.display(),
                describe(&m),
                hint(&m)
            ));
        }
    }
    let m = fs::metadata(path).ok()?;
    let want = if write {
        libc::R_OK | libc::W_OK
    } else {
        libc::R_OK
    };
    if may(path, want) {
        return None;
    }
    Some(format!(
        "permission denied: you may not {} {} ({}); {}",
        if write { "read and write" } else { "read" },
        path.display(),
        describe(&m),
        hint(&m)
    ))
}

/// Prepares the folder of a new study for group `name` (`marrow init --group`):
/// checks the group exists and this user is in it, and makes the folder the group's
/// (setgid, 2770) when this user owns it and it holds nothing but this study's files
/// (`<db>.log`, `<db>.key`); a folder already the
/// group's is accepted as it is. Returns the sharing and what was changed, if anything.
pub fn prepare_group_folder(db: &Path, name: &str) -> Result<(Sharing, Option<String>), String> {
    // SAFETY: a plain system call.
    let me = user_name(unsafe { libc::getuid() });
    let gid = group_id(name).ok_or_else(|| {
        format!(
            "there is no group {name} on this machine: the system administrator creates it (`groupadd {name}`) and adds the study staff (`usermod -aG {name} USER`)"
        )
    })?;
    if !in_group(gid) {
        return Err(format!(
            "you ({me}) are not in the group {name}: ask the system administrator to add you (`usermod -aG {name} {me}`), then log in again"
        ));
    }
    let dir = db_folder(db);
    let m =
        fs::metadata(&dir).map_err(|e| format!("cannot use the folder {}: {e}", dir.display()))?;
    let fix = format!(
        "keep the study in a folder of its own that belongs to the group: `mkdir -m 2770 DIR && chgrp {name} DIR` (or for this folder `chgrp {name} {d} && chmod 2770 {d}`)",
        d = dir.display()
    );
    if m.mode() & 0o002 != 0 {
        return Err(format!(
            "the folder {} may be written by every user on this machine ({}); {fix}",
            dir.display(),
            describe(&m)
        ));
    }
    if is_group_folder(&m) && m.gid() == gid {
        return Ok((Sharing::Group(gid), None));
    }
    // SAFETY: a plain system call.
    let mine = m.uid() == unsafe { libc::geteuid() };
    // Empty but for this study's own files (the log of this very command, a key file).
    let own = db.file_name().map(|n| n.to_string_lossy().into_owned());
    let empty = fs::read_dir(&dir).is_ok_and(|d| {
        d.filter_map(|e| e.ok()).all(|e| {
            own.as_deref()
                .is_some_and(|own| e.file_name().to_string_lossy().starts_with(own))
        })
    });
    if !(mine && empty) {
        return Err(format!(
            "the folder {} ({}) is not the group {name}'s: every file SQLite creates beside the database must belong to the group; {fix}",
            dir.display(),
            describe(&m)
        ));
    }
    let sharing = Sharing::Group(gid);
    sharing.fit_path(&dir, 0o2770).map_err(|e| {
        format!(
            "cannot give the folder {} to group {name}: {e}",
            dir.display()
        )
    })?;
    Ok((
        sharing,
        Some(format!(
            "{} now belongs to group {name} (mode 2770)",
            dir.display()
        )),
    ))
}

/// Shares a study just created with its group: the database and the log 0660, the key
/// file 0640 (when this user owns it), all of the group.
pub fn share_new_study(db: &Path, key_file: Option<&Path>, sharing: Sharing) -> io::Result<()> {
    for suffix in ["", "-wal", "-shm", ".log"] {
        let mut s = db.as_os_str().to_owned();
        s.push(suffix);
        let f = PathBuf::from(s);
        if f.exists() {
            sharing.fit_path(&f, sharing.shared_file_mode())?;
        }
    }
    if let Some(k) = key_file {
        sharing.fit_path(k, sharing.read_file_mode())?;
    }
    Ok(())
}

/// After opening a shared study: `-wal` and `-shm` this user created belong to the
/// group even where the folder is not setgid (a folder set up by hand), so the next
/// member can open them. SQLite has given them the database's mode already.
/// In a study shared with a group, makes the -wal and -shm files (empty, with
/// the group's mode) before SQLite would: SQLite creates them with the
/// database's mode less this process's umask (0600 under umask 077) and they
/// are widened only after the open, so a member opening in between was refused.
/// Files that exist are left as they are. Returns whether the study is shared.
pub fn prepare_wal_files(db: &Path) -> bool {
    let sharing = Sharing::of_study(db);
    let Sharing::Group(_) = sharing else {
        return false;
    };
    for suffix in ["-wal", "-shm"] {
        let mut s = db.as_os_str().to_owned();
        s.push(suffix);
        let p = PathBuf::from(s);
        match fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(sharing.shared_file_mode())
            .custom_flags(libc::O_NOFOLLOW)
            .open(&p)
        {
            Ok(file) => {
                if let Err(e) = sharing.fit_file(&file, sharing.shared_file_mode()) {
                    tracing::warn!("cannot give {} to the study group: {e}", p.display());
                }
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => tracing::warn!("cannot make {} for the study group: {e}", p.display()),
        }
    }
    true
}

/// Gives `-wal` and `-shm` files this user owns the database file's mode (read
/// and write bits) before SQLite opens them: SQLite makes them with the database's
/// mode, so one open of a database at 0400 left them 0400, and after `chmod 600` of
/// the database SQLite opened the `-shm` read-only and refused every write.
pub fn fit_sidecar_modes(db: &Path) {
    let Ok(m) = fs::metadata(db) else {
        return;
    };
    let mode = m.mode() & 0o777;
    // SAFETY: a plain system call.
    let me = unsafe { libc::geteuid() };
    for suffix in ["-wal", "-shm"] {
        let mut s = db.as_os_str().to_owned();
        s.push(suffix);
        let p = PathBuf::from(s);
        let Ok(sm) = fs::symlink_metadata(&p) else {
            continue;
        };
        if !sm.is_file() || sm.uid() != me || sm.mode() & 0o777 == mode {
            continue;
        }
        let keep = sm.mode() & 0o7000;
        if let Err(e) = fs::set_permissions(&p, fs::Permissions::from_mode(keep | mode)) {
            tracing::warn!(
                "cannot give {} the mode of {}: {e}",
                p.display(),
                db.display()
            );
        }
    }
}

pub fn fit_wal_files(db: &Path) {
    let sharing = Sharing::of_study(db);
    let Sharing::Group(gid) = sharing else {
        return;
    };
    if Sharing::of_folder(&db_folder(db)) != sharing {
        tracing::warn!(
            "the folder of {} is not setgid with group {}: files created in it may not belong to the study group (chgrp {} FOLDER && chmod 2770 FOLDER)",
            db.display(),
            group_name(gid),
            group_name(gid)
        );
    }
    for suffix in ["-wal", "-shm"] {
        let mut s = db.as_os_str().to_owned();
        s.push(suffix);
        let p = PathBuf::from(s);
        if p.exists()
            && let Err(e) = sharing.fit_path(&p, sharing.shared_file_mode())
        {
            tracing::warn!("cannot give {} to the study group: {e}", p.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_private_study_makes_private_files_and_a_group_folder_shares_them() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("s.db");
        assert_eq!(Sharing::of_study(&db), Sharing::Private);
        fs::write(&db, b"x").unwrap();
        fs::set_permissions(&db, fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(Sharing::of_study(&db), Sharing::Private);
        // SAFETY: a plain system call.
        let gid = unsafe { libc::getegid() };
        fs::set_permissions(&db, fs::Permissions::from_mode(0o660)).unwrap();
        assert_eq!(Sharing::of_study(&db), Sharing::Group(gid));

        let store = dir.path().join("store");
        Sharing::Private.make_dir(&store).unwrap();
        let mode = fs::metadata(&store).unwrap().mode() & 0o7777;
        assert_eq!(mode, 0o700);
        let shared = dir.path().join("shared");
        Sharing::Group(gid).make_dir(&shared).unwrap();
        let mode = fs::metadata(&shared).unwrap().mode() & 0o7777;
        assert_eq!(mode, 0o2770);
        assert_eq!(Sharing::of_folder(&shared), Sharing::Group(gid));
        // The umask does not decide: 0660 is set on the file after it is made.
        let log = Sharing::Group(gid)
            .open_append(&shared.join("x.log"))
            .unwrap();
        assert_eq!(log.metadata().unwrap().mode() & 0o777, 0o660);
    }

    #[test]
    fn init_with_a_group_refuses_a_folder_with_other_things_in_it() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("notes.txt"), b"x").unwrap();
        // SAFETY: a plain system call.
        let group = group_name(unsafe { libc::getegid() });
        let e = prepare_group_folder(&dir.path().join("s.db"), &group).unwrap_err();
        assert!(e.contains("mkdir -m 2770"), "{e}");
        let e = prepare_group_folder(&dir.path().join("s.db"), "no-such-group-xyz").unwrap_err();
        assert!(e.contains("groupadd no-such-group-xyz"), "{e}");
        // an empty folder of this user is made the group's
        let empty = dir.path().join("study");
        fs::create_dir(&empty).unwrap();
        let (s, note) = prepare_group_folder(&empty.join("s.db"), &group).unwrap();
        assert!(matches!(s, Sharing::Group(_)));
        assert!(note.is_some());
        assert_eq!(fs::metadata(&empty).unwrap().mode() & 0o7777, 0o2770);
    }
}
