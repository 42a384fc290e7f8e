//! The synthetic radiographs of `fixtures/dicom/` (`marrow::dicom::synth`): the
//! generator reproduces the committed files byte for byte, they decode and render,
//! `marrow import dicom` links them (one waits in quarantine), `marrow demo`
//! imports them, and `marrow view --png` writes the displayed image.
//!
//! `MARROW_UPDATE_FIXTURES=1 cargo test --test dicom_fixtures` rewrites the
//! committed files after a deliberate change of the generator.

mod common;
use common::*;
use marrow::dicom::decode::{self, Pixels};
use marrow::dicom::synth::{self, UNMATCHED_PATIENT_ID};
use std::path::{Path, PathBuf};

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/dicom")
}

fn unmatched() -> u64 {
    synth::fixture_specs()
        .iter()
        .filter(|(_, s)| s.patient_id == UNMATCHED_PATIENT_ID)
        .count() as u64
}

#[test]
fn the_generator_reproduces_the_committed_fixtures_byte_for_byte() {
    if std::env::var_os("MARROW_UPDATE_FIXTURES").is_some() {
        synth::write_fixtures(&fixtures_dir()).unwrap();
    }
    let tmp = tempfile::tempdir().unwrap();
    let written = synth::write_fixtures(tmp.path()).unwrap();
    assert_eq!(written.len(), synth::fixture_specs().len());
    for p in &written {
        let name = p.file_name().unwrap();
        let committed = std::fs::read(fixtures_dir().join(name)).unwrap_or_else(|e| {
            panic!(
                "fixtures/dicom/{}: {e} (MARROW_UPDATE_FIXTURES=1 writes it)",
                name.to_string_lossy()
            )
        });
        let fresh = std::fs::read(p).unwrap();
        assert!(
            committed == fresh,
            "fixtures/dicom/{} differs from what the generator writes now",
            name.to_string_lossy()
        );
        assert!(
            fresh.len() < 12_000,
            "{}: {} bytes",
            p.display(),
            fresh.len()
        );
    }
    // nothing else in the folder
    let mut on_disk: Vec<String> = std::fs::read_dir(fixtures_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".dcm"))
        .collect();
    on_disk.sort();
    let mut expected: Vec<String> = synth::fixture_specs()
        .iter()
        .map(|(n, _)| n.to_string())
        .collect();
    expected.sort();
    assert_eq!(on_disk, expected);
}

#[test]
fn the_fixtures_decode_and_render_with_black_air() {
    for (name, spec) in synth::fixture_specs() {
        let image = decode::load(fixtures_dir().join(name)).unwrap();
        let i = &image.info;
        assert_eq!((i.rows, i.columns), (spec.rows.into(), spec.cols.into()));
        assert_eq!(i.bits_allocated, 16);
        assert!([12, 14].contains(&i.bits_stored), "{name}");
        assert_eq!(i.photometric, "MONOCHROME2");
        assert_eq!(i.transfer_syntax, "1.2.840.10008.1.2.1");
        assert!(matches!(i.modality.as_deref(), Some("DX" | "CR")), "{name}");
        assert_eq!(image.windows.len(), 1, "{name}");
        let r = decode::render(&image, 0, 0, 0, 0).unwrap();
        assert_eq!((r.width, r.height), (spec.cols.into(), spec.rows.into()));
        assert!(r.voi.starts_with("window 0"), "{name}: {}", r.voi);
        let Pixels::Gray(g) = r.pixels else {
            panic!("{name}: not grey")
        };
        let (w, n) = (r.width, g.len());
        let corners = [g[0], g[w - 1], g[n - w], g[n - 1]];
        assert!(corners.contains(&0), "{name}: corners {corners:?}");
        assert!(g.iter().any(|&v| v > 200), "{name}: no bright bone");
        // soft tissue is grey: a good share of the picture is neither black nor white
        let grey = g.iter().filter(|&&v| (30..=200).contains(&v)).count();
        assert!(grey * 5 > n, "{name}: {grey} of {n} grey pixels");
    }
}

