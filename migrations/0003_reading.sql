-- marrow schema 3: blinded reading and adjudication.
-- A case is one knee of an eligible OA patient, or an eligible OP patient as a whole
-- (see src/db/reading.rs for which patients get which cases). Each case has
-- `reads_per_case` slots (protocol `[reading]`); a reader holds at most one slot of a
-- case. Reads are never changed: a correction is a new version. A final grade is a
-- consensus of the reads (written by the rules) or an adjudication, which is never
-- changed either.

CREATE TABLE reading_cases (
    id         INTEGER PRIMARY KEY,
    patient_id INTEGER NOT NULL REFERENCES patients (id),
    side       TEXT NOT NULL CHECK (side = 'left' OR side = 'right' OR side = 'patient'),
    -- open: slots free or reads outstanding; adjudication: the reads disagree; final: decided
    state      TEXT NOT NULL DEFAULT 'open' CHECK (state = 'open' OR state = 'adjudication' OR state = 'final'),
    -- bumped whenever a read, a final or the state changes (the adjudicator's version check)
    version    INTEGER NOT NULL DEFAULT 1,
    created_at TEXT NOT NULL,
    created_by TEXT NOT NULL,
    UNIQUE (patient_id, side)
) STRICT;
CREATE INDEX reading_cases_state ON reading_cases (state);

-- Who holds which slot of a case. The primary key stops two readers getting the
-- same slot; UNIQUE (case_id, reader) stops one reader reading a case twice.
CREATE TABLE reading_assignments (
    case_id     INTEGER NOT NULL REFERENCES reading_cases (id),
    slot        INTEGER NOT NULL CHECK (slot >= 1),
    reader      TEXT NOT NULL REFERENCES users (name),
    assigned_at TEXT NOT NULL,
    PRIMARY KEY (case_id, slot),
    UNIQUE (case_id, reader)
) STRICT;
CREATE INDEX reading_assignments_reader ON reading_assignments (reader);

-- Every version of every read. The current read of a reader is their highest version.
CREATE TABLE reads (
    id                 INTEGER PRIMARY KEY,
    case_id            INTEGER NOT NULL REFERENCES reading_cases (id),
    reader             TEXT NOT NULL REFERENCES users (name),
    version            INTEGER NOT NULL CHECK (version >= 1),
    kl                 INTEGER CHECK (kl >= 0 AND kl <= 4),
    not_assessable     TEXT CHECK (not_assessable IS NULL OR length(trim(not_assessable)) > 0),
    jsn_medial         INTEGER CHECK (jsn_medial >= 0 AND jsn_medial <= 3),
    jsn_lateral        INTEGER CHECK (jsn_lateral >= 0 AND jsn_lateral <= 3),
    osteophyte_medial  INTEGER CHECK (osteophyte_medial >= 0 AND osteophyte_medial <= 3),
    osteophyte_lateral INTEGER CHECK (osteophyte_lateral >= 0 AND osteophyte_lateral <= 3),
    op_impression      TEXT CHECK (op_impression = 'normal' OR op_impression = 'osteopenia' OR op_impression = 'osteoporosis'),
    -- NULL only for reads imported from before marrow
    confidence         INTEGER CHECK (confidence >= 1 AND confidence <= 5),
    -- why this version corrects the previous one (NULL for version 1)
    correction_reason  TEXT,
    -- 'marrow' or 'import'
    source             TEXT NOT NULL CHECK (source = 'marrow' OR source = 'import'),
    -- YYYY-MM-DD of an imported read
    read_date          TEXT,
    submitted_at       TEXT NOT NULL,
    -- the OS user who submitted it (differs from reader for an import or --as)
    submitted_by       TEXT NOT NULL,
    CHECK (kl IS NULL OR not_assessable IS NULL),
    CHECK (confidence IS NOT NULL OR source = 'import'),
    CHECK ((version = 1) = (correction_reason IS NULL)),
    UNIQUE (case_id, reader, version)
) STRICT;
CREATE TRIGGER reads_no_update BEFORE UPDATE ON reads
BEGIN SELECT RAISE(ABORT, 'a submitted read is locked: a correction is a new version'); END;
CREATE TRIGGER reads_no_delete BEFORE DELETE ON reads
BEGIN SELECT RAISE(ABORT, 'a submitted read is locked: a correction is a new version'); END;

-- The final grade of a case: a consensus of its reads, or an adjudication (the
-- signed record of 21 CFR 11.50: who, when in UTC, and the meaning "adjudicated").
CREATE TABLE case_finals (
    case_id        INTEGER PRIMARY KEY REFERENCES reading_cases (id),
    kl             INTEGER CHECK (kl >= 0 AND kl <= 4),
    not_assessable TEXT,
    op_stage       TEXT CHECK (op_stage = 'normal' OR op_stage = 'osteopenia' OR op_stage = 'osteoporosis'),
    method         TEXT NOT NULL CHECK (method = 'consensus' OR method = 'adjudicated'),
    -- the meaning of the act: 'adjudicated' or 'consensus'
    meaning        TEXT NOT NULL,
    rationale      TEXT,
    decided_by     TEXT NOT NULL,
    decided_by_real TEXT NOT NULL,
    decided_at     TEXT NOT NULL,
    -- JSON list of the ids of the reads the decision was made on
    reads          TEXT NOT NULL,
    CHECK (kl IS NULL OR not_assessable IS NULL),
    CHECK (method = 'consensus' OR length(trim(coalesce(rationale, ''))) > 0)
) STRICT;
-- An adjudication is never changed or removed; a consensus is withdrawn (audited)
-- when a corrected read breaks it.
CREATE TRIGGER case_finals_adjudicated_no_update BEFORE UPDATE ON case_finals
WHEN OLD.method = 'adjudicated'
BEGIN SELECT RAISE(ABORT, 'an adjudicated final grade is never changed'); END;
CREATE TRIGGER case_finals_adjudicated_no_delete BEFORE DELETE ON case_finals
WHEN OLD.method = 'adjudicated'
BEGIN SELECT RAISE(ABORT, 'an adjudicated final grade is never changed'); END;
