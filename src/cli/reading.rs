//! `marrow cases`, `marrow read`, `marrow adjudicate` and `marrow reads`: blinded
//! reading and adjudication from the command line. Blinding is the data layer's
//! (`db::reading`): these commands print what it returns and nothing else.

use super::{EXIT_SOME_REJECTED, Global, open};
use crate::db::Study;
use crate::db::reading::{
    Blinded, CaseSummary, CaseView, FinalRecord, ImportedRead, PatientKey, ReadRecord,
    describe_grade,
};
use crate::db::study::Upsert;
use crate::domain::reading::{
    FinalGrade, Grade, KL_REFERENCE, Oarsi, OpImpression, Outcome, ReadInput, Side, read_words,
};
use crate::domain::status::StatusReport;
use crate::import::{Rejection, rejected_path};
use anyhow::{Context, Result, anyhow};
use clap::{Args, Subcommand};
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt::Write as _;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// `marrow cases [refresh] [--json]`.
#[derive(Debug, Args)]
pub struct CasesArgs {
    #[command(subcommand)]
    pub action: Option<CasesCommand>,
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum CasesCommand {
    /// Create the reading cases of eligible patients with images that have none yet (idempotent).
    Refresh,
}

#[derive(Debug, Subcommand)]
pub enum ReadCommand {
    /// Take the next case to read (the one you hold without a read, else a free slot).
    Next {
        #[arg(long)]
        json: bool,
    },
    /// Your worklist: the cases assigned to you, those waiting for your read first.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Show a case: images and your read; the other reads, the DXA stage and the model only after your read.
    Show {
        /// The case, e.g. C00017.
        case: String,
        #[arg(long)]
        json: bool,
    },
    /// Submit your read of a case (locked once submitted; --correct --reason makes a new version).
    Submit(SubmitArgs),
    /// Free the slot a reader holds without having read the case (a reader who left or is away), so another reader can take it. Adjudicators and admins; audited.
    Release {
        /// The case, e.g. C00017.
        case: String,
        /// The reader whose slot is freed.
        #[arg(long)]
        reader: String,
        /// Why (kept in the audit trail).
        #[arg(long)]
        reason: String,
    },
}

#[derive(Debug, Args)]
pub struct SubmitArgs {
    /// The case, e.g. C00017.
    pub case: String,
    /// Kellgren-Lawrence grade 0-4 (knee cases).
    #[arg(long, value_parser = clap::value_parser!(u8).range(0..=4))]
    pub kl: Option<u8>,
    /// The image cannot be graded, and why.
    #[arg(long, value_name = "REASON", conflicts_with = "kl")]
    pub not_assessable: Option<String>,
    /// OARSI joint-space narrowing, medial (0-3).
    #[arg(long, value_parser = clap::value_parser!(u8).range(0..=3))]
    pub jsn_medial: Option<u8>,
    /// OARSI joint-space narrowing, lateral (0-3).
    #[arg(long, value_parser = clap::value_parser!(u8).range(0..=3))]
    pub jsn_lateral: Option<u8>,
    /// OARSI osteophytes, medial (0-3).
    #[arg(long, value_parser = clap::value_parser!(u8).range(0..=3))]
    pub osteophyte_medial: Option<u8>,
    /// OARSI osteophytes, lateral (0-3).
    #[arg(long, value_parser = clap::value_parser!(u8).range(0..=3))]
    pub osteophyte_lateral: Option<u8>,
    /// normal, osteopenia or osteoporosis (the grade of a patient case; optional on a knee).
    #[arg(long, value_name = "IMPRESSION")]
    pub op_impression: Option<String>,
    /// How sure you are, 1 (unsure) to 5 (certain).
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..=5))]
    pub confidence: Option<u8>,
    /// Correct your submitted read: a new version (both are kept), with --reason.
    #[arg(long, requires = "reason")]
    pub correct: bool,
    /// Why the read is corrected (kept in the audit trail).
    #[arg(long)]
    pub reason: Option<String>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum AdjudicateCommand {
    /// The cases waiting for adjudication, with why the reads disagree.
    List {
        #[arg(long)]
        json: bool,
    },
    /// A case with its image list, every read with its reader, the DXA stage and the model.
    Show {
        case: String,
        #[arg(long)]
        json: bool,
    },
    /// Record the final grade of a case, with a rationale (signed: your name, UTC time, "adjudicated").
    Submit {
        case: String,
        /// The final KL grade 0-4 (knee cases).
        #[arg(long, value_parser = clap::value_parser!(u8).range(0..=4))]
        kl: Option<u8>,
        /// The image cannot be graded, and why.
        #[arg(long, value_name = "REASON", conflicts_with = "kl")]
        not_assessable: Option<String>,
        /// The final OP stage: normal, osteopenia or osteoporosis (patient cases; optional on a knee).
        #[arg(long, value_name = "STAGE")]
        op_stage: Option<String>,
        /// Why (required; part of the signed record).
        #[arg(long)]
        rationale: String,
        /// The case version you decided on (`adjudicate show`); refused if the case changed since.
        #[arg(long, value_name = "N")]
        expect_version: Option<i64>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ReadsCommand {
    /// Import reads made before the study used marrow (CSV: reader, mrn or study_id, side, kl, op_impression, read_date; site when an MRN is at both sites).
    Import {
        file: PathBuf,
        /// The site of rows that name an MRN and have no `site` value (an MRN is unique within a site only).
        #[arg(long)]
        site: Option<String>,
    },
    /// Write the final grades (consensus and adjudicated) to a CSV file: no MRNs, no staff names.
    Export {
        #[arg(long, value_name = "FILE.csv")]
        out: PathBuf,
    },
}

fn print_json<T: serde::Serialize>(v: &T) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// `marrow cases [refresh]`.
pub fn cases(g: &Global, a: CasesArgs) -> Result<u8> {
    let mut study = open(g)?;
    match a.action {
        Some(CasesCommand::Refresh) => {
            let r = study.refresh_cases()?;
            if a.json {
                print_json(&r)?;
            } else {
                println!("{} cases added, {} cases in all", r.added.len(), r.total);
            }
        }
        None => {
            let rows = study.cases()?;
            if a.json {
                print_json(&rows)?;
            } else {
                print!("{}", case_table(&rows));
            }
        }
    }
    Ok(0)
}

fn case_table(rows: &[CaseSummary]) -> String {
    use super::output::{Align, table};
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.case.clone(),
                r.side.to_string(),
                r.state.map(|x| x.code()).unwrap_or("(blinded)").to_string(),
                r.study_id.as_deref().unwrap_or("(blinded)").to_string(),
                format!("{}/{}", r.reads_submitted, r.reads_needed),
                match (r.assigned_to_you, r.your_read_version) {
                    (_, Some(v)) => format!("read (v{v})"),
                    (true, None) => "waiting for your read".into(),
                    (false, None) => String::new(),
                },
            ]
        })
        .collect();
    let mut s = table(
        "",
        &[
            ("case", Align::Left),
            ("side", Align::Left),
            ("state", Align::Left),
            ("study ID", Align::Left),
            ("reads", Align::Right),
            ("yours", Align::Left),
        ],
        &cells,
    );
    let _ = writeln!(s, "{} cases", rows.len());
    s
}

