//! Row-checked CSV imports of the hospital's clinical exports (patients, DXA, labs).
//! Columns may come in any order with any case; columns the study does not know are
//! ignored and never stored. Each row is stored whole or rejected whole; rejected
//! rows are listed as `line N: reason` and written beside the input as
//! `NAME.rejected.csv` with a `reason` column (mode 0600: the rows hold the export's
//! identifiers), by [`write_rejected_rows`], which `marrow reads import` uses too.

pub mod followup;
use crate::db::study::{PatientMatch, PatientRow, Upsert};
use crate::db::{DbError, Study};
use crate::domain::records::{
    self, DXA_COLUMNS, DxaRecord, LAB_COLUMNS, LabRecord, PATIENT_COLUMNS, PatientRecord, RowFields,
};
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::path::{Path, PathBuf};

/// Which export is being imported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportKind {
    Patients,
    Dxa,
    Labs,
}

impl ImportKind {
    pub fn name(self) -> &'static str {
        match self {
            ImportKind::Patients => "patients",
            ImportKind::Dxa => "dxa",
            ImportKind::Labs => "labs",
        }
    }

    fn required(self) -> &'static [&'static str] {
        match self {
            ImportKind::Patients => PATIENT_COLUMNS,
            ImportKind::Dxa => DXA_COLUMNS,
            ImportKind::Labs => LAB_COLUMNS,
        }
    }
}

/// A row that was not stored, and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Rejection {
    /// 1-based line of the file where the row starts (the header is line 1).
    pub line: u64,
    pub reason: String,
}

/// What an import did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ImportReport {
    pub file: PathBuf,
    pub rows: u64,
    pub inserted: u64,
    pub updated: u64,
    pub unchanged: u64,
    pub rejected: Vec<Rejection>,
    /// Where the rejected rows were written, when there were any.
    pub rejected_file: Option<PathBuf>,
    /// DICOM images that waited for these patients and are now linked to them.
    pub images_linked: u64,
    /// Why waiting images were not linked now, when they were not.
    pub images_note: Option<String>,
}

/// Why an import could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("cannot read {path}: {reason}")]
    Unreadable { path: PathBuf, reason: String },
    #[error("{path}: {reason}")]
    BadHeader { path: PathBuf, reason: String },
    /// The database refused or failed (said once: the database error is part
    /// of this message, not a source to print again after it).
    #[error("{path}: {}", database_message(error))]
    Database { path: PathBuf, error: DbError },
    #[error("cannot write the rejected rows to {path}: {reason}")]
    RejectFile { path: PathBuf, reason: String },
    /// Not one of the first [`JUNK_ROWS`] rows could be taken: not the export it
    /// claims to be (or damaged throughout). Stopped there; nothing was stored.
    #[error(
        "{path}: none of the first {rows} rows could be imported (first reasons: {reasons}); nothing was stored: is it the right export, saved as comma-separated CSV?"
    )]
    NothingImportable {
        path: PathBuf,
        rows: usize,
        reasons: String,
    },
}

/// Rows read without one that could be taken, after which an import stops.
pub const JUNK_ROWS: usize = 1000;

/// Whether an import has read [`JUNK_ROWS`] rows and taken none of them.
pub(crate) fn looks_like_junk(rows_read: usize, accepted: usize) -> bool {
    accepted == 0 && rows_read >= JUNK_ROWS
}

/// The refusal of an import that took none of its first rows, with the commonest
/// reasons (at most three kinds, each with its first line and how many rows had it).
pub(crate) fn nothing_importable(path: &Path, rows: usize, rejected: &[Rejection]) -> ImportError {
    let mut kinds: Vec<(String, &Rejection, usize)> = Vec::new();
    for r in rejected {
        let k = reason_kind(&r.reason);
        match kinds.iter_mut().find(|(kind, ..)| *kind == k) {
            Some((_, _, n)) => *n += 1,
            None => kinds.push((k, r, 1)),
        }
    }
    kinds.sort_by(|a, b| b.2.cmp(&a.2).then(a.1.line.cmp(&b.1.line)));
    let reasons = kinds
        .iter()
        .take(3)
        .map(|(_, r, n)| {
            let more = if *n > 1 {
                format!(" ({n} rows like it)")
            } else {
                String::new()
            };
            format!("line {}: {}{more}", r.line, r.reason)
        })
        .collect::<Vec<_>>()
        .join("; ");
    ImportError::NothingImportable {
        path: path.to_path_buf(),
        rows,
        reasons,
    }
}

