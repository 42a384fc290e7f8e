//! Issue 5: inference jobs, stored predictions and their blinding, training a new
//! model version on the study's final grades, and the primary outcome table, on the
//! demo study (built once, copied for each test that changes it).

mod common;

use common::demo::demo;
use common::{stderr, stdout};
use marrow::db::Study;
use marrow::db::inference::JobState;
use marrow::db::reading::Blinded;
use marrow::domain::reading::{Grade, Oarsi, ReadInput};
use std::path::PathBuf;

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

fn count(study: &Study, sql: &str) -> i64 {
    study.conn().query_row(sql, [], |r| r.get(0)).unwrap()
}

#[test]
fn the_demo_predicts_every_image_the_models_use_and_a_second_run_has_nothing_pending() {
    let s = demo();
    let study = s.open();
    // What the shipped cards name: DX/CR knees of one side in AP or PA view (the
    // fixtures' lateral knee view is skipped), DX/CR hips in AP view.
    let knees = count(
        &study,
        "SELECT count(*) FROM image_instances i JOIN image_series se ON se.id = i.series \
         WHERE i.patient_id IS NOT NULL AND se.body_part = 'KNEE' AND i.laterality IN ('L', 'R') \
         AND se.modality IN ('DX', 'CR') AND i.view_position IN ('AP', 'PA')",
    );
    let hips = count(
        &study,
        "SELECT count(*) FROM image_instances i JOIN image_series se ON se.id = i.series \
         WHERE i.patient_id IS NOT NULL AND se.body_part = 'HIP' \
         AND se.modality IN ('DX', 'CR') AND i.view_position = 'AP'",
    );
    assert!(knees >= 100 && hips >= 50, "knees {knees}, hips {hips}");
    assert_eq!(
        count(&study, "SELECT count(*) FROM predictions WHERE task = 'kl'"),
        knees
    );
    assert_eq!(
        count(&study, "SELECT count(*) FROM predictions WHERE task = 'op'"),
        hips
    );
    // Probabilities sum to one and the stored class is the most probable.
    let mut st = study
        .conn()
        .prepare("SELECT class, probs FROM predictions")
        .unwrap();
    let rows: Vec<(i64, String)> = st
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    for (class, probs) in rows {
        let p: Vec<f64> = serde_json::from_str(&probs).unwrap();
        assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-3, "{p:?}");
        let best = (0..p.len()).max_by(|&a, &b| p[a].total_cmp(&p[b])).unwrap();
        assert_eq!(best as i64, class);
    }
    drop(st);
    drop(study);
    // Nothing pending: a second run predicts nothing; --all predicts everything again.
    let out = json(&s.expect(&["infer", "--pending", "--json"], 0));
    assert_eq!(out["predicted"], 0, "{out}");
    assert_eq!(out["state"], "done");
    let out = json(&s.expect(&["infer", "--all", "--task", "kl", "--json"], 0));
    assert_eq!(out["predicted"].as_i64(), Some(knees), "{out}");
    let jobs = json(&s.expect(&["jobs", "--json"], 0));
    assert!(jobs.as_array().unwrap().len() >= 3, "{jobs}");
    assert_eq!(jobs[0]["state"], "done");
    assert_eq!(jobs[0]["total"].as_i64(), Some(knees));
    s.expect(&["audit", "verify"], 0);
    let log = s.expect(&["audit", "log", "--json"], 0);
    assert!(log.contains("prediction.add") && log.contains("job.finish"));
}

