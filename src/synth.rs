//! Synthetic hospital exports (patients, DXA, labs) for the demo, tests and benchmarks.
//!
//! Everything here is invented: MRNs, names, addresses and phone numbers are fake and
//! only there so that imports can show they are dropped. The same `(n, seed)` always
//! gives the same bytes. Every row is valid for the importer; the realism lies in the
//! mix: six cohorts (2 sites x 3 groups) in about equal shares, about 75% of patients
//! retrospective, ages mostly 40 to 85 with a few outside 18 to 90, about 10% of
//! patients with an unknown field, a few exclusions, a DXA scan (three regions) for
//! most OP and CONTROL patients (a few outside the 365-day window, T-scores by group)
//! and laboratory panels under the hospitals' various spellings.

use chrono::{Datelike, NaiveDate};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

/// How many rows were written.
#[derive(Debug, Clone, Copy, Default)]
pub struct Written {
    pub patients: usize,
    pub dxa: usize,
    pub labs: usize,
}

/// Header of the generated patients.csv (`name`, `address`, `phone` are ignored on import).
pub const PATIENT_HEADER: &str = "mrn,name,site,phase,group,sex,birth_date,index_date,bmi,height_cm,weight_kg,\
deformity,implant,pathological_fracture,malignancy,steroid_long_term,radio_chemo_last,address,phone";
/// Header of the generated dxa.csv (`device` is ignored on import).
pub const DXA_HEADER: &str = "mrn,scan_date,region,t_score,z_score,bmd_g_cm2,device";
/// Header of the generated labs.csv (`ordered_by` is ignored on import).
pub const LAB_HEADER: &str = "mrn,date,analyte,value,unit,ordered_by";

const SITES: [(&str, &str); 2] = [("PKUPH", "PK"), ("SYSMH", "SY")];
const GROUPS: [&str; 3] = ["OA", "OP", "CONTROL"];
const REGIONS: [&str; 3] = ["lumbar_spine", "femoral_neck", "total_hip"];

const CN_SURNAMES: [&str; 24] = [
    "王", "李", "张", "刘", "陈", "杨", "黄", "赵", "吴", "周", "徐", "孙", "马", "朱", "胡", "郭",
    "何", "林", "罗", "高", "梁", "郑", "谢", "宋",
];
const CN_GIVEN: [&str; 24] = [
    "伟", "芳", "娜", "秀英", "敏", "静", "丽", "强", "磊", "军", "洋", "勇", "艳", "杰", "娟",
    "涛", "明", "超", "秀兰", "霞", "平", "刚", "桂英", "玉梅",
];
const PINYIN_SURNAMES: [&str; 12] = [
    "Wang", "Li", "Zhang", "Liu", "Chen", "Yang", "Huang", "Zhao", "Wu", "Zhou", "Lin", "Luo",
];
const PINYIN_GIVEN: [&str; 12] = [
    "Wei", "Fang", "Na", "Xiuying", "Min", "Jing", "Li", "Qiang", "Lei", "Jun", "Yang", "Yan",
];
/// Names of visitors from abroad, in their own scripts.
const OTHER_NAMES: [&str; 10] = [
    "María José García",
    "Jean-Pierre Dubois",
    "Иван Петров",
    "佐藤 花子",
    "김민준",
    "Νίκος Παπαδόπουλος",
    "Nguyễn Văn An",
    "Hans Müller",
    "Ana Souza",
    "محمد علي",
];
const PKUPH_DISTRICTS: [&str; 6] = ["西城区", "海淀区", "朝阳区", "东城区", "丰台区", "昌平区"];
const SYSMH_DISTRICTS: [&str; 6] = ["越秀区", "海珠区", "天河区", "荔湾区", "白云区", "番禺区"];
const STREETS: [&str; 6] = ["示例路", "测试街", "样例大道", "虚构巷", "模拟路", "演示街"];

