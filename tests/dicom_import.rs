//! `marrow import dicom` end to end: linkage by the keyed PatientID hash,
//! quarantine and later linking, de-identification of the store copy, idempotent and
//! resumable imports, refused files, permissions and the audit trail.

mod common;
use common::*;
use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_object::{InMemDicomObject, OpenFileOptions, meta::FileMetaTableBuilder};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

const DX_CLASS: &str = "1.2.840.10008.5.1.4.1.1.1.1";
const STUDY_UID: &str = "1.2.826.0.1.3680043.9.7777.1";

/// Identifiers put into every generated source file; none may reach the store.
const IDENTIFIERS: &[&str] = &[
    "WANG^FANG",
    "19600501",
    "Xizhimen",
    "Peking University",
    "LI^QIANG",
    "ZHAO^MIN",
    "SUN^LEI",
    "ACC20240501X",
    "STUDY7788",
    "KNEE WANG",
    "ACME IMAGING",
    "CHEN^PRIVATE",
    "Radiology Dept 3",
    "PT-555-1234",
];

struct Spec<'a> {
    patient_id: &'a str,
    sop_uid: &'a str,
    study_uid: &'a str,
    series_uid: &'a str,
    burned_in: Option<&'a str>,
    /// Transfer syntax; JPEG baseline gets an encapsulated (fake) fragment.
    ts: &'a str,
}

const EXPLICIT_LE: &str = "1.2.840.10008.1.2.1";
const IMPLICIT_LE: &str = "1.2.840.10008.1.2";
const JPEG_BASELINE: &str = "1.2.840.10008.1.2.4.50";
const FRAGMENT: &[u8] = b"\xFF\xD8 stands in for a JPEG stream\xFF\xD9"; // even length

impl<'a> Spec<'a> {
    fn new(patient_id: &'a str, sop_uid: &'a str) -> Spec<'a> {
        Spec {
            patient_id,
            sop_uid,
            study_uid: STUDY_UID,
            series_uid: "1.2.826.0.1.3680043.9.7777.1.1",
            burned_in: None,
            ts: EXPLICIT_LE,
        }
    }
}

fn pixels() -> Vec<u16> {
    (0..64u16).map(|i| i * 60).collect()
}

/// Writes an 8x8 16-bit MONOCHROME2 radiograph full of identifiers.
fn write_dicom(path: &Path, s: &Spec) {
    let mut obj = InMemDicomObject::new_empty();
    let mut text = |g: u16, e: u16, vr: VR, v: &str| {
        obj.put(DataElement::new(Tag(g, e), vr, PrimitiveValue::from(v)));
    };
    text(0x0008, 0x0016, VR::UI, DX_CLASS);
    text(0x0008, 0x0018, VR::UI, s.sop_uid);
    text(0x0008, 0x0020, VR::DA, "20240501");
    text(0x0008, 0x0030, VR::TM, "101500");
    text(0x0008, 0x0050, VR::SH, "ACC20240501X");
    text(0x0008, 0x0060, VR::CS, "DX");
    text(
        0x0008,
        0x0080,
        VR::LO,
        "Peking University People's Hospital",
    );
    text(0x0008, 0x0081, VR::ST, "11 Xizhimen South St");
    text(0x0008, 0x0090, VR::PN, "LI^QIANG");
    text(0x0008, 0x1030, VR::LO, "KNEE WANG FANG");
    text(0x0008, 0x1040, VR::LO, "Radiology Dept 3");
    text(0x0008, 0x1050, VR::PN, "ZHAO^MIN");
    text(0x0008, 0x1070, VR::PN, "SUN^LEI");
    text(0x0009, 0x0010, VR::LO, "ACME IMAGING");
    text(0x0009, 0x1001, VR::LO, "CHEN^PRIVATE");
    text(0x0010, 0x0010, VR::PN, "WANG^FANG");
    text(0x0010, 0x0020, VR::LO, s.patient_id);
    text(0x0010, 0x0030, VR::DA, "19600501");
    text(0x0010, 0x0040, VR::CS, "F");
    text(0x0010, 0x1040, VR::LO, "1 Xizhimen St");
    text(0x0010, 0x2154, VR::SH, "PT-555-1234");
    text(0x0018, 0x0015, VR::CS, "KNEE");
    text(0x0018, 0x5101, VR::CS, "AP");
    text(0x0020, 0x000D, VR::UI, s.study_uid);
    text(0x0020, 0x000E, VR::UI, s.series_uid);
    text(0x0020, 0x0010, VR::SH, "STUDY7788");
    text(0x0020, 0x0062, VR::CS, "L");
    text(0x0028, 0x0004, VR::CS, "MONOCHROME2");
    text(0x0028, 0x0030, VR::DS, "0.14\\0.15");
    if let Some(b) = s.burned_in {
        text(0x0028, 0x0301, VR::CS, b);
    }
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
    if s.ts == JPEG_BASELINE {
        obj.put(DataElement::new(
            Tag(0x7FE0, 0x0010),
            VR::OB,
            dicom_core::value::PixelFragmentSequence::new(vec![], vec![FRAGMENT.to_vec()]),
        ));
    } else {
        obj.put(DataElement::new(
            Tag(0x7FE0, 0x0010),
            VR::OW,
            PrimitiveValue::U16(pixels().into()),
        ));
    }
    let file = obj
        .with_meta(FileMetaTableBuilder::new().transfer_syntax(s.ts))
        .expect("meta");
    file.write_to_file(path).expect("write dicom");
}

