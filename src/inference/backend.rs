//! Backend selection, `--backend auto|cpu|cuda` (issue 5), and the entry points
//! that dispatch on it at run time.
//!
//! The CPU backend is burn-ndarray and is always there. CUDA (burn-cuda) is
//! compiled only with the cargo feature `cuda`
//! (`cargo build --release --features cuda`); `auto` takes it when the binary has
//! it and a device answers, and the CPU otherwise.

use std::path::Path;

use burn::backend::{Autodiff, NdArray};

use super::card::{CardError, ModelCard};
use super::model::Classifier;
use super::train::{self, Progress, TrainConfig, TrainError, TrainOutcome};
use super::{Example, Input, Prediction};

/// The CPU backend.
pub type Cpu = NdArray<f32>;
/// The CPU backend with autodiff, for training.
pub type CpuTrain = Autodiff<Cpu>;
/// The CUDA backend.
#[cfg(feature = "cuda")]
pub type Gpu = burn::backend::Cuda<f32, i32>;

/// What the user asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum BackendChoice {
    /// CUDA when built with it and a device answers, else the CPU.
    #[default]
    Auto,
    Cpu,
    Cuda,
}

impl std::str::FromStr for BackendChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(BackendChoice::Auto),
            "cpu" => Ok(BackendChoice::Cpu),
            "cuda" | "gpu" => Ok(BackendChoice::Cuda),
            other => Err(format!(
                "unknown backend {other:?}: expected auto, cpu or cuda"
            )),
        }
    }
}

impl std::fmt::Display for BackendChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BackendChoice::Auto => "auto",
            BackendChoice::Cpu => "cpu",
            BackendChoice::Cuda => "cuda",
        })
    }
}

/// The backend that will run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolved {
    Cpu,
    /// CUDA device index.
    #[cfg(feature = "cuda")]
    Cuda(usize),
}

impl Resolved {
    /// Short name for cards, job rows and logs: `cpu (ndarray)` or `cuda:0`.
    pub fn name(&self) -> String {
        match self {
            Resolved::Cpu => "cpu (burn-ndarray)".to_string(),
            #[cfg(feature = "cuda")]
            Resolved::Cuda(i) => format!("cuda:{i}"),
        }
    }
}

/// Why a backend is not available.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackendError {
    #[error(
        "this marrow was built without CUDA; build it with `cargo build --release --features cuda` \
(needs the NVIDIA driver and CUDA toolkit on the machine), or use --backend cpu"
    )]
    NotCompiled,
    #[error("CUDA was asked for but no CUDA device answered: {0}")]
    NoDevice(String),
}

/// Whether this binary was built with the `cuda` feature.
pub fn cuda_compiled() -> bool {
    cfg!(feature = "cuda")
}

/// Whether a CUDA device answers (a tiny computation on device 0). Always false
/// without the `cuda` feature.
#[cfg(feature = "cuda")]
pub fn cuda_available() -> Result<(), String> {
    use burn::prelude::*;
    let probe = std::panic::catch_unwind(|| {
        let device = burn::backend::cuda::CudaDevice::new(0);
        let t = Tensor::<Gpu, 1>::from_floats([1.0, 2.0], &device);
        t.sum().into_scalar()
    });
    match probe {
        Ok(v) if (v - 3.0).abs() < 1e-6 => Ok(()),
        Ok(v) => Err(format!("the probe computed {v}, not 3")),
        Err(e) => Err(e
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "the CUDA runtime panicked".to_string())),
    }
}

#[cfg(not(feature = "cuda"))]
pub fn cuda_available() -> Result<(), String> {
    Err("built without the cuda feature".to_string())
}

/// Picks the backend for `choice`.
pub fn resolve(choice: BackendChoice) -> Result<Resolved, BackendError> {
    match choice {
        BackendChoice::Cpu => Ok(Resolved::Cpu),
        BackendChoice::Auto => Ok(resolve_cuda().unwrap_or(Resolved::Cpu)),
        BackendChoice::Cuda => resolve_cuda(),
    }
}

#[cfg(feature = "cuda")]
fn resolve_cuda() -> Result<Resolved, BackendError> {
    cuda_available().map_err(BackendError::NoDevice)?;
    Ok(Resolved::Cuda(0))
}

#[cfg(not(feature = "cuda"))]
fn resolve_cuda() -> Result<Resolved, BackendError> {
    Err(BackendError::NotCompiled)
}

/// Why a model could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error(transparent)]
    Card(#[from] CardError),
}

/// A model loaded on the chosen backend.
#[derive(Debug)]
pub enum LoadedModel {
    /// On the CPU: burn's network, and the same network frozen for inference (batch
    /// norms folded, direct kernels: [`super::frozen`]), which predicts.
    Cpu(ModelCard, Classifier<Cpu>, super::frozen::FrozenNet),
    #[cfg(feature = "cuda")]
    Cuda(ModelCard, Classifier<Gpu>),
}

fn classifier<B: burn::prelude::Backend>(
    card: &ModelCard,
    dir: &Path,
    bytes: Vec<u8>,
    device: B::Device,
) -> Result<Classifier<B>, CardError> {
    let net =
        train::load_net::<B>(&card.spec, bytes, &device).map_err(|message| CardError::Weights {
            file: card.weights_path(dir),
            message,
        })?;
    Ok(Classifier {
        spec: card.spec.clone(),
        net,
        device,
    })
}

