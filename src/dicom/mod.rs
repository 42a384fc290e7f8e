//! DICOM import, de-identification and display.

pub mod decode;
pub mod deid;
pub mod display;
pub mod guard;
pub mod import;
pub mod jpeg12;
pub mod jpegls;
pub mod palette;
pub mod store;
pub mod synth;

pub use import::{
    DicomError, DicomReport, LinkOutcome, import_dicom, import_dicom_from, link_waiting,
};
