//! Issue 5: the models, their cards, training and the shipped weights.

use std::path::{Path, PathBuf};

use marrow::inference::backend::{BackendChoice, Cpu, CpuTrain, LoadedModel, train_on};
use marrow::inference::card::{CardError, ModelCard};
use marrow::inference::model::Classifier;
use marrow::inference::phantom;
use marrow::inference::train::{self, TrainConfig, TrainError, metrics};
use marrow::inference::{Example, Input, Task};

fn shipped(task: Task) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("models")
        .join(task.code())
}

/// Held-out phantoms: seeds far from the shipped training seeds.
fn held_out(task: Task, n: usize) -> (Vec<Input>, Vec<u8>) {
    let set = phantom::dataset(task, n, 4_242_424_242 + task as u64);
    let inputs = set
        .iter()
        .map(|p| Input {
            image: p.image(),
            clinical: p.clinical.clone(),
        })
        .collect();
    (inputs, set.iter().map(|p| p.label).collect())
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

#[test]
fn shipped_cards_say_plainly_what_they_were_trained_on() {
    for task in [Task::Kl, Task::Op] {
        let card = ModelCard::read(&shipped(task)).unwrap();
        assert_eq!(card.spec.task, task);
        assert!(card.training.data.contains("synthetic phantoms"));
        assert!(card.training.data.contains("not for clinical use"));
        assert!(card.training.data.contains("marrow train"));
        let size = std::fs::metadata(card.weights_path(&shipped(task)))
            .unwrap()
            .len();
        assert!(
            size < 2_000_000,
            "weights of {} are {size} bytes",
            task.code()
        );
    }
}

#[test]
fn a_weights_file_that_does_not_match_its_card_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("kl");
    copy_dir(&shipped(Task::Kl), &dir);
    let card = ModelCard::read(&dir).unwrap();
    let weights = card.weights_path(&dir);
    let mut bytes = std::fs::read(&weights).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 0x01;
    std::fs::write(&weights, &bytes).unwrap();
    let err = LoadedModel::load(&dir, BackendChoice::Cpu).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains(&weights.display().to_string()), "{msg}");
    assert!(msg.contains(&card.weights_sha256), "{msg}");
    assert!(
        msg.contains(&marrow::inference::card::sha256_hex(&bytes)),
        "{msg}"
    );
    assert!(msg.contains("refusing"), "{msg}");
    assert!(matches!(
        ModelCard::load(&dir),
        Err(CardError::HashMismatch { .. })
    ));
}

#[test]
fn the_shipped_kl_model_grades_held_out_phantoms() {
    let model = LoadedModel::load(&shipped(Task::Kl), BackendChoice::Cpu).unwrap();
    let (inputs, labels) = held_out(Task::Kl, 200);
    let probs: Vec<Vec<f32>> = model
        .predict(&inputs)
        .into_iter()
        .map(|p| p.probs)
        .collect();
    let m = metrics(Task::Kl, &labels, &probs);
    let kappa = m.quadratic_kappa.unwrap();
    assert!(
        kappa >= 0.6,
        "quadratic kappa {kappa}, confusion {:?}",
        m.confusion
    );
}

#[test]
fn the_shipped_op_model_finds_osteoporosis_on_held_out_phantoms() {
    let model = LoadedModel::load(&shipped(Task::Op), BackendChoice::Cpu).unwrap();
    let (inputs, labels) = held_out(Task::Op, 150);
    let probs: Vec<Vec<f32>> = model
        .predict(&inputs)
        .into_iter()
        .map(|p| p.probs)
        .collect();
    let m = metrics(Task::Op, &labels, &probs);
    let auc = m.auc_binary.unwrap();
    assert!(
        auc >= 0.75,
        "osteoporosis-vs-not AUC {auc}, confusion {:?}",
        m.confusion
    );
}

