//! The managed store: a private folder beside the database (`<db>.store/`, mode
//! 0700) holding the de-identified copies, one file per instance (mode 0600) at
//! `<study_uid>/<sop_uid>.dcm`. In a study shared with a group (see
//! [`crate::db::sharing`]) the folders are the group's and setgid (2770), the copies
//! 0640 and the lock file 0660, so every member may import, link and view.
//!
//! A copy is written in full to `.partial/` first and moved under its final name
//! only after the database row that names it has committed. The copies of one write
//! transaction are synced together before it commits ([`Store::sync_files`] on a
//! few threads, then `.partial/` itself once), and the folders they are moved into
//! are synced after the moves. So a final name never holds half a file, a committed
//! row never names a copy that a crash could lose, and on the next start
//! [`Store::recover`] finishes what a killed run left: a partial file whose row
//! committed is moved into place, any other is deleted. One writer at a time holds
//! the store's lock (`.lock`).

use crate::db::sharing::{Sharing, group_name};
use dicom_object::{FileDicomObject, InMemDicomObject};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Folder of the files being written.
const PARTIAL: &str = ".partial";
const LOCK: &str = ".lock";

/// The store folder of a database: `<db>.store`.
pub fn root_for(db: &Path) -> PathBuf {
    let mut s = db.as_os_str().to_owned();
    s.push(".store");
    PathBuf::from(s)
}

/// Says when the image store of a study whose database records images is missing
/// (moved, or not restored with the database): never taken for an empty store.
/// `import dicom` refuses to run then (every file would look already imported),
/// and `status` warns.
pub fn missing(study: &crate::db::Study) -> crate::db::Result<Option<String>> {
    // Images waiting for their patient are counted among the images too.
    let (images, waiting) = crate::db::imaging::counts(study.conn())?;
    let images = images.max(waiting);
    let root = root_for(study.path());
    if images == 0 || root.is_dir() {
        return Ok(None);
    }
    Ok(Some(format!(
        "the image store {} is missing, but the database records {} image(s); \
         restore the folder from the study's backup (it belongs beside {})",
        root.display(),
        images,
        study.path().display()
    )))
}

/// An open store whose write lock this process holds (released on drop).
pub struct Store {
    root: PathBuf,
    sharing: Sharing,
    _lock: File,
}

/// Why the store cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0}")]
    Unusable(String),
    #[error(
        "another marrow is writing to the image store {store} (an import of DICOM files, or the linking of waiting images) and did not finish within {secs}s; wait for it to finish and run this again",
        store = .0.display(),
        secs = crate::db::BUSY_TIMEOUT.as_secs()
    )]
    Busy(PathBuf),
}