fn store_root(s: &TempStudy) -> PathBuf {
    let mut p = s.db.as_os_str().to_owned();
    p.push(".store");
    PathBuf::from(p)
}

/// Every stored copy (not the partial files or the lock).
fn store_files(s: &TempStudy) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = walkdir::WalkDir::new(store_root(s))
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_file())
        .map(|e| e.into_path())
        .filter(|p| p.extension().is_some_and(|x| x == "dcm"))
        .collect();
    out.sort();
    out
}

fn text_of(obj: &InMemDicomObject, g: u16, e: u16) -> String {
    obj.element(Tag(g, e))
        .map(|e| {
            e.to_str()
                .unwrap()
                .trim_end_matches(['\0', ' '])
                .to_string()
        })
        .unwrap_or_default()
}

fn count(s: &TempStudy, sql: &str) -> i64 {
    raw_connection(&s.db)
        .query_row(sql, [], |r| r.get(0))
        .unwrap()
}

/// Patients without an index date, so I3 is unknown until an image is linked.
const NO_INDEX: &str = "\
mrn,site,phase,group,sex,birth_date,index_date
MRN001,PKUPH,retrospective,OA,F,1960-05-01,
MRN002,PKUPH,retrospective,OP,F,1950-01-01,
";

fn import_dicom(s: &TempStudy, dirs: &[&Path], code: i32) -> String {
    let mut args = vec!["import", "dicom"];
    for d in dirs {
        args.push(d.to_str().unwrap());
    }
    s.expect(&args, code)
}

