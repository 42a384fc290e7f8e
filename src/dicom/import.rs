//! `marrow import dicom DIR...`: walks folders (symbolic links are not followed),
//! reads and de-identifies the instances on every core, and records them on one
//! writer thread.
//!
//! Each instance is linked to its patient by the keyed hash of its PatientID (the
//! hash of `import patients`' MRN), or waits in quarantine until that patient is
//! imported. Its de-identified copy goes into the managed store ([`Store`]); the
//! original is only read. An instance already imported (same original SOP Instance
//! UID) is skipped, so a re-run after a kill finishes the rest: rows commit before
//! their files take their final names, and the next run's [`Store::recover`] moves
//! in what a kill left behind.

use super::deid::{self, QUARANTINE_LABEL, UidMapper};
use super::store::{NativePixels, Store, StoreError};
use crate::db::imaging::{self, Added, HashedPatient, ImageRecord, NewImage, PendingLink};
use crate::db::keys::IdentifierHasher;
use crate::db::{DbError, Study};
use dicom_core::Tag;
use dicom_object::{FileDicomObject, InMemDicomObject, OpenFileOptions};
use rayon::prelude::*;
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::mpsc;

/// Instances per write transaction (fewer when the readers fall behind).
const BATCH: usize = 256;

const SOP_INSTANCE_UID: Tag = Tag(0x0008, 0x0018);
const PATIENT_ID: Tag = Tag(0x0010, 0x0020);
const ISSUER_OF_PATIENT_ID: Tag = Tag(0x0010, 0x0021);
const STUDY_INSTANCE_UID: Tag = Tag(0x0020, 0x000D);
const SERIES_INSTANCE_UID: Tag = Tag(0x0020, 0x000E);
const PIXEL_DATA: Tag = Tag(0x7FE0, 0x0010);
const FLOAT_PIXEL_DATA: Tag = Tag(0x7FE0, 0x0008);
const DOUBLE_PIXEL_DATA: Tag = Tag(0x7FE0, 0x0009);

/// A file that was not imported, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Refusal {
    pub path: PathBuf,
    pub reason: String,
}

/// What an import did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DicomReport {
    /// Regular files found under the folders.
    pub files: u64,
    /// Instances recorded by this run (linked or quarantined).
    pub imported: u64,
    /// Of those, the ones waiting for their patient.
    pub quarantined: u64,
    /// Instances that were already in the study (or a second, identical copy in this
    /// run), whole: a copy cut short is refused as malformed, a whole copy with other
    /// content as a conflict.
    pub skipped: u64,
    /// Files put in quarantine that will not link on their own, and why (a PatientID
    /// that matches patients at two sites, an issuer naming no study site).
    pub held: Vec<Refusal>,
    /// Files that are not DICOM images, or are malformed.
    pub refused: Vec<Refusal>,
    /// Symbolic links seen and not followed.
    pub links_not_followed: u64,
    /// Bytes read from the input files.
    pub bytes: u64,
    /// Instances that waited in quarantine and are now linked to their patient.
    pub linked_from_quarantine: u64,
    /// Instances still waiting for their patient after this run (all runs).
    pub waiting: u64,
    /// Copies a killed run left half-done: (moved into place, deleted).
    pub recovered: (u64, u64),
}

/// Where an import stands, for a progress bar.
#[derive(Debug, Clone, Copy, Default)]
pub struct Progress {
    pub files_done: u64,
    pub files_total: u64,
    pub bytes_done: u64,
    pub bytes_total: u64,
}

/// Why an import could not run (or had to stop).
#[derive(Debug, thiserror::Error)]
pub enum DicomError {
    #[error("{0}")]
    Input(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("image store: {0}")]
    StoreIo(String),
    #[error(transparent)]
    Database(#[from] DbError),
}

/// What happened to one file on a reader thread.
enum Prepared {
    Skipped,
    /// Already imported and waiting in quarantine without a site, which this run
    /// knows: (keyed original UID hash, site).
    SiteFor(String, String),
    Refused(String),
    Ready(Box<Ready>),
    /// The store cannot be written: the import stops.
    Fatal(String),
}

struct Ready {
    image: NewImage,
    /// The file it was read from.
    source: PathBuf,
    partial: PathBuf,
    /// The partial file, written but not yet synced.
    file: File,
}

struct Readers<'a> {
    store: &'a Store,
    uids: &'a UidMapper,
    hasher: &'a IdentifierHasher,
    imported: &'a HashSet<[u8; 32]>,
    /// Of those, the ones waiting in quarantine without a known site.
    unsited: &'a HashSet<[u8; 32]>,
    patients: &'a HashMap<[u8; 32], Vec<HashedPatient>>,
    /// The protocol's sites, which IssuerOfPatientID is matched against.
    sites: &'a [String],
    /// The site that sent the files (`--site`), for instances without an issuer.
    sending_site: Option<&'a str>,
    /// Original instances claimed by a reader in this run, with the file that
    /// claimed it: one copy each (a whole one; others are compared with it).
    claimed: Mutex<HashMap<[u8; 32], PathBuf>>,
}