impl Store {
    /// Opens (creating it, mode 0700, or 2770 in a study shared with a group) the
    /// store of a database and takes its write lock without waiting: `Busy` when
    /// another process holds it.
    pub fn open_locked(db: &Path) -> Result<Store, StoreError> {
        let root = root_for(db);
        let sharing = Sharing::of_study(db);
        let unusable = |what: &str, e: io::Error| {
            let why = (e.kind() == io::ErrorKind::PermissionDenied)
                .then(|| crate::db::sharing::permission_problem(&root, true))
                .flatten()
                .unwrap_or_else(|| e.to_string());
            StoreError::Unusable(format!("{what} {}: {why}", root.display()))
        };
        sharing
            .make_dir(&root)
            .map_err(|e| unusable("cannot create the image store", e))?;
        let meta = fs::metadata(&root).map_err(|e| unusable("cannot read the image store", e))?;
        let mode = meta.mode() & 0o7777;
        let want = sharing.dir_mode();
        if mode & 0o007 != 0 {
            return Err(StoreError::Unusable(format!(
                "the image store {} is open to every user on this machine (mode {mode:04o}); run `chmod {:o} {}` and try again",
                root.display(),
                want,
                root.display()
            )));
        }
        if let Sharing::Group(gid) = sharing
            && (mode & want != want || meta.gid() != gid)
        {
            // A store made before the study was shared: its owner fixes it on the way.
            sharing.fit_path(&root, want).ok();
            let meta =
                fs::metadata(&root).map_err(|e| unusable("cannot read the image store", e))?;
            if meta.mode() & want != want || meta.gid() != gid {
                let g = group_name(gid);
                return Err(StoreError::Unusable(format!(
                    "the image store {} is not shared with the study's group {g} (group {}, mode {:04o}); its owner runs `chgrp -R {g} {} && chmod 2770 {}` and tries again",
                    root.display(),
                    group_name(meta.gid()),
                    meta.mode() & 0o7777,
                    root.display(),
                    root.display()
                )));
            }
        }
        sharing
            .make_dir(&root.join(PARTIAL))
            .map_err(|e| unusable("cannot create .partial in", e))?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(root.join(LOCK))
            .map_err(|e| unusable("cannot open the lock file of", e))?;
        sharing
            .fit_file(&lock, sharing.shared_file_mode())
            .map_err(|e| unusable("cannot share the lock file of", e))?;
        // SAFETY: flock on a descriptor this function owns.
        let rc = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::WouldBlock {
                return Err(StoreError::Busy(root));
            }
            return Err(unusable("cannot lock", e));
        }
        Ok(Store {
            root,
            sharing,
            _lock: lock,
        })
    }

    /// [`Store::open_locked`], waiting up to `patience` while another process holds
    /// the lock (the linking of waiting images after a patients import takes it for a
    /// moment): `Busy` only when it is still held after that.
    pub fn open_locked_waiting(db: &Path, patience: Duration) -> Result<Store, StoreError> {
        let start = Instant::now();
        loop {
            match Store::open_locked(db) {
                Err(StoreError::Busy(_)) if start.elapsed() < patience => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                other => return other,
            }
        }
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

    /// Writes a whole DICOM file to `path` (a partial path), mode 0600 (0640 in a
    /// group's store: the mode follows the folder it is written in), and starts
    /// its writeback; returns the open file (for [`Store::sync_files`]) and its size.
    /// The file is not durable until it is synced.
    pub fn write_partial(
        path: &Path,
        obj: &FileDicomObject<InMemDicomObject>,
    ) -> io::Result<(File, u64)> {
        let mut w = Self::create_partial(path)?;
        obj.write_all(&mut w)
            .map_err(|e| io::Error::other(e.to_string()))?;
        let file = w.into_inner().map_err(|e| e.into_error())?;
        start_writeback(&file);
        let len = file.metadata()?.len();
        Ok((file, len))
    }

    /// [`Store::write_partial`] of a data set written without its Pixel Data, followed
    /// by the native Pixel Data element `pixels` of the file `source`, whose value is
    /// copied as it stands (in the kernel where the file system allows it): the same
    /// bytes as writing the whole object, without reading the pixels into memory.
    pub fn write_partial_with_pixels(
        path: &Path,
        obj: &FileDicomObject<InMemDicomObject>,
        source: &File,
        pixels: &NativePixels,
    ) -> io::Result<(File, u64)> {
        let mut w = Self::create_partial(path)?;
        obj.write_all(&mut w)
            .map_err(|e| io::Error::other(e.to_string()))?;
        w.write_all(&pixels.element_header())?;
        let mut file = w.into_inner().map_err(|e| e.into_error())?;
        copy_range(source, pixels.value_at, u64::from(pixels.len), &mut file)?;
        start_writeback(&file);
        let len = file.metadata()?.len();
        Ok((file, len))
    }

    fn create_partial(path: &Path) -> io::Result<BufWriter<File>> {
        let _ = fs::remove_file(path);
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)?;
        let sharing = path
            .parent()
            .map(Sharing::of_folder)
            .unwrap_or(Sharing::Private);
        if sharing != Sharing::Private {
            sharing.fit_file(&file, sharing.read_file_mode())?;
        }
        Ok(BufWriter::with_capacity(1 << 20, file))
    }

    /// Makes the data of `files` durable (`fdatasync`), on up to 8 threads at once so
    /// the disk sees them together; the first error is returned.
    pub fn sync_files(files: &[&File]) -> io::Result<()> {
        run_parallel(files, |f| f.sync_data())
    }

    /// Makes the names of the files written into `.partial/` durable.
    pub fn sync_partials(&self) -> io::Result<()> {
        File::open(self.root.join(PARTIAL))?.sync_all()
    }

    /// Moves a partial file under its final name (creating its study folder, 0700;
    /// 2770 in a group's store).
    pub fn publish(&self, partial: &Path, rel: &str) -> io::Result<()> {
        let dest = self.path_of(rel);
        if let Some(dir) = dest.parent() {
            self.sharing.make_dir(dir)?;
        }
        fs::rename(partial, &dest)
    }

    /// Makes the renames of a batch durable: the folders they went into (in
    /// parallel), then the store's own folder, which holds any new study folder.
    pub fn sync_dirs<'a>(&self, rels: impl IntoIterator<Item = &'a str>) {
        let mut dirs = std::collections::BTreeSet::new();
        for rel in rels {
            if let Some(dir) = self.path_of(rel).parent() {
                dirs.insert(dir.to_path_buf());
            }
        }
        let dirs: Vec<PathBuf> = dirs.into_iter().collect();
        let _ = run_parallel(&dirs, |d| File::open(d)?.sync_all());
        if !dirs.is_empty()
            && let Ok(root) = File::open(&self.root)
        {
            let _ = root.sync_all();
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

/// A native Pixel Data element (defined, even length) that ends its file: its value
/// starts at byte `value_at` and is `len` bytes long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NativePixels {
    pub value_at: u64,
    pub len: u32,
    /// The VR letters (OB or OW) in an explicit VR little-endian data set; `None`
    /// in Implicit VR Little Endian.
    pub explicit_vr: Option<[u8; 2]>,
}

impl NativePixels {
    /// The element's header as a little-endian writer puts it.
    fn element_header(&self) -> Vec<u8> {
        let mut h = vec![0xE0, 0x7F, 0x10, 0x00];
        if let Some(vr) = self.explicit_vr {
            h.extend_from_slice(&[vr[0], vr[1], 0, 0]);
        }
        h.extend_from_slice(&self.len.to_le_bytes());
        h
    }
}

/// Runs `f` on every item, on up to 8 threads (I/O waits, not computation); the
/// first error is returned.
fn run_parallel<T: Sync>(items: &[T], f: impl Fn(&T) -> io::Result<()> + Sync) -> io::Result<()> {
    const THREADS: usize = 8;
    if items.len() <= 1 {
        return items.iter().try_for_each(&f);
    }
    let threads = items.len().min(THREADS);
    let f = &f;
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| scope.spawn(move || items.iter().skip(t).step_by(threads).try_for_each(f)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(io::Error::other("a sync thread panicked")))
            })
            .collect::<Vec<_>>()
            .into_iter()
            .collect::<io::Result<()>>()
    })
}