#[test]
fn images_link_to_their_patient_meet_i3_and_are_de_identified_in_the_store() {
    let s = TempStudy::init();
    let p = s.write("patients.csv", NO_INDEX);
    s.expect(&["import", "patients", p.to_str().unwrap()], 0);
    let before = s.expect(&["screen", "PKUPH-OA-0001"], 0);
    assert!(
        before.contains("no index date and no linked image"),
        "{before}"
    );

    let src = s.path("export");
    std::fs::create_dir_all(src.join("knee")).unwrap();
    let a = src.join("knee/a.dcm");
    let b = src.join("knee/b.dcm");
    // PatientID in another case and padded: the hash normalises it like the MRN.
    write_dicom(
        &a,
        &Spec::new(" mrn001 ", "1.2.826.0.1.3680043.9.7777.1.1.1"),
    );
    write_dicom(
        &b,
        &Spec {
            burned_in: Some("YES"),
            ..Spec::new("MRN001", "1.2.826.0.1.3680043.9.7777.1.1.2")
        },
    );
    let originals = [std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap()];

    let out = import_dicom(&s, &[&src], 0);
    assert!(out.contains("2 files: 2 imported (0 waiting"), "{out}");

    // I3 is met by the linked image
    let after = s.expect(&["screen", "PKUPH-OA-0001"], 0);
    let i3 = after.lines().find(|l| l.starts_with("I3")).unwrap();
    assert!(i3.contains("linked image"), "{after}");
    assert_eq!(
        count(
            &s,
            "SELECT has_image FROM patients WHERE study_id = 'PKUPH-OA-0001'"
        ),
        1
    );
    assert_eq!(
        count(
            &s,
            "SELECT has_image FROM patients WHERE study_id = 'PKUPH-OP-0001'"
        ),
        0
    );

    // originals untouched
    assert_eq!(std::fs::read(&a).unwrap(), originals[0]);
    assert_eq!(std::fs::read(&b).unwrap(), originals[1]);

    // the store: private folder, private files, no identifier anywhere
    let root = store_root(&s);
    assert_eq!(
        std::fs::metadata(&root).unwrap().permissions().mode() & 0o777,
        0o700
    );
    let files = store_files(&s);
    assert_eq!(files.len(), 2, "{files:?}");
    let mut study_uids = Vec::new();
    for f in &files {
        assert_eq!(
            std::fs::metadata(f).unwrap().permissions().mode() & 0o777,
            0o600,
            "{}",
            f.display()
        );
        assert_eq!(
            std::fs::metadata(f.parent().unwrap())
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o700
        );
        let bytes = std::fs::read(f).unwrap();
        let lossy = String::from_utf8_lossy(&bytes).to_uppercase();
        for id in IDENTIFIERS
            .iter()
            .chain(&["MRN001", STUDY_UID, "1.2.826.0.1.3680043.9.7777"])
        {
            assert!(
                !lossy.contains(&id.to_uppercase()),
                "{id} is in the store copy {}",
                f.display()
            );
        }
        let obj = OpenFileOptions::new().open_file(f).unwrap();
        assert_eq!(text_of(&obj, 0x0010, 0x0020), "PKUPH-OA-0001");
        assert_eq!(text_of(&obj, 0x0010, 0x0010), "PKUPH-OA-0001");
        assert_eq!(text_of(&obj, 0x0010, 0x0030), "", "birth date emptied");
        assert_eq!(
            text_of(&obj, 0x0008, 0x0050),
            "",
            "accession number emptied"
        );
        assert!(
            obj.element(Tag(0x0008, 0x0080)).is_err(),
            "institution removed"
        );
        assert!(
            obj.element(Tag(0x0009, 0x1001)).is_err(),
            "private tag removed"
        );
        assert_eq!(text_of(&obj, 0x0012, 0x0062), "YES");
        let method = obj.element(Tag(0x0012, 0x0063)).unwrap().to_str().unwrap();
        assert!(method.contains("Basic Application Level Confidentiality Profile"));
        assert!(method.contains("Retain Longitudinal Temporal Information"));
        let codes: Vec<(String, String)> = obj
            .element(Tag(0x0012, 0x0064))
            .unwrap()
            .items()
            .unwrap()
            .iter()
            .map(|i| (text_of(i, 0x0008, 0x0100), text_of(i, 0x0008, 0x0102)))
            .collect();
        assert!(
            codes.contains(&("113100".into(), "DCM".into())),
            "{codes:?}"
        );
        assert!(
            codes.contains(&("113106".into(), "DCM".into())),
            "{codes:?}"
        );
        // dates kept, technical attributes kept, pixels copied through
        assert_eq!(text_of(&obj, 0x0008, 0x0020), "20240501");
        assert_eq!(text_of(&obj, 0x0018, 0x0015), "KNEE");
        assert_eq!(text_of(&obj, 0x0020, 0x0062), "L");
        assert_eq!(
            obj.element(Tag(0x7FE0, 0x0010))
                .unwrap()
                .to_bytes()
                .unwrap()
                .len(),
            128
        );
        assert_eq!(
            obj.element(Tag(0x7FE0, 0x0010))
                .unwrap()
                .to_multi_int::<u16>()
                .unwrap(),
            pixels(),
            "the stored pixel values are the original ones"
        );
        let sop = text_of(&obj, 0x0008, 0x0018);
        assert!(sop.starts_with("2.25."), "{sop}");
        assert_eq!(
            obj.meta()
                .media_storage_sop_instance_uid()
                .trim_end_matches('\0'),
            sop
        );
        assert_eq!(
            f.file_name().unwrap().to_str().unwrap(),
            format!("{sop}.dcm")
        );
        study_uids.push(text_of(&obj, 0x0020, 0x000D));
    }
    // one original study, one new study UID
    assert_eq!(study_uids[0], study_uids[1]);
    assert!(study_uids[0].starts_with("2.25."));

    // the rows
    assert_eq!(
        count(
            &s,
            "SELECT count(*) FROM image_instances WHERE patient_id IS NOT NULL"
        ),
        2
    );
    assert_eq!(count(&s, "SELECT count(*) FROM image_studies"), 1);
    assert_eq!(count(&s, "SELECT count(*) FROM image_series"), 1);
    assert_eq!(
        count(&s, "SELECT sum(burned_in_review) FROM image_instances"),
        1
    );
    assert_eq!(
        count(
            &s,
            "SELECT count(*) FROM image_instances WHERE image_rows = 8 AND image_columns = 8 \
             AND bits_allocated = 16 AND bits_stored = 12 AND photometric = 'MONOCHROME2' \
             AND laterality = 'L' AND view_position = 'AP' AND pixel_spacing_row = 0.14 \
             AND pixel_spacing_col = 0.15 AND frames = 1 AND transfer_syntax = '1.2.840.10008.1.2.1'"
        ),
        2
    );
    assert_eq!(
        count(
            &s,
            "SELECT count(*) FROM image_studies WHERE study_date = '2024-05-01'"
        ),
        1
    );
    let log = s.expect(&["audit", "log", "--json"], 0);
    assert_eq!(log.matches("\"image.add\"").count(), 2, "{log}");
    assert!(!log.to_uppercase().contains("WANG^FANG"));
    let verify = s.expect(&["audit", "verify"], 0);
    assert!(verify.contains("intact"), "{verify}");
}

