-- marrow schema 7: a patient is one person at one site. MRNs are unique within a
-- hospital, not across the two, so the identity of a patient is the pair
-- (keyed hash of the MRN, site) instead of the hash alone: the same MRN at PKUPH and
-- at SYSMH is two patients. The database holds no MRN, so the hashes stay as they
-- are (HMAC of the MRN) and every existing row, id and link is kept.
-- SQLite cannot drop a UNIQUE constraint, so the table is rebuilt (the documented
-- 12-step way: marrow runs migrations with foreign keys off and checks them before
-- each commit); its index and its trigger are made again as they were.
-- The quarantine of DICOM instances learns the site an instance was sent for (from
-- IssuerOfPatientID or `marrow import dicom --site`), and why an instance cannot be
-- linked on its own (a PatientID that matches patients at two sites, an issuer that
-- names no study site).

PRAGMA legacy_alter_table = ON;

CREATE TABLE patients_v7 (
    id                    INTEGER PRIMARY KEY,
    study_id              TEXT NOT NULL UNIQUE,
    -- HMAC-SHA256 of the MRN, 32 bytes (hex in Rust, unhex() on the way in)
    mrn_hash              BLOB NOT NULL CHECK (length(mrn_hash) = 32),
    site                  TEXT NOT NULL,
    grp                   TEXT NOT NULL CHECK (grp = 'OA' OR grp = 'OP' OR grp = 'CONTROL'),
    phase                 TEXT NOT NULL CHECK (phase = 'retrospective' OR phase = 'prospective'),
    sex                   TEXT CHECK (sex = 'F' OR sex = 'M'),
    age                   INTEGER,
    index_date            TEXT,
    bmi                   REAL,
    deformity             INTEGER,
    implant               INTEGER,
    pathological_fracture INTEGER,
    malignancy            INTEGER,
    steroid_long_term     INTEGER,
    -- NULL: unknown; 'none'; or the date of the last radio/chemotherapy
    radio_chemo_last      TEXT,
    has_image             INTEGER NOT NULL DEFAULT 0,
    -- screening outcome, recomputed by the domain rules whenever an input changes
    decision              TEXT NOT NULL DEFAULT 'pending' CHECK (decision = 'eligible' OR decision = 'ineligible' OR decision = 'pending'),
    reasons               TEXT NOT NULL DEFAULT '',
    pending               TEXT NOT NULL DEFAULT '',
    flags                 TEXT NOT NULL DEFAULT '',
    -- 1 when flags holds missing_dxa: kept apart so the status figures read one index
    missing_dxa           INTEGER NOT NULL DEFAULT 0,
    who_stage             TEXT,
    version               INTEGER NOT NULL DEFAULT 1,
    updated_at            TEXT NOT NULL,
    updated_by            TEXT NOT NULL,
    -- hash first: the index also answers "every patient with this MRN hash"
    UNIQUE (mrn_hash, site)
) STRICT;

INSERT INTO patients_v7 (id, study_id, mrn_hash, site, grp, phase, sex, age, index_date, bmi,
    deformity, implant, pathological_fracture, malignancy, steroid_long_term, radio_chemo_last,
    has_image, decision, reasons, pending, flags, missing_dxa, who_stage, version, updated_at,
    updated_by)
SELECT id, study_id, mrn_hash, site, grp, phase, sex, age, index_date, bmi,
    deformity, implant, pathological_fracture, malignancy, steroid_long_term, radio_chemo_last,
    has_image, decision, reasons, pending, flags, missing_dxa, who_stage, version, updated_at,
    updated_by
FROM patients;

DROP TABLE patients;
ALTER TABLE patients_v7 RENAME TO patients;
PRAGMA legacy_alter_table = OFF;

CREATE INDEX patients_cohort ON patients (site, grp, phase, decision, missing_dxa);

CREATE TRIGGER reading_refresh_on_patient_update AFTER UPDATE OF decision, grp ON patients
WHEN (OLD.decision IS NOT NEW.decision OR OLD.grp IS NOT NEW.grp)
 AND (SELECT value FROM meta WHERE key = 'reading_refresh_needed') IS NOT '1'
BEGIN
    INSERT OR REPLACE INTO meta (key, value) VALUES ('reading_refresh_needed', '1');
END;

-- The site the instance was sent for, when known (NULL: any site whose patient has
-- this PatientID hash, provided only one does).
ALTER TABLE image_quarantine ADD COLUMN site TEXT;
-- Why the instance is not linked on its own, when it is not just waiting for its
-- patient (NULL: linked as soon as its patient is imported).
ALTER TABLE image_quarantine ADD COLUMN reason TEXT;
