//! `marrow outcomes` (issue 14 item 5): new fragility fractures by baseline OP stage
//! (Kaplan–Meier, Greenwood log-log 95% CIs, numbers at risk, log-rank), against
//! lifelines on the same event times; the month-0 visit is accepted.

mod common;

use common::{TempStudy, stderr, stdout};

/// Every patient's index date is 2026-01-05 (prospective). Stages by the lowest
/// T-score: N* normal, P* osteopenia, O* osteoporosis; K1 is an OA patient.
const PATIENTS: &str = "mrn,site,phase,group,sex,birth_date,index_date,deformity,implant,pathological_fracture,malignancy,steroid_long_term,radio_chemo_last
N1,PKUPH,prospective,CONTROL,F,1950-01-01,2026-01-05,no,no,no,no,no,none
N2,PKUPH,prospective,CONTROL,F,1951-01-01,2026-01-05,no,no,no,no,no,none
N3,PKUPH,prospective,CONTROL,M,1952-01-01,2026-01-05,no,no,no,no,no,none
N4,PKUPH,prospective,CONTROL,M,1953-01-01,2026-01-05,no,no,no,no,no,none
P1,PKUPH,prospective,OP,F,1950-01-01,2026-01-05,no,no,no,no,no,none
P2,PKUPH,prospective,OP,F,1951-01-01,2026-01-05,no,no,no,no,no,none
P3,PKUPH,prospective,OP,F,1952-01-01,2026-01-05,no,no,no,no,no,none
O1,SYSMH,prospective,OP,F,1950-01-01,2026-01-05,no,no,no,no,no,none
O2,SYSMH,prospective,OP,F,1951-01-01,2026-01-05,no,no,no,no,no,none
O3,SYSMH,prospective,OP,F,1952-01-01,2026-01-05,no,no,no,no,no,none
O4,SYSMH,prospective,OP,M,1953-01-01,2026-01-05,no,no,no,no,no,none
O5,SYSMH,prospective,OP,M,1954-01-01,2026-01-05,no,no,no,no,no,none
K1,SYSMH,prospective,OA,M,1954-01-01,2026-01-05,no,no,no,no,no,none
";

fn dxa() -> String {
    let mut s = String::from("mrn,scan_date,region,t_score\n");
    for (mrn, t) in [
        ("N1", -0.5),
        ("N2", 0.2),
        ("N3", -0.9),
        ("N4", -0.1),
        ("P1", -1.8),
        ("P2", -1.2),
        ("P3", -2.4),
        ("O1", -2.8),
        ("O2", -3.1),
        ("O3", -2.5),
        ("O4", -2.6),
        ("O5", -3.4),
    ] {
        s.push_str(&format!("{mrn},2026-01-01,total_hip,{t}\n"));
    }
    s
}

/// Fracture answers per visit; N4 has a baseline visit only, K1 a baseline and a
/// 6-month visit with VAS and OKS.
const VISITS: &str = "mrn,visit_month,visit_date,vas,oks,new_fragility_fracture
N1,0,2026-01-05,5,,no
N1,6,2026-07-06,,,no
N1,12,2027-01-04,,,no
N1,24,2028-01-05,,,no
N2,6,2026-07-06,,,no
N2,12,2027-01-04,,,yes
N3,6,2026-07-06,,,no
N4,0,2026-01-05,3,,no
P1,6,2026-07-06,,,no
P1,12,2027-01-04,,,no
P1,24,2028-01-05,,,yes
P2,6,2026-07-06,,,yes
P3,6,2026-07-06,,,no
P3,12,2027-01-04,,,no
P3,24,2028-01-05,,,no
P3,36,2029-01-05,,,no
O1,6,2026-07-06,,,yes
O2,6,2026-07-06,,,no
O2,12,2027-01-04,,,yes
O3,6,2026-07-10,,,yes
O4,6,2026-07-06,,,no
O4,12,2027-01-04,,,no
O5,6,2026-07-06,,,no
O5,12,2027-01-04,,,no
O5,24,2028-01-05,,,yes
K1,0,2026-01-05,7,20,
K1,6,2026-07-06,4,31,
";

fn marrow_at(s: &TempStudy, args: &[&str]) -> std::process::Output {
    s.cmd()
        .args(args)
        .env("MARROW_TODAY", "2029-06-30")
        .output()
        .unwrap()
}

fn study() -> TempStudy {
    let s = TempStudy::init();
    for (kind, name, text) in [
        ("patients", "p.csv", PATIENTS.to_string()),
        ("dxa", "d.csv", dxa()),
        ("followup", "f.csv", VISITS.to_string()),
    ] {
        let path = s.write(name, &text);
        let out = marrow_at(&s, &["import", kind, path.to_str().unwrap()]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}{}",
            stdout(&out),
            stderr(&out)
        );
        assert!(stdout(&out).contains("0 rejected"), "{}", stdout(&out));
    }
    s
}

fn close(a: &serde_json::Value, b: f64) {
    let a = a.as_f64().unwrap_or_else(|| panic!("not a number: {a}"));
    assert!((a - b).abs() < 1e-9, "{a} is not {b}");
}