#[test]
fn an_unknown_patient_waits_in_quarantine_until_the_patient_is_imported() {
    let s = TempStudy::init();
    let src = s.path("export");
    std::fs::create_dir_all(&src).unwrap();
    write_dicom(
        &src.join("late.dcm"),
        &Spec::new("LATE-007", "1.2.826.0.1.3680043.9.7777.2.1"),
    );

    let out = import_dicom(&s, &[&src], 0);
    assert!(
        out.contains("1 imported (1 waiting for their patient)"),
        "{out}"
    );
    let files = store_files(&s);
    assert_eq!(files.len(), 1);
    let obj = OpenFileOptions::new().open_file(&files[0]).unwrap();
    assert_eq!(text_of(&obj, 0x0010, 0x0020), "QUARANTINE");
    assert_eq!(count(&s, "SELECT count(*) FROM image_quarantine"), 1);
    assert_eq!(
        count(
            &s,
            "SELECT count(*) FROM image_instances WHERE patient_id IS NULL"
        ),
        1
    );

    let flags = s.expect(&["flags"], 0);
    assert!(
        flags.contains("images waiting for their patient: 1"),
        "{flags}"
    );
    assert!(flags.contains("2024-05-01"), "{flags}");
    assert!(!flags.to_uppercase().contains("LATE-007"), "{flags}");
    let json: serde_json::Value = serde_json::from_str(&s.expect(&["flags", "--json"], 0)).unwrap();
    assert_eq!(json["images_waiting_for_patient"]["count"], 1);
    assert!(!json.to_string().to_uppercase().contains("LATE-007"));
    let status: serde_json::Value =
        serde_json::from_str(&s.expect(&["status", "--json"], 0)).unwrap();
    assert_eq!(
        (status["images"].as_u64(), status["quarantined"].as_u64()),
        (Some(1), Some(1))
    );

    let p = s.write(
        "late.csv",
        "mrn,site,phase,group,birth_date,index_date\nlate-007,SYSMH,prospective,OA,1955-02-02,\n",
    );
    let out = s.expect(&["import", "patients", p.to_str().unwrap()], 0);
    assert!(out.contains("1 waiting DICOM images linked"), "{out}");
    assert_eq!(count(&s, "SELECT count(*) FROM image_quarantine"), 0);
    let status: serde_json::Value =
        serde_json::from_str(&s.expect(&["status", "--json"], 0)).unwrap();
    assert_eq!(
        (status["images"].as_u64(), status["quarantined"].as_u64()),
        (Some(1), Some(0))
    );
    assert_eq!(
        count(
            &s,
            "SELECT count(*) FROM image_instances WHERE patient_id IS NOT NULL"
        ),
        1
    );
    let obj = OpenFileOptions::new().open_file(&files[0]).unwrap();
    assert_eq!(text_of(&obj, 0x0010, 0x0020), "SYSMH-OA-0001");
    assert_eq!(text_of(&obj, 0x0010, 0x0010), "SYSMH-OA-0001");
    assert_eq!(
        std::fs::metadata(&files[0]).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let screen = s.expect(&["screen", "SYSMH-OA-0001"], 0);
    let i3 = screen.lines().find(|l| l.starts_with("I3")).unwrap();
    assert!(i3.contains("linked image"), "{screen}");
    let flags = s.expect(&["flags"], 0);
    assert!(!flags.contains("images waiting"), "{flags}");
    let log = s.expect(&["audit", "log", "--patient", "SYSMH-OA-0001", "--json"], 0);
    assert!(log.contains("\"image.link\""), "{log}");
    s.expect(&["audit", "verify"], 0);
    // nothing left half-done in the store
    assert_eq!(
        std::fs::read_dir(store_root(&s).join(".partial"))
            .unwrap()
            .count(),
        0
    );
}

#[test]
fn a_re_import_skips_everything() {
    let s = TempStudy::init();
    let p = s.write("patients.csv", NO_INDEX);
    s.expect(&["import", "patients", p.to_str().unwrap()], 0);
    let src = s.path("export");
    std::fs::create_dir_all(src.join("x/y")).unwrap();
    write_dicom(
        &src.join("1.dcm"),
        &Spec::new("MRN001", "1.2.826.0.1.3680043.9.7777.3.1"),
    );
    write_dicom(
        &src.join("x/y/2.dcm"),
        &Spec::new("MRN002", "1.2.826.0.1.3680043.9.7777.3.2"),
    );
    write_dicom(
        &src.join("x/3.dcm"),
        &Spec::new("NOBODY", "1.2.826.0.1.3680043.9.7777.3.3"),
    );
    import_dicom(&s, &[&src], 0);
    let rows = count(&s, "SELECT count(*) FROM image_instances");
    let audit = count(&s, "SELECT count(*) FROM audit_log");
    let files = store_files(&s);
    let contents: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(f).unwrap()).collect();
    assert_eq!(rows, 3);

    // the same folder twice, and a copy of one file elsewhere: all already there
    let copy = s.path("copy");
    std::fs::create_dir_all(&copy).unwrap();
    std::fs::copy(src.join("1.dcm"), copy.join("again.dcm")).unwrap();
    let out = import_dicom(&s, &[&src, &src, &copy], 0);
    assert!(out.contains("4 files: 0 imported"), "{out}");
    assert!(out.contains("4 already imported"), "{out}");
    assert_eq!(count(&s, "SELECT count(*) FROM image_instances"), rows);
    assert_eq!(count(&s, "SELECT count(*) FROM audit_log"), audit);
    assert_eq!(store_files(&s), files);
    let again: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(f).unwrap()).collect();
    assert_eq!(again, contents);
}

