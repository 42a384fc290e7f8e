//! 12-bit lossy JPEG (JPEG Extended, transfer syntax 1.2.840.10008.1.2.4.51):
//! `marrow::dicom::jpeg12` against pydicom's decoding of its test file
//! JPGExtended.dcm, and malformed streams, which must be errors, never panics.
//!
//! fixtures/jpeg12/JPGExtended.jpg is the one Pixel Data fragment of
//! pydicom 3.0.2's `pydicom/data/test_files/JPGExtended.dcm` (MIT licence), as
//! `pydicom.encaps.generate_frames` gives it: SOI, SOF1 (P = 12, 1024 rows of
//! 256, one component), DQT, DHT, SOS, 6660 bytes of entropy-coded data, EOI
//! and one 0xFF byte of padding to an even length. See the README.md there.

use libjpeg_turbo_rs::common::types::Subsampling;
use libjpeg_turbo_rs::precision::compress_12bit;
use marrow::dicom::jpeg12::{decode, precision};
use sha2::{Digest, Sha256};

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/fixtures/jpeg12/JPGExtended.jpg"
);

/// Offsets in the fixture: the SOF marker's second byte, the SOF's P, height
/// and width, the DHT's first class/identifier byte, the SOS's Se.
const SOF_MARKER: usize = 3;
const SOF_P: usize = 6;
const SOF_HEIGHT: usize = 7;
const SOF_WIDTH: usize = 9;
const DHT_TABLE: usize = 88;
const SOS_SE: usize = 165;

/// pydicom 3.0.2 `ds.pixel_array` of JPGExtended.dcm (decoded by
/// pylibjpeg-libjpeg): 1024 x 256 uint16.
const PYDICOM_SHA256: &str = "b1d76492f77a12c58fab49a831ade73785f46e9247833670cf8a405f3aa5228e";
const PYDICOM_MIN: u16 = 0;
const PYDICOM_MAX: u16 = 264;
const PYDICOM_SUM: u64 = 3_770_427; // mean 14.383037...
/// (row, column, pydicom's value): its maximum, the corners, the centre and
/// twelve pixels drawn at random among the non-zero ones.
const PYDICOM_PIXELS: [(usize, usize, u16); 16] = [
    (421, 143, 264),
    (0, 0, 1),
    (1023, 255, 1),
    (512, 128, 14),
    (56, 72, 1),
    (306, 180, 29),
    (855, 85, 1),
    (919, 202, 1),
    (701, 192, 1),
    (895, 214, 1),
    (795, 179, 1),
    (641, 102, 22),
    (229, 125, 137),
    (593, 140, 4),
    (968, 29, 1),
    (291, 42, 17),
];

/// The SHA-256 of marrow's samples (little-endian u16). They are not pydicom's:
/// pylibjpeg-libjpeg's IDCT rounds differently from libjpeg-turbo's, and 3612 of
/// the 262 144 samples differ by one (3516 lower, 96 higher; sum 3 767 007, mean
/// 14.369991). Pinned so that a change of decoder shows up.
const MARROW_SHA256: &str = "d30242775a414c01d616447854ebe3f2b20259822894bcd6891f879bcdcbf313";

fn fixture() -> Vec<u8> {
    std::fs::read(FIXTURE).expect("read the 12-bit JPEG fixture")
}

fn sha256_le(samples: &[u16]) -> String {
    let mut hasher = Sha256::new();
    for s in samples {
        hasher.update(s.to_le_bytes());
    }
    hex::encode(hasher.finalize())
}

#[test]
fn jpg_extended_decodes_within_one_of_pydicom() {
    let bytes = fixture();
    assert_eq!(bytes.len(), 6830);
    assert_eq!(precision(&bytes), Some(12));
    let (samples, width, height, components) = decode(&bytes).expect("decode JPGExtended");
    assert_eq!((width, height, components), (256, 1024, 1));
    assert_eq!(samples.len(), 256 * 1024);

    for &(row, col, expected) in &PYDICOM_PIXELS {
        let got = samples[row * width + col];
        assert!(
            got.abs_diff(expected) <= 1,
            "({row}, {col}): {got}, pydicom {expected}"
        );
    }
    assert_eq!(samples.iter().min(), Some(&PYDICOM_MIN));
    assert_eq!(samples.iter().max(), Some(&PYDICOM_MAX));
    let sum: u64 = samples.iter().map(|&s| u64::from(s)).sum();
    // At most one a sample, and in fact 3612 samples (1.4 %) differ.
    assert!(
        sum.abs_diff(PYDICOM_SUM) <= 3612,
        "sum {sum}, pydicom {PYDICOM_SUM}"
    );
    let mean = sum as f64 / samples.len() as f64;
    assert!((mean - 14.383_037).abs() < 0.02, "mean {mean}");
    let sha = sha256_le(&samples);
    assert_ne!(
        sha, PYDICOM_SHA256,
        "now identical to pydicom: update the notes"
    );
    assert_eq!(sha, MARROW_SHA256);
}

/// pydicom's JPEG-lossy.dcm carries the same codestream but for Se = 0 in the
/// scan header; pylibjpeg-libjpeg refuses it ("misplaced marker"), libjpeg warns
/// and decodes it as the sequential scan it is.
#[test]
fn a_sequential_scan_with_se_zero_decodes_the_same() {
    let good = fixture();
    let mut bad = good.clone();
    assert_eq!(bad[SOS_SE], 0x3F);
    bad[SOS_SE] = 0x00;
    assert_eq!(decode(&bad).unwrap(), decode(&good).unwrap());
}

