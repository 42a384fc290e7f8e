//! The image viewer of the TUI on a real study: a generated DICOM imported for a
//! patient, listed and rendered by the worker (LoadImages + RenderImage), and drawn
//! with half-blocks in a real terminal (tmux).

mod common;
use common::tmux::{ColouredCell, TERMS, Tmux, coloured_cells, marrow_under_term, shell_quote};
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

/// The `marrow` command line for tmux: `env` settings, then marrow on the study.
fn marrow_command(env: &str, db: &Path, args: &str) -> String {
    format!(
        "{env} NO_COLOR=1 {} --db {} {args}; echo MARROW-EXIT=$?; sleep 600",
        shell_quote(Path::new(env!("CARGO_BIN_EXE_marrow"))),
        shell_quote(db)
    )
}

#[test]
fn the_viewer_draws_half_blocks_in_tmux() {
    let s = study_with_images();
    let wait = Duration::from_secs(20);
    // MARROW_GRAPHICS=halfblocks (no terminal query); the automatic choice, which must
    // not hang inside tmux; and --graphics halfblocks, which wins over the variable.
    for (env, args) in [
        ("MARROW_GRAPHICS=halfblocks", ""),
        ("MARROW_GRAPHICS=", ""),
        ("MARROW_GRAPHICS=kitty", "--graphics halfblocks"),
        ("MARROW_GRAPHICS=kitty", "tui --graphics halfblocks"),
    ] {
        let tmux = Tmux::start(100, 30, &marrow_command(env, &s.db, args));
        tmux.wait_for("Patients 2 of 2", wait);
        tmux.keys(&["Enter"]);
        tmux.wait_for("2 images", wait);
        tmux.keys(&["i"]);
        // The list grouped: the study, its series, the images under it.
        let screen = tmux.wait_for("2024-05-01 · DX KNEE · 1 series", wait);
        // The files carry no series number.
        assert!(screen.contains("series — · DX KNEE · 2 images"), "{screen}");
        assert!(screen.contains("1 L AP 16x16"), "{screen}");
        assert!(screen.contains("2 L AP 16x16"), "{screen}");
        assert!(screen.contains("⚠"), "{screen}");
        let first = tmux.wait_until("half-block characters", wait, |s| {
            s.contains('▀') || s.contains('▄')
        });
        assert!(first.contains("half-blocks"), "{env} {args}:\n{first}");
        // One of the two images shows its review reason in the attributes.
        let review = "burned-in text review";
        let flagged_first = first.contains(review);
        tmux.keys(&["j"]);
        tmux.wait_until("the second image's attributes", wait, |s| {
            s.contains("image 2/2") && s.contains(review) != flagged_first
        });
        // The mouse, as the terminal reports it (SGR, 1-based): the wheel over the
        // image steps one image a notch; a click on an image's row selects it (the
        // rows: header, border, study, series, image 1 on the fifth, image 2).
        tmux.type_text("\x1b[<64;70;10M");
        tmux.wait_for("image 1/2", wait);
        tmux.type_text("\x1b[<65;70;10M");
        tmux.wait_for("image 2/2", wait);
        tmux.type_text("\x1b[<0;8;5M");
        tmux.wait_for("image 1/2", wait);
        tmux.type_text("\x1b[<0;8;6M");
        tmux.wait_for("image 2/2", wait);
        tmux.keys(&["Escape"]);
        tmux.wait_for("Target area", wait);
        tmux.keys(&["q"]);
        tmux.wait_for("MARROW-EXIT=0", wait);
    }
}

