//! Issue 13 item 2: a case's images are those that can grade it, and a model reads
//! only what its card names. A left-knee case of a patient with a left and a right
//! knee radiograph, CT slices of the right knee, an MR, a screenshot, an image
//! flagged for burned-in text and a knee film of unknown side shows only the left
//! radiographs (and a bilateral film serves both knees); `marrow infer` skips and
//! counts the rest; a prediction stored on an MR before the fix counts nowhere.

mod common;
use common::*;
use dicom_core::value::PrimitiveValue;
use dicom_core::{DataElement, Tag, VR};
use marrow::db::Study;
use marrow::db::inference::NewPrediction;
use marrow::dicom::synth::{self, BodyPart, Laterality, Spec, View};
use marrow::domain::reading::{Grade, Oarsi, ReadInput};
use marrow::inference::Task;
use std::collections::HashMap;

const PATIENTS: &str = "mrn,site,phase,group,sex,birth_date,index_date,deformity,implant,pathological_fracture,malignancy,steroid_long_term,radio_chemo_last\n\
OA1,PKUPH,retrospective,OA,F,1960-05-01,2024-05-01,no,no,no,no,no,none\n\
OA2,PKUPH,retrospective,OA,F,1958-05-01,2024-05-01,no,no,no,no,no,none\n";

fn knee(id: &str, lat: Option<Laterality>, view: View, seed: u64) -> Spec {
    Spec {
        patient_id: id.into(),
        body_part: BodyPart::Knee,
        laterality: lat,
        view,
        rows: 48,
        cols: 40,
        study_date: chrono::NaiveDate::from_ymd_opt(2024, 5, 1).unwrap(),
        seed,
    }
}

/// A synthetic knee radiograph, changed by `edits` (tag, VR, value; `None` removes).
fn write(dir: &std::path::Path, name: &str, spec: &Spec, edits: &[(Tag, VR, Option<&str>)]) {
    let mut obj = synth::radiograph(spec).unwrap();
    for (tag, vr, value) in edits {
        match value {
            Some(v) => {
                obj.put(DataElement::new(*tag, *vr, PrimitiveValue::from(*v)));
            }
            None => {
                obj.remove_element(*tag);
            }
        }
    }
    obj.write_to_file(dir.join(name)).unwrap();
}

const MODALITY: Tag = Tag(0x0008, 0x0060);
const SOP_CLASS: Tag = Tag(0x0008, 0x0016);
const LATERALITY: Tag = Tag(0x0020, 0x0060);
const IMAGE_LATERALITY: Tag = Tag(0x0020, 0x0062);
const VIEW: Tag = Tag(0x0018, 0x5101);

/// OA1: left knee DX PA and LAT, right knee DX AP, four CT slices of the right knee,
/// an MR of the left knee, a secondary capture (a screenshot) of the left knee, a
/// left knee DX flagged for burned-in text, a knee DX without laterality. OA2: one
/// bilateral knee film. Readers r1, r2.
fn setup() -> TempStudy {
    let s = TempStudy::init();
    for r in ["r1", "r2"] {
        s.expect(&["users", "add", r, "--role", "reader"], 0);
    }
    let p = s.write("patients.csv", PATIENTS);
    s.expect(&["import", "patients", p.to_str().unwrap()], 0);
    let dir = s.path("dicom");
    std::fs::create_dir_all(&dir).unwrap();
    use Laterality::{Left, Right};
    write(&dir, "l_pa.dcm", &knee("OA1", Some(Left), View::Pa, 1), &[]);
    write(
        &dir,
        "l_lat.dcm",
        &knee("OA1", Some(Left), View::Lat, 2),
        &[],
    );
    write(
        &dir,
        "r_ap.dcm",
        &knee("OA1", Some(Right), View::Ap, 3),
        &[],
    );
    for k in 0..4 {
        write(
            &dir,
            &format!("r_ct{k}.dcm"),
            &knee("OA1", Some(Right), View::Ap, 10 + k),
            &[
                (MODALITY, VR::CS, Some("CT")),
                (SOP_CLASS, VR::UI, Some("1.2.840.10008.5.1.4.1.1.2")),
                (VIEW, VR::CS, None),
            ],
        );
    }
    write(
        &dir,
        "l_mr.dcm",
        &knee("OA1", Some(Left), View::Ap, 20),
        &[
            (MODALITY, VR::CS, Some("MR")),
            (SOP_CLASS, VR::UI, Some("1.2.840.10008.5.1.4.1.1.4")),
            (VIEW, VR::CS, None),
        ],
    );
    write(
        &dir,
        "l_screenshot.dcm",
        &knee("OA1", Some(Left), View::Ap, 21),
        &[
            (MODALITY, VR::CS, Some("CR")),
            (SOP_CLASS, VR::UI, Some("1.2.840.10008.5.1.4.1.1.7")),
        ],
    );
    write(
        &dir,
        "l_burned_in.dcm",
        &knee("OA1", Some(Left), View::Ap, 22),
        &[(Tag(0x0028, 0x0301), VR::CS, Some("YES"))],
    );
    write(&dir, "no_side.dcm", &knee("OA1", None, View::Ap, 23), &[]);
    write(
        &dir,
        "both.dcm",
        &knee("OA2", Some(Left), View::Ap, 30),
        &[
            (IMAGE_LATERALITY, VR::CS, Some("B")),
            (LATERALITY, VR::CS, None),
        ],
    );
    s.expect(&["import", "dicom", dir.to_str().unwrap()], 0);
    s.expect(&["cases", "refresh"], 0);
    s
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// The case of a patient's knee, as the admin's `cases --json` lists it.
fn case_of(s: &TempStudy, study_id: &str, side: &str) -> String {
    let cases = json(&s.expect(&["cases", "--json"], 0));
    cases
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["study_id"] == study_id && c["side"] == side)
        .unwrap_or_else(|| panic!("no {side} case of {study_id}: {cases}"))["case"]
        .as_str()
        .unwrap()
        .to_string()
}