#[test]
fn a_reader_sees_the_model_only_after_their_own_read() {
    let s = demo();
    // A third reader takes a case nobody else has finished with.
    s.expect(&["users", "add", "r3", "--role", "reader"], 0);
    let mut r3 = Study::open(&s.db, None, Some("r3")).unwrap();
    let taken = r3.take_next_case().unwrap().expect("a case for r3");
    let case = taken.summary.case.clone();
    let view = r3.case_view(&case).unwrap();
    assert!(
        matches!(view.model_prediction, Blinded::Hidden(_)),
        "{:?}",
        view.model_prediction
    );
    let shown = s.run(&["--as", "r3", "read", "show", &case, "--json"]);
    let text = stdout(&shown);
    assert!(
        !text.contains("kl_probabilities") || text.contains("\"hidden\""),
        "{text}"
    );
    let read = if view.side.is_knee() {
        ReadInput {
            kl: Some(Grade::Value(2)),
            oarsi: Oarsi::default(),
            op_impression: None,
            confidence: Some(4),
        }
    } else {
        ReadInput {
            kl: None,
            oarsi: Oarsi::default(),
            op_impression: Some(marrow::domain::reading::OpImpression::Osteopenia),
            confidence: Some(4),
        }
    };
    r3.submit_read(&case, &read, None).unwrap();
    let view = r3.case_view(&case).unwrap();
    let Blinded::Shown(Some(p)) = &view.model_prediction else {
        panic!(
            "after the read the prediction is shown: {:?}",
            view.model_prediction
        );
    };
    if view.side.is_knee() {
        assert_eq!(p.kl_probabilities.len(), 5);
        assert!((p.kl_probabilities.iter().sum::<f64>() - 1.0).abs() < 1e-3);
    } else {
        assert_eq!(p.op_probabilities.len(), 3);
    }
    assert!(p.model.contains("phantom"), "{}", p.model);
}