/// Waits until the log beside the database has `line` `times` times.
fn wait_for_log(log: &Path, line: &str, times: usize, wait: Duration) -> String {
    let start = std::time::Instant::now();
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.matches(line).count() >= times {
            return text;
        }
        assert!(start.elapsed() < wait, "no {line:?} in the log:\n{text}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_terminal_is_asked_about_graphics_when_the_images_open_and_keys_still_work() {
    let s = study_with_images();
    let wait = Duration::from_secs(20);
    let log = s.path("study.db.log");
    let asked = "tui: asking the terminal how to draw images";
    // Out of tmux's sight (no TMUX or TERM_PROGRAM, an xterm TERM), so marrow asks, and
    // tmux answers as a terminal would. Then as if inside tmux with sixel forced: the
    // query goes through to an outer terminal that is not there and is never answered.
    let cases = [
        (
            "env -u TMUX -u TERM_PROGRAM TERM=xterm-256color",
            "",
            "half-blocks",
        ),
        (
            "env -u TMUX TERM_PROGRAM=tmux TERM=xterm-256color",
            "--graphics sixel",
            "sixel",
        ),
    ];
    for (n, (env, args, drawn)) in cases.into_iter().enumerate() {
        let command = marrow_command(&format!("{env} MARROW_GRAPHICS="), &s.db, args);
        let tmux = Tmux::start(100, 30, &command);
        tmux.wait_for("Patients 2 of 2", wait);
        tmux.keys(&["Enter"]);
        tmux.wait_for("2 images", wait);
        tmux.keys(&["j", "j"]);
        tmux.wait_for("▶ I3", wait);
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        assert_eq!(
            text.matches(asked).count(),
            n,
            "asked before the images:\n{text}"
        );
        tmux.keys(&["i"]);
        let text = wait_for_log(&log, "tui: the graphics query is over", n + 1, wait);
        assert_eq!(text.matches(asked).count(), n + 1, "{text}");
        // The answer was not read as keys, and the keys after it arrive.
        // The pane's border names the protocol once the first frame is drawn.
        let screen = tmux.wait_until("image 1/2, drawn", wait, |s| {
            s.contains("image 1/2") && s.contains(drawn)
        });
        assert!(screen.contains("2024-05-01 · DX KNEE"), "{screen}");
        assert!(screen.contains(drawn), "{screen}");
        if n == 1 {
            assert!(screen.contains("did not answer"), "{screen}");
        }
        tmux.keys(&["j"]);
        tmux.wait_for("image 2/2", wait);
        // Back and in again: not asked again.
        tmux.keys(&["h"]);
        tmux.wait_for("Target area", wait);
        tmux.keys(&["i"]);
        tmux.wait_for("image 2/2", wait);
        tmux.keys(&["h"]);
        tmux.wait_for("Target area", wait);
        tmux.keys(&["q"]);
        tmux.wait_for("MARROW-EXIT=0", wait);
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        assert_eq!(text.matches(asked).count(), n + 1, "asked twice:\n{text}");
    }
}

/// The images screen of PKUPH-OA-0001 in tmux under `TERM=term` (with `NO_COLOR=1` or
/// without it), graphics chosen as a user's session chooses them; returns the tmux, the
/// plain screen once the first image is drawn, and the escapes of that screen.
fn images_under_term(s: &TempStudy, term: &str, no_color: bool) -> (Tmux, String, String) {
    let wait = Duration::from_secs(20);
    let args = format!("--db {}", shell_quote(&s.db));
    let command = format!(
        "env -u MARROW_GRAPHICS {}",
        marrow_under_term(term, no_color, &args)
    );
    let tmux = Tmux::start(100, 30, &command);
    tmux.wait_for("Patients 2 of 2", wait);
    tmux.keys(&["Enter"]);
    tmux.wait_for("2 images", wait);
    tmux.keys(&["i"]);
    let screen = tmux.wait_until("the first image in half-blocks", wait, |s| {
        s.contains("image 1/2") && (s.contains('▀') || s.contains('▄'))
    });
    let raw = tmux.screen_with_escapes();
    (tmux, screen, raw)
}

/// The coloured cells of `raw` split into those of the image (half-blocks, or blanks
/// inside the image pane) and those of everything else (text, borders).
fn image_and_text_colours(screen: &str, raw: &str) -> (Vec<ColouredCell>, Vec<ColouredCell>) {
    // The image pane: from the column of its top-left corner ("┌ image 1/2 ...").
    let left = screen
        .lines()
        .find_map(|l| l.find("┌ image").map(|at| l[..at].chars().count()))
        .unwrap_or_else(|| panic!("no image pane:\n{screen}"));
    coloured_cells(raw)
        .into_iter()
        .partition(|c| c.ch == '▀' || c.ch == '▄' || (c.ch == ' ' && c.col > left))
}

/// Issue 7 ("Over SSH"): the images screen under each TERM an SSH session brings and
/// with NO_COLOR: the list grouped by study and series, the image drawn with
/// half-blocks (in grey levels when colours are on: the ramp is not flat), the
/// de-identified attributes and no identifier of the file; the next image with its
/// burned-in text review; Esc back to the patient, q quits with status 0. With
/// NO_COLOR no text or border is coloured.
#[test]
fn the_viewer_draws_under_each_term_and_without_colour() {
    let s = study_with_images();
    let wait = Duration::from_secs(20);
    for (term, no_color) in TERMS {
        let (tmux, screen, raw) = images_under_term(&s, term, no_color);
        assert!(!screen.contains("panicked"), "{term}: {screen}");
        assert!(screen.contains("half-blocks"), "{term}: {screen}");
        assert!(
            screen.contains("2024-05-01 · DX KNEE · 1 series"),
            "{term}: {screen}"
        );
        assert!(screen.contains("1 L AP 16x16"), "{term}: {screen}");
        assert!(screen.contains("2 L AP 16x16"), "{term}: {screen}");
        assert!(
            screen.contains("attributes (de-identified)"),
            "{term}: {screen}"
        );
        for (name, value) in [
            ("image", "DX KNEE L AP"),
            ("size", "16 x 16 · 1 frame"),
            ("pixels", "MONOCHROME2 · 12/16 bit"),
        ] {
            let line = format!("{name:<10} {value}");
            assert!(screen.contains(&line), "{term}: no {line:?} in\n{screen}");
        }
        for identifier in ["WANG", "FANG", "MRN001", "MRN002"] {
            assert!(!screen.contains(identifier), "{term}: {identifier} shown");
        }

        let (image, text) = image_and_text_colours(&screen, &raw);
        if no_color {
            assert!(
                text.is_empty(),
                "NO_COLOR: coloured text {:?}\n{raw}",
                &text[..text.len().min(5)]
            );
        } else {
            assert!(!text.is_empty(), "{term}: no colour on the text\n{raw}");
            let mut shades: Vec<&str> = image.iter().map(|c| c.colour.as_str()).collect();
            shades.sort_unstable();
            shades.dedup();
            assert!(
                shades.len() >= 2,
                "{term}: the image is drawn in {shades:?}\n{raw}"
            );
        }

        // The next image: the attributes follow, one of the two is flagged.
        let review = "burned-in text review";
        let flagged_first = screen.contains(review);
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

/// With NO_COLOR the image must still be drawn in its grey levels: NO_COLOR is about
/// the colour of text, and half-blocks without their colours are a pattern of glyphs,
/// not the radiograph.
#[test]
fn under_no_color_the_image_keeps_its_grey_levels() {
    let s = study_with_images();
    let (tmux, screen, raw) = images_under_term(&s, "xterm-256color", true);
    let (image, text) = image_and_text_colours(&screen, &raw);
    assert!(text.is_empty(), "NO_COLOR: coloured text {text:?}");
    let mut shades: Vec<&str> = image.iter().map(|c| c.colour.as_str()).collect();
    shades.sort_unstable();
    shades.dedup();
    assert!(shades.len() >= 2, "the image is drawn in {shades:?}\n{raw}");
    tmux.keys(&["q"]);
    tmux.wait_for("MARROW-EXIT=0", Duration::from_secs(20));
}
