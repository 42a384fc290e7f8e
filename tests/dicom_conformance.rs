//! The DICOM conformance suite: every file shipped by the PyPI packages pydicom
//! and pydicom-data (pinned in tests/conformance/corpus.py), decoded by marrow and
//! compared with pydicom's pixel values (tests/conformance/reference.json, made by
//! tests/conformance/reference.py), then imported together with generated
//! radiographs and junk files.
//!
//! The corpus lives in a virtual environment: `MARROW_CONFORMANCE_VENV`, else
//! `~/.cache/marrow-conformance/venv`. When it is missing the test creates it
//! with pip (`.ci/run` does so before the tests). Offline, without the corpus,
//! set `MARROW_SKIP_CONFORMANCE=1` to leave this suite out: it then says so and
//! checks nothing.
//!
//! docs/DICOM_CONFORMANCE.md is this test's report: the test fails when the
//! report it writes differs from the checked-in one (a decoder change that
//! makes a file decode, stop decoding or decode differently shows up in review).
//! `MARROW_UPDATE_CONFORMANCE=1 cargo test --test dicom_conformance` rewrites it.

mod common;

use common::{stderr, stdout};
use marrow::dicom::decode::{self, FrameValues};
use rayon::prelude::*;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

const PINNED: [&str; 2] = ["pydicom==3.0.2", "pydicom-data==1.0.0"];

/// Transfer syntaxes whose decoders may legitimately differ from pydicom's
/// (pylibjpeg's libjpeg and OpenJPEG) by rounding.
const LOSSY: [&str; 4] = [
    "1.2.840.10008.1.2.4.50",
    "1.2.840.10008.1.2.4.51",
    "1.2.840.10008.1.2.4.81",
    "1.2.840.10008.1.2.4.91",
];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn venv() -> PathBuf {
    if let Some(v) = std::env::var_os("MARROW_CONFORMANCE_VENV") {
        return v.into();
    }
    let home = std::env::var_os("HOME").expect("HOME is set");
    PathBuf::from(home).join(".cache/marrow-conformance/venv")
}

fn list_corpus(venv: &Path) -> Result<Vec<(String, PathBuf)>, String> {
    let out = Command::new(venv.join("bin/python"))
        .arg(repo().join("tests/conformance/corpus.py"))
        .arg(venv)
        .output()
        .map_err(|e| format!("cannot run {}/bin/python: {e}", venv.display()))?;
    if !out.status.success() {
        return Err(format!("corpus.py failed: {}", stderr(&out)));
    }
    Ok(stdout(&out)
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(n, p)| (n.to_string(), PathBuf::from(p)))
        .collect())
}

/// The corpus files, installing pydicom and pydicom-data into the venv first
/// when they are not there.
fn corpus() -> Option<Vec<(String, PathBuf)>> {
    if std::env::var_os("MARROW_SKIP_CONFORMANCE").is_some() {
        eprintln!("MARROW_SKIP_CONFORMANCE is set: the DICOM conformance suite is left out");
        return None;
    }
    let venv = venv();
    if let Ok(files) = list_corpus(&venv) {
        return Some(files);
    }
    std::fs::create_dir_all(venv.parent().expect("venv has a parent")).expect("cache dir");
    let ok = |c: &mut Command| c.status().map(|s| s.success()).unwrap_or(false);
    let made = (venv.join("bin/pip").exists()
        || ok(Command::new("python3").args(["-m", "venv"]).arg(&venv)))
        && ok(Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", "--disable-pip-version-check"])
            .args(PINNED));
    match list_corpus(&venv) {
        Ok(files) if made => Some(files),
        Ok(files) => Some(files),
        Err(e) => panic!(
            "the DICOM conformance corpus is not in {} and could not be installed there \
             (pip install {}): {e}. Run .ci/run once with network access, point \
             MARROW_CONFORMANCE_VENV at a venv that has them, or set \
             MARROW_SKIP_CONFORMANCE=1 to leave this suite out.",
            venv.display(),
            PINNED.join(" ")
        ),
    }
}

#[derive(Debug, Deserialize)]
struct Reference {
    pydicom: String,
    files: BTreeMap<String, RefEntry>,
}

