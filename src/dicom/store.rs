//! The managed store: a private folder beside the database (`<db>.store/`, mode
//! 0700) holding the de-identified copies, one file per instance (mode 0600) at
//! `<study_uid>/<sop_uid>.dcm`.
//!
//! A copy is written in full to `.partial/` first, synced, and moved under its final
//! name only after the database row that names it has committed. So a final name
//! never holds half a file, and on the next start [`Store::recover`] finishes what a
//! killed run left: a partial file whose row committed is moved into place, any
//! other is deleted. One writer at a time holds the store's lock (`.lock`).

use dicom_object::{FileDicomObject, InMemDicomObject};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

/// Folder of the files being written.
const PARTIAL: &str = ".partial";
const LOCK: &str = ".lock";

/// The store folder of a database: `<db>.store`.
pub fn root_for(db: &Path) -> PathBuf {
    let mut s = db.as_os_str().to_owned();
    s.push(".store");
    PathBuf::from(s)
}

/// An open store whose write lock this process holds (released on drop).
pub struct Store {
    root: PathBuf,
    _lock: File,
}

/// Why the store cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0}")]
    Unusable(String),
    #[error(
        "another marrow is writing to the image store {0} (an import of DICOM files, or the linking of waiting images); wait for it to finish and run this again"
    )]
    Busy(PathBuf),
}

fn private_dir(path: &Path) -> io::Result<()> {
    match fs::DirBuilder::new().mode(0o700).create(path) {
        Ok(()) => fs::set_permissions(path, fs::Permissions::from_mode(0o700)),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && path.is_dir() => Ok(()),
        Err(e) => Err(e),
    }
}

impl Store {
    /// Opens (creating it, mode 0700) the store of a database and takes its write
    /// lock without waiting: `Busy` when another process holds it.
    pub fn open_locked(db: &Path) -> Result<Store, StoreError> {
        let root = root_for(db);
        let unusable = |what: &str, e: io::Error| {
            StoreError::Unusable(format!("{what} {}: {e}", root.display()))
        };
        private_dir(&root).map_err(|e| unusable("cannot create the image store", e))?;
        let mode = fs::metadata(&root)
            .map_err(|e| unusable("cannot read the image store", e))?
            .permissions()
            .mode()
            & 0o777;
        if mode & 0o007 != 0 {
            return Err(StoreError::Unusable(format!(
                "the image store {} is open to every user on this machine (mode {mode:04o}); run `chmod 700 {}` and try again",
                root.display(),
                root.display()
            )));
        }
        private_dir(&root.join(PARTIAL)).map_err(|e| unusable("cannot create .partial in", e))?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(root.join(LOCK))
            .map_err(|e| unusable("cannot open the lock file of", e))?;
        // SAFETY: flock on a descriptor this function owns.
        let rc = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::WouldBlock {
                return Err(StoreError::Busy(root));
            }
            return Err(unusable("cannot lock", e));
        }
        Ok(Store { root, _lock: lock })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where a stored instance lives: `rel` is `<study_uid>/<sop_uid>.dcm`.
    pub fn path_of(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    /// The store path of an instance.
    pub fn relative_path(study_uid: &str, sop_uid: &str) -> String {
        format!("{study_uid}/{sop_uid}.dcm")
    }

    /// The partial file of a new instance (one writer per instance: an import claims
    /// each original instance once).
    pub fn partial_new(&self, sop_uid: &str) -> PathBuf {
        self.root.join(PARTIAL).join(format!("{sop_uid}~new"))
    }

    /// The partial file of a stored instance being rewritten (when it is linked).
    pub fn partial_rewrite(&self, sop_uid: &str) -> PathBuf {
        self.root.join(PARTIAL).join(format!("{sop_uid}~link"))
    }

    /// Writes a whole DICOM file to `path` (a partial path), mode 0600, synced to
    /// disk; returns its size.
    pub fn write_partial(path: &Path, obj: &FileDicomObject<InMemDicomObject>) -> io::Result<u64> {
        let _ = fs::remove_file(path);
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)?;
        let mut w = BufWriter::with_capacity(1 << 20, file);
        obj.write_all(&mut w)
            .map_err(|e| io::Error::other(e.to_string()))?;
        let file = w.into_inner().map_err(|e| e.into_error())?;
        file.sync_data()?;
        Ok(file.metadata()?.len())
    }

    /// Moves a partial file under its final name (creating its study folder, 0700).
    pub fn publish(&self, partial: &Path, rel: &str) -> io::Result<()> {
        let dest = self.path_of(rel);
        if let Some(dir) = dest.parent() {
            private_dir(dir)?;
        }
        fs::rename(partial, &dest)
    }

    /// Makes the renames of a batch durable.
    pub fn sync_dirs<'a>(&self, rels: impl IntoIterator<Item = &'a str>) {
        let mut done = std::collections::BTreeSet::new();
        for rel in rels {
            if let Some(dir) = self.path_of(rel).parent()
                && done.insert(dir.to_path_buf())
                && let Ok(d) = File::open(dir)
            {
                let _ = d.sync_all();
            }
        }
    }

    /// Finishes what a killed run left in `.partial/`: the copy of a new instance
    /// whose row committed (`recorded` gives its store path) but which is missing
    /// from its place is moved there (it was written and synced in full before the
    /// row was inserted); every other partial file is deleted, including a rewrite
    /// cut short (the stored copy it was replacing is still whole). Returns
    /// (moved, deleted).
    pub fn recover(
        &self,
        mut recorded: impl FnMut(&str) -> Option<String>,
    ) -> io::Result<(u64, u64)> {
        let mut moved = 0;
        let mut deleted = 0;
        for entry in fs::read_dir(self.root.join(PARTIAL))? {
            let entry = entry?;
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            let (sop, kind) = name.split_once('~').unwrap_or((&name, ""));
            match (kind == "new").then(|| recorded(sop)).flatten() {
                Some(rel) if !self.path_of(&rel).exists() => {
                    self.publish(&path, &rel)?;
                    moved += 1;
                }
                _ => {
                    fs::remove_file(&path)?;
                    deleted += 1;
                }
            }
        }
        Ok((moved, deleted))
    }
}
