//! Privacy end to end (issue 7, item 5): hospital exports and radiographs full of
//! identifiers — names in Latin with diacritics, Cyrillic, Greek, CJK and Arabic, MRNs,
//! birth dates, addresses, phone numbers, institutions, physicians, accession
//! numbers, private tags and free-text comments — go in through the real binary, then
//! every export and the report are written, and none of the identifiers may be found
//! in the decrypted database, in any file beside it (the store, the log, the WAL), in
//! any export, or on any TUI screen.
//!
//! Each identifier is first searched for in the input files with the same search
//! (UTF-8, and the DICOM file's own character set where it has one), so a search that
//! could never find anything fails the test instead of passing it.

mod common;
#[path = "common/driver.rs"]
mod driver;
use common::*;
use crossterm::event::{KeyCode, KeyModifiers};
use dicom_core::value::DataSetSequence;
use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_object::{InMemDicomObject, meta::FileMetaTableBuilder};
use driver::{Driver, Pace};
use marrow::tui::{LoadState, Screen};
use std::path::{Path, PathBuf};

const DX_CLASS: &str = "1.2.840.10008.5.1.4.1.1.1.1";
const EXPLICIT_LE: &str = "1.2.840.10008.1.2.1";

/// The DICOM character sets the radiographs are written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Charset {
    /// ISO_IR 100, Latin-1.
    Latin1,
    /// ISO_IR 144, ISO 8859-5.
    Cyrillic,
    /// ISO_IR 126, ISO 8859-7.
    Greek,
    /// ISO_IR 127, ISO 8859-6.
    Arabic,
    /// ISO_IR 192, UTF-8.
    Utf8,
}

impl Charset {
    const ALL: [Charset; 5] = [
        Charset::Latin1,
        Charset::Cyrillic,
        Charset::Greek,
        Charset::Arabic,
        Charset::Utf8,
    ];

    fn term(self) -> &'static str {
        match self {
            Charset::Latin1 => "ISO_IR 100",
            Charset::Cyrillic => "ISO_IR 144",
            Charset::Greek => "ISO_IR 126",
            Charset::Arabic => "ISO_IR 127",
            Charset::Utf8 => "ISO_IR 192",
        }
    }

    /// `s` in this character set, or `None` when a character has no code in it.
    fn encode(self, s: &str) -> Option<Vec<u8>> {
        if self == Charset::Utf8 {
            return Some(s.as_bytes().to_vec());
        }
        s.chars()
            .map(|c| {
                let u = c as u32;
                if u < 0x80 {
                    return Some(u as u8);
                }
                let (lo, hi, offset) = match self {
                    Charset::Latin1 => (0xA0, 0xFF, 0),
                    // А..я
                    Charset::Cyrillic => (0x0410, 0x044F, 0x0360),
                    // Α..ω
                    Charset::Greek => (0x0391, 0x03C9, 0x02D0),
                    // ء..ْ
                    Charset::Arabic => (0x0621, 0x0652, 0x0560),
                    Charset::Utf8 => unreachable!(),
                };
                (lo..=hi).contains(&u).then(|| (u - offset) as u8)
            })
            .collect()
    }
}