#[test]
fn files_that_are_not_dicom_or_are_truncated_are_listed_and_the_rest_goes_in() {
    let s = TempStudy::init();
    let p = s.write("patients.csv", NO_INDEX);
    s.expect(&["import", "patients", p.to_str().unwrap()], 0);
    let src = s.path("export");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("notes.txt"), "not an image\n").unwrap();
    let good = src.join("good.dcm");
    write_dicom(
        &good,
        &Spec::new("MRN001", "1.2.826.0.1.3680043.9.7777.4.1"),
    );
    let full = src.join("full.dcm");
    write_dicom(
        &full,
        &Spec::new("MRN002", "1.2.826.0.1.3680043.9.7777.4.2"),
    );
    let bytes = std::fs::read(&full).unwrap();
    std::fs::write(src.join("cut.dcm"), &bytes[..bytes.len() - 60]).unwrap();
    std::fs::remove_file(&full).unwrap();
    // a symbolic link is not followed
    std::os::unix::fs::symlink(&good, src.join("link.dcm")).unwrap();

    let out = import_dicom(&s, &[&src], 3);
    let notes = src.join("notes.txt").display().to_string();
    let cut = src.join("cut.dcm").display().to_string();
    let line = |p: &str| out.lines().find(|l| l.starts_with(p)).map(str::to_string);
    assert!(
        line(&notes).is_some_and(|l| l.contains("not a DICOM file")),
        "{out}"
    );
    assert!(
        line(&cut).is_some_and(|l| l.contains("malformed") && l.contains("ends early")),
        "{out}"
    );
    assert!(out.contains("3 files: 1 imported"), "{out}");
    assert!(out.contains("2 not DICOM or malformed"), "{out}");
    assert!(out.contains("1 symbolic links not followed"), "{out}");
    assert_eq!(count(&s, "SELECT count(*) FROM image_instances"), 1);
    assert_eq!(store_files(&s).len(), 1);
    s.expect(&["audit", "verify"], 0);

    // a folder that does not exist: nothing runs
    let out = s.run(&["import", "dicom", s.path("nowhere").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("does not exist"), "{}", stderr(&out));
}