fn study_id(s: &TempStudy, mrn: &str) -> String {
    let study = s.open();
    let hash = study.identifier_hash(mrn);
    study
        .conn()
        .query_row(
            "SELECT study_id FROM patients WHERE mrn_hash = unhex(?1)",
            [&hash],
            |r| r.get(0),
        )
        .unwrap()
}

#[test]
fn a_knee_case_shows_only_radiographs_of_its_knee_and_lists_the_others_apart() {
    let s = setup();
    let oa1 = study_id(&s, "OA1");
    let left = case_of(&s, &oa1, "left");
    let right = case_of(&s, &oa1, "right");
    let study = s.open();

    // The viewer's list (the TUI's read screen): the left radiographs only.
    let shown = study.case_images(&left).unwrap();
    let mut what: Vec<(String, String)> = shown
        .iter()
        .map(|i| {
            let r = &i.record;
            let m = r.modality.clone().unwrap_or_default();
            assert!(m == "DX" || m == "CR", "{m}");
            (
                r.laterality.clone().unwrap_or_default(),
                r.view_position.clone().unwrap_or_default(),
            )
        })
        .collect();
    what.sort();
    assert_eq!(
        what,
        vec![
            ("L".to_string(), "LAT".to_string()),
            ("L".into(), "PA".into())
        ],
        "{shown:#?}"
    );
    let view = study.case_view(&left).unwrap();
    assert_eq!(view.images.len(), 2);
    // Everything else is listed apart, each with why.
    let mut why: HashMap<String, usize> = HashMap::new();
    for o in &view.other_images {
        *why.entry(o.label.clone()).or_default() += 1;
    }
    let want: HashMap<String, usize> = [
        ("CT", 4),
        ("MR", 1),
        ("secondary capture", 1),
        ("burned-in text", 1),
        ("right knee", 1),
        ("side unknown", 1),
    ]
    .into_iter()
    .map(|(k, n)| (k.to_string(), n))
    .collect();
    assert_eq!(why, want, "{:#?}", view.other_images);
    assert!(
        view.other_images
            .iter()
            .any(|o| o.why == "modality CT, not a radiograph (DX, CR)"),
        "{:#?}",
        view.other_images
    );

    // The right knee: its radiograph only.
    let r = study.case_images(&right).unwrap();
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].record.laterality.as_deref(), Some("R"));
    assert!(matches!(r[0].record.modality.as_deref(), Some("DX" | "CR")));

    // A bilateral film serves both knees.
    let oa2 = study_id(&s, "OA2");
    for side in ["left", "right"] {
        let c = case_of(&s, &oa2, side);
        let imgs = study.case_images(&c).unwrap();
        assert_eq!(imgs.len(), 1, "{side}");
        assert_eq!(imgs[0].record.laterality.as_deref(), Some("B"));
    }

    // `read show` lists the same, the others apart with why.
    let text = s.expect(&["read", "show", &left], 0);
    assert!(text.contains("images: 2\n"), "{text}");
    assert!(
        text.contains("other images of this patient, not used for this case: 9"),
        "{text}"
    );
    assert!(
        text.contains("(modality CT, not a radiograph (DX, CR))")
            && text.contains("(a secondary capture (screenshot))")
            && text.contains("(the right knee, not the left)")
            && text.contains("(side unknown (no laterality L, R or B))")
            && text.contains("flagged for a burned-in text review"),
        "{text}"
    );
    let shown = json(&s.expect(&["read", "show", &left, "--json"], 0));
    assert_eq!(shown["images"].as_array().unwrap().len(), 2, "{shown}");
    assert_eq!(
        shown["other_images"].as_array().unwrap().len(),
        9,
        "{shown}"
    );
}