#[derive(Debug, Deserialize)]
struct RefEntry {
    pydicom: String,
    photometric: Option<String>,
    frames: Option<usize>,
    rows: Option<usize>,
    columns: Option<usize>,
    samples_per_pixel: Option<usize>,
    sha256: Option<String>,
    min: Option<i64>,
    max: Option<i64>,
    grid: Option<Vec<Option<f64>>>,
}

/// pydicom's colours of a PALETTE COLOR file (tests/conformance/palette.json).
#[derive(Debug, Deserialize)]
struct PaletteRef {
    pydicom: String,
    sha256: Option<String>,
    reason: Option<String>,
}

#[derive(Debug, Deserialize)]
struct PaletteReference {
    files: BTreeMap<String, PaletteRef>,
}

fn palette_reference() -> PaletteReference {
    let text = std::fs::read_to_string(repo().join("tests/conformance/palette.json"))
        .expect("tests/conformance/palette.json");
    serde_json::from_str(&text).expect("palette.json parses")
}

fn reference() -> Reference {
    let text = std::fs::read_to_string(repo().join("tests/conformance/reference.json"))
        .expect("tests/conformance/reference.json");
    serde_json::from_str(&text).expect("reference.json parses")
}

/// What marrow made of a file.
#[derive(Debug, Clone)]
enum Outcome {
    Decoded(Decoded),
    Refused(String),
    Panicked(String),
}

#[derive(Debug, Clone)]
struct Decoded {
    transfer_syntax: String,
    transfer_syntax_name: String,
    frames: usize,
    rows: usize,
    columns: usize,
    samples_per_pixel: usize,
    sha256: String,
    min: i64,
    max: i64,
    grid: Vec<Option<f64>>,
    /// Why frame 0 cannot be drawn, when the values decode but the display
    /// pipeline refuses them.
    display: Result<(), String>,
    /// For PALETTE COLOR: the SHA-256 of every frame's colours (as palette.py
    /// hashes them), and of the same with each table entry's bytes swapped; or why
    /// marrow cannot colour it.
    colours: Option<Result<(String, String), String>>,
}

/// The colours of every frame of a PALETTE COLOR image, hashed as palette.py
/// hashes pydicom's, and hashed again with each entry's two bytes swapped.
fn palette_hashes(image: &decode::Image) -> Result<(String, String), String> {
    let (mut plain, mut swapped) = (Sha256::new(), Sha256::new());
    for frame in 0..image.info.frames {
        let colours = decode::palette_values(image, frame).map_err(|e| e.reason)?;
        for &v in &colours.values {
            plain.update(v.to_le_bytes());
            swapped.update(i64::from((v as u16).swap_bytes()).to_le_bytes());
        }
    }
    Ok((
        hex::encode(plain.finalize()),
        hex::encode(swapped.finalize()),
    ))
}

/// Frame 0 in 8 x 8 blocks, the mean of every sample of each block (as
/// reference.py computes it).
fn grid(f: &FrameValues) -> Vec<Option<f64>> {
    let (rows, cols, spp) = (f.height, f.width, f.samples_per_pixel);
    let mut out = Vec::with_capacity(64);
    for i in 0..8 {
        let (r0, r1) = (i * rows / 8, (i + 1) * rows / 8);
        for j in 0..8 {
            let (c0, c1) = (j * cols / 8, (j + 1) * cols / 8);
            let mut sum = 0f64;
            let mut n = 0usize;
            for r in r0..r1 {
                for c in c0..c1 {
                    let at = (r * cols + c) * spp;
                    sum += f.values[at..at + spp]
                        .iter()
                        .map(|&v| v as f64)
                        .sum::<f64>()
                        / spp as f64;
                    n += 1;
                }
            }
            out.push((n > 0).then(|| sum / n as f64));
        }
    }
    out
}