/// How an instance links to its patient.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Link {
    /// (patients.id, study ID).
    Patient(i64, String),
    /// Quarantine: for the site given (if known), held for the reason given (if any).
    Wait {
        site: Option<String>,
        hold: Option<String>,
    },
}

/// The study site an IssuerOfPatientID names: the one it equals or contains
/// (case-insensitive); none when it names no site, or several.
pub fn issuer_site(issuer: &str, sites: &[String]) -> Option<String> {
    let up = issuer.trim().to_ascii_uppercase();
    if let Some(s) = sites.iter().find(|s| **s == up) {
        return Some(s.clone());
    }
    let mut hits = sites.iter().filter(|s| up.contains(s.as_str()));
    match (hits.next(), hits.next()) {
        (Some(one), None) => Some(one.clone()),
        _ => None,
    }
}

/// Links an instance: by PatientID (its hash's `candidates`, one per site) at the
/// site its IssuerOfPatientID names, else at the sending site, else to the only
/// patient with that PatientID. Anything else waits in quarantine, with a reason
/// when a later patients import will not settle it.
fn link_for(
    candidates: &[HashedPatient],
    issuer: Option<&str>,
    sending_site: Option<&str>,
    sites: &[String],
) -> Link {
    let site = match issuer.map(str::trim).filter(|i| !i.is_empty()) {
        Some(i) => match issuer_site(i, sites) {
            Some(site) => Some(site),
            None => {
                return Link::Wait {
                    site: None,
                    hold: Some(format!(
                        "its IssuerOfPatientID (0010,0021) names none of the study sites ({}), so its PatientID may be another hospital's",
                        sites.join(", ")
                    )),
                };
            }
        },
        None => sending_site.map(str::to_string),
    };
    match site {
        Some(site) => match candidates.iter().find(|p| p.site == site) {
            Some(p) => Link::Patient(p.id, p.study_id.clone()),
            None => Link::Wait {
                site: Some(site),
                hold: None,
            },
        },
        None => match candidates {
            [] => Link::Wait {
                site: None,
                hold: None,
            },
            [p] => Link::Patient(p.id, p.study_id.clone()),
            all => {
                let each: Vec<(String, String)> = all
                    .iter()
                    .map(|p| (p.study_id.clone(), p.site.clone()))
                    .collect();
                Link::Wait {
                    site: None,
                    hold: Some(format!(
                        "PatientID matches patients at {} sites ({}); it has no IssuerOfPatientID: import it with --site SITE",
                        if all.len() == 2 {
                            "two".to_string()
                        } else {
                            all.len().to_string()
                        },
                        crate::db::study::describe_sites(&each)
                    )),
                }
            }
        },
    }
}

/// Whether two files hold the same bytes.
fn same_bytes(a: &Path, b: &Path) -> std::io::Result<bool> {
    use std::io::Read;
    if std::fs::metadata(a)?.len() != std::fs::metadata(b)?.len() {
        return Ok(false);
    }
    let (mut fa, mut fb) = (
        BufReader::new(File::open(a)?),
        BufReader::new(File::open(b)?),
    );
    let (mut ba, mut bb) = (vec![0u8; 64 * 1024], vec![0u8; 64 * 1024]);
    loop {
        let n = fa.read(&mut ba)?;
        if n == 0 {
            return Ok(fb.read(&mut bb[..1])? == 0);
        }
        fb.read_exact(&mut bb[..n])?;
        if ba[..n] != bb[..n] {
            return Ok(false);
        }
    }
}