#[test]
fn sof0_with_precision_12_decodes_like_sof1() {
    let good = fixture();
    let mut sof0 = good.clone();
    assert_eq!(sof0[SOF_MARKER], 0xC1);
    sof0[SOF_MARKER] = 0xC0;
    assert_eq!(precision(&sof0), Some(12));
    assert_eq!(decode(&sof0).unwrap(), decode(&good).unwrap());
}

#[test]
fn an_8_bit_frame_is_refused() {
    let mut bytes = fixture();
    assert_eq!(bytes[SOF_P], 12);
    bytes[SOF_P] = 8;
    assert_eq!(precision(&bytes), Some(8));
    let e = decode(&bytes).unwrap_err();
    assert!(e.contains("8-bit"), "{e}");
}

#[test]
fn truncated_streams_are_errors() {
    let bytes = fixture();
    // The entropy-coded data ends at 6827 (EOI at 6827..6829, padding at 6829).
    for n in (0..6827).step_by(7).chain([6826]) {
        assert!(decode(&bytes[..n]).is_err(), "{n} bytes decoded");
    }
    // Without the EOI and the padding, every MCU is still there.
    assert!(decode(&bytes[..6827]).is_ok());
}

#[test]
fn zero_sizes_are_errors() {
    for (offset, what) in [(SOF_HEIGHT, "height"), (SOF_WIDTH, "width")] {
        let mut bytes = fixture();
        bytes[offset] = 0;
        bytes[offset + 1] = 0;
        assert!(decode(&bytes).is_err(), "{what} 0 decoded");
    }
    assert!(decode(&[]).is_err());
    assert!(decode(&[0xFF, 0xD8, 0xFF, 0xD9]).is_err());
    assert!(decode(b"not a JPEG at all").is_err());
}

#[test]
fn bad_huffman_tables_are_errors() {
    let good = fixture();
    assert_eq!(&good[DHT_TABLE - 4..DHT_TABLE - 2], &[0xFF, 0xC4]);
    let counts = DHT_TABLE + 1..DHT_TABLE + 17;
    let total: usize = good[counts.clone()].iter().map(|&c| usize::from(c)).sum();
    assert!(total > 2);

    // All of the table's codes one bit long: more codes than the code space.
    let mut overfull = good.clone();
    overfull[counts.clone()].fill(0);
    overfull[DHT_TABLE + 1] = u8::try_from(total).unwrap();
    assert!(decode(&overfull).is_err());

    // Counts that promise more symbols than the segment holds.
    let mut too_many = good.clone();
    too_many[counts].fill(0xFF);
    assert!(decode(&too_many).is_err());

    // Table class 2 (only DC 0 and AC 1 exist), and identifier 5 (0 to 3).
    for byte in [0x20, 0x05] {
        let mut bad = good.clone();
        bad[DHT_TABLE] = byte;
        assert!(decode(&bad).is_err(), "DHT Tc/Th {byte:#04x} decoded");
    }

    // A scan that uses a table never defined.
    let mut missing = good.clone();
    let sos = good.windows(2).position(|w| w == [0xFF, 0xDA]).unwrap();
    // SOS: marker, length, Ns, then Cs and Td/Ta.
    missing[sos + 6] = 0x33;
    assert!(decode(&missing).is_err());
}

/// Mutated headers and data (a fixed pseudo-random sequence): errors or images,
/// never a panic, and any image within the bounds `decode` promises.
#[test]
fn mutated_streams_do_not_panic() {
    let good = fixture();
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..400 {
        let mut bytes = good.clone();
        for _ in 0..1 + next() % 4 {
            // Mostly in the headers (the first 170 bytes), sometimes anywhere.
            let span = if next() % 4 == 0 { bytes.len() } else { 170 };
            let i = (next() % span as u64) as usize;
            bytes[i] = next() as u8;
        }
        if let Ok((samples, width, height, components)) = decode(&bytes) {
            assert_eq!(samples.len(), width * height * components);
            assert!(samples.iter().all(|&s| s <= 4095));
        }
    }
}

/// Round trips through the same crate's 12-bit encoder: odd sizes (partial
/// blocks at the right and bottom edges), greyscale and colour. At quality
/// 100 the grey gradient comes back exact and the colour one within 3.
#[test]
fn encoded_12_bit_images_round_trip() {
    let (width, height) = (37, 29);
    let grey: Vec<i16> = (0..width * height)
        .map(|i| ((i % width) * 90 + (i / width) * 20) as i16)
        .collect();
    let jpeg = compress_12bit(&grey, width, height, 1, 100, Subsampling::S444).unwrap();
    assert_eq!(precision(&jpeg), Some(12));
    let (samples, w, h, c) = decode(&jpeg).unwrap();
    assert_eq!((w, h, c), (width, height, 1));
    let worst = grey
        .iter()
        .zip(&samples)
        .map(|(&a, &b)| (i32::from(a) - i32::from(b)).abs())
        .max()
        .unwrap();
    assert!(worst <= 2, "grey: off by {worst} of 4095");

    let rgb: Vec<i16> = (0..width * height)
        .flat_map(|i| {
            let (x, y) = ((i % width) as i16, (i / width) as i16);
            [x * 100, y * 120, 4095 - x * 50 - y * 40]
        })
        .collect();
    let jpeg = compress_12bit(&rgb, width, height, 3, 100, Subsampling::S444).unwrap();
    let (samples, w, h, c) = decode(&jpeg).unwrap();
    assert_eq!((w, h, c), (width, height, 3));
    let worst = rgb
        .iter()
        .zip(&samples)
        .map(|(&a, &b)| (i32::from(a) - i32::from(b)).abs())
        .max()
        .unwrap();
    assert!(worst <= 8, "colour: off by {worst} of 4095");
}