fn examine(path: &Path) -> Outcome {
    let image = match decode::load(path) {
        Ok(i) => i,
        Err(e) => return Outcome::Refused(e.reason),
    };
    let info = &image.info;
    let mut hasher = Sha256::new();
    let (mut min, mut max) = (i64::MAX, i64::MIN);
    let mut first = None;
    for frame in 0..info.frames {
        let values = match decode::decode_values(&image, frame) {
            Ok(v) => v,
            Err(e) => return Outcome::Refused(e.reason),
        };
        for &v in &values.values {
            hasher.update(v.to_le_bytes());
            min = min.min(v);
            max = max.max(v);
        }
        if frame == 0 {
            first = Some(values);
        }
    }
    let first = first.expect("a frame");
    let display = decode::render(&image, 0, 0, 320, 180)
        .map(|_| ())
        .map_err(|e| e.reason);
    let colours = (info.photometric == "PALETTE COLOR").then(|| palette_hashes(&image));
    Outcome::Decoded(Decoded {
        transfer_syntax: info.transfer_syntax.clone(),
        transfer_syntax_name: info.transfer_syntax_name.clone(),
        frames: info.frames,
        rows: first.height,
        columns: first.width,
        samples_per_pixel: first.samples_per_pixel,
        sha256: hex::encode(hasher.finalize()),
        min,
        max,
        grid: grid(&first),
        display,
        colours,
    })
}

fn examine_caught(path: &Path) -> Outcome {
    match std::panic::catch_unwind(|| examine(path)) {
        Ok(o) => o,
        Err(p) => Outcome::Panicked(
            p.downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "panic".into()),
        ),
    }
}

fn outcome_word(o: &Outcome) -> String {
    match o {
        Outcome::Decoded(d) => format!("decoded {}", d.transfer_syntax_name),
        Outcome::Refused(r) => format!("refused: {r}"),
        Outcome::Panicked(p) => format!("panicked: {p}"),
    }
}

/// How marrow's values compare with pydicom's.
#[derive(Debug, Clone, PartialEq)]
enum Verdict {
    /// Bit for bit the same values.
    Identical,
    /// A lossy codec: not bit for bit, block means within `diff`.
    Close(f64),
    /// pydicom does not decode it; marrow does.
    OnlyMarrow,
    /// marrow refuses it (with the reason).
    Refused(String),
    /// Something is wrong: a panic, different values, a reason-less refusal.
    Wrong(String),
}

fn grid_diff(a: &[Option<f64>], b: &[Option<f64>]) -> f64 {
    a.iter()
        .zip(b)
        .filter_map(|(x, y)| Some((x.as_ref()? - y.as_ref()?).abs()))
        .fold(0.0, f64::max)
}

fn verdict(reference: &RefEntry, outcome: &Outcome) -> Verdict {
    match outcome {
        Outcome::Panicked(p) => Verdict::Wrong(format!("panicked: {p}")),
        Outcome::Refused(reason) if reason.trim().len() < 10 => {
            Verdict::Wrong(format!("refused without a clear reason: {reason:?}"))
        }
        Outcome::Refused(reason) => Verdict::Refused(reason.clone()),
        Outcome::Decoded(d) if reference.pydicom != "decoded" => {
            let _ = d;
            Verdict::OnlyMarrow
        }
        Outcome::Decoded(d) => {
            let shape = (
                reference.frames,
                reference.rows,
                reference.columns,
                reference.samples_per_pixel,
            );
            let ours = (
                Some(d.frames),
                Some(d.rows),
                Some(d.columns),
                Some(d.samples_per_pixel),
            );
            if shape != ours {
                return Verdict::Wrong(format!(
                    "shape (frames, rows, columns, samples) {ours:?}, pydicom {shape:?}"
                ));
            }
            if reference.sha256.as_deref() == Some(d.sha256.as_str()) {
                return Verdict::Identical;
            }
            let diff = grid_diff(&d.grid, reference.grid.as_deref().unwrap_or(&[]));
            let range = (reference.max.unwrap_or(0) - reference.min.unwrap_or(0)).max(1) as f64;
            // Lossy codecs, and YCbCr converted to RGB, may round differently.
            let lossy = LOSSY.contains(&d.transfer_syntax.as_str())
                || reference
                    .photometric
                    .as_deref()
                    .is_some_and(|p| p.starts_with("YBR"));
            if lossy && diff <= 1.0 + 0.01 * range {
                Verdict::Close(diff)
            } else {
                Verdict::Wrong(format!(
                    "values differ from pydicom's: range {}..{} (pydicom {:?}..{:?}), largest 8x8 block-mean difference {diff:.3}",
                    d.min, d.max, reference.min, reference.max
                ))
            }
        }
    }
}