/// A reading error in words: its chain of causes, and a plain hint for a file that
/// ends early.
fn malformed(e: &dyn std::error::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut truncated = false;
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if parts.last() != Some(&text) {
            parts.push(text);
        }
        if c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::UnexpectedEof)
        {
            truncated = true;
        }
        cause = c.source();
    }
    let chain = parts.join(": ");
    if truncated {
        format!("malformed DICOM: the file ends early (cut short?): {chain}")
    } else {
        format!("malformed DICOM: {chain}")
    }
}

fn hash32(hex_text: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    let _ = hex::decode_to_slice(hex_text, &mut out);
    out
}

fn int(obj: &InMemDicomObject, tag: Tag) -> Option<i64> {
    obj.get(tag)?.to_int::<i64>().ok()
}

fn dicom_date(s: Option<String>) -> Option<String> {
    let s = s?;
    let d = s.trim();
    (d.len() == 8 && d.bytes().all(|b| b.is_ascii_digit()))
        .then(|| format!("{}-{}-{}", &d[..4], &d[4..6], &d[6..]))
}

/// The stored description of a de-identified instance.
pub fn describe(
    obj: &FileDicomObject<InMemDicomObject>,
    store_path: String,
    bytes: i64,
    review_reason: Option<String>,
) -> ImageRecord {
    let t = |g, e| deid::text(obj, Tag(g, e));
    let spacing = [Tag(0x0028, 0x0030), Tag(0x0018, 0x1164)]
        .into_iter()
        .find_map(|tag| {
            let v = obj.get(tag)?.to_multi_float64().ok()?;
            (v.len() >= 2).then(|| (v[0], v[1]))
        });
    ImageRecord {
        sop_uid: t(0x0008, 0x0018).unwrap_or_default(),
        study_uid: t(0x0020, 0x000D).unwrap_or_default(),
        series_uid: t(0x0020, 0x000E).unwrap_or_default(),
        sop_class_uid: t(0x0008, 0x0016),
        modality: t(0x0008, 0x0060),
        body_part: t(0x0018, 0x0015),
        laterality: t(0x0020, 0x0062).or_else(|| t(0x0020, 0x0060)),
        view_position: t(0x0018, 0x5101),
        study_date: dicom_date(t(0x0008, 0x0020)),
        series_number: int(obj, Tag(0x0020, 0x0011)),
        rows: int(obj, Tag(0x0028, 0x0010)),
        columns: int(obj, Tag(0x0028, 0x0011)),
        bits_allocated: int(obj, Tag(0x0028, 0x0100)),
        bits_stored: int(obj, Tag(0x0028, 0x0101)),
        photometric: t(0x0028, 0x0004),
        transfer_syntax: obj
            .meta()
            .transfer_syntax()
            .trim_end_matches(['\0', ' '])
            .to_string(),
        pixel_spacing: spacing,
        frames: int(obj, Tag(0x0028, 0x0008)).unwrap_or(1).max(1),
        store_path,
        bytes,
        review_reason,
    }
}

