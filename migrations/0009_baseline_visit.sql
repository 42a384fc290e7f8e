-- marrow schema 9: the baseline visit. The change of VAS and OKS from baseline (a
-- secondary outcome) needs a month-0 visit, recorded at the index date, beside the
-- planned visits at 6, 12, 24 and 36 months; nothing is chased for it (it is not a
-- follow-up visit). SQLite cannot change a CHECK constraint, so the table is rebuilt
-- (marrow runs migrations with foreign keys off and checks them before each commit);
-- every row, id and version is kept.

CREATE TABLE follow_up_visits_v9 (
    id                     INTEGER PRIMARY KEY,
    patient_id             INTEGER NOT NULL REFERENCES patients (id),
    visit_month            INTEGER NOT NULL CHECK (visit_month = 0 OR visit_month = 6 OR visit_month = 12 OR visit_month = 24 OR visit_month = 36),
    -- YYYY-MM-DD
    visit_date             TEXT NOT NULL,
    -- VAS pain 0-10
    vas                    REAL CHECK (vas IS NULL OR (vas >= 0 AND vas <= 10)),
    -- Oxford Knee Score 0-48
    oks                    INTEGER CHECK (oks IS NULL OR (oks >= 0 AND oks <= 48)),
    new_fragility_fracture INTEGER CHECK (new_fragility_fracture IS NULL OR new_fragility_fracture = 0 OR new_fragility_fracture = 1),
    -- 'import' (marrow import followup) or 'marrow' (entered by hand)
    source                 TEXT NOT NULL CHECK (source = 'import' OR source = 'marrow'),
    version                INTEGER NOT NULL DEFAULT 1,
    updated_at             TEXT NOT NULL,
    updated_by             TEXT NOT NULL,
    UNIQUE (patient_id, visit_month)
) STRICT;

INSERT INTO follow_up_visits_v9 SELECT * FROM follow_up_visits;
DROP TABLE follow_up_visits;
ALTER TABLE follow_up_visits_v9 RENAME TO follow_up_visits;