/// Paths in reasons are machine-specific: the report names files by corpus name.
fn clean(reason: &str, path: &Path) -> String {
    let p = path.display().to_string();
    reason.replace(&p, "<file>").replace(['\n', '|'], " ")
}

/// How marrow's palette colours compare with pydicom's `apply_color_lut`; `Err`
/// when they differ.
fn palette_verdict(
    name: &str,
    outcome: &Outcome,
    palettes: &PaletteReference,
) -> Option<Result<String, String>> {
    let Outcome::Decoded(Decoded {
        colours: Some(colours),
        ..
    }) = outcome
    else {
        return palettes
            .files
            .contains_key(name)
            .then(|| Err("pydicom colours it; marrow does not decode it".to_string()));
    };
    let Some(reference) = palettes.files.get(name) else {
        return Some(Err(
            "no reference: re-run tests/conformance/palette.py".to_string()
        ));
    };
    Some(match (colours, reference.pydicom.as_str()) {
        (Err(reason), _) => Ok(format!("refused: {reason}")),
        (Ok(_), "coloured") => {
            let (plain, swapped) = colours.as_ref().expect("Ok");
            let theirs = reference.sha256.as_deref();
            if theirs == Some(plain.as_str()) {
                Ok("identical".to_string())
            } else if theirs == Some(swapped.as_str()) {
                Ok(
                    "identical with each table entry's bytes swapped: pydicom reads the \
                    tables of a big-endian file as little endian"
                        .to_string(),
                )
            } else {
                Err("marrow's colours differ from pydicom's".to_string())
            }
        }
        (Ok(_), _) => Ok(format!(
            "marrow only (pydicom: {})",
            reference.reason.as_deref().unwrap_or("not coloured")
        )),
    })
}

