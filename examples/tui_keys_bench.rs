//! Key-to-frame latency of the terminal application on a large study (issue 7,
//! "Scale"): the real `App` and its database worker, headless, on a study database,
//! driven by a script of worklist keys (moves, jumps, half pages, search, filters,
//! opening a patient and going back). For each key: `handle_key` plus the render of
//! the next frame into a 120x40 buffer (ratatui's diff included, the terminal's
//! writing not); for each answer of the worker: `apply` plus the next frame. Also the
//! time from start to the first frame and to the whole worklist, and the process's
//! peak resident memory (VmHWM: the app, the worker and its SQLite cache).
//!
//! cargo run --release --example tui_keys_bench -- DB [KEYS]
//!
//! DB is opened with its key file (`DB.key`) as the OS user running it. KEYS
//! (default 3000) keys are sent. Prints the figures, then one `RESULT {json}` line.

use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use marrow::tui::worker::Worker;
use marrow::tui::{App, LoadState, Request, Response};
use ratatui::Terminal;
use ratatui::backend::TestBackend;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let db = PathBuf::from(
        args.first()
            .ok_or_else(|| anyhow::anyhow!("usage: tui_keys_bench DB [KEYS]"))?,
    );
    let keys: usize = args.get(1).map(|s| s.parse()).transpose()?.unwrap_or(3000);
    let t0 = Instant::now();
    let (tx, rx) = mpsc::channel::<Response>();
    let (worker, session) = Worker::spawn(db, None, None, move |r| {
        let _ = tx.send(r);
    })
    .map_err(|e| anyhow::anyhow!(e))?;
    let mut app = App::new(session);
    let mut term = Terminal::new(TestBackend::new(120, 40))?;
    let send = |w: &Worker, reqs: Vec<Request>| -> usize {
        let n = reqs.len();
        for r in reqs {
            assert!(w.send(r), "the worker is gone");
        }
        n
    };
    let mut outstanding = send(&worker, app.start());
    term.draw(|f| app.render(f))?;
    let first_frame = t0.elapsed();
    let mut first_rows = None;
    while !(matches!(app.worklist_state(), LoadState::Loaded) && outstanding == 0) {
        let r = rx.recv_timeout(Duration::from_secs(60))?;
        outstanding = outstanding.saturating_sub(1);
        outstanding += send(&worker, app.apply(r));
        term.draw(|f| app.render(f))?;
        if first_rows.is_none() && app.visible_len() > 0 {
            first_rows = Some(t0.elapsed());
        }
    }
    let whole = t0.elapsed();
    let patients = app.visible_len();

    // The script: what a coordinator does on the worklist, over and over.
    let k = |c: char| KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE);
    let ctrl = |c: char| KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL);
    let code = |c: KeyCode| KeyEvent::new(c, KeyModifiers::NONE);
    let mut script: Vec<KeyEvent> = Vec::new();
    script.extend(std::iter::repeat_n(k('j'), 30));
    script.extend(std::iter::repeat_n(k('k'), 10));
    script.extend([k('G'), k('g'), k('g'), ctrl('d'), ctrl('d'), ctrl('u')]);
    script.extend([code(KeyCode::PageDown), code(KeyCode::PageUp)]);
    script.extend([k('/'), k('P'), k('0'), k('1'), code(KeyCode::Backspace)]);
    script.extend([code(KeyCode::Esc)]);
    script.extend([k('s'), k('s'), k('c'), k('d'), k('x')]);
    script.extend([code(KeyCode::Enter), k('j'), k('j'), code(KeyCode::Esc)]);
    script.extend(std::iter::repeat_n(k('j'), 5));

    let mut key_ms = Vec::with_capacity(keys);
    let mut by_key: std::collections::BTreeMap<String, Vec<f64>> = Default::default();
    let mut answer_ms = Vec::new();
    for key in script.iter().cycle().take(keys) {
        let t = Instant::now();
        outstanding += send(&worker, app.handle_key(*key));
        term.draw(|f| app.render(f))?;
        let took = t.elapsed().as_secs_f64() * 1000.0;
        key_ms.push(took);
        let name = match key.code {
            KeyCode::Char(c) if key.modifiers.contains(KeyModifiers::CONTROL) => {
                format!("Ctrl-{c}")
            }
            KeyCode::Char(c) => c.to_string(),
            other => format!("{other:?}"),
        };
        by_key.entry(name).or_default().push(took);
        // The worker's answers to this key (a patient opened, a search), each
        // applied and drawn, before the next key.
        while outstanding > 0 {
            let r = rx.recv_timeout(Duration::from_secs(60))?;
            outstanding -= 1;
            let t = Instant::now();
            outstanding += send(&worker, app.apply(r));
            term.draw(|f| app.render(f))?;
            answer_ms.push(t.elapsed().as_secs_f64() * 1000.0);
        }
    }
    let rss_mb = peak_rss_mb();
    worker.stop();

    let pct = |v: &mut Vec<f64>, p: f64| -> f64 {
        if v.is_empty() {
            return 0.0;
        }
        v.sort_by(f64::total_cmp);
        v[((v.len() as f64 - 1.0) * p).round() as usize]
    };
    let (k50, k99, kmax) = (
        pct(&mut key_ms, 0.5),
        pct(&mut key_ms, 0.99),
        pct(&mut key_ms, 1.0),
    );
    let (a50, a99, amax) = (
        pct(&mut answer_ms, 0.5),
        pct(&mut answer_ms, 0.99),
        pct(&mut answer_ms, 1.0),
    );
    println!("patients on the worklist: {patients}");
    println!(
        "start to first frame: {:.1} ms; to the first rows: {:.1} ms; to the whole worklist: {:.1} ms",
        ms(first_frame),
        first_rows.map(ms).unwrap_or(f64::NAN),
        ms(whole)
    );
    println!(
        "key -> next frame ({} keys): p50 {k50:.2} ms, p99 {k99:.2} ms, max {kmax:.2} ms",
        key_ms.len()
    );
    println!(
        "worker answer -> next frame ({} answers): p50 {a50:.2} ms, p99 {a99:.2} ms, max {amax:.2} ms",
        answer_ms.len()
    );
    println!("peak resident memory: {rss_mb:.1} MB");
    let mut slowest: Vec<(f64, f64, usize, &String)> = by_key
        .iter()
        .map(|(k, v)| {
            let max = v.iter().copied().fold(0.0, f64::max);
            let mean = v.iter().sum::<f64>() / v.len() as f64;
            (max, mean, v.len(), k)
        })
        .collect();
    slowest.sort_by(|a, b| b.0.total_cmp(&a.0));
    for (max, mean, n, k) in slowest.iter().take(6) {
        println!("  key {k:>9}: max {max:.2} ms, mean {mean:.2} ms over {n}");
    }
    println!(
        "RESULT {}",
        serde_json::json!({
            "patients": patients,
            "first_frame_ms": ms(first_frame),
            "first_rows_ms": first_rows.map(ms),
            "whole_worklist_ms": ms(whole),
            "keys": key_ms.len(),
            "key_frame_ms": {"p50": k50, "p99": k99, "max": kmax},
            "answers": answer_ms.len(),
            "answer_frame_ms": {"p50": a50, "p99": a99, "max": amax},
            "peak_rss_mb": rss_mb,
        })
    );
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// VmHWM of this process, in MB (0 where /proc is not there).
fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}