fn read_line(r: &ReadRecord) -> String {
    let mut s = format!(
        "{} v{}: {} (submitted {}",
        r.reader,
        r.version,
        read_words(&r.read),
        r.submitted_at
    );
    if r.source == "import" {
        let _ = write!(
            s,
            ", imported; read on {}",
            r.read_date.as_deref().unwrap_or("?")
        );
    }
    s.push(')');
    if let Some(why) = &r.correction_reason {
        let _ = write!(s, " correction: {why}");
    }
    s
}

fn final_line(f: &FinalRecord) -> String {
    let mut s = format!(
        "{}: {} by {} at {}",
        f.meaning,
        describe_grade(&f.grade),
        f.decided_by,
        f.decided_at
    );
    if let Some(r) = &f.rationale {
        let _ = write!(s, " (rationale: {r})");
    }
    s
}

fn blinded<T>(b: &Blinded<T>, shown: impl FnOnce(&T) -> String) -> String {
    match b {
        Blinded::Shown(v) => shown(v),
        Blinded::Hidden(why) => format!("({why})"),
    }
}

/// The text of a case view.
fn case_text(v: &CaseView) -> String {
    let mut s = String::new();
    let what = if v.side.is_knee() {
        format!("{} knee (KL grade)", v.side)
    } else {
        "patient (OP stage)".to_string()
    };
    let _ = writeln!(
        s,
        "{}  {}  state: {}  version {}",
        v.case,
        what,
        blinded(&v.state, |x| x.code().to_string()),
        v.version
    );
    let _ = writeln!(s, "study ID: {}", blinded(&v.study_id, |x| x.clone()));
    let line = |i: &crate::db::reading::CaseImage| {
        format!(
            "{:<10} {:<4} {:<8} {:<2} {:<4} {}",
            i.study_date.as_deref().unwrap_or("?"),
            i.modality.as_deref().unwrap_or("?"),
            i.body_part.as_deref().unwrap_or("?"),
            i.laterality.as_deref().unwrap_or(""),
            i.view_position.as_deref().unwrap_or(""),
            i.store_path
        )
    };
    let _ = writeln!(s, "images: {}", v.images.len());
    if v.images.is_empty() {
        let _ = writeln!(
            s,
            "  none can grade this case ({})",
            if v.side.is_knee() {
                format!(
                    "a DX or CR radiograph of the {} knee, or a bilateral one",
                    v.side
                )
            } else {
                "a DX or CR radiograph of the hip, pelvis or lumbar spine".to_string()
            }
        );
    }
    for i in &v.images {
        let _ = writeln!(s, "  {}", line(i));
    }
    if !v.other_images.is_empty() {
        let _ = writeln!(
            s,
            "other images of this patient, not used for this case: {}",
            v.other_images.len()
        );
        for o in &v.other_images {
            let _ = writeln!(s, "  {}  ({})", line(&o.image), o.why);
        }
    }
    let _ = writeln!(
        s,
        "reads: {} of {} submitted",
        v.reads_submitted, v.reads_needed
    );
    if v.your_reads.is_empty() {
        let _ = writeln!(s, "your read: none yet");
    }
    for r in &v.your_reads {
        let _ = writeln!(s, "your read {}", read_line(r));
    }
    match &v.other_reads {
        Blinded::Shown(rs) if rs.is_empty() => {
            let _ = writeln!(s, "other reads: none yet");
        }
        Blinded::Shown(rs) => {
            for r in rs {
                let _ = writeln!(s, "read by {}", read_line(r));
            }
        }
        Blinded::Hidden(why) => {
            let _ = writeln!(s, "other reads: ({why})");
        }
    }
    if let Blinded::Shown(old) = &v.superseded_reads {
        for r in old {
            let _ = writeln!(s, "  replaced: read by {}", read_line(r));
        }
    }
    let _ = writeln!(
        s,
        "DXA stage: {}",
        blinded(&v.dxa_stage, |x| x
            .clone()
            .unwrap_or_else(|| "none recorded".into()))
    );
    let _ = writeln!(
        s,
        "model: {}",
        blinded(&v.model_prediction, |x| match x {
            Some(p) => model_words(p),
            None => "no prediction yet (inference not run)".into(),
        })
    );
    if let Blinded::Shown(d) = &v.disagreements
        && !d.is_empty()
    {
        for x in d {
            let _ = writeln!(s, "disagreement: {x}");
        }
    }
    let _ = writeln!(
        s,
        "final: {}",
        blinded(&v.final_grade, |x| match x {
            Some(f) => final_line(f),
            None => "not yet".into(),
        })
    );
    if v.side.is_knee() {
        let _ = writeln!(s, "KL reference:");
        for (k, text) in KL_REFERENCE {
            let _ = writeln!(s, "  {k}  {text}");
        }
    } else {
        let _ = writeln!(
            s,
            "OP impression: normal, osteopenia or osteoporosis (WHO: T >= -1.0; -2.5 < T < -1.0; T <= -2.5)"
        );
    }
    s
}

