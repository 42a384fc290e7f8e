//! A patient is one person at one site (issue 13, item 1): MRNs are unique within a
//! hospital, not across the two. The same MRN at PKUPH and at SYSMH is two patients;
//! DXA, lab, follow-up and reads rows name the site (a `site` column or `--site`) or
//! are refused when their MRN is ambiguous; DICOM links by PatientID plus
//! IssuerOfPatientID or the sending site, and quarantines an ambiguous PatientID.
//! Also item 13a: a truncated copy of an instance is malformed, not "already
//! imported". And a study made at schema 6 keeps every link when it migrates.

mod common;
use common::*;
use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_object::{InMemDicomObject, meta::FileMetaTableBuilder};
use std::path::{Path, PathBuf};

/// MRN 777001 at both hospitals: two people.
const TWO_SITES: &str = "\
mrn,site,phase,group,sex,birth_date,index_date
777001,PKUPH,retrospective,OA,F,1960-05-01,2024-05-01
777001,SYSMH,retrospective,OP,M,1970-03-03,2024-05-01
";

fn import(s: &TempStudy, kind: &str, name: &str, text: &str, extra: &[&str], code: i32) -> String {
    let p = s.write(name, text);
    let mut args = vec!["import", kind, p.to_str().unwrap()];
    args.extend_from_slice(extra);
    s.expect(&args, code)
}

fn count(s: &TempStudy, sql: &str) -> i64 {
    raw_connection(&s.db)
        .query_row(sql, [], |r| r.get(0))
        .unwrap()
}

fn study_ids_of(s: &TempStudy, sql: &str) -> Vec<String> {
    let c = raw_connection(&s.db);
    let mut st = c.prepare(sql).unwrap();
    st.query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .map(|r| r.unwrap())
        .collect()
}

#[test]
fn the_same_mrn_at_two_sites_is_two_patients() {
    let s = TempStudy::init();
    let (pku, sys) = TWO_SITES.split_once("\n777001,SYSMH").unwrap();
    let header = TWO_SITES.lines().next().unwrap();
    import(&s, "patients", "pku.csv", &format!("{pku}\n"), &[], 0);
    let out = import(
        &s,
        "patients",
        "sys.csv",
        &format!("{header}\n777001,SYSMH{sys}"),
        &[],
        0,
    );
    assert!(out.contains("1 added, 0 updated"), "{out}");
    let json: serde_json::Value =
        serde_json::from_str(&s.expect(&["patients", "--json"], 0)).unwrap();
    let rows = json.as_array().unwrap();
    assert_eq!(rows.len(), 2, "{json}");
    let pku = rows.iter().find(|r| r["site"] == "PKUPH").unwrap();
    assert_eq!(pku["study_id"], "PKUPH-OA-0001");
    assert_eq!(pku["sex"], "F", "the PKUPH patient is not overwritten");
    let sys = rows.iter().find(|r| r["site"] == "SYSMH").unwrap();
    assert_eq!(sys["study_id"], "SYSMH-OP-0001");
    // Both in one file are two patients too, and a re-import changes nothing.
    let out = import(&s, "patients", "both.csv", TWO_SITES, &[], 0);
    assert!(
        out.contains("2 rows: 0 added, 0 updated, 2 unchanged"),
        "{out}"
    );
    s.expect(&["audit", "verify"], 0);
}

