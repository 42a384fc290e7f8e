//! The command line: `marrow <command>`. Each command opens the study as the OS user,
//! does one thing, and exits with 0 (done), 1 (a check failed), 2 (could not run) or
//! 3 (an import that refused some rows).

mod demo;
mod demo_cohort;
pub mod export;
pub mod followup;
pub mod report;
pub use demo::GENERATED_PATIENTS as DEMO_GENERATED_PATIENTS;
pub mod model;
pub mod outcomes;
mod output;
mod reading;
mod view;

use crate::db::study::{PatientFilter, Upsert};
use crate::db::{DbError, Study};
use crate::domain::eligibility::{Answer, Criterion, Decision, Flag};
use crate::domain::protocol::{Group, Phase, Protocol};
use crate::domain::user::Role;
use crate::import::{self, ImportKind};
use anyhow::{Context, Result, anyhow};
use clap::{Args, Parser, Subcommand};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Exit status when a check (audit verify) failed.
pub const EXIT_CHECK_FAILED: u8 = 1;
/// Exit status when the command could not run.
pub const EXIT_COULD_NOT_RUN: u8 = 2;
/// Exit status when an import refused some rows.
pub const EXIT_SOME_REJECTED: u8 = 3;

#[derive(Debug, Parser)]
#[command(
    name = "marrow",
    version,
    about = "Curate and review the cohort of the musculoskeletal-aging study (OP and knee OA)",
    long_about = "Curate and review the cohort of the musculoskeletal-aging study (OP and knee OA).\n\
                  With no command, opens the terminal application on the study database."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(flatten)]
    pub tui: TuiArgs,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Options of the terminal application (`marrow` or `marrow tui`).
#[derive(Debug, Args, Clone, Default)]
pub struct TuiArgs {
    /// How images are drawn: auto asks the terminal when the images screen first opens (half-blocks inside tmux/screen or without an answer); halfblocks works everywhere and never asks. Default: MARROW_GRAPHICS, else auto.
    // MARROW_GRAPHICS is read by the TUI, not by clap: a clap `env` on this top-level
    // option would make every command fail on an empty or misspelt value.
    #[arg(long, value_enum, value_name = "MODE")]
    pub graphics: Option<crate::tui::Graphics>,
}

