//! Issue 7, fuzzing: every file of the fuzz corpora (`fuzz/corpus/<target>/`) and of
//! the findings kept as regressions (`fuzz/regressions/<target>/`) goes through the
//! same entry point as the cargo-fuzz target (`marrow::fuzz`), in CI. None may panic;
//! intact inputs are taken and broken ones refused with a message.

use marrow::fuzz::{Harness, Target};
use std::path::{Path, PathBuf};

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    out.retain(|p| p.is_file());
    out.sort();
    out
}

#[test]
fn every_corpus_and_regression_input_is_taken_or_refused_without_a_panic() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut h = Harness::new();
    // Patients first, so the other imports find some of them.
    let order = [
        Target::Patients,
        Target::Dxa,
        Target::Labs,
        Target::Followup,
        Target::Dicom,
    ];
    assert_eq!(order.len(), Target::ALL.len());
    for target in order {
        let mut inputs = files(&fuzz.join("corpus").join(target.name()));
        assert!(
            inputs.len() >= 3,
            "fuzz/corpus/{} has {} files",
            target.name(),
            inputs.len()
        );
        inputs.extend(files(&fuzz.join("regressions").join(target.name())));
        let (mut taken, mut refused) = (Vec::new(), Vec::new());
        for path in &inputs {
            let data = std::fs::read(path).unwrap();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let outcome =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| h.run(target, &data)))
                    .unwrap_or_else(|_| {
                        panic!("{}: panicked on {}", target.name(), path.display())
                    });
            match outcome {
                Ok(()) => taken.push(name),
                Err(why) => {
                    assert!(!why.trim().is_empty(), "{name}: refused without a reason");
                    refused.push(name)
                }
            }
        }
        eprintln!("{}: taken {taken:?}; refused {refused:?}", target.name());
        // Not vacuous: the corpus holds inputs of both kinds, and they land where
        // they should.
        assert!(!taken.is_empty(), "{}: nothing taken", target.name());
        assert!(!refused.is_empty(), "{}: nothing refused", target.name());
        let garbage = if target == Target::Dicom {
            "not_dicom.dcm"
        } else {
            "garbage.csv"
        };
        assert!(
            refused.iter().any(|n| n == garbage),
            "{}: {refused:?}",
            target.name()
        );
    }
}