impl LoadedModel {
    /// Reads `dir/model.toml`, checks the weights' SHA-256 and loads them on the
    /// backend `choice` resolves to.
    pub fn load(dir: &Path, choice: BackendChoice) -> Result<LoadedModel, LoadError> {
        let resolved = resolve(choice)?;
        let (card, bytes) = ModelCard::load(dir)?;
        match resolved {
            Resolved::Cpu => {
                let c = classifier::<Cpu>(&card, dir, bytes, Default::default())?;
                let frozen = c.net.freeze(&card.spec.architecture);
                Ok(LoadedModel::Cpu(card, c, frozen))
            }
            #[cfg(feature = "cuda")]
            Resolved::Cuda(i) => {
                let device = burn::backend::cuda::CudaDevice::new(i);
                let c = classifier::<Gpu>(&card, dir, bytes, device)?;
                Ok(LoadedModel::Cuda(card, c))
            }
        }
    }

    pub fn card(&self) -> &ModelCard {
        match self {
            LoadedModel::Cpu(c, ..) => c,
            #[cfg(feature = "cuda")]
            LoadedModel::Cuda(c, _) => c,
        }
    }

    /// `cpu (burn-ndarray)` or `cuda:0`.
    pub fn backend_name(&self) -> String {
        match self {
            LoadedModel::Cpu(..) => Resolved::Cpu.name(),
            #[cfg(feature = "cuda")]
            LoadedModel::Cuda(_, c) => Resolved::Cuda(c.device.index).name(),
        }
    }

    /// `name version`, for the prediction rows.
    pub fn version_label(&self) -> String {
        let c = self.card();
        format!("{} {}", c.name, c.version)
    }

    /// The model's own preprocessing of one case: (image plane, clinical inputs).
    pub fn preprocess(
        &self,
        image: &super::Image,
        clinical: &super::Clinical,
    ) -> (Vec<f32>, Vec<f32>) {
        self.card().spec.prepare_one(image, clinical)
    }

    /// Predictions for a batch (the model's preprocessing included).
    pub fn predict(&self, inputs: &[Input]) -> Vec<Prediction> {
        match self {
            LoadedModel::Cpu(..) => self.predict_prepared(
                &self.spec().prepare(
                    &inputs
                        .iter()
                        .map(|i| (&i.image, &i.clinical))
                        .collect::<Vec<_>>(),
                ),
            ),
            #[cfg(feature = "cuda")]
            LoadedModel::Cuda(_, c) => c.predict(inputs),
        }
    }
}

impl LoadedModel {
    /// What defines the model apart from its weights (preprocessing, clinical
    /// normalisation, architecture), from its card.
    pub fn spec(&self) -> &super::model::ModelSpec {
        &self.card().spec
    }

    /// Predictions for a batch already through the model's preprocessing
    /// ([`super::model::ModelSpec::prepare`]), or built from such planes: the
    /// explanations ([`super::explain`]) evaluate altered inputs this way.
    pub fn predict_prepared(&self, p: &super::model::Prepared) -> Vec<Prediction> {
        match self {
            LoadedModel::Cpu(_, _, f) => {
                if p.n == 0 {
                    Vec::new()
                } else {
                    f.predict_prepared(p)
                }
            }
            #[cfg(feature = "cuda")]
            LoadedModel::Cuda(_, c) => c.predict_prepared(p),
        }
    }

    /// The same predictions through burn's own forward pass (on the CPU, the frozen
    /// network is what predicts; this is the reference it is checked and timed against).
    pub fn predict_prepared_burn(&self, p: &super::model::Prepared) -> Vec<Prediction> {
        match self {
            LoadedModel::Cpu(_, c, _) => c.predict_prepared(p),
            #[cfg(feature = "cuda")]
            LoadedModel::Cuda(_, c) => c.predict_prepared(p),
        }
    }
}

/// Trains on the backend `choice` resolves to (see [`train::train`]).
pub fn train_on(
    choice: BackendChoice,
    examples: &[Example],
    config: &TrainConfig,
    progress: &mut dyn FnMut(&Progress) -> bool,
) -> Result<TrainOutcome, TrainOnError> {
    match resolve(choice)? {
        Resolved::Cpu => Ok(train::train::<CpuTrain>(
            examples,
            config,
            &Default::default(),
            &Resolved::Cpu.name(),
            progress,
        )?),
        #[cfg(feature = "cuda")]
        Resolved::Cuda(i) => Ok(train::train::<Autodiff<Gpu>>(
            examples,
            config,
            &burn::backend::cuda::CudaDevice::new(i),
            &Resolved::Cuda(i).name(),
            progress,
        )?),
    }
}

/// Why [`train_on`] failed.
#[derive(Debug, thiserror::Error)]
pub enum TrainOnError {
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error(transparent)]
    Train(#[from] TrainError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_always_resolves_and_cuda_needs_the_feature() {
        assert_eq!(resolve(BackendChoice::Cpu), Ok(Resolved::Cpu));
        if !cuda_compiled() {
            assert_eq!(resolve(BackendChoice::Auto), Ok(Resolved::Cpu));
            let err = resolve(BackendChoice::Cuda).unwrap_err().to_string();
            assert!(
                err.contains("cargo build --release --features cuda"),
                "{err}"
            );
        }
        assert_eq!("CUDA".parse::<BackendChoice>(), Ok(BackendChoice::Cuda));
        assert!("tpu".parse::<BackendChoice>().is_err());
    }
}