/// The model's probabilities as percentages, class by class: "kl 0.1.0 · KL: KL0 0.3%,
/// KL1 <0.1%, ... · OP: ..." (a task the model has no prediction of is left out).
fn model_words(p: &crate::db::reading::ModelPrediction) -> String {
    use super::output::probability_percent;
    use crate::inference::Task;
    let mut s = p.model.clone();
    for (name, task, probs) in [
        ("KL", Task::Kl, &p.kl_probabilities),
        ("OP", Task::Op, &p.op_probabilities),
    ] {
        if probs.is_empty() {
            continue;
        }
        let classes = task.classes();
        let cells: Vec<String> = probs
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let c = classes
                    .get(i)
                    .cloned()
                    .unwrap_or_else(|| format!("class {i}"));
                format!("{c} {}", probability_percent(*v))
            })
            .collect();
        let _ = write!(s, " · {name}: {}", cells.join(", "));
    }
    s
}

fn parse_op(v: Option<&str>, what: &str) -> Result<Option<OpImpression>> {
    v.map(|s| {
        s.parse::<OpImpression>()
            .map_err(|e| anyhow!("{what}: {e}"))
    })
    .transpose()
}

/// `marrow read ...`.
pub fn read(g: &Global, action: ReadCommand) -> Result<u8> {
    let mut study = open(g)?;
    match action {
        ReadCommand::Release {
            case,
            reader,
            reason,
        } => {
            study.release_slot(&case, &reader, &reason)?;
            println!("{reader}'s slot of {case} is free for another reader");
            Ok(0)
        }
        ReadCommand::Next { json } => {
            let taken = study.take_next_case()?;
            if json {
                return print_json(&taken).map(|_| 0);
            }
            match taken {
                None => println!("no case waiting for you"),
                Some(t) => {
                    let c = &t.summary;
                    println!(
                        "{} {} ({}): {}; `marrow read show {}` to see it",
                        c.case,
                        c.side,
                        if c.side.is_knee() {
                            "KL grade"
                        } else {
                            "OP impression"
                        },
                        if t.newly_assigned {
                            format!("slot {} is yours", t.slot)
                        } else {
                            "you hold it and have not read it yet".into()
                        },
                        c.case
                    );
                }
            }
            Ok(0)
        }
        ReadCommand::List { json } => {
            let rows = study.reader_worklist()?;
            if json {
                print_json(&rows)?;
            } else {
                print!("{}", case_table(&rows));
            }
            Ok(0)
        }
        ReadCommand::Show { case, json } => show(&study, &case, json),
        ReadCommand::Submit(a) => {
            let read = ReadInput {
                kl: match (a.kl, a.not_assessable) {
                    (Some(k), _) => Some(Grade::Value(k)),
                    (None, Some(why)) => Some(Grade::NotAssessable(why)),
                    (None, None) => None,
                },
                oarsi: Oarsi {
                    jsn_medial: a.jsn_medial,
                    jsn_lateral: a.jsn_lateral,
                    osteophyte_medial: a.osteophyte_medial,
                    osteophyte_lateral: a.osteophyte_lateral,
                },
                op_impression: parse_op(a.op_impression.as_deref(), "--op-impression")?,
                confidence: a.confidence,
            };
            if a.reason.is_some() && !a.correct {
                return Err(anyhow!(
                    "--reason goes with --correct (a first read needs no reason)"
                ));
            }
            let out = study.submit_read(&a.case, &read, a.reason.as_deref())?;
            if a.json {
                return print_json(&out).map(|_| 0);
            }
            println!(
                "{} v{} submitted and locked: {}",
                out.read.case,
                out.read.version,
                read_words(&out.read.read)
            );
            match &out.outcome {
                Outcome::Incomplete { have, need } => {
                    println!("{have} of {need} reads in; the case waits for the others")
                }
                Outcome::Adjudicate { reasons } => {
                    println!("the reads disagree; the case goes to adjudication:");
                    for r in reasons {
                        println!("  {r}");
                    }
                }
                Outcome::Consensus { grade } => {
                    println!(
                        "the reads agree: final grade {} (consensus)",
                        describe_grade(grade)
                    )
                }
            }
            if let Some(n) = &out.note {
                println!("{n}");
            }
            Ok(0)
        }
    }
}