#[test]
fn only_coordinators_and_admins_run_the_model() {
    let s = demo();
    for user in ["demo-reader-1", "demo-pi", "demo-adjudicator"] {
        let out = s.run(&["--as", user, "infer"]);
        assert_eq!(out.status.code(), Some(2), "{user}");
        assert!(
            stderr(&out).contains("may not run or train the model"),
            "{}",
            stderr(&out)
        );
    }
    s.expect(&["--as", "demo-coordinator", "infer", "--json"], 0);
    // Readers never get the outcome table (it is built from final grades).
    let out = s.run(&["--as", "demo-reader-1", "evaluate", "--task", "kl"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("readers are blinded"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_job_cancelled_from_another_connection_stops_after_its_batch_and_keeps_what_it_did() {
    let s = demo();
    let mut study = s.open();
    let opts = marrow::inference::jobs::InferOptions {
        task: Some(marrow::inference::Task::Kl),
        all: true,
        backend: marrow::inference::backend::BackendChoice::Cpu,
    };
    let job = study
        .create_job(
            marrow::db::inference::JobKind::Infer,
            opts.task,
            "all",
            "cpu",
        )
        .unwrap();
    let db = s.db.clone();
    let mut asked = false;
    let report = marrow::inference::jobs::run_infer(&mut study, job, &opts, &mut |done, _| {
        if done > 0 && !asked {
            asked = true;
            let mut other = Study::open(&db, None, None).unwrap();
            other.cancel_job(job).unwrap();
        }
    })
    .unwrap();
    assert_eq!(report.state, JobState::Cancelled);
    assert_eq!(report.predicted, marrow::inference::jobs::BATCH);
    let row = study.job(job).unwrap();
    assert_eq!(row.state, JobState::Cancelled);
    assert_eq!(row.done as usize, marrow::inference::jobs::BATCH);
    assert!(row.message.unwrap().contains("cancelled after 32"));
    // A queued job is cancelled at once, and an ended one cannot be cancelled.
    let queued = study
        .create_job(
            marrow::db::inference::JobKind::Infer,
            None,
            "pending",
            "cpu",
        )
        .unwrap();
    assert_eq!(study.cancel_job(queued).unwrap().state, JobState::Cancelled);
    let err = study.cancel_job(queued).unwrap_err().to_string();
    assert!(err.contains("already ended"), "{err}");
    // A running job whose process died is failed by the next listing, saying so.
    let dead = study
        .create_job(
            marrow::db::inference::JobKind::Infer,
            None,
            "pending",
            "cpu",
        )
        .unwrap();
    study.start_job(dead, "cpu", "kl", 10).unwrap();
    study
        .conn()
        .execute(
            "UPDATE model_jobs SET heartbeat_at = '2020-01-01T00:00:00.000Z' WHERE id = ?1",
            [dead],
        )
        .unwrap();
    drop(study);
    let jobs = json(&s.expect(&["jobs", "--json"], 0));
    let row = jobs
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["id"] == dead)
        .unwrap();
    assert_eq!(row["state"], "failed");
    assert!(
        row["message"].as_str().unwrap().contains("stopped"),
        "{row}"
    );
}

#[test]
fn a_tampered_model_file_is_refused_and_the_job_says_why() {
    let s = demo();
    let models = s.dir.path().join("demo.db.models");
    let kl_dir = std::fs::read_dir(&models)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with("kl-"))
        .expect("the shipped KL model in the study's model folder");
    let weights = kl_dir.join("weights.mpk");
    let mut bytes = std::fs::read(&weights).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 0xFF;
    std::fs::write(&weights, bytes).unwrap();
    let out = s.run(&["infer", "--all", "--task", "kl"]);
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    let text = stdout(&out);
    assert!(
        text.contains("failed") && text.contains("SHA-256"),
        "{text}"
    );
    let jobs = json(&s.expect(&["jobs", "--json"], 0));
    assert_eq!(jobs[0]["state"], "failed");
}

#[test]
fn evaluate_scores_the_predictions_against_the_final_grades_with_intervals() {
    let s = demo();
    let out = json(&s.expect(
        &["evaluate", "--task", "kl", "--json", "--resamples", "200"],
        0,
    ));
    let study = s.open();
    // The default is the protocol's external test: the prospective cohort, against
    // the final KL grade of eligible patients' knees.
    assert_eq!(out["cohort"], "prospective", "{out}");
    assert_eq!(out["reference"], "final_kl", "{out}");
    let knees = "FROM case_finals f JOIN reading_cases c ON c.id = f.case_id \
         JOIN patients p ON p.id = c.patient_id \
         WHERE c.side IN ('left', 'right') AND f.kl IS NOT NULL \
         AND p.phase = 'prospective' AND p.decision = 'eligible'";
    let finals = count(&study, &format!("SELECT count(*) {knees}"));
    assert!(finals >= 30, "{finals}");
    let all_finals = count(
        &study,
        "SELECT count(*) FROM case_finals f JOIN reading_cases c ON c.id = f.case_id \
         WHERE c.side IN ('left', 'right') AND f.kl IS NOT NULL",
    );
    assert!(finals < all_finals, "the retrospective knees are not in it");
    assert_eq!(out["n"].as_i64(), Some(finals), "{out}");
    let confusion: i64 = out["confusion"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r.as_array().unwrap().iter().map(|v| v.as_i64().unwrap()))
        .sum();
    assert_eq!(confusion, finals);
    for k in [
        "auc_binary",
        "sensitivity",
        "specificity",
        "quadratic_kappa",
        "accuracy",
    ] {
        let v = out[k]["value"]
            .as_f64()
            .unwrap_or_else(|| panic!("{k}: {out}"));
        let lo = out[k]["ci95"]["lower"].as_f64().unwrap();
        let hi = out[k]["ci95"]["upper"].as_f64().unwrap();
        assert!(lo <= v && v <= hi, "{k}: {v} not in {lo}-{hi}");
    }
    // Per-knee figures resample patients, and say so.
    assert_eq!(out["resampling_unit"], "patient", "{out}");
    let patients = count(
        &study,
        &format!("SELECT count(DISTINCT c.patient_id) {knees}"),
    );
    assert_eq!(out["clusters"].as_i64(), Some(patients), "{out}");
    assert!(
        patients < finals,
        "both knees of some patients: {patients} of {finals}"
    );
    // What the model was trained on: the shipped card's data line.
    assert!(
        out["trained_on"].as_str().unwrap().contains("phantoms"),
        "{out}"
    );
    // DeLong's interval of the same AUC, and Wilson intervals whose counts add up.
    assert_eq!(out["auc_binary_delong"]["auc"], out["auc_binary"]["value"]);
    let acc = &out["accuracy_wilson"];
    assert_eq!(acc["n"].as_i64(), Some(finals), "{out}");
    let correct = (0..5)
        .map(|c| out["confusion"][c][c].as_i64().unwrap())
        .sum::<i64>();
    assert_eq!(acc["successes"].as_i64(), Some(correct), "{out}");
    assert!(acc["ci95"]["lower"].as_f64().unwrap() < acc["ci95"]["upper"].as_f64().unwrap());
    // The phantom-trained model reads the demo's phantoms well.
    assert!(out["auc_binary"]["value"].as_f64().unwrap() > 0.8, "{out}");
    assert!(!out["published"].as_array().unwrap().is_empty());
    let text = s.expect(
        &["evaluate", "--task", "op", "--cohort", "retrospective"],
        0,
    );
    assert!(
        text.contains("osteoporosis vs not") && text.contains("confusion matrix"),
        "{text}"
    );
    assert!(text.contains("development data"), "{text}");
    assert!(text.contains("reference standard (dxa_who)"), "{text}");
    assert!(text.contains("Hsieh 2021"), "{text}");
    assert!(
        text.contains("bootstrap over patients")
            && text.contains("AUC, DeLong")
            && text.contains("sensitivity, Wilson"),
        "{text}"
    );
}

/// Issue 13 item 8: `train` made its new version (validation AUC 0.631) the active
/// one without asking. Now it registers it inactive; `models activate` is the act
/// that switches, audited with both versions and their figures.
#[test]
fn train_registers_an_inactive_version_that_models_activate_then_makes_active() {
    let s = demo();
    let active_op = |s: &common::TempStudy| -> Vec<String> {
        json(&s.expect(&["models", "--json"], 0))
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["active"] == true && m["task"] == "op")
            .map(|m| {
                format!(
                    "{} {}",
                    m["name"].as_str().unwrap(),
                    m["version"].as_str().unwrap()
                )
            })
            .collect()
    };
    let before = active_op(&s);
    assert_eq!(before.len(), 1, "{before:?}");
    let out = json(&s.expect(
        &[
            "train",
            "--task",
            "op",
            "--epochs",
            "2",
            "--backend",
            "cpu",
            "--json",
        ],
        0,
    ));
    let model = out["model"].as_str().unwrap().to_string();
    assert!(model.starts_with("op-study "), "{model}");
    assert!(out["images"].as_i64().unwrap() >= 30, "{out}");
    assert_eq!(out["active"].as_str(), Some(before[0].as_str()), "{out}");
    let dir = PathBuf::from(out["dir"].as_str().unwrap());
    assert!(dir.join("model.toml").exists() && dir.join("weights.mpk").exists());
    let card = std::fs::read_to_string(dir.join("model.toml")).unwrap();
    // OP is trained on the DXA WHO stage, split by patient.
    assert_eq!(out["reference"], "dxa_who", "{out}");
    assert!(card.contains("DXA WHO stages"), "{card}");
    assert!(card.contains("by patient"), "{card}");
    // The active model stays; the list shows both with their validation figures.
    assert_eq!(active_op(&s), before, "training changed the active model");
    let list = s.expect(&["models"], 0);
    let new_line = list.lines().find(|l| l.contains(&model)).unwrap();
    assert!(
        new_line.contains("AUC ") && new_line.contains(" · n "),
        "{list}"
    );
    let header = list.lines().next().unwrap();
    let col = |l: &str, at: &str| l[..l.find(at).unwrap()].chars().count();
    assert_eq!(col(header, "validation"), col(new_line, "AUC "), "{list}");
    let inf = json(&s.expect(&["infer", "--task", "op", "--json"], 0));
    assert_ne!(inf["models"][0].as_str(), Some(model.as_str()), "{inf}");
    // Activation: refused to a PI, then done by the admin with a reason, audited.
    let version = model.split_once(' ').unwrap().1.to_string();
    s.expect(&["users", "add", "boss", "--role", "pi"], 0);
    let refused = s.run(&["--as", "boss", "models", "activate", "op", &version]);
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    assert_eq!(active_op(&s), before);
    let text = s.expect(
        &[
            "models",
            "activate",
            "op-study",
            &version,
            "--reason",
            "better on the study's own images",
        ],
        0,
    );
    assert!(
        text.contains(&format!("{model} is now the active op model")),
        "{text}"
    );
    assert!(text.contains("was") && text.contains(&before[0]), "{text}");
    assert_eq!(active_op(&s), vec![model.clone()]);
    let log = json(&s.expect(&["audit", "log", "--json"], 0));
    let row = log
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["action"] == "model.activate")
        .unwrap_or_else(|| panic!("no model.activate row: {log}"));
    assert_eq!(row["reason"], "better on the study's own images");
    let was: serde_json::Value = serde_json::from_str(row["before"].as_str().unwrap()).unwrap();
    let now: serde_json::Value = serde_json::from_str(row["after"].as_str().unwrap()).unwrap();
    assert_eq!(was["active"]["model"].as_str(), Some(before[0].as_str()));
    assert_eq!(now["active"]["model"].as_str(), Some(model.as_str()));
    assert!(now["active"]["validation"]["n"].as_u64().is_some(), "{now}");
    let inf = json(&s.expect(&["infer", "--task", "op", "--json"], 0));
    assert!(inf["predicted"].as_i64().unwrap() > 0);
    assert_eq!(inf["models"][0].as_str(), Some(model.as_str()));
    let ev = json(&s.expect(
        &["evaluate", "--task", "op", "--json", "--resamples", "50"],
        0,
    ));
    assert_eq!(ev["model"].as_str(), Some(model.as_str()));
    // The new version against the shipped one on the same patients: DeLong's
    // paired test, whose AUCs are those each model gets alone.
    let cmp = json(&s.expect(
        &[
            "evaluate",
            "--task",
            "op",
            "--cohort",
            "all",
            "--json",
            "--resamples",
            "20",
            "--compare",
            &before[0],
        ],
        0,
    ));
    let alone = |m: &str| {
        json(&s.expect(
            &[
                "evaluate",
                "--task",
                "op",
                "--cohort",
                "all",
                "--json",
                "--resamples",
                "20",
                "--model",
                m,
            ],
            0,
        ))
    };
    let (a, b) = (alone(&model), alone(&before[0]));
    let c = &cmp["comparison"];
    assert_eq!(c["model_a"].as_str(), Some(model.as_str()), "{c}");
    assert_eq!(c["model_b"].as_str(), Some(before[0].as_str()), "{c}");
    assert_eq!(c["n"], a["n"], "both predicted every patient: {c}");
    assert_eq!(c["not_in_both"], 0, "{c}");
    let f = |v: &serde_json::Value| v.as_f64().unwrap();
    assert!(
        (f(&c["auc_a"]) - f(&a["auc_binary"]["value"])).abs() < 1e-9,
        "{c} {a}"
    );
    assert!(
        (f(&c["auc_b"]) - f(&b["auc_binary"]["value"])).abs() < 1e-9,
        "{c} {b}"
    );
    assert!((f(&c["difference"]) - (f(&c["auc_a"]) - f(&c["auc_b"]))).abs() < 1e-12);
    assert!(
        f(&c["ci95"]["lower"]) <= f(&c["difference"])
            && f(&c["difference"]) <= f(&c["ci95"]["upper"])
    );
    assert!(f(&c["p"]) > 0.0 && f(&c["p"]) <= 1.0, "{c}");
    let text = s.expect(
        &[
            "evaluate",
            "--task",
            "op",
            "--cohort",
            "all",
            "--resamples",
            "20",
            "--compare",
            &before[0],
        ],
        0,
    );
    assert!(
        text.contains("DeLong's paired test") && text.contains("difference"),
        "{text}"
    );
    let bad = s.run(&[
        "evaluate",
        "--task",
        "op",
        "--compare",
        "op no-such-version",
    ]);
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
    // Back to the shipped one; activating the active one again changes nothing.
    let shipped = before[0].split_once(' ').unwrap().1.to_string();
    s.expect(&["models", "activate", "op", &shipped], 0);
    let again = s.expect(&["models", "activate", "op", &shipped], 0);
    assert!(again.contains("nothing changed"), "{again}");
    assert_eq!(active_op(&s), before);
    s.expect(&["audit", "verify"], 0);
}