/// (spelling in the export, unit, low, high) per analyte of the protocol.
const LAB_PANEL: [(&[&str], &str, f64, f64); 7] = [
    (&["P1NP", "PINP", "total P1NP"], "ng/mL", 15.0, 95.0),
    (&["β-CTX", "CTX", "beta-CrossLaps"], "ng/mL", 0.10, 1.20),
    (&["Calcium", "Ca", "serum calcium"], "mmol/L", 2.05, 2.65),
    (&["Phosphorus", "P", "phosphate"], "mmol/L", 0.75, 1.55),
    (
        &["25(OH)D", "25-OH Vitamin D", "vitamin D"],
        "ng/mL",
        6.0,
        48.0,
    ),
    (&["PTH", "intact PTH"], "pg/mL", 12.0, 95.0),
    (
        &["ALP", "Alkaline Phosphatase", "alk phos"],
        "U/L",
        38.0,
        160.0,
    ),
];

/// Days from the common era of a date (so dates are plain integers while generating).
fn day(y: i32, m: u32, d: u32) -> i32 {
    NaiveDate::from_ymd_opt(y, m, d)
        .expect("a valid constant date")
        .num_days_from_ce()
}

/// Appends `v` in decimal, left-padded with zeros to `width` digits.
fn push_uint(buf: &mut Vec<u8>, mut v: u64, width: usize) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    for _ in (digits.len() - i)..width {
        buf.push(b'0');
    }
    buf.extend_from_slice(&digits[i..]);
}

/// Appends `v` rounded to `decimals` (1 to 3) places, like `format!("{v:.decimals$}")`.
fn push_fixed(buf: &mut Vec<u8>, v: f64, decimals: u32) {
    let scale = 10u64.pow(decimals);
    let scaled = (v * scale as f64).round();
    if scaled < 0.0 {
        buf.push(b'-');
    }
    let a = scaled.abs() as u64;
    push_uint(buf, a / scale, 1);
    buf.push(b'.');
    push_uint(buf, a % scale, decimals as usize);
}

/// Appends a day number (days from the common era) as YYYY-MM-DD.
fn push_date(buf: &mut Vec<u8>, days: i32) {
    let d = NaiveDate::from_num_days_from_ce_opt(days).expect("generated dates are in range");
    push_uint(buf, d.year() as u64, 4);
    buf.push(b'-');
    push_uint(buf, u64::from(d.month()), 2);
    buf.push(b'-');
    push_uint(buf, u64::from(d.day()), 2);
}

/// Appends a yes/no/unknown field and its trailing comma.
fn push_yes_no(buf: &mut Vec<u8>, v: Option<bool>) {
    buf.extend_from_slice(match v {
        Some(true) => b"yes,",
        Some(false) => b"no,",
        None => b",",
    });
}

