//! The PI's view, checked end to end on the demo study (issue 6, "done when"):
//! the CONSORT counts equal `marrow status --json` and the analysis export, the
//! drill-down list of every box holds exactly its count of patients, the analysis
//! export has no identifier and no real calendar date (intervals stay exact), the
//! summary suppresses small cells and merges, and the report's PNGs and the CONSORT
//! SVG render.

mod common;

use common::stderr;
use marrow::db::Study;
use marrow::domain::consort::{BoxKey, Step};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// One demo study for every test here (building it takes a while).
fn demo() -> &'static Path {
    static DEMO: OnceLock<PathBuf> = OnceLock::new();
    DEMO.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap().keep();
        let out = marrow(&dir.join("demo.db"))
            .args(["demo", "--no-tui", "--dir"])
            .arg(&dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "demo: {}", stderr(&out));
        // follow-up visits for some fixture patients, so intervals can be checked
        let fu = dir.join("followup.csv");
        std::fs::write(
            &fu,
            "mrn,visit_month,visit_date,vas,oks,new_fragility_fracture\n\
             PK100001,6,2024-09-20,3,38,no\n\
             PK100001,12,2025-03-10,2.5,41,no\n\
             PK100002,6,2024-10-02,1,45,yes\n",
        )
        .unwrap();
        let out = marrow(&dir.join("demo.db"))
            .args(["import", "followup"])
            .arg(&fu)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "followup import: {}{}",
            common::stdout(&out),
            stderr(&out)
        );
        dir
    })
}

fn marrow(db: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_marrow"));
    c.arg("--db")
        .arg(db)
        .env_remove("MARROW_KEY")
        .env_remove("MARROW_KEY_FILE")
        .env_remove("MARROW_DB");
    c
}

fn run(args: &[&str]) -> String {
    let out = marrow(&demo().join("demo.db")).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "marrow {args:?}: {}{}",
        common::stdout(&out),
        stderr(&out)
    );
    common::stdout(&out)
}

fn out_path(name: &str) -> String {
    demo().join(name).to_string_lossy().into_owned()
}

type Table = (Vec<String>, Vec<Vec<String>>);

fn read_csv(path: &Path) -> Table {
    // flexible: the demo's bad-rows file has a row with a stray comma on purpose
    let mut r = csv::ReaderBuilder::new()
        .flexible(true)
        .from_path(path)
        .unwrap();
    let h: Vec<String> = r.headers().unwrap().iter().map(String::from).collect();
    let rows = r
        .records()
        .map(|x| {
            let x = x.unwrap();
            (0..h.len())
                .map(|i| x.get(i).unwrap_or("").to_string())
                .collect()
        })
        .collect();
    (h, rows)
}

fn col(t: &Table, name: &str) -> usize {
    t.0.iter()
        .position(|h| h == name)
        .unwrap_or_else(|| panic!("no column {name}"))
}

fn analysis() -> &'static Table {
    static T: OnceLock<Table> = OnceLock::new();
    T.get_or_init(|| {
        let out = out_path("analysis.csv");
        run(&["export", "analysis", "--out", &out]);
        read_csv(Path::new(&out))
    })
}

fn open() -> Study {
    Study::open(&demo().join("demo.db"), None, None).unwrap()
}