#[test]
fn fracture_incidence_by_op_stage_matches_lifelines() {
    let s = study();
    let out = marrow_at(&s, &["outcomes", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let j: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(j["cohort"], "prospective");
    assert_eq!(j["patients"], 13);
    // lifelines 0.30: KaplanMeierFitter().fit(T, E) per stage, T in months of
    // 365.25/12 days from 2026-01-05; incidence 1 - S(t) and 1 - the log(-log)
    // interval at t; at risk = #(T >= t); multivariate_logrank_test(T, stage, E).
    // (incidence, lower, upper, at risk) at 6, 12, 24 and 36 months
    type At = [(f64, f64, f64, u64); 4];
    let want: [(&str, usize, usize, At); 3] = [
        (
            "normal",
            3,
            1,
            [
                (0.0, 0.0, 0.0, 2),
                (0.5, 0.089_589_915_163_262_65, 0.994_016_912_360_854_2, 1),
                (0.5, 0.089_589_915_163_262_65, 0.994_016_912_360_854_2, 0),
                (0.5, 0.089_589_915_163_262_65, 0.994_016_912_360_854_2, 0),
            ],
        ),
        (
            "osteopenia",
            3,
            2,
            [
                (
                    0.333_333_333_333_333_37,
                    0.054_793_612_727_953_02,
                    0.945_926_573_213_483_3,
                    2,
                ),
                (
                    0.333_333_333_333_333_37,
                    0.054_793_612_727_953_02,
                    0.945_926_573_213_483_3,
                    2,
                ),
                (
                    0.666_666_666_666_666_7,
                    0.225_851_349_639_167_3,
                    0.991_038_371_669_021,
                    1,
                ),
                (
                    0.666_666_666_666_666_7,
                    0.225_851_349_639_167_3,
                    0.991_038_371_669_021,
                    1,
                ),
            ],
        ),
        (
            "osteoporosis",
            5,
            4,
            [
                (0.2, 0.030_820_211_133_257_28, 0.796_190_736_732_361, 4),
                (0.6, 0.247_184_208_641_244_68, 0.948_024_249_622_532_5, 1),
                (1.0, 1.0, 1.0, 0),
                (1.0, 1.0, 1.0, 0),
            ],
        ),
    ];
    let curves = j["fractures"].as_array().unwrap();
    for ((stage, patients, events, at), c) in want.iter().zip(curves) {
        assert_eq!(c["stage"], *stage);
        assert_eq!(c["patients"], *patients, "{c}");
        assert_eq!(c["events"], *events, "{c}");
        for ((inc, lo, hi, risk), a) in at.iter().zip(c["at"].as_array().unwrap()) {
            close(&a["incidence"], *inc);
            close(&a["lower"], *lo);
            close(&a["upper"], *hi);
            assert_eq!(a["at_risk"], *risk, "{stage} {a}");
        }
    }
    close(&j["logrank"]["chi2"], 1.222_972_614_073_986_7);
    close(&j["logrank"]["p"], 0.542_543_882_717_548_6);
    assert_eq!(j["logrank"]["df"], 2);
    // N4 had a baseline visit only; K1 (OA) has no DXA stage
    assert_eq!(
        j["fracture_excluded"]["no follow-up visit reporting on fractures"],
        1
    );
    assert_eq!(
        j["fracture_excluded"]["no baseline OP stage (DXA WHO stage)"],
        1
    );
    // the text form says what each figure is
    let text = stdout(&marrow_at(&s, &["outcomes"]));
    for want in [
        "New fragility fractures by baseline OP stage",
        "log-rank test between the stages: chi2 1.223, df 2, p 0.543",
        "Greenwood",
        "VAS and OKS change from baseline",
    ] {
        assert!(text.contains(want), "{want:?} missing:\n{text}");
    }
}

#[test]
fn a_month_0_visit_is_accepted_and_a_reader_is_refused_the_outcomes() {
    let s = study();
    let out = marrow_at(&s, &["followup", "show", "PKUPH-CONTROL-0004", "--json"]);
    assert!(
        stdout(&out).contains("\"visit_month\": 0"),
        "{}",
        stdout(&out)
    );
    s.expect(&["users", "add", "r1", "--role", "reader"], 0);
    let out = marrow_at(&s, &["--as", "r1", "outcomes"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(stderr(&out).contains("outcomes"), "{}", stderr(&out));
}

#[test]
fn the_report_draws_the_fracture_curves_and_tables_the_same_figures() {
    let s = study();
    let dir = s.path("report");
    let out = marrow_at(&s, &["report", "--out", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let html = std::fs::read_to_string(dir.join("index.html")).unwrap();
    assert!(html.contains("fractures_by_op_stage.png"), "{html}");
    // the osteoporosis stage at 12 months, as lifelines computes it (above)
    assert!(html.contains("<td>60.0% (24.7-94.8%), 1</td>"), "{html}");
    assert!(html.contains("chi2 1.223, df 2, p 0.543"), "{html}");
    let img = image::open(dir.join("fractures_by_op_stage.png")).unwrap();
    assert!(img.width() >= 600 && img.height() >= 400);
}
