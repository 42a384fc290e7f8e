//! The imaging repository: de-identified DICOM instances (with their series and
//! studies) in the managed store, and the quarantine of instances whose patient is
//! not imported yet. Writes go through an import [`Batch`], so each one commits
//! with its audit row, and a patient who gains an image is rescreened (criterion I3)
//! in the same transaction.

use super::Result;
use super::audit::Change;
use super::now_utc;
use super::study::Batch;
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use std::collections::{HashMap, HashSet};

/// The de-identified description of one instance, as stored and as audited.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ImageRecord {
    pub sop_uid: String,
    pub study_uid: String,
    pub series_uid: String,
    pub sop_class_uid: Option<String>,
    pub modality: Option<String>,
    pub body_part: Option<String>,
    pub laterality: Option<String>,
    pub view_position: Option<String>,
    /// YYYY-MM-DD.
    pub study_date: Option<String>,
    pub series_number: Option<i64>,
    pub rows: Option<i64>,
    pub columns: Option<i64>,
    pub bits_allocated: Option<i64>,
    pub bits_stored: Option<i64>,
    pub photometric: Option<String>,
    pub transfer_syntax: String,
    /// Millimetres between rows and between columns.
    pub pixel_spacing: Option<(f64, f64)>,
    pub frames: i64,
    /// Relative to the store folder.
    pub store_path: String,
    pub bytes: i64,
    /// Why the image needs a look for burned-in text, if it does.
    pub review_reason: Option<String>,
}

/// An image ready to be recorded: its record, the keyed hash of its original SOP
/// Instance UID and of its PatientID (hex), and the patient it links to, if known.
#[derive(Debug, Clone)]
pub struct NewImage {
    pub record: ImageRecord,
    pub source_uid_hash: String,
    pub patient_hash: String,
    /// (patients.id, study ID); `None` puts the instance in quarantine.
    pub patient: Option<(i64, String)>,
    /// In quarantine: the site the instance was sent for, when known (it then links
    /// only to that site's patient).
    pub site: Option<String>,
    /// In quarantine: why the instance cannot be linked on its own, when that is so
    /// (a PatientID that matches patients at two sites, an issuer naming no study
    /// site); `None`: it links as soon as its patient is imported.
    pub hold: Option<String>,
}

/// What recording an image did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Added {
    Linked,
    Quarantined,
    /// The same original instance is already recorded (nothing written).
    AlreadyImported,
}

/// An instance waiting for its patient (never the PatientID: only what the store holds).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WaitingImage {
    pub sop_uid: String,
    pub store_path: String,
    pub study_date: Option<String>,
    pub modality: Option<String>,
    pub body_part: Option<String>,
    pub since: String,
    /// Why it is not linked on its own, when it is not only waiting for its patient.
    pub reason: Option<String>,
}

/// A quarantined instance whose patient now exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingLink {
    pub instance_id: i64,
    pub sop_uid: String,
    pub store_path: String,
    pub patient_id: i64,
    pub study_id: String,
}

fn blob32(hex_text: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(hex_text, &mut out).ok()?;
    Some(out)
}

/// The keyed hashes of every original SOP Instance UID already imported.
pub fn imported_source_hashes(conn: &Connection) -> Result<HashSet<[u8; 32]>> {
    let mut st = conn.prepare("SELECT source_uid_hash FROM image_instances")?;
    let rows = st.query_map([], |r| r.get::<_, Vec<u8>>(0))?;
    let mut out = HashSet::new();
    for r in rows {
        if let Ok(h) = <[u8; 32]>::try_from(r?.as_slice()) {
            out.insert(h);
        }
    }
    Ok(out)
}

/// The keyed original-UID hashes of the instances in quarantine whose site is not
/// known (a later import that knows it may give it them).
pub fn unsited_quarantine(conn: &Connection) -> Result<HashSet<[u8; 32]>> {
    let mut st = conn.prepare(
        "SELECT i.source_uid_hash FROM image_quarantine q JOIN image_instances i ON i.id = q.instance_id \
         WHERE q.site IS NULL",
    )?;
    let rows = st.query_map([], |r| r.get::<_, Vec<u8>>(0))?;
    let mut out = HashSet::new();
    for r in rows {
        if let Ok(h) = <[u8; 32]>::try_from(r?.as_slice()) {
            out.insert(h);
        }
    }
    Ok(out)
}

