//! JPEG-LS (transfer syntaxes 1.2.840.10008.1.2.4.80 and .81) in pure Rust,
//! which dicom-pixeldata cannot do (its JPEG-LS support needs the CharLS C++
//! library). Single-component images go through the `pure_jpegls` crate as
//! before; colour (several components, in one scan per component or
//! line- or sample-interleaved, HP colour transforms included) through
//! [`codec`], our decoder built on parts of `pure_jpegls`.

mod bits;
pub mod codec;
mod context;

use super::decode::ImageInfo;
use dicom_core::value::Value as DicomValue;
use dicom_dictionary_std::tags;
use dicom_object::{FileDicomObject, InMemDicomObject};

/// The compressed bytes of frame `frame` of encapsulated Pixel Data: all
/// fragments of a single-frame image, one fragment a frame when there are as
/// many fragments as frames, else the fragments the Basic Offset Table points
/// at.
pub fn frame_bytes(obj: &InMemDicomObject, frames: usize, frame: usize) -> Result<Vec<u8>, String> {
    let element = obj
        .get(tags::PIXEL_DATA)
        .ok_or("it has no Pixel Data (7FE0,0010)")?;
    let DicomValue::PixelSequence(seq) = element.value() else {
        return Err("the Pixel Data is not encapsulated (no fragments)".into());
    };
    let fragments = seq.fragments();
    let offsets = seq.offset_table();
    if fragments.is_empty() {
        return Err("the Pixel Data has no fragments".into());
    }
    if frames == 1 {
        return Ok(fragments.concat());
    }
    if fragments.len() == frames {
        return Ok(fragments[frame].to_vec());
    }
    if offsets.len() == frames {
        let start = u64::from(offsets[frame]);
        let end = offsets.get(frame + 1).map(|&o| u64::from(o));
        let mut position = 0u64;
        let mut out = Vec::new();
        for f in fragments {
            if position >= start && end.is_none_or(|e| position < e) {
                out.extend_from_slice(f);
            }
            // Each fragment is an item: 8 bytes of tag and length, then the bytes.
            position += 8 + f.len() as u64;
        }
        if out.is_empty() {
            return Err(format!(
                "the Basic Offset Table points at no fragment for frame {frame}"
            ));
        }
        return Ok(out);
    }
    Err(format!(
        "{} fragments for {frames} frames and no usable Basic Offset Table",
        fragments.len()
    ))
}

/// Decodes frame `frame` to samples of the image's Bits Allocated.
pub(super) fn decode_frame(
    obj: &FileDicomObject<InMemDicomObject>,
    info: &ImageInfo,
    frame: usize,
) -> Result<super::decode::Samples, String> {
    if info.samples_per_pixel != 1 {
        return decode_colour(obj, info, frame);
    }
    let bytes = frame_bytes(obj, info.frames, frame)?;
    let (samples, w, h) = ::jpegls::decode(&bytes, info.columns as u32, info.rows as u32)
        .map_err(|e| format!("JPEG-LS stream of frame {frame}: {e}"))?;
    if (w as usize, h as usize) != (info.columns, info.rows) {
        return Err(format!(
            "the JPEG-LS stream is {w}x{h} but the image is {}x{}",
            info.columns, info.rows
        ));
    }
    Ok(match info.bits_allocated {
        8 => super::decode::Samples::U8(samples.iter().map(|&v| v as u8).collect()),
        16 => super::decode::Samples::U16(samples),
        other => return Err(format!("Bits Allocated {other} with JPEG-LS")),
    })
}

/// Decodes frame `frame` of a JPEG-LS image with several samples per pixel,
/// interleaved by pixel (planar configuration 0) whatever the scans' layout.
fn decode_colour(
    obj: &FileDicomObject<InMemDicomObject>,
    info: &ImageInfo,
    frame: usize,
) -> Result<super::decode::Samples, String> {
    let spp = usize::from(info.samples_per_pixel);
    let context =
        |e: String| format!("JPEG-LS stream ({spp} samples per pixel) of frame {frame}: {e}");
    let bytes = frame_bytes(obj, info.frames, frame).map_err(context)?;
    let image = codec::decode(&bytes, info.columns, info.rows, spp).map_err(context)?;
    Ok(match info.bits_allocated {
        8 if image.precision <= 8 => {
            super::decode::Samples::U8(image.samples.iter().map(|&v| v as u8).collect())
        }
        16 => super::decode::Samples::U16(image.samples),
        other => {
            return Err(context(format!(
                "{}-bit samples in Bits Allocated {other}",
                image.precision
            )));
        }
    })
}
