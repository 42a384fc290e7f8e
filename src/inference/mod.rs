//! The CNN second opinion (issue 5): KL grade per knee and OP stage, in burn.
//!
//! - [`phantom`]: synthetic radiograph phantoms whose anatomy follows the label, to
//!   train the shipped weights and to test that a model learned something.
//! - [`model`]: the network (image CNN fused with clinical features) and its
//!   preprocessing, which is part of the model's definition.
//! - [`card`]: the model card `models/<name>/model.toml` with the weights' SHA-256.
//! - [`train`]: training with a validation split or k-fold, early stopping,
//!   checkpoints, progress and metrics.
//! - [`backend`]: `auto|cpu|cuda` selection and the runtime-dispatched entry points
//!   ([`backend::LoadedModel`], [`backend::train_on`]).

pub mod backend;
pub mod card;
pub mod case_explain;
pub mod explain;
pub mod frozen;
pub mod jobs;
pub mod model;
pub mod phantom;
pub mod train;

use serde::{Deserialize, Serialize};

/// What a model predicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Task {
    /// Kellgren-Lawrence grade of one knee, 0..=4.
    Kl,
    /// WHO stage from DXA: 0 normal, 1 osteopenia, 2 osteoporosis.
    Op,
}

impl Task {
    pub fn code(self) -> &'static str {
        match self {
            Task::Kl => "kl",
            Task::Op => "op",
        }
    }

    /// Class names, index = label.
    pub fn classes(self) -> Vec<String> {
        let names: &[&str] = match self {
            Task::Kl => &["KL0", "KL1", "KL2", "KL3", "KL4"],
            Task::Op => &["normal", "osteopenia", "osteoporosis"],
        };
        names.iter().map(|s| s.to_string()).collect()
    }

    pub fn num_classes(self) -> usize {
        match self {
            Task::Kl => 5,
            Task::Op => 3,
        }
    }

    /// First class of the binary outcome: radiographic OA is KL >= 2;
    /// osteoporosis is stage 2.
    pub fn positive_from(self) -> u8 {
        2
    }

    /// The clinical features this task's model uses by default.
    pub fn default_features(self) -> Vec<Feature> {
        match self {
            Task::Kl => vec![Feature::Age, Feature::SexFemale, Feature::Bmi],
            Task::Op => Feature::ALL.to_vec(),
        }
    }
}

impl std::str::FromStr for Task {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "kl" => Ok(Task::Kl),
            "op" => Ok(Task::Op),
            other => Err(format!("unknown task {other:?}: expected kl or op")),
        }
    }
}

/// A clinical input of the models (PROTOCOL.md: demographics and labs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Feature {
    /// Years at the index imaging.
    Age,
    /// 1 female, 0 male.
    SexFemale,
    /// kg/m^2.
    Bmi,
    /// P1NP, ng/mL.
    P1np,
    /// beta-CTX, ng/mL.
    BetaCtx,
    /// Calcium, mmol/L.
    Calcium,
    /// Phosphorus, mmol/L.
    Phosphorus,
    /// 25-OH vitamin D, ng/mL.
    VitaminD,
    /// PTH, pg/mL.
    Pth,
    /// Alkaline phosphatase, U/L.
    Alp,
}

impl Feature {
    pub const ALL: [Feature; 10] = [
        Feature::Age,
        Feature::SexFemale,
        Feature::Bmi,
        Feature::P1np,
        Feature::BetaCtx,
        Feature::Calcium,
        Feature::Phosphorus,
        Feature::VitaminD,
        Feature::Pth,
        Feature::Alp,
    ];

    /// Modality group for the explanation (image / demographics / labs).
    pub fn is_lab(self) -> bool {
        !matches!(self, Feature::Age | Feature::SexFemale | Feature::Bmi)
    }
}

/// The clinical values of one case; `None` = not recorded.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Clinical {
    pub age: Option<f64>,
    pub female: Option<bool>,
    pub bmi: Option<f64>,
    pub p1np: Option<f64>,
    pub beta_ctx: Option<f64>,
    pub calcium: Option<f64>,
    pub phosphorus: Option<f64>,
    pub vitamin_d: Option<f64>,
    pub pth: Option<f64>,
    pub alp: Option<f64>,
}

impl Clinical {
    pub fn get(&self, f: Feature) -> Option<f64> {
        match f {
            Feature::Age => self.age,
            Feature::SexFemale => self.female.map(|b| if b { 1.0 } else { 0.0 }),
            Feature::Bmi => self.bmi,
            Feature::P1np => self.p1np,
            Feature::BetaCtx => self.beta_ctx,
            Feature::Calcium => self.calcium,
            Feature::Phosphorus => self.phosphorus,
            Feature::VitaminD => self.vitamin_d,
            Feature::Pth => self.pth,
            Feature::Alp => self.alp,
        }
        .filter(|v| v.is_finite())
    }
}

/// A grayscale image as the model receives it: the stored values after the
/// modality LUT (rescale slope/intercept), row-major, MONOCHROME2 orientation
/// (bone bright; invert MONOCHROME1 first). No window is needed: the model's
/// preprocessing windows by percentiles.
#[derive(Debug, Clone, PartialEq)]
pub struct Image {
    pub width: usize,
    pub height: usize,
    pub pixels: Vec<f32>,
}

impl Image {
    pub fn from_u16(width: usize, height: usize, pixels: &[u16]) -> Self {
        Image {
            width,
            height,
            pixels: pixels.iter().map(|&v| f32::from(v)).collect(),
        }
    }
}

/// One labelled case for training or evaluation.
#[derive(Debug, Clone)]
pub struct Example {
    pub image: Image,
    pub clinical: Clinical,
    /// Class index `0..task.num_classes()`.
    pub label: u8,
    /// The patient the example belongs to: every split (validation, k folds) keeps
    /// all examples of a group on one side, so that images of one knee or one
    /// patient never train and validate the same model.
    pub group: u64,
}

/// One case to predict.
#[derive(Debug, Clone)]
pub struct Input {
    pub image: Image,
    pub clinical: Clinical,
}

/// A model's answer for one case.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    /// Softmax probabilities, index = class.
    pub probs: Vec<f32>,
    /// The most probable class.
    pub class: u8,
}
