//! Hostile declared lengths: a small file that declares a multi-gigabyte
//! element is refused by name, by the viewer's loader and by the import, without
//! allocating anything near that size (this test binary counts the peak of
//! live heap bytes with a wrapping global allocator).

mod common;

use common::TempStudy;
use std::alloc::{GlobalAlloc, Layout, System};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            let now = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
            let now = LIVE.fetch_add(new_size, Ordering::Relaxed) + new_size;
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// The tests of this binary measure one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// The growth of the heap's peak while `f` runs.
fn peak_during<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let base = LIVE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let out = f();
    (out, PEAK.load(Ordering::Relaxed).saturating_sub(base))
}

const LIMIT: usize = 64 << 20;

fn element(out: &mut Vec<u8>, group: u16, elem: u16, vr: &[u8; 2], value: &[u8]) {
    out.extend_from_slice(&group.to_le_bytes());
    out.extend_from_slice(&elem.to_le_bytes());
    out.extend_from_slice(vr);
    out.extend_from_slice(&(value.len() as u16).to_le_bytes());
    out.extend_from_slice(value);
}

/// A preamble, "DICM" and a meta group (with its group length) naming the
/// transfer syntax `ts` (NUL-padded to an even length).
fn preamble_and_meta(ts: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; 128];
    f.extend_from_slice(b"DICM");
    let mut meta = Vec::new();
    meta.extend_from_slice(&[0x02, 0x00, 0x01, 0x00, b'O', b'B', 0, 0, 2, 0, 0, 0, 0, 1]);
    element(
        &mut meta,
        0x0002,
        0x0002,
        b"UI",
        b"1.2.840.10008.5.1.4.1.1.7\0",
    );
    element(&mut meta, 0x0002, 0x0003, b"UI", b"1.2.3.4.5.6.7\0");
    element(&mut meta, 0x0002, 0x0010, b"UI", ts);
    element(
        &mut f,
        0x0002,
        0x0000,
        b"UL",
        &(meta.len() as u32).to_le_bytes(),
    );
    f.extend_from_slice(&meta);
    f
}

/// A DICOM file whose element (`group`,`elem`) of VR `vr` (a 4-byte-length
/// VR) declares `len` bytes, followed by 64 bytes only.
fn hostile(dir: &Path, name: &str, group: u16, elem: u16, vr: &[u8; 2], len: u32) -> PathBuf {
    let mut f = preamble_and_meta(b"1.2.840.10008.1.2.1\0");
    element(&mut f, 0x0008, 0x0018, b"UI", b"1.2.3.4.5.6.7\0");
    element(&mut f, 0x0010, 0x0010, b"PN", b"HOSTILE^LENGTH");
    element(&mut f, 0x0010, 0x0020, b"LO", b"MRN0001 ");
    element(&mut f, 0x0028, 0x0010, b"US", &16u16.to_le_bytes());
    element(&mut f, 0x0028, 0x0011, b"US", &16u16.to_le_bytes());
    f.extend_from_slice(&group.to_le_bytes());
    f.extend_from_slice(&elem.to_le_bytes());
    f.extend_from_slice(vr);
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(&len.to_le_bytes());
    f.extend_from_slice(&[7u8; 64]);
    let path = dir.join(name);
    std::fs::write(&path, f).expect("write hostile file");
    path
}

#[test]
fn the_viewer_refuses_a_declared_length_past_the_end_without_allocating_it() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().expect("temp dir");
    for (name, group, elem, vr, len) in [
        ("pixels.dcm", 0x7FE0u16, 0x0010u16, b"OW", 0xFFFF_FFF0u32),
        ("text.dcm", 0x0008, 0x103E, b"UT", 3_000_000_000),
        ("unknown.dcm", 0x0009, 0x1010, b"UN", 2_000_000_000),
    ] {
        let path = hostile(dir.path(), name, group, elem, vr, len);
        let (result, peak) = peak_during(|| marrow::dicom::decode::load(&path));
        let err = result.expect_err("a hostile length must be refused");
        let tag = format!("({group:04X},{elem:04X})");
        assert!(
            err.reason.contains(&tag) && err.reason.contains(&len.to_string()),
            "{name}: {err}"
        );
        assert!(
            peak < LIMIT,
            "{name}: loading allocated {peak} bytes at its peak"
        );
    }
}

