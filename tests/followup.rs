//! Follow-up visits: `marrow import followup` (row checks, rejected rows with line and
//! reason, idempotent re-import, audited, MRN never stored), the coordinator's list of
//! visits due (`marrow followup`), and entering or correcting a visit by hand with a
//! version check (`Study::record_visit`).

mod common;

use chrono::{Months, NaiveDate};
use common::{TempStudy, stdout};
use marrow::db::DbError;
use marrow::domain::followup::{VisitInput, VisitState};

/// Today at the sites (UTC+8), as marrow sees it.
fn today() -> NaiveDate {
    marrow::domain::clock::today_local()
}

fn months_ago(m: u32) -> NaiveDate {
    today().checked_sub_months(Months::new(m)).unwrap()
}

/// Three eligible OA patients: FU1's 6-month visit is due now, FU2's window opens in
/// 10 days, FU3's closed two months ago; FU4 is ineligible (deformity).
fn study() -> TempStudy {
    let s = TempStudy::init();
    let due_now = months_ago(6);
    let opens_soon = months_ago(5) + chrono::Duration::days(10);
    let overdue = months_ago(9);
    let header = "mrn,name,site,phase,group,sex,birth_date,index_date,bmi,deformity,implant,pathological_fracture,malignancy,steroid_long_term,radio_chemo_last\n";
    let row = |mrn: &str, idx: NaiveDate, deformity: &str| {
        format!(
            "{mrn},Test Person,PKUPH,prospective,OA,F,1960-02-03,{idx},24.0,{deformity},no,no,no,no,none\n"
        )
    };
    let csv = format!(
        "{header}{}{}{}{}",
        row("FU1", due_now, "no"),
        row("FU2", opens_soon, "no"),
        row("FU3", overdue, "no"),
        row("FU4", due_now, "yes"),
    );
    let p = s.write("patients.csv", &csv);
    s.expect(&["import", "patients", p.to_str().unwrap()], 0);
    s
}

#[test]
fn a_field_that_is_not_utf8_refuses_the_visit_only_in_a_column_the_import_reads() {
    let s = study();
    let visit = months_ago(6) + chrono::Duration::days(3);
    let mut csv = format!("mrn,visit_month,visit_date,vas,oks,new_fragility_fracture,clinic_note\nFU1,6,{visit},3.5,40,no,gut; M").into_bytes();
    csv.extend(b"\xfcller\n"); // Latin-1 in a column marrow does not read
    csv.extend(format!("FU3,6,{visit},").as_bytes());
    csv.extend(b"\xb3,40,no,fine\n"); // Latin-1 in the VAS
    let p = s.path("latin1-visits.csv");
    std::fs::write(&p, &csv).unwrap();
    let out = s.expect(&["import", "followup", p.to_str().unwrap()], 3);
    assert!(
        out.contains("line 3: column 'vas' is not valid UTF-8 (save the export as UTF-8)"),
        "{out}"
    );
    assert!(!out.contains("line 2:"), "{out}");
    assert!(out.contains("1 added"), "{out}");
}