fn report(
    reference: &Reference,
    rows: &[(String, PathBuf, Outcome, Verdict)],
    ts_of: &BTreeMap<String, (String, String)>,
    palettes: &PaletteReference,
) -> String {
    use std::fmt::Write;
    let count = |f: &dyn Fn(&Verdict) -> bool| rows.iter().filter(|r| f(&r.3)).count();
    let mut s = String::new();
    writeln!(
        s,
        "# DICOM conformance\n\n\
         Written by `tests/dicom_conformance.rs` (`MARROW_UPDATE_CONFORMANCE=1 cargo test --test dicom_conformance`); \
         the test fails when this file is out of date.\n\n\
         The corpus is every file shipped by the PyPI packages `{}` and `{}` \
         (`tests/conformance/corpus.py` lists them; `.ci/run` installs them into \
         `~/.cache/marrow-conformance/venv`). For each file marrow opens it, decodes \
         every frame to stored values (unused high bits removed, signed values \
         sign-extended, colour as interleaved RGB) and draws frame 0 through the display \
         pipeline; the values are compared with pydicom {}'s `pixel_array` \
         (`tests/conformance/reference.py` wrote `tests/conformance/reference.json` with \
         pylibjpeg's libjpeg, OpenJPEG and RLE plugins).\n\n\
         - identical: SHA-256 of every value equals pydicom's;\n\
         - close: a lossy transfer syntax whose decoders may round differently; the \
         largest difference of 8x8 block means is shown;\n\
         - marrow only: pydicom does not decode it, marrow does (nothing to compare);\n\
         - refused: marrow refuses it with the reason shown (not DICOM, no pixel data, \
         broken, or not supported).\n",
        PINNED[0], PINNED[1], reference.pydicom
    )
    .unwrap();
    writeln!(s, "## Summary\n").unwrap();
    writeln!(s, "| outcome | files |\n|---|---:|").unwrap();
    for (label, n) in [
        (
            "identical to pydicom",
            count(&|v| matches!(v, Verdict::Identical)),
        ),
        (
            "close to pydicom (lossy)",
            count(&|v| matches!(v, Verdict::Close(_))),
        ),
        (
            "decoded by marrow only",
            count(&|v| matches!(v, Verdict::OnlyMarrow)),
        ),
        ("refused", count(&|v| matches!(v, Verdict::Refused(_)))),
        ("wrong", count(&|v| matches!(v, Verdict::Wrong(_)))),
        ("all files", rows.len()),
    ] {
        writeln!(s, "| {label} | {n} |").unwrap();
    }
    writeln!(
        s,
        "\n## By transfer syntax\n\nFiles marrow can open, by the transfer syntax in their \
         file meta (or the one guessed for a bare data set).\n"
    )
    .unwrap();
    writeln!(
        s,
        "| transfer syntax | UID | files | identical | close | marrow only | refused |\n|---|---|---:|---:|---:|---:|---:|"
    )
    .unwrap();
    let mut by_ts: BTreeMap<(String, String), [usize; 5]> = BTreeMap::new();
    for (name, _, _, v) in rows {
        let Some((uid, ts_name)) = ts_of.get(name) else {
            continue;
        };
        let c = by_ts.entry((ts_name.clone(), uid.clone())).or_default();
        c[0] += 1;
        match v {
            Verdict::Identical => c[1] += 1,
            Verdict::Close(_) => c[2] += 1,
            Verdict::OnlyMarrow => c[3] += 1,
            _ => c[4] += 1,
        }
    }
    for ((name, uid), c) in &by_ts {
        writeln!(
            s,
            "| {name} | {uid} | {} | {} | {} | {} | {} |",
            c[0], c[1], c[2], c[3], c[4]
        )
        .unwrap();
    }
    writeln!(
        s,
        "\n## Decoded, not bit for bit\n\n| file | transfer syntax | largest block-mean difference |\n|---|---|---:|"
    )
    .unwrap();
    for (name, _, _, v) in rows {
        if let Verdict::Close(d) = v {
            let ts = ts_of.get(name).map(|t| t.1.as_str()).unwrap_or("?");
            writeln!(s, "| {name} | {ts} | {d:.3} |").unwrap();
        }
    }
    writeln!(
        s,
        "\n## Decoded, but frame 0 cannot be drawn\n\n| file | reason |\n|---|---|"
    )
    .unwrap();
    let mut undrawn = 0;
    for (name, path, o, _) in rows {
        if let Outcome::Decoded(Decoded {
            display: Err(reason),
            ..
        }) = o
        {
            writeln!(s, "| {name} | {} |", clean(reason, path)).unwrap();
            undrawn += 1;
        }
    }
    if undrawn == 0 {
        writeln!(s, "| (none: every file marrow decodes is drawn) | |").unwrap();
    }
    writeln!(
        s,
        "\n## Palette colour\n\nThe PALETTE COLOR files: the colours of every frame \
         through marrow's palette (`decode::palette_values`: the tables' own 8- or 16-bit \
         entries; the display keeps their top 8 bits) against pydicom's `apply_color_lut` \
         (`tests/conformance/palette.py` wrote `tests/conformance/palette.json`). \
         `pixel_array`, compared above, gives the indices.\n\n| file | colours |\n|---|---|"
    )
    .unwrap();
    for (name, path, o, _) in rows {
        if let Some(v) = palette_verdict(name, o, palettes) {
            let text = match v {
                Ok(t) => t,
                Err(e) => format!("**wrong**: {e}"),
            };
            writeln!(s, "| {name} | {} |", clean(&text, path)).unwrap();
        }
    }
    writeln!(
        s,
        "\n## Refused\n\nEvery file marrow refuses, with the reason it gives (pydicom's verdict in brackets).\n\n| file | reason | pydicom |\n|---|---|---|"
    )
    .unwrap();
    for (name, path, _, v) in rows {
        if let Verdict::Refused(reason) = v {
            let p = &reference.files[name].pydicom;
            writeln!(s, "| {name} | {} | {p} |", clean(reason, path)).unwrap();
        }
    }
    s
}

