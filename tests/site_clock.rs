//! "Today" is the sites' local date in the protocol's time zone (issue 14 item 7):
//! at 00:30 in Shanghai (16:30 UTC the day before) a visit of that morning is not in
//! the future; in a study whose protocol says UTC it is. The clock is fixed with
//! `MARROW_NOW`.

mod common;

use common::{TempStudy, stderr, stdout};

const PATIENTS: &str = "mrn,site,phase,group,sex,birth_date,index_date,deformity,implant,pathological_fracture,malignancy,steroid_long_term,radio_chemo_last
M1,PKUPH,prospective,OA,F,1960-01-01,2026-06-05,no,no,no,no,no,none
";
/// The 6-month visit on the morning of 5 December at the site.
const VISIT: &str = "mrn,visit_month,visit_date,vas,oks,new_fragility_fracture
M1,6,2026-12-05,3,,
";
/// 00:30 on 5 December in Shanghai.
const NOW: &str = "2026-12-04T16:30:00Z";

fn study(protocol: &str) -> TempStudy {
    let s = TempStudy::empty();
    let p = s.write("protocol.toml", protocol);
    s.expect(&["init", "--protocol", p.to_str().unwrap()], 0);
    let csv = s.write("p.csv", PATIENTS);
    s.expect(&["import", "patients", csv.to_str().unwrap()], 0);
    s
}

fn import_visit(s: &TempStudy) -> String {
    let f = s.write("f.csv", VISIT);
    let out = s
        .cmd()
        .args(["import", "followup", f.to_str().unwrap()])
        .env_remove("MARROW_TODAY")
        .env("MARROW_NOW", NOW)
        .output()
        .unwrap();
    format!("{}{}", stdout(&out), stderr(&out))
}

#[test]
fn at_00_30_in_shanghai_this_mornings_visit_is_not_in_the_future() {
    let s = study("");
    let out = import_visit(&s);
    assert!(out.contains("1 added"), "{out}");
}

#[test]
fn a_study_in_utc_still_has_yesterday_at_that_instant() {
    let s = study("time_zone = \"UTC\"\n");
    let out = import_visit(&s);
    assert!(
        out.contains("visit_date 2026-12-05 is in the future (today at the site is 2026-12-04)"),
        "{out}"
    );
}

#[test]
fn a_time_zone_with_daylight_saving_is_refused_at_init_naming_it() {
    let s = TempStudy::empty();
    let p = s.write("protocol.toml", "time_zone = \"Europe/London\"\n");
    let out = s.run(&["init", "--protocol", p.to_str().unwrap()]);
    assert_ne!(out.status.code(), Some(0));
    let err = stderr(&out);
    assert!(
        err.contains("Europe/London") && err.contains("UTC+08:00"),
        "{err}"
    );
    assert!(!s.db.exists(), "a refused init leaves no database");
}