#[test]
fn consort_counts_equal_status_and_the_analysis_export() {
    let status: serde_json::Value = serde_json::from_str(&run(&["status", "--json"])).unwrap();
    let out = out_path("consort.json");
    run(&["export", "consort", "--format", "json", "--out", &out]);
    let c: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let count = |key: &str| -> u64 {
        c["boxes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["key"] == key)
            .unwrap_or_else(|| panic!("no box {key}"))["count"]
            .as_u64()
            .unwrap()
    };
    assert_eq!(count("assessed"), status["patients"].as_u64().unwrap());
    assert_eq!(
        count("eligible"),
        status["eligibility"]["eligible"].as_u64().unwrap()
    );
    assert_eq!(
        count("excluded"),
        status["eligibility"]["ineligible"].as_u64().unwrap()
    );
    assert_eq!(
        count("pending"),
        status["eligibility"]["pending"].as_u64().unwrap()
    );
    // the demo has images, reads, finals and predictions: every step is populated
    for k in ["imaged", "read", "adjudicated", "predicted", "analysed"] {
        assert!(count(k) > 0, "CONSORT box {k} is empty on the demo: {c}");
    }
    // boxes narrow down
    let chain = [
        "eligible",
        "imaged",
        "read",
        "adjudicated",
        "predicted",
        "analysed",
    ];
    for w in chain.windows(2) {
        assert!(count(w[0]) >= count(w[1]), "{} < {}", w[0], w[1]);
    }
    // every exclusion criterion's count is the number of ineligible patients with that reason
    let patients: serde_json::Value =
        serde_json::from_str(&run(&["patients", "--json", "--decision", "ineligible"])).unwrap();
    for b in c["excluded_by"].as_array().unwrap() {
        let crit = b["key"].as_str().unwrap().trim_start_matches("excluded_");
        let n = patients
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| {
                p["reasons"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|r| r.as_str().unwrap().starts_with(crit))
            })
            .count() as u64;
        assert_eq!(b["count"].as_u64().unwrap(), n, "{crit}");
    }
    // no patient id or study ID in the JSON
    assert!(!c.to_string().contains("PKUPH-"), "{c}");

    // the analysis export: every eligible patient, and exactly the analysed ones marked
    let t = analysis();
    let sid = col(t, "study_id");
    let an = col(t, "analysed");
    let ids: HashSet<&String> = t.1.iter().map(|r| &r[sid]).collect();
    assert_eq!(ids.len() as u64, count("eligible"));
    let analysed: HashSet<&String> =
        t.1.iter()
            .filter(|r| r[an] == "yes")
            .map(|r| &r[sid])
            .collect();
    assert_eq!(analysed.len() as u64, count("analysed"));
    // the library's figures are the CLI's
    let study = open();
    let lib = study.consort().unwrap();
    assert_eq!(lib.count(Step::Analysed), count("analysed"));
    assert_eq!(lib.count(Step::Read), count("read"));
    let st = study.status().unwrap();
    assert_eq!(st.patients, status["patients"].as_u64().unwrap());
}

#[test]
fn drilling_down_lists_exactly_the_patients_a_box_counts() {
    let study = open();
    let c = study.consort().unwrap();
    let mut seen = 0;
    for b in c.boxes.iter().chain(&c.excluded_by) {
        let rows = study.consort_patients(b.key).unwrap();
        assert_eq!(rows.len() as u64, b.count, "{}", b.key.code());
        let distinct: BTreeSet<&str> = rows.iter().map(|r| r.study_id.as_str()).collect();
        assert_eq!(distinct.len(), rows.len(), "{}", b.key.code());
        seen += 1;
    }
    assert!(seen >= 10);
    // the lists agree with the patients' decisions
    let eligible = study
        .consort_patients(BoxKey::Step(Step::Eligible))
        .unwrap();
    assert!(eligible.iter().all(|p| p.decision.code() == "eligible"));
    let excluded = study
        .consort_patients(BoxKey::Step(Step::Excluded))
        .unwrap();
    assert!(excluded.iter().all(|p| p.decision.code() == "ineligible"));
    for b in &c.excluded_by {
        let BoxKey::ExcludedBy(crit) = b.key else {
            unreachable!()
        };
        for p in study.consort_patients(b.key).unwrap() {
            assert!(p.reasons.contains(&crit), "{} {crit}", p.study_id);
        }
    }
    // the analysed patients are among the predicted, which are among the imaged
    let set = |s: Step| -> HashSet<String> {
        study
            .consort_patients(BoxKey::Step(s))
            .unwrap()
            .into_iter()
            .map(|p| p.study_id)
            .collect()
    };
    assert!(set(Step::Analysed).is_subset(&set(Step::Predicted)));
    assert!(set(Step::Predicted).is_subset(&set(Step::Imaged)));
}