/// Options every command takes.
#[derive(Debug, Args, Clone)]
pub struct Global {
    /// The study database.
    #[arg(long, global = true, env = "MARROW_DB", default_value = "marrow.db")]
    pub db: PathBuf,
    /// The key file (default: the database path with `.key` appended). MARROW_KEY (64 hex characters) wins over it.
    #[arg(long, global = true, env = "MARROW_KEY_FILE")]
    pub key_file: Option<PathBuf>,
    /// Act as another registered user (admins only; the audit trail records both).
    #[arg(long = "as", global = true, value_name = "USER")]
    pub as_user: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build a demo study from the built-in synthetic data and open it.
    Demo {
        /// Folder for the demo database (default: a new folder under the system temp dir).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Only build it and print where it is.
        #[arg(long)]
        no_tui: bool,
    },
    /// Create the encrypted study database (you become its admin).
    Init {
        /// A TOML file overriding the default targets, DXA window and sites.
        #[arg(long)]
        protocol: Option<PathBuf>,
        /// Share the study with this Unix group of study staff (database 0660, key file 0640, store 2770); the default is private to you (0600/0700).
        #[arg(long, value_name = "GROUP")]
        group: Option<String>,
    },
    /// Import a hospital export: patients, dxa, labs or followup (a CSV file), or dicom (folders of DICOM files, de-identified on the way in).
    Import {
        #[arg(value_enum)]
        kind: ImportArg,
        /// The CSV file; for dicom, one or more folders (searched recursively; symbolic links are not followed).
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<PathBuf>,
        /// dxa, labs, followup: the site of rows without a `site` value (an MRN is unique within a site only); dicom: the site that sent the files, for instances without an IssuerOfPatientID.
        #[arg(long)]
        site: Option<String>,
    },
    /// Enrollment and eligibility figures per cohort.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Patients needing attention (missing DXA, Z-score, pending criteria).
    Flags {
        #[arg(long)]
        json: bool,
    },
    /// List patients (the worklist, for scripts).
    Patients {
        #[arg(long)]
        json: bool,
        /// eligible, ineligible or pending.
        #[arg(long)]
        decision: Option<String>,
        /// missing_dxa or z_score_applies.
        #[arg(long)]
        flag: Option<String>,
        #[arg(long)]
        site: Option<String>,
        /// OA, OP or CONTROL.
        #[arg(long)]
        group: Option<String>,
        /// retrospective or prospective.
        #[arg(long)]
        phase: Option<String>,
    },
    /// Print a patient's screening checklist, or answer criteria by hand.
    Screen {
        /// The study ID, e.g. PKUPH-OA-0001.
        study_id: String,
        /// CRITERION=ANSWER, e.g. I4=yes (yes = met for an inclusion, applies for an exclusion; no; unknown). Repeatable.
        #[arg(long = "set", value_name = "C=ANSWER")]
        set: Vec<String>,
        /// Remove the manual answer of a criterion, back to the automatic one. Repeatable.
        #[arg(long = "clear", value_name = "C")]
        clear: Vec<String>,
        /// Why (required with --set and --clear; kept in the audit trail).
        #[arg(long)]
        reason: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Manage who may use the study and in which role.
    Users {
        #[command(subcommand)]
        action: UsersCommand,
    },
    /// Check or show the audit trail.
    Audit {
        #[command(subcommand)]
        action: AuditCommand,
    },
    /// Reading cases (a knee, or a patient for the OP stage): list them, or `refresh` to create the missing ones.
    Cases(reading::CasesArgs),
    /// Blinded reading: take the next case, show it, submit your read.
    Read {
        #[command(subcommand)]
        action: reading::ReadCommand,
    },
    /// Adjudication of the cases the readers disagree on.
    Adjudicate {
        #[command(subcommand)]
        action: reading::AdjudicateCommand,
    },
    /// Reads made before marrow (import) and the final grades (export).
    Reads {
        #[command(subcommand)]
        action: reading::ReadsCommand,
    },
    /// Agreement between readers and with the final grades: percent agreement, kappa, weighted kappa, sensitivity/specificity, 95% CIs.
    Agreement(reading::AgreementArgs),
    /// Run the CNN over the stored images as a job (predictions are blinded from readers until they read).
    Infer(model::InferArgs),
    /// Model jobs (inference, training): list them, or cancel one.
    Jobs(model::JobsArgs),
    /// Why the model predicted what it did for a case: the share of image, demographics and labs (Shapley values) and an occlusion heatmap (--png).
    Explain(model::ExplainArgs),
    /// Every stored prediction, per image (adjudicators, PIs and admins).
    Predictions(model::PredictionsArgs),
    /// The study's model versions (shipped and trained), and which one is active.
    Models(model::ModelsArgs),
    /// Train a new model version on the task's reference standard (final KL grades, DXA WHO stages) of the retrospective cohort, split by patient.
    Train(model::TrainArgs),
    /// The primary outcome on the prospective cohort (the external test) against the reference standard: AUC, sensitivity, specificity, weighted kappa, confusion matrix, with 95% CIs; --compare for two models.
    Evaluate(model::EvaluateArgs),
    /// The secondary outcomes: new fragility fractures by baseline OP stage (Kaplan-Meier, log-rank), VAS and OKS change from baseline by KL grade.
    Outcomes(outcomes::OutcomesArgs),
    /// Follow-up visits (baseline 0; 6, 12, 24, 36 months): those due in the next 30 days (--due-days N), one patient's, entering or correcting one.
    Followup(followup::FollowupArgs),
    /// De-identified exports: the analysis table with its data dictionary, the CONSORT flow (json or svg), the aggregate summary for the other hospital.
    Export {
        #[command(subcommand)]
        what: export::ExportCommand,
    },
    /// Summaries of the two hospitals: `merge A.json B.json` prints the combined view.
    Summary {
        #[command(subcommand)]
        action: export::SummaryCommand,
    },
    /// PNG charts (enrollment over time and against targets, ROC curves), the CONSORT SVG and an index.html showing them.
    Report(report::ReportArgs),
    /// Show one frame of a DICOM image in the terminal (a one-line description when stdout is not a terminal).
    View(view::ViewArgs),
    /// Open the terminal application (the same as no command).
    Tui(TuiArgs),
    /// Write generated (synthetic) exports for tests and benchmarks.
    #[command(hide = true)]
    Generate {
        /// How many patients.
        #[arg(long, default_value_t = 1000)]
        patients: usize,
        /// Output folder (gets patients.csv, dxa.csv, labs.csv; or NNNNN.dcm with --dicom).
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Instead of CSV exports: N synthetic radiographs (DICOM) into --out.
        #[arg(long, value_name = "N")]
        dicom: Option<usize>,
        /// Rows of the radiographs (with --dicom).
        #[arg(long, default_value_t = 2500)]
        rows: u16,
        /// Columns of the radiographs (with --dicom).
        #[arg(long, default_value_t = 2000)]
        cols: u16,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ImportArg {
    Patients,
    Dxa,
    Labs,
    Dicom,
    Followup,
}

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Register a user (their login name on this server) with a role, or change their role.
    Add {
        name: String,
        /// coordinator, reader, adjudicator, pi or admin.
        #[arg(long)]
        role: String,
    },
    /// List registered users.
    List {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Walk the hash chain; exits 1 naming the first bad row.
    Verify,
    /// Show the trail (oldest first).
    Log {
        /// Only rows about this patient.
        #[arg(long)]
        patient: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

/// Runs the command line and returns the process exit status.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // `demo`, `generate` and `view` work outside the study database's folder: no log beside it.
    let log = if !matches!(
        cli.command,
        Some(Command::Demo { .. })
            | Some(Command::Generate { .. })
            | Some(Command::View(..))
            | Some(Command::Summary { .. })
    ) {
        init_logging(&cli.global.db)
    } else {
        None
    };
    let code = match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("error: {e:#}");
            ExitCode::from(EXIT_COULD_NOT_RUN)
        }
    };
    // A log this run made beside something that is not a study (a wrong --db, a
    // failed open) is not left behind.
    if let Some(made) = log
        && !crate::db::opened_a_study()
    {
        let _ = std::fs::remove_file(made);
    }
    code
}

/// A failed `init` (a full disk, a folder that cannot be written) removes what it
/// made, so the next `init` starts afresh instead of finding a database without a
/// protocol. `fresh`: whether the database and the key file were absent before.
fn remove_half_made_study(
    db: &Path,
    key_file: &Path,
    fresh: (bool, bool),
    e: DbError,
) -> anyhow::Error {
    if matches!(e, DbError::AlreadyExists(_)) || !fresh.0 || !db.exists() {
        return e.into();
    }
    for suffix in ["", "-wal", "-shm", "-journal", ".log"] {
        let mut p = db.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(p));
    }
    if fresh.1 && std::env::var(crate::db::keys::KEY_ENV).is_err() {
        let _ = std::fs::remove_file(key_file);
    }
    anyhow!("{e}; the half-made database was removed")
}

/// Refuses, before the study is opened, a "CSV" that is empty, UTF-16 text (what
/// spreadsheets save as "Unicode text"), a spreadsheet or another binary file: the
/// row checks would otherwise report a garbled header. A file that cannot be read (or
/// is not a regular file) is left to the import, which names the reason.
fn check_text_export(path: &Path) -> Result<()> {
    use std::io::Read;
    // Only a regular file: a named pipe must not be read ahead of the import.
    if !std::fs::metadata(path).is_ok_and(|m| m.is_file()) {
        return Ok(());
    }
    let mut head = Vec::with_capacity(4096);
    let Ok(file) = std::fs::File::open(path) else {
        return Ok(());
    };
    if file.take(4096).read_to_end(&mut head).is_err() {
        return Ok(());
    }
    let p = path.display();
    if head.is_empty() {
        return Err(anyhow!(
            "{p} is empty: nothing to import (an export starts with a header row naming its columns)"
        ));
    }
    let nul_share = |parity: usize| {
        let at: Vec<&u8> = head.iter().skip(parity).step_by(2).collect();
        at.iter().filter(|b| ***b == 0).count() * 3 > at.len()
    };
    if head.starts_with(&[0xFF, 0xFE])
        || head.starts_with(&[0xFE, 0xFF])
        || nul_share(0)
        || nul_share(1)
    {
        return Err(anyhow!(
            "{p} is UTF-16 text, not UTF-8: save the export as \"CSV UTF-8\" and import that file"
        ));
    }
    if head.starts_with(b"PK\x03\x04") || head.starts_with(&[0xD0, 0xCF, 0x11, 0xE0]) {
        return Err(anyhow!(
            "{p} looks like a spreadsheet workbook, not a CSV file: save it as \"CSV UTF-8\" and import that file"
        ));
    }
    if head.contains(&0) {
        return Err(anyhow!(
            "{p} is not a text file (it holds NUL bytes): give the CSV export of the hospital system"
        ));
    }
    Ok(())
}

/// The log file. A write that fails (a full disk) is dropped instead of being
/// reported over the user's terminal: the command's own error says what went wrong.
struct QuietLog(std::fs::File);

impl std::io::Write for QuietLog {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let _ = std::io::Write::write_all(&mut self.0, buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let _ = std::io::Write::flush(&mut self.0);
        Ok(())
    }
}

/// Logs go to a file beside the database (never to the terminal the TUI owns).
/// Returns the log's path when this call created it.
fn init_logging(db: &Path) -> Option<PathBuf> {
    let path = crate::db::sidecar(db, ".log");
    let dir = db.parent().filter(|p| !p.as_os_str().is_empty());
    if dir.is_some_and(|d| !d.exists()) {
        return None;
    }
    let existed = std::fs::symlink_metadata(&path).is_ok();
    // 0600, or 0660 for the group of a shared study (whoever writes first).
    let file = crate::db::sharing::Sharing::of_study(db)
        .open_append(&path)
        .ok()?;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(std::sync::Mutex::new(QuietLog(file)))
        .try_init()
        .ok()?;
    (!existed).then_some(path)
}

fn open(g: &Global) -> Result<Study> {
    Ok(Study::open(
        &g.db,
        g.key_file.as_deref(),
        g.as_user.as_deref(),
    )?)
}

fn parse_opt<T: std::str::FromStr<Err = String>>(v: &Option<String>) -> Result<Option<T>> {
    v.as_deref()
        .map(|s| s.parse::<T>().map_err(|e| anyhow!(e)))
        .transpose()
}

/// Runs one parsed command line.
pub fn run(cli: Cli) -> Result<u8> {
    let g = cli.global.clone();
    let open_tui = |t: TuiArgs| {
        let graphics =
            (t.graphics.or(cli.tui.graphics)).unwrap_or_else(crate::tui::Graphics::from_env);
        crate::tui::run_with(&g.db, g.key_file.as_deref(), g.as_user.as_deref(), graphics)
    };
    let Some(command) = cli.command else {
        open_tui(TuiArgs::default())?;
        return Ok(0);
    };
    match command {
        Command::Tui(t) => {
            open_tui(t)?;
            Ok(0)
        }
        Command::Demo { dir, no_tui } => demo::run(dir, no_tui),
        Command::View(args) => view::run(args),
        Command::Init { protocol, group } => {
            let protocol = match protocol {
                None => Protocol::default(),
                Some(p) => {
                    let text = std::fs::read_to_string(&p)
                        .with_context(|| format!("cannot read protocol file {}", p.display()))?;
                    Protocol::from_override_toml(&text)
                        .map_err(|e| anyhow!("protocol file {}: {e}", p.display()))?
                }
            };
            let sharing = match &group {
                None => crate::db::sharing::Sharing::Private,
                Some(name) => {
                    let (sharing, note) = crate::db::sharing::prepare_group_folder(&g.db, name)
                        .map_err(|e| anyhow!(e))?;
                    if let Some(note) = note {
                        println!("{note}");
                    }
                    sharing
                }
            };
            let key_file = g
                .key_file
                .clone()
                .unwrap_or_else(|| crate::db::keys::default_key_file(&g.db));
            let fresh = (crate::db::absent_or_empty(&g.db), !key_file.exists());
            let out = match Study::init(&g.db, g.key_file.as_deref(), protocol) {
                Ok(out) => out,
                Err(e) => return Err(remove_half_made_study(&g.db, &key_file, fresh, e)),
            };
            if sharing != crate::db::sharing::Sharing::Private {
                let key_file = match &out.key_source {
                    crate::db::KeySource::File(p) => Some(p.as_path()),
                    crate::db::KeySource::Env => None,
                };
                crate::db::sharing::share_new_study(&out.db, key_file, sharing)
                    .with_context(|| format!("cannot share {} with the group", out.db.display()))?;
            }
            println!("created encrypted study database {}", out.db.display());
            if let Some(name) = &group {
                println!(
                    "shared with the group {name}: database 0660, key file 0640, image store 2770; nobody else may open it"
                );
            }
            if out.key_file_created {
                println!(
                    "key written to {} (mode {:04o}): guard it and back it up; without it the database cannot be opened",
                    out.key_source,
                    sharing.read_file_mode()
                );
            } else {
                println!("key taken from {}", out.key_source);
            }
            println!("{} is the study's admin", out.admin);
            Ok(0)
        }
        Command::Import { kind, paths, site } => {
            let kind = match kind {
                ImportArg::Patients if site.is_some() => {
                    return Err(anyhow!(
                        "`marrow import patients` takes no --site: a patients export names the site of each row"
                    ));
                }
                ImportArg::Patients => ImportKind::Patients,
                ImportArg::Dxa => ImportKind::Dxa,
                ImportArg::Labs => ImportKind::Labs,
                ImportArg::Dicom => {
                    let mut study = open(&g)?;
                    study.require(crate::domain::user::Permission::Import)?;
                    let site = import_site(&study, site.as_deref())?;
                    return import_dicom(
                        &mut study,
                        &paths,
                        site.as_deref(),
                        std::io::stderr().is_terminal(),
                    );
                }
                ImportArg::Followup => {
                    let [file] = paths.as_slice() else {
                        return Err(anyhow!("`marrow import followup` takes one CSV file"));
                    };
                    check_text_export(file)?;
                    let mut study = open(&g)?;
                    study.require(crate::domain::user::Permission::Import)?;
                    let site = import_site(&study, site.as_deref())?;
                    return followup::import(&mut study, file, site.as_deref());
                }
            };
            let [file] = paths.as_slice() else {
                return Err(anyhow!(
                    "`marrow import {}` takes one CSV file ({} given); import them one at a time",
                    kind.name(),
                    paths.len()
                ));
            };
            check_text_export(file)?;
            let mut study = open(&g)?;
            study.require(crate::domain::user::Permission::Import)?;
            let site = import_site(&study, site.as_deref())?;
            import_file(
                &mut study,
                kind,
                file,
                site.as_deref(),
                std::io::stderr().is_terminal(),
            )
        }
        Command::Status { json } => {
            let study = open(&g)?;
            let report = study.status()?;
            if let Some(why) = crate::dicom::store::missing(&study)? {
                eprintln!("warning: {why}");
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", output::status_table(&report));
                print!("{}", reading::status_lines(&report));
                let f = &report.follow_up;
                if f.done + f.due + f.overdue + f.not_yet_due > 0 {
                    println!(
                        "follow-up visits: {} done, {} due, {} overdue, {} not yet due",
                        f.done, f.due, f.overdue, f.not_yet_due
                    );
                }
            }
            Ok(0)
        }
        Command::Flags { json } => {
            let study = open(&g)?;
            let rows = study.flagged()?;
            let waiting = crate::db::imaging::waiting_images(study.conn())?;
            if json {
                let v = serde_json::json!({
                    "patients": output::flags_json(&rows),
                    "images_waiting_for_patient": {
                        "count": waiting.len(),
                        "images": waiting,
                    },
                });
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                print!("{}", output::flags_table(&rows));
                print!("{}", waiting_images_table(&waiting));
            }
            Ok(0)
        }
        Command::Patients {
            json,
            decision,
            flag,
            site,
            group,
            phase,
        } => {
            let study = open(&g)?;
            let filter = PatientFilter {
                decision: parse_opt::<Decision>(&decision)?,
                flag: parse_opt::<Flag>(&flag)?,
                site: match site {
                    Some(s) => Some(study.protocol().parse_site(&s).map_err(|e| anyhow!(e))?),
                    None => None,
                },
                group: parse_opt::<Group>(&group)?,
                phase: parse_opt::<Phase>(&phase)?,
                search: None,
            };
            let rows = study.patients(&filter)?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&output::patients_json(&rows))?
                );
            } else {
                print!("{}", output::patients_table(&rows));
            }
            Ok(0)
        }
        Command::Screen {
            study_id,
            set,
            clear,
            reason,
            json,
        } => {
            let mut study = open(&g)?;
            let mut changes: Vec<(Criterion, Option<Answer>)> = Vec::new();
            for s in &set {
                let (c, a) = s.split_once('=').ok_or_else(|| {
                    anyhow!("--set {s}: write CRITERION=ANSWER, e.g. --set I4=yes")
                })?;
                let c: Criterion = c.parse().map_err(|e: String| anyhow!("--set {s}: {e}"))?;
                let a: Answer = a.parse().map_err(|e: String| anyhow!("--set {s}: {e}"))?;
                changes.push((c, Some(a)));
            }
            for c in &clear {
                let c: Criterion = c.parse().map_err(|e: String| anyhow!("--clear {c}: {e}"))?;
                changes.push((c, None));
            }
            if !changes.is_empty() {
                let reason = reason.filter(|r| !r.trim().is_empty()).ok_or_else(|| {
                    anyhow!(
                        "--reason is required with --set and --clear (it goes into the audit trail)"
                    )
                })?;
                for (c, a) in changes {
                    study.set_answer(&study_id, c, a, &reason, None)?;
                }
            }
            let detail = study.patient(&study_id)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&detail)?);
            } else {
                print!("{}", output::checklist(&detail));
            }
            Ok(0)
        }
        Command::Users { action } => match action {
            UsersCommand::Add { name, role } => {
                let role: Role = role.parse().map_err(|e: String| anyhow!(e))?;
                let mut study = open(&g)?;
                match study.add_user(&name, role)? {
                    Upsert::Inserted(n) => println!("added {n} as {role}"),
                    Upsert::Updated(n) => println!("{n} is now {role}"),
                    Upsert::Unchanged(n) => println!("{n} is already {role}"),
                }
                Ok(0)
            }
            UsersCommand::List { json } => {
                let study = open(&g)?;
                let users = study.users()?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&users)?);
                } else {
                    for u in users {
                        println!(
                            "{:<20} {:<12} added by {} at {}",
                            u.name, u.role, u.added_by, u.added_at
                        );
                    }
                }
                Ok(0)
            }
        },
        Command::Audit { action } => match action {
            AuditCommand::Verify => {
                let study = open(&g)?;
                let v = study.verify_audit()?;
                match v.first_bad {
                    None => {
                        println!("audit trail intact: {} rows, hash chain verified", v.rows);
                        Ok(0)
                    }
                    Some((id, why)) => {
                        eprintln!("audit trail BROKEN at row {id}: {why}");
                        Ok(EXIT_CHECK_FAILED)
                    }
                }
            }
            AuditCommand::Log { patient, json } => {
                let study = open(&g)?;
                let rows = study.audit_log(patient.as_deref())?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&rows)?);
                } else {
                    print!("{}", output::audit_table(&rows));
                }
                Ok(0)
            }
        },
        Command::Cases(a) => reading::cases(&g, a),
        Command::Read { action } => reading::read(&g, action),
        Command::Adjudicate { action } => reading::adjudicate(&g, action),
        Command::Reads { action } => reading::reads(&g, action),
        Command::Agreement(a) => reading::agreement(&g, a),
        Command::Followup(a) => followup::run(&g, a),
        Command::Export { what } => export::export(&g, what),
        Command::Summary { action } => export::summary(action),
        Command::Report(a) => report::run(&g, a),
        Command::Infer(a) => model::infer(&g, a),
        Command::Jobs(a) => model::jobs(&g, a),
        Command::Models(a) => model::models(&g, a),
        Command::Predictions(a) => model::predictions(&g, a),
        Command::Explain(a) => model::explain(&g, a),
        Command::Train(a) => model::train(&g, a),
        Command::Evaluate(a) => model::evaluate(&g, a),
        Command::Outcomes(a) => outcomes::run(&g, a),
        Command::Generate {
            patients,
            out,
            seed,
            dicom,
            rows,
            cols,
        } => {
            std::fs::create_dir_all(&out)
                .with_context(|| format!("cannot create {}", out.display()))?;
            if let Some(n) = dicom {
                use rayon::prelude::*;
                (0..n).into_par_iter().try_for_each(|i| {
                    let spec = crate::dicom::synth::bench_spec(i, rows, cols, seed);
                    crate::dicom::synth::write_radiograph(out.join(format!("{i:05}.dcm")), &spec)
                })?;
                println!(
                    "wrote {n} radiographs of {cols}x{rows} into {}",
                    out.display()
                );
                return Ok(0);
            }
            let n = crate::synth::write_exports(&out, patients, seed)
                .with_context(|| format!("cannot write exports into {}", out.display()))?;
            println!(
                "wrote {} patients, {} dxa rows, {} lab rows into {}",
                n.patients,
                n.dxa,
                n.labs,
                out.display()
            );
            Ok(0)
        }
    }
}