impl Readers<'_> {
    fn prepare(&self, path: &Path) -> Prepared {
        let file = match std::fs::File::open(path) {
            Ok(f) => f,
            Err(e) => return Prepared::Refused(format!("cannot read it: {e}")),
        };
        let mut reader = BufReader::with_capacity(64 * 1024, file);
        match reader.fill_buf() {
            Ok(head) if head.len() >= 132 && &head[128..132] == b"DICM" => {}
            Ok(head) if head.len() >= 4 && &head[..4] == b"DICM" => {}
            Ok(_) => {
                return Prepared::Refused(
                    "not a DICOM file (no DICM marker after the 128-byte preamble)".into(),
                );
            }
            Err(e) => return Prepared::Refused(format!("cannot read it: {e}")),
        }
        // A declared length past the end of the file is refused before
        // dicom-rs would allocate it.
        let file_len = reader
            .get_ref()
            .metadata()
            .map(|m| m.len())
            .unwrap_or(u64::MAX);
        let checked = reader
            .fill_buf()
            .map_err(|e| format!("cannot read it: {e}"))
            .and_then(|head| super::guard::check_file(head, file_len, true));
        let checked = match checked {
            Ok(super::guard::Checked::NeedMore) => std::fs::read(path)
                .map_err(|e| format!("cannot read it: {e}"))
                .and_then(|all| super::guard::check_file(&all, file_len, true)),
            other => other,
        };
        if let Err(e) = checked {
            return Prepared::Refused(format!("malformed DICOM: {e}"));
        }
        // Native Pixel Data that ends the file is copied to the store as it stands.
        let native = match reader.fill_buf() {
            Ok(head) => super::decode::native_pixels(head, file_len),
            Err(_) => None,
        };
        // The header alone says whether the instance is new.
        let header = match OpenFileOptions::new()
            .read_until(PIXEL_DATA)
            .from_reader(&mut reader)
        {
            Ok(h) => h,
            Err(e) => return Prepared::Refused(malformed(&e)),
        };
        let Some(source_uid) = deid::text(&header, SOP_INSTANCE_UID) else {
            return Prepared::Refused(
                "malformed DICOM: it has no SOP Instance UID (0008,0018)".into(),
            );
        };
        let source_uid_hash = self.hasher.hash(&source_uid);
        let key = hash32(&source_uid_hash);
        if self.imported.contains(&key) {
            // Already in the study: skipped when this copy is whole (native Pixel
            // Data that ends the file, or a file that reads to its end); a copy cut
            // short is malformed, not "already imported".
            let skipped = match self.site_now(&header, key) {
                Some(site) => Prepared::SiteFor(source_uid_hash, site),
                None => Prepared::Skipped,
            };
            if native.is_some() {
                return skipped;
            }
            drop(header);
            drop(reader);
            return match read_whole(path).and_then(has_pixels) {
                Ok(_) => skipped,
                Err(why) => Prepared::Refused(format!(
                    "{why} (an instance with this SOP Instance UID is already in the study)"
                )),
            };
        }
        let out = match native {
            Some(pixels) => {
                // The Pixel Data ends the file where its length says: the copy is whole.
                if let Some(dup) = self.claim(key, path) {
                    return dup;
                }
                let file = reader.into_inner();
                self.finish(path, header, source_uid_hash, Some((&file, pixels)))
            }
            None => {
                drop(header);
                drop(reader);
                let obj = match read_whole(path).and_then(has_pixels) {
                    Ok(o) => o,
                    Err(why) => return Prepared::Refused(why),
                };
                if let Some(dup) = self.claim(key, path) {
                    return dup;
                }
                self.finish(path, obj, source_uid_hash, None)
            }
        };
        if matches!(out, Prepared::Refused(_)) {
            // Another whole copy elsewhere in the folders may still be imported.
            if let Ok(mut c) = self.claimed.lock() {
                c.remove(&key);
            }
        }
        out
    }

    /// The site of an instance already waiting in quarantine without one, when this
    /// run knows it (its IssuerOfPatientID, or `--site`).
    fn site_now(
        &self,
        header: &FileDicomObject<InMemDicomObject>,
        key: [u8; 32],
    ) -> Option<String> {
        if !self.unsited.contains(&key) {
            return None;
        }
        let patient_hash = self.hasher.hash(&deid::text(header, PATIENT_ID)?);
        let candidates = self
            .patients
            .get(&hash32(&patient_hash))
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        let issuer = deid::text(header, ISSUER_OF_PATIENT_ID);
        match link_for(candidates, issuer.as_deref(), self.sending_site, self.sites) {
            Link::Patient(id, _) => candidates
                .iter()
                .find(|p| p.id == id)
                .filter(|_| issuer.is_some() || self.sending_site.is_some())
                .map(|p| p.site.clone()),
            Link::Wait { site, .. } => site,
        }
    }

    /// Claims an original instance (known whole) for `path`. `None`: this file is
    /// the one imported. Otherwise another file claimed it first: an identical copy
    /// is skipped, one with other content is refused as a conflict naming both.
    fn claim(&self, key: [u8; 32], path: &Path) -> Option<Prepared> {
        let first = {
            let Ok(mut claimed) = self.claimed.lock() else {
                return Some(Prepared::Fatal("a reader thread panicked".into()));
            };
            match claimed.get(&key) {
                Some(first) => first.clone(),
                None => {
                    claimed.insert(key, path.to_path_buf());
                    return None;
                }
            }
        };
        Some(match same_bytes(path, &first) {
            Ok(true) => Prepared::Skipped,
            Ok(false) => Prepared::Refused(format!(
                "conflict: it has the SOP Instance UID of {}, but other content; only that one is imported (check which is right)",
                first.display()
            )),
            Err(e) => Prepared::Refused(format!(
                "cannot compare it with {}, which has the same SOP Instance UID: {e}",
                first.display()
            )),
        })
    }

    /// Checks, de-identifies and writes the copy of a new instance: `obj` is the
    /// whole file, or (with `pixels`) the file up to its native Pixel Data, which is
    /// then copied from `pixels`' file as it stands.
    fn finish(
        &self,
        path: &Path,
        obj: FileDicomObject<InMemDicomObject>,
        source_uid_hash: String,
        pixels: Option<(&File, NativePixels)>,
    ) -> Prepared {
        for (tag, name) in [
            (STUDY_INSTANCE_UID, "Study Instance UID (0020,000D)"),
            (SERIES_INSTANCE_UID, "Series Instance UID (0020,000E)"),
        ] {
            if deid::text(&obj, tag).is_none() {
                return Prepared::Refused(format!("malformed DICOM: it has no {name}"));
            }
        }
        let Some(patient_id) = deid::text(&obj, PATIENT_ID) else {
            return Prepared::Refused(
                "it has no PatientID (0010,0020), so it cannot be linked to a study patient".into(),
            );
        };
        let patient_hash = self.hasher.hash(&patient_id);
        drop(patient_id);
        let link = link_for(
            self.patients
                .get(&hash32(&patient_hash))
                .map(Vec::as_slice)
                .unwrap_or(&[]),
            deid::text(&obj, ISSUER_OF_PATIENT_ID).as_deref(),
            self.sending_site,
            self.sites,
        );
        let (patient, site, hold) = match link {
            Link::Patient(id, sid) => (Some((id, sid)), None, None),
            Link::Wait { site, hold } => (None, site, hold),
        };
        let review = deid::burned_in_reason(&obj);
        let label = patient
            .as_ref()
            .map(|(_, sid)| sid.as_str())
            .unwrap_or(QUARANTINE_LABEL);
        let copy = deid::deidentify(obj, self.uids, label);
        let mut record = describe(&copy, String::new(), 0, review);
        record.store_path = Store::relative_path(&record.study_uid, &record.sop_uid);
        let partial = self.store.partial_new(&record.sop_uid);
        let written = match pixels {
            Some((source, px)) => Store::write_partial_with_pixels(&partial, &copy, source, &px),
            None => Store::write_partial(&partial, &copy),
        };
        let file = match written {
            Ok((file, n)) => {
                record.bytes = n as i64;
                file
            }
            Err(e) if pixels.is_some() && e.kind() == std::io::ErrorKind::UnexpectedEof => {
                let _ = std::fs::remove_file(&partial);
                return Prepared::Refused(format!(
                    "malformed DICOM: the file ends early (cut short?): {e}"
                ));
            }
            Err(e) => {
                let _ = std::fs::remove_file(&partial);
                return Prepared::Fatal(format!(
                    "cannot write the de-identified copy of {} into {}: {e}",
                    path.display(),
                    self.store.root().display()
                ));
            }
        };
        Prepared::Ready(Box::new(Ready {
            source: path.to_path_buf(),
            image: NewImage {
                record,
                source_uid_hash,
                patient_hash,
                patient,
                site,
                hold,
            },
            partial,
            file,
        }))
    }
}