#[test]
fn every_corpus_file_decodes_like_pydicom_or_is_refused_with_a_reason() {
    let Some(mut files) = corpus() else {
        return;
    };
    // While working on one decoder: MARROW_CONFORMANCE_ONLY=<part of a name>
    // examines those files only and leaves the report alone.
    let only = std::env::var("MARROW_CONFORMANCE_ONLY").ok();
    let reference = reference();
    let names: BTreeSet<&String> = files.iter().map(|f| &f.0).collect();
    let known: BTreeSet<&String> = reference.files.keys().collect();
    assert_eq!(
        names, known,
        "the corpus and tests/conformance/reference.json list different files: re-run reference.py"
    );
    assert!(files.len() >= 250, "only {} corpus files", files.len());
    if let Some(part) = &only {
        files.retain(|(name, _)| name.contains(part.as_str()));
    }

    let rows: Vec<(String, PathBuf, Outcome, Verdict)> = files
        .par_iter()
        .map(|(name, path)| {
            let started = std::time::Instant::now();
            let outcome = examine_caught(path);
            if only.is_some() {
                eprintln!(
                    "{name}: {:?} in {:?}",
                    outcome_word(&outcome),
                    started.elapsed()
                );
            }
            let v = verdict(&reference.files[name], &outcome);
            (name.clone(), path.clone(), outcome, v)
        })
        .collect();
    let ts_of: BTreeMap<String, (String, String)> = rows
        .iter()
        .filter_map(|(name, path, o, _)| match o {
            Outcome::Decoded(d) => Some((
                name.clone(),
                (d.transfer_syntax.clone(), d.transfer_syntax_name.clone()),
            )),
            _ => decode::load(path).ok().map(|i| {
                (
                    name.clone(),
                    (i.info.transfer_syntax, i.info.transfer_syntax_name),
                )
            }),
        })
        .collect();

    let palettes = palette_reference();
    let wrong: Vec<String> = rows
        .iter()
        .filter_map(|(n, _, _, v)| match v {
            Verdict::Wrong(w) => Some(format!("{n}: {w}")),
            _ => None,
        })
        .chain(
            rows.iter()
                .filter_map(|(n, _, o, _)| match palette_verdict(n, o, &palettes)? {
                    Err(e) => Some(format!("{n}: palette colours: {e}")),
                    Ok(_) => None,
                }),
        )
        .collect();
    let text = report(&reference, &rows, &ts_of, &palettes);
    let doc = repo().join("docs/DICOM_CONFORMANCE.md");
    if std::env::var_os("MARROW_UPDATE_CONFORMANCE").is_some() {
        std::fs::write(&doc, &text).expect("write docs/DICOM_CONFORMANCE.md");
    }
    assert!(
        wrong.is_empty(),
        "{} wrong:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    if only.is_some() {
        return;
    }
    // The files pydicom decodes that marrow identifies as such must mostly
    // decode: a decoder regression shows up here as well as in the report.
    let identical = rows.iter().filter(|r| r.3 == Verdict::Identical).count();
    assert!(
        identical >= 100,
        "only {identical} files decode identically"
    );
    let checked_in = std::fs::read_to_string(&doc).unwrap_or_default();
    assert!(
        checked_in == text,
        "docs/DICOM_CONFORMANCE.md is out of date: re-run with MARROW_UPDATE_CONFORMANCE=1 and review the diff"
    );
}