/// The `--site` of an import, checked against the protocol's sites.
fn import_site(study: &Study, site: Option<&str>) -> Result<Option<String>> {
    site.map(|s| {
        study
            .protocol()
            .parse_site(s)
            .map_err(|e| anyhow!("--site: {e}"))
    })
    .transpose()
}

/// Imports one file, printing progress, rejected rows and a summary. Rows without a
/// `site` value are from `site`, when given.
pub fn import_file(
    study: &mut Study,
    kind: ImportKind,
    file: &Path,
    site: Option<&str>,
    progress: bool,
) -> Result<u8> {
    let bar = progress.then(|| {
        let b = indicatif::ProgressBar::new(0);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} {msg} [{bar:30}] {pos}/{len} rows ({per_sec})",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b.set_message(format!("importing {}", kind.name()));
        b
    });
    let report = import::import_csv_at_site(study, kind, file, site, |done, total| {
        if let Some(b) = &bar {
            b.set_length(total);
            b.set_position(done);
        }
    });
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let report = report?;
    for line in import::rejection_lines(&report.rejected) {
        println!("{line}");
    }
    println!(
        "{}: {} rows: {} added, {} updated, {} unchanged, {} rejected",
        file.display(),
        report.rows,
        report.inserted,
        report.updated,
        report.unchanged,
        report.rejected.len()
    );
    if let Some(p) = &report.rejected_file {
        println!("rejected rows written to {}", p.display());
    }
    if report.images_linked > 0 {
        println!(
            "{} waiting DICOM images linked to their patient",
            report.images_linked
        );
    }
    if let Some(note) = &report.images_note {
        println!("{note}");
    }
    Ok(if report.rejected.is_empty() {
        0
    } else {
        EXIT_SOME_REJECTED
    })
}

