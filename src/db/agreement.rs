//! Agreement between readers, and of each reader with the final grade, from the
//! current reads of every case (issue 4, item 7). The statistics themselves are
//! in [`crate::domain::agreement`]; this gathers the pairs.
//!
//! Only unblinded users (adjudicators, PIs, admins) may ask: the pairs carry
//! every reader's grades.

use super::Result;
use super::reading::CaseReads;
use super::study::Study;
use crate::domain::agreement::{AgreementReport, ReportOptions};
use crate::domain::reading::{FinalGrade, OpImpression, ReadInput};
use serde::Serialize;
use std::collections::BTreeMap;

/// KL grades 0-4; OA is KL >= 2.
pub const KL_CATEGORIES: usize = 5;
pub const OA_THRESHOLD: u8 = 2;
/// Normal, osteopenia, osteoporosis; "osteoporosis" is the positive class.
pub const OP_CATEGORIES: usize = 3;
pub const OP_THRESHOLD: u8 = 2;

/// One comparison: `first` rates, `second` is the reference.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub first: String,
    pub second: String,
    #[serde(flatten)]
    pub report: AgreementReport,
}

/// The comparisons of one scale.
#[derive(Debug, Clone, Serialize)]
pub struct Scale {
    /// "KL grade (per knee)" or "OP impression".
    pub scale: String,
    pub categories: usize,
    /// Every case with two reads: the first read against the second (readers
    /// ordered by name), pooled over readers.
    pub readers_pooled: Option<Comparison>,
    /// Each pair of readers over the cases both read.
    pub reader_vs_reader: Vec<Comparison>,
    /// Each reader against the final grade, over the cases that have one.
    pub reader_vs_final: Vec<Comparison>,
}

/// The agreement screen's and `marrow agreement`'s figures.
#[derive(Debug, Clone, Serialize)]
pub struct AgreementSummary {
    pub cases: usize,
    pub cases_with_final: usize,
    pub kl: Scale,
    pub op: Scale,
    /// Reads called "not assessable", left out of every comparison.
    pub not_assessable_reads: usize,
    pub bootstrap_resamples: usize,
}

fn op_code(o: OpImpression) -> u8 {
    match o {
        OpImpression::Normal => 0,
        OpImpression::Osteopenia => 1,
        OpImpression::Osteoporosis => 2,
    }
}

fn kl_of_read(r: &ReadInput) -> Option<u8> {
    r.kl.as_ref().and_then(|g| g.value())
}

fn kl_of_final(f: &FinalGrade) -> Option<u8> {
    f.kl.as_ref().and_then(|g| g.value())
}

type Extract = fn(&ReadInput) -> Option<u8>;
type ExtractFinal = fn(&FinalGrade) -> Option<u8>;

fn scale(
    cases: &[CaseReads],
    name: &str,
    k: usize,
    read: Extract,
    fin: ExtractFinal,
    options: &ReportOptions,
) -> Scale {
    let report = |pairs: &[(u8, u8)]| {
        AgreementReport::compute(k, pairs, options)
            .expect("grades are validated on entry, within the scale")
    };
    let mut pooled = Vec::new();
    let mut by_pair: BTreeMap<(String, String), Vec<(u8, u8)>> = BTreeMap::new();
    let mut by_reader: BTreeMap<String, Vec<(u8, u8)>> = BTreeMap::new();
    for case in cases {
        let mut graded: Vec<(&String, u8)> = case
            .reads
            .iter()
            .filter_map(|(reader, r)| read(r).map(|g| (reader, g)))
            .collect();
        graded.sort();
        if let [(_, a), (_, b), ..] = graded[..] {
            pooled.push((a, b));
        }
        for (i, (ra, a)) in graded.iter().enumerate() {
            for (rb, b) in &graded[i + 1..] {
                by_pair
                    .entry(((*ra).clone(), (*rb).clone()))
                    .or_default()
                    .push((*a, *b));
            }
        }
        if let Some(f) = case.final_grade.as_ref().and_then(|(_, g)| fin(g)) {
            for (reader, g) in &graded {
                by_reader
                    .entry((*reader).clone())
                    .or_default()
                    .push((*g, f));
            }
        }
    }
    Scale {
        scale: name.to_string(),
        categories: k,
        readers_pooled: (!pooled.is_empty()).then(|| Comparison {
            first: "first read".into(),
            second: "second read".into(),
            report: report(&pooled),
        }),
        reader_vs_reader: by_pair
            .into_iter()
            .map(|((a, b), pairs)| Comparison {
                first: a,
                second: b,
                report: report(&pairs),
            })
            .collect(),
        reader_vs_final: by_reader
            .into_iter()
            .map(|(reader, pairs)| Comparison {
                first: reader,
                second: "final".into(),
                report: report(&pairs),
            })
            .collect(),
    }
}

/// The summary over `cases` (pure: no database).
pub fn summarise(cases: &[CaseReads], resamples: usize) -> AgreementSummary {
    let base = ReportOptions {
        resamples,
        ..ReportOptions::default()
    };
    let kl_options = ReportOptions {
        positive_threshold: Some(OA_THRESHOLD),
        ..base
    };
    let op_options = ReportOptions {
        positive_threshold: Some(OP_THRESHOLD),
        ..base
    };
    AgreementSummary {
        cases: cases.len(),
        cases_with_final: cases.iter().filter(|c| c.final_grade.is_some()).count(),
        kl: scale(
            cases,
            "KL grade (per knee)",
            KL_CATEGORIES,
            kl_of_read,
            kl_of_final,
            &kl_options,
        ),
        op: scale(
            cases,
            "OP impression",
            OP_CATEGORIES,
            |r| r.op_impression.map(op_code),
            |f| f.op_stage.map(op_code),
            &op_options,
        ),
        not_assessable_reads: cases
            .iter()
            .flat_map(|c| &c.reads)
            .filter(|(_, r)| r.not_assessable().is_some())
            .count(),
        bootstrap_resamples: resamples,
    }
}

impl Study {
    /// Agreement figures over every case (adjudicators, PIs and admins only).
    pub fn agreement(&self, resamples: usize) -> Result<AgreementSummary> {
        let cases = self.case_reads()?;
        Ok(summarise(&cases, resamples))
    }
}