fn show(study: &Study, case: &str, json: bool) -> Result<u8> {
    let v = study.case_view(case)?;
    if json {
        print_json(&v)?;
    } else {
        print!("{}", case_text(&v));
    }
    Ok(0)
}

/// `marrow adjudicate ...`.
pub fn adjudicate(g: &Global, action: AdjudicateCommand) -> Result<u8> {
    let mut study = open(g)?;
    match action {
        AdjudicateCommand::List { json } => {
            let q = study.adjudication_queue()?;
            if json {
                print_json(&q)?;
            } else {
                for item in &q {
                    let c = &item.summary;
                    println!(
                        "{:<8} {:<8} {:<16} version {}",
                        c.case,
                        c.side,
                        c.study_id.as_deref().unwrap_or(""),
                        c.version
                    );
                    for r in &item.reasons {
                        println!("    {r}");
                    }
                }
                println!("{} cases waiting for adjudication", q.len());
            }
            Ok(0)
        }
        AdjudicateCommand::Show { case, json } => show(&study, &case, json),
        AdjudicateCommand::Submit {
            case,
            kl,
            not_assessable,
            op_stage,
            rationale,
            expect_version,
            json,
        } => {
            let grade = FinalGrade {
                kl: match (kl, not_assessable) {
                    (Some(k), _) => Some(Grade::Value(k)),
                    (None, Some(why)) => Some(Grade::NotAssessable(why)),
                    (None, None) => None,
                },
                op_stage: parse_op(op_stage.as_deref(), "--op-stage")?,
            };
            let rec = study.adjudicate(&case, &grade, &rationale, expect_version)?;
            if json {
                print_json(&rec)?;
            } else {
                println!("{} {}", rec.case, final_line(&rec));
            }
            Ok(0)
        }
    }
}

