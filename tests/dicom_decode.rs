//! Decoding generated DICOM files to display pixels (`marrow::dicom::decode`)
//! and `marrow view` through a pipe.

use assert_cmd::Command;
use dicom_core::value::PixelFragmentSequence;
use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_encoding::transfer_syntax::TransferSyntaxIndex;
use dicom_object::{InMemDicomObject, meta::FileMetaTableBuilder};
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use marrow::dicom::decode::{self, Layout, Pixels, Rendered};
use std::path::{Path, PathBuf};

const EXPLICIT_LE: &str = "1.2.840.10008.1.2.1";
const IMPLICIT_LE: &str = "1.2.840.10008.1.2";
const EXPLICIT_BE: &str = "1.2.840.10008.1.2.2";
const RLE: &str = "1.2.840.10008.1.2.5";
const JPEG_LS: &str = "1.2.840.10008.1.2.4.80";

/// A small image under construction.
struct Img {
    obj: InMemDicomObject,
}

impl Img {
    fn new(w: u16, h: u16, bits: u16, photometric: &str) -> Img {
        let mut img = Img {
            obj: InMemDicomObject::new_empty(),
        };
        img.text(tags::SOP_CLASS_UID, VR::UI, "1.2.840.10008.5.1.4.1.1.7")
            .text(tags::SOP_INSTANCE_UID, VR::UI, "2.25.1234")
            .text(tags::MODALITY, VR::CS, "OT")
            .text(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, photometric)
            .us(tags::SAMPLES_PER_PIXEL, 1)
            .us(tags::ROWS, h)
            .us(tags::COLUMNS, w)
            .us(tags::BITS_ALLOCATED, bits)
            .us(tags::BITS_STORED, bits)
            .us(tags::HIGH_BIT, bits - 1)
            .us(tags::PIXEL_REPRESENTATION, 0);
        img
    }

    fn text(&mut self, tag: Tag, vr: VR, v: &str) -> &mut Img {
        self.obj
            .put(DataElement::new(tag, vr, PrimitiveValue::from(v)));
        self
    }

    fn multi(&mut self, tag: Tag, vr: VR, values: &[&str]) -> &mut Img {
        let v: Vec<String> = values.iter().map(|s| s.to_string()).collect();
        self.obj
            .put(DataElement::new(tag, vr, PrimitiveValue::Strs(v.into())));
        self
    }

    fn us(&mut self, tag: Tag, v: u16) -> &mut Img {
        self.obj
            .put(DataElement::new(tag, VR::US, PrimitiveValue::from(v)));
        self
    }

    fn pixels8(&mut self, data: Vec<u8>) -> &mut Img {
        self.obj.put(DataElement::new(
            tags::PIXEL_DATA,
            VR::OB,
            PrimitiveValue::U8(data.into()),
        ));
        self
    }

    fn pixels16(&mut self, data: Vec<u16>) -> &mut Img {
        self.obj.put(DataElement::new(
            tags::PIXEL_DATA,
            VR::OW,
            PrimitiveValue::U16(data.into()),
        ));
        self
    }

    fn fragments(&mut self, fragments: Vec<Vec<u8>>) -> &mut Img {
        let fragments: Vec<Vec<u8>> = fragments
            .into_iter()
            .map(|mut f| {
                if f.len() % 2 == 1 {
                    f.push(0);
                }
                f
            })
            .collect();
        self.obj.put(DataElement::new(
            tags::PIXEL_DATA,
            VR::OB,
            PixelFragmentSequence::new(vec![], fragments),
        ));
        self
    }

    fn write(&self, dir: &Path, name: &str, ts: &str) -> PathBuf {
        let path = dir.join(name);
        self.obj
            .clone()
            .with_meta(FileMetaTableBuilder::new().transfer_syntax(ts))
            .expect("meta")
            .write_to_file(&path)
            .expect("write");
        path
    }

    /// A bare data set: no preamble, no DICM, no file meta group.
    fn write_bare(&self, dir: &Path, name: &str, ts: &str) -> PathBuf {
        let path = dir.join(name);
        let ts = TransferSyntaxRegistry.get(ts).expect("ts");
        let mut out = Vec::new();
        self.obj.write_dataset_with_ts(&mut out, ts).expect("write");
        std::fs::write(&path, out).expect("write");
        path
    }
}

fn gray(r: &Rendered) -> &[u8] {
    match &r.pixels {
        Pixels::Gray(g) => g,
        Pixels::Rgb(_) => panic!("expected grayscale"),
    }
}

fn render(path: &Path, frame: usize, voi: usize) -> Rendered {
    let image = decode::load(path).unwrap_or_else(|e| panic!("load: {e}"));
    decode::render(&image, frame, voi, 0, 0).unwrap_or_else(|e| panic!("render: {e}"))
}

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

#[test]
fn eight_bit_monochrome2_without_window_gets_the_automatic_window() {
    let dir = tmp();
    let path = Img::new(4, 1, 8, "MONOCHROME2")
        .pixels8(vec![0, 50, 100, 200])
        .write(dir.path(), "a.dcm", EXPLICIT_LE);
    let r = render(&path, 0, 0);
    assert_eq!((r.width, r.height), (4, 1));
    // LINEAR_EXACT from 0 to 200.
    assert_eq!(gray(&r), &[0, 64, 128, 255]);
    assert!(r.voi.starts_with("automatic window"), "{}", r.voi);
}