#[test]
fn activating_an_unknown_model_version_names_the_ones_there_are() {
    let s = demo();
    let out = s.run(&["models", "activate", "op", "no-such-version"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("no op model version \"no-such-version\"; the study has: op 0.1.0-phantom"),
        "{err}"
    );
    let out = s.run(&["models", "activate", "kx-study", "1"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("\"kx-study\" is neither a task (kl, op) nor a model's name (kl, op)"),
        "{err}"
    );
    let log = s.expect(&["audit", "log", "--json"], 0);
    assert!(!log.contains("model.activate"), "{log}");
}

/// Issue 13 item 13c: `adjudicate show` printed the model's probabilities as raw
/// floats (`[0.98, 1.49e-12, …]`); now each class with a percentage, one decimal,
/// "<0.1%" for the tiny ones.
#[test]
fn adjudicate_show_prints_the_model_s_probabilities_as_percentages() {
    let s = demo();
    let cases = json(&s.expect(&["cases", "--json"], 0));
    let mut seen = 0;
    for c in cases.as_array().unwrap().iter().take(6) {
        let case = c["case"].as_str().unwrap();
        let text = s.expect(&["adjudicate", "show", case], 0);
        let line = text
            .lines()
            .find(|l| l.starts_with("model: "))
            .unwrap_or_else(|| panic!("{text}"));
        if line.contains("no prediction yet") {
            continue;
        }
        seen += 1;
        assert!(!line.contains('[') && !line.contains("e-"), "{line}");
        let view = json(&s.expect(&["adjudicate", "show", case, "--json"], 0));
        let p = &view["model_prediction"]["shown"];
        for (name, key, classes) in [
            (
                "KL",
                "kl_probabilities",
                vec!["KL0", "KL1", "KL2", "KL3", "KL4"],
            ),
            (
                "OP",
                "op_probabilities",
                vec!["normal", "osteopenia", "osteoporosis"],
            ),
        ] {
            let probs = p[key].as_array().unwrap();
            if probs.is_empty() {
                assert!(!line.contains(&format!("{name}: ")), "{line}");
                continue;
            }
            let part = line
                .split(&format!("{name}: "))
                .nth(1)
                .unwrap_or_else(|| panic!("{line}"));
            let part = part.split(" · ").next().unwrap();
            let cells: Vec<&str> = part.split(", ").collect();
            assert_eq!(cells.len(), probs.len(), "{line}");
            for ((cell, class), v) in cells.iter().zip(&classes).zip(probs) {
                let v = v.as_f64().unwrap();
                let want = if v > 0.0 && v < 0.0005 {
                    "<0.1%".to_string()
                } else {
                    format!("{:.1}%", v * 100.0)
                };
                assert_eq!(*cell, format!("{class} {want}"), "{line}");
            }
        }
    }
    assert!(seen > 0, "no case with a prediction among the first cases");
}

#[test]
fn train_refuses_when_a_class_has_too_few_final_grades() {
    let s = demo();
    let out = s.run(&[
        "train",
        "--task",
        "kl",
        "--min-per-class",
        "1000",
        "--epochs",
        "1",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("too few labels") && err.contains("KL0:"),
        "{err}"
    );
    let jobs = json(&s.expect(&["jobs", "--json"], 0));
    assert_eq!(jobs[0]["kind"], "train");
    assert_eq!(jobs[0]["state"], "failed");
}

#[test]
fn asking_for_cuda_in_a_build_without_it_says_how_to_build_it() {
    if marrow::inference::backend::cuda_compiled() {
        eprintln!("built with the cuda feature: the CPU-only message does not apply");
        return;
    }
    let s = demo();
    let out = s.run(&["infer", "--all", "--backend", "cuda"]);
    assert_eq!(out.status.code(), Some(2));
    let text = stdout(&out);
    assert!(
        text.contains("cargo build --release --features cuda"),
        "{text}"
    );
    let jobs = json(&s.expect(&["jobs", "--json"], 0));
    assert_eq!(jobs[0]["state"], "failed");
    assert_eq!(jobs[0]["backend"], "cuda");
}

#[test]
fn predictions_are_listed_per_image_for_unblinded_roles_only() {
    let s = demo();
    let rows = json(&s.expect(
        &["--as", "demo-pi", "predictions", "--task", "op", "--json"],
        0,
    ));
    let rows = rows.as_array().unwrap();
    assert!(!rows.is_empty());
    assert!(
        rows.iter()
            .all(|r| r["task"] == "op" && r["side"] == "patient")
    );
    assert!(
        rows.iter()
            .all(|r| r["probs"].as_array().unwrap().len() == 3)
    );
    let study = s.open();
    assert_eq!(
        rows.len() as i64,
        count(&study, "SELECT count(*) FROM predictions WHERE task = 'op'")
    );
    for user in ["demo-reader-1", "demo-coordinator"] {
        let out = s.run(&["--as", user, "predictions"]);
        assert_eq!(out.status.code(), Some(2), "{user}");
        assert!(stderr(&out).contains("may not list the model's predictions"));
    }
}

#[test]
fn explain_splits_a_prediction_over_the_modalities_and_draws_the_heatmap() {
    let s = demo();
    // A knee case with a final grade (an adjudicator sees the model's view).
    let cases = json(&s.expect(&["--as", "demo-adjudicator", "cases", "--json"], 0));
    let case = cases
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["side"] == "left" && c["state"] == "final")
        .expect("a final left-knee case")["case"]
        .as_str()
        .unwrap()
        .to_string();
    let png = s.dir.path().join("explain.png");
    let out = json(&s.expect(
        &[
            "--as",
            "demo-adjudicator",
            "explain",
            &case,
            "--json",
            "--png",
            png.to_str().unwrap(),
        ],
        0,
    ));
    let e = &out[0];
    let sh = &e["shapley"];
    let f = |k: &str| -> Vec<f64> {
        sh[k]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect()
    };
    let (base, image, demo, labs, full) = (
        f("base"),
        f("image"),
        f("demographics"),
        f("labs"),
        f("full"),
    );
    assert_eq!(full.len(), 5);
    for c in 0..5 {
        let sum = base[c] + image[c] + demo[c] + labs[c];
        assert!(
            (sum - full[c]).abs() < 1e-4,
            "class {c}: {sum} vs {}",
            full[c]
        );
        // The KL model has no lab inputs: the labs contribute nothing.
        assert!(labs[c].abs() < 1e-6, "{labs:?}");
    }
    // The stored prediction of this image is the same as the explained one.
    let preds = json(&s.expect(
        &[
            "--as",
            "demo-adjudicator",
            "predictions",
            "--task",
            "kl",
            "--json",
        ],
        0,
    ));
    let stored = preds
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["sop_uid"] == e["sop_uid"])
        .expect("the image's stored prediction");
    for (a, b) in stored["probs"].as_array().unwrap().iter().zip(&full) {
        assert!((a.as_f64().unwrap() - b).abs() < 1e-3);
    }
    let map = &e["heatmap"];
    let (w, h) = (
        map["width"].as_u64().unwrap(),
        map["height"].as_u64().unwrap(),
    );
    assert!(w >= 5 && h >= 5);
    assert_eq!(map["values"].as_array().unwrap().len() as u64, w * h);
    let img = image::open(&png)
        .expect("the overlay PNG decodes")
        .to_rgb8();
    assert!(
        img.width() >= 32 && img.height() >= 32,
        "{}x{}",
        img.width(),
        img.height()
    );
    // Some pixels are tinted (the map is not empty).
    assert!(img.pixels().any(|p| p[0] != p[1] || p[1] != p[2]));
    // Hidden from a coordinator.
    let out = s.run(&["--as", "demo-coordinator", "explain", &case]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("hidden"), "{}", stderr(&out));
}