#[test]
fn a_result_row_of_an_ambiguous_mrn_is_refused_naming_both_and_a_site_links_it() {
    let s = TempStudy::init();
    import(&s, "patients", "p.csv", TWO_SITES, &[], 0);
    let both = "PKUPH-OA-0001 at PKUPH and SYSMH-OP-0001 at SYSMH";

    // DXA without a site: refused, naming both study IDs (never the MRN).
    let out = import(
        &s,
        "dxa",
        "dxa.csv",
        "mrn,scan_date,region,t_score\n777001,2024-04-01,total_hip,-2.7\n",
        &[],
        3,
    );
    assert!(
        out.contains(&format!("line 2: mrn is ambiguous: it is {both}")),
        "{out}"
    );
    assert!(out.contains("add a site column"), "{out}");
    assert_eq!(count(&s, "SELECT count(*) FROM dxa_scans"), 0);

    // With a site column: the right patient.
    let out = import(
        &s,
        "dxa",
        "dxa2.csv",
        "mrn,site,scan_date,region,t_score\n777001,sysmh,2024-04-01,total_hip,-2.7\n777001,PKUPH,2024-04-02,total_hip,-0.5\n777001,MGH,2024-04-03,total_hip,-0.5\n",
        &[],
        3,
    );
    assert!(out.contains("2 added"), "{out}");
    assert!(
        out.contains("line 4: site: unknown site 'MGH' (expected PKUPH or SYSMH)"),
        "{out}"
    );
    let sql = "SELECT p.study_id || '/' || d.scan_date FROM dxa_scans d JOIN patients p ON p.id = d.patient_id ORDER BY 1";
    assert_eq!(
        study_ids_of(&s, sql),
        ["PKUPH-OA-0001/2024-04-02", "SYSMH-OP-0001/2024-04-01"]
    );

    // --site as the file-wide default; a row's own site wins.
    let out = import(
        &s,
        "labs",
        "labs.csv",
        "mrn,site,date,analyte,value,unit\n777001,,2024-04-01,calcium,2.3,mmol/L\n777001,PKUPH,2024-04-01,pth,5.0,pmol/L\n",
        &["--site", "SYSMH"],
        0,
    );
    assert!(out.contains("2 added"), "{out}");
    let sql = "SELECT p.study_id || '/' || l.analyte FROM labs l JOIN patients p ON p.id = l.patient_id ORDER BY 1";
    assert_eq!(
        study_ids_of(&s, sql),
        ["PKUPH-OA-0001/pth", "SYSMH-OP-0001/calcium"]
    );
    // A site with no such patient says so.
    let out = import(
        &s,
        "labs",
        "labs2.csv",
        "mrn,date,analyte,value,unit\n888001,2024-04-01,calcium,2.3,mmol/L\n",
        &["--site", "SYSMH"],
        3,
    );
    assert!(
        out.contains("line 2: mrn is not a known patient at SYSMH"),
        "{out}"
    );
    let out = s.run(&[
        "import",
        "labs",
        s.path("labs2.csv").to_str().unwrap(),
        "--site",
        "MGH",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("--site: unknown site 'MGH'"),
        "{}",
        stderr(&out)
    );

    // Follow-up visits: the same rule.
    let out = import(
        &s,
        "followup",
        "fu.csv",
        "mrn,visit_month,visit_date,vas\n777001,6,2024-11-01,3\n",
        &[],
        3,
    );
    assert!(
        out.contains(&format!("line 2: mrn is ambiguous: it is {both}")),
        "{out}"
    );
    let out = import(
        &s,
        "followup",
        "fu2.csv",
        "mrn,site,visit_month,visit_date,vas\n777001,PKUPH,6,2024-11-01,3\n",
        &[],
        0,
    );
    assert!(out.contains("1 added"), "{out}");
    let sql = "SELECT p.study_id FROM follow_up_visits v JOIN patients p ON p.id = v.patient_id";
    assert_eq!(study_ids_of(&s, sql), ["PKUPH-OA-0001"]);

    // Reads made before marrow: the same rule (the patient is looked up after the reader).
    s.expect(&["users", "add", "r1", "--role", "reader"], 0);
    let p = s.write("reads.csv", "reader,mrn,side,kl\nr1,777001,left,2\n");
    let out = s.expect(&["reads", "import", p.to_str().unwrap()], 3);
    assert!(
        out.contains(&format!("line 2: mrn is ambiguous: it is {both}")),
        "{out}"
    );
    let out = s.expect(
        &["reads", "import", p.to_str().unwrap(), "--site", "PKUPH"],
        3,
    );
    assert!(
        out.contains("line 2: PKUPH-OA-0001 has no left case"),
        "the read now finds the PKUPH patient: {out}"
    );
    // No MRN anywhere in what marrow printed or keeps beside the audit trail.
    let log = s.expect(&["audit", "log", "--json"], 0);
    assert!(!log.contains("777001"), "{log}");
    s.expect(&["audit", "verify"], 0);
}

// ---------------------------------------------------------------- DICOM linkage

const DX_CLASS: &str = "1.2.840.10008.5.1.4.1.1.1.1";

/// Writes an 8x8 16-bit radiograph with this PatientID, SOP Instance UID and
/// (optionally) IssuerOfPatientID.
fn write_dicom(path: &Path, patient_id: &str, sop_uid: &str, issuer: Option<&str>) {
    let mut obj = InMemDicomObject::new_empty();
    let mut text = |g: u16, e: u16, vr: VR, v: &str| {
        obj.put(DataElement::new(Tag(g, e), vr, PrimitiveValue::from(v)));
    };
    text(0x0008, 0x0016, VR::UI, DX_CLASS);
    text(0x0008, 0x0018, VR::UI, sop_uid);
    text(0x0008, 0x0020, VR::DA, "20240501");
    text(0x0008, 0x0060, VR::CS, "DX");
    text(0x0010, 0x0010, VR::PN, "WANG^FANG");
    text(0x0010, 0x0020, VR::LO, patient_id);
    if let Some(i) = issuer {
        text(0x0010, 0x0021, VR::LO, i);
    }
    text(0x0018, 0x0015, VR::CS, "KNEE");
    text(0x0020, 0x000D, VR::UI, &format!("{sop_uid}.1"));
    text(0x0020, 0x000E, VR::UI, &format!("{sop_uid}.2"));
    text(0x0020, 0x0062, VR::CS, "L");
    text(0x0028, 0x0004, VR::CS, "MONOCHROME2");
    let mut us = |e: u16, v: u16| {
        obj.put(DataElement::new(
            Tag(0x0028, e),
            VR::US,
            PrimitiveValue::from(v),
        ));
    };
    us(0x0002, 1);
    us(0x0010, 8);
    us(0x0011, 8);
    us(0x0100, 16);
    us(0x0101, 12);
    us(0x0102, 11);
    us(0x0103, 0);
    let px: Vec<u16> = (0..64u16).map(|i| i * 60).collect();
    obj.put(DataElement::new(
        Tag(0x7FE0, 0x0010),
        VR::OW,
        PrimitiveValue::U16(px.into()),
    ));
    obj.with_meta(FileMetaTableBuilder::new().transfer_syntax("1.2.840.10008.1.2.1"))
        .expect("meta")
        .write_to_file(path)
        .expect("write dicom");
}

fn folder(s: &TempStudy, name: &str) -> PathBuf {
    let p = s.path(name);
    std::fs::create_dir_all(&p).unwrap();
    p
}

fn linked_to(s: &TempStudy) -> Vec<String> {
    study_ids_of(
        s,
        "SELECT p.study_id FROM image_instances i JOIN patients p ON p.id = i.patient_id ORDER BY 1",
    )
}

#[test]
fn an_ambiguous_patient_id_waits_in_quarantine_and_an_issuer_or_the_sending_site_links_it() {
    let s = TempStudy::init();
    import(&s, "patients", "p.csv", TWO_SITES, &[], 0);

    let plain = folder(&s, "plain");
    let amb = plain.join("amb.dcm");
    write_dicom(&amb, "777001", "1.2.826.0.1.3680043.9.7790.1", None);
    let out = s.expect(&["import", "dicom", plain.to_str().unwrap()], 0);
    assert!(
        out.contains(&format!(
            "{}: in quarantine: PatientID matches patients at two sites (PKUPH-OA-0001 at PKUPH and SYSMH-OP-0001 at SYSMH)",
            amb.display()
        )),
        "{out}"
    );
    assert!(
        out.contains("1 imported (1 waiting for their patient)"),
        "{out}"
    );
    assert!(linked_to(&s).is_empty());
    // A patients import does not settle it: it still matches both.
    import(&s, "patients", "p2.csv", TWO_SITES, &[], 0);
    assert_eq!(count(&s, "SELECT count(*) FROM image_quarantine"), 1);
    let flags: serde_json::Value =
        serde_json::from_str(&s.expect(&["flags", "--json"], 0)).unwrap();
    let waiting = flags["images_waiting_for_patient"].to_string();
    assert!(
        waiting.contains("matches patients at two sites"),
        "{waiting}"
    );

    // IssuerOfPatientID names the site (equal to, or containing, its code).
    let issued = folder(&s, "issued");
    write_dicom(
        &issued.join("sys.dcm"),
        "777001",
        "1.2.826.0.1.3680043.9.7790.2",
        Some("sysmh"),
    );
    write_dicom(
        &issued.join("pku.dcm"),
        "777001",
        "1.2.826.0.1.3680043.9.7790.3",
        Some("PKUPH HIS"),
    );
    let other = issued.join("other.dcm");
    write_dicom(
        &other,
        "777001",
        "1.2.826.0.1.3680043.9.7790.4",
        Some("CITY CLINIC"),
    );
    let out = s.expect(&["import", "dicom", issued.to_str().unwrap()], 0);
    assert!(
        out.contains("3 imported (1 waiting for their patient)"),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "{}: in quarantine: its IssuerOfPatientID (0010,0021) names none of the study sites (PKUPH, SYSMH)",
            other.display()
        )),
        "{out}"
    );
    assert_eq!(linked_to(&s), ["PKUPH-OA-0001", "SYSMH-OP-0001"]);

    // The sending site links a file without an issuer; re-importing the ambiguous
    // one from SYSMH gives it its site and links it.
    let out = s.expect(
        &[
            "import",
            "dicom",
            plain.to_str().unwrap(),
            "--site",
            "SYSMH",
        ],
        0,
    );
    assert!(out.contains("1 already imported"), "{out}");
    assert!(out.contains("1 waiting images linked"), "{out}");
    assert_eq!(
        linked_to(&s),
        ["PKUPH-OA-0001", "SYSMH-OP-0001", "SYSMH-OP-0001"]
    );
    // The image from another hospital's PatientID stays where it is.
    assert_eq!(count(&s, "SELECT count(*) FROM image_quarantine"), 1);
    let sent = folder(&s, "sent");
    write_dicom(
        &sent.join("p.dcm"),
        "777001",
        "1.2.826.0.1.3680043.9.7790.5",
        None,
    );
    s.expect(
        &["import", "dicom", sent.to_str().unwrap(), "--site", "PKUPH"],
        0,
    );
    assert_eq!(
        linked_to(&s),
        [
            "PKUPH-OA-0001",
            "PKUPH-OA-0001",
            "SYSMH-OP-0001",
            "SYSMH-OP-0001"
        ]
    );
    let log = s.expect(&["audit", "log", "--json"], 0);
    assert!(log.contains("\"image.site\""), "{log}");
    s.expect(&["audit", "verify"], 0);
}