/// One patient of the exports, with the identifiers its rows and radiograph carry.
struct Person {
    mrn: &'static str,
    site: &'static str,
    group: &'static str,
    /// Known to the patients export (else its radiograph waits in quarantine).
    in_csv: bool,
    /// DICOM PN: family^given, in `charset`.
    dicom_name: &'static str,
    /// The name as the CSV export spells it.
    csv_name: &'static str,
    birth: (&'static str, &'static str, &'static str),
    address: &'static str,
    phone: &'static str,
    institution: &'static str,
    physician: &'static str,
    accession: &'static str,
    comment: &'static str,
    charset: Charset,
}

const PEOPLE: &[Person] = &[
    Person {
        mrn: "PKU0088123",
        site: "PKUPH",
        group: "OA",
        in_csv: true,
        dicom_name: "MÜLLER-LÜDENSCHEIDT^FRANÇOISE",
        csv_name: "Françoise Müller-Lüdenscheidt",
        birth: ("1951", "02", "17"),
        address: "17 Rue des Écoles, Besançon",
        phone: "+33 3 81 66 42 17",
        institution: "Hôpital Saint-Éloi",
        physician: "BRØNNUM-SØRENSEN^ÅSE",
        accession: "ACC-PKU-20240501-77",
        comment: "prefers visits near Gare de Lyon",
        charset: Charset::Latin1,
    },
    Person {
        mrn: "PKU0088124",
        site: "PKUPH",
        group: "OP",
        in_csv: true,
        dicom_name: "СИДОРОВА^СВЕТЛАНА",
        csv_name: "Сидорова Светлана Петровна",
        birth: ("1949", "11", "23"),
        address: "Тверская улица 12",
        phone: "+7 495 123-45-67",
        institution: "КЛИНИКА ЗДОРОВЬЕ",
        physician: "ЛЕБЕДЕВА^ОЛЬГА",
        accession: "ACC-PKU-20240502-81",
        comment: "Внучка Марина звонит",
        charset: Charset::Cyrillic,
    },
    Person {
        mrn: "SYS7731905",
        site: "SYSMH",
        group: "OA",
        in_csv: true,
        dicom_name: "ΠΑΠΑΔΟΠΟΥΛΟΥ^ΕΛΕΝΗ",
        csv_name: "Παπαδοπούλου Ελένη",
        birth: ("1957", "08", "09"),
        address: "ΟΔΟΣ ΕΡΜΟΥ 45",
        phone: "+30 210 555 0199",
        institution: "ΝΟΣΟΚΟΜΕΙΟ ΕΥΑΓΓΕΛΙΣΜΟΣ",
        physician: "ΚΩΝΣΤΑΝΤΙΝΟΥ^ΝΙΚΟΣ",
        accession: "ACC-SYS-88421",
        comment: "ΚΟΡΗ ΜΑΡΙΑ ΣΥΝΟΔΕΥΕΙ",
        charset: Charset::Greek,
    },
    Person {
        mrn: "SYS7731906",
        site: "SYSMH",
        group: "OP",
        in_csv: true,
        dicom_name: "الحسيني^محمد",
        csv_name: "محمد الحسيني",
        birth: ("1962", "04", "30"),
        address: "شارع الملك فهد",
        phone: "+966 11 465 9087",
        institution: "مستشفى الملك فيصل",
        physician: "العتيبي^سعاد",
        accession: "ACC-SYS-88422",
        comment: "ابنه خالد يترجم",
        charset: Charset::Arabic,
    },
    Person {
        mrn: "PKU0088125",
        site: "PKUPH",
        group: "CONTROL",
        in_csv: true,
        dicom_name: "王^秀英",
        csv_name: "王秀英 (Żółkiewska)",
        birth: ("1966", "12", "05"),
        address: "北京市西城区西直门南大街11号",
        phone: "+86 10 8832 7766",
        institution: "北京大学人民医院",
        physician: "Żółkiewska^Dvořáková",
        accession: "ACC-PKU-20240503-90",
        comment: "女儿张伟陪同就诊",
        charset: Charset::Utf8,
    },
    // No patients row: the radiograph waits in quarantine, identified by its hash only.
    Person {
        mrn: "PKU0099999",
        site: "PKUPH",
        group: "OA",
        in_csv: false,
        dicom_name: "Dvořáčková^Žofie",
        csv_name: "",
        birth: ("1955", "06", "21"),
        address: "Náměstí Míru 1820",
        phone: "+420 224 999 321",
        institution: "Fakultní nemocnice Motol",
        physician: "Hrabětová^Lucie",
        accession: "ACC-PKU-QUAR-5150",
        comment: "čeká na ortopedii",
        charset: Charset::Utf8,
    },
];

/// Identifiers that are the same for every file (private tags, other IDs).
const PRIVATE_CREATOR: &str = "ACME RADIOLOGY PRIVATE";
const PRIVATE_NAME: &str = "ZHANG^PRIVATE^WEI";
const OTHER_ID: &str = "OTHERID-55501";
const OPERATOR: &str = "OPERATOR^KOWALCZYK";
const EMAIL: &str = "francoise.muller@example.fr";
const STATION: &str = "KNEE-ROOM-WANG-3";

impl Person {
    fn birth_iso(&self) -> String {
        format!("{}-{}-{}", self.birth.0, self.birth.1, self.birth.2)
    }
    fn birth_dicom(&self) -> String {
        format!("{}{}{}", self.birth.0, self.birth.1, self.birth.2)
    }