/// `marrow reads import|export`.
pub fn reads(g: &Global, action: ReadsCommand) -> Result<u8> {
    let mut study = open(g)?;
    match action {
        ReadsCommand::Import { file, site } => import_reads(&mut study, &file, site.as_deref()),
        ReadsCommand::Export { out } => {
            let rows = study.final_grades()?;
            let file = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&out)
                .with_context(|| format!("cannot write {}", out.display()))?;
            let mut w = csv::Writer::from_writer(file);
            w.write_record([
                "case",
                "study_id",
                "site",
                "group",
                "phase",
                "side",
                "kl",
                "not_assessable",
                "op_stage",
                "method",
                "decided_at",
                "reads",
            ])?;
            for r in &rows {
                w.write_record([
                    r.case.as_str(),
                    &r.study_id,
                    &r.site,
                    r.group.code(),
                    &r.phase,
                    r.side.code(),
                    &r.kl.map(|k| k.to_string()).unwrap_or_default(),
                    r.not_assessable.as_deref().unwrap_or(""),
                    r.op_stage.map(|o| o.code()).unwrap_or(""),
                    r.method.code(),
                    &r.decided_at,
                    &r.reads.to_string(),
                ])?;
            }
            w.flush()
                .with_context(|| format!("cannot write {}", out.display()))?;
            println!("{} final grades written to {}", rows.len(), out.display());
            Ok(0)
        }
    }
}

/// The lines `marrow status` adds for reading.
pub fn status_lines(r: &StatusReport) -> String {
    format!(
        "reading: {} reads pending, {} cases waiting for adjudication, {} cases final\n",
        r.reads_pending, r.adjudication_pending, r.final_graded
    )
}

