-- marrow schema 5: the CNN's second opinion. Jobs (inference, training), the models a
-- study knows, and one prediction per image, task and model version.
-- Predictions are blinded like the other reads: src/db/reading.rs shows them to a
-- reader only after their own read of the case.

CREATE TABLE model_jobs (
    id               INTEGER PRIMARY KEY,
    kind             TEXT NOT NULL CHECK (kind = 'infer' OR kind = 'train'),
    -- NULL: both tasks
    task             TEXT CHECK (task IS NULL OR task = 'kl' OR task = 'op'),
    -- infer: 'pending' (images without a prediction of the current model) or 'all'
    scope            TEXT NOT NULL,
    state            TEXT NOT NULL DEFAULT 'queued'
                     CHECK (state IN ('queued', 'running', 'done', 'failed', 'cancelled')),
    -- asked for (auto, cpu, cuda); the resolved one once running (cpu (burn-ndarray), cuda:0)
    backend          TEXT NOT NULL,
    model_version    TEXT,
    total            INTEGER NOT NULL DEFAULT 0,
    done             INTEGER NOT NULL DEFAULT 0,
    -- images that could not be decoded (named in message)
    failed           INTEGER NOT NULL DEFAULT 0,
    message          TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0 CHECK (cancel_requested IN (0, 1)),
    created_by       TEXT NOT NULL,
    created_at       TEXT NOT NULL,
    started_at       TEXT,
    finished_at      TEXT,
    -- the running process writes it with each progress step; a running job whose
    -- heartbeat is old belonged to a process that died
    heartbeat_at     TEXT,
    runner_pid       INTEGER
) STRICT;
CREATE INDEX model_jobs_state ON model_jobs (state);

-- The model versions a study has: the shipped ones (phantom-trained) and those
-- `marrow train` wrote. The active one per task is used by `marrow infer`.
CREATE TABLE models (
    id         INTEGER PRIMARY KEY,
    task       TEXT NOT NULL CHECK (task = 'kl' OR task = 'op'),
    name       TEXT NOT NULL,
    version    TEXT NOT NULL,
    -- relative to the study's model folder (<db>.models/)
    dir        TEXT NOT NULL UNIQUE,
    sha256     TEXT NOT NULL,
    -- the card's training description and validation metrics (JSON)
    card       TEXT NOT NULL,
    active     INTEGER NOT NULL DEFAULT 0 CHECK (active IN (0, 1)),
    created_by TEXT NOT NULL,
    created_at TEXT NOT NULL,
    UNIQUE (task, name, version)
) STRICT;
CREATE UNIQUE INDEX models_one_active ON models (task) WHERE active = 1;

CREATE TABLE predictions (
    id            INTEGER PRIMARY KEY,
    instance_id   INTEGER NOT NULL REFERENCES image_instances (id),
    task          TEXT NOT NULL CHECK (task = 'kl' OR task = 'op'),
    -- the reading case the image belongs to: a knee, or the patient (OP)
    side          TEXT NOT NULL CHECK (side = 'left' OR side = 'right' OR side = 'patient'),
    model         TEXT NOT NULL,
    model_version TEXT NOT NULL,
    class         INTEGER NOT NULL CHECK (class >= 0),
    -- JSON array of the class probabilities, index = class
    probs         TEXT NOT NULL,
    backend       TEXT NOT NULL,
    job_id        INTEGER REFERENCES model_jobs (id),
    created_at    TEXT NOT NULL,
    UNIQUE (instance_id, task, model, model_version)
) STRICT;
CREATE INDEX predictions_task_version ON predictions (task, model_version);