/// Refusals of one kind listed one by one before the rest are only counted.
pub const LISTED_PER_KIND: usize = 20;

/// A reason without what varies from row to row (numbers, quoted values): the kind
/// of refusal, so `line 7: unknown site 'MGH'` and `line 9: unknown site 'X'` are one.
pub fn reason_kind(reason: &str) -> String {
    let mut out = String::with_capacity(reason.len());
    let mut chars = reason.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\'' {
            // a quoted value: up to its closing quote
            out.push_str("'…'");
            for q in chars.by_ref() {
                if q == '\'' {
                    break;
                }
            }
        } else if c.is_ascii_digit() {
            out.push('N');
            while chars
                .peek()
                .is_some_and(|d| d.is_ascii_digit() || *d == '.' || *d == '-')
            {
                chars.next();
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The lines an import prints for its refused rows: each refusal as `line N:
/// reason` until [`LISTED_PER_KIND`] of its kind have been listed, then for each
/// kind with more, one line counting them (all of them stay in the rejected file).
pub fn rejection_lines(rejected: &[Rejection]) -> Vec<String> {
    let mut listed: Vec<(String, usize, usize)> = Vec::new(); // kind, listed, not listed
    let mut out = Vec::new();
    for r in rejected {
        let k = reason_kind(&r.reason);
        let i = match listed.iter().position(|(kind, ..)| *kind == k) {
            Some(i) => i,
            None => {
                listed.push((k, 0, 0));
                listed.len() - 1
            }
        };
        let entry = &mut listed[i];
        if entry.1 < LISTED_PER_KIND {
            entry.1 += 1;
            out.push(format!("line {}: {}", r.line, r.reason));
        } else {
            entry.2 += 1;
        }
    }
    for (kind, _, more) in listed {
        if more > 0 {
            out.push(format!(
                "... and {more} more rows refused: {kind} (all are in the rejected file)"
            ));
        }
    }
    out
}

fn database_message(e: &DbError) -> String {
    match e {
        DbError::DiskFull => {
            "the disk is full; rows already committed are kept and a re-run finishes the rest"
                .into()
        }
        other => other.to_string(),
    }
}

/// Rows per write transaction: short enough that other users' writes get in.
const CHUNK: usize = 20_000;

/// One CSV row as text, for the parsers. A field that is not valid UTF-8 (an
/// export saved in Latin-1 or GBK) refuses the row only when the parser reads
/// it: the name column such an export carries, which marrow never reads, does
/// not cost the row.
pub(crate) struct Row<'a> {
    columns: &'a HashMap<String, usize>,
    /// `None`: the field is not valid UTF-8.
    fields: Vec<Option<&'a str>>,
    /// The first column read that is not valid UTF-8.
    unreadable: std::cell::Cell<Option<usize>>,
}

impl<'a> Row<'a> {
    pub(crate) fn new(columns: &'a HashMap<String, usize>, record: &'a csv::ByteRecord) -> Self {
        Row {
            columns,
            fields: record.iter().map(|f| std::str::from_utf8(f).ok()).collect(),
            unreadable: std::cell::Cell::new(None),
        }
    }

    /// After parsing: why the row is refused when the parser read a column
    /// that is not valid UTF-8 (whatever the parser made of the gap).
    pub(crate) fn unreadable(&self, headers: &csv::ByteRecord) -> Option<String> {
        let i = self.unreadable.get()?;
        let col = String::from_utf8_lossy(&headers[i]).trim().to_string();
        Some(format!(
            "column '{col}' is not valid UTF-8 (save the export as UTF-8)"
        ))
    }
}

impl RowFields for Row<'_> {
    fn field(&self, name: &str) -> Option<&str> {
        let i = *self.columns.get(name)?;
        match self.fields.get(i)? {
            Some(text) => Some(text),
            None => {
                if self.unreadable.get().is_none() {
                    self.unreadable.set(Some(i));
                }
                None
            }
        }
    }
}

#[derive(Clone)]
enum Parsed {
    Patient(String, PatientRecord),
    Dxa(String, DxaRecord),
    Lab(String, LabRecord),
}

impl Parsed {
    fn mrn(&self) -> &str {
        match self {
            Parsed::Patient(m, ..) | Parsed::Dxa(m, _) | Parsed::Lab(m, _) => m,
        }
    }

    /// The key that identifies the row's record within one file: a patient is an
    /// MRN at a site (`site` of a result row: the site it names, if any).
    fn identity(&self, site: Option<&str>) -> String {
        let mrn = self.mrn().trim().to_uppercase();
        let site = site.unwrap_or("");
        match self {
            Parsed::Patient(_, r) => format!("{}|{mrn}", r.site),
            Parsed::Dxa(_, r) => format!("{site}|{mrn}|{}|{}", r.scan_date, r.region),
            Parsed::Lab(_, r) => format!("{site}|{mrn}|{}|{}", r.date, r.analyte),
        }
    }

    /// Whether two rows of the same record carry the same values.
    fn same_values(&self, other: &Parsed) -> bool {
        match (self, other) {
            (Parsed::Patient(_, a), Parsed::Patient(_, b)) => a == b,
            (Parsed::Dxa(_, a), Parsed::Dxa(_, b)) => a == b,
            (Parsed::Lab(_, a), Parsed::Lab(_, b)) => a == b,
            _ => false,
        }
    }
}

/// A checked row on its way to the writer; a patient row comes with its MRN hashed,
/// its JSON and its screening as a new patient, so the writer only writes. A result
/// row carries its MRN and the site it names (its `site` column, else the import's
/// `--site`), if any.
enum Staged {
    Patient(PatientRow),
    Dxa(String, Option<String>, DxaRecord),
    Lab(String, Option<String>, LabRecord),
}

/// The site a result row (DXA, lab, follow-up visit, read) names: its `site` column
/// when it has a value (a study site, or the row is refused), else `default` (the
/// import's `--site`), else none: the MRN must then name one patient at one site.
pub(crate) fn row_site(
    row: &impl RowFields,
    protocol: &crate::domain::protocol::Protocol,
    default: Option<&str>,
) -> Result<Option<String>, String> {
    match row.field("site").map(str::trim).filter(|s| !s.is_empty()) {
        Some(s) => protocol
            .parse_site(s)
            .map(Some)
            .map_err(|e| format!("site: {e}")),
        None => Ok(default.map(str::to_string)),
    }
}

/// The path rejected rows of `input` go to: `patients.csv` gives `patients.rejected.csv`.
pub fn rejected_path(input: &Path) -> PathBuf {
    let stem = input
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "import".into());
    input.with_file_name(format!("{stem}.rejected.csv"))
}