/// Reads and parses a whole file (checked first, so a declared length past its end
/// is refused before dicom-rs reserves it): a file cut short is malformed.
fn read_whole(path: &Path) -> Result<FileDicomObject<InMemDicomObject>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read it: {e}"))?;
    super::guard::check_file(&bytes, bytes.len() as u64, false)
        .map_err(|e| format!("malformed DICOM: {e}"))?;
    let skip = if bytes.get(128..132) == Some(b"DICM") {
        128
    } else {
        0
    };
    OpenFileOptions::new()
        .read_preamble(dicom_object::file::ReadPreamble::Never)
        .from_reader(&bytes[skip..])
        .map_err(|e| malformed(&e))
}

/// The object, when it has Pixel Data: a file without is not an image (or a copy
/// cut short before it).
fn has_pixels(
    obj: FileDicomObject<InMemDicomObject>,
) -> Result<FileDicomObject<InMemDicomObject>, String> {
    if [PIXEL_DATA, FLOAT_PIXEL_DATA, DOUBLE_PIXEL_DATA]
        .iter()
        .all(|t| obj.get(*t).is_none())
    {
        return Err(format!(
            "not an image: it has no Pixel Data (SOP class {})",
            deid::text(&obj, Tag(0x0008, 0x0016)).unwrap_or_else(|| "unknown".into())
        ));
    }
    Ok(obj)
}