/// Checks one CSV row of a reads import.
fn parse_row(
    columns: &HashMap<String, usize>,
    rec: &csv::StringRecord,
    protocol: &crate::domain::protocol::Protocol,
    default_site: Option<&str>,
) -> std::result::Result<ImportedRead, String> {
    let field = |name: &str| -> &str { columns.get(name).and_then(|i| rec.get(*i)).unwrap_or("") };
    let reader = field("reader").trim();
    if reader.is_empty() {
        return Err("reader is empty".into());
    }
    let patient = match (field("mrn").trim(), field("study_id").trim()) {
        (m, _) if !m.is_empty() => PatientKey::Mrn(m.to_string()),
        (_, s) if !s.is_empty() => PatientKey::StudyId(s.to_string()),
        _ => return Err("the row needs an mrn or a study_id".into()),
    };
    // The site of an MRN (a study ID names its site already).
    let site = match field("site").trim() {
        "" => default_site.map(str::to_string),
        s => Some(protocol.parse_site(s).map_err(|e| format!("site: {e}"))?),
    };
    let side: Side = field("side").parse()?;
    let kl = match field("kl").trim().to_ascii_lowercase().as_str() {
        "" => None,
        "na" | "n/a" | "not assessable" | "not_assessable" => Some(Grade::NotAssessable(
            "not assessable (imported read)".into(),
        )),
        k => match k.parse::<i64>() {
            Ok(n) if (0..=4).contains(&n) => Some(Grade::Value(n as u8)),
            Ok(n) => return Err(format!("kl {n} is outside 0-4")),
            Err(_) => return Err(format!("kl '{k}' is not a KL grade (0-4 or NA)")),
        },
    };
    let op_impression = match field("op_impression").trim() {
        "" => None,
        s => Some(s.parse::<OpImpression>()?),
    };
    let confidence = match field("confidence").trim() {
        "" => None,
        s => match s.parse::<u8>() {
            Ok(c) if (1..=5).contains(&c) => Some(c),
            _ => return Err(format!("confidence '{s}' is not 1-5")),
        },
    };
    let read_date = match field("read_date").trim() {
        "" => None,
        s => Some(
            chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
                .map_err(|_| format!("read_date '{s}' is not a date (YYYY-MM-DD)"))?
                .to_string(),
        ),
    };
    Ok(ImportedRead {
        reader: reader.to_string(),
        patient,
        site,
        side,
        read: ReadInput {
            kl,
            oarsi: Oarsi::default(),
            op_impression,
            confidence,
        },
        read_date,
    })
}