/// A standard normal draw (Box-Muller; `rand_distr` is not a dependency).
fn normal(rng: &mut StdRng) -> f64 {
    let u1: f64 = 1.0 - rng.random::<f64>(); // (0, 1]
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

fn pick<T: Copy>(rng: &mut StdRng, items: &[T]) -> T {
    items[rng.random_range(0..items.len())]
}

/// Fields that may be left empty (unknown) in an export.
#[derive(Clone, Copy)]
enum Blank {
    Sex,
    Birth,
    Bmi,
    Deformity,
    Implant,
    Fracture,
    Malignancy,
    Steroid,
    RadioChemo,
    /// Last: drawn far less often than the others.
    Index,
}

const BLANKS: usize = 10;

/// A CSV file being written: its writer, a line buffer reused for every row, the row count.
struct Out {
    w: BufWriter<File>,
    line: Vec<u8>,
    rows: usize,
}

impl Out {
    fn create(dir: &Path, name: &str, header: &str) -> std::io::Result<Out> {
        let mut w = BufWriter::with_capacity(1 << 20, File::create(dir.join(name))?);
        w.write_all(header.as_bytes())?;
        w.write_all(b"\n")?;
        Ok(Out {
            w,
            line: Vec::with_capacity(256),
            rows: 0,
        })
    }

    /// Starts a row with the patient's MRN and a comma.
    fn start(&mut self, mrn_prefix: &str, mrn_number: u64) {
        self.line.clear();
        self.line.extend_from_slice(mrn_prefix.as_bytes());
        push_uint(&mut self.line, mrn_number, 7);
        self.line.push(b',');
    }

    /// Ends the row (the caller wrote every field but the newline) and writes it out.
    fn end(&mut self) -> std::io::Result<()> {
        self.line.push(b'\n');
        self.rows += 1;
        self.w.write_all(&self.line)
    }

    fn push(&mut self, s: &str) {
        self.line.extend_from_slice(s.as_bytes());
    }
}

/// Writes patients.csv, dxa.csv and labs.csv for `n` patients into `dir`.
pub fn write_exports(dir: &Path, n: usize, seed: u64) -> std::io::Result<Written> {
    let mut po = Out::create(dir, "patients.csv", PATIENT_HEADER)?;
    let mut dout = Out::create(dir, "dxa.csv", DXA_HEADER)?;
    let mut lo = Out::create(dir, "labs.csv", LAB_HEADER)?;

    let mut rng = StdRng::seed_from_u64(seed);
    let retro_start = day(2005, 11, 1);
    let retro_end = day(2025, 11, 30);
    let pro_start = day(2025, 12, 1);
    let pro_end = day(2026, 10, 31);

    for i in 0..n {
        let mrn = 1_000_000 + i as u64;
        // Cohort: equal shares of the six cohorts, 3 of 4 patients retrospective.
        let site_ix = rng.random_range(0..SITES.len());
        let (site, prefix) = SITES[site_ix];
        let group_ix = rng.random_range(0..GROUPS.len());
        let group = GROUPS[group_ix];
        let retrospective = rng.random_bool(0.75);
        let index = if retrospective {
            rng.random_range(retro_start..=retro_end)
        } else {
            rng.random_range(pro_start..=pro_end)
        };
        // Age: mostly 40 to 85 (OP a little older), a few young adults, a few outside 18-90.
        let r: f64 = rng.random();
        let age: i32 = if r < 0.015 {
            rng.random_range(15..18)
        } else if r < 0.03 {
            rng.random_range(91..96)
        } else if r < 0.07 {
            rng.random_range(18..40)
        } else if r < 0.09 {
            rng.random_range(86..91)
        } else if group_ix == 1 {
            rng.random_range(50..86)
        } else {
            rng.random_range(40..86)
        };
        // Born `age` years and 0-364 days before the index date (leap days make the
        // age approximate, which is fine for synthetic data).
        let birth = index - (f64::from(age) * 365.25) as i32 - rng.random_range(0..365);
        let female = rng.random_bool([0.65, 0.82, 0.5][group_ix]);

        // About 10% of patients have one or two unknown fields.
        let mut blank = [false; BLANKS];
        if rng.random_bool(0.10) {
            for _ in 0..rng.random_range(1..=2) {
                // The index date is rarely missing: 1 in 181 draws.
                let k = rng.random_range(0..(BLANKS - 1) * 20 + 1);
                blank[if k == (BLANKS - 1) * 20 {
                    BLANKS - 1
                } else {
                    k % (BLANKS - 1)
                }] = true;
            }
        }
        let known = |b: Blank| !blank[b as usize];
        let answer = |b: Blank, v: bool| known(b).then_some(v);

        // A few exclusions and failed inclusions.
        let deformity = rng.random_bool(0.02);
        let implant = rng.random_bool(if group_ix == 0 { 0.05 } else { 0.02 });
        let fracture = rng.random_bool(0.015);
        let malignancy = rng.random_bool(0.02);
        let steroid = rng.random_bool(if group_ix == 1 { 0.05 } else { 0.02 });

        // patients.csv
        po.start(prefix, mrn);
        let style: f64 = rng.random();
        if style < 0.80 {
            po.push(pick(&mut rng, &CN_SURNAMES));
            po.push(pick(&mut rng, &CN_GIVEN));
        } else if style < 0.95 {
            po.push(pick(&mut rng, &PINYIN_SURNAMES));
            po.push(" ");
            po.push(pick(&mut rng, &PINYIN_GIVEN));
        } else {
            po.push(pick(&mut rng, &OTHER_NAMES));
        }
        po.push(",");
        po.push(site);
        po.push(if retrospective {
            ",retrospective,"
        } else {
            ",prospective,"
        });
        po.push(group);
        po.push(",");
        if known(Blank::Sex) {
            po.push(if female { "F" } else { "M" });
        }
        po.push(",");
        if known(Blank::Birth) {
            push_date(&mut po.line, birth);
        }
        po.push(",");
        if known(Blank::Index) {
            push_date(&mut po.line, index);
        }
        po.push(",");
        // BMI: usually given, sometimes as height and weight.
        let bmi = (24.0 + 3.5 * normal(&mut rng)).clamp(15.0, 45.0);
        let height = (if female { 158.0 } else { 170.0 } + 6.0 * normal(&mut rng)).round();
        let height = height.clamp(140.0, 200.0);
        if !known(Blank::Bmi) {
            po.push(",,,");
        } else if rng.random_bool(0.2) {
            let weight = bmi * (height / 100.0) * (height / 100.0);
            po.push(",");
            push_uint(&mut po.line, height as u64, 1);
            po.push(",");
            push_fixed(&mut po.line, weight, 1);
            po.push(",");
        } else {
            push_fixed(&mut po.line, bmi, 1);
            po.push(",,,");
        }
        push_yes_no(&mut po.line, answer(Blank::Deformity, deformity));
        push_yes_no(&mut po.line, answer(Blank::Implant, implant));
        push_yes_no(&mut po.line, answer(Blank::Fracture, fracture));
        push_yes_no(&mut po.line, answer(Blank::Malignancy, malignancy));
        push_yes_no(&mut po.line, answer(Blank::Steroid, steroid));
        let rc: f64 = rng.random();
        if known(Blank::RadioChemo) {
            if rc < 0.90 {
                po.push("none");
            } else if rc < 0.98 {
                // Long enough before the index date not to exclude.
                push_date(&mut po.line, index - rng.random_range(184..3650));
            } else {
                // Within six months before the index date: excludes (E4).
                push_date(&mut po.line, index - rng.random_range(0..=183));
            }
        }
        po.push(",");
        let house = rng.random_range(1..300u64);
        let street = pick(&mut rng, &STREETS);
        if style < 0.95 {
            let (city, districts) = if site_ix == 0 {
                ("北京市", &PKUPH_DISTRICTS)
            } else {
                ("广州市", &SYSMH_DISTRICTS)
            };
            po.push(city);
            po.push(pick(&mut rng, districts.as_slice()));
            po.push(street);
            po.push(" ");
            push_uint(&mut po.line, house, 1);
            po.push(" 号,");
        } else {
            // A Latin address with a comma, quoted as a real export would.
            po.push("\"");
            push_uint(&mut po.line, house, 1);
            po.push(" Example Street, Apt ");
            push_uint(&mut po.line, house % 40 + 1, 1);
            po.push("\",");
        }
        let mobile = rng.random_range(0..100_000_000u64);
        po.push("+86 1");
        push_uint(&mut po.line, rng.random_range(30..90), 2);
        po.push(" ");
        push_uint(&mut po.line, mobile / 10_000, 4);
        po.push(" ");
        push_uint(&mut po.line, mobile % 10_000, 4);
        po.end()?;

        // dxa.csv: most OP and CONTROL patients, some OA patients.
        if rng.random_bool(if group_ix == 0 { 0.15 } else { 0.9 }) {
            // Mean T-score of the patient by group; regions scatter around it.
            let (mean, sd) = [(-1.2, 1.0), (-2.9, 0.6), (-0.5, 0.9)][group_ix];
            let t_mean = mean + sd * normal(&mut rng);
            let offset = if rng.random_bool(0.05) {
                // Outside the window: 366 to 700 days from the index date, either side.
                let d = rng.random_range(366..=700);
                if rng.random_bool(0.5) { d } else { -d }
            } else {
                rng.random_range(-120..=120)
            };
            // No scan after the last day of recruitment: the exports are taken after
            // it, and a date in the future is refused on import.
            let offset = if index + offset > pro_end {
                -offset
            } else {
                offset
            };
            // Sometimes also an older scan, 1 to 3 years earlier, with a better T-score.
            let older = rng
                .random_bool(0.1)
                .then(|| index + offset - rng.random_range(365..1100));
            let scans = [(older, 0.3), (Some(index + offset), 0.0)];
            let z_shift = 0.025 * f64::from((age - 30).max(0));
            let device = if site_ix == 0 {
                ",Hologic"
            } else {
                ",GE Lunar"
            };
            for (date, better) in scans {
                let Some(date) = date else { continue };
                for (r, region) in REGIONS.iter().enumerate() {
                    let t = (t_mean + better + 0.35 * normal(&mut rng)).clamp(-5.5, 3.5);
                    let t = (t * 10.0).round() / 10.0;
                    let z = (t + z_shift).clamp(-5.5, 4.5);
                    let bmd = if r == 0 {
                        1.00 + 0.12 * t
                    } else {
                        0.86 + 0.12 * t
                    };
                    dout.start(prefix, mrn);
                    push_date(&mut dout.line, date);
                    dout.push(",");
                    dout.push(region);
                    dout.push(",");
                    push_fixed(&mut dout.line, t, 1);
                    dout.push(",");
                    // A few exports leave the Z-score out.
                    if !(r == 1 && rng.random_bool(0.05)) {
                        push_fixed(&mut dout.line, z, 1);
                    }
                    dout.push(",");
                    push_fixed(&mut dout.line, bmd.clamp(0.2, 1.6), 3);
                    dout.push(device);
                    dout.end()?;
                }
            }
        }

        // labs.csv: one panel near the index date, more often for OP and CONTROL.
        if rng.random_bool(if group_ix == 0 { 0.3 } else { 0.6 }) {
            let date = index - rng.random_range(0..=30);
            let ordered_by = if site_ix == 0 {
                ",骨科门诊"
            } else {
                ",Endocrinology"
            };
            for (spellings, unit, low, high) in LAB_PANEL {
                if !rng.random_bool(0.8) {
                    continue;
                }
                let name = pick(&mut rng, spellings);
                let mut v = low + (high - low) * rng.random::<f64>();
                if group_ix == 1 && spellings[0] == "β-CTX" {
                    v *= 1.3; // higher bone resorption in osteoporosis
                }
                lo.start(prefix, mrn);
                push_date(&mut lo.line, date);
                lo.push(",");
                lo.push(name);
                lo.push(",");
                push_fixed(&mut lo.line, v, if high < 10.0 { 2 } else { 1 });
                lo.push(",");
                lo.push(unit);
                lo.push(ordered_by);
                lo.end()?;
            }
        }
    }
    for o in [&mut po, &mut dout, &mut lo] {
        o.w.flush()?;
    }
    Ok(Written {
        patients: po.rows,
        dxa: dout.rows,
        labs: lo.rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::dxa::in_window;
    use crate::domain::eligibility::{MAX_AGE, MIN_AGE};
    use crate::domain::protocol::{Group, Phase, Protocol};
    use crate::domain::records::{self, RowFields};
    use std::collections::{HashMap, HashSet};

    struct Row<'a> {
        columns: &'a HashMap<String, usize>,
        record: &'a csv::StringRecord,
    }

    impl RowFields for Row<'_> {
        fn field(&self, name: &str) -> Option<&str> {
            self.columns.get(name).and_then(|i| self.record.get(*i))
        }
    }

    /// Reads a generated CSV: column index by header name, and every record.
    fn read(path: &Path) -> (HashMap<String, usize>, Vec<csv::StringRecord>) {
        let mut r = csv::Reader::from_path(path).unwrap();
        let columns = r
            .headers()
            .unwrap()
            .iter()
            .enumerate()
            .map(|(i, h)| (h.to_string(), i))
            .collect();
        let rows = r.records().collect::<Result<Vec<_>, _>>().unwrap();
        (columns, rows)
    }

    fn generate(n: usize, seed: u64) -> (tempfile::TempDir, Written) {
        let dir = tempfile::tempdir().unwrap();
        let w = write_exports(dir.path(), n, seed).unwrap();
        (dir, w)
    }

    const FILES: [&str; 3] = ["patients.csv", "dxa.csv", "labs.csv"];

    fn text(f: impl Fn(&mut Vec<u8>)) -> String {
        let mut buf = Vec::new();
        f(&mut buf);
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn numbers_and_dates_are_written_like_format_would() {
        assert_eq!(text(|b| push_uint(b, 0, 1)), "0");
        assert_eq!(text(|b| push_uint(b, 5, 4)), "0005");
        assert_eq!(text(|b| push_uint(b, 1_234_567, 7)), "1234567");
        assert_eq!(text(|b| push_uint(b, 12_345_678, 7)), "12345678");
        assert_eq!(text(|b| push_fixed(b, -2.5, 1)), "-2.5");
        assert_eq!(text(|b| push_fixed(b, -1.0, 1)), "-1.0");
        assert_eq!(text(|b| push_fixed(b, -0.04, 1)), "0.0");
        assert_eq!(text(|b| push_fixed(b, 0.748, 3)), "0.748");
        assert_eq!(text(|b| push_fixed(b, 1.05, 2)), "1.05");
        assert_eq!(text(|b| push_fixed(b, 23.96, 1)), "24.0");
        for k in -60..=40 {
            let t = f64::from(k) / 10.0;
            assert_eq!(text(|b| push_fixed(b, t, 1)), format!("{t:.1}"));
        }
        for (y, m, d) in [(2005, 11, 1), (1999, 12, 31), (2024, 2, 29), (987, 1, 5)] {
            let want = format!("{y:04}-{m:02}-{d:02}");
            assert_eq!(text(|b| push_date(b, day(y, m, d))), want);
        }
    }

    #[test]
    fn same_seed_same_bytes_other_seed_other_bytes() {
        let (a, _) = generate(500, 7);
        let (b, _) = generate(500, 7);
        let (c, _) = generate(500, 8);
        for f in FILES {
            let bytes = std::fs::read(a.path().join(f)).unwrap();
            assert_eq!(bytes, std::fs::read(b.path().join(f)).unwrap(), "{f}");
            assert_ne!(bytes, std::fs::read(c.path().join(f)).unwrap(), "{f}");
        }
    }

    #[test]
    fn counts_match_the_files_and_mrns_are_unique() {
        let (dir, w) = generate(2_000, 1);
        assert_eq!(w.patients, 2_000);
        let (cols, patients) = read(&dir.path().join("patients.csv"));
        assert_eq!(patients.len(), w.patients);
        let (_, dxa) = read(&dir.path().join("dxa.csv"));
        assert_eq!(dxa.len(), w.dxa);
        assert_eq!(w.dxa % 3, 0, "three regions per scan");
        let (_, labs) = read(&dir.path().join("labs.csv"));
        assert_eq!(labs.len(), w.labs);
        assert!(w.labs > 0);
        let mrns: HashSet<&str> = patients.iter().map(|r| &r[cols["mrn"]]).collect();
        assert_eq!(mrns.len(), w.patients);
    }

    #[test]
    fn no_patients_gives_headers_only() {
        let (dir, w) = generate(0, 3);
        assert_eq!((w.patients, w.dxa, w.labs), (0, 0, 0));
        let text = std::fs::read_to_string(dir.path().join("patients.csv")).unwrap();
        assert_eq!(text, format!("{PATIENT_HEADER}\n"));
    }

    #[test]
    fn every_row_is_valid_for_the_importer() {
        let protocol = Protocol::default();
        let today = crate::domain::clock::today_local();
        let (dir, _) = generate(3_000, 42);
        let (cols, patients) = read(&dir.path().join("patients.csv"));
        let mut mrns = HashSet::new();
        for (i, rec) in patients.iter().enumerate() {
            assert_eq!(
                rec.len(),
                cols.len(),
                "patients row {} has the wrong width",
                i + 2
            );
            let row = Row {
                columns: &cols,
                record: rec,
            };
            let (mrn, _) = records::parse_patient(&row, &protocol, today)
                .unwrap_or_else(|e| panic!("patients row {}: {e}: {rec:?}", i + 2));
            mrns.insert(mrn);
        }
        let (cols, dxa) = read(&dir.path().join("dxa.csv"));
        let mut scans = HashSet::new();
        for (i, rec) in dxa.iter().enumerate() {
            let row = Row {
                columns: &cols,
                record: rec,
            };
            let (mrn, d) = records::parse_dxa(&row, today)
                .unwrap_or_else(|e| panic!("dxa row {}: {e}: {rec:?}", i + 2));
            assert!(mrns.contains(&mrn), "dxa row {}: unknown mrn {mrn}", i + 2);
            assert!(
                scans.insert((mrn, d.scan_date, d.region)),
                "dxa row {} repeats",
                i + 2
            );
        }
        let (cols, labs) = read(&dir.path().join("labs.csv"));
        let mut results = HashSet::new();
        for (i, rec) in labs.iter().enumerate() {
            let row = Row {
                columns: &cols,
                record: rec,
            };
            let (mrn, l) = records::parse_lab(&row, today)
                .unwrap_or_else(|e| panic!("labs row {}: {e}: {rec:?}", i + 2));
            assert!(mrns.contains(&mrn), "labs row {}: unknown mrn {mrn}", i + 2);
            assert!(
                results.insert((mrn, l.date, l.analyte)),
                "labs row {} repeats",
                i + 2
            );
        }
    }

    #[test]
    fn the_mix_looks_like_the_study() {
        let protocol = Protocol::default();
        let today = crate::domain::clock::today_local();
        let n = 6_000;
        let (dir, _) = generate(n, 2026);
        let (cols, patients) = read(&dir.path().join("patients.csv"));
        let (dcols, dxa) = read(&dir.path().join("dxa.csv"));
        let mut scan_dates: HashMap<&str, Vec<NaiveDate>> = HashMap::new();
        for rec in &dxa {
            let d = records::parse_date("scan_date", &rec[dcols["scan_date"]]).unwrap();
            scan_dates.entry(&rec[dcols["mrn"]]).or_default().push(d);
        }
        let mut cohorts = HashMap::new();
        let (mut retro, mut out_of_range, mut in_40_85, mut unknown) = (0, 0, 0, 0);
        let (mut needs_dxa, mut with_dxa, mut outside_window) = (0, 0, 0);
        let mut names = HashSet::new();
        for rec in &patients {
            let row = Row {
                columns: &cols,
                record: rec,
            };
            let (mrn, p) = records::parse_patient(&row, &protocol, today).unwrap();
            *cohorts
                .entry((p.site.clone(), p.group, p.phase))
                .or_insert(0) += 1;
            retro += usize::from(p.phase == Phase::Retrospective);
            match p.age {
                Some(a) if !(MIN_AGE..=MAX_AGE).contains(&a) => out_of_range += 1,
                Some(a) if (40..=85).contains(&a) => in_40_85 += 1,
                _ => {}
            }
            let fields = [
                "sex",
                "birth_date",
                "index_date",
                "deformity",
                "implant",
                "pathological_fracture",
                "malignancy",
                "steroid_long_term",
                "radio_chemo_last",
            ];
            unknown += usize::from(fields.iter().any(|f| rec[cols[*f]].is_empty()));
            names.insert(rec[cols["name"]].to_string());
            if p.group != Group::Oa {
                needs_dxa += 1;
                if let Some(dates) = scan_dates.get(mrn.as_str()) {
                    with_dxa += 1;
                    if let Some(i) = p.index_date {
                        outside_window += usize::from(!dates.iter().any(|d| in_window(*d, i, 365)));
                    }
                }
            }
        }
        let share = |k: usize| k as f64 / n as f64;
        assert_eq!(cohorts.len(), 12, "every site x group x phase: {cohorts:?}");
        assert!(
            (0.70..0.80).contains(&share(retro)),
            "retrospective {retro}"
        );
        assert!(
            (0.01..0.06).contains(&share(out_of_range)),
            "outside 18-90: {out_of_range}"
        );
        assert!(share(in_40_85) > 0.85, "ages 40-85: {in_40_85}");
        assert!(
            (0.06..0.14).contains(&share(unknown)),
            "unknowns: {unknown}"
        );
        let dxa_share = with_dxa as f64 / needs_dxa as f64;
        assert!(
            (0.85..0.95).contains(&dxa_share),
            "OP/CONTROL with DXA: {dxa_share}"
        );
        assert!(
            outside_window > 0 && outside_window * 10 < with_dxa,
            "{outside_window}"
        );
        assert!(names.len() > 100, "names vary");
    }

    #[test]
    fn t_scores_follow_the_group() {
        let (dir, _) = generate(3_000, 5);
        let (cols, patients) = read(&dir.path().join("patients.csv"));
        let group: HashMap<&str, &str> = patients
            .iter()
            .map(|r| (&r[cols["mrn"]], &r[cols["group"]]))
            .collect();
        let (dcols, dxa) = read(&dir.path().join("dxa.csv"));
        let mut sums: HashMap<&str, (f64, usize)> = HashMap::new();
        for rec in &dxa {
            let t: f64 = rec[dcols["t_score"]].parse().unwrap();
            let e = sums.entry(group[&rec[dcols["mrn"]]]).or_default();
            e.0 += t;
            e.1 += 1;
        }
        let mean = |g: &str| sums[g].0 / sums[g].1 as f64;
        assert!(mean("OP") < -2.3, "OP {}", mean("OP"));
        assert!(mean("CONTROL") > -1.0, "CONTROL {}", mean("CONTROL"));
        assert!(mean("OP") < mean("OA") && mean("OA") < mean("CONTROL"));
    }
}