fn windowed(photometric: &str, dir: &Path, name: &str) -> PathBuf {
    Img::new(4, 1, 16, photometric)
        .multi(tags::WINDOW_CENTER, VR::DS, &["100"])
        .multi(tags::WINDOW_WIDTH, VR::DS, &["101"])
        .pixels16(vec![0, 49, 100, 4000])
        .write(dir, name, EXPLICIT_LE)
}

#[test]
fn sixteen_bit_window_maps_below_to_black_and_above_to_white() {
    let dir = tmp();
    let r = render(&windowed("MONOCHROME2", dir.path(), "w.dcm"), 0, 0);
    // LINEAR, C 100 W 101: black up to 49.5, white above 149.5.
    assert_eq!(gray(&r), &[0, 0, 129, 255]);
    assert_eq!(r.voi, "window 0 of 1: C 100 W 101 LINEAR");
}

#[test]
fn monochrome1_is_inverted() {
    let dir = tmp();
    let r = render(&windowed("MONOCHROME1", dir.path(), "m1.dcm"), 0, 0);
    assert_eq!(gray(&r), &[255, 255, 126, 0]);
}

fn ct(dir: &Path) -> PathBuf {
    // Signed 16-bit stored values; HU = stored - 1024.
    let stored: Vec<i16> = vec![-2000, 0, 1064, 3024];
    Img::new(4, 1, 16, "MONOCHROME2")
        .text(tags::MODALITY, VR::CS, "CT")
        .us(tags::PIXEL_REPRESENTATION, 1)
        .multi(tags::RESCALE_INTERCEPT, VR::DS, &["-1024"])
        .multi(tags::RESCALE_SLOPE, VR::DS, &["1"])
        .multi(tags::WINDOW_CENTER, VR::DS, &["40", "300"])
        .multi(tags::WINDOW_WIDTH, VR::DS, &["400", "1500"])
        .pixels16(stored.iter().map(|&v| v as u16).collect())
        .write(dir, "ct.dcm", EXPLICIT_LE)
}

#[test]
fn signed_ct_with_rescale_and_two_windows() {
    let dir = tmp();
    let path = ct(dir.path());
    // Window 0: C 40 W 400 → black at -160 HU and below, white above 239 HU.
    let r = render(&path, 0, 0);
    assert_eq!(gray(&r), &[0, 0, 128, 255]);
    // Window 1: C 300 W 1500; 40 HU is ((40 - 299.5) / 1499 + 0.5) * 255.
    let r = render(&path, 0, 1);
    assert_eq!(gray(&r), &[0, 0, 83, 255]);
    assert!(r.voi.starts_with("window 1 of 2"), "{}", r.voi);
    let image = decode::load(&path).unwrap();
    let e = decode::render(&image, 0, 2, 0, 0).unwrap_err();
    assert!(e.to_string().contains("VOI preset 2"), "{e}");
    assert!(e.to_string().contains("ct.dcm"), "{e}");
}

#[test]
fn rgb_planar_configuration_1_is_interleaved() {
    let dir = tmp();
    let path = Img::new(2, 1, 8, "RGB")
        .us(tags::SAMPLES_PER_PIXEL, 3)
        .us(tags::PLANAR_CONFIGURATION, 1)
        .pixels8(vec![255, 0, 0, 255, 10, 20])
        .write(dir.path(), "rgb.dcm", EXPLICIT_LE);
    let r = render(&path, 0, 0);
    assert_eq!(r.pixels, Pixels::Rgb(vec![255, 0, 10, 0, 255, 20]));
}

#[test]
fn ybr_full_is_converted_to_rgb() {
    let dir = tmp();
    let path = Img::new(1, 1, 8, "YBR_FULL")
        .us(tags::SAMPLES_PER_PIXEL, 3)
        .us(tags::PLANAR_CONFIGURATION, 0)
        .pixels8(vec![128, 128, 128, 0])
        .write(dir.path(), "ybr.dcm", EXPLICIT_LE);
    let r = render(&path, 0, 0);
    assert_eq!(r.pixels, Pixels::Rgb(vec![128, 128, 128]));
}

fn three_frames(dir: &Path) -> PathBuf {
    let mut data = Vec::new();
    for f in 0..3u8 {
        data.extend([f * 10, f * 10 + 100]);
    }
    Img::new(2, 1, 8, "MONOCHROME2")
        .text(tags::NUMBER_OF_FRAMES, VR::IS, "3")
        .multi(tags::WINDOW_CENTER, VR::DS, &["128"])
        .multi(tags::WINDOW_WIDTH, VR::DS, &["256"])
        .pixels8(data)
        .write(dir, "frames.dcm", EXPLICIT_LE)
}

#[test]
fn frames_are_selected_and_an_index_out_of_range_names_the_count() {
    let dir = tmp();
    let path = three_frames(dir.path());
    let f0 = render(&path, 0, 0);
    let f2 = render(&path, 2, 0);
    assert_eq!(gray(&f0), &[0, 100]);
    assert_eq!(gray(&f2), &[20, 120]);
    let image = decode::load(&path).unwrap();
    assert_eq!(image.info.frames, 3);
    let e = decode::render(&image, 3, 0, 0, 0).unwrap_err().to_string();
    assert!(e.contains("frame 3 is out of range"), "{e}");
    assert!(e.contains("3 frames"), "{e}");
    assert!(e.contains("frames.dcm"), "{e}");
}