#[test]
fn an_untrained_network_fails_the_same_thresholds() {
    // the thresholds above can fail: the same architecture with fresh weights
    let card = ModelCard::read(&shipped(Task::Kl)).unwrap();
    let device = Default::default();
    let c = Classifier::<Cpu> {
        net: card.spec.init::<Cpu>(&device),
        spec: card.spec.clone(),
        device,
    };
    let (inputs, labels) = held_out(Task::Kl, 100);
    let probs: Vec<Vec<f32>> = c.predict(&inputs).into_iter().map(|p| p.probs).collect();
    let kappa = metrics(Task::Kl, &labels, &probs)
        .quadratic_kappa
        .unwrap_or(0.0);
    assert!(kappa < 0.6, "an untrained net reached kappa {kappa}");
}

fn tiny(task: Task, per_class: usize, seed: u64) -> Vec<Example> {
    phantom::examples(task, per_class * task.num_classes(), seed)
}

fn tiny_config(task: Task) -> TrainConfig {
    let mut c = TrainConfig::new(task);
    c.epochs = 2;
    c.batch_size = 8;
    c.min_per_class = 4;
    c.preprocess.input_size = 32;
    c.data_description = "test phantoms".into();
    c
}

#[test]
fn training_a_tiny_set_runs_saves_and_reloads_with_the_same_predictions() {
    let examples = tiny(Task::Op, 6, 99);
    let tmp = tempfile::tempdir().unwrap();
    let mut config = tiny_config(Task::Op);
    config.checkpoint_dir = Some(tmp.path().join("ckpt"));
    let mut epochs_seen = 0;
    let mut outcome = train_on(BackendChoice::Cpu, &examples, &config, &mut |p| {
        if p.val_loss.is_some() {
            epochs_seen += 1;
        }
        true
    })
    .unwrap();
    assert!((1..=2).contains(&epochs_seen));
    assert!(tmp.path().join("ckpt/checkpoint-best.mpk").exists());
    let dir = tmp.path().join("op-test");
    outcome.save(&dir).unwrap();

    // the inference path (card -> LoadedModel -> predict with the model's own
    // preprocessing) reproduces the validation metrics the training path computed
    let model = LoadedModel::load(&dir, BackendChoice::Cpu).unwrap();
    let val: Vec<&Example> = outcome
        .validation_indices
        .iter()
        .map(|&i| &examples[i])
        .collect();
    let inputs: Vec<Input> = val
        .iter()
        .map(|e| Input {
            image: e.image.clone(),
            clinical: e.clinical.clone(),
        })
        .collect();
    let labels: Vec<u8> = val.iter().map(|e| e.label).collect();
    let probs: Vec<Vec<f32>> = model
        .predict(&inputs)
        .into_iter()
        .map(|p| p.probs)
        .collect();
    let m = metrics(Task::Op, &labels, &probs);
    assert!(
        (m.loss - outcome.card.validation.loss).abs() < 1e-4,
        "inference loss {} vs training's validation loss {}",
        m.loss,
        outcome.card.validation.loss
    );
    assert_eq!(m.confusion, outcome.card.validation.confusion);
}

#[test]
fn preprocessing_is_the_same_function_in_training_and_inference() {
    let examples = tiny(Task::Kl, 1, 5);
    let card = ModelCard::read(&shipped(Task::Kl)).unwrap();
    let model = LoadedModel::load(&shipped(Task::Kl), BackendChoice::Cpu).unwrap();
    for e in &examples {
        let infer = model.preprocess(&e.image, &e.clinical);
        let cases = [(&e.image, &e.clinical)];
        let batch = card.spec.prepare(&cases);
        assert_eq!(infer.0, batch.images);
        assert_eq!(infer.1, batch.clinical);
        assert_eq!(infer.0.len(), card.spec.preprocess.input_size.pow(2));
    }
    // the spec training fits is what the card stores and inference applies
    let refs: Vec<&Example> = examples.iter().collect();
    let fitted = train::fit_spec(&tiny_config(Task::Kl), &refs);
    assert_eq!(fitted.preprocess.input_size, 32);
}