/// (mrn, name, birth date, index date) of the hand-written fixture patients.
fn fixture_people() -> Vec<(String, String, String, String)> {
    let mut out = Vec::new();
    for f in ["patients.csv", "patients_bad.csv"] {
        let t = read_csv(
            &Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("fixtures/demo")
                .join(f),
        );
        let (m, n, b, i) = (
            col(&t, "mrn"),
            col(&t, "name"),
            col(&t, "birth_date"),
            col(&t, "index_date"),
        );
        for r in &t.1 {
            out.push((r[m].clone(), r[n].clone(), r[b].clone(), r[i].clone()));
        }
    }
    out
}

/// Every date of each fixture patient (index, DXA, labs), by MRN (upper case).
fn fixture_dates() -> HashMap<String, BTreeSet<String>> {
    let mut out: HashMap<String, BTreeSet<String>> = HashMap::new();
    for (mrn, _, _, index) in fixture_people() {
        if !index.is_empty() {
            out.entry(mrn.to_uppercase()).or_default().insert(index);
        }
    }
    for (f, d) in [("dxa.csv", "scan_date"), ("labs.csv", "date")] {
        let t = read_csv(
            &Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("fixtures/demo")
                .join(f),
        );
        let (m, d) = (col(&t, "mrn"), col(&t, d));
        for r in &t.1 {
            out.entry(r[m].trim().to_uppercase())
                .or_default()
                .insert(r[d].clone());
        }
    }
    out
}

fn is_date(s: &str) -> bool {
    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok()
}

#[test]
fn the_analysis_export_has_no_identifier_and_no_real_date() {
    let t = analysis();
    let text = std::fs::read_to_string(out_path("analysis.csv")).unwrap();
    let study = open();
    let sid_of = |mrn: &str| -> Option<String> {
        use rusqlite::OptionalExtension;
        study
            .conn()
            .query_row(
                "SELECT study_id FROM patients WHERE mrn_hash = unhex(?1)",
                [study.identifier_hash(mrn)],
                |r| r.get(0),
            )
            .optional()
            .unwrap()
    };
    let sid = col(t, "study_id");
    let date_cols: Vec<usize> =
        t.0.iter()
            .enumerate()
            .filter(|(_, h)| h.ends_with("_shifted"))
            .map(|(i, _)| i)
            .collect();
    // only the shifted columns hold dates
    for r in &t.1 {
        for (i, cell) in r.iter().enumerate() {
            if is_date(cell) {
                assert!(date_cols.contains(&i), "a date in column {}", t.0[i]);
            }
        }
    }
    // no MRN, name or birth date of a fixture patient, anywhere in the file
    let people = fixture_people();
    let mut exported = 0;
    for (mrn, name, birth, _) in &people {
        if mrn.trim().is_empty() {
            continue;
        }
        assert!(
            !text.to_uppercase().contains(&mrn.trim().to_uppercase()),
            "MRN {mrn}"
        );
        if !name.trim().is_empty() {
            assert!(!text.contains(name.trim()), "name {name}");
        }
        if birth.trim().is_empty() {
            continue;
        }
        for r in &t.1 {
            for (i, cell) in r.iter().enumerate() {
                if !date_cols.contains(&i) {
                    assert_ne!(cell, birth, "birth date in {}", t.0[i]);
                }
            }
        }
        if sid_of(mrn).is_some_and(|s| t.1.iter().any(|r| r[col(t, "study_id")] == s)) {
            exported += 1;
        }
    }
    assert!(exported >= 10, "{exported}");
    // the generated cohort's MRNs are not in it either
    let g = read_csv(&demo().join("generated/patients.csv"));
    let gm = col(&g, "mrn");
    let cells: HashSet<&str> = t.1.iter().flatten().map(|s| s.as_str()).collect();
    for r in &g.1 {
        assert!(!cells.contains(r[gm].as_str()), "generated MRN {}", r[gm]);
    }
    // no real date of a patient is exported as such; every date of a patient moved by one offset
    let fixtures = fixture_dates();
    let idx = col(t, "index_date_shifted");
    let mut checked = 0;
    for (mrn, name, birth, index) in &people {
        let _ = name;
        if mrn.trim().is_empty() {
            continue;
        }
        let Some(s) = sid_of(mrn) else { continue };
        let rows: Vec<&Vec<String>> = t.1.iter().filter(|r| r[sid] == s).collect();
        let real = fixtures
            .get(&mrn.to_uppercase())
            .cloned()
            .unwrap_or_default();
        for r in &rows {
            for &i in &date_cols {
                assert!(
                    !real.contains(&r[i]),
                    "{s}: real date {} in {}",
                    r[i],
                    t.0[i]
                );
                if !birth.is_empty() {
                    assert_ne!(&r[i], birth, "{s}: birth date in {}", t.0[i]);
                }
            }
            if !index.is_empty() && !r[idx].is_empty() {
                assert_ne!(&r[idx], index, "{s}: the index date is not shifted");
                checked += 1;
            }
        }
    }
    assert!(checked >= 10, "{checked}");
    // intervals are exact: follow-up dates move with the index date
    let d = |s: &str| chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
    let s1 = sid_of("PK100001").unwrap();
    let r = t.1.iter().find(|r| r[sid] == s1).unwrap();
    let real_index = d("2024-03-12");
    for (m, real) in [(6, "2024-09-20"), (12, "2025-03-10")] {
        let shifted = d(&r[col(t, &format!("fu{m}_date_shifted"))]);
        let days: i64 = r[col(t, &format!("fu{m}_days_from_index"))]
            .parse()
            .unwrap();
        assert_eq!(days, (d(real) - real_index).num_days());
        assert_eq!((shifted - d(&r[idx])).num_days(), days);
        assert_ne!(shifted, d(real));
    }
    assert_eq!(r[col(t, "fu6_oks")], "38");
    // the dictionary lists every column
    let dict = read_csv(&demo().join("analysis.dictionary.csv"));
    assert_eq!(
        dict.0,
        ["column", "type", "unit", "allowed_values", "description"]
    );
    let names: Vec<&String> = dict.1.iter().map(|r| &r[0]).collect();
    assert_eq!(names, t.0.iter().collect::<Vec<_>>());
    assert!(dict.1.iter().all(|r| !r[4].is_empty()));
}