/// Waiting images listed by `marrow flags` in text (all of them in `--json`).
const WAITING_SHOWN: usize = 20;

/// The "images waiting for their patient" section of `marrow flags`: store paths
/// and dates, never the PatientID.
fn waiting_images_table(waiting: &[crate::db::imaging::WaitingImage]) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    if waiting.is_empty() {
        return s;
    }
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "images waiting for their patient: {} (linked when `marrow import patients` brings the patient)",
        waiting.len()
    );
    let _ = writeln!(
        s,
        "  {:<10} {:<8} {:<12} {:<24} store file",
        "study date", "modality", "body part", "waiting since"
    );
    for w in waiting.iter().take(WAITING_SHOWN) {
        let _ = writeln!(
            s,
            "  {:<10} {:<8} {:<12} {:<24} {}",
            w.study_date.as_deref().unwrap_or("?"),
            w.modality.as_deref().unwrap_or("?"),
            w.body_part.as_deref().unwrap_or("?"),
            w.since,
            w.store_path
        );
        if let Some(why) = &w.reason {
            let _ = writeln!(s, "    held: {why}");
        }
    }
    if waiting.len() > WAITING_SHOWN {
        let _ = writeln!(
            s,
            "  ... and {} more (`marrow flags --json` lists them all)",
            waiting.len() - WAITING_SHOWN
        );
    }
    s
}

