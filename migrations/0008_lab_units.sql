-- marrow schema 8: lab results in one canonical unit per analyte (PROTOCOL.md,
-- "Reference standards": calcium and phosphorus mmol/L, 25-OH vitamin D nmol/L,
-- PTH pmol/L, P1NP and beta-CTX ng/mL, ALP U/L). `value` and `unit` now hold the
-- canonical value and unit; `original_value` and `original_unit` keep what the
-- hospital reported. The accepted units and factors are `domain::records::LAB_UNITS`;
-- this file repeats them once to convert the rows stored before it.
-- A stored row whose unit is not one its analyte accepts is left as it was
-- (original_* stay NULL, its unit says what it is); the model's inputs skip it.

ALTER TABLE labs ADD COLUMN original_value REAL;
ALTER TABLE labs ADD COLUMN original_unit TEXT;

CREATE TEMP TABLE lab_unit_factor (
    analyte   TEXT NOT NULL,
    unit_key  TEXT NOT NULL,
    canonical TEXT NOT NULL,
    factor    REAL NOT NULL
);
INSERT INTO lab_unit_factor (analyte, unit_key, canonical, factor) VALUES
    ('p1np', 'ng/ml', 'ng/mL', 1.0),
    ('p1np', 'ug/l', 'ng/mL', 1.0),
    ('beta_ctx', 'ng/ml', 'ng/mL', 1.0),
    ('beta_ctx', 'ug/l', 'ng/mL', 1.0),
    ('beta_ctx', 'pg/ml', 'ng/mL', 0.001),
    ('calcium', 'mmol/l', 'mmol/L', 1.0),
    ('calcium', 'mg/dl', 'mmol/L', 1.0 / 4.008),
    ('phosphorus', 'mmol/l', 'mmol/L', 1.0),
    ('phosphorus', 'mg/dl', 'mmol/L', 1.0 / 3.097),
    ('vitamin_d_25oh', 'nmol/l', 'nmol/L', 1.0),
    ('vitamin_d_25oh', 'ng/ml', 'nmol/L', 2.496),
    ('vitamin_d_25oh', 'ug/l', 'nmol/L', 2.496),
    ('pth', 'pmol/l', 'pmol/L', 1.0),
    ('pth', 'pg/ml', 'pmol/L', 1.0 / 9.43),
    ('pth', 'ng/l', 'pmol/L', 1.0 / 9.43),
    ('alp', 'u/l', 'U/L', 1.0),
    ('alp', 'iu/l', 'U/L', 1.0);

CREATE TEMP TABLE lab_converted AS
SELECT l.id AS id,
       CASE WHEN f.factor = 1.0 THEN l.value ELSE round(l.value * f.factor, 3) END AS value,
       f.canonical AS unit
FROM labs l
JOIN lab_unit_factor f
  ON f.analyte = l.analyte
 AND f.unit_key = replace(lower(replace(replace(replace(replace(l.unit, ' ', ''), 'µ', 'u'), 'μ', 'u'), 'Μ', 'u')), 'mcg', 'ug');

UPDATE labs
SET original_value = value,
    original_unit = unit,
    value = (SELECT c.value FROM lab_converted c WHERE c.id = labs.id),
    unit = (SELECT c.unit FROM lab_converted c WHERE c.id = labs.id)
WHERE id IN (SELECT id FROM lab_converted);

DROP TABLE lab_unit_factor;
DROP TABLE lab_converted;
