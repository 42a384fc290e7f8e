//! The model's explanation of one reading case (issue 5, item 7), shared by
//! `marrow explain` and the TUI's read and adjudication screens: the case's images
//! the model reads, each with the exact Shapley values over the modality groups
//! ([`explain::shapley_groups`]) and the occlusion heatmap ([`explain::occlusion`]).
//!
//! Blinding is checked here, not by the callers: whoever may not see the model's
//! prediction of the case (`Study::case_view` says `Blinded::Hidden`) gets the data
//! layer's reason and nothing is computed.

use super::backend::{BackendChoice, LoadedModel};
use super::explain::{self, GroupShapley, Heatmap};
use super::{Image, Task};
use crate::db::Study;
use crate::db::reading::Blinded;
use crate::domain::reading::Side;

/// One image of the case as the model read it, and why it predicted what it did.
#[derive(Debug, Clone, PartialEq)]
pub struct ExplainedImage {
    pub instance_id: i64,
    pub sop_uid: String,
    /// The image as the model receives it (for an overlay).
    pub image: Image,
    pub shapley: GroupShapley,
    pub heatmap: Heatmap,
}

/// The explanation of a case: the active model of its task over its images.
#[derive(Debug, Clone, PartialEq)]
pub struct CaseExplanation {
    pub case: String,
    pub side: Side,
    pub task: Task,
    /// The model's name and version (`ModelRow::label`).
    pub model: String,
    pub images: Vec<ExplainedImage>,
}

/// An error with its causes, as the CLI prints them.
fn chain(e: impl std::error::Error + Send + Sync + 'static) -> String {
    format!("{:#}", anyhow::Error::new(e))
}

/// Explains the active model's prediction of `case` on each of its images the model
/// reads (occlusion patches of `patch` input pixels, `stride` apart). Refuses, with
/// the data layer's reason, when the acting user may not see the model's prediction
/// of the case.
pub fn explain_case(
    study: &Study,
    case: &str,
    patch: usize,
    stride: usize,
) -> Result<CaseExplanation, String> {
    let view = study.case_view(case).map_err(chain)?;
    if let Blinded::Hidden(why) = &view.model_prediction {
        return Err(format!("the model's view of {case} is hidden: {why}"));
    }
    let task = if view.side.is_knee() {
        Task::Kl
    } else {
        Task::Op
    };
    let model_row = study
        .models()
        .map_err(chain)?
        .into_iter()
        .find(|m| m.task == task && m.active)
        .ok_or_else(|| {
            format!(
                "no active {} model yet: run `marrow infer` first",
                task.code()
            )
        })?;
    let model = LoadedModel::load(&model_row.dir, BackendChoice::Cpu).map_err(chain)?;
    let case_id: i64 = case
        .trim()
        .trim_start_matches(['C', 'c'])
        .parse()
        .map_err(|_| format!("{case:?} is not a case reference like C00012"))?;
    let patient_id: i64 = study
        .conn()
        .query_row(
            "SELECT patient_id FROM reading_cases WHERE id = ?1",
            [case_id],
            |r| r.get(0),
        )
        .map_err(chain)?;
    let clinical = study
        .clinical_inputs(&[patient_id])
        .map_err(chain)?
        .remove(&patient_id)
        .unwrap_or_default();
    let store = crate::dicom::store::root_for(study.path());
    // The case's images (they fit the case) that the model's card accepts.
    let inputs = model_row.inputs();
    let images: Vec<_> = view
        .images
        .iter()
        .filter(|i| {
            let facts = crate::domain::reading::ImageFacts {
                modality: i.modality.clone(),
                body_part: i.body_part.clone(),
                laterality: i.laterality.clone(),
                view_position: i.view_position.clone(),
                ..Default::default()
            };
            crate::domain::reading::image_fits_model(&inputs, task == Task::Kl, &facts)
                .is_ok_and(|s| s == view.side)
        })
        .collect();
    if images.is_empty() {
        return Err(format!(
            "{case} has no image the {} model reads",
            task.code()
        ));
    }
    let mut out = Vec::with_capacity(images.len());
    for img in images {
        let image = super::jobs::model_image(&store.join(&img.store_path))?;
        let shapley = explain::shapley_groups(&model, &image, &clinical);
        let heatmap = explain::occlusion(&model, &image, &clinical, patch, stride);
        out.push(ExplainedImage {
            instance_id: img.instance_id,
            sop_uid: img.sop_uid.clone(),
            image,
            shapley,
            heatmap,
        });
    }
    Ok(CaseExplanation {
        case: view.case.clone(),
        side: view.side,
        task,
        model: model_row.label(),
        images: out,
    })
}