#[test]
fn import_checks_rows_rejects_with_line_and_reason_and_is_idempotent() {
    let s = study();
    let visit = months_ago(6) + chrono::Duration::days(3);
    let before_index = months_ago(7);
    let csv = format!(
        "MRN,visit_month,visit_date,vas,oks,new_fragility_fracture,clinic_note\n\
         fu1,6,{visit},3.5,40,no,fine\n\
         FU3,6,{visit},11,40,no,vas too high\n\
         FU3,12,{visit},2,49,no,oks too high\n\
         FU3,18,{visit},2,30,no,not a planned month\n\
         NOBODY,6,{visit},2,30,no,unknown patient\n\
         FU2,6,{before_index},2,30,no,before the index date\n\
         FU3,6,{visit},2,30,maybe,bad yes/no\n\
         FU1,6,{visit},4,40,no,same visit with other values\n\
         FU1,6,{visit},3.5,40,no,exact repeat: ignored\n"
    );
    let p = s.write("followup.csv", &csv);
    let out = s.expect(&["import", "followup", p.to_str().unwrap()], 3);
    assert!(out.contains("line 3: vas 11 is outside 0 to 10"), "{out}");
    assert!(out.contains("line 4: oks 49 is outside 0 to 48"), "{out}");
    assert!(
        out.contains("line 5: visit_month 18 is not the baseline (0) or a planned visit"),
        "{out}"
    );
    assert!(out.contains("line 6: mrn is not a known patient"), "{out}");
    assert!(
        out.contains("line 7: visit_date") && out.contains("before the patient's index date"),
        "{out}"
    );
    assert!(
        out.contains("line 8: new_fragility_fracture 'maybe'"),
        "{out}"
    );
    assert!(out.contains("line 9: the same visit is on line 2"), "{out}");
    assert!(
        out.contains("1 added, 0 updated, 0 unchanged, 7 rejected"),
        "{out}"
    );
    let rejected = std::fs::read_to_string(s.path("followup.rejected.csv")).unwrap();
    assert_eq!(rejected.lines().count(), 8, "{rejected}");
    assert!(rejected.lines().next().unwrap().ends_with(",reason"));

    // the same file again changes nothing
    let again = s.expect(&["import", "followup", p.to_str().unwrap()], 3);
    assert!(
        again.contains("0 added, 0 updated, 1 unchanged, 7 rejected"),
        "{again}"
    );
    // a corrected value is an update, audited with before and after
    let fixed = s.write(
        "followup2.csv",
        &format!(
            "mrn,visit_month,visit_date,vas,oks,new_fragility_fracture\nFU1,6,{visit},5,38,yes\n"
        ),
    );
    let out = s.expect(&["import", "followup", fixed.to_str().unwrap()], 0);
    assert!(out.contains("0 added, 1 updated"), "{out}");
    let log = s.expect(&["audit", "log", "--json"], 0);
    let rows: serde_json::Value = serde_json::from_str(&log).unwrap();
    let fu: Vec<&serde_json::Value> = rows
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["entity"] == "follow_up_visit")
        .collect();
    assert_eq!(fu.len(), 2, "{fu:?}");
    assert_eq!(fu[0]["action"], "followup.add");
    assert_eq!(fu[1]["action"], "followup.update");
    assert!(fu[1]["before"].as_str().unwrap().contains("3.5"));
    assert!(!log.contains("FU1") && !log.to_lowercase().contains("\"fu1\""));
    s.expect(&["audit", "verify"], 0);

    // the MRN is not stored anywhere in clear: not in the visit table, not in the trail
    let study = s.open();
    let cols: Vec<String> = study
        .conn()
        .prepare("SELECT name FROM pragma_table_info('follow_up_visits')")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(!cols.iter().any(|c| c.contains("mrn")), "{cols:?}");
    let hits: i64 = study
        .conn()
        .query_row(
            "SELECT count(*) FROM audit_log WHERE coalesce(before, '') || coalesce(after, '') || entity_id LIKE '%FU1%'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(hits, 0);
    let visits = study.patient_visits("PKUPH-OA-0001", today()).unwrap();
    // the baseline (month 0, not recorded here) first, then the four planned visits
    assert_eq!(visits.len(), 5);
    assert!(visits[0].baseline && visits[0].window.month == 0 && visits[0].recorded.is_none());
    assert_eq!(visits[1].state, VisitState::Done);
    assert_eq!(visits[1].recorded.as_ref().unwrap().visit.oks, Some(38));
}

