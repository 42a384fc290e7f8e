//! DICOM import, de-identification and display.

pub mod deid;
pub mod display;
pub mod import;
pub mod store;

pub use import::{DicomError, DicomReport, LinkOutcome, import_dicom, link_waiting};
