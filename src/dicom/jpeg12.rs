//! 12-bit lossy JPEG: JPEG Extended, process 2 & 4 (transfer syntax
//! 1.2.840.10008.1.2.4.51) with a sample precision of 12, which the
//! `jpeg-decoder` crate behind dicom-pixeldata refuses. Decoded by the pure-Rust
//! `libjpeg-turbo-rs` (no C, no build script), whose 12-bit path follows
//! libjpeg-turbo: sequential Huffman DCT (SOF1, and SOF0 carrying P = 12), any
//! sampling factors, restart intervals, 8- and 16-bit quantisation tables.
//!
//! A sequential frame is decoded whatever its scan header says of the spectral
//! selection (Ss, Se): some encoders write Se = 0 for all 64 coefficients
//! (pydicom's JPEG-lossy.dcm), which libjpeg only warns about.

use libjpeg_turbo_rs::common::types::DecodeLimits;
use libjpeg_turbo_rs::precision::decompress_12bit_with_limits;

/// The most memory a decode may plan for (component planes plus the result, two
/// bytes a sample): an 8192 x 8192 colour image needs about 0.8 GiB.
const MAX_DECODE_BYTES: u64 = 2 << 30;

/// The sample precision P of the first frame header (SOF0 to SOF15) of the JPEG
/// codestream `bytes`: 8 or 12 for DCT frames, 2 to 16 for lossless ones. `None`
/// when `bytes` is not a JPEG codestream or no frame header comes before the
/// first scan.
// `pub` (not only `pub(super)`) so that tests/dicom_jpeg12.rs reaches it;
// dicom::decode calls it to route TS .51 frames of precision 12 here.
pub fn precision(bytes: &[u8]) -> Option<u8> {
    if bytes.get(..2)? != [0xFF, 0xD8] {
        return None;
    }
    let mut i = 2;
    loop {
        // Markers may be preceded by any number of 0xFF fill bytes.
        if *bytes.get(i)? != 0xFF {
            return None;
        }
        while *bytes.get(i)? == 0xFF {
            i += 1;
        }
        let marker = bytes[i];
        i += 1;
        match marker {
            // Stand-alone markers: TEM, RSTn.
            0x01 | 0xD0..=0xD7 => continue,
            // SOI again, EOI, SOS: no frame header before the data.
            0xD8..=0xDA => return None,
            _ => {}
        }
        let length = usize::from(u16::from_be_bytes([*bytes.get(i)?, *bytes.get(i + 1)?]));
        if length < 2 {
            return None;
        }
        // SOFn: 0xC0..=0xCF except DHT (C4), JPG (C8) and DAC (CC).
        if (0xC0..=0xCF).contains(&marker) && !matches!(marker, 0xC4 | 0xC8 | 0xCC) {
            return if length >= 3 {
                bytes.get(i + 2).copied()
            } else {
                None
            };
        }
        i += length;
    }
}

/// Decodes the 12-bit DCT JPEG codestream `bytes` (one frame of TS .51) to
/// `(samples, width, height, components)`: `height` rows of `width` pixels,
/// `components` interleaved samples a pixel, each 0..=4095. One component is
/// the stored greyscale. Three are converted as libjpeg does by default:
/// YCbCr to RGB (unless the component identifiers say 'R', 'G', 'B' or an
/// Adobe marker says RGB), subsampled chroma upsampled.
///
/// Every malformed stream (truncated entropy-coded data included) is an `Err`;
/// so is a frame of any precision but 12, and a progressive, arithmetic or
/// lossless one.
pub fn decode(bytes: &[u8]) -> Result<(Vec<u16>, usize, usize, usize), String> {
    match precision(bytes) {
        Some(12) => {}
        Some(p) => return Err(format!("the JPEG frame has {p}-bit samples, not 12")),
        None => return Err("not a JPEG codestream with a frame header".into()),
    }
    let limits = DecodeLimits {
        max_memory: Some(MAX_DECODE_BYTES),
        ..DecodeLimits::default()
    };
    // The decoder checks its input and did not panic on truncated or mutated
    // streams; a panic would still be its bug, not a reason to end marrow.
    let image = std::panic::catch_unwind(|| decompress_12bit_with_limits(bytes, &limits))
        .map_err(|_| "the 12-bit JPEG decoder failed (panicked) on this stream".to_string())?
        .map_err(|e| format!("12-bit JPEG: {e}"))?;
    let (width, height, components) = (image.width, image.height, image.num_components);
    if width == 0 || height == 0 {
        // Height 0 in the frame header defers it to a DNL marker, which DICOM
        // does not use; nothing was decoded.
        return Err(format!("12-bit JPEG: the frame is {width} x {height}"));
    }
    if components == 0 || image.data.len() != width * height * components {
        return Err(format!(
            "12-bit JPEG: {} samples for {width} x {height} x {components}",
            image.data.len()
        ));
    }
    let samples = image
        .data
        .iter()
        .map(|&v| u16::try_from(v).ok().filter(|&v| v <= 4095))
        .collect::<Option<Vec<u16>>>()
        .ok_or("12-bit JPEG: a decoded sample is outside 0..=4095")?;
    Ok((samples, width, height, components))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SOI, an APP0 to skip, then a frame header of precision `p`.
    fn header(sof: u8, p: u8) -> Vec<u8> {
        let mut b = vec![0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x04, 0xAA, 0xBB];
        b.extend_from_slice(&[0xFF, 0xFF, sof, 0x00, 0x0B, p, 0x00, 0x08, 0x00, 0x08]);
        b.extend_from_slice(&[0x01, 0x01, 0x11, 0x00]);
        b
    }

    #[test]
    fn precision_reads_the_frame_header_after_other_segments() {
        assert_eq!(precision(&header(0xC1, 12)), Some(12));
        assert_eq!(precision(&header(0xC0, 8)), Some(8));
        assert_eq!(precision(&header(0xC0, 12)), Some(12));
        assert_eq!(precision(&header(0xC3, 16)), Some(16));
    }

    #[test]
    fn precision_is_none_without_a_frame_header() {
        assert_eq!(precision(&[]), None);
        assert_eq!(precision(&[0xFF]), None);
        assert_eq!(precision(&[0xFF, 0xD8]), None);
        assert_eq!(precision(b"not a jpeg"), None);
        // DHT (C4) is not a frame header; SOS comes before any.
        let b = [0xFF, 0xD8, 0xFF, 0xC4, 0x00, 0x02, 0xFF, 0xDA, 0x00, 0x02];
        assert_eq!(precision(&b), None);
        // A segment length running past the end, and one below 2.
        assert_eq!(precision(&[0xFF, 0xD8, 0xFF, 0xE0, 0x10, 0x00]), None);
        assert_eq!(precision(&[0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x01]), None);
        // Every prefix of a good header: no panic, and P only once it is there.
        let full = header(0xC1, 12);
        for n in 0..full.len() {
            let p = precision(&full[..n]);
            assert!(p.is_none() || (p == Some(12) && n > 13), "{n}: {p:?}");
        }
    }

    #[test]
    fn decode_refuses_other_precisions_before_decoding() {
        let e = decode(&header(0xC0, 8)).unwrap_err();
        assert!(e.contains("8-bit"), "{e}");
        assert!(decode(&[]).is_err());
        // Header only: no tables, no scan.
        assert!(decode(&header(0xC1, 12)).is_err());
    }
}