#[test]
fn import_links_the_fixtures_and_strips_the_identifiers() {
    let s = TempStudy::init();
    let patients = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/demo/patients.csv");
    s.expect(&["import", "patients", patients.to_str().unwrap()], 0);
    let out = s.expect(&["import", "dicom", fixtures_dir().to_str().unwrap()], 0);
    let total = synth::fixture_specs().len() as u64;
    assert!(
        out.contains(&format!(
            "{total} files: {total} imported ({} waiting for their patient)",
            unmatched()
        )),
        "{out}"
    );
    let v: serde_json::Value = serde_json::from_str(&s.expect(&["status", "--json"], 0)).unwrap();
    assert_eq!(v["images"].as_u64(), Some(total));
    assert_eq!(v["quarantined"].as_u64(), Some(unmatched()));
    // no identifier of the originals reaches the store
    let mut store = s.db.as_os_str().to_owned();
    store.push(".store");
    let needles: &[&[u8]] = &[
        b"PK100001",
        b"MARROW SYNTH PRIVATE",
        b"People's Hospital",
        b"Sun Yat-sen",
        b"ACC2024",
        "张^伟".as_bytes(),
        b"LI^QIANG",
    ];
    let mut copies = 0;
    for e in walkdir::WalkDir::new(PathBuf::from(store)) {
        let e = e.unwrap();
        if !e.file_type().is_file() || e.path().extension().is_none_or(|x| x != "dcm") {
            continue;
        }
        copies += 1;
        let bytes = std::fs::read(e.path()).unwrap();
        for n in needles {
            assert!(
                !bytes.windows(n.len()).any(|w| w == *n),
                "{} holds {}",
                e.path().display(),
                String::from_utf8_lossy(n)
            );
        }
    }
    assert_eq!(copies, total);
}

#[test]
fn view_png_writes_the_displayed_image() {
    let s = TempStudy::empty();
    let file = fixtures_dir().join("PK100001_knee_R_AP.dcm");
    let png = s.path("knee.png");
    let out = s
        .cmd()
        .arg("view")
        .arg(&file)
        .arg("--png")
        .arg(&png)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("64x80 PNG written"),
        "{}",
        stdout(&out)
    );
    let img = image::open(&png).unwrap();
    let g = img.as_luma8().expect("an 8-bit grey PNG");
    assert_eq!(g.dimensions(), (64, 80));
    // air in the corner is black; the cortex of the femur shaft (top centre) is bright
    assert_eq!(g.get_pixel(0, 0).0, [0]);
    let brightest = (20..44).map(|x| g.get_pixel(x, 8).0[0]).max().unwrap();
    assert!(brightest > 150, "{brightest}");
    // the same pixels as the terminal pipeline at full size
    let image = decode::load(&file).unwrap();
    let Pixels::Gray(expected) = decode::render(&image, 0, 0, 0, 0).unwrap().pixels else {
        panic!("not grey")
    };
    assert_eq!(g.as_raw(), &expected);

    // --width scales it down, keeping the aspect ratio
    let small = s.path("small.png");
    let out = s
        .cmd()
        .arg("view")
        .arg(&file)
        .args(["--width", "32", "--png"])
        .arg(&small)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let img = image::open(&small).unwrap();
    assert_eq!((img.width(), img.height()), (32, 40));
}

#[test]
fn generate_dicom_writes_radiographs_of_the_asked_size() {
    let s = TempStudy::empty();
    let dir = s.path("gen");
    let out = s
        .cmd()
        .args([
            "generate", "--dicom", "3", "--rows", "40", "--cols", "32", "--out",
        ])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let mut parts = Vec::new();
    for i in 0..3 {
        let image = decode::load(dir.join(format!("{i:05}.dcm"))).unwrap();
        assert_eq!((image.info.columns, image.info.rows), (32, 40));
        let obj = dicom_object::open_file(dir.join(format!("{i:05}.dcm"))).unwrap();
        parts.push(
            obj.element(dicom_dictionary_std::tags::BODY_PART_EXAMINED)
                .unwrap()
                .to_str()
                .unwrap()
                .trim()
                .to_string(),
        );
    }
    assert_eq!(parts, ["KNEE", "HIP", "LSPINE"]);
}