#[test]
fn a_re_run_finishes_what_a_killed_import_left() {
    let s = TempStudy::init();
    let p = s.write("patients.csv", NO_INDEX);
    s.expect(&["import", "patients", p.to_str().unwrap()], 0);
    let src = s.path("export");
    std::fs::create_dir_all(&src).unwrap();
    write_dicom(
        &src.join("1.dcm"),
        &Spec::new("MRN001", "1.2.826.0.1.3680043.9.7777.5.1"),
    );
    write_dicom(
        &src.join("2.dcm"),
        &Spec::new("MRN001", "1.2.826.0.1.3680043.9.7777.5.2"),
    );
    import_dicom(&s, &[&src], 0);
    let files = store_files(&s);
    let kept = std::fs::read(&files[0]).unwrap();
    let partial = store_root(&s).join(".partial");
    // As a kill leaves it: a row committed whose copy was not yet moved into place,
    // and a copy cut short whose row never committed.
    let sop = files[0].file_stem().unwrap().to_str().unwrap().to_string();
    std::fs::rename(&files[0], partial.join(format!("{sop}~new"))).unwrap();
    std::fs::write(partial.join("2.25.123~new"), b"half a file").unwrap();

    let out = import_dicom(&s, &[&src], 0);
    assert!(
        out.contains("1 copies moved into the store, 1 partial files removed"),
        "{out}"
    );
    assert!(out.contains("2 already imported"), "{out}");
    assert_eq!(store_files(&s), files);
    assert_eq!(std::fs::read(&files[0]).unwrap(), kept);
    assert_eq!(std::fs::read_dir(&partial).unwrap().count(), 0);
    assert_eq!(count(&s, "SELECT count(*) FROM image_instances"), 2);
}

