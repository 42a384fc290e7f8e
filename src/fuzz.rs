//! Entry points of the fuzz targets (`fuzz/`, cargo-fuzz) and of their regression
//! test (`tests/fuzz_regressions.rs`, which replays every corpus file in CI): each
//! takes arbitrary bytes as a file of its kind and runs what marrow runs on such a
//! file. Any outcome but a panic, a hang or an unbounded allocation is acceptable:
//! refusing the input with a message is the expected answer to most of them.

use crate::db::Study;
use crate::domain::protocol::Protocol;
use crate::import::ImportKind;
use std::path::PathBuf;

/// Which import a fuzz input goes through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Header check, load and render of frame 0 (the viewer), then `import dicom`
    /// (header parse, de-identification, the managed copy).
    Dicom,
    Patients,
    Dxa,
    Labs,
    Followup,
}

impl Target {
    pub const ALL: [Target; 5] = [
        Target::Dicom,
        Target::Patients,
        Target::Dxa,
        Target::Labs,
        Target::Followup,
    ];

    /// The corpus folder's name under `fuzz/corpus/`.
    pub fn name(self) -> &'static str {
        match self {
            Target::Dicom => "dicom",
            Target::Patients => "csv_patients",
            Target::Dxa => "csv_dxa",
            Target::Labs => "csv_labs",
            Target::Followup => "csv_followup",
        }
    }
}

/// A study of its own in a temporary folder, kept for the whole fuzzing run (a new
/// study per input would spend its time deriving keys).
pub struct Harness {
    dir: tempfile::TempDir,
    study: Study,
}

impl Harness {
    pub fn new() -> Harness {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let db = dir.path().join("fuzz.db");
        Study::init(&db, None, Protocol::default()).expect("a fuzz study");
        let study = Study::open(&db, None, None).expect("open the fuzz study");
        Harness { dir, study }
    }

    /// Runs `data` through `target`; `Err` says why the input was refused.
    pub fn run(&mut self, target: Target, data: &[u8]) -> Result<(), String> {
        match target {
            Target::Dicom => self.dicom(data),
            Target::Patients => self.csv(ImportKind::Patients, data),
            Target::Dxa => self.csv(ImportKind::Dxa, data),
            Target::Labs => self.csv(ImportKind::Labs, data),
            Target::Followup => {
                let path = self.write("input.csv", data)?;
                crate::import::followup::import_followup(&mut self.study, &path)
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
        }
    }

    fn write(&self, name: &str, data: &[u8]) -> Result<PathBuf, String> {
        let folder = self.dir.path().join("in");
        std::fs::create_dir_all(&folder).map_err(|e| e.to_string())?;
        let path = folder.join(name);
        std::fs::write(&path, data).map_err(|e| e.to_string())?;
        Ok(path)
    }

    fn csv(&mut self, kind: ImportKind, data: &[u8]) -> Result<(), String> {
        let path = self.write("input.csv", data)?;
        crate::import::import_csv(&mut self.study, kind, &path, |_, _| {})
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    fn dicom(&mut self, data: &[u8]) -> Result<(), String> {
        // Only the DICOM input in the folder the import walks.
        let _ = std::fs::remove_file(self.dir.path().join("in").join("input.csv"));
        let path = self.write("input.dcm", data)?;
        let viewed = crate::dicom::decode::load(&path)
            .and_then(|image| crate::dicom::decode::render(&image, 0, 0, 320, 180))
            .map(|_| ())
            .map_err(|e| e.to_string());
        let imported = crate::dicom::import::import_dicom(
            &mut self.study,
            &[self.dir.path().join("in")],
            |_| {},
        )
        .map(|_| ())
        .map_err(|e| e.to_string());
        viewed.and(imported)
    }
}

impl Default for Harness {
    fn default() -> Self {
        Harness::new()
    }
}
