//! Agreement between readers, and of each reader with the final grade, from the
//! current reads of every case. The statistics themselves are in
//! [`crate::domain::agreement`] and [`crate::domain::stats`]; this gathers the pairs.
//!
//! No figure compares a reader with a reference built from that reader's own read
//! (incorporation bias): a reader is compared with an adjudicated final decided by
//! someone else, and where the final is the readers' consensus (or was decided by
//! this reader) with the median of the *other* readers' reads of the case (leave
//! this reader out). Inter-reader agreement is given per reader pair and, over all
//! readers, as Fleiss' kappa on the cases with the usual number of reads.
//!
//! Only unblinded users (adjudicators, PIs, admins) may ask: the pairs carry
//! every reader's grades.

use super::Result;
use super::reading::{CaseReads, FinalMethod};
use super::study::Study;
use crate::domain::agreement::{AgreementReport, ReportOptions};
use crate::domain::reading::{FinalGrade, OpImpression, ReadInput, median};
use crate::domain::stats::fleiss_kappa;
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
    /// Each reader against the final grade without that reader's read, over the
    /// cases that have one (see [`READER_REFERENCE`]).
    pub reader_vs_final: Vec<Comparison>,
    /// What `reader_vs_final` compares each reader with.
    pub reader_reference: &'static str,
    /// Fleiss' kappa over all readers.
    pub fleiss: Option<Fleiss>,
}

impl Scale {
    /// What "final" means for a reader, and Fleiss' kappa over all readers, in words.
    pub fn reference_note(&self) -> String {
        let fleiss = match &self.fleiss {
            Some(f) => format!(
                "Fleiss' kappa over all readers: {:.2} ({} cases with {} reads each).",
                f.kappa, f.cases, f.raters
            ),
            None => "Fleiss' kappa over all readers: — (too few cases with reads).".into(),
        };
        format!("\"vs final\": {}. {fleiss}", self.reader_reference)
    }
}

/// What a reader's grades are compared with in `reader_vs_final`.
pub const READER_REFERENCE: &str = "the adjudicated final where someone else decided it, else the median of the other readers' reads (never a reference that includes the reader's own read)";

