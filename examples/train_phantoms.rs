//! Trains the shipped KL and OP models on synthetic phantoms and writes
//! `models/kl/` and `models/op/` (weights + model card), then scores them on
//! held-out phantoms (other seeds) and times CPU inference at batch 16.
//!
//! cargo run --release --example train_phantoms -- [kl|op|both] [N] [OUT_DIR] [EPOCHS]
//! cargo run --release --example train_phantoms -- dump DIR   (PGM images of each class, to look at)
//! cargo run --release --features cuda --example train_phantoms -- compare [BACKEND]
//!   (the shipped models on held-out phantoms on the CPU and on BACKEND (default cuda):
//!    largest probability difference, images/s at batch 16 and 256, one training epoch on 1,000)

use std::path::PathBuf;
use std::time::Instant;

use marrow::inference::backend::{BackendChoice, LoadedModel, train_on};
use marrow::inference::card::PHANTOM_TRAINING_NOTE;
use marrow::inference::phantom;
use marrow::inference::train::{TrainConfig, metrics};
use marrow::inference::{Input, Task};

/// Seeds of the shipped training sets and of the held-out check.
const TRAIN_SEED: u64 = 20_261_127;
const HELD_OUT_SEED: u64 = 777_000_111;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let which = args.first().map(String::as_str).unwrap_or("both");
    if which == "compare" {
        let other: BackendChoice = args
            .get(1)
            .map(String::as_str)
            .unwrap_or("cuda")
            .parse()
            .map_err(anyhow::Error::msg)?;
        return compare(other);
    }
    if which == "dump" {
        let dir = PathBuf::from(args.get(1).map(String::as_str).unwrap_or("phantoms"));
        std::fs::create_dir_all(&dir)?;
        for task in [Task::Kl, Task::Op] {
            for label in 0..task.num_classes() as u8 {
                for seed in 0..3 {
                    let p = phantom::generate(task, label, seed);
                    let name = format!("{}-{label}-{seed}.pgm", task.code());
                    std::fs::write(dir.join(name), phantom::to_pgm(&p))?;
                }
            }
        }
        return Ok(());
    }
    let n: usize = args.get(1).map(|s| s.parse()).transpose()?.unwrap_or(2000);
    let out = PathBuf::from(args.get(2).map(String::as_str).unwrap_or("models"));
    let epochs: usize = args.get(3).map(|s| s.parse()).transpose()?.unwrap_or(30);
    let tasks: Vec<Task> = match which {
        "kl" => vec![Task::Kl],
        "op" => vec![Task::Op],
        _ => vec![Task::Kl, Task::Op],
    };
    for task in tasks {
        let t0 = Instant::now();
        let examples = phantom::examples(task, n, TRAIN_SEED + task as u64);
        println!(
            "{}: {} phantoms generated in {:.1}s",
            task.code(),
            examples.len(),
            t0.elapsed().as_secs_f64()
        );
        let mut config = TrainConfig::new(task);
        config.version = "0.1.0-phantom".to_string();
        config.data_description = format!(
            "{n} synthetic {} phantoms (marrow::inference::phantom, seed {}), balanced classes; {PHANTOM_TRAINING_NOTE}",
            if task == Task::Kl {
                "knee AP"
            } else {
                "hip AP"
            },
            TRAIN_SEED + task as u64
        );
        config.epochs = epochs;
        config.patience = 6;
        config.seed = 7;
        let t1 = Instant::now();
        let mut outcome = train_on(BackendChoice::Cpu, &examples, &config, &mut |p| {
            if let Some(vl) = p.val_loss {
                println!(
                    "  epoch {:>2}/{}  train loss {:.4}  val loss {:.4}  val acc {:.3}  ({:.0}s)",
                    p.epoch,
                    p.epochs,
                    p.train_loss,
                    vl,
                    p.val_accuracy.unwrap_or(0.0),
                    t1.elapsed().as_secs_f64()
                );
            }
            true
        })?;
        let train_s = t1.elapsed().as_secs_f64();
        let dir = out.join(task.code());
        outcome.save(&dir)?;
        let v = &outcome.card.validation;
        println!(
            "{}: trained in {train_s:.1}s (best epoch {} of {}), weights {} bytes; validation: acc {:.3} qwk {:?} auc_binary {:?}",
            task.code(),
            outcome.card.training.best_epoch,
            outcome.card.training.epochs_run,
            outcome.weights.len(),
            v.accuracy,
            v.quadratic_kappa,
            v.auc_binary
        );

        // held-out phantoms through the saved model, as `marrow infer` would load it
        let model = LoadedModel::load(&dir, BackendChoice::Cpu)?;
        let held = phantom::dataset(task, 500, HELD_OUT_SEED + task as u64);
        let inputs: Vec<Input> = held
            .iter()
            .map(|p| Input {
                image: p.image(),
                clinical: p.clinical.clone(),
            })
            .collect();
        let labels: Vec<u8> = held.iter().map(|p| p.label).collect();
        let preds = model.predict(&inputs);
        let probs: Vec<Vec<f32>> = preds.iter().map(|p| p.probs.clone()).collect();
        let m = metrics(task, &labels, &probs);
        println!(
            "{}: held-out ({} phantoms): acc {:.3} qwk {:?} auc_macro {:?} auc_binary {:?}\n  confusion {:?}",
            task.code(),
            m.n,
            m.accuracy,
            m.quadratic_kappa,
            m.auc_macro,
            m.auc_binary,
            m.confusion
        );

        // CPU inference throughput at batch 16 (preprocessing included)
        let batch: Vec<Input> = inputs.iter().take(16).cloned().collect();
        let _ = model.predict(&batch);
        let t2 = Instant::now();
        let mut done = 0;
        while t2.elapsed().as_secs_f64() < 3.0 {
            let _ = model.predict(&batch);
            done += batch.len();
        }
        println!(
            "{}: CPU inference, batch 16: {:.0} images/s ({} threads)",
            task.code(),
            done as f64 / t2.elapsed().as_secs_f64(),
            std::thread::available_parallelism().map_or(1, |n| n.get())
        );
    }
    Ok(())
}