/// Asks the kernel to start writing `file` out now, without waiting, so that the
/// later `fdatasync` finds most of it on its way to the disk.
fn start_writeback(file: &File) {
    #[cfg(target_os = "linux")]
    // SAFETY: a plain system call on a descriptor `file` owns.
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE);
    }
    #[cfg(not(target_os = "linux"))]
    let _ = file;
}

/// Appends `len` bytes of `source` from byte `from` to `dest` (at its position):
/// `copy_file_range` where the kernel has it for these files, else reads and writes.
/// A source shorter than announced is an error.
fn copy_range(source: &File, from: u64, len: u64, dest: &mut File) -> io::Result<()> {
    let mut done = 0u64;
    #[cfg(target_os = "linux")]
    while done < len {
        let mut off_in = (from + done) as libc::loff_t;
        let chunk = (len - done).min(1 << 30) as usize;
        // SAFETY: descriptors owned by `source` and `dest`; `off_in` lives across the call.
        let n = unsafe {
            libc::copy_file_range(
                source.as_raw_fd(),
                &mut off_in,
                dest.as_raw_fd(),
                std::ptr::null_mut(),
                chunk,
                0,
            )
        };
        if n > 0 {
            done += n as u64;
            continue;
        }
        if n == 0 {
            // The end of the source, or a file system that copies nothing this way:
            // the reads below tell which.
            break;
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => continue,
            // Not for these files (another file system, an old kernel): copy below.
            Some(
                libc::EXDEV
                | libc::ENOSYS
                | libc::EINVAL
                | libc::EOPNOTSUPP
                | libc::EPERM
                | libc::EBADF,
            ) if done == 0 => break,
            _ => return Err(e),
        }
    }
    let mut buf = vec![0u8; (len - done).min(1 << 20) as usize];
    while done < len {
        let want = (len - done).min(buf.len() as u64) as usize;
        let n = source.read_at(&mut buf[..want], from + done)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the file ended before its Pixel Data did",
            ));
        }
        dest.write_all(&buf[..n])?;
        done += n as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use dicom_object::OpenFileOptions;

    /// The header written by dicom-rs and the Pixel Data copied as it stands give
    /// the same bytes as dicom-rs writing the whole object.
    #[test]
    fn pixels_copied_in_place_give_the_same_file() {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("dx.dcm");
        let spec = crate::dicom::synth::bench_spec(3, 61, 47, 7);
        crate::dicom::synth::write_radiograph(&source, &spec).unwrap();
        let bytes = fs::read(&source).unwrap();
        let pixels = crate::dicom::decode::native_pixels(&bytes, bytes.len() as u64)
            .expect("native Pixel Data at the end of the file");
        assert_eq!(pixels.value_at + u64::from(pixels.len), bytes.len() as u64);

        let whole = OpenFileOptions::new().open_file(&source).unwrap();
        let (_, n) = Store::write_partial(&dir.path().join("a"), &whole).unwrap();
        let header = OpenFileOptions::new()
            .read_until(dicom_dictionary_std::tags::PIXEL_DATA)
            .open_file(&source)
            .unwrap();
        let file = File::open(&source).unwrap();
        let b = dir.path().join("b");
        let (_, m) = Store::write_partial_with_pixels(&b, &header, &file, &pixels).unwrap();
        assert_eq!(n, m);
        assert_eq!(
            fs::read(dir.path().join("a")).unwrap(),
            fs::read(&b).unwrap()
        );
        // A source shorter than its Pixel Data claims is an error, not a short copy.
        let short = NativePixels {
            len: pixels.len + 2,
            ..pixels
        };
        let e = Store::write_partial_with_pixels(&dir.path().join("c"), &header, &file, &short)
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
    }
}
