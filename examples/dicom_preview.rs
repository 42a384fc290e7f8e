//! In-process timing of the DICOM preview pipeline (read, decode, window, fit
//! within 320x180) for bench/dicom.py, beside pydicom + numpy doing the same in
//! its own process: `decode::load` + `decode::render` of each file named in
//! `MARROW_PREVIEW_BENCH` (comma-separated), `MARROW_PREVIEW_RUNS` times (default
//! 21) after a first call, with the allocator of the `marrow` binary (mimalloc).
//!
//! Prints, per file, `preview_timing PATH MEDIAN_MS MIN_MS WxH` and
//! `preview_allocations PATH ALLOCATIONS BYTES` (one call's heap allocations).
//! Arguments are ignored, so it takes the place of the lib test binary that
//! bench/dicom.py used to run (`BENCH_TIMING_BIN`).
//!
//! `cargo build --release --example dicom_preview`

use marrow::dicom::decode;
use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// mimalloc, counting allocations and their bytes.
struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);
static BYTES: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded to mimalloc unchanged; the counters are atomics.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Relaxed);
        BYTES.fetch_add(layout.size(), Relaxed);
        unsafe { mimalloc::MiMalloc.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Relaxed);
        BYTES.fetch_add(layout.size(), Relaxed);
        unsafe { mimalloc::MiMalloc.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { mimalloc::MiMalloc.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Relaxed);
        BYTES.fetch_add(new_size, Relaxed);
        unsafe { mimalloc::MiMalloc.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn preview(path: &str) -> (usize, usize) {
    let image = decode::load(path).unwrap_or_else(|e| panic!("{e}"));
    let r = decode::render(&image, 0, 0, 320, 180).unwrap_or_else(|e| panic!("{e}"));
    (r.width, r.height)
}

fn main() {
    let Ok(files) = std::env::var("MARROW_PREVIEW_BENCH") else {
        eprintln!("MARROW_PREVIEW_BENCH=a.dcm,b.dcm names the files to time");
        std::process::exit(2);
    };
    let runs: usize = std::env::var("MARROW_PREVIEW_RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(21)
        .max(1);
    for path in files.split(',').filter(|p| !p.is_empty()) {
        let mut times = Vec::with_capacity(runs + 1);
        let mut size = (0, 0);
        for _ in 0..runs + 1 {
            let t = std::time::Instant::now();
            size = preview(path);
            times.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        times.remove(0);
        times.sort_by(f64::total_cmp);
        println!(
            "preview_timing {path} {:.2} {:.2} {}x{}",
            times[times.len() / 2],
            times[0],
            size.0,
            size.1
        );
        let (a, b) = (ALLOCATIONS.load(Relaxed), BYTES.load(Relaxed));
        preview(path);
        println!(
            "preview_allocations {path} {} {}",
            ALLOCATIONS.load(Relaxed) - a,
            BYTES.load(Relaxed) - b
        );
    }
}
