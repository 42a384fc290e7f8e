-- marrow schema 4: taking a case stays quick with many readers on one database.
--
-- 1. Cases are refreshed (missing ones created) only when something they depend on
--    has changed since the last refresh: a patient's decision or group, an image
--    stored or linked to its patient, an image's laterality. Triggers raise the flag
--    `reading_refresh_needed` in meta; the refresh lowers it. Before, every
--    `read next` re-scanned every eligible patient's images inside the write lock.
-- 2. Each case counts its taken slots, so the next case is one index walk instead
--    of two counts for every open case.

INSERT OR REPLACE INTO meta (key, value) VALUES ('reading_refresh_needed', '1');

CREATE TRIGGER reading_refresh_on_image_insert AFTER INSERT ON image_instances
WHEN NEW.patient_id IS NOT NULL
 AND (SELECT value FROM meta WHERE key = 'reading_refresh_needed') IS NOT '1'
BEGIN
    INSERT OR REPLACE INTO meta (key, value) VALUES ('reading_refresh_needed', '1');
END;

CREATE TRIGGER reading_refresh_on_image_update AFTER UPDATE OF patient_id, laterality ON image_instances
WHEN (SELECT value FROM meta WHERE key = 'reading_refresh_needed') IS NOT '1'
BEGIN
    INSERT OR REPLACE INTO meta (key, value) VALUES ('reading_refresh_needed', '1');
END;

CREATE TRIGGER reading_refresh_on_patient_update AFTER UPDATE OF decision, grp ON patients
WHEN (OLD.decision IS NOT NEW.decision OR OLD.grp IS NOT NEW.grp)
 AND (SELECT value FROM meta WHERE key = 'reading_refresh_needed') IS NOT '1'
BEGIN
    INSERT OR REPLACE INTO meta (key, value) VALUES ('reading_refresh_needed', '1');
END;

ALTER TABLE reading_cases ADD COLUMN slots_taken INTEGER NOT NULL DEFAULT 0;
UPDATE reading_cases SET slots_taken =
    (SELECT count(*) FROM reading_assignments a WHERE a.case_id = reading_cases.id);

CREATE TRIGGER reading_slot_taken AFTER INSERT ON reading_assignments
BEGIN
    UPDATE reading_cases SET slots_taken = slots_taken + 1 WHERE id = NEW.case_id;
END;

CREATE TRIGGER reading_slot_released AFTER DELETE ON reading_assignments
BEGIN
    UPDATE reading_cases SET slots_taken = slots_taken - 1 WHERE id = OLD.case_id;
END;

CREATE INDEX reading_cases_next ON reading_cases (state, slots_taken DESC, id);