fn images_per_s(model: &LoadedModel, inputs: &[Input], batch: usize) -> f64 {
    let b: Vec<Input> = inputs.iter().cycle().take(batch).cloned().collect();
    let _ = model.predict(&b);
    let t = Instant::now();
    let mut done = 0;
    while t.elapsed().as_secs_f64() < 2.0 {
        let _ = model.predict(&b);
        done += b.len();
    }
    done as f64 / t.elapsed().as_secs_f64()
}

fn compare(other: BackendChoice) -> anyhow::Result<()> {
    for task in [Task::Kl, Task::Op] {
        let dir = PathBuf::from("models").join(task.code());
        let cpu = LoadedModel::load(&dir, BackendChoice::Cpu)?;
        let t0 = Instant::now();
        let gpu = LoadedModel::load(&dir, other)?;
        println!(
            "{}: loaded on {} in {:.2}s",
            task.code(),
            gpu.backend_name(),
            t0.elapsed().as_secs_f64()
        );
        let held = phantom::dataset(task, 500, HELD_OUT_SEED + task as u64);
        let inputs: Vec<Input> = held
            .iter()
            .map(|p| Input {
                image: p.image(),
                clinical: p.clinical.clone(),
            })
            .collect();
        let labels: Vec<u8> = held.iter().map(|p| p.label).collect();
        let a = cpu.predict(&inputs);
        let b = gpu.predict(&inputs);
        let mut max_diff = 0.0f32;
        let mut same_class = 0;
        for (x, y) in a.iter().zip(&b) {
            same_class += usize::from(x.class == y.class);
            for (p, q) in x.probs.iter().zip(&y.probs) {
                max_diff = max_diff.max((p - q).abs());
            }
        }
        let probs: Vec<Vec<f32>> = b.iter().map(|p| p.probs.clone()).collect();
        let m = metrics(task, &labels, &probs);
        println!(
            "{}: {} of {} classes equal, largest probability difference {max_diff:.2e}; {} metrics: qwk {:?} auc_binary {:?}",
            task.code(),
            same_class,
            a.len(),
            gpu.backend_name(),
            m.quadratic_kappa,
            m.auc_binary
        );
        for batch in [16, 256] {
            println!(
                "{}: batch {batch}: cpu {:.0} images/s, {} {:.0} images/s",
                task.code(),
                images_per_s(&cpu, &inputs, batch),
                gpu.backend_name(),
                images_per_s(&gpu, &inputs, batch)
            );
        }
        // one epoch on 1,000 phantoms
        let examples = phantom::examples(task, 1000, 31);
        for choice in [other, BackendChoice::Cpu] {
            let mut config = TrainConfig::new(task);
            config.epochs = 1;
            config.validation_fraction = 0.1;
            let t = Instant::now();
            let out = train_on(choice, &examples, &config, &mut |_| true)?;
            println!(
                "{}: one epoch on 1,000 phantoms ({} train) on {}: {:.1}s",
                task.code(),
                out.card.training.n_train,
                out.card.training.backend,
                t.elapsed().as_secs_f64()
            );
        }
    }
    Ok(())
}