fn non_trivial(img: &image::RgbImage) -> (usize, usize) {
    let mut colors = HashSet::new();
    let mut inked = 0;
    for p in img.pixels() {
        colors.insert(p.0);
        if p.0.iter().any(|&c| c < 200) {
            inked += 1;
        }
    }
    (colors.len(), inked)
}

#[test]
fn the_report_pngs_and_the_consort_svg_render() {
    let dir = out_path("report");
    let out = run(&["report", "--out", &dir]);
    let dir = PathBuf::from(dir);
    let html = std::fs::read_to_string(dir.join("index.html")).unwrap();
    assert!(html.contains("consort.svg"), "{html}");
    assert!(html.contains("<h2>Secondary outcomes</h2>"), "{html}");
    let mut pngs = 0;
    for name in [
        "enrollment_over_time.png",
        "enrollment_vs_target.png",
        "roc_kl.png",
        "roc_op.png",
    ] {
        let p = dir.join(name);
        if name.starts_with("roc_") && !p.exists() {
            assert!(
                html.contains("not drawn"),
                "{name} missing without a note: {out}"
            );
            continue;
        }
        assert!(html.contains(name), "{name} not in index.html");
        let img = image::open(&p)
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .to_rgb8();
        assert!(img.width() >= 600 && img.height() >= 300, "{name}");
        let (colors, inked) = non_trivial(&img);
        let total = (img.width() * img.height()) as usize;
        assert!(colors > 8, "{name}: {colors} colours");
        assert!(
            inked > total / 200,
            "{name}: {inked} dark pixels of {total}"
        );
        pngs += 1;
    }
    assert!(pngs >= 3, "{pngs}");
    // the KL ROC exists on the demo (final grades and predictions of knees)
    assert!(dir.join("roc_kl.png").exists(), "{html}");

    // the SVG: every count is in its text, and it renders (resvg, the bundled font)
    let svg = std::fs::read_to_string(dir.join("consort.svg")).unwrap();
    let c = open().consort().unwrap();
    for b in c.boxes.iter().chain(&c.excluded_by) {
        assert!(
            svg.contains(&format!("n = {}", b.count)),
            "{}: {}",
            b.key.code(),
            b.count
        );
        assert!(
            svg.contains(&format!("id=\"box-{}\"", b.key.code())),
            "{}",
            b.key.code()
        );
    }
    let mut opt = resvg::usvg::Options::default();
    opt.fontdb_mut().load_font_data(
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/fonts/DejaVuSans.ttf"))
            .unwrap(),
    );
    let tree = resvg::usvg::Tree::from_str(&svg, &opt).unwrap();
    // the text survives parsing as text nodes with the counts
    let mut texts = Vec::new();
    collect_text(tree.root(), &mut texts);
    let eligible = format!("n = {}", c.count(Step::Eligible));
    assert!(texts.iter().any(|t| t == &eligible), "{texts:?}");
    let size = tree.size().to_int_size();
    let mut pixmap = resvg::tiny_skia::Pixmap::new(size.width(), size.height()).unwrap();
    resvg::render(
        &tree,
        resvg::tiny_skia::Transform::default(),
        &mut pixmap.as_mut(),
    );
    let img =
        image::RgbaImage::from_raw(size.width(), size.height(), pixmap.data().to_vec()).unwrap();
    let rgb = image::DynamicImage::ImageRgba8(img).to_rgb8();
    let (colors, inked) = non_trivial(&rgb);
    assert!(
        colors > 8 && inked > 2000,
        "{colors} colours, {inked} dark pixels"
    );
    // the same SVG comes from `export consort --format svg`
    let out = out_path("consort.svg");
    run(&["export", "consort", "--format", "svg", "--out", &out]);
    let again = std::fs::read_to_string(&out).unwrap();
    assert_eq!(again, svg);
}