#[test]
fn the_store_of_a_study_is_refused_when_it_is_open_to_everyone() {
    let s = TempStudy::init();
    let src = s.path("export");
    std::fs::create_dir_all(&src).unwrap();
    write_dicom(
        &src.join("1.dcm"),
        &Spec::new("MRN001", "1.2.826.0.1.3680043.9.7777.6.1"),
    );
    std::fs::create_dir(store_root(&s)).unwrap();
    std::fs::set_permissions(store_root(&s), std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = s.run(&["import", "dicom", src.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("chmod 700"), "{}", stderr(&out));
}

#[test]
fn compressed_pixel_data_is_copied_through_untouched() {
    let s = TempStudy::init();
    let p = s.write("patients.csv", NO_INDEX);
    s.expect(&["import", "patients", p.to_str().unwrap()], 0);
    let src = s.path("export");
    std::fs::create_dir_all(&src).unwrap();
    for (name, ts, sop) in [
        ("jpeg.dcm", JPEG_BASELINE, "1.2.826.0.1.3680043.9.7777.7.1"),
        (
            "implicit.dcm",
            IMPLICIT_LE,
            "1.2.826.0.1.3680043.9.7777.7.2",
        ),
    ] {
        write_dicom(
            &src.join(name),
            &Spec {
                ts,
                ..Spec::new("MRN002", sop)
            },
        );
    }
    let out = import_dicom(&s, &[&src], 0);
    assert!(out.contains("2 files: 2 imported"), "{out}");
    let mut seen = Vec::new();
    for f in store_files(&s) {
        let obj = OpenFileOptions::new().open_file(&f).unwrap();
        let ts = obj
            .meta()
            .transfer_syntax()
            .trim_end_matches('\0')
            .to_string();
        let data = obj.element(Tag(0x7FE0, 0x0010)).unwrap();
        if ts == JPEG_BASELINE {
            let fragments = data.fragments().expect("encapsulated");
            assert_eq!(fragments.len(), 1);
            assert_eq!(fragments[0], FRAGMENT);
        } else {
            assert_eq!(ts, IMPLICIT_LE);
            assert_eq!(data.to_multi_int::<u16>().unwrap(), pixels());
        }
        assert_eq!(text_of(&obj, 0x0010, 0x0020), "PKUPH-OP-0001");
        seen.push(ts);
    }
    seen.sort();
    assert_eq!(seen, [IMPLICIT_LE, JPEG_BASELINE]);
    assert_eq!(
        count(
            &s,
            "SELECT count(*) FROM image_instances WHERE transfer_syntax = '1.2.840.10008.1.2.4.50'"
        ),
        1
    );
}

#[test]
fn a_killed_import_leaves_no_duplicate_and_no_orphan_after_a_re_run() {
    let s = TempStudy::init();
    let p = s.write("patients.csv", NO_INDEX);
    s.expect(&["import", "patients", p.to_str().unwrap()], 0);
    let src = s.path("export");
    std::fs::create_dir_all(&src).unwrap();
    let n = 300;
    for i in 0..n {
        let sop = format!("1.2.826.0.1.3680043.9.7777.8.{i}");
        let pid = if i % 3 == 0 { "NOT-YET" } else { "MRN001" };
        write_dicom(&src.join(format!("{i:04}.dcm")), &Spec::new(pid, &sop));
    }
    let mut child = s
        .cmd()
        .args(["import", "dicom", src.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(150));
    let _ = child.kill(); // SIGKILL, wherever it is
    let _ = child.wait();

    let out = import_dicom(&s, &[&src], 0);
    assert!(out.contains(&format!("{n} files: ")), "{out}");
    let rows = count(&s, "SELECT count(*) FROM image_instances");
    assert_eq!(rows, n);
    assert_eq!(store_files(&s).len() as i64, n, "a file per row, no more");
    assert_eq!(count(&s, "SELECT count(*) FROM image_quarantine"), n / 3);
    assert_eq!(
        std::fs::read_dir(store_root(&s).join(".partial"))
            .unwrap()
            .count(),
        0
    );
    s.expect(&["audit", "verify"], 0);
}
