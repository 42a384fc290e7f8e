-- marrow schema 2: imaging. De-identified DICOM instances kept in the managed store
-- (a folder beside the database, `<db>.store/`), grouped into series and studies,
-- and the quarantine of instances whose patient has not been imported yet.
-- Every UID here is a new, de-identified one (2.25.<128 bits derived from a keyed
-- hash of the original UID). The original SOP Instance UID is kept only as a keyed
-- hash, so a re-import recognises what it already took; the DICOM PatientID only
-- as a keyed hash while the instance waits in quarantine.

CREATE TABLE image_studies (
    id         INTEGER PRIMARY KEY,
    study_uid  TEXT NOT NULL UNIQUE,
    -- YYYY-MM-DD; dates are kept (Retain Longitudinal Temporal Information option)
    study_date TEXT
) STRICT;

CREATE TABLE image_series (
    id            INTEGER PRIMARY KEY,
    series_uid    TEXT NOT NULL UNIQUE,
    study         INTEGER NOT NULL REFERENCES image_studies (id),
    modality      TEXT,
    body_part     TEXT,
    series_number INTEGER
) STRICT;
CREATE INDEX image_series_study ON image_series (study);

CREATE TABLE image_instances (
    id                INTEGER PRIMARY KEY,
    sop_uid           TEXT NOT NULL UNIQUE,
    -- HMAC-SHA256 of the original SOP Instance UID, 32 bytes
    source_uid_hash   BLOB NOT NULL UNIQUE CHECK (length(source_uid_hash) = 32),
    series            INTEGER NOT NULL REFERENCES image_series (id),
    -- NULL while the instance waits in image_quarantine for its patient
    patient_id        INTEGER REFERENCES patients (id),
    sop_class_uid     TEXT,
    laterality        TEXT,
    view_position     TEXT,
    image_rows        INTEGER,
    image_columns     INTEGER,
    bits_allocated    INTEGER,
    bits_stored       INTEGER,
    photometric       TEXT,
    transfer_syntax   TEXT NOT NULL,
    -- millimetres between rows and between columns (PixelSpacing, else ImagerPixelSpacing)
    pixel_spacing_row REAL,
    pixel_spacing_col REAL,
    frames            INTEGER NOT NULL DEFAULT 1,
    -- relative to the store folder: <study_uid>/<sop_uid>.dcm
    store_path        TEXT NOT NULL UNIQUE,
    bytes             INTEGER NOT NULL,
    -- 1: may carry burned-in text (BurnedInAnnotation YES, secondary capture, ultrasound...)
    burned_in_review  INTEGER NOT NULL DEFAULT 0 CHECK (burned_in_review = 0 OR burned_in_review = 1),
    review_reason     TEXT,
    imported_at       TEXT NOT NULL,
    imported_by       TEXT NOT NULL
) STRICT;
CREATE INDEX image_instances_patient ON image_instances (patient_id);
CREATE INDEX image_instances_series ON image_instances (series);

-- Instances whose PatientID matched no study patient at import. A later patients
-- import links them (and removes them from here).
CREATE TABLE image_quarantine (
    instance_id  INTEGER PRIMARY KEY REFERENCES image_instances (id),
    -- HMAC-SHA256 of the DICOM PatientID, the same hash as patients.mrn_hash
    patient_hash BLOB NOT NULL CHECK (length(patient_hash) = 32),
    since        TEXT NOT NULL
) STRICT;
CREATE INDEX image_quarantine_patient ON image_quarantine (patient_hash);