fn collect_text(g: &resvg::usvg::Group, out: &mut Vec<String>) {
    for n in g.children() {
        match n {
            resvg::usvg::Node::Group(g) => collect_text(g, out),
            resvg::usvg::Node::Text(t) => {
                out.push(t.chunks().iter().map(|c| c.text()).collect::<String>())
            }
            _ => {}
        }
    }
}

#[test]
fn the_summary_has_aggregates_only_and_merges() {
    let out = out_path("summary.json");
    run(&["export", "summary", "--out", &out]);
    let text = std::fs::read_to_string(&out).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let status: serde_json::Value = serde_json::from_str(&run(&["status", "--json"])).unwrap();
    assert_eq!(v["patients"], status["patients"]);
    assert_eq!(v["eligible"], status["eligibility"]["eligible"]);
    // no row-level data: no study ID, no date of a patient
    assert!(
        !text.contains("PKUPH-") && !text.contains("SYSMH-"),
        "{text}"
    );
    let mut small = 0;
    walk(&v, &mut |x| {
        if let Some(n) = x.as_u64() {
            assert!(n == 0 || n >= 5, "a count of {n} is not suppressed");
        }
        if x.as_str() == Some("<5") {
            small += 1;
        }
    });
    assert!(small > 0, "the demo has small cells: {text}");
    // two sites' files merge; the same file twice is noted
    let merged = run(&["summary", "merge", &out, &out, "--json"]);
    let m: serde_json::Value = serde_json::from_str(&merged).unwrap();
    assert_eq!(
        m["patients"].as_u64().unwrap(),
        2 * v["patients"].as_u64().unwrap()
    );
    assert!(m["notes"].to_string().contains("counted twice"), "{m}");
    let text = run(&["summary", "merge", &out, &out]);
    assert!(text.contains("CONSORT flow"), "{text}");
    // per-cohort targets survive
    let cohorts: BTreeMap<String, u64> = m["cohorts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                format!("{} {} {}", c["site"], c["group"], c["phase"]),
                c["target"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(cohorts.len(), 12);
}

fn walk(v: &serde_json::Value, f: &mut impl FnMut(&serde_json::Value)) {
    match v {
        serde_json::Value::Array(a) => a.iter().for_each(|x| walk(x, f)),
        serde_json::Value::Object(o) => {
            for (k, x) in o {
                // targets are protocol figures, not counts of patients
                if k != "target" {
                    walk(x, f)
                }
            }
        }
        x => f(x),
    }
}