fn kl(k: u8) -> ReadInput {
    ReadInput {
        kl: Some(Grade::Value(k)),
        oarsi: Oarsi::default(),
        op_impression: None,
        confidence: Some(4),
    }
}

#[test]
fn infer_reads_only_what_the_card_names_and_a_prediction_of_an_mr_counts_nowhere() {
    let s = setup();
    let out = json(&s.expect(&["infer", "--task", "kl", "--json"], 0));
    // The left PA and the right AP; the lateral view, the bilateral film, the CT and
    // MR slices, the screenshot, the flagged image and the one of unknown side are not
    // what the shipped KL model reads.
    assert_eq!(out["predicted"], 2, "{out}");
    assert_eq!(out["total"], 2, "{out}");
    let skipped: HashMap<String, i64> = out["skipped"]["kl"]
        .as_object()
        .unwrap_or_else(|| panic!("{out}"))
        .iter()
        .map(|(k, v)| (k.clone(), v.as_i64().unwrap()))
        .collect();
    let want: HashMap<String, i64> = [
        ("CT", 4),
        ("MR", 1),
        ("secondary capture", 1),
        ("burned-in text", 1),
        ("side unknown", 1),
        ("view LAT", 1),
        ("bilateral film", 1),
    ]
    .into_iter()
    .map(|(k, n)| (k.to_string(), n))
    .collect();
    assert_eq!(skipped, want, "{out}");
    let message = out["message"].as_str().unwrap();
    assert!(
        message.contains("2 of 2 images predicted")
            && message.contains("10 skipped, not what the model reads (kl: 4 CT, "),
        "{message}"
    );

    // A prediction stored on the MR (as before the fix) counts nowhere.
    let oa1 = study_id(&s, "OA1");
    let left = case_of(&s, &oa1, "left");
    let mut study = s.open();
    let (mr, pa_probs): (i64, String) = {
        let c = study.conn();
        let mr = c
            .query_row(
                "SELECT i.id FROM image_instances i JOIN image_series se ON se.id = i.series \
                 WHERE se.modality = 'MR'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        let pa = c
            .query_row(
                "SELECT p.probs FROM predictions p JOIN image_instances i ON i.id = p.instance_id \
                 WHERE p.side = 'left' AND i.view_position = 'PA'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        (mr, pa)
    };
    let pa: Vec<f64> = serde_json::from_str(&pa_probs).unwrap();
    let model = study.active_model(Task::Kl).unwrap();
    study
        .store_predictions(
            None,
            Task::Kl,
            &model,
            "cpu (burn-ndarray)",
            &[NewPrediction {
                instance_id: mr,
                study_id: oa1.clone(),
                side: "left".into(),
                class: 4,
                probs: vec![0.0, 0.0, 0.0, 0.001, 0.999],
            }],
        )
        .unwrap();
    // Both readers grade every case: consensus finals.
    for r in ["r1", "r2"] {
        let mut reader = Study::open(&s.db, None, Some(r)).unwrap();
        while let Some(t) = reader.take_next_case().unwrap() {
            assert!(t.summary.side.is_knee());
            reader.submit_read(&t.summary.case, &kl(1), None).unwrap();
        }
    }
    let close = |a: &[f64], b: &[f64]| {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-6)
    };
    let pairs = study.evaluation_pairs(Task::Kl, None, None).unwrap().pairs;
    let mine = pairs
        .iter()
        .find(|(c, _)| c.study_id == oa1 && c.side == "left")
        .unwrap_or_else(|| panic!("{pairs:?}"));
    assert!(close(&mine.1, &pa), "{:?} vs the PA's {pa:?}", mine.1);
    // The bilateral film's patient has no prediction: not scored.
    assert_eq!(pairs.len(), 2, "{pairs:?}");
    let view = study.case_view(&left).unwrap();
    let p = view.model_prediction.shown().cloned().flatten().unwrap();
    assert!(close(&p.kl_probabilities, &pa), "{p:?} vs {pa:?}");
    // `marrow predictions` lists the MR's prediction, marked as counting nowhere
    let listed = study.predictions(Some(Task::Kl)).unwrap();
    let (stray, counted): (Vec<_>, Vec<_>) = listed.iter().partition(|r| !r.counts);
    assert_eq!(stray.len(), 1, "{listed:?}");
    assert_eq!(stray[0].probs, vec![0.0, 0.0, 0.0, 0.001, 0.999]);
    assert_eq!(counted.len(), 2, "{listed:?}");
    drop(study);
    let text = s.expect(&["predictions", "--task", "kl"], 0);
    assert!(
        text.contains("1 prediction of images the model does not read as that case"),
        "{text}"
    );
}