/// `marrow reads import FILE.csv`: the same row checks, messages, rejected-rows
/// file and exit status as the other CSV imports.
fn import_reads(study: &mut Study, path: &Path, site: Option<&str>) -> Result<u8> {
    super::check_text_export(path)?;
    let protocol = study.protocol().clone();
    let site = site
        .map(|s| protocol.parse_site(s).map_err(|e| anyhow!("--site: {e}")))
        .transpose()?;
    let site = site.as_deref();
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let body = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&bytes);
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .has_headers(true)
        .from_reader(body);
    let headers = reader
        .headers()
        .with_context(|| format!("{}: the header line cannot be read", path.display()))?
        .clone();
    if let [only] = headers.iter().collect::<Vec<_>>().as_slice() {
        for (sep, name) in [(';', "semicolon"), ('\t', "tab")] {
            let parts = only.split(sep).count();
            if parts >= 3 {
                return Err(anyhow!(
                    "{}: the file looks {name}-separated (its header splits into {parts} columns at each {}): export it as comma-separated CSV",
                    path.display(),
                    if sep == ';' { "';'" } else { "tab" }
                ));
            }
        }
    }
    let mut columns: HashMap<String, usize> = HashMap::new();
    for (i, h) in headers.iter().enumerate() {
        let name = h.trim().to_lowercase();
        if !name.is_empty() && columns.insert(name.clone(), i).is_some() {
            return Err(anyhow!(
                "{}: column '{name}' appears twice in the header",
                path.display()
            ));
        }
    }
    let mut missing: Vec<&str> = ["reader", "side", "kl"]
        .into_iter()
        .filter(|c| !columns.contains_key(*c))
        .collect();
    if !columns.contains_key("mrn") && !columns.contains_key("study_id") {
        missing.push("mrn or study_id");
    }
    if !missing.is_empty() {
        return Err(anyhow!(
            "{}: not a reads export: it lacks the column(s) {}",
            path.display(),
            missing.join(", ")
        ));
    }
    let width = headers.len();
    let mut rejected: Vec<Rejection> = Vec::new();
    let mut originals: HashMap<u64, csv::StringRecord> = HashMap::new();
    let mut good: Vec<(u64, ImportedRead)> = Vec::new();
    let mut seen: HashMap<String, (u64, ImportedRead)> = HashMap::new();
    let mut rows = 0u64;
    for rec in reader.records() {
        // not the export it claims to be: stop, store nothing (as the other imports)
        if rows as usize >= crate::import::JUNK_ROWS && good.is_empty() && seen.is_empty() {
            rejected.sort_by_key(|r| r.line);
            let reasons: Vec<String> = crate::import::rejection_lines(&rejected)
                .into_iter()
                .take(3)
                .collect();
            return Err(anyhow!(
                "{}: none of the first {rows} rows could be imported (first reasons: {}); nothing was stored: is it the right export, saved as comma-separated CSV?",
                path.display(),
                reasons.join("; ")
            ));
        }
        let rec = match rec {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map(|p| p.line()).unwrap_or(0);
                rows += 1;
                rejected.push(Rejection {
                    line,
                    reason: format!("unreadable CSV (not UTF-8?): {e}"),
                });
                continue;
            }
        };
        let line = rec.position().map(|p| p.line()).unwrap_or(0);
        if rec.iter().all(|f| f.trim().is_empty()) {
            continue;
        }
        rows += 1;
        originals.insert(line, rec.clone());
        if rec.len() != width {
            rejected.push(Rejection {
                line,
                reason: format!(
                    "has {} fields but the header has {width} (a stray comma or an unclosed quote?)",
                    rec.len()
                ),
            });
            continue;
        }
        let parsed = match parse_row(&columns, &rec, &protocol, site) {
            Ok(p) => p,
            Err(reason) => {
                rejected.push(Rejection { line, reason });
                continue;
            }
        };
        let key = format!(
            "{}|{}|{}",
            parsed.reader.to_lowercase(),
            match &parsed.patient {
                PatientKey::Mrn(m) => format!(
                    "mrn:{}:{}",
                    parsed.site.as_deref().unwrap_or(""),
                    m.trim().to_uppercase()
                ),
                PatientKey::StudyId(s) => format!("sid:{}", s.trim().to_uppercase()),
            },
            parsed.side
        );
        match seen.entry(key) {
            Entry::Occupied(e) => {
                let (first, earlier) = e.get();
                if *earlier != parsed {
                    rejected.push(Rejection {
                        line,
                        reason: format!(
                            "the same reader, patient and side are on line {first} with different values; fix one of them"
                        ),
                    });
                }
                continue;
            }
            Entry::Vacant(e) => {
                e.insert((line, parsed.clone()));
            }
        }
        good.push((line, parsed));
    }
    let batch: Vec<ImportedRead> = good.iter().map(|(_, r)| r.clone()).collect();
    let outcomes = study.import_reads(&batch)?;
    let (mut added, mut unchanged) = (0u64, 0u64);
    for ((line, _), outcome) in good.iter().zip(outcomes) {
        match outcome {
            Ok(Upsert::Inserted(_)) | Ok(Upsert::Updated(_)) => added += 1,
            Ok(Upsert::Unchanged(_)) => unchanged += 1,
            Err(reason) => rejected.push(Rejection {
                line: *line,
                reason,
            }),
        }
    }
    rejected.sort_by_key(|r| r.line);
    for line in crate::import::rejection_lines(&rejected) {
        println!("{line}");
    }
    println!(
        "{}: {} rows: {} added, {} unchanged, {} rejected",
        path.display(),
        rows,
        added,
        unchanged,
        rejected.len()
    );
    let reject_path = rejected_path(path);
    if rejected.is_empty() {
        if reject_path.exists() {
            let _ = std::fs::remove_file(&reject_path);
        }
        return Ok(0);
    }
    write_rejects(&reject_path, &headers, &originals, &rejected).with_context(|| {
        format!(
            "cannot write the rejected rows to {}",
            reject_path.display()
        )
    })?;
    println!("rejected rows written to {}", reject_path.display());
    Ok(EXIT_SOME_REJECTED)
}