/// A study patient as DICOM linkage sees them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HashedPatient {
    pub id: i64,
    pub study_id: String,
    pub site: String,
}

/// Every patient by the keyed hash of their MRN; one MRN may be a patient at each
/// site (by site).
pub fn patients_by_hash(conn: &Connection) -> Result<HashMap<[u8; 32], Vec<HashedPatient>>> {
    let mut st =
        conn.prepare("SELECT mrn_hash, id, study_id, site FROM patients ORDER BY site, study_id")?;
    let rows = st.query_map([], |r| {
        Ok((
            r.get::<_, Vec<u8>>(0)?,
            HashedPatient {
                id: r.get(1)?,
                study_id: r.get(2)?,
                site: r.get(3)?,
            },
        ))
    })?;
    let mut out: HashMap<[u8; 32], Vec<HashedPatient>> = HashMap::new();
    for r in rows {
        let (h, p) = r?;
        if let Ok(h) = <[u8; 32]>::try_from(h.as_slice()) {
            out.entry(h).or_default().push(p);
        }
    }
    Ok(out)
}

/// Whether any instance waits for its patient (one index probe).
pub fn any_waiting(conn: &Connection) -> Result<bool> {
    Ok(
        conn.query_row("SELECT EXISTS (SELECT 1 FROM image_quarantine)", [], |r| {
            r.get(0)
        })?,
    )
}