/// Fleiss' kappa over the cases read by the usual number of readers.
#[derive(Debug, Clone, Serialize)]
pub struct Fleiss {
    pub kappa: f64,
    /// Cases in the figure: those with exactly `raters` graded reads.
    pub cases: usize,
    pub raters: usize,
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
    let mut fleiss_rows: Vec<Vec<u64>> = Vec::new();
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
        // A final decided by someone who did not read the case stands for everyone;
        // otherwise each reader meets the median of the others.
        let independent = match (&case.final_grade, &case.final_by) {
            (Some((FinalMethod::Adjudicated, g)), Some(by)) => fin(g).map(|f| (by.as_str(), f)),
            _ => None,
        };
        for (reader, g) in &graded {
            let reference = match independent {
                Some((by, f)) if by != reader.as_str() => Some(f),
                _ if case.final_grade.is_some() => median(
                    graded
                        .iter()
                        .filter(|(other, _)| other != reader)
                        .map(|(_, o)| *o)
                        .collect(),
                ),
                _ => None,
            };
            if let Some(f) = reference {
                by_reader
                    .entry((*reader).clone())
                    .or_default()
                    .push((*g, f));
            }
        }
        if graded.len() >= 2 {
            let mut row = vec![0u64; k];
            for (_, g) in &graded {
                row[usize::from(*g)] += 1;
            }
            fleiss_rows.push(row);
        }
    }
    // The usual number of graded reads per case (ties: the larger).
    let mut raters_count: BTreeMap<u64, usize> = BTreeMap::new();
    for row in &fleiss_rows {
        *raters_count.entry(row.iter().sum()).or_default() += 1;
    }
    let fleiss = raters_count
        .iter()
        .max_by_key(|(r, n)| (**n, **r))
        .and_then(|(&raters, _)| {
            let rows: Vec<Vec<u64>> = fleiss_rows
                .into_iter()
                .filter(|r| r.iter().sum::<u64>() == raters)
                .collect();
            fleiss_kappa(&rows).map(|kappa| Fleiss {
                kappa,
                cases: rows.len(),
                raters: raters as usize,
            })
        });
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
        reader_reference: READER_REFERENCE,
        fleiss,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::reading::{Grade, Oarsi, Side};

    fn read(kl: u8) -> ReadInput {
        ReadInput {
            kl: Some(Grade::Value(kl)),
            oarsi: Oarsi::default(),
            op_impression: None,
            confidence: Some(3),
        }
    }

    fn case(reads: &[(&str, u8)], fin: Option<(FinalMethod, &str, u8)>) -> CaseReads {
        CaseReads {
            case: "C00001".into(),
            side: Side::Left,
            reads: reads
                .iter()
                .map(|(r, k)| (r.to_string(), read(*k)))
                .collect(),
            final_grade: fin.map(|(m, _, k)| {
                (
                    m,
                    FinalGrade {
                        kl: Some(Grade::Value(k)),
                        op_stage: None,
                    },
                )
            }),
            final_by: fin.map(|(_, by, _)| by.to_string()),
        }
    }

    fn pairs_of(s: &AgreementSummary, reader: &str) -> Vec<(u8, u8)> {
        let c =
            s.kl.reader_vs_final
                .iter()
                .find(|c| c.first == reader)
                .unwrap();
        let m = c.report.confusion_matrix.counts();
        let mut out = Vec::new();
        for (a, row) in m.iter().enumerate() {
            for (b, n) in row.iter().enumerate() {
                out.extend(std::iter::repeat_n((a as u8, b as u8), *n as usize));
            }
        }
        out
    }

    #[test]
    fn a_reader_is_never_compared_with_a_final_that_holds_their_own_read() {
        let cases = vec![
            // Consensus of li 2 and wang 3 (final 3, the upper median): li meets
            // wang's 3, wang meets li's 2, not the 3 that wang's own read made.
            case(
                &[("li", 2), ("wang", 3)],
                Some((FinalMethod::Consensus, "consensus", 3)),
            ),
            // Adjudicated by chen, who read nothing: both meet chen's 1.
            case(
                &[("li", 0), ("wang", 2)],
                Some((FinalMethod::Adjudicated, "chen", 1)),
            ),
            // Adjudicated by wang (before adjudicators were kept off their own cases):
            // wang meets li's read, li meets wang's final.
            case(
                &[("li", 4), ("wang", 3)],
                Some((FinalMethod::Adjudicated, "wang", 4)),
            ),
            // No final: no reader-vs-final pair.
            case(&[("li", 1), ("wang", 1)], None),
        ];
        let s = summarise(&cases, 0);
        assert_eq!(pairs_of(&s, "li"), vec![(0, 1), (2, 3), (4, 4)]);
        assert_eq!(pairs_of(&s, "wang"), vec![(2, 1), (3, 2), (3, 4)]);
        assert!(s.kl.reader_reference.contains("other readers"));
    }

    #[test]
    fn fleiss_kappa_over_all_readers_uses_the_cases_with_the_usual_number_of_reads() {
        // Three readers on four cases, one case with two reads only (left out):
        // counts per category [KL0..KL4] for the three-read cases:
        // [3,0,0,0,0], [0,2,1,0,0], [0,0,0,3,0]; statsmodels' fleiss_kappa on that
        // table gives 0.689655172413793 = 40/58.
        let cases = vec![
            case(&[("a", 0), ("b", 0), ("c", 0)], None),
            case(&[("a", 1), ("b", 1), ("c", 2)], None),
            case(&[("a", 3), ("b", 3), ("c", 3)], None),
            case(&[("a", 4), ("b", 0)], None),
        ];
        let f = summarise(&cases, 0).kl.fleiss.unwrap();
        assert_eq!((f.cases, f.raters), (3, 3));
        // By hand: P_i = 1, 1/3, 1 -> P̄ = 7/9; category shares 3/9, 2/9, 1/9, 3/9
        // -> Pe = (9 + 4 + 1 + 9)/81 = 23/81; kappa = (7/9 - 23/81)/(1 - 23/81) = 40/58.
        assert!((f.kappa - 40.0 / 58.0).abs() < 1e-12, "{}", f.kappa);
    }
}