#[test]
fn the_coordinators_list_shows_visits_due_soon() {
    let s = study();
    let list = |args: &[&str]| -> Vec<(String, u64, String)> {
        let mut a = vec!["followup", "--json"];
        a.extend_from_slice(args);
        let v: serde_json::Value = serde_json::from_str(&s.expect(&a, 0)).unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| {
                (
                    x["study_id"].as_str().unwrap().to_string(),
                    x["window"]["month"].as_u64().unwrap(),
                    x["state"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    // PKUPH-OA-0001 (due now), -0002 (opens in 10 days), -0003 (overdue), -0004 ineligible
    let thirty = list(&[]);
    assert_eq!(
        thirty,
        vec![
            ("PKUPH-OA-0001".to_string(), 6, "due".to_string()),
            ("PKUPH-OA-0002".to_string(), 6, "not_yet_due".to_string()),
        ]
    );
    let five = list(&["--due-days", "5"]);
    assert_eq!(five.len(), 1, "{five:?}");
    let with_overdue = list(&["--overdue"]);
    assert!(with_overdue.contains(&("PKUPH-OA-0003".to_string(), 6, "overdue".to_string())));
    let text = s.expect(&["followup"], 0);
    assert!(
        text.contains("PKUPH-OA-0001") && text.contains("due"),
        "{text}"
    );
    // recorded visits leave the list
    let visit = today();
    let p = s.write(
        "fu.csv",
        &format!(
            "mrn,visit_month,visit_date,vas,oks,new_fragility_fracture\nFU1,6,{visit},1,44,no\n"
        ),
    );
    s.expect(&["import", "followup", p.to_str().unwrap()], 0);
    assert_eq!(list(&[]).len(), 1);
    // a visit shown per patient, and through `followup show`
    let show = stdout(&s.run(&["followup", "show", "pkuph-oa-0001"]));
    assert!(show.contains("done"), "{show}");
}

#[test]
fn a_visit_is_entered_and_corrected_with_a_version_check() {
    let s = study();
    let mut study = s.open();
    let v = VisitInput {
        visit_date: months_ago(6),
        vas: Some(2.0),
        oks: Some(41),
        new_fragility_fracture: Some(false),
    };
    let row = study
        .record_visit("PKUPH-OA-0001", 6, &v, "", None)
        .unwrap();
    assert_eq!(row.version, 1);
    assert_eq!(row.source, "marrow");
    // a second person who opened the empty visit is stopped
    let e = study
        .record_visit("PKUPH-OA-0001", 6, &v, "", None)
        .unwrap_err();
    assert!(matches!(e, DbError::Conflict(_)), "{e}");
    // a correction needs a reason and the version shown
    let fixed = VisitInput {
        oks: Some(43),
        ..v.clone()
    };
    let e = study
        .record_visit("PKUPH-OA-0001", 6, &fixed, " ", Some(1))
        .unwrap_err();
    assert!(matches!(e, DbError::Invalid(_)), "{e}");
    let row = study
        .record_visit("PKUPH-OA-0001", 6, &fixed, "typo in OKS", Some(1))
        .unwrap();
    assert_eq!((row.version, row.visit.oks), (2, Some(43)));
    let e = study
        .record_visit("PKUPH-OA-0001", 6, &v, "again", Some(1))
        .unwrap_err();
    assert!(e.to_string().contains("version 1, now 2"), "{e}");
    // out of range values and months are refused
    let bad = VisitInput {
        oks: Some(49),
        ..v.clone()
    };
    assert!(
        study
            .record_visit("PKUPH-OA-0001", 12, &bad, "", None)
            .is_err()
    );
    assert!(
        study
            .record_visit("PKUPH-OA-0001", 18, &v, "", None)
            .is_err()
    );
    drop(study);
    // the CLI does the same, and a PI may not
    s.expect(
        &[
            "followup",
            "record",
            "PKUPH-OA-0002",
            "--month",
            "6",
            "--date",
            &today().to_string(),
            "--vas",
            "3",
            "--oks",
            "30",
            "--fracture",
            "no",
        ],
        0,
    );
    s.expect(&["users", "add", "pi-user", "--role", "pi"], 0);
    let out = s.run(&[
        "--as",
        "pi-user",
        "followup",
        "record",
        "PKUPH-OA-0003",
        "--month",
        "6",
        "--date",
        &months_ago(3).to_string(),
        "--vas",
        "3",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let log = s.expect(&["audit", "log", "--json"], 0);
    assert!(log.contains("typo in OKS"));
    s.expect(&["audit", "verify"], 0);
}

#[test]
fn readers_are_refused_follow_up_by_the_data_layer_and_the_command_line() {
    let s = study();
    s.expect(&["users", "add", "r1", "--role", "reader"], 0);
    s.expect(&["users", "add", "pat", "--role", "pi"], 0);
    for args in [
        vec!["--as", "r1", "followup"],
        vec!["--as", "r1", "followup", "--overdue", "--json"],
        vec!["--as", "r1", "followup", "show", "PKUPH-OA-0001"],
    ] {
        let out = s.run(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stdout(&out));
        let err = common::stderr(&out);
        assert!(
            err.contains("see follow-up visits (readers are blinded"),
            "{args:?}: {err}"
        );
        assert!(!stdout(&out).contains("PKUPH-OA-0001"), "{args:?}");
    }
    let reader = marrow::db::Study::open(&s.db, None, Some("r1")).unwrap();
    for refused in [
        reader.visits_due(today(), 30, true).map(|_| ()),
        reader.planned_visits(today()).map(|_| ()),
        reader.patient_visits("PKUPH-OA-0001", today()).map(|_| ()),
    ] {
        assert!(
            matches!(refused, Err(DbError::NotAllowed { .. })),
            "{refused:?}"
        );
    }
    // The PI still sees them (read-only).
    let shown = s.expect(&["--as", "pat", "followup", "show", "PKUPH-OA-0001"], 0);
    assert!(shown.contains("PKUPH-OA-0001"), "{shown}");
}

#[test]
fn a_visit_without_outcome_is_refused_alike_by_the_import_and_the_command_line() {
    let s = study();
    let visit = months_ago(6) + chrono::Duration::days(3);
    let p = s.write(
        "followup.csv",
        &format!("mrn,visit_month,visit_date,vas,oks,new_fragility_fracture\nFU1,6,{visit},,,\n"),
    );
    let out = s.expect(&["import", "followup", p.to_str().unwrap()], 3);
    let why = marrow::domain::followup::NO_OUTCOME;
    assert!(out.contains(&format!("line 2: {why}")), "{out}");
    let out = s.run(&[
        "followup",
        "record",
        "PKUPH-OA-0001",
        "--month",
        "6",
        "--date",
        &visit.to_string(),
    ]);
    assert!(!out.status.success(), "{}", stdout(&out));
    assert!(
        common::stderr(&out).contains(why),
        "{}",
        common::stderr(&out)
    );
    assert!(!stdout(&out).contains("saved"), "{}", stdout(&out));
    // nothing was stored by either
    let visits = s.open().patient_visits("PKUPH-OA-0001", today()).unwrap();
    assert!(visits.iter().all(|v| v.recorded.is_none()), "{visits:?}");
}

#[test]
fn a_visit_in_the_future_is_refused_and_one_outside_its_window_is_kept_flagged() {
    let s = study();
    let tomorrow = today() + chrono::Duration::days(1);
    let later = today().checked_add_months(Months::new(48)).unwrap();
    let p = s.write(
        "followup.csv",
        &format!(
            "mrn,visit_month,visit_date,vas\nFU1,6,{tomorrow},3\nFU1,12,{later},3\nFU1,24,{},3\n",
            today()
        ),
    );
    let out = s.expect(&["import", "followup", p.to_str().unwrap()], 3);
    assert!(
        out.contains(&format!(
            "line 2: visit_date {tomorrow} is in the future (today at the site is {})",
            today()
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!("line 3: visit_date {later} is in the future")),
        "{out}"
    );
    assert!(out.contains("1 added"), "{out}");
    // the command line refuses it too, and never shows it done
    let out = s.run(&[
        "followup",
        "record",
        "PKUPH-OA-0001",
        "--month",
        "36",
        "--date",
        &later.to_string(),
        "--vas",
        "2",
    ]);
    assert!(!out.status.success(), "{}", stdout(&out));
    assert!(
        common::stderr(&out).contains(&format!("visit_date {later} is in the future")),
        "{}",
        common::stderr(&out)
    );
    let visits = s.open().patient_visits("PKUPH-OA-0001", today()).unwrap();
    let v36 = visits.iter().find(|v| v.window.month == 36).unwrap();
    assert_ne!(v36.state, VisitState::Done);
    // a 36-month visit dated six months after the index date: kept, out of window
    let out = s.expect(
        &[
            "followup",
            "record",
            "PKUPH-OA-0001",
            "--month",
            "36",
            "--date",
            &months_ago(0).to_string(),
            "--vas",
            "2",
        ],
        0,
    );
    assert!(out.contains("(out of window:"), "{out}");
    let visits = s.open().patient_visits("PKUPH-OA-0001", today()).unwrap();
    let v36 = visits.iter().find(|v| v.window.month == 36).unwrap();
    assert_eq!((v36.state, v36.in_window), (VisitState::Done, Some(false)));
}
