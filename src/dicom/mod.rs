//! DICOM import, de-identification and display.

pub mod decode;
pub mod deid;
pub mod display;
pub mod import;
pub mod jpegls;
pub mod store;
pub mod synth;

pub use import::{DicomError, DicomReport, LinkOutcome, import_dicom, link_waiting};
