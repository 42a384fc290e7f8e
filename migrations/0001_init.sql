-- marrow schema 1: protocol, users, patients with their screening, DXA, labs,
-- manual screening answers and the hash-chained audit trail.
-- CHECKs spell out `x = 'a' OR x = 'b'`: an IN list makes SQLite build a temporary
-- table on every insert, a third of a bulk import's time.
-- No direct identifier is stored: patients are linked by a keyed hash of the MRN,
-- and birth dates become an age at the index date before they reach this schema.

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) STRICT;

CREATE TABLE users (
    name     TEXT PRIMARY KEY,
    role     TEXT NOT NULL CHECK (role = 'coordinator' OR role = 'reader' OR role = 'adjudicator' OR role = 'pi' OR role = 'admin'),
    added_by TEXT NOT NULL,
    added_at TEXT NOT NULL
) STRICT;

CREATE TABLE study_id_counters (
    site TEXT NOT NULL,
    grp  TEXT NOT NULL,
    next INTEGER NOT NULL,
    PRIMARY KEY (site, grp)
) STRICT;

CREATE TABLE patients (
    id                    INTEGER PRIMARY KEY,
    study_id              TEXT NOT NULL UNIQUE,
    -- HMAC-SHA256 of the MRN, 32 bytes (hex in Rust, unhex() on the way in)
    mrn_hash              BLOB NOT NULL UNIQUE CHECK (length(mrn_hash) = 32),
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
    updated_by            TEXT NOT NULL
) STRICT;
CREATE INDEX patients_cohort ON patients (site, grp, phase, decision, missing_dxa);

CREATE TABLE dxa_scans (
    id         INTEGER PRIMARY KEY,
    patient_id INTEGER NOT NULL REFERENCES patients (id),
    scan_date  TEXT NOT NULL,
    region     TEXT NOT NULL CHECK (region = 'lumbar_spine' OR region = 'femoral_neck' OR region = 'total_hip'),
    t_score    REAL NOT NULL,
    z_score    REAL,
    bmd_g_cm2  REAL,
    UNIQUE (patient_id, scan_date, region)
) STRICT;

CREATE TABLE labs (
    id         INTEGER PRIMARY KEY,
    patient_id INTEGER NOT NULL REFERENCES patients (id),
    date       TEXT NOT NULL,
    analyte    TEXT NOT NULL,
    value      REAL NOT NULL,
    unit       TEXT NOT NULL,
    UNIQUE (patient_id, date, analyte)
) STRICT;

CREATE TABLE screening_answers (
    patient_id INTEGER NOT NULL REFERENCES patients (id),
    criterion  TEXT NOT NULL CHECK (criterion = 'I1' OR criterion = 'I2' OR criterion = 'I3' OR criterion = 'I4' OR criterion = 'I5' OR criterion = 'E1' OR criterion = 'E2' OR criterion = 'E3' OR criterion = 'E4' OR criterion = 'E5'),
    answer     TEXT NOT NULL CHECK (answer = 'yes' OR answer = 'no' OR answer = 'unknown'),
    reason     TEXT NOT NULL CHECK (length(trim(reason)) > 0),
    answered_by TEXT NOT NULL,
    answered_at TEXT NOT NULL,
    PRIMARY KEY (patient_id, criterion)
) STRICT;

CREATE TABLE audit_log (
    id         INTEGER PRIMARY KEY,
    at         TEXT NOT NULL,
    actor      TEXT NOT NULL,
    real_actor TEXT NOT NULL,
    action     TEXT NOT NULL,
    entity     TEXT NOT NULL,
    entity_id  TEXT NOT NULL,
    patient    TEXT,
    before     TEXT,
    after      TEXT,
    reason     TEXT,
    -- SHA-256 digests, 32 bytes each (hex outside the database)
    prev_hash  BLOB NOT NULL,
    hash       BLOB NOT NULL
) STRICT;
CREATE INDEX audit_by_patient ON audit_log (patient);

-- The trail is append-only for everyone who uses marrow; `marrow audit verify`
-- catches anyone who goes around these triggers.
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
