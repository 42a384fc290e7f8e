//! The image viewer of the TUI on a real study: a generated DICOM imported for a
//! patient, listed and rendered by the worker (LoadImages + RenderImage), and drawn
//! with half-blocks in a real terminal (tmux).

mod common;
use common::tmux::{Tmux, shell_quote};
use common::*;
use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_object::{InMemDicomObject, meta::FileMetaTableBuilder};
use marrow::dicom::decode::Pixels;
use marrow::tui::worker::Worker;
use marrow::tui::{PreviewKey, RenderImage, Request, Response};
use std::path::Path;
use std::sync::mpsc::{self, Receiver};
use std::time::Duration;

const PATIENTS: &str = "\
mrn,site,phase,group,sex,birth_date,index_date
MRN001,PKUPH,retrospective,OA,F,1960-05-01,
MRN002,PKUPH,retrospective,OP,F,1950-01-01,
";

/// Writes a 16x16 16-bit MONOCHROME2 knee radiograph of `patient_id`.
fn write_dicom(path: &Path, patient_id: &str, sop_uid: &str, burned_in: bool) {
    let mut obj = InMemDicomObject::new_empty();
    let mut text = |g: u16, e: u16, vr: VR, v: &str| {
        obj.put(DataElement::new(Tag(g, e), vr, PrimitiveValue::from(v)));
    };
    text(0x0008, 0x0016, VR::UI, "1.2.840.10008.5.1.4.1.1.1.1");
    text(0x0008, 0x0018, VR::UI, sop_uid);
    text(0x0008, 0x0020, VR::DA, "20240501");
    text(0x0008, 0x0060, VR::CS, "DX");
    text(0x0010, 0x0010, VR::PN, "WANG^FANG");
    text(0x0010, 0x0020, VR::LO, patient_id);
    text(0x0018, 0x0015, VR::CS, "KNEE");
    text(0x0018, 0x5101, VR::CS, "AP");
    text(0x0020, 0x000D, VR::UI, "1.2.826.0.1.3680043.9.7777.1");
    text(0x0020, 0x000E, VR::UI, "1.2.826.0.1.3680043.9.7777.1.1");
    text(0x0020, 0x0062, VR::CS, "L");
    text(0x0028, 0x0004, VR::CS, "MONOCHROME2");
    if burned_in {
        text(0x0028, 0x0301, VR::CS, "YES");
    }
    let mut us = |e: u16, v: u16| {
        obj.put(DataElement::new(
            Tag(0x0028, e),
            VR::US,
            PrimitiveValue::from(v),
        ));
    };
    us(0x0002, 1);
    us(0x0010, 16);
    us(0x0011, 16);
    us(0x0100, 16);
    us(0x0101, 12);
    us(0x0102, 11);
    us(0x0103, 0);
    // A diagonal ramp, so the image is not flat.
    let pixels: Vec<u16> = (0..16u16)
        .flat_map(|y| (0..16u16).map(move |x| (x + y) * 130))
        .collect();
    obj.put(DataElement::new(
        Tag(0x7FE0, 0x0010),
        VR::OW,
        PrimitiveValue::U16(pixels.into()),
    ));
    obj.with_meta(FileMetaTableBuilder::new().transfer_syntax("1.2.840.10008.1.2.1"))
        .expect("meta")
        .write_to_file(path)
        .expect("write dicom");
}

/// A study with two patients; MRN001 (PKUPH-OA-0001) has two images, one flagged.
fn study_with_images() -> TempStudy {
    let s = TempStudy::init();
    let p = s.write("patients.csv", PATIENTS);
    s.expect(&["import", "patients", p.to_str().unwrap()], 0);
    let dir = s.path("dicom");
    std::fs::create_dir_all(&dir).unwrap();
    write_dicom(
        &dir.join("a.dcm"),
        "MRN001",
        "1.2.826.0.1.3680043.9.7777.1.1.1",
        false,
    );
    write_dicom(
        &dir.join("b.dcm"),
        "MRN001",
        "1.2.826.0.1.3680043.9.7777.1.1.2",
        true,
    );
    s.expect(&["import", "dicom", dir.to_str().unwrap()], 0);
    s
}

fn spawn(db: &Path) -> (Worker, Receiver<Response>) {
    let (tx, rx) = mpsc::channel();
    let (w, _) = Worker::spawn(db.to_path_buf(), None, None, move |r| {
        let _ = tx.send(r);
    })
    .expect("worker opens the study");
    (w, rx)
}

fn next(rx: &Receiver<Response>) -> Response {
    rx.recv_timeout(Duration::from_secs(30))
        .expect("a response within 30 s")
}

