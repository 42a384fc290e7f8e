-- marrow schema 6: follow-up visits (secondary outcomes) at 6, 12, 24 and 36 months
-- after the index date. One row per patient and planned visit; a correction updates
-- the row (audited with before and after) and bumps its version, which the screens
-- check so two people cannot overwrite each other's entry unseen.
-- The visit date is stored as the hospital recorded it (like the index date); exports
-- shift every date of a patient by one offset derived from the study key.

CREATE TABLE follow_up_visits (
    id                     INTEGER PRIMARY KEY,
    patient_id             INTEGER NOT NULL REFERENCES patients (id),
    visit_month            INTEGER NOT NULL CHECK (visit_month = 6 OR visit_month = 12 OR visit_month = 24 OR visit_month = 36),
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
