//! A headless TUI for the integration tests: the `App` of one user wired to a worker
//! of its own on the study (the real worker, the real database), driven by keys, the
//! worker's answers applied as the event loop applies them, and the screen drawn into
//! a `TestBackend` buffer.
//!
//! Included by the tests that use it with `#[path = "common/driver.rs"] mod driver;`
//! (beside `mod common;`).
#![allow(dead_code)]

use crate::common::TempStudy;
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use marrow::tui::worker::Worker;
use marrow::tui::{App, Request, Response, TICK, Theme};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// How long a test waits for the app to get somewhere before it gives up (a guard
/// against a hang, not a timing requirement).
pub const PATIENCE: Duration = Duration::from_secs(240);

/// How long a settled driver waits for one answer of the worker.
const ANSWER: Duration = Duration::from_secs(30);

/// How the driver keeps pace with the worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    /// Requests are sent and left; `until` applies the answers as they come.
    Free,
    /// As `Free`, and `until` also ticks the app about once a `TICK`, as the event
    /// loop does (jobs, refreshes).
    Ticked,
    /// `send` (and so every key) returns only once each request is answered and
    /// every answer applied, with what follows from it.
    Settled,
}

/// A headless app of one user, wired to its own worker.
pub struct Driver {
    pub app: App,
    pub worker: Worker,
    rx: Receiver<Response>,
    pace: Pace,
    last_tick: Instant,
}

impl Driver {
    /// `user`'s app; requests are sent and left (`Pace::Free`).
    pub fn open(s: &TempStudy, user: &str) -> Driver {
        Driver::start(s, Some(user), Pace::Free)
    }

    /// The app of `user` (`None`: as the worker resolves the account itself), plain
    /// theme, its start requests sent.
    pub fn start(s: &TempStudy, user: Option<&str>, pace: Pace) -> Driver {
        Driver::start_db(&s.db, user, pace)
    }

    /// [`Driver::start`] on the database at `db`.
    pub fn start_db(db: &std::path::Path, user: Option<&str>, pace: Pace) -> Driver {
        let (tx, rx) = mpsc::channel();
        let (worker, session) =
            Worker::spawn(db.to_path_buf(), None, user.map(str::to_string), move |r| {
                let _ = tx.send(r);
            })
            .expect("worker opens the study");
        let mut app = App::new(session);
        app.set_theme(Theme::plain());
        let mut d = Driver {
            app,
            worker,
            rx,
            pace,
            last_tick: Instant::now(),
        };
        let start = d.app.start();
        d.send(start);
        d
    }

    /// Sends the requests to the worker; a settled driver also waits for every
    /// answer and applies it (and sends, and waits for, what follows from it).
    pub fn send(&mut self, requests: Vec<Request>) {
        let mut outstanding = 0usize;
        for r in requests {
            assert!(self.worker.send(r), "the worker is gone");
            outstanding += 1;
        }
        if self.pace != Pace::Settled {
            return;
        }
        while outstanding > 0 {
            let response = self
                .rx
                .recv_timeout(ANSWER)
                .expect("a response within 30 s");
            outstanding -= 1;
            for r in self.app.apply(response) {
                assert!(self.worker.send(r), "the worker is gone");
                outstanding += 1;
            }
        }
    }

    /// One key with modifiers.
    pub fn key(&mut self, code: KeyCode, modifiers: KeyModifiers) {
        let requests = self.app.handle_key(KeyEvent::new(code, modifiers));
        self.send(requests);
    }

    /// Characters as keys (see `key_code`: `\n` Enter, `\t` Tab, `\x1b` Esc, `\x02`
    /// Shift-Tab).
    pub fn keys(&mut self, s: &str) {
        for c in s.chars() {
            self.key(key_code(c), KeyModifiers::NONE);
        }
    }

    /// Ctrl-u: clears the form field.
    pub fn clear_field(&mut self) {
        self.key(KeyCode::Char('u'), KeyModifiers::CONTROL);
    }

    /// Applies the worker's answers (sending what follows from them), ticking the
    /// app when the pace says so, until `done` holds; fails with the screen after
    /// `PATIENCE`.
    pub fn until(&mut self, what: &str, done: impl Fn(&App) -> bool) {
        let deadline = Instant::now() + PATIENCE;
        while !done(&self.app) {
            assert!(
                Instant::now() < deadline,
                "gave up waiting for {what}; the screen:\n{}",
                self.screen(120, 40)
            );
            match self.rx.recv_timeout(Duration::from_millis(100)) {
                Ok(r) => {
                    let requests = self.app.apply(r);
                    self.send(requests);
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => panic!("the worker hung up"),
            }
            if self.pace == Pace::Ticked && self.last_tick.elapsed() >= TICK {
                self.last_tick = Instant::now();
                let requests = self.app.tick();
                self.send(requests);
            }
        }
    }

    /// The screen drawn at `w` x `h`.
    pub fn screen(&self, w: u16, h: u16) -> String {
        draw(&self.app, w, h)
    }

    /// The message line's text ("" when none).
    pub fn message(&self) -> String {
        self.app
            .message()
            .map(|m| m.text.clone())
            .unwrap_or_default()
    }
}

/// The key a character stands for: `\n` Enter, `\t` Tab, `\x1b` Esc, `\x02` Shift-Tab,
/// anything else itself.
pub fn key_code(c: char) -> KeyCode {
    match c {
        '\n' => KeyCode::Enter,
        '\t' => KeyCode::Tab,
        '\x1b' => KeyCode::Esc,
        '\x02' => KeyCode::BackTab,
        c => KeyCode::Char(c),
    }
}

/// Characters as keys to an app without a worker; the requests it made.
pub fn keys(app: &mut App, s: &str) -> Vec<Request> {
    s.chars()
        .flat_map(|c| app.handle_key(KeyEvent::new(key_code(c), KeyModifiers::NONE)))
        .collect()
}

/// `app` drawn into a `w` x `h` test buffer, as text.
pub fn draw(app: &App, w: u16, h: u16) -> String {
    let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
    t.draw(|f| app.render(f)).unwrap();
    t.backend().to_string()
}