/// The rejected rows as they were, with a `reason` column (the CSV imports' writer:
/// mode 0600, the rows hold identifiers).
fn write_rejects(
    path: &Path,
    headers: &csv::StringRecord,
    originals: &HashMap<u64, csv::StringRecord>,
    rejected: &[Rejection],
) -> Result<()> {
    let rows = rejected.iter().map(|r| {
        let rec = originals
            .get(&r.line)
            .map(|o| o.as_byte_record().clone())
            .unwrap_or_default();
        (rec, r)
    });
    crate::import::write_rejected_rows(path, headers.as_byte_record(), rows)?;
    Ok(())
}

/// `marrow agreement`.
#[derive(Debug, clap::Args)]
pub struct AgreementArgs {
    /// Print the figures as JSON.
    #[arg(long)]
    pub json: bool,
    /// Bootstrap resamples for the 95% confidence intervals.
    #[arg(long, default_value_t = crate::domain::agreement::DEFAULT_RESAMPLES)]
    pub resamples: usize,
}

/// `marrow agreement [--json]`: reader vs reader and reader vs final grade.
pub fn agreement(g: &Global, a: AgreementArgs) -> Result<u8> {
    let study = open(g)?;
    let summary = study.agreement(a.resamples)?;
    if a.json {
        print_json(&summary)?;
    } else {
        print!("{}", agreement_text(&summary));
    }
    Ok(0)
}

fn estimate(e: &crate::domain::agreement::Estimate, percent: bool) -> String {
    let f = |v: f64| {
        if percent {
            format!("{:.1}%", v * 100.0)
        } else {
            format!("{v:.3}")
        }
    };
    match (e.value, &e.ci95) {
        (None, _) => "—".to_string(),
        (Some(v), Some(ci)) => format!("{} ({}–{})", f(v), f(ci.lower), f(ci.upper)),
        (Some(v), None) => f(v),
    }
}

/// The text form of the agreement figures.
pub fn agreement_text(s: &crate::db::agreement::AgreementSummary) -> String {
    use super::output::Align;
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} cases, {} with a final grade; {} reads called not assessable are left out. 95% CIs: bootstrap, {} resamples.",
        s.cases, s.cases_with_final, s.not_assessable_reads, s.bootstrap_resamples
    );
    for scale in [&s.kl, &s.op] {
        let _ = writeln!(out, "\n{}", scale.scale);
        let rows: Vec<&crate::db::agreement::Comparison> = scale
            .readers_pooled
            .iter()
            .chain(&scale.reader_vs_reader)
            .chain(&scale.reader_vs_final)
            .collect();
        if rows.is_empty() {
            let _ = writeln!(out, "  no pairs of grades yet");
            continue;
        }
        let cells: Vec<Vec<String>> = rows
            .iter()
            .map(|c| {
                let r = &c.report;
                let (sens, spec) = match &r.binary {
                    Some(b) => (
                        estimate(&b.sensitivity, true),
                        estimate(&b.specificity, true),
                    ),
                    None => ("—".into(), "—".into()),
                };
                vec![
                    format!("{} vs {}", c.first, c.second),
                    r.n.to_string(),
                    estimate(&r.percent_agreement, true),
                    estimate(&r.cohen_kappa, false),
                    estimate(&r.quadratic_weighted_kappa, false),
                    sens,
                    spec,
                ]
            })
            .collect();
        out.push_str(&super::output::table(
            "  ",
            &[
                ("comparison", Align::Left),
                ("n", Align::Right),
                ("agreement", Align::Left),
                ("kappa", Align::Left),
                ("weighted kappa (quad.)", Align::Left),
                ("sensitivity", Align::Left),
                ("specificity", Align::Left),
            ],
            &cells,
        ));
        let _ = writeln!(out, "  {}", scale.reference_note());
        if let Some(p) = &scale.readers_pooled {
            let _ = writeln!(
                out,
                "  confusion matrix, first read (rows) vs second read (columns):"
            );
            for (i, row) in p.report.confusion_matrix.counts().iter().enumerate() {
                let cells: Vec<String> = row.iter().map(|n| format!("{n:>5}")).collect();
                let _ = writeln!(out, "    {i}: {}", cells.join(""));
            }
        }
    }
    out.push_str(
        "\nSensitivity and specificity: OA is KL >= 2, osteoporosis is the positive OP class; the second of each pair is the reference.\n",
    );
    out
}