/// Lists the regular files under the roots (symbolic links not followed, the store
/// itself left out), in path order, with their sizes; unreadable folders are refused.
fn walk(roots: &[PathBuf], store_root: &Path, report: &mut DicomReport) -> Vec<(PathBuf, u64)> {
    let store_canon = std::fs::canonicalize(store_root).ok();
    let mut seen: HashSet<PathBuf> = HashSet::new();
    let mut files = Vec::new();
    for root in roots {
        let walker = walkdir::WalkDir::new(root)
            .follow_links(false)
            .sort_by_file_name()
            .into_iter()
            .filter_entry(|e| {
                !(e.file_type().is_dir()
                    && store_canon.is_some()
                    && std::fs::canonicalize(e.path()).ok() == store_canon)
            });
        for entry in walker {
            match entry {
                Ok(e) if e.file_type().is_file() => {
                    let canon = std::fs::canonicalize(e.path()).unwrap_or(e.path().to_path_buf());
                    if seen.insert(canon) {
                        let len = e.metadata().map(|m| m.len()).unwrap_or(0);
                        files.push((e.into_path(), len));
                    }
                }
                Ok(e) if e.file_type().is_symlink() => report.links_not_followed += 1,
                Ok(_) => {}
                Err(e) => report.refused.push(Refusal {
                    path: e
                        .path()
                        .map(Path::to_path_buf)
                        .unwrap_or_else(|| root.clone()),
                    reason: format!(
                        "cannot read it: {}",
                        e.io_error()
                            .map(|io| io.to_string())
                            .unwrap_or_else(|| e.to_string())
                    ),
                }),
            }
        }
    }
    files
}

fn store_io(e: std::io::Error) -> DicomError {
    DicomError::StoreIo(e.to_string())
}

/// Runs the store's recovery against the database.
fn recover(study: &Study, store: &Store) -> Result<(u64, u64), DicomError> {
    let conn = study.conn();
    store
        .recover(|sop| imaging::store_path_of(conn, sop).ok().flatten())
        .map_err(store_io)
}

/// Imports the DICOM instances under `roots`. `on_progress` is called as files are done.
pub fn import_dicom(
    study: &mut Study,
    roots: &[PathBuf],
    on_progress: impl FnMut(Progress),
) -> Result<DicomReport, DicomError> {
    import_dicom_from(study, roots, None, on_progress)
}