#[test]
fn a_truncated_copy_of_an_instance_is_malformed_not_already_imported() {
    let s = TempStudy::init();
    let (one_site, _) = TWO_SITES.split_once("777001,SYSMH").unwrap();
    import(&s, "patients", "p.csv", one_site, &[], 0);
    let src = folder(&s, "export");
    let whole = src.join("a-whole.dcm");
    write_dicom(
        &whole,
        "777001",
        "1.2.826.0.1.3680043.9.7791.1",
        Some("PKUPH"),
    );
    let bytes = std::fs::read(&whole).unwrap();
    // Several copies cut short at different points in the Pixel Data, so that
    // some are read after the whole one has been taken (before the fix those were
    // counted "already imported").
    let cuts: Vec<PathBuf> = [20, 40, 60, 80, 100, 120]
        .iter()
        .map(|n| {
            let cut = src.join(format!("b-cut-{n}.dcm"));
            std::fs::write(&cut, &bytes[..bytes.len() - n]).unwrap();
            cut
        })
        .collect();
    let out = s.expect(&["import", "dicom", src.to_str().unwrap()], 3);
    assert!(out.contains("7 files: 1 imported"), "{out}");
    assert!(out.contains("0 already imported"), "{out}");
    assert!(out.contains("6 not DICOM or malformed"), "{out}");
    for cut in &cuts {
        let line = out
            .lines()
            .find(|l| l.starts_with(&format!("{}:", cut.display())))
            .unwrap_or_default();
        assert!(line.contains("malformed"), "{out}");
    }
    assert_eq!(linked_to(&s), ["PKUPH-OA-0001"]);

    // In a later run too: the cut copy is malformed; a whole copy is already imported.
    let again = folder(&s, "again");
    std::fs::write(again.join("cut.dcm"), &bytes[..bytes.len() - 60]).unwrap();
    std::fs::copy(&whole, again.join("whole.dcm")).unwrap();
    let out = s.expect(&["import", "dicom", again.to_str().unwrap()], 3);
    assert!(out.contains("2 files: 0 imported"), "{out}");
    assert!(out.contains("1 already imported"), "{out}");
    assert!(
        out.contains("(an instance with this SOP Instance UID is already in the study)"),
        "{out}"
    );

    // Two whole files with one SOP Instance UID and other content: a conflict
    // naming the one imported.
    let clash = folder(&s, "clash");
    let one = clash.join("one.dcm");
    let two = clash.join("two.dcm");
    write_dicom(
        &one,
        "777001",
        "1.2.826.0.1.3680043.9.7791.2",
        Some("PKUPH"),
    );
    write_dicom(
        &two,
        "777001",
        "1.2.826.0.1.3680043.9.7791.2",
        Some("SYSMH"),
    );
    let out = s.expect(&["import", "dicom", clash.to_str().unwrap()], 3);
    assert!(out.contains("2 files: 1 imported"), "{out}");
    let conflict = out
        .lines()
        .find(|l| l.contains("conflict"))
        .unwrap_or_default();
    let (loser, winner) = if conflict.starts_with(&one.display().to_string()) {
        (&one, &two)
    } else {
        (&two, &one)
    };
    assert!(
        conflict.starts_with(&format!(
            "{}: conflict: it has the SOP Instance UID of {}, but other content",
            loser.display(),
            winner.display()
        )),
        "{out}"
    );
}

