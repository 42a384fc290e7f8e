//! CPU inference throughput of the shipped models (issue 5, "Figures"): images/s at
//! a fixed batch, forward pass only (the batch already preprocessed, as the PyTorch
//! side of `bench/torch_cpu.py` measures it; the frozen CPU network that predicts, and
//! burn's own forward pass it is checked against) and with marrow's preprocessing.
//!
//! cargo run --release --example infer_bench -- [BATCH] [SECONDS] [REPEATS] [MODELS_DIR]
//!
//! Defaults: batch 16, 3 s per measurement, 5 repeats, `models`. Threads: rayon's
//! global pool (`RAYON_NUM_THREADS`, default one per core). Prints one line per
//! measurement and, last, one `RESULT {json}` line per model for scripts.

use std::path::PathBuf;
use std::time::Instant;

use burn::module::Module;
use marrow::inference::backend::{BackendChoice, LoadedModel};
use marrow::inference::model::Prepared;
use marrow::inference::{Clinical, Image, Input, Task, phantom};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let batch: usize = args.first().map(|s| s.parse()).transpose()?.unwrap_or(16);
    let seconds: f64 = args.get(1).map(|s| s.parse()).transpose()?.unwrap_or(3.0);
    let repeats: usize = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(5);
    let dir = PathBuf::from(args.get(3).map(String::as_str).unwrap_or("models"));
    let threads = rayon::current_num_threads();
    let mut results = Vec::new();
    for task in [Task::Kl, Task::Op] {
        let model = LoadedModel::load(&dir.join(task.code()), BackendChoice::Cpu)?;
        let params = match &model {
            LoadedModel::Cpu(_, c, _) => c.net.num_params(),
            #[allow(unreachable_patterns)]
            _ => 0,
        };
        let inputs: Vec<Input> = phantom::dataset(task, batch, 9_090 + task as u64)
            .iter()
            .map(|p| Input {
                image: p.image(),
                clinical: p.clinical.clone(),
            })
            .collect();
        let cases: Vec<(&Image, &Clinical)> =
            inputs.iter().map(|i| (&i.image, &i.clinical)).collect();
        let prepared = model.spec().prepare(&cases);
        let forward = measure(repeats, seconds, batch, || {
            std::hint::black_box(model.predict_prepared(std::hint::black_box(&prepared)));
        });
        let burn_forward = measure(repeats, seconds, batch, || {
            std::hint::black_box(model.predict_prepared_burn(std::hint::black_box(&prepared)));
        });
        let with_pre = measure(repeats, seconds, batch, || {
            std::hint::black_box(model.predict(std::hint::black_box(&inputs)));
        });
        let pre_only = measure(repeats.min(3), seconds.min(1.0), batch, || {
            let p: Prepared = model.spec().prepare(&cases);
            std::hint::black_box(p);
        });
        let spec = model.spec();
        println!(
            "{}: {} parameters, input {}x{}, clinical width {}, batch {batch}, {threads} threads",
            task.code(),
            params,
            spec.preprocess.input_size,
            spec.preprocess.input_size,
            spec.clinical.width()
        );
        println!(
            "{}: forward only: median {:.0} images/s (runs {})",
            task.code(),
            median(&forward),
            fmt(&forward)
        );
        println!(
            "{}: burn's own forward (reference): median {:.0} images/s (runs {})",
            task.code(),
            median(&burn_forward),
            fmt(&burn_forward)
        );
        println!(
            "{}: preprocessing + forward: median {:.0} images/s (runs {})",
            task.code(),
            median(&with_pre),
            fmt(&with_pre)
        );
        println!(
            "{}: preprocessing alone: median {:.0} images/s",
            task.code(),
            median(&pre_only)
        );
        results.push(serde_json::json!({
            "task": task.code(),
            "batch": batch,
            "threads": threads,
            "params": params,
            "input_size": spec.preprocess.input_size,
            "clinical_width": spec.clinical.width(),
            "classes": spec.classes.len(),
            "forward_images_per_s": forward,
            "burn_forward_images_per_s": burn_forward,
            "with_preprocessing_images_per_s": with_pre,
            "preprocessing_images_per_s": pre_only,
        }));
    }
    for r in results {
        println!("RESULT {r}");
    }
    Ok(())
}

/// `repeats` runs of about `seconds` each (after one warm-up call): images/s.
fn measure(repeats: usize, seconds: f64, batch: usize, mut f: impl FnMut()) -> Vec<f64> {
    f();
    (0..repeats.max(1))
        .map(|_| {
            let t = Instant::now();
            let mut done = 0usize;
            while done == 0 || t.elapsed().as_secs_f64() < seconds {
                f();
                done += batch;
            }
            done as f64 / t.elapsed().as_secs_f64()
        })
        .collect()
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n == 0 {
        0.0
    } else if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

fn fmt(v: &[f64]) -> String {
    v.iter()
        .map(|x| format!("{x:.0}"))
        .collect::<Vec<_>>()
        .join(", ")
}