/// `marrow import dicom PATH...`: a progress bar on a terminal, the refused files
/// with their reasons, and a summary.
pub fn import_dicom(
    study: &mut Study,
    paths: &[PathBuf],
    site: Option<&str>,
    progress: bool,
) -> Result<u8> {
    let started = std::time::Instant::now();
    let bar = progress.then(|| {
        let b = indicatif::ProgressBar::new(0);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} importing DICOM [{bar:30}] {msg} {binary_bytes_per_sec}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b
    });
    let report = crate::dicom::import_dicom_from(study, paths, site, |p| {
        if let Some(b) = &bar {
            b.set_length(p.bytes_total);
            b.set_position(p.bytes_done);
            let secs = started.elapsed().as_secs_f64().max(1e-3);
            b.set_message(format!(
                "{}/{} files, {:.0} files/s",
                p.files_done,
                p.files_total,
                p.files_done as f64 / secs
            ));
        }
    });
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let report = report.map_err(|e| match e {
        crate::dicom::DicomError::Database(DbError::DiskFull) => anyhow!(
            "the disk is full; the images already recorded are kept and a re-run finishes the rest"
        ),
        other => anyhow!(other),
    })?;
    for r in &report.refused {
        println!("{}: {}", r.path.display(), r.reason);
    }
    for r in &report.held {
        println!("{}: in quarantine: {}", r.path.display(), r.reason);
    }
    let secs = started.elapsed().as_secs_f64().max(1e-3);
    println!(
        "{} files: {} imported ({} waiting for their patient), {} already imported, {} not DICOM or malformed ({:.0} files/s, {:.1} MB/s)",
        report.files,
        report.imported,
        report.quarantined,
        report.skipped,
        report.refused.len(),
        report.files as f64 / secs,
        report.bytes as f64 / 1e6 / secs
    );
    if report.linked_from_quarantine > 0 {
        println!(
            "{} waiting images linked to their patient",
            report.linked_from_quarantine
        );
    }
    if report.waiting > 0 {
        println!(
            "{} images wait for their patient (`marrow flags` lists them; `marrow import patients` links them)",
            report.waiting
        );
    }
    if report.links_not_followed > 0 {
        println!("{} symbolic links not followed", report.links_not_followed);
    }
    if report.recovered != (0, 0) {
        println!(
            "finished what an interrupted import left: {} copies moved into the store, {} partial files removed",
            report.recovered.0, report.recovered.1
        );
    }
    Ok(if report.refused.is_empty() {
        0
    } else {
        EXIT_SOME_REJECTED
    })
}
