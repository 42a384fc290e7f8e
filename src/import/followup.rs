//! `marrow import followup FILE.csv`: follow-up visits (`mrn`, `visit_month`,
//! `visit_date`, `vas` 0-10, `oks` 0-48, `new_fragility_fracture` yes|no), with the
//! row checks of the other imports: columns in any order and case, unknown columns
//! ignored, each row stored whole or rejected with its line and reason (and written to
//! `NAME.rejected.csv`), a repeat of the same visit with other values in one file
//! rejected, re-importing a file changes nothing. The MRN is hashed like the patients
//! import and never stored. An optional `site` column (or `--site`) names the site
//! of the MRN, which is unique within a site only (see [`super::row_site`]).

use super::{ImportError, ImportReport, Rejection, rejected_path};
use crate::db::Study;
use crate::db::study::Upsert;
use crate::domain::followup::{FOLLOWUP_COLUMNS, VisitInput, parse_visit_row};
use std::collections::HashMap;
use std::path::Path;

/// Rows per write transaction.
const CHUNK: usize = 5_000;

/// Imports a follow-up export.
pub fn import_followup(study: &mut Study, path: &Path) -> Result<ImportReport, ImportError> {
    import_followup_at_site(study, path, None)
}

/// [`import_followup`] of an export whose rows without a `site` value are from
/// `site` (`marrow import followup FILE --site SITE`).
pub fn import_followup_at_site(
    study: &mut Study,
    path: &Path,
    site: Option<&str>,
) -> Result<ImportReport, ImportError> {
    let protocol = study.protocol().clone();
    let bytes = super::read_export(path)?;
    let body = super::strip_bom(&bytes);
    let mut reader = super::csv_reader(body);
    let (headers, columns) =
        super::header_columns(&mut reader, path, "followup", FOLLOWUP_COLUMNS)?;
    let width = headers.len();
    let mut report = ImportReport {
        file: path.to_path_buf(),
        ..Default::default()
    };
    let mut rejected: Vec<Rejection> = Vec::new();
    let mut row_starts: Vec<(u64, u64)> = Vec::new();
    // (site, normalised MRN, month) -> (first line, values)
    let mut seen: HashMap<(Option<String>, String, u32), (u64, VisitInput)> = HashMap::new();
    let mut staged: Vec<(u64, String, Option<String>, u32, VisitInput)> = Vec::new();
    let mut record = csv::ByteRecord::new();
    while let Some(line) = super::next_row(
        &mut reader,
        &mut record,
        width,
        &mut row_starts,
        &mut rejected,
        seen.len(),
    ) {
        let row = super::Row::new(&columns, &record);
        let parsed = parse_visit_row(&row).and_then(|(mrn, month, visit)| {
            super::row_site(&row, &protocol, site).map(|site| (mrn, site, month, visit))
        });
        let parsed = match row.unreadable(&headers) {
            Some(reason) => Err(reason),
            None => parsed,
        };
        let (mrn, row_site, month, visit) = match parsed {
            Ok(p) => p,
            Err(reason) => {
                rejected.push(Rejection { line, reason });
                continue;
            }
        };
        let key = (row_site.clone(), mrn.trim().to_uppercase(), month);
        if let Some((first, earlier)) = seen.get(&key) {
            if *earlier != visit {
                rejected.push(Rejection {
                    line,
                    reason: format!(
                        "the same visit is on line {first} with different values; fix one of them"
                    ),
                });
            }
            continue;
        }
        seen.insert(key, (line, visit.clone()));
        staged.push((line, mrn, row_site, month, visit));
    }
    if super::looks_like_junk(row_starts.len(), seen.len()) {
        return Err(super::nothing_importable(path, row_starts.len(), &rejected));
    }
    report.rows = row_starts.len() as u64;
    let db_err = |error| ImportError::Database {
        path: path.to_path_buf(),
        error,
    };
    for chunk in staged.chunks(CHUNK) {
        let mut batch = study.batch().map_err(db_err)?;
        for (line, mrn, site, month, visit) in chunk {
            let found = batch.find_patient(mrn, site.as_deref()).map_err(db_err)?;
            if let Some(reason) = found.refusal("mrn", site.as_deref()) {
                rejected.push(Rejection {
                    line: *line,
                    reason,
                });
                continue;
            }
            let Some((id, sid)) = found.one() else {
                continue;
            };
            match batch
                .upsert_visit((id, &sid), *month, visit)
                .map_err(db_err)?
            {
                Ok(Upsert::Inserted(_)) => report.inserted += 1,
                Ok(Upsert::Updated(_)) => report.updated += 1,
                Ok(Upsert::Unchanged(_)) => report.unchanged += 1,
                Err(reason) => rejected.push(Rejection {
                    line: *line,
                    reason,
                }),
            }
        }
        batch.commit().map_err(db_err)?;
    }
    rejected.sort_by_key(|r| r.line);
    let reject_path = rejected_path(path);
    if !rejected.is_empty() {
        write_rejects(&reject_path, &headers, body, &row_starts, &rejected).map_err(|reason| {
            ImportError::RejectFile {
                path: reject_path.clone(),
                reason,
            }
        })?;
        report.rejected_file = Some(reject_path);
    } else if reject_path.exists() {
        let _ = std::fs::remove_file(&reject_path);
    }
    report.rejected = rejected;
    Ok(report)
}

/// The rejected rows, verbatim, with a `reason` column, written as the other imports
/// write them ([`super::write_rejected_rows`]: private to the importer, 0600, since
/// the rows hold the export's MRNs).
fn write_rejects(
    path: &Path,
    headers: &csv::ByteRecord,
    body: &[u8],
    row_starts: &[(u64, u64)],
    rejected: &[Rejection],
) -> Result<(), String> {
    let offsets: HashMap<u64, u64> = row_starts.iter().copied().collect();
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
    super::write_rejected_rows(path, headers, rejected.iter().map(|r| (row_at(r.line), r)))
        .map_err(|e| e.to_string())
}