/// [`import_dicom`] of files sent by `site` (`marrow import dicom --site SITE`): an
/// instance without an IssuerOfPatientID links to that site's patient.
pub fn import_dicom_from(
    study: &mut Study,
    roots: &[PathBuf],
    sending_site: Option<&str>,
    mut on_progress: impl FnMut(Progress),
) -> Result<DicomReport, DicomError> {
    study.require(crate::domain::user::Permission::Import)?;
    let sending_site = sending_site
        .map(|s| study.protocol().parse_site(s))
        .transpose()
        .map_err(|e| DicomError::Input(format!("--site: {e}")))?;
    for r in roots {
        if !r.exists() {
            return Err(DicomError::Input(format!(
                "{} does not exist; give the folders that hold the DICOM files",
                r.display()
            )));
        }
    }
    if let Some(why) = super::store::missing(study)? {
        // Its rows would count every file as "already imported".
        return Err(DicomError::Input(format!("{why}; then import again")));
    }
    let started = std::time::Instant::now();
    let store = Store::open_locked_waiting(study.path(), crate::db::BUSY_TIMEOUT)?;
    let mut report = DicomReport {
        recovered: recover(study, &store)?,
        ..Default::default()
    };
    report.linked_from_quarantine += link_pending(study, &store)?;

    let files = walk(roots, store.root(), &mut report);
    report.files = files.len() as u64;
    let mut progress = Progress {
        files_total: files.len() as u64,
        bytes_total: files.iter().map(|(_, n)| n).sum(),
        ..Default::default()
    };
    on_progress(progress);

    let hasher = study.identifier_hasher().clone();
    let uids = UidMapper::new(study);
    let imported = imaging::imported_source_hashes(study.conn())?;
    let patients = imaging::patients_by_hash(study.conn())?;
    let unsited = imaging::unsited_quarantine(study.conn())?;
    let sites = study.protocol().sites.clone();
    let readers = Readers {
        store: &store,
        uids: &uids,
        hasher: &hasher,
        imported: &imported,
        unsited: &unsited,
        patients: &patients,
        sites: &sites,
        sending_site: sending_site.as_deref(),
        claimed: Mutex::new(HashMap::new()),
    };

    let (to_writer, from_readers) = mpsc::sync_channel::<(usize, Prepared)>(64);
    let written = std::thread::scope(|scope| {
        let files = &files;
        let readers = &readers;
        scope.spawn(move || {
            let _ = files
                .par_iter()
                .enumerate()
                .try_for_each_with(to_writer, |tx, (i, (path, _))| {
                    tx.send((i, readers.prepare(path))).map_err(|_| ())
                });
        });
        let out = write_all(
            study,
            &store,
            files,
            &from_readers,
            &mut report,
            &mut progress,
            &mut on_progress,
        );
        // On an error the readers stop at their next send.
        drop(from_readers);
        out
    });
    // Copies of instances that were not recorded (an error stopped the writer) go.
    let (moved, deleted) = recover(study, &store)?;
    report.recovered.0 += moved;
    report.recovered.1 += deleted;
    written?;
    // Patients imported while this ran.
    report.linked_from_quarantine += link_pending(study, &store)?;
    report.waiting = imaging::counts(study.conn())?.1;
    report.refused.sort_by(|a, b| a.path.cmp(&b.path));
    report.held.sort_by(|a, b| a.path.cmp(&b.path));
    tracing::info!(
        files = report.files,
        imported = report.imported,
        skipped = report.skipped,
        refused = report.refused.len(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "dicom import done"
    );
    Ok(report)
}

/// The writer: records what the readers prepared, a batch per transaction, and moves
/// each copy under its final name once its row has committed.
fn write_all(
    study: &mut Study,
    store: &Store,
    files: &[(PathBuf, u64)],
    from_readers: &mpsc::Receiver<(usize, Prepared)>,
    report: &mut DicomReport,
    progress: &mut Progress,
    on_progress: &mut impl FnMut(Progress),
) -> Result<(), DicomError> {
    // Instances waiting without a site that this run gives one: (hash, site).
    let mut sited: Vec<(String, String)> = Vec::new();
    // Counts a file as done; hands back what still needs the database.
    let mut take = |(i, prepared): (usize, Prepared),
                    report: &mut DicomReport|
     -> Result<Option<Box<Ready>>, String> {
        let (path, size) = &files[i];
        progress.files_done += 1;
        progress.bytes_done += size;
        report.bytes += size;
        on_progress(*progress);
        match prepared {
            Prepared::Skipped => report.skipped += 1,
            Prepared::SiteFor(hash, site) => {
                report.skipped += 1;
                sited.push((hash, site));
            }
            Prepared::Refused(reason) => report.refused.push(Refusal {
                path: path.clone(),
                reason,
            }),
            Prepared::Fatal(why) => return Err(why),
            Prepared::Ready(ready) => return Ok(Some(ready)),
        }
        Ok(None)
    };
    let mut fatal = None;
    while fatal.is_none() {
        let Ok(msg) = from_readers.recv() else { break };
        let first = match take(msg, report) {
            Ok(Some(ready)) => ready,
            Ok(None) => continue,
            Err(why) => {
                fatal = Some(why);
                break;
            }
        };
        // One transaction for what is ready now (up to BATCH instances).
        let mut batch = study.batch()?;
        let mut publish: Vec<(PathBuf, String)> = Vec::new();
        let mut files: Vec<File> = Vec::new();
        let mut next = Some(first);
        while let Some(ready) = next.take() {
            match batch.add_image(&ready.image)? {
                Added::AlreadyImported => {
                    let _ = std::fs::remove_file(&ready.partial);
                    report.skipped += 1;
                }
                added => {
                    report.imported += 1;
                    if added == Added::Quarantined {
                        report.quarantined += 1;
                        if let Some(why) = &ready.image.hold {
                            report.held.push(Refusal {
                                path: ready.source.clone(),
                                reason: why.clone(),
                            });
                        }
                    }
                    publish.push((ready.partial, ready.image.record.store_path));
                    files.push(ready.file);
                }
            }
            while next.is_none() && publish.len() < BATCH {
                let Ok(msg) = from_readers.try_recv() else {
                    break;
                };
                match take(msg, report) {
                    Ok(r) => next = r,
                    Err(why) => {
                        fatal = Some(why);
                        break;
                    }
                }
            }
            if fatal.is_some() {
                break;
            }
        }
        // The copies are durable before the rows that name them commit.
        Store::sync_files(&files.iter().collect::<Vec<_>>())
            .and_then(|()| store.sync_partials())
            .map_err(|e| {
                DicomError::StoreIo(format!(
                    "cannot sync the copies in {}: {e}",
                    store.root().display()
                ))
            })?;
        drop(files);
        batch.commit()?;
        for (partial, rel) in &publish {
            store.publish(partial, rel).map_err(store_io)?;
        }
        store.sync_dirs(publish.iter().map(|(_, r)| r.as_str()));
    }
    if let Some(why) = fatal {
        return Err(DicomError::StoreIo(why));
    }
    if !sited.is_empty() {
        let mut batch = study.batch()?;
        for (hash, site) in &sited {
            batch.set_quarantine_site(hash, site)?;
        }
        batch.commit()?;
    }
    Ok(())
}

/// Rewrites a stored copy's PatientName and PatientID (to the study ID, when the
/// instance is linked), through a partial file and a rename.
fn rewrite_patient(store: &Store, link: &PendingLink) -> Result<(), String> {
    let path = store.path_of(&link.store_path);
    let mut obj = OpenFileOptions::new()
        .open_file(&path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    deid::set_patient(&mut obj, &link.study_id);
    let partial = store.partial_rewrite(&link.sop_uid);
    Store::write_partial(&partial, &obj)
        .and_then(|(file, _)| file.sync_data())
        .and_then(|()| std::fs::rename(&partial, &path))
        .map_err(|e| {
            let _ = std::fs::remove_file(&partial);
            format!("cannot rewrite {}: {e}", path.display())
        })
}

/// Links the quarantined instances whose patient now exists: each stored copy gets
/// the study ID first, then its row is linked (and the patient rescreened), audited.
/// A copy that cannot be rewritten stays in quarantine for the next run.
fn link_pending(study: &mut Study, store: &Store) -> Result<u64, DicomError> {
    if !imaging::any_waiting(study.conn())? {
        return Ok(0);
    }
    let pending = imaging::pending_links(study.conn())?;
    let mut linked = 0;
    for chunk in pending.chunks(BATCH) {
        let mut ready = Vec::with_capacity(chunk.len());
        for link in chunk {
            match rewrite_patient(store, link) {
                Ok(()) => ready.push(link),
                Err(why) => tracing::warn!("image {} stays in quarantine: {why}", link.sop_uid),
            }
        }
        if ready.is_empty() {
            continue;
        }
        let mut batch = study.batch()?;
        for link in ready {
            if batch.link_image(link)? {
                linked += 1;
            }
        }
        batch.commit()?;
    }
    Ok(linked)
}

/// What linking waiting images after a patients import did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LinkOutcome {
    pub linked: u64,
    /// Why linking was put off, when it was (the next run links them).
    pub deferred: Option<String>,
}

/// After patients were imported: links the instances that waited for them. Costs one
/// index probe when nothing waits.
pub fn link_waiting(study: &mut Study) -> Result<LinkOutcome, DicomError> {
    if !imaging::any_waiting(study.conn())? || imaging::pending_links(study.conn())?.is_empty() {
        return Ok(LinkOutcome::default());
    }
    let store = match Store::open_locked(study.path()) {
        Ok(s) => s,
        Err(StoreError::Busy(_)) => {
            return Ok(LinkOutcome {
                linked: 0,
                deferred: Some(
                    "a DICOM import is running; it links the waiting images when it ends".into(),
                ),
            });
        }
        Err(e) => return Err(e.into()),
    };
    recover(study, &store)?;
    Ok(LinkOutcome {
        linked: link_pending(study, &store)?,
        deferred: None,
    })
}