#[test]
fn training_refuses_too_few_labels_per_class_with_the_counts() {
    let mut examples = tiny(Task::Kl, 5, 3);
    examples.retain(|e| e.label != 3 || e.image.width % 2 == 0);
    examples.retain(|e| e.label != 1);
    let config = tiny_config(Task::Kl);
    let err = train::train::<CpuTrain>(&examples, &config, &Default::default(), "cpu", &mut |_| {
        true
    })
    .unwrap_err();
    assert!(matches!(err, TrainError::TooFewLabels { .. }));
    let msg = err.to_string();
    assert!(msg.contains("KL1: 0"), "{msg}");
    assert!(msg.contains("at least 4"), "{msg}");
}

#[test]
fn cancelling_from_the_progress_callback_stops_training() {
    let examples = tiny(Task::Op, 4, 11);
    let err = train_on(
        BackendChoice::Cpu,
        &examples,
        &tiny_config(Task::Op),
        &mut |_| false,
    )
    .unwrap_err();
    assert!(err.to_string().contains("cancelled"), "{err}");
}

#[test]
fn phantoms_are_deterministic_and_follow_the_label() {
    let a = phantom::dataset(Task::Kl, 10, 1);
    let b = phantom::dataset(Task::Kl, 10, 1);
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.pixels, y.pixels);
        assert_eq!(x.label, y.label);
    }
    let jsw = |kl: u8| {
        (0..30)
            .map(|s| phantom::knee(kl, 1000 + s).anatomy.jsw_medial)
            .sum::<f64>()
            / 30.0
    };
    let means: Vec<f64> = (0..5).map(jsw).collect();
    assert!(means.windows(2).all(|w| w[1] < w[0]), "{means:?}");
}

/// The CPU path predicts with the frozen network (batch norms folded, direct
/// kernels); it must give burn's own forward pass's probabilities, for both shipped
/// models, with and without clinical inputs missing, at odd batch sizes.
#[test]
fn the_frozen_cpu_network_predicts_what_burn_predicts() {
    use marrow::inference::{Clinical, Image};
    for task in [Task::Kl, Task::Op] {
        let model = LoadedModel::load(&shipped(task), BackendChoice::Cpu).unwrap();
        let (mut inputs, _) = held_out(task, 37);
        // Some cases with no clinical data at all.
        for i in inputs.iter_mut().step_by(5) {
            i.clinical = Clinical::default();
        }
        let cases: Vec<(&Image, &Clinical)> =
            inputs.iter().map(|i| (&i.image, &i.clinical)).collect();
        for n in [1, 7, 37] {
            let p = model.spec().prepare(&cases[..n]);
            let frozen = model.predict_prepared(&p);
            let burn = model.predict_prepared_burn(&p);
            assert_eq!(frozen.len(), n);
            assert_eq!(burn.len(), n);
            let mut worst = 0.0f32;
            for (f, b) in frozen.iter().zip(&burn) {
                assert_eq!(f.probs.len(), b.probs.len());
                assert_eq!(f.class, b.class, "{task:?}: {f:?} vs {b:?}");
                for (x, y) in f.probs.iter().zip(&b.probs) {
                    worst = worst.max((x - y).abs());
                }
                assert!((f.probs.iter().sum::<f32>() - 1.0).abs() < 1e-5);
            }
            assert!(worst < 1e-4, "{task:?} batch {n}: max |difference| {worst}");
        }
        // The classes differ between cases (the comparison is not of constants).
        let p = model.spec().prepare(&cases);
        let classes: std::collections::BTreeSet<u8> =
            model.predict_prepared(&p).iter().map(|x| x.class).collect();
        assert!(classes.len() > 1, "{task:?}: one class for every case");
    }
}