/// The instances waiting for their patient, oldest first.
pub fn waiting_images(conn: &Connection) -> Result<Vec<WaitingImage>> {
    let mut st = conn.prepare(
        "SELECT i.sop_uid, i.store_path, st.study_date, se.modality, se.body_part, q.since, q.reason \
         FROM image_quarantine q JOIN image_instances i ON i.id = q.instance_id \
         JOIN image_series se ON se.id = i.series JOIN image_studies st ON st.id = se.study \
         ORDER BY q.since, i.store_path",
    )?;
    let rows = st.query_map([], |r| {
        Ok(WaitingImage {
            sop_uid: r.get(0)?,
            store_path: r.get(1)?,
            study_date: r.get(2)?,
            modality: r.get(3)?,
            body_part: r.get(4)?,
            since: r.get(5)?,
            reason: r.get(6)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

/// Quarantined instances whose patient has been imported since: the patient with
/// that PatientID hash at the instance's site, or, when its site is not known, the
/// only patient with that hash at any site. An instance held for a reason (two
/// sites' patients, an issuer naming no study site) waits until it is given a site.
pub fn pending_links(conn: &Connection) -> Result<Vec<PendingLink>> {
    let mut st = conn.prepare(
        "SELECT q.instance_id, i.sop_uid, i.store_path, p.id, p.study_id \
         FROM image_quarantine q JOIN patients p ON p.mrn_hash = q.patient_hash \
         JOIN image_instances i ON i.id = q.instance_id \
         WHERE (q.site IS NOT NULL AND p.site = q.site) \
            OR (q.site IS NULL AND q.reason IS NULL \
                AND (SELECT count(*) FROM patients o WHERE o.mrn_hash = q.patient_hash) = 1) \
         ORDER BY q.instance_id",
    )?;
    let rows = st.query_map([], |r| {
        Ok(PendingLink {
            instance_id: r.get(0)?,
            sop_uid: r.get(1)?,
            store_path: r.get(2)?,
            patient_id: r.get(3)?,
            study_id: r.get(4)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

/// The store path of a recorded instance, by its (new) SOP Instance UID.
pub fn store_path_of(conn: &Connection, sop_uid: &str) -> Result<Option<String>> {
    Ok(conn
        .prepare_cached("SELECT store_path FROM image_instances WHERE sop_uid = ?1")?
        .query_row([sop_uid], |r| r.get(0))
        .optional()?)
}

/// How many instances the study holds, and how many of them wait for their patient.
pub fn counts(conn: &Connection) -> Result<(u64, u64)> {
    Ok(conn.query_row(
        "SELECT (SELECT count(*) FROM image_instances), (SELECT count(*) FROM image_quarantine)",
        [],
        |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64)),
    )?)
}

/// One of a patient's images as the viewer lists it: the row id and its record.
#[derive(Debug, Clone, PartialEq)]
pub struct PatientImage {
    pub instance_id: i64,
    pub record: ImageRecord,
}

impl ImageRecord {
    /// What the fit rules of `domain::reading` need to know of the image.
    pub fn facts(&self) -> crate::domain::reading::ImageFacts {
        crate::domain::reading::ImageFacts {
            modality: self.modality.clone(),
            body_part: self.body_part.clone(),
            laterality: self.laterality.clone(),
            view_position: self.view_position.clone(),
            sop_class_uid: self.sop_class_uid.clone(),
            burned_in: self.review_reason.clone(),
        }
    }
}

/// What a viewer says of an image flagged for burned-in text without a stored reason.
const REVIEW_UNSPECIFIED: &str = "flagged for a burned-in text review";

impl super::Study {
    /// Every image of a patient, for the images screen (not for readers: they reach
    /// images only through their cases, `case_view`, and a patient's image list names
    /// the patient).
    pub fn patient_images(&self, study_id: &str) -> Result<Vec<PatientImage>> {
        self.refuse_readers("see a patient's images by study ID")?;
        patient_images(self.conn(), study_id)
    }
}

/// The images linked to a patient (by study ID), by study date, study, series and
/// instance; read only.
pub fn patient_images(conn: &Connection, study_id: &str) -> Result<Vec<PatientImage>> {
    let mut st = conn.prepare_cached(
        "SELECT i.id, i.sop_uid, st.study_uid, se.series_uid, i.sop_class_uid, se.modality, \
         se.body_part, i.laterality, i.view_position, st.study_date, se.series_number, \
         i.image_rows, i.image_columns, i.bits_allocated, i.bits_stored, i.photometric, \
         i.transfer_syntax, i.pixel_spacing_row, i.pixel_spacing_col, i.frames, i.store_path, \
         i.bytes, i.burned_in_review, i.review_reason \
         FROM image_instances i JOIN patients p ON p.id = i.patient_id \
         JOIN image_series se ON se.id = i.series JOIN image_studies st ON st.id = se.study \
         WHERE p.study_id = ?1 \
         ORDER BY st.study_date, st.id, se.series_number, se.id, i.id",
    )?;
    let rows = st.query_map([study_id], |r| {
        let spacing = match (r.get::<_, Option<f64>>(17)?, r.get::<_, Option<f64>>(18)?) {
            (Some(a), Some(b)) => Some((a, b)),
            _ => None,
        };
        let flagged: bool = r.get::<_, i64>(22)? != 0;
        let reason: Option<String> = r.get(23)?;
        Ok(PatientImage {
            instance_id: r.get(0)?,
            record: ImageRecord {
                sop_uid: r.get(1)?,
                study_uid: r.get(2)?,
                series_uid: r.get(3)?,
                sop_class_uid: r.get(4)?,
                modality: r.get(5)?,
                body_part: r.get(6)?,
                laterality: r.get(7)?,
                view_position: r.get(8)?,
                study_date: r.get(9)?,
                series_number: r.get(10)?,
                rows: r.get(11)?,
                columns: r.get(12)?,
                bits_allocated: r.get(13)?,
                bits_stored: r.get(14)?,
                photometric: r.get(15)?,
                transfer_syntax: r.get(16)?,
                pixel_spacing: spacing,
                frames: r.get(19)?,
                store_path: r.get(20)?,
                bytes: r.get(21)?,
                review_reason: match (flagged, reason) {
                    (true, None) => Some(REVIEW_UNSPECIFIED.to_string()),
                    (_, reason) => reason,
                },
            },
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

impl Batch<'_> {
    /// Records a de-identified instance (with its study and series) and, when its
    /// patient is known, marks that patient as imaged (rescreened on commit);
    /// otherwise puts it in quarantine. An instance recorded before changes nothing.
    pub fn add_image(&mut self, img: &NewImage) -> Result<Added> {
        let rec = &img.record;
        let exists: bool = self
            .tx
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM image_instances WHERE source_uid_hash = unhex(?1) OR sop_uid = ?2)",
            )?
            .query_row(params![img.source_uid_hash, rec.sop_uid], |r| r.get(0))?;
        if exists {
            return Ok(Added::AlreadyImported);
        }
        self.tx
            .prepare_cached(
                "INSERT INTO image_studies (study_uid, study_date) VALUES (?1, ?2) \
                 ON CONFLICT (study_uid) DO UPDATE SET study_date = coalesce(study_date, excluded.study_date)",
            )?
            .execute(params![rec.study_uid, rec.study_date])?;
        let study: i64 = self
            .tx
            .prepare_cached("SELECT id FROM image_studies WHERE study_uid = ?1")?
            .query_row([&rec.study_uid], |r| r.get(0))?;
        self.tx
            .prepare_cached(
                "INSERT INTO image_series (series_uid, study, modality, body_part, series_number) \
                 VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (series_uid) DO NOTHING",
            )?
            .execute(params![
                rec.series_uid,
                study,
                rec.modality,
                rec.body_part,
                rec.series_number
            ])?;
        let series: i64 = self
            .tx
            .prepare_cached("SELECT id FROM image_series WHERE series_uid = ?1")?
            .query_row([&rec.series_uid], |r| r.get(0))?;
        let now = now_utc();
        let patient_id = img.patient.as_ref().map(|(id, _)| *id);
        self.tx
            .prepare_cached(
                "INSERT INTO image_instances (sop_uid, source_uid_hash, series, patient_id, sop_class_uid, \
                 laterality, view_position, image_rows, image_columns, bits_allocated, bits_stored, photometric, \
                 transfer_syntax, pixel_spacing_row, pixel_spacing_col, frames, store_path, bytes, \
                 burned_in_review, review_reason, imported_at, imported_by) \
                 VALUES (?1, unhex(?2), ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, \
                 ?18, ?19, ?20, ?21, ?22)",
            )?
            .execute(params![
                rec.sop_uid,
                img.source_uid_hash,
                series,
                patient_id,
                rec.sop_class_uid,
                rec.laterality,
                rec.view_position,
                rec.rows,
                rec.columns,
                rec.bits_allocated,
                rec.bits_stored,
                rec.photometric,
                rec.transfer_syntax,
                rec.pixel_spacing.map(|p| p.0),
                rec.pixel_spacing.map(|p| p.1),
                rec.frames,
                rec.store_path,
                rec.bytes,
                rec.review_reason.is_some(),
                rec.review_reason,
                now,
                self.actor,
            ])?;
        let instance_id = self.tx.last_insert_rowid();
        let added = match &img.patient {
            Some((pid, _)) => {
                self.mark_imaged(*pid)?;
                Added::Linked
            }
            None => {
                if blob32(&img.patient_hash).is_none() {
                    return Err(super::DbError::Invalid(format!(
                        "internal: patient hash of {} is not 64 hex characters",
                        rec.sop_uid
                    )));
                }
                self.tx
                    .prepare_cached(
                        "INSERT INTO image_quarantine (instance_id, patient_hash, since, site, reason) \
                         VALUES (?1, unhex(?2), ?3, ?4, ?5)",
                    )?
                    .execute(params![instance_id, img.patient_hash, now, img.site, img.hold])?;
                Added::Quarantined
            }
        };
        let sid = img.patient.as_ref().map(|(_, s)| s.as_str());
        let mut after = serde_json::to_value(rec).unwrap_or_default();
        if let Some(o) = after.as_object_mut() {
            o.insert("patient".into(), serde_json::json!(sid));
            o.insert(
                "quarantined".into(),
                serde_json::json!(added == Added::Quarantined),
            );
        }
        let reason = match (added, &img.hold) {
            (Added::Quarantined, Some(why)) => format!("dicom import; in quarantine: {why}"),
            (Added::Quarantined, None) => match &img.site {
                Some(site) => format!(
                    "dicom import; no study patient at {site} has this PatientID yet: waiting in quarantine"
                ),
                None => {
                    "dicom import; no study patient has this PatientID yet: waiting in quarantine"
                        .to_string()
                }
            },
            _ => "dicom import".to_string(),
        };
        self.audit.append(
            &self.tx,
            &Change {
                action: "image.add",
                entity: "image",
                entity_id: &rec.sop_uid,
                patient: sid,
                before: None,
                after: Some(after.to_string()),
                reason: Some(&reason),
            },
        )?;
        Ok(added)
    }

    /// Gives a quarantined instance whose site was not known the site a later import
    /// learned (its IssuerOfPatientID, or `--site`), which lifts a hold for a
    /// PatientID that matched two sites; it then links to that site's patient.
    /// Returns false when it was not waiting without a site.
    pub fn set_quarantine_site(&mut self, source_uid_hash: &str, site: &str) -> Result<bool> {
        let row: Option<(i64, String, Option<String>)> = self
            .tx
            .prepare_cached(
                "SELECT i.id, i.sop_uid, q.reason FROM image_quarantine q JOIN image_instances i ON i.id = q.instance_id \
                 WHERE i.source_uid_hash = unhex(?1) AND q.site IS NULL",
            )?
            .query_row([source_uid_hash], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .optional()?;
        let Some((instance_id, sop_uid, reason)) = row else {
            return Ok(false);
        };
        self.tx
            .prepare_cached(
                "UPDATE image_quarantine SET site = ?2, reason = NULL WHERE instance_id = ?1",
            )?
            .execute(params![instance_id, site])?;
        self.audit.append(
            &self.tx,
            &Change {
                action: "image.site",
                entity: "image",
                entity_id: &sop_uid,
                patient: None,
                before: Some(serde_json::json!({ "site": null, "hold": reason }).to_string()),
                after: Some(serde_json::json!({ "site": site, "hold": null }).to_string()),
                reason: Some("dicom import: the site of a waiting image"),
            },
        )?;
        Ok(true)
    }

    /// Links a quarantined instance to its now-imported patient. Returns false when
    /// it was no longer waiting (linked meanwhile by another run).
    pub fn link_image(&mut self, link: &PendingLink) -> Result<bool> {
        let removed = self
            .tx
            .prepare_cached("DELETE FROM image_quarantine WHERE instance_id = ?1")?
            .execute([link.instance_id])?;
        if removed == 0 {
            return Ok(false);
        }
        self.tx
            .prepare_cached(
                "UPDATE image_instances SET patient_id = ?2 WHERE id = ?1 AND patient_id IS NULL",
            )?
            .execute(params![link.instance_id, link.patient_id])?;
        self.mark_imaged(link.patient_id)?;
        self.audit.append(
            &self.tx,
            &Change {
                action: "image.link",
                entity: "image",
                entity_id: &link.sop_uid,
                patient: Some(&link.study_id),
                before: Some(
                    serde_json::json!({ "patient": null, "quarantined": true }).to_string(),
                ),
                after: Some(
                    serde_json::json!({ "patient": link.study_id, "store_path": link.store_path })
                        .to_string(),
                ),
                reason: Some("the image's patient has been imported"),
            },
        )?;
        Ok(true)
    }

    /// Criterion I3: the patient has a linked image. Rescreened on commit when this
    /// is new for them.
    fn mark_imaged(&mut self, patient_id: i64) -> Result<()> {
        let changed = self
            .tx
            .prepare_cached("UPDATE patients SET has_image = 1 WHERE id = ?1 AND has_image = 0")?
            .execute([patient_id])?;
        if changed > 0 {
            self.dirty.insert(patient_id);
        }
        Ok(())
    }
}