#[test]
fn implicit_vr_and_big_endian_files_decode_like_explicit_little_endian() {
    let dir = tmp();
    let expected = render(&windowed("MONOCHROME2", dir.path(), "le.dcm"), 0, 0);
    let mut img = Img::new(4, 1, 16, "MONOCHROME2");
    img.multi(tags::WINDOW_CENTER, VR::DS, &["100"])
        .multi(tags::WINDOW_WIDTH, VR::DS, &["101"])
        .pixels16(vec![0, 49, 100, 4000]);
    let implicit = img.write(dir.path(), "implicit.dcm", IMPLICIT_LE);
    assert_eq!(render(&implicit, 0, 0), expected);
    let big = img.write(dir.path(), "big.dcm", EXPLICIT_BE);
    assert_eq!(render(&big, 0, 0), expected);
}

#[test]
fn files_without_preamble_or_without_meta_are_read() {
    let dir = tmp();
    let mut img = Img::new(4, 1, 16, "MONOCHROME2");
    img.multi(tags::WINDOW_CENTER, VR::DS, &["100"])
        .multi(tags::WINDOW_WIDTH, VR::DS, &["101"])
        .pixels16(vec![0, 49, 100, 4000]);
    let expected = [0, 0, 129, 255];

    // "DICM" and the meta group, but no 128-byte preamble.
    let full = img.write(dir.path(), "full.dcm", EXPLICIT_LE);
    let bytes = std::fs::read(&full).unwrap();
    let no_preamble = dir.path().join("no-preamble.dcm");
    std::fs::write(&no_preamble, &bytes[128..]).unwrap();
    let image = decode::load(&no_preamble).unwrap();
    assert_eq!(image.info.layout, Layout::NoPreamble);
    assert_eq!(gray(&render(&no_preamble, 0, 0)), &expected);

    for (name, ts) in [
        ("bare-implicit", IMPLICIT_LE),
        ("bare-explicit", EXPLICIT_LE),
    ] {
        let path = img.write_bare(dir.path(), name, ts);
        let image = decode::load(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(image.info.layout, Layout::NoMeta, "{name}");
        assert_eq!(image.info.transfer_syntax, ts, "{name}");
        assert_eq!(gray(&render(&path, 0, 0)), &expected, "{name}");
    }
}

#[test]
fn rle_encoded_by_hand_decodes() {
    let dir = tmp();
    // One segment for 8-bit grayscale: a 64-byte header, then a PackBits
    // literal run of 4 bytes.
    let mut fragment = Vec::new();
    fragment.extend(1u32.to_le_bytes());
    fragment.extend(64u32.to_le_bytes());
    fragment.extend([0u8; 56]);
    fragment.extend([3u8, 0, 50, 100, 200]);
    let path = Img::new(4, 1, 8, "MONOCHROME2")
        .fragments(vec![fragment])
        .write(dir.path(), "rle.dcm", RLE);
    let r = render(&path, 0, 0);
    assert_eq!(gray(&r), &[0, 64, 128, 255]);
}

#[test]
fn voi_lut_sequence_is_a_preset() {
    let dir = tmp();
    let mut item = InMemDicomObject::new_empty();
    item.put(DataElement::new(
        tags::LUT_DESCRIPTOR,
        VR::US,
        PrimitiveValue::U16(vec![4u16, 0, 8].into()),
    ));
    item.put(DataElement::new(
        tags::LUT_DATA,
        VR::US,
        PrimitiveValue::U16(vec![0u16, 100, 200, 255].into()),
    ));
    let mut img = Img::new(4, 1, 8, "MONOCHROME2");
    img.pixels8(vec![0, 1, 2, 3]);
    img.obj.put(DataElement::new(
        tags::VOILUT_SEQUENCE,
        VR::SQ,
        dicom_core::value::DataSetSequence::from(vec![item]),
    ));
    let path = img.write(dir.path(), "lut.dcm", EXPLICIT_LE);
    let r = render(&path, 0, 0);
    assert_eq!(gray(&r), &[0, 100, 200, 255]);
    assert!(r.voi.starts_with("VOI LUT 0 of 1"), "{}", r.voi);
}

#[test]
fn jpeg_ls_decodes_with_the_pure_rust_codec() {
    let dir = tmp();
    let (w, h) = (8u16, 8u16);
    let data: Vec<u16> = (0..64u16).map(|i| (i * 61) % 4096).collect();
    let mut stream = Vec::new();
    jpegls::encode(&data, u32::from(w), u32::from(h), &mut stream).expect("encode");
    let mut native = Img::new(w, h, 16, "MONOCHROME2");
    native.us(tags::BITS_STORED, 12).us(tags::HIGH_BIT, 11);
    native.multi(tags::WINDOW_CENTER, VR::DS, &["2000"]).multi(
        tags::WINDOW_WIDTH,
        VR::DS,
        &["3000"],
    );
    let mut ls = Img {
        obj: native.obj.clone(),
    };
    let native_path = native
        .pixels16(data)
        .write(dir.path(), "native.dcm", EXPLICIT_LE);
    let ls_path = ls
        .fragments(vec![stream])
        .write(dir.path(), "ls.dcm", JPEG_LS);
    let expected = render(&native_path, 0, 0);
    assert_eq!(render(&ls_path, 0, 0), expected);
    // Something other than a constant image.
    assert!(gray(&expected).contains(&0) && gray(&expected).contains(&255));
}

#[test]
fn jpeg_ls_colour_is_refused_by_name() {
    let dir = tmp();
    let path = Img::new(2, 1, 8, "RGB")
        .us(tags::SAMPLES_PER_PIXEL, 3)
        .fragments(vec![vec![0xFF, 0xD8, 0xFF, 0xD9]])
        .write(dir.path(), "ls-rgb.dcm", JPEG_LS);
    let image = decode::load(&path).unwrap();
    let e = decode::render(&image, 0, 0, 0, 0).unwrap_err().to_string();
    assert!(e.contains("ls-rgb.dcm"), "{e}");
    assert!(
        e.contains("transfer syntax 1.2.840.10008.1.2.4.80 (JPEG-LS Lossless"),
        "{e}"
    );
    assert!(e.contains("3 samples per pixel"), "{e}");
}

#[test]
fn an_undecodable_transfer_syntax_and_a_non_dicom_file_are_named() {
    let dir = tmp();
    // JPEG XL: known to the registry, no decoder built in.
    let path = Img::new(2, 1, 8, "MONOCHROME2")
        .fragments(vec![vec![0xFF, 0x0A, 0, 0]])
        .write(dir.path(), "jxl.dcm", "1.2.840.10008.1.2.4.110");
    let image = decode::load(&path).unwrap();
    let e = decode::render(&image, 0, 0, 0, 0).unwrap_err().to_string();
    assert!(e.contains("jxl.dcm"), "{e}");
    assert!(
        e.contains("transfer syntax 1.2.840.10008.1.2.4.110") && e.contains("cannot be decoded"),
        "{e}"
    );

    let junk = dir.path().join("junk.dcm");
    std::fs::write(&junk, b"this is not a DICOM file at all, just some text").unwrap();
    let e = decode::load(&junk).unwrap_err().to_string();
    assert!(e.contains("junk.dcm"), "{e}");
    assert!(e.contains("not a DICOM file"), "{e}");
}

#[test]
fn render_downscales_to_the_limits() {
    let dir = tmp();
    let path = Img::new(8, 4, 8, "MONOCHROME2")
        .pixels8((0..32).collect())
        .write(dir.path(), "big.dcm", EXPLICIT_LE);
    let image = decode::load(&path).unwrap();
    let r = decode::render(&image, 0, 0, 4, 4).unwrap();
    assert_eq!((r.width, r.height), (4, 2));
    assert_eq!(gray(&r).len(), 8);
}

#[test]
fn marrow_view_through_a_pipe_prints_the_description_without_escape_codes() {
    let dir = tmp();
    let path = ct(dir.path());
    let out = Command::cargo_bin("marrow")
        .unwrap()
        .current_dir(dir.path())
        .args([
            "view".as_ref(),
            path.as_os_str(),
            "--window".as_ref(),
            "1".as_ref(),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(!stdout.contains('\u{1b}'), "{stdout:?}");
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    for part in [
        "ct.dcm",
        "4x1",
        "CT",
        "MONOCHROME2",
        "1.2.840.10008.1.2.1",
        "1 frame",
        "window 1 of 2: C 300 W 1500",
    ] {
        assert!(stdout.contains(part), "{part} missing from {stdout}");
    }
    // No log folder or database appears beside the file.
    assert!(!dir.path().join("marrow.db").exists());

    let out = Command::cargo_bin("marrow")
        .unwrap()
        .current_dir(dir.path())
        .args([
            "view".as_ref(),
            path.as_os_str(),
            "--frame".as_ref(),
            "4".as_ref(),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("frame 4 is out of range: the file has 1 frame"),
        "{stderr}"
    );
}

#[test]
fn rle_32_bit_is_decoded_by_marrow_itself() {
    let dir = tmp();
    let values: [u32; 4] = [0, 100_000, 200_000, 0x0100_0000];
    // Four segments (most significant byte first), each a PackBits literal
    // run of the 4 bytes at that significance.
    let mut header = Vec::new();
    header.extend(4u32.to_le_bytes());
    let mut body = Vec::new();
    for s in 0..4u32 {
        header.extend((64 + body.len() as u32).to_le_bytes());
        body.push(3u8);
        body.extend(values.iter().map(|v| (v >> (8 * (3 - s))) as u8));
    }
    header.resize(64, 0);
    header.extend(body);
    let path = Img::new(4, 1, 32, "MONOCHROME2")
        .multi(tags::WINDOW_CENTER, VR::DS, &["100000"])
        .multi(tags::WINDOW_WIDTH, VR::DS, &["100001"])
        .fragments(vec![header])
        .write(dir.path(), "rle32.dcm", RLE);
    let r = render(&path, 0, 0);
    // LINEAR, C 100000 W 100001: 0 → black, 100000 → mid-gray, the rest white.
    assert_eq!(gray(&r), &[0, 128, 255, 255]);
}

#[test]
fn twelve_bit_jpeg_extended_is_refused_precisely() {
    let dir = tmp();
    // SOI, SOF1 with a sample precision of 12, EOI: enough for the decoder to refuse it.
    let stream = vec![
        0xFF, 0xD8, 0xFF, 0xC1, 0x00, 0x0B, 12, 0x00, 0x01, 0x00, 0x01, 0x01, 0x01, 0x11, 0x00,
        0xFF, 0xD9,
    ];
    let path = Img::new(1, 1, 16, "MONOCHROME2")
        .us(tags::BITS_STORED, 12)
        .us(tags::HIGH_BIT, 11)
        .fragments(vec![stream])
        .write(dir.path(), "jpeg12.dcm", "1.2.840.10008.1.2.4.51");
    let image = decode::load(&path).unwrap();
    let e = decode::render(&image, 0, 0, 0, 0).unwrap_err().to_string();
    assert!(e.contains("jpeg12.dcm"), "{e}");
    assert!(
        e.contains("transfer syntax 1.2.840.10008.1.2.4.51") && e.contains("cannot be decoded"),
        "{e}"
    );
    assert!(e.contains("12-bit JPEG"), "{e}");
}

#[test]
fn jpeg_baseline_round_trips_through_the_pure_rust_codec() {
    use dicom_pixeldata::Transcode;
    let dir = tmp();
    let data: Vec<u8> = (0..256u32).map(|i| (i % 16 * 16) as u8).collect();
    let mut img = Img::new(16, 16, 8, "MONOCHROME2");
    img.multi(tags::WINDOW_CENTER, VR::DS, &["128"])
        .multi(tags::WINDOW_WIDTH, VR::DS, &["256"])
        .pixels8(data.clone());
    let mut file = img
        .obj
        .clone()
        .with_meta(FileMetaTableBuilder::new().transfer_syntax(EXPLICIT_LE))
        .unwrap();
    file.transcode(
        TransferSyntaxRegistry
            .get("1.2.840.10008.1.2.4.50")
            .unwrap(),
    )
    .expect("encode JPEG baseline");
    let path = dir.path().join("jpeg.dcm");
    file.write_to_file(&path).unwrap();
    let image = decode::load(&path).unwrap();
    assert_eq!(image.info.transfer_syntax, "1.2.840.10008.1.2.4.50");
    let r = decode::render(&image, 0, 0, 0, 0).unwrap();
    // Lossy: within a few levels of the original.
    for (got, want) in gray(&r).iter().zip(&data) {
        assert!(got.abs_diff(*want) <= 8, "{got} vs {want}");
    }
}

/// Encodes a grayscale image as a lossless J2K codestream (5 decomposition
/// levels) with the pure-Rust openjp2 encoder.
fn j2k_encode(data: &[u16], w: u32, h: u32, precision: u32, path: &Path) -> Vec<u8> {
    use openjp2::openjpeg::opj_set_default_encoder_parameters;
    use openjp2::{Codec, OPJ_CLRSPC_GRAY, OPJ_CODEC_J2K, Stream, opj_cparameters_t};
    let parm = openjp2::opj_image_comptparm {
        dx: 1,
        dy: 1,
        w,
        h,
        x0: 0,
        y0: 0,
        prec: precision,
        bpp: precision,
        sgnd: 0,
    };
    let mut image = openjp2::opj_image::create(&[parm], OPJ_CLRSPC_GRAY).expect("image");
    image.x1 = w;
    image.y1 = h;
    let comp = image
        .comps_data_mut_iter()
        .expect("components")
        .next()
        .expect("one component");
    for (dst, &src) in comp.iter_mut().zip(data) {
        *dst = i32::from(src);
    }
    let mut params = opj_cparameters_t::default();
    // SAFETY: a valid, exclusively borrowed parameter struct.
    unsafe { opj_set_default_encoder_parameters(&mut params) };
    params.tcp_numlayers = 1;
    params.tcp_rates[0] = 0.0;
    params.cp_disto_alloc = 1;
    let mut codec = Codec::new_encoder(OPJ_CODEC_J2K).expect("encoder");
    assert_eq!(codec.setup_encoder(&mut params, &mut image), 1, "setup");
    {
        let mut stream = Stream::new_file(path, 1 << 16, false).expect("stream");
        assert_eq!(codec.start_compress(&mut image, &mut stream), 1, "start");
        assert_eq!(codec.encode(&mut stream), 1, "encode");
        assert_eq!(codec.end_compress(&mut stream), 1, "end");
        stream.flush().expect("flush");
    }
    std::fs::read(path).expect("read codestream")
}

#[test]
fn jpeg_2000_decodes_in_full_and_at_reduced_resolution_for_previews() {
    let dir = tmp();
    let (w, h) = (64u16, 64u16);
    let data: Vec<u16> = (0..u32::from(w) * u32::from(h))
        .map(|i| ((i % 64) * 64 + i / 64) as u16)
        .collect();
    let stream = j2k_encode(&data, w.into(), h.into(), 12, &dir.path().join("a.j2k"));
    let mut native = Img::new(w, h, 16, "MONOCHROME2");
    native.us(tags::BITS_STORED, 12).us(tags::HIGH_BIT, 11);
    let mut j2k = Img {
        obj: native.obj.clone(),
    };
    let native_path = native
        .pixels16(data)
        .write(dir.path(), "native.dcm", EXPLICIT_LE);
    let j2k_path =
        j2k.fragments(vec![stream])
            .write(dir.path(), "j2k.dcm", "1.2.840.10008.1.2.4.90");
    // Lossless at full size: the same pixels as the native file.
    let full = render(&j2k_path, 0, 0);
    assert_eq!(full, render(&native_path, 0, 0));
    assert_eq!((full.decoded_width, full.decoded_height), (64, 64));
    // A 16x16 preview decodes a quarter-size image and needs no downscale.
    let image = decode::load(&j2k_path).unwrap();
    let small = decode::render(&image, 0, 0, 16, 16).unwrap();
    assert_eq!((small.width, small.height), (16, 16));
    assert_eq!((small.decoded_width, small.decoded_height), (16, 16));
    let native_small = decode::render(&decode::load(&native_path).unwrap(), 0, 0, 16, 16).unwrap();
    assert_eq!(
        (native_small.decoded_width, native_small.decoded_height),
        (64, 64)
    );
    // The wavelet's low-pass image is close to the box-filtered one (the
    // automatic window of each is computed on its own samples).
    let diff: u32 = gray(&small)
        .iter()
        .zip(gray(&native_small))
        .map(|(a, b)| u32::from(a.abs_diff(*b)))
        .max()
        .unwrap();
    assert!(diff <= 40, "max difference {diff}");
}

#[test]
fn a_chosen_window_overrides_the_files_presets() {
    let dir = tmp();
    let path = ct(dir.path());
    let image = decode::load(&path).unwrap();
    // Lung window C -600 W 1500 (LINEAR): -1024 HU is ((-1024 + 600.5) / 1499 + 0.5) * 255.
    let choice = decode::VoiChoice::Window {
        center: -600.0,
        width: 1500.0,
    };
    let r = decode::render_with(&image, 0, choice, 0, 0).unwrap();
    assert_eq!(gray(&r), &[0, 55, 236, 255]);
    assert!(r.voi.starts_with("chosen window"), "{}", r.voi);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_marrow"))
        .args(["view", "--info", "--window", "-600,1500"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("chosen window C -600 W 1500"), "{text}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_marrow"))
        .args(["view", "--info", "--window", "40,0"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least 1"));
}

/// A 640x480 radiograph-like frame of 12 bits stored in 16, with garbage in the
/// unused high bits (which must be masked off).
fn large_frame() -> Vec<u16> {
    let (w, h) = (640usize, 480usize);
    (0..w * h)
        .map(|i| {
            let (x, y) = (i % w, i / w);
            let v = (x * 5 + y * 3 + (i * 7919) % 97) % 4096;
            v as u16 | 0xA000
        })
        .collect()
}

#[test]
fn a_large_native_file_is_previewed_from_the_file_as_from_memory() {
    // Over 64 KiB: only the header is parsed and the preview reads the samples
    // from the file a few rows at a time, on every core. The same data set as a
    // bare data set is parsed whole (samples in memory): the same pixels.
    let dir = tmp();
    let mut img = Img::new(640, 480, 16, "MONOCHROME1");
    img.us(tags::BITS_STORED, 12)
        .us(tags::HIGH_BIT, 11)
        .multi(tags::WINDOW_CENTER, VR::DS, &["1800"])
        .multi(tags::WINDOW_WIDTH, VR::DS, &["2500"])
        .pixels16(large_frame());
    let in_file = img.write(dir.path(), "large.dcm", EXPLICIT_LE);
    let in_memory = img.write_bare(dir.path(), "large-bare.dcm", EXPLICIT_LE);
    let a = decode::load(&in_file).unwrap();
    let b = decode::load(&in_memory).unwrap();
    assert_eq!(a.info.layout, Layout::Standard);
    assert_eq!(b.info.layout, Layout::NoMeta);
    for (mw, mh) in [(320, 180), (170, 170), (0, 0), (600, 0)] {
        let ra = decode::render(&a, 0, 0, mw, mh).unwrap();
        let rb = decode::render(&b, 0, 0, mw, mh).unwrap();
        assert_eq!(ra, rb, "fitted within {mw}x{mh}");
    }
    let preview = decode::render(&a, 0, 0, 320, 180).unwrap();
    assert_eq!((preview.width, preview.height), (240, 180));
    // MONOCHROME1 over a gradient: neither flat nor empty.
    let g = gray(&preview);
    assert!(g.iter().max().unwrap() - g.iter().min().unwrap() > 100);
    // The stored values come from the file as well.
    let values = decode::decode_values(&a, 0).unwrap();
    assert_eq!(values.values[1], i64::from(large_frame()[1] & 0x0FFF));
    assert_eq!(values.values.len(), 640 * 480);
}

#[test]
fn a_large_native_file_without_a_window_gets_an_automatic_one_in_its_preview() {
    let dir = tmp();
    let mut img = Img::new(640, 480, 16, "MONOCHROME2");
    img.us(tags::BITS_STORED, 12)
        .us(tags::HIGH_BIT, 11)
        .pixels16(large_frame());
    let path = img.write(dir.path(), "auto.dcm", EXPLICIT_LE);
    let image = decode::load(&path).unwrap();
    let preview = decode::render(&image, 0, 0, 320, 180).unwrap();
    let full = decode::render(&image, 0, 0, 0, 0).unwrap();
    assert!(
        preview.voi.starts_with("automatic window"),
        "{}",
        preview.voi
    );
    // The preview's window comes from a subsample: close to the full image's.
    let ((pc, pw), (fc, fw)) = (preview.window.unwrap(), full.window.unwrap());
    assert!(
        (pc - fc).abs() < 0.02 * fw && (pw - fw).abs() < 0.04 * fw,
        "{pc} {pw} / {fc} {fw}"
    );
}

/// 16-bit palette tables of 4 entries from stored value 1: black, red, green, white.
fn palette_image(dir: &Path) -> PathBuf {
    let mut img = Img::new(5, 1, 8, "PALETTE COLOR");
    let descriptor = PrimitiveValue::U16(vec![4u16, 1, 16].into());
    for (d, t, entries) in [
        (
            tags::RED_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR,
            tags::RED_PALETTE_COLOR_LOOKUP_TABLE_DATA,
            [0u16, 0xFFFF, 0, 0xFFFF],
        ),
        (
            tags::GREEN_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR,
            tags::GREEN_PALETTE_COLOR_LOOKUP_TABLE_DATA,
            [0, 0, 0xFF00, 0xFFFF],
        ),
        (
            tags::BLUE_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR,
            tags::BLUE_PALETTE_COLOR_LOOKUP_TABLE_DATA,
            [0, 0, 0, 0x80FF],
        ),
    ] {
        img.obj.put(DataElement::new(d, VR::US, descriptor.clone()));
        img.obj.put(DataElement::new(
            t,
            VR::OW,
            PrimitiveValue::U16(entries.to_vec().into()),
        ));
    }
    // Stored 0 is below the first value mapped (first entry); 9 is past the last.
    img.pixels8(vec![0, 1, 2, 3, 9, 0])
        .write(dir, "palette.dcm", EXPLICIT_LE)
}

#[test]
fn palette_colour_is_drawn_through_its_lookup_tables() {
    let dir = tmp();
    let path = palette_image(dir.path());
    let image = decode::load(&path).unwrap();
    let r = decode::render(&image, 0, 0, 0, 0).unwrap();
    // 16-bit entries keep their high byte.
    #[rustfmt::skip]
    let expected = vec![
        0, 0, 0,        // 0: below the first value mapped, the first entry
        0, 0, 0,        // 1: entry 0
        255, 0, 0,      // 2: entry 1
        0, 255, 0,      // 3: entry 2
        255, 255, 128,  // 9: past the end, the last entry
    ];
    assert_eq!(r.pixels, Pixels::Rgb(expected));
    assert!(r.voi.contains("palette"), "{}", r.voi);
    // The stored values are the indices; the palette values are the tables' own.
    let stored = decode::decode_values(&image, 0).unwrap();
    assert_eq!(stored.values, vec![0, 1, 2, 3, 9]);
    let colours = decode::palette_values(&image, 0).unwrap();
    assert_eq!(&colours.values[6..9], &[0xFFFF, 0, 0]);
    assert_eq!(&colours.values[12..], &[0xFFFF, 0xFFFF, 0x80FF]);
}

#[test]
fn palette_colour_without_its_tables_is_refused_with_the_reason() {
    let dir = tmp();
    let path = Img::new(2, 1, 8, "PALETTE COLOR")
        .pixels8(vec![0, 1])
        .write(dir.path(), "no-lut.dcm", EXPLICIT_LE);
    let image = decode::load(&path).unwrap();
    let e = decode::render(&image, 0, 0, 0, 0).unwrap_err().to_string();
    assert!(e.contains("no-lut.dcm") && e.contains("Descriptor"), "{e}");
}

#[test]
fn thirty_two_bit_rgb_is_drawn_with_its_top_eight_bits() {
    let dir = tmp();
    let samples: [u32; 6] = [
        0xFFFF_FFFF,
        0x8000_0000,
        0,
        0x1234_5678,
        0x00FF_FFFF,
        0xFF00_0000,
    ];
    let bytes: Vec<u8> = samples.iter().flat_map(|v| v.to_le_bytes()).collect();
    let path = Img::new(2, 1, 32, "RGB")
        .us(tags::SAMPLES_PER_PIXEL, 3)
        .us(tags::PLANAR_CONFIGURATION, 0)
        .pixels8(bytes)
        .write(dir.path(), "rgb32.dcm", EXPLICIT_LE);
    let r = render(&path, 0, 0);
    assert_eq!(r.pixels, Pixels::Rgb(vec![255, 128, 0, 0x12, 0, 255]));
}

#[test]
fn rle_32_bit_colour_is_decoded_by_marrow_itself() {
    let dir = tmp();
    // Two pixels, R G B each: twelve segments (red's four bytes, most significant
    // first, then green's, then blue's), each a PackBits literal run.
    let pixels: [[u32; 3]; 2] = [
        [0xFF00_0000, 0x0000_0001, 0x8000_0000],
        [0, 0x7FFF_FFFF, 0x1234_5678],
    ];
    let mut header = Vec::new();
    header.extend(12u32.to_le_bytes());
    let mut body = Vec::new();
    for s in 0..12usize {
        header.extend((64 + body.len() as u32).to_le_bytes());
        body.push(1u8);
        let (sample, byte) = (s / 4, s % 4);
        body.extend(pixels.iter().map(|p| (p[sample] >> (8 * (3 - byte))) as u8));
    }
    header.resize(64, 0);
    header.extend(body);
    let path = Img::new(2, 1, 32, "RGB")
        .us(tags::SAMPLES_PER_PIXEL, 3)
        .us(tags::PLANAR_CONFIGURATION, 0)
        .fragments(vec![header])
        .write(dir.path(), "rle32rgb.dcm", RLE);
    let image = decode::load(&path).unwrap();
    let values = decode::decode_values(&image, 0).unwrap();
    let expected: Vec<i64> = pixels.iter().flatten().map(|&v| i64::from(v)).collect();
    assert_eq!(values.values, expected);
    let r = decode::render(&image, 0, 0, 0, 0).unwrap();
    assert_eq!(r.pixels, Pixels::Rgb(vec![255, 0, 128, 0, 127, 0x12]));
}

/// A colour JPEG-LS fixture of fixtures/jpegls/ (made by CharLS through
/// tests/conformance/make_jpegls_fixtures.py): 37x23, 3 samples a pixel.
fn jpegls_fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/jpegls")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The samples of a .raw / .charls fixture: one byte each up to 8 bits, else
/// two, little endian; interleaved R G B.
fn jpegls_fixture_values(name: &str, bits: u16) -> Vec<i64> {
    let bytes = jpegls_fixture(name);
    if bits <= 8 {
        bytes.iter().map(|&b| i64::from(b)).collect()
    } else {
        bytes
            .chunks_exact(2)
            .map(|c| i64::from(u16::from_le_bytes([c[0], c[1]])))
            .collect()
    }
}

/// A DICOM RGB image of 37x23 whose Pixel Data is the JPEG-LS `stream`.
fn jpegls_rgb(dir: &Path, name: &str, stream: Vec<u8>, bits: u16, near: u16) -> PathBuf {
    let allocated = if bits <= 8 { 8 } else { 16 };
    let ts = if near == 0 {
        JPEG_LS
    } else {
        "1.2.840.10008.1.2.4.81"
    };
    Img::new(37, 23, allocated, "RGB")
        .us(tags::SAMPLES_PER_PIXEL, 3)
        .us(tags::PLANAR_CONFIGURATION, 0)
        .us(tags::BITS_STORED, bits)
        .us(tags::HIGH_BIT, bits - 1)
        .fragments(vec![stream])
        .write(dir, &format!("{name}.dcm"), ts)
}

#[test]
fn colour_jpeg_ls_decodes_in_every_interleave_mode() {
    let dir = tmp();
    // (fixture, bits, NEAR): ILV 0, 1, 2; lossless and near-lossless; 8, 12
    // and 16 bits; the HP1-3 colour transforms.
    let listed = String::from_utf8(jpegls_fixture("fixtures.txt")).unwrap();
    let cases: Vec<(&str, u16, u16)> = listed
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f[0], f[1].parse().unwrap(), f[2].parse().unwrap())
        })
        .collect();
    assert_eq!(cases.len(), 12, "{cases:?}");
    for (name, bits, near) in cases {
        let stream = jpegls_fixture(&format!("{name}.jls"));
        let path = jpegls_rgb(dir.path(), name, stream, bits, near);
        let image = decode::load(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
        let values = decode::decode_values(&image, 0).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            (values.width, values.height, values.samples_per_pixel),
            (37, 23, 3),
            "{name}"
        );
        assert_eq!(values.photometric, "RGB", "{name}");
        let original = jpegls_fixture_values(&format!("{name}.raw"), bits);
        assert_eq!(values.values.len(), original.len(), "{name}");
        if near == 0 {
            assert!(values.values == original, "{name}: not the original pixels");
        } else {
            let worst = values
                .values
                .iter()
                .zip(&original)
                .map(|(a, b)| (a - b).abs())
                .max()
                .unwrap();
            assert!(
                (1..=i64::from(near)).contains(&worst),
                "{name}: largest error {worst}, NEAR {near}"
            );
            let charls = jpegls_fixture_values(&format!("{name}.charls"), bits);
            assert!(values.values == charls, "{name}: not what CharLS decodes");
        }
    }
    // Drawn as colour, pixel (0, 0) of the 8-bit lossless image as stored.
    let path = dir.path().join("rgb8_ilv1.dcm");
    let r = render(&path, 0, 0);
    let Pixels::Rgb(rgb) = &r.pixels else {
        panic!("expected colour")
    };
    let original = jpegls_fixture_values("rgb8_ilv1.raw", 8);
    let first: Vec<i64> = rgb[..3].iter().map(|&v| i64::from(v)).collect();
    assert_eq!(first, original[..3]);
}

#[test]
fn truncated_or_corrupt_colour_jpeg_ls_is_refused_with_the_reason() {
    let dir = tmp();
    let stream = jpegls_fixture("rgb8_ilv2.jls");
    let half = stream[..stream.len() / 2].to_vec();
    let path = jpegls_rgb(dir.path(), "short", half, 8, 0);
    let image = decode::load(&path).unwrap();
    let e = decode::decode_values(&image, 0).unwrap_err().to_string();
    assert!(e.contains("short.dcm"), "{e}");
    assert!(
        e.contains("3 samples per pixel") && e.contains("truncated"),
        "{e}"
    );

    let mut bad = stream.clone();
    let mid = bad.len() / 2;
    bad[mid..mid + 2].copy_from_slice(&[0xFF, 0xC4]);
    let path = jpegls_rgb(dir.path(), "marker", bad, 8, 0);
    let image = decode::load(&path).unwrap();
    let e = decode::render(&image, 0, 0, 0, 0).unwrap_err().to_string();
    assert!(e.contains("marker.dcm") && e.contains("marker FFC4"), "{e}");

    // A frame header that is not the DICOM image's is refused before any
    // sample buffer is allocated for it.
    let path = Img::new(4000, 4000, 8, "RGB")
        .us(tags::SAMPLES_PER_PIXEL, 3)
        .fragments(vec![stream])
        .write(dir.path(), "size.dcm", JPEG_LS);
    let image = decode::load(&path).unwrap();
    let e = decode::decode_values(&image, 0).unwrap_err().to_string();
    assert!(e.contains("37x23 with 3 component(s)"), "{e}");
}