/// The identifying values of a corpus file's header (names, IDs, birth date,
/// institution, physicians, operators, accession number, addresses), read
/// after marrow's length guard so a hostile file cannot exhaust memory here.
/// Returns the identifying values and the values the profile keeps (which
/// another file may use as an identifier: a manufacturer's name as an
/// institution).
fn identifiers(path: &Path) -> (Vec<String>, Vec<String>) {
    use dicom_core::Tag;
    let Ok(bytes) = std::fs::read(path) else {
        return Default::default();
    };
    let skip = if bytes.get(128..132) == Some(b"DICM") {
        128
    } else if bytes.starts_with(b"DICM") {
        0
    } else {
        return Default::default();
    };
    if marrow::dicom::guard::check_file(&bytes, bytes.len() as u64, false).is_err() {
        return Default::default();
    }
    let Ok(obj) = dicom_object::OpenFileOptions::new()
        .read_preamble(dicom_object::file::ReadPreamble::Never)
        .from_reader(&bytes[skip..])
    else {
        return Default::default();
    };
    // Values the profile keeps: the study dates (Retain Longitudinal Temporal
    // Information) and the manufacturer and model (not identifiers; one corpus
    // file names its manufacturer as its institution too).
    let retained: Vec<String> = [
        Tag(0x0008, 0x0020),
        Tag(0x0008, 0x0021),
        Tag(0x0008, 0x0022),
        Tag(0x0008, 0x0023),
        Tag(0x0008, 0x0070),
        Tag(0x0008, 0x1090),
    ]
    .iter()
    .filter_map(|t| obj.get(*t)?.to_str().ok().map(|s| s.trim().to_string()))
    .collect();
    let ids = [
        (0x0010, 0x0010),
        (0x0010, 0x0020),
        (0x0010, 0x0030),
        (0x0010, 0x1000),
        (0x0010, 0x1040),
        (0x0008, 0x0050),
        (0x0008, 0x0080),
        (0x0008, 0x0081),
        (0x0008, 0x0090),
        (0x0008, 0x1050),
        (0x0008, 0x1070),
    ]
    .iter()
    .filter_map(|&(g, e)| obj.get(Tag(g, e))?.to_str().ok().map(|s| s.to_string()))
    .flat_map(|s| {
        s.split('\\')
            .map(|v| {
                v.trim_matches(|c: char| c.is_whitespace() || c == '\0')
                    .to_string()
            })
            .collect::<Vec<_>>()
    })
    // Short values ("M", "1") and one character repeated ("11111111", which
    // pixel data may hold by chance) say nothing; numbers shorter than a date
    // ("99000") turn up by chance in the digits of the new UIDs.
    .filter(|v| v.len() >= 5 && v.chars().any(|c| !v.starts_with(c)))
    .filter(|v| v.len() >= 8 || !v.chars().all(|c| c.is_ascii_digit()))
    .collect();
    (ids, retained)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    memchr::memmem::find(haystack, needle).is_some()
}