/// Imports one CSV file. `on_progress` is called with (rows done, rows total).
pub fn import_csv(
    study: &mut Study,
    kind: ImportKind,
    path: &Path,
    on_progress: impl FnMut(u64, u64),
) -> Result<ImportReport, ImportError> {
    import_rows(study, kind, path, CHUNK, None, on_progress)
}

/// [`import_csv`] of a DXA or labs export whose rows without a `site` value are from
/// `site` (`marrow import dxa FILE --site SITE`); `None` is [`import_csv`].
pub fn import_csv_at_site(
    study: &mut Study,
    kind: ImportKind,
    path: &Path,
    site: Option<&str>,
    on_progress: impl FnMut(u64, u64),
) -> Result<ImportReport, ImportError> {
    import_rows(study, kind, path, CHUNK, site, on_progress)
}

/// [`import_csv`] with `chunk` rows per transaction (tests use small chunks).
pub fn import_csv_in_chunks(
    study: &mut Study,
    kind: ImportKind,
    path: &Path,
    chunk_rows: usize,
    on_progress: impl FnMut(u64, u64),
) -> Result<ImportReport, ImportError> {
    import_rows(study, kind, path, chunk_rows, None, on_progress)
}

fn import_rows(
    study: &mut Study,
    kind: ImportKind,
    path: &Path,
    chunk_rows: usize,
    default_site: Option<&str>,
    mut on_progress: impl FnMut(u64, u64),
) -> Result<ImportReport, ImportError> {
    let chunk_rows = chunk_rows.max(1);
    let started = std::time::Instant::now();
    let bytes = read_export(path)?;
    let body = strip_bom(&bytes);
    let mut reader = csv_reader(body);
    let (raw_headers, columns) = header_columns(&mut reader, path, kind.name(), kind.required())?;

    // Two stages on two threads: one checks rows (on their own, and against earlier
    // rows of the same file) and hands them over in chunks; this one writes each chunk
    // in a short transaction.
    let protocol = study.protocol().clone();
    let width = raw_headers.len();
    let approx_rows = body
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        .saturating_sub(1) as u64;
    let (to_writer, chunks) = std::sync::mpsc::sync_channel::<Vec<(u64, Staged)>>(2);
    let columns = &columns;
    let headers = &raw_headers;
    let protocol = &protocol;
    let hasher = study.identifier_hasher().clone();
    let today = crate::domain::clock::today_local();
    let check_rows = move || -> (Vec<(u64, u64)>, Vec<Rejection>, bool) {
        // Where each row starts (line, byte offset), to copy rejected rows out verbatim later.
        let mut row_starts: Vec<(u64, u64)> = Vec::new();
        let mut rejected: Vec<Rejection> = Vec::new();
        let mut seen: HashMap<String, (u64, Parsed)> = HashMap::new();
        let mut chunk: Vec<(u64, Staged)> = Vec::with_capacity(chunk_rows);
        let mut record = csv::ByteRecord::new();
        while let Some(line) = next_row(
            &mut reader,
            &mut record,
            width,
            &mut row_starts,
            &mut rejected,
            seen.len(),
        ) {
            let row = Row::new(columns, &record);
            let result = match kind {
                ImportKind::Patients => records::parse_patient(&row, protocol, today)
                    .map(|(m, r)| Parsed::Patient(m, r)),
                ImportKind::Dxa => records::parse_dxa(&row, today).map(|(m, r)| Parsed::Dxa(m, r)),
                ImportKind::Labs => records::parse_lab(&row, today).map(|(m, r)| Parsed::Lab(m, r)),
            };
            let result = result.and_then(|p| match p {
                Parsed::Patient(..) => Ok((p, None)),
                _ => row_site(&row, protocol, default_site).map(|site| (p, site)),
            });
            let result = match row.unreadable(headers) {
                Some(reason) => Err(reason),
                None => result,
            };
            let (p, site) = match result {
                Err(reason) => {
                    rejected.push(Rejection { line, reason });
                    continue;
                }
                Ok(p) => p,
            };
            match seen.entry(p.identity(site.as_deref())) {
                Entry::Occupied(e) => {
                    let (first, earlier) = e.get();
                    if !earlier.same_values(&p) {
                        rejected.push(Rejection {
                            line,
                            reason: format!(
                                "the same record is on line {first} with different values; fix one of them"
                            ),
                        });
                    } // an exact repeat changes nothing
                    continue;
                }
                Entry::Vacant(e) => {
                    e.insert((line, p.clone()));
                }
            }
            let staged = match p {
                Parsed::Patient(mrn, rec) => {
                    Staged::Patient(PatientRow::new(&hasher, protocol, &mrn, rec))
                }
                Parsed::Dxa(mrn, rec) => Staged::Dxa(mrn, site, rec),
                Parsed::Lab(mrn, rec) => Staged::Lab(mrn, site, rec),
            };
            chunk.push((line, staged));
            if chunk.len() == chunk_rows && to_writer.send(std::mem::take(&mut chunk)).is_err() {
                break; // the writer stopped on an error
            }
        }
        if !chunk.is_empty() {
            let _ = to_writer.send(chunk);
        }
        // Nothing was sent to the writer: no row of the first JUNK_ROWS was taken.
        let junk = looks_like_junk(row_starts.len(), seen.len());
        (row_starts, rejected, junk)
    };

    let mut report = ImportReport {
        file: path.to_path_buf(),
        ..Default::default()
    };
    let db_err = |error| ImportError::Database {
        path: path.to_path_buf(),
        error,
    };
    let mut rejected: Vec<Rejection> = Vec::new();
    let checkpointer = study.begin_bulk_write().map_err(db_err)?;
    let (written, checked) = std::thread::scope(|scope| {
        let checker = scope.spawn(check_rows);
        let mut done = 0u64;
        let written = (|| -> Result<(), ImportError> {
            for chunk in chunks.iter() {
                let mut batch = study.batch().map_err(db_err)?;
                let n = chunk.len();
                let mut patients: Vec<PatientRow> = Vec::new();
                let mut others: Vec<(u64, Option<Staged>)> = Vec::with_capacity(n);
                for (line, staged) in chunk {
                    match staged {
                        Staged::Patient(row) => {
                            patients.push(row);
                            others.push((line, None));
                        }
                        other => others.push((line, Some(other))),
                    }
                }
                let mut patient_outcomes = batch
                    .upsert_patients(&patients)
                    .map_err(db_err)?
                    .into_iter();
                for (line, staged) in &others {
                    let outcome = match staged {
                        None => patient_outcomes.next().map(Ok),
                        Some(Staged::Dxa(mrn, site, rec)) => {
                            match batch.find_patient(mrn, site.as_deref()).map_err(db_err)? {
                                PatientMatch::One(id, sid) => {
                                    Some(Ok(batch.upsert_dxa((id, &sid), rec).map_err(db_err)?))
                                }
                                other => other.refusal("mrn", site.as_deref()).map(Err),
                            }
                        }
                        Some(Staged::Lab(mrn, site, rec)) => {
                            match batch.find_patient(mrn, site.as_deref()).map_err(db_err)? {
                                PatientMatch::One(id, sid) => {
                                    Some(Ok(batch.upsert_lab((id, &sid), rec).map_err(db_err)?))
                                }
                                other => other.refusal("mrn", site.as_deref()).map(Err),
                            }
                        }
                        Some(Staged::Patient(_)) => unreachable!("patients were taken out above"),
                    };
                    match outcome {
                        Some(Ok(Upsert::Inserted(_))) => report.inserted += 1,
                        Some(Ok(Upsert::Updated(_))) => report.updated += 1,
                        Some(Ok(Upsert::Unchanged(_))) => report.unchanged += 1,
                        Some(Err(reason)) => rejected.push(Rejection {
                            line: *line,
                            reason,
                        }),
                        None => {} // one outcome per patient row: never short
                    }
                }
                batch.commit().map_err(db_err)?;
                checkpointer.nudge();
                done += n as u64;
                on_progress(done, approx_rows.max(done));
            }
            Ok(())
        })();
        // On an error the channel closes here and the checker stops at its next chunk.
        drop(chunks);
        (written, checker.join())
    });
    let t = std::time::Instant::now();
    drop(checkpointer);
    tracing::info!(
        elapsed_ms = t.elapsed().as_millis() as u64,
        "import: last checkpoint"
    );
    study.end_bulk_write().map_err(db_err)?;
    written?;
    let (row_starts, mut rejected_by_check, junk) = match checked {
        Ok(r) => r,
        Err(_) => {
            return Err(ImportError::Unreadable {
                path: path.to_path_buf(),
                reason: "the row checker stopped unexpectedly (see the log)".into(),
            });
        }
    };
    if junk {
        return Err(nothing_importable(
            path,
            row_starts.len(),
            &rejected_by_check,
        ));
    }
    report.rows = row_starts.len() as u64;
    rejected.append(&mut rejected_by_check);

    tracing::info!(
        file = %path.display(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "import: rows written"
    );
    rejected.sort_by_key(|r| r.line);
    let reject_path = rejected_path(path);
    if !rejected.is_empty() {
        write_rejects(&reject_path, &raw_headers, body, &row_starts, &rejected).map_err(|e| {
            ImportError::RejectFile {
                path: reject_path.clone(),
                reason: e.to_string(),
            }
        })?;
        report.rejected_file = Some(reject_path);
    } else if reject_path.exists() {
        // A list from an earlier run would send someone chasing rows that are now in.
        let _ = std::fs::remove_file(&reject_path);
    }
    report.rejected = rejected;
    if kind == ImportKind::Patients {
        // DICOM images that arrived before their patient are linked now.
        match crate::dicom::link_waiting(study) {
            Ok(l) => {
                report.images_linked = l.linked;
                report.images_note = l.deferred;
            }
            Err(e) => {
                tracing::warn!("linking waiting images: {e}");
                report.images_note = Some(format!(
                    "waiting images were not linked ({e}); the next `marrow import dicom` links them"
                ));
            }
        }
    }
    Ok(report)
}

fn write_rejects(
    path: &Path,
    headers: &csv::ByteRecord,
    body: &[u8],
    row_starts: &[(u64, u64)],
    rejected: &[Rejection],
) -> std::io::Result<()> {
    let offsets: HashMap<u64, u64> = row_starts.iter().copied().collect();
    // Re-reads one row, verbatim, from where it starts in the file.
    let row_at = |line: u64| -> csv::ByteRecord {
        let mut rec = csv::ByteRecord::new();
        if let Some(&off) = offsets.get(&line) {
            let mut r = csv::ReaderBuilder::new()
                .flexible(true)
                .has_headers(false)
                .from_reader(&body[(off as usize).min(body.len())..]);
            let _ = r.read_byte_record(&mut rec);
        }
        rec
    };
    write_rejected_rows(path, headers, rejected.iter().map(|r| (row_at(r.line), r)))
}

/// Writes the rejected rows of an import to `path`: the header with a `reason` column
/// added, then each row as it was in the file (padded to the header's width; an
/// unreadable row is empty) with `line N: reason`. The rows hold the export's
/// identifiers (MRN, names), so the file is private to the user who imported (0600,
/// whatever the umask): written to a new temporary file beside it and renamed over
/// any earlier list.
pub fn write_rejected_rows<'a>(
    path: &Path,
    headers: &csv::ByteRecord,
    rows: impl IntoIterator<Item = (csv::ByteRecord, &'a Rejection)>,
) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let _ = std::fs::remove_file(&tmp);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    let written = (|| -> csv::Result<()> {
        let mut w = csv::WriterBuilder::new().flexible(true).from_writer(file);
        let mut h = headers.clone();
        h.push_field(b"reason");
        w.write_byte_record(&h)?;
        for (mut rec, r) in rows {
            while rec.len() < headers.len() {
                rec.push_field(b"");
            }
            rec.push_field(format!("line {}: {}", r.line, r.reason).as_bytes());
            w.write_byte_record(&rec)?;
        }
        w.flush()?;
        Ok(())
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(std::io::Error::other(e.to_string()));
    }
    std::fs::rename(&tmp, path)
}

/// Reads the next row of an export into `record`: blank lines are skipped, an
/// unreadable row or one of the wrong width is rejected with its line (and reading
/// goes on), and each row's start (line, byte offset) is kept in `row_starts` so a
/// rejected row can be copied out verbatim later. `None` at the end of the file, or
/// once [`JUNK_ROWS`] rows have been read and none taken (`accepted`: rows the caller
/// took so far; it checks [`looks_like_junk`] to tell the two apart).
pub(crate) fn next_row(
    reader: &mut csv::Reader<&[u8]>,
    record: &mut csv::ByteRecord,
    width: usize,
    row_starts: &mut Vec<(u64, u64)>,
    rejected: &mut Vec<Rejection>,
    accepted: usize,
) -> Option<u64> {
    loop {
        if looks_like_junk(row_starts.len(), accepted) {
            return None;
        }
        match reader.read_byte_record(record) {
            Ok(false) => return None,
            Ok(true) => {}
            Err(e) => {
                let line = e.position().map(|p| p.line()).unwrap_or(0);
                rejected.push(Rejection {
                    line,
                    reason: format!("unreadable CSV: {e}"),
                });
                continue;
            }
        }
        let (line, offset) = record
            .position()
            .map(|p| (p.line(), p.byte()))
            .unwrap_or((0, 0));
        if record
            .iter()
            .all(|f| f.iter().all(|b| b.is_ascii_whitespace()))
        {
            continue; // a blank line is not a row
        }
        row_starts.push((line, offset));
        if record.len() != width {
            rejected.push(Rejection {
                line,
                reason: format!(
                    "has {} fields but the header has {width} (a stray comma or an unclosed quote?)",
                    record.len()
                ),
            });
            continue;
        }
        return Some(line);
    }
}

/// Reads a whole export file.
pub(crate) fn read_export(path: &Path) -> Result<Vec<u8>, ImportError> {
    std::fs::read(path).map_err(|e| ImportError::Unreadable {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// The file without its UTF-8 byte-order mark (allowed and dropped).
pub(crate) fn strip_bom(bytes: &[u8]) -> &[u8] {
    bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes)
}

/// A CSV reader over an export: a header line, rows of any width.
pub(crate) fn csv_reader(body: &[u8]) -> csv::Reader<&[u8]> {
    csv::ReaderBuilder::new()
        .flexible(true)
        .has_headers(true)
        .from_reader(body)
}

/// The header and its columns by lower-cased, trimmed name; refuses a repeated
/// column and names the missing `required` ones (with what the header has).
pub(crate) fn header_columns(
    reader: &mut csv::Reader<&[u8]>,
    path: &Path,
    kind: &str,
    required: &[&str],
) -> Result<(csv::ByteRecord, HashMap<String, usize>), ImportError> {
    let raw_headers = reader
        .byte_headers()
        .map_err(|e| ImportError::BadHeader {
            path: path.to_path_buf(),
            reason: format!("the header line cannot be read: {e}"),
        })?
        .clone();
    if let [only] = raw_headers.iter().collect::<Vec<_>>().as_slice() {
        for (sep, name) in [(b';', "semicolon"), (b'\t', "tab")] {
            let parts = only.split(|b| *b == sep).count();
            if parts >= 3 {
                return Err(ImportError::BadHeader {
                    path: path.to_path_buf(),
                    reason: format!(
                        "the file looks {name}-separated (its header splits into {parts} columns at each {}): export it as comma-separated CSV",
                        if sep == b';' { "';'" } else { "tab" }
                    ),
                });
            }
        }
    }
    let mut columns = HashMap::new();
    for (i, h) in raw_headers.iter().enumerate() {
        let name = String::from_utf8_lossy(h).trim().to_lowercase();
        if !name.is_empty() && columns.insert(name.clone(), i).is_some() {
            return Err(ImportError::BadHeader {
                path: path.to_path_buf(),
                reason: format!("column '{name}' appears twice in the header"),
            });
        }
    }
    let missing: Vec<&str> = required
        .iter()
        .copied()
        .filter(|c| !columns.contains_key(*c))
        .collect();
    if !missing.is_empty() {
        let mut found: Vec<&String> = columns.keys().collect();
        found.sort();
        return Err(ImportError::BadHeader {
            path: path.to_path_buf(),
            reason: format!(
                "not a {kind} export: it lacks the column(s) {} (header has: {})",
                missing.join(", "),
                found
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        });
    }
    Ok((raw_headers, columns))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn twenty_refusals_of_a_kind_are_listed_and_the_rest_counted() {
        let mut rejected: Vec<Rejection> = (0..25)
            .map(|i| Rejection {
                line: i + 2,
                reason: format!("unknown site 'S{i}'"),
            })
            .collect();
        rejected.push(Rejection {
            line: 40,
            reason: "has 3 fields but the header has 15 (a stray comma or an unclosed quote?)"
                .into(),
        });
        let lines = rejection_lines(&rejected);
        assert_eq!(lines.len(), 22, "{lines:?}");
        assert_eq!(lines[0], "line 2: unknown site 'S0'");
        assert!(lines[20].starts_with("line 40: has 3 fields"), "{lines:?}");
        assert_eq!(
            lines[21],
            "... and 5 more rows refused: unknown site '…' (all are in the rejected file)"
        );
        assert_eq!(
            reason_kind("birth_date 1960-05-01 is after index_date 1950-01-01"),
            "birth_date N is after index_date N"
        );
    }

    /// The rejected rows of a patients import hold the export's MRNs and names: the
    /// file is 0600 whatever the umask, also when an earlier list was open to others.
    #[test]
    fn the_rejected_rows_of_a_patients_import_are_private_to_the_importer() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("s.db");
        crate::db::Study::init(&db, None, crate::domain::protocol::Protocol::default()).unwrap();
        let mut study = Study::open(&db, None, None).unwrap();
        let csv = dir.path().join("patients.csv");
        std::fs::write(
            &csv,
            "mrn,name,site,phase,group,sex,birth_date,index_date\n\
             MRN-REJ-1,Zhang Wei,NOWHERE,retrospective,OA,F,1960-05-01,2024-05-01\n",
        )
        .unwrap();
        let rejected = rejected_path(&csv);
        // An earlier list readable by everyone is replaced, not reused.
        std::fs::write(&rejected, "old").unwrap();
        std::fs::set_permissions(&rejected, std::fs::Permissions::from_mode(0o644)).unwrap();
        let report = import_csv(&mut study, ImportKind::Patients, &csv, |_, _| {}).unwrap();
        assert_eq!(report.rejected.len(), 1, "{:?}", report.rejected);
        assert_eq!(report.rejected_file.as_deref(), Some(rejected.as_path()));
        let meta = std::fs::metadata(&rejected).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        let text = std::fs::read_to_string(&rejected).unwrap();
        assert!(text.contains("MRN-REJ-1"), "{text}");
        assert!(text.lines().next().unwrap().ends_with(",reason"), "{text}");
        let mut tmp = rejected.as_os_str().to_owned();
        tmp.push(".tmp");
        assert!(!PathBuf::from(tmp).exists());
    }
}
