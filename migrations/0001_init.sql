-- marrow schema 1: protocol, users, patients with their screening, DXA, labs,
-- manual screening answers and the hash-chained audit trail.
-- No direct identifier is stored: patients are linked by a keyed hash of the MRN,
-- and birth dates become an age at the index date before they reach this schema.

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) STRICT;

CREATE TABLE users (
    name     TEXT PRIMARY KEY,
    role     TEXT NOT NULL CHECK (role IN ('coordinator', 'reader', 'adjudicator', 'pi', 'admin')),
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
    mrn_hash              TEXT NOT NULL UNIQUE,
    site                  TEXT NOT NULL,
    grp                   TEXT NOT NULL CHECK (grp IN ('OA', 'OP', 'CONTROL')),
    phase                 TEXT NOT NULL CHECK (phase IN ('retrospective', 'prospective')),
    sex                   TEXT CHECK (sex IN ('F', 'M')),
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
    decision              TEXT NOT NULL DEFAULT 'pending' CHECK (decision IN ('eligible', 'ineligible', 'pending')),
    reasons               TEXT NOT NULL DEFAULT '',
    pending               TEXT NOT NULL DEFAULT '',
    flags                 TEXT NOT NULL DEFAULT '',
    who_stage             TEXT,
    version               INTEGER NOT NULL DEFAULT 1,
    updated_at            TEXT NOT NULL,
    updated_by            TEXT NOT NULL
) STRICT;
CREATE INDEX patients_cohort ON patients (site, grp, phase, decision);

CREATE TABLE dxa_scans (
    id         INTEGER PRIMARY KEY,
    patient_id INTEGER NOT NULL REFERENCES patients (id),
    scan_date  TEXT NOT NULL,
    region     TEXT NOT NULL CHECK (region IN ('lumbar_spine', 'femoral_neck', 'total_hip')),
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
    criterion  TEXT NOT NULL CHECK (criterion IN ('I1','I2','I3','I4','I5','E1','E2','E3','E4','E5')),
    answer     TEXT NOT NULL CHECK (answer IN ('yes', 'no', 'unknown')),
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
    prev_hash  TEXT NOT NULL,
    hash       TEXT NOT NULL
) STRICT;
CREATE INDEX audit_by_patient ON audit_log (patient);

-- The trail is append-only for everyone who uses marrow; `marrow audit verify`
-- catches anyone who goes around these triggers.
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