/// The issue's "done when": a folder mixing the conformance corpus, generated
/// radiographs and junk imports with no panic, every refused file named with its
/// reason; no identifier of the originals is in the store or the decrypted
/// database; a second run imports nothing new.
#[test]
fn a_folder_mixing_the_corpus_radiographs_and_junk_imports_cleanly_and_de_identified() {
    use marrow::dicom::synth::{self, BodyPart, Laterality, Spec, View};
    let Some(files) = corpus() else {
        return;
    };
    let s = common::TempStudy::init();
    let input = s.path("input");
    std::fs::create_dir_all(input.join("corpus")).expect("input dir");
    let mut ids: BTreeSet<String> = BTreeSet::new();
    let mut retained: BTreeSet<String> = BTreeSet::new();
    let mut collect = |path: &Path| {
        let (i, r) = identifiers(path);
        ids.extend(i);
        retained.extend(r);
    };
    for (i, (name, path)) in files.iter().enumerate() {
        let flat = format!("{i:03}_{}", name.replace('/', "_"));
        std::fs::copy(path, input.join("corpus").join(flat)).expect("copy corpus file");
        collect(path);
    }
    // Radiographs 0..6 go into the input; 6 is only cut in half (a copy of an
    // instance that is also imported whole could be skipped as already imported
    // instead of refused, depending on which of the two is read first).
    for i in 0..7u64 {
        let spec = Spec {
            patient_id: format!("MRNCONF{i}"),
            body_part: [BodyPart::Knee, BodyPart::Hip, BodyPart::LSpine][i as usize % 3],
            laterality: (i % 3 != 2).then_some(Laterality::Left),
            view: View::Ap,
            rows: 64,
            cols: 48,
            study_date: chrono::NaiveDate::from_ymd_opt(2024, 5, 1).expect("date"),
            seed: 900 + i,
        };
        if i == 6 {
            let whole = s.path("radiograph6.dcm");
            synth::write_radiograph(&whole, &spec).expect("write radiograph");
            let good = std::fs::read(&whole).expect("read radiograph");
            std::fs::write(input.join("cut.dcm"), &good[..good.len() / 2]).expect("junk");
            continue;
        }
        let path = input.join(format!("radiograph{i}.dcm"));
        synth::write_radiograph(&path, &spec).expect("write radiograph");
        collect(&path);
    }
    std::fs::write(input.join("empty.dcm"), b"").expect("junk");
    std::fs::write(input.join("notes.txt"), "not an image\n").expect("junk");
    std::fs::write(
        input.join("noise.bin"),
        (0..4096u32)
            .map(|i| (i * 7919 % 251) as u8)
            .collect::<Vec<u8>>(),
    )
    .expect("junk");
    // An identifier that is (part of) a kept value ("TOSHIBA" as the institution
    // of a file made by "TOSHIBA_MEC") cannot be told apart from it.
    let ids: BTreeSet<String> = ids
        .into_iter()
        .filter(|id| !retained.iter().any(|r| r.contains(id.as_str())))
        .collect();
    assert!(
        ids.len() >= 20,
        "only {} identifiers collected: {ids:?}",
        ids.len()
    );

    let out = s.run(&["import", "dicom", input.to_str().expect("utf-8 path")]);
    let (text, err) = (stdout(&out), stderr(&out));
    assert_eq!(
        out.status.code(),
        Some(3),
        "some files are refused\n{text}\n{err}"
    );
    assert!(
        !err.contains("panicked") && !text.contains("panicked"),
        "{err}"
    );
    // Every refused file is on a line of its own: its path, a colon, a reason.
    let refused: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with(input.to_str().expect("utf-8")))
        .collect();
    for junk in ["cut.dcm", "empty.dcm", "notes.txt", "noise.bin"] {
        assert!(
            refused.iter().any(|l| l.contains(junk)),
            "{junk} is not named among the refused files:\n{text}"
        );
    }
    for line in &refused {
        let (_, reason) = line
            .split_once(": ")
            .unwrap_or_else(|| panic!("no reason: {line}"));
        assert!(reason.trim().len() >= 10, "unclear reason: {line}");
    }
    let summary = text
        .lines()
        .rev()
        .find(|l| l.contains(" files: "))
        .expect("a summary line");
    assert!(summary.contains("imported"), "{summary}");

    // No identifier of the originals in the stored copies...
    let store = PathBuf::from(format!("{}.store", s.db.display()));
    if std::env::var_os("MARROW_KEEP_STORE").is_some() {
        let _ = std::process::Command::new("cp")
            .arg("-r")
            .arg(&store)
            .arg("/tmp/kept-store")
            .status();
    }
    let mut stored = 0;
    for entry in walkdir::WalkDir::new(&store)
        .into_iter()
        .filter_map(|e| e.ok())
    {
        if !entry.file_type().is_file() {
            continue;
        }
        stored += 1;
        let bytes = std::fs::read(entry.path()).expect("read stored copy");
        for id in &ids {
            assert!(
                !contains(&bytes, id.as_bytes()),
                "{id:?} is in the stored copy {}",
                entry.path().display()
            );
        }
    }
    // Many corpus files are the same instance in another encoding (one SOP
    // Instance UID): the first copy is stored, the others are skipped.
    assert!(stored >= 80, "only {stored} stored copies");
    // ...nor in any text or blob of the decrypted database.
    let conn = common::raw_connection(&s.db);
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
        .expect("tables")
        .query_map([], |r| r.get(0))
        .expect("tables")
        .collect::<Result<_, _>>()
        .expect("tables");
    for table in tables {
        let mut stmt = conn
            .prepare(&format!("SELECT * FROM \"{table}\""))
            .expect("select");
        let n = stmt.column_count();
        let mut rows = stmt.query([]).expect("rows");
        while let Some(row) = rows.next().expect("row") {
            for i in 0..n {
                let bytes: Vec<u8> = match row.get_ref(i).expect("value") {
                    rusqlite::types::ValueRef::Text(t) | rusqlite::types::ValueRef::Blob(t) => {
                        t.to_vec()
                    }
                    _ => continue,
                };
                for id in &ids {
                    assert!(
                        !contains(&bytes, id.as_bytes()),
                        "{id:?} is in table {table}"
                    );
                }
            }
        }
    }

    // A second run imports nothing new.
    let again = s.run(&["import", "dicom", input.to_str().expect("utf-8 path")]);
    let again_text = stdout(&again);
    let summary = again_text
        .lines()
        .rev()
        .find(|l| l.contains(" files: "))
        .expect("a summary line");
    assert!(summary.contains(": 0 imported"), "{summary}");
}