#[test]
fn the_worker_lists_a_patients_images_and_renders_one() {
    let s = study_with_images();
    let (w, rx) = spawn(&s.db);
    assert!(w.send(Request::LoadImages {
        study_id: "PKUPH-OA-0001".into()
    }));
    let Response::Images { study_id, images } = next(&rx) else {
        panic!("expected the image list");
    };
    assert_eq!(study_id, "PKUPH-OA-0001");
    assert_eq!(images.len(), 2, "{images:#?}");
    let first = &images[0].record;
    assert_eq!(first.modality.as_deref(), Some("DX"));
    assert_eq!(first.body_part.as_deref(), Some("KNEE"));
    assert_eq!((first.columns, first.rows), (Some(16), Some(16)));
    assert_eq!(
        images
            .iter()
            .filter(|i| i.record.review_reason.is_some())
            .count(),
        1,
        "the BurnedInAnnotation YES image is flagged"
    );

    // The other patient has none.
    w.send(Request::LoadImages {
        study_id: "PKUPH-OP-0001".into(),
    });
    let Response::Images { images: none, .. } = next(&rx) else {
        panic!("expected an (empty) image list");
    };
    assert!(none.is_empty());

    for (max, want) in [(100, 16), (8, 8)] {
        let key = PreviewKey {
            instance_id: images[0].instance_id,
            frame: 0,
            voi_index: 0,
            window: None,
        };
        assert!(w.send(Request::RenderImage(RenderImage {
            key,
            store_path: first.store_path.clone(),
            max_w: max,
            max_h: max,
        })));
        let Response::Rendered { key: got, result } = next(&rx) else {
            panic!("expected a rendered frame");
        };
        assert_eq!(got, key);
        let p = result.expect("the frame renders");
        assert_eq!((p.rendered.width, p.rendered.height), (want, want));
        let Pixels::Gray(g) = &p.rendered.pixels else {
            panic!("a MONOCHROME2 image renders gray");
        };
        assert_eq!(g.len(), want * want);
        assert!(g.iter().any(|&v| v != g[0]), "not a flat image");
    }

    // A window chosen with the window/level keys is the one rendered.
    let key = PreviewKey {
        instance_id: images[0].instance_id,
        frame: 0,
        voi_index: 0,
        window: Some((500, 300)),
    };
    assert!(w.send(Request::RenderImage(RenderImage {
        key,
        store_path: first.store_path.clone(),
        max_w: 16,
        max_h: 16,
    })));
    let Response::Rendered { result, .. } = next(&rx) else {
        panic!("expected a rendered frame");
    };
    let p = result.expect("the frame renders with the chosen window");
    assert_eq!(p.rendered.window, Some((500.0, 300.0)));
    assert!(
        p.rendered.voi.starts_with("chosen window"),
        "{}",
        p.rendered.voi
    );

    // A missing file is an error for the screen, not a dead worker.
    w.send(Request::RenderImage(RenderImage {
        key: PreviewKey {
            instance_id: 999,
            frame: 0,
            voi_index: 0,
            window: None,
        },
        store_path: "missing/nothing.dcm".into(),
        max_w: 10,
        max_h: 10,
    }));
    let Response::Rendered { result, .. } = next(&rx) else {
        panic!("expected a render failure");
    };
    assert!(result.is_err());
    w.stop();
}

#[test]
fn the_viewer_draws_half_blocks_in_tmux() {
    let s = study_with_images();
    let wait = Duration::from_secs(20);
    // Forced half-blocks (no terminal query), then the automatic choice: the query
    // must not hang inside tmux.
    for graphics in ["halfblocks", ""] {
        let command = format!(
            "MARROW_GRAPHICS={graphics} NO_COLOR=1 {} --db {}; echo MARROW-EXIT=$?; sleep 600",
            shell_quote(Path::new(env!("CARGO_BIN_EXE_marrow"))),
            shell_quote(&s.db)
        );
        let tmux = Tmux::start(100, 30, &command);
        tmux.wait_for("Patients 2 of 2", wait);
        tmux.keys(&["Enter"]);
        tmux.wait_for("2 images", wait);
        tmux.keys(&["i"]);
        let screen = tmux.wait_for("DX KNEE L AP 16x16", wait);
        assert!(screen.contains("⚠"), "{screen}");
        let first = if graphics == "halfblocks" {
            tmux.wait_until("half-block characters", wait, |s| {
                s.contains('▀') || s.contains('▄')
            })
        } else {
            tmux.wait_for("image 1/2", wait)
        };
        // One of the two images shows its review reason in the attributes.
        let review = "burned-in text review";
        let flagged_first = first.contains(review);
        tmux.keys(&["j"]);
        tmux.wait_until("the second image's attributes", wait, |s| {
            s.contains("image 2/2") && s.contains(review) != flagged_first
        });
        tmux.keys(&["Escape"]);
        tmux.wait_for("Target area", wait);
        tmux.keys(&["q"]);
        tmux.wait_for("MARROW-EXIT=0", wait);
    }
}