    /// Every string of this person that must never be found after the import.
    fn identifiers(&self) -> Vec<String> {
        let mut v = vec![
            self.mrn.to_string(),
            self.birth_dicom(),
            self.address.to_string(),
            self.phone.to_string(),
            self.institution.to_string(),
            self.accession.to_string(),
            self.comment.to_string(),
        ];
        // Name parts shorter than 6 bytes (a one-character family name) would match
        // by chance in encrypted or pixel bytes; the whole names are searched too.
        for part in self.dicom_name.split('^').chain(self.physician.split('^')) {
            if part.len() >= 6 {
                v.push(part.to_string());
            }
        }
        v.push(self.dicom_name.to_string());
        v.push(self.physician.to_string());
        if self.in_csv {
            v.push(self.csv_name.to_string());
            v.push(self.birth_iso());
        }
        v
    }
}

/// Identifiers not tied to one person.
fn shared_identifiers() -> Vec<String> {
    [
        PRIVATE_NAME,
        OTHER_ID,
        OPERATOR,
        EMAIL,
        STATION,
        "Brønnum",
        "Rue des Écoles",
        "Peking University",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn all_identifiers() -> Vec<String> {
    let mut v: Vec<String> = PEOPLE.iter().flat_map(Person::identifiers).collect();
    v.extend(shared_identifiers());
    v.sort();
    v.dedup();
    v
}

/// The byte forms an identifier is searched for: UTF-8, its upper and lower case,
/// and each DICOM character set that can spell it (when that is a different byte string
/// of at least 5 bytes, too long to occur by chance).
fn needles(id: &str) -> Vec<Vec<u8>> {
    let mut out = vec![
        id.as_bytes().to_vec(),
        id.to_uppercase().into_bytes(),
        id.to_lowercase().into_bytes(),
    ];
    for cs in Charset::ALL {
        if let Some(b) = cs.encode(id)
            && b.len() >= 5
        {
            out.push(b);
        }
    }
    out.sort();
    out.dedup();
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    memchr::memmem::find(hay, needle).is_some()
}

/// The identifiers found in `hay` (in any of their byte forms).
fn found_in(hay: &[u8], ids: &[String]) -> Vec<String> {
    ids.iter()
        .filter(|id| needles(id).iter().any(|n| contains(hay, n)))
        .cloned()
        .collect()
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_file())
        .map(|e| e.into_path())
        .collect();
    v.sort();
    v
}

// ---------------------------------------------------------------------------
// Inputs
// ---------------------------------------------------------------------------

fn csv_field(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

fn patients_csv() -> String {
    let mut s = String::from(
        "mrn,site,phase,group,sex,birth_date,index_date,deformity,implant,pathological_fracture,\
         malignancy,steroid_long_term,radio_chemo_last,name,address,phone,physician,institution,\
         email,other_id,comment\n",
    );
    for p in PEOPLE.iter().filter(|p| p.in_csv) {
        let row = [
            p.mrn.to_string(),
            p.site.into(),
            "retrospective".into(),
            p.group.into(),
            "F".into(),
            p.birth_iso(),
            "2024-05-01".into(),
            "no".into(),
            "no".into(),
            "no".into(),
            "no".into(),
            "no".into(),
            "none".into(),
            csv_field(p.csv_name),
            csv_field(p.address),
            csv_field(p.phone),
            csv_field(p.physician),
            csv_field(p.institution),
            EMAIL.into(),
            OTHER_ID.into(),
            csv_field(p.comment),
        ];
        s.push_str(&row.join(","));
        s.push('\n');
    }
    s
}

fn dxa_csv() -> String {
    let mut s =
        String::from("mrn,scan_date,region,t_score,z_score,patient_name,operator,comment\n");
    for p in PEOPLE.iter().filter(|p| p.in_csv) {
        for (region, t) in [("total_hip", "-2.7"), ("lumbar_spine", "-1.2")] {
            s.push_str(&format!(
                "{},2024-05-10,{region},{t},-0.4,{},{OPERATOR},{}\n",
                p.mrn,
                csv_field(p.csv_name),
                csv_field(p.comment)
            ));
        }
    }
    s
}

fn labs_csv() -> String {
    let mut s = String::from("mrn,date,analyte,value,unit,ordering_physician,birth_date,comment\n");
    for p in PEOPLE.iter().filter(|p| p.in_csv) {
        s.push_str(&format!(
            "{},2024-05-02,calcium,2.3,mmol/L,{},{},{}\n",
            p.mrn,
            csv_field(p.physician),
            p.birth_iso(),
            csv_field(p.comment)
        ));
    }
    s
}

fn followup_csv() -> String {
    let mut s = String::from("mrn,visit_month,visit_date,vas,oks,patient_name,phone,comment\n");
    for p in PEOPLE.iter().filter(|p| p.in_csv) {
        s.push_str(&format!(
            "{},6,2024-11-02,4,30,{},{},{}\n",
            p.mrn,
            csv_field(p.csv_name),
            csv_field(p.phone),
            csv_field(p.comment)
        ));
    }
    s
}

/// A text element in the file's character set (raw bytes, padded to even length).
fn put_text(obj: &mut InMemDicomObject, cs: Charset, g: u16, e: u16, vr: VR, v: &str) {
    let mut bytes = cs
        .encode(v)
        .unwrap_or_else(|| panic!("{v} has no spelling in {cs:?}"));
    if bytes.len() % 2 == 1 {
        bytes.push(b' ');
    }
    obj.put(DataElement::new(
        Tag(g, e),
        vr,
        PrimitiveValue::U8(bytes.into()),
    ));
}

fn put_ascii(obj: &mut InMemDicomObject, g: u16, e: u16, vr: VR, v: &str) {
    obj.put(DataElement::new(Tag(g, e), vr, PrimitiveValue::from(v)));
}

/// An 8x8 16-bit knee radiograph full of `p`'s identifiers, in `p.charset`.
fn write_dicom(path: &Path, p: &Person, n: usize) {
    let cs = p.charset;
    let mut obj = InMemDicomObject::new_empty();
    let sop = format!("1.2.826.0.1.3680043.9.7781.{n}.1");
    put_ascii(&mut obj, 0x0008, 0x0005, VR::CS, cs.term());
    put_ascii(&mut obj, 0x0008, 0x0016, VR::UI, DX_CLASS);
    put_ascii(&mut obj, 0x0008, 0x0018, VR::UI, &sop);
    put_ascii(&mut obj, 0x0008, 0x0020, VR::DA, "20240501");
    put_ascii(&mut obj, 0x0008, 0x0030, VR::TM, "101500");
    put_ascii(&mut obj, 0x0008, 0x0050, VR::SH, p.accession);
    put_ascii(&mut obj, 0x0008, 0x0060, VR::CS, "DX");
    put_text(&mut obj, cs, 0x0008, 0x0080, VR::LO, p.institution);
    put_text(&mut obj, cs, 0x0008, 0x0081, VR::ST, p.address);
    put_text(&mut obj, cs, 0x0008, 0x0090, VR::PN, p.physician);
    put_ascii(&mut obj, 0x0008, 0x1010, VR::SH, STATION);
    put_text(&mut obj, cs, 0x0008, 0x1030, VR::LO, p.dicom_name);
    put_ascii(
        &mut obj,
        0x0008,
        0x1040,
        VR::LO,
        "Peking University Radiology",
    );
    put_text(&mut obj, cs, 0x0008, 0x1050, VR::PN, p.physician);
    put_ascii(&mut obj, 0x0008, 0x1070, VR::PN, OPERATOR);
    // a private block with a name in it
    put_ascii(&mut obj, 0x0009, 0x0010, VR::LO, PRIVATE_CREATOR);
    put_ascii(&mut obj, 0x0009, 0x1001, VR::LO, PRIVATE_NAME);
    put_text(&mut obj, cs, 0x0009, 0x1002, VR::LO, p.comment);
    put_text(&mut obj, cs, 0x0010, 0x0010, VR::PN, p.dicom_name);
    put_ascii(&mut obj, 0x0010, 0x0020, VR::LO, p.mrn);
    put_ascii(&mut obj, 0x0010, 0x0030, VR::DA, &p.birth_dicom());
    put_ascii(&mut obj, 0x0010, 0x0040, VR::CS, "F");
    put_ascii(&mut obj, 0x0010, 0x1000, VR::LO, OTHER_ID);
    put_text(&mut obj, cs, 0x0010, 0x1040, VR::LO, p.address);
    put_ascii(&mut obj, 0x0010, 0x2154, VR::SH, p.phone);
    put_text(&mut obj, cs, 0x0010, 0x4000, VR::LT, p.comment);
    put_ascii(&mut obj, 0x0018, 0x0015, VR::CS, "KNEE");
    put_ascii(&mut obj, 0x0018, 0x5101, VR::CS, "AP");
    put_ascii(
        &mut obj,
        0x0020,
        0x000D,
        VR::UI,
        &format!("1.2.826.0.1.3680043.9.7781.{n}"),
    );
    put_ascii(
        &mut obj,
        0x0020,
        0x000E,
        VR::UI,
        &format!("1.2.826.0.1.3680043.9.7781.{n}.0"),
    );
    put_ascii(&mut obj, 0x0020, 0x0010, VR::SH, p.accession);
    put_ascii(&mut obj, 0x0020, 0x0062, VR::CS, "L");
    put_text(&mut obj, cs, 0x0020, 0x4000, VR::LT, p.comment);
    // a sequence with a requesting physician and the patient's name inside
    let mut item = InMemDicomObject::new_empty();
    put_text(&mut item, cs, 0x0032, 0x1032, VR::PN, p.physician);
    put_text(&mut item, cs, 0x0040, 0x0007, VR::LO, p.dicom_name);
    put_ascii(&mut item, 0x0040, 0x1001, VR::SH, p.accession);
    obj.put(DataElement::new(
        Tag(0x0040, 0x0275),
        VR::SQ,
        DataSetSequence::from(vec![item]),
    ));
    put_ascii(&mut obj, 0x0028, 0x0004, VR::CS, "MONOCHROME2");
    put_ascii(&mut obj, 0x0028, 0x0030, VR::DS, "0.14\\0.15");
    for (e, v) in [
        (0x0002u16, 1u16),
        (0x0010, 8),
        (0x0011, 8),
        (0x0100, 16),
        (0x0101, 12),
        (0x0102, 11),
        (0x0103, 0),
    ] {
        obj.put(DataElement::new(
            Tag(0x0028, e),
            VR::US,
            PrimitiveValue::from(v),
        ));
    }
    let pixels: Vec<u16> = (0..64u16).map(|i| i * 61 + n as u16).collect();
    obj.put(DataElement::new(
        Tag(0x7FE0, 0x0010),
        VR::OW,
        PrimitiveValue::U16(pixels.into()),
    ));
    let file = obj
        .with_meta(FileMetaTableBuilder::new().transfer_syntax(EXPLICIT_LE))
        .expect("meta");
    file.write_to_file(path).expect("write dicom");
}

// ---------------------------------------------------------------------------
// Where identifiers could end up
// ---------------------------------------------------------------------------

/// Every text and blob value of every table of the decrypted database.
fn dump_database(db: &Path) -> (Vec<u8>, usize) {
    let raw = raw_connection(db);
    let tables: Vec<String> = raw
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    let mut all = Vec::new();
    let mut values = 0;
    for t in &tables {
        let mut st = raw.prepare(&format!("SELECT * FROM \"{t}\"")).unwrap();
        let n = st.column_count();
        let mut rows = st.query([]).unwrap();
        while let Some(row) = rows.next().unwrap() {
            for i in 0..n {
                match row.get_ref(i).unwrap() {
                    rusqlite::types::ValueRef::Text(b) | rusqlite::types::ValueRef::Blob(b) => {
                        all.extend_from_slice(b);
                        all.push(b'\n');
                        values += 1;
                    }
                    _ => {}
                }
            }
        }
    }
    (all, values)
}

/// Every screen the admin can reach with the patients' data on it, as text.
fn tui_screens(db: &Path, patients: usize) -> Vec<(String, String)> {
    let mut d = Driver::start_db(db, None, Pace::Free);
    let mut screens = Vec::new();
    d.until("the worklist", |a| *a.worklist_state() == LoadState::Loaded);
    assert_eq!(d.app.visible_len(), patients, "{}", d.screen(160, 50));
    screens.push(("worklist".to_string(), d.screen(160, 50)));
    for i in 0..patients {
        let sid = d.app.selected_patient().unwrap().study_id.clone();
        d.key(KeyCode::Enter, KeyModifiers::NONE);
        d.until("the patient", |a| {
            a.patient_detail()
                .is_some_and(|p| p.summary.study_id == sid)
                && a.patient_state() == Some(&LoadState::Loaded)
        });
        assert_eq!(d.app.screen(), Screen::Patient);
        screens.push((format!("patient {sid}"), d.screen(160, 50)));
        d.key(KeyCode::Char('i'), KeyModifiers::NONE);
        d.until("the images", |a| {
            a.images().is_some_and(|v| !v.rows().is_empty())
        });
        assert_eq!(d.app.screen(), Screen::Images);
        let images = d.screen(160, 50);
        assert!(images.contains("KNEE") || images.contains("DX"), "{images}");
        screens.push((format!("images {sid}"), images));
        d.key(KeyCode::Esc, KeyModifiers::NONE);
        d.key(KeyCode::Esc, KeyModifiers::NONE);
        assert_eq!(d.app.screen(), Screen::Worklist, "{}", d.screen(160, 50));
        if i + 1 < patients {
            d.key(KeyCode::Char('j'), KeyModifiers::NONE);
        }
    }
    d.key(KeyCode::Char('D'), KeyModifiers::NONE);
    d.until("the dashboard", |a| {
        a.dashboard_view()
            .is_some_and(|v| *v.state() == LoadState::Loaded)
    });
    screens.push(("dashboard".to_string(), d.screen(160, 50)));
    d.key(KeyCode::Esc, KeyModifiers::NONE);
    d.key(KeyCode::Char('F'), KeyModifiers::NONE);
    screens.push(("follow-up".to_string(), d.screen(160, 50)));
    d.worker.stop();
    screens
}

#[test]
fn identifiers_in_every_script_reach_no_table_file_export_log_or_screen() {
    let s = TempStudy::init();
    let ids = all_identifiers();
    let input = tempfile::tempdir().unwrap();
    let inp = |n: &str| input.path().join(n);

    // The inputs, full of identifiers.
    std::fs::write(inp("patients.csv"), patients_csv()).unwrap();
    std::fs::write(inp("dxa.csv"), dxa_csv()).unwrap();
    std::fs::write(inp("labs.csv"), labs_csv()).unwrap();
    std::fs::write(inp("followup.csv"), followup_csv()).unwrap();
    let dicom = inp("dicom");
    std::fs::create_dir_all(&dicom).unwrap();
    for (n, p) in PEOPLE.iter().enumerate() {
        write_dicom(&dicom.join(format!("{n}.dcm")), p, n);
    }

    // The search works: every identifier is found in the inputs, and each DICOM file
    // holds its patient's name in its own character set (not in UTF-8 unless that is it).
    let mut inputs = Vec::new();
    for f in files_under(input.path()) {
        inputs.extend(std::fs::read(&f).unwrap());
    }
    let found = found_in(&inputs, &ids);
    let missing: Vec<&String> = ids.iter().filter(|i| !found.contains(i)).collect();
    assert!(missing.is_empty(), "not in the inputs: {missing:?}");
    for (n, p) in PEOPLE.iter().enumerate() {
        let bytes = std::fs::read(dicom.join(format!("{n}.dcm"))).unwrap();
        let family = p.dicom_name.split('^').next().unwrap();
        assert!(contains(&bytes, &p.charset.encode(family).unwrap()));
        assert!(contains(&bytes, p.charset.term().as_bytes()));
        if p.charset != Charset::Utf8 {
            assert!(
                !contains(&bytes, family.as_bytes()),
                "{family} should be in {:?} only",
                p.charset
            );
        }
    }

    // Everything goes in through the binary.
    let arg = |p: PathBuf| p.to_str().unwrap().to_string();
    let out = s.expect(&["import", "patients", &arg(inp("patients.csv"))], 0);
    assert!(out.contains("5 added"), "{out}");
    s.expect(&["import", "dxa", &arg(inp("dxa.csv"))], 0);
    s.expect(&["import", "labs", &arg(inp("labs.csv"))], 0);
    s.expect(&["import", "followup", &arg(inp("followup.csv"))], 0);
    let out = s.expect(&["import", "dicom", &arg(dicom.clone())], 0);
    assert!(
        out.contains("6 files: 6 imported (1 waiting"),
        "every radiograph goes in, one waits for its patient:\n{out}"
    );
    s.expect(&["cases", "refresh"], 0);
    s.expect(&["audit", "verify"], 0);

    // Every export and the report.
    let exports = tempfile::tempdir().unwrap();
    let ex = |n: &str| exports.path().join(n).to_str().unwrap().to_string();
    s.expect(&["export", "analysis", "--out", &ex("analysis.csv")], 0);
    s.expect(&["export", "consort", "--out", &ex("consort.json")], 0);
    s.expect(
        &[
            "export",
            "consort",
            "--format",
            "svg",
            "--out",
            &ex("consort.svg"),
        ],
        0,
    );
    s.expect(&["export", "summary", "--out", &ex("summary.json")], 0);
    s.expect(&["report", "--out", &ex("report")], 0);
    // What the command line prints about the study (not the imports' own messages,
    // which quote the rows of the user's own file back to them).
    let mut printed = String::new();
    for args in [
        &["status"][..],
        &["patients", "--json"],
        &["flags"],
        &["cases", "--json"],
        &["audit", "log", "--json"],
    ] {
        printed.push_str(&s.expect(args, 0));
    }
    for sid in ["PKUPH-OA-0001", "PKUPH-OP-0001", "SYSMH-OA-0001"] {
        printed.push_str(&s.expect(&["screen", sid, "--json"], 0));
    }

    // 1. The decrypted database.
    let (dump, values) = dump_database(&s.db);
    assert!(values > 100, "the dump saw only {values} values");
    assert!(contains(&dump, b"PKUPH-OA-0001"), "the dump saw no patient");
    let leaked = found_in(&dump, &ids);
    assert!(leaked.is_empty(), "in the database: {leaked:?}");

    // 2. Every file beside the database: the store, the log, the WAL, the key.
    let study_files = files_under(s.dir.path());
    let store: Vec<&PathBuf> = study_files
        .iter()
        .filter(|p| p.to_string_lossy().contains(".store/"))
        .collect();
    assert!(
        store
            .iter()
            .filter(|p| p.extension().is_some_and(|e| e == "dcm"))
            .count()
            >= 6,
        "the store holds the copies: {store:?}"
    );
    let log = study_files
        .iter()
        .find(|p| p.extension().is_some_and(|e| e == "log"))
        .expect("a log beside the database");
    let log_text = std::fs::read_to_string(log).unwrap();
    assert!(log_text.contains("dicom import done"), "{log_text}");
    for f in &study_files {
        let leaked = found_in(&std::fs::read(f).unwrap(), &ids);
        assert!(leaked.is_empty(), "in {}: {leaked:?}", f.display());
    }

    // 3. Every export file.
    let export_files = files_under(exports.path());
    assert!(export_files.len() >= 6, "{export_files:?}");
    let analysis = std::fs::read_to_string(exports.path().join("analysis.csv")).unwrap();
    assert!(analysis.lines().count() >= 1, "{analysis}");
    for f in &export_files {
        let leaked = found_in(&std::fs::read(f).unwrap(), &ids);
        assert!(
            leaked.is_empty(),
            "in the export {}: {leaked:?}",
            f.display()
        );
    }
    let leaked = found_in(printed.as_bytes(), &ids);
    assert!(leaked.is_empty(), "printed by marrow: {leaked:?}");

    // 4. Every TUI screen with the patients' data on it.
    let screens = tui_screens(&s.db, 5);
    assert!(screens.len() >= 12, "{}", screens.len());
    for (name, text) in &screens {
        let leaked = found_in(text.as_bytes(), &ids);
        assert!(
            leaked.is_empty(),
            "on the {name} screen: {leaked:?}\n{text}"
        );
    }
}

/// The search itself: an identifier put into a file in a DICOM character set is
/// found there, and one that is not there is not.
#[test]
fn the_search_finds_identifiers_in_every_character_set() {
    for p in PEOPLE {
        let name = p.dicom_name.split('^').next().unwrap();
        let native = p.charset.encode(name).unwrap();
        let mut hay = b"\x00\x01prefix ".to_vec();
        hay.extend(&native);
        hay.extend(b" suffix");
        assert_eq!(found_in(&hay, &[name.to_string()]), vec![name.to_string()]);
        assert!(found_in(b"nothing here", &[name.to_string()]).is_empty());
    }
    assert_eq!(Charset::Cyrillic.encode("СИ"), Some(vec![0xC1, 0xB8]));
    assert_eq!(Charset::Greek.encode("ΠΑ"), Some(vec![0xD0, 0xC1]));
    assert_eq!(Charset::Arabic.encode("م"), Some(vec![0xE5]));
    assert_eq!(Charset::Latin1.encode("Ü"), Some(vec![0xDC]));
    assert_eq!(Charset::Latin1.encode("Ł"), None);
}