// ---------------------------------------------------------------- migration

/// The patients table as schema 6 had it (UNIQUE on the MRN hash alone).
fn schema6_patients_sql() -> String {
    let init = marrow::db::migrate::MIGRATIONS[0].1;
    let start = init.find("CREATE TABLE patients (").unwrap();
    let end = start + init[start..].find(") STRICT;").unwrap() + ") STRICT;".len();
    init[start..end].to_string()
}

#[test]
fn a_study_made_at_schema_6_keeps_every_link_when_it_migrates() {
    let s = TempStudy::init();
    import(
        &s,
        "patients",
        "p.csv",
        "mrn,site,phase,group,sex,birth_date,index_date\n777001,PKUPH,retrospective,OA,F,1960-05-01,2024-05-01\n777002,SYSMH,retrospective,OP,M,1950-03-03,2024-05-01\n",
        &[],
        0,
    );
    import(
        &s,
        "dxa",
        "dxa.csv",
        "mrn,scan_date,region,t_score\n777002,2024-04-01,total_hip,-2.7\n",
        &[],
        0,
    );
    let src = folder(&s, "export");
    write_dicom(
        &src.join("1.dcm"),
        "777001",
        "1.2.826.0.1.3680043.9.7792.1",
        None,
    );
    write_dicom(
        &src.join("2.dcm"),
        "999999",
        "1.2.826.0.1.3680043.9.7792.2",
        None,
    );
    s.expect(&["import", "dicom", src.to_str().unwrap()], 0);
    let snapshot = |s: &TempStudy| {
        study_ids_of(
            s,
            "SELECT p.id || ' ' || p.study_id || ' ' || hex(p.mrn_hash) || ' ' || p.decision || ' ' || p.version \
             FROM patients p ORDER BY p.id",
        )
    };
    let before = snapshot(&s);

    // Back to schema 6: the old patients table, the old quarantine, labs without
    // their original units (schema 8), user_version 6.
    {
        let raw = raw_connection(&s.db);
        raw.execute_batch(&format!(
            "PRAGMA foreign_keys = OFF; BEGIN; PRAGMA legacy_alter_table = ON;
             ALTER TABLE patients RENAME TO patients_v7;
             {}
             INSERT INTO patients SELECT * FROM patients_v7;
             DROP TABLE patients_v7;
             PRAGMA legacy_alter_table = OFF;
             CREATE INDEX patients_cohort ON patients (site, grp, phase, decision, missing_dxa);
             CREATE TRIGGER reading_refresh_on_patient_update AFTER UPDATE OF decision, grp ON patients
             WHEN (OLD.decision IS NOT NEW.decision OR OLD.grp IS NOT NEW.grp)
              AND (SELECT value FROM meta WHERE key = 'reading_refresh_needed') IS NOT '1'
             BEGIN
                 INSERT OR REPLACE INTO meta (key, value) VALUES ('reading_refresh_needed', '1');
             END;
             ALTER TABLE image_quarantine DROP COLUMN site;
             ALTER TABLE image_quarantine DROP COLUMN reason;
             ALTER TABLE labs DROP COLUMN original_value;
             ALTER TABLE labs DROP COLUMN original_unit;
             PRAGMA user_version = 6; COMMIT;",
            schema6_patients_sql()
        ))
        .unwrap();
        let sql: String = raw
            .query_row(
                "SELECT sql FROM sqlite_master WHERE name = 'patients'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert!(sql.contains("BLOB NOT NULL UNIQUE"), "{sql}");
    }

    // Any command migrates it.
    s.expect(&["status"], 0);
    assert_eq!(
        count(&s, "PRAGMA user_version"),
        marrow::db::migrate::latest_version()
    );
    assert_eq!(snapshot(&s), before);
    assert_eq!(
        count(&s, "SELECT count(*) FROM pragma_foreign_key_check"),
        0
    );
    let ok: String = raw_connection(&s.db)
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ok, "ok");
    assert_eq!(
        study_ids_of(
            &s,
            "SELECT p.study_id FROM dxa_scans d JOIN patients p ON p.id = d.patient_id"
        ),
        ["SYSMH-OP-0001"]
    );
    assert_eq!(linked_to(&s), ["PKUPH-OA-0001"]);
    assert_eq!(count(&s, "SELECT count(*) FROM image_quarantine"), 1);
    // The trigger that marks cases for a refresh is there, on the new table.
    assert_eq!(
        count(
            &s,
            "SELECT count(*) FROM sqlite_master WHERE type = 'trigger' AND name = 'reading_refresh_on_patient_update'"
        ),
        1
    );
    // Foreign keys are enforced again after the migration.
    let out = s.run(&["status"]);
    assert!(out.status.success());
    // The waiting image links to its patient when they come, and the same MRN at
    // the other site is a new patient.
    let out = import(
        &s,
        "patients",
        "p2.csv",
        "mrn,site,phase,group,sex,birth_date,index_date\n999999,SYSMH,retrospective,OA,F,1960-05-01,2024-05-01\n777001,SYSMH,retrospective,CONTROL,F,1980-05-01,2024-05-01\n",
        &[],
        0,
    );
    assert!(out.contains("2 added"), "{out}");
    assert!(out.contains("1 waiting DICOM images linked"), "{out}");
    assert_eq!(linked_to(&s), ["PKUPH-OA-0001", "SYSMH-OA-0001"]);
    s.expect(&["audit", "verify"], 0);
}