#[test]
fn the_import_refuses_a_declared_length_past_the_end_without_allocating_it() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let s = TempStudy::init();
    let input = s.path("in");
    std::fs::create_dir(&input).expect("input dir");
    hostile(&input, "a.dcm", 0x7FE0, 0x0010, b"OW", 0xFFFF_FFF0);
    hostile(&input, "b.dcm", 0x0008, 0x103E, b"UT", 3_000_000_000);
    let mut study = s.open();
    let (report, peak) = peak_during(|| {
        marrow::dicom::import_dicom(&mut study, std::slice::from_ref(&input), |_| {})
    });
    let report = report.expect("the import runs");
    assert_eq!(report.imported, 0);
    assert_eq!(report.refused.len(), 2, "{:?}", report.refused);
    for r in &report.refused {
        let text = format!("{r:?}");
        assert!(
            text.contains("declares") && text.contains("remain in the file"),
            "{text}"
        );
    }
    assert!(
        peak < LIMIT,
        "the import allocated {peak} bytes at its peak"
    );
}

/// The fuzzing findings kept in fuzz/regressions/dicom/: each made dicom-rs reserve
/// gigabytes for one declared length on a path the structural check did not cover
/// (oom-47ca60b4…: a meta element turned into another group, the check ended the
/// meta group early; oom-ee6fa222…: a meta value of 3.4 GB on the path that reads
/// an implicit-VR data set behind the meta group). The load and the import refuse
/// each with the reason, their heap peak under 64 MB.
#[test]
fn the_fuzzing_findings_are_refused_without_allocating_their_lengths() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions/dicom");
    let mut findings: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("fuzz/regressions/dicom")
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("oom-"))
        .collect();
    findings.sort();
    assert!(findings.len() >= 2, "{findings:?}");
    let s = TempStudy::init();
    let input = s.path("in");
    std::fs::create_dir(&input).expect("input dir");
    for finding in &findings {
        let (result, peak) = peak_during(|| marrow::dicom::decode::load(finding));
        let err = result.expect_err("a finding is malformed");
        assert!(!err.reason.is_empty());
        assert!(
            peak < LIMIT,
            "{}: loading allocated {peak} bytes at its peak ({err})",
            finding.display()
        );
        let name = finding.file_name().unwrap().to_string_lossy().into_owned();
        std::fs::copy(finding, input.join(format!("{name}.dcm"))).expect("copy the finding");
    }
    let mut study = s.open();
    let (report, peak) = peak_during(|| {
        marrow::dicom::import_dicom(&mut study, std::slice::from_ref(&input), |_| {})
    });
    let report = report.expect("the import runs");
    assert_eq!(report.imported, 0);
    assert_eq!(report.refused.len(), findings.len(), "{:?}", report.refused);
    assert!(
        peak < LIMIT,
        "the import allocated {peak} bytes at its peak"
    );
}

/// A deflated data set (Deflated Explicit VR Little Endian) is walked too: inflated
/// with a cap, then checked like any other, so a declared length of gigabytes inside
/// the compressed stream is refused before dicom-rs would reserve it.
#[test]
fn a_huge_length_inside_a_deflated_data_set_is_refused_without_allocating_it() {
    use std::io::Write;
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().expect("temp dir");
    let mut body = Vec::new();
    element(&mut body, 0x0008, 0x0018, b"UI", b"1.2.3.4.5.6.7\0");
    element(&mut body, 0x0028, 0x0010, b"US", &16u16.to_le_bytes());
    element(&mut body, 0x0028, 0x0011, b"US", &16u16.to_le_bytes());
    body.extend_from_slice(&0x0008u16.to_le_bytes());
    body.extend_from_slice(&0x103Eu16.to_le_bytes());
    body.extend_from_slice(b"UT\0\0");
    body.extend_from_slice(&3_000_000_000u32.to_le_bytes());
    body.extend_from_slice(&[b'x'; 64]);
    let mut z = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(&body).unwrap();
    let deflated = z.finish().unwrap();

    let mut f = preamble_and_meta(b"1.2.840.10008.1.2.1.99\0");
    f.extend_from_slice(&deflated);
    let path = dir.path().join("deflated.dcm");
    std::fs::write(&path, &f).unwrap();

    let (result, peak) = peak_during(|| marrow::dicom::decode::load(&path));
    let err = result.expect_err("a hostile length must be refused");
    assert!(
        err.reason.contains("(0008,103E)") && err.reason.contains("3000000000"),
        "{err}"
    );
    assert!(peak < LIMIT, "loading allocated {peak} bytes at its peak");
}
