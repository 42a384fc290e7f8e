//! The terminal application: a worklist of patients, each patient's screening
//! checklist with manual answers, and the bone-density reading.
//!
//! Key -> `Action` (keymap) -> `App::update` -> requests to the database worker ->
//! responses -> `App::apply` -> `App::render`. The UI thread never touches the
//! database: a worker thread owns its own `Study`. The terminal is restored on every
//! exit path: normal return, error return (Drop guard) and panic (panic hook).

pub mod app;
pub mod fixture;
pub mod keymap;
pub mod theme;
pub mod ui;
pub mod worker;

#[cfg(test)]
mod tests;

pub use app::{
    App, Choice, Filters, ImagesView, LoadState, Message, MessageKind, Pane, PreviewCache, Screen,
    Session,
};
pub use keymap::Action;
pub use theme::Theme;
pub use worker::{Preview, PreviewKey, RenderImage, Request, Response, SaveFailure, SetAnswer};

use anyhow::{Context as _, bail};
use crossterm::event::{self, DisableMouseCapture, EnableMouseCapture, KeyEvent, MouseEvent};
use crossterm::terminal::{
    EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode,
};
use crossterm::{cursor, execute};
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;
use ratatui_image::picker::{Picker, ProtocolType};
use std::io::{IsTerminal, Stdout, stdout};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Once, OnceLock};
use std::thread::{JoinHandle, ThreadId};
use std::time::Duration;
use worker::Worker;

/// Opens the TUI on a study database.
pub fn run(db: &Path, key_file: Option<&Path>, as_user: Option<&str>) -> anyhow::Result<()> {
    if !stdout().is_terminal() {
        bail!(
            "the terminal application needs a terminal on stdout; in scripts use the commands \
             (`marrow patients`, `marrow screen`, `marrow --help`)"
        );
    }
    let (events, inbox) = mpsc::channel::<UiEvent>();
    let replies = events.clone();
    // The worker opens the study before the screen is taken over, so an error (no
    // database, wrong key, unknown user) prints like any other command's.
    let (worker, session) = Worker::spawn(
        db.to_path_buf(),
        key_file.map(Path::to_path_buf),
        as_user.map(str::to_string),
        move |r| {
            let _ = replies.send(UiEvent::Worker(r));
        },
    )
    .map_err(anyhow::Error::msg)?;
    tracing::info!(user = %session.user, role = %session.role, "tui: opened {}", db.display());

    let mut app = App::new(session);
    let guard = TerminalGuard::enter().context("cannot take over the terminal")?;
    let result = (|| -> anyhow::Result<()> {
        // The terminal answers the graphics query on stdin: ask before reading keys.
        app.set_picker(choose_picker());
        let mut terminal = Terminal::new(CrosstermBackend::new(stdout()))?;
        terminal.clear()?;
        let input = InputThread::spawn(events);
        for r in app.start() {
            dispatch(&worker, &mut app, r);
        }
        let out = event_loop(&mut terminal, &mut app, &worker, &inbox);
        input.stop();
        out
    })();
    // Give the terminal back first, then wait for a write in progress to finish.
    guard.restore();
    worker.stop();
    if let Err(e) = &result {
        tracing::error!("tui: {e:#}");
    }
    result
}

/// What wakes the UI thread up.
enum UiEvent {
    Key(KeyEvent),
    Mouse(MouseEvent),
    Resize,
    Worker(Response),
    InputFailed(std::io::Error),
}

fn dispatch(worker: &Worker, app: &mut App, r: Request) {
    if !worker.send(r) {
        app.apply(Response::WorkerStopped);
    }
}

/// The environment variable that forces how images are drawn.
pub const GRAPHICS_ENV: &str = "MARROW_GRAPHICS";

/// The protocol named by `MARROW_GRAPHICS` (`halfblocks`, `sixel`, `kitty`, `iterm2`).
pub fn graphics_override(value: &str) -> Option<ProtocolType> {
    match value.trim().to_ascii_lowercase().as_str() {
        "halfblocks" | "half-blocks" | "blocks" => Some(ProtocolType::Halfblocks),
        "sixel" => Some(ProtocolType::Sixel),
        "kitty" => Some(ProtocolType::Kitty),
        "iterm2" | "iterm" => Some(ProtocolType::Iterm2),
        _ => None,
    }
}

/// How images are drawn: asks the terminal once (graphics protocol, cell size in
/// pixels), falls back to half-blocks, which work over any SSH link and in tmux.
/// `MARROW_GRAPHICS` forces a protocol; `halfblocks` skips the query altogether, and
/// so does running inside tmux or screen without it.
fn choose_picker() -> Picker {
    let forced = match std::env::var(GRAPHICS_ENV) {
        Ok(v) if !v.trim().is_empty() => {
            let p = graphics_override(&v);
            if p.is_none() {
                tracing::warn!(
                    "tui: {GRAPHICS_ENV}={v:?} is not halfblocks, sixel, kitty or iterm2; detecting"
                );
            }
            p
        }
        _ => None,
    };
    // Inside tmux or screen the query goes through passthrough to an outer terminal
    // that may never answer (a detached session); the unanswered query's reader would
    // then swallow the first keys. Half-blocks there, unless a protocol is forced.
    let multiplexed = std::env::var("TMUX").is_ok_and(|v| !v.is_empty())
        || std::env::var("TERM").is_ok_and(|t| t.starts_with("tmux") || t.starts_with("screen"));
    let mut picker = match forced {
        Some(ProtocolType::Halfblocks) => Picker::halfblocks(),
        None if multiplexed => {
            tracing::info!("tui: inside tmux/screen: half-blocks ({GRAPHICS_ENV} overrides)");
            Picker::halfblocks()
        }
        _ => Picker::from_query_stdio().unwrap_or_else(|e| {
            tracing::info!(
                "tui: the terminal did not answer the graphics query ({e}); half-blocks"
            );
            Picker::halfblocks()
        }),
    };
    if let Some(p) = forced {
        picker.set_protocol_type(p);
    }
    tracing::info!(
        protocol = ?picker.protocol_type(),
        font = ?picker.font_size(),
        "tui: images are drawn with {:?}",
        picker.protocol_type()
    );
    picker
}

fn event_loop(
    terminal: &mut Terminal<CrosstermBackend<Stdout>>,
    app: &mut App,
    worker: &Worker,
    inbox: &Receiver<UiEvent>,
) -> anyhow::Result<()> {
    // The startup figures of docs/BENCHMARKS.md, from process start: the first frame
    // that shows patients (or the empty or failed worklist), and the frame that shows
    // the whole worklist.
    let (mut first_logged, mut whole_logged) = (false, false);
    loop {
        terminal.draw(|f| app.render(f))?;
        let loaded = *app.worklist_state() != LoadState::Loading;
        if !first_logged && (loaded || app.visible_len() > 0) {
            first_logged = true;
            tracing::info!(
                elapsed_ms = crate::process_start().elapsed().as_secs_f64() * 1000.0,
                patients = app.visible_len(),
                "tui: first frame with the worklist"
            );
        }
        if !whole_logged && loaded {
            whole_logged = true;
            tracing::info!(
                elapsed_ms = crate::process_start().elapsed().as_secs_f64() * 1000.0,
                patients = app.visible_len(),
                "tui: whole worklist shown"
            );
        }
        let Ok(first) = inbox.recv() else {
            return Ok(());
        };
        // Handle everything already queued before drawing again.
        let mut next = Some(first);
        while let Some(ev) = next {
            match ev {
                UiEvent::Key(k) => {
                    for r in app.handle_key(k) {
                        dispatch(worker, app, r);
                    }
                }
                UiEvent::Mouse(m) => {
                    for r in app.handle_mouse(m) {
                        dispatch(worker, app, r);
                    }
                }
                UiEvent::Resize => terminal.autoresize()?,
                UiEvent::Worker(r) => {
                    for r in app.apply(r) {
                        dispatch(worker, app, r);
                    }
                }
                UiEvent::InputFailed(e) => return Err(e).context("reading the keyboard failed"),
            }
            if app.should_quit() {
                return Ok(());
            }
            next = inbox.try_recv().ok();
        }
    }
}

/// Reads terminal events on its own thread (polling, so it can be stopped).
struct InputThread {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl InputThread {
    fn spawn(events: Sender<UiEvent>) -> InputThread {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("marrow-input".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    let ev = match event::poll(Duration::from_millis(100)) {
                        Ok(false) => continue,
                        Ok(true) => event::read(),
                        Err(e) => Err(e),
                    };
                    let ev = match ev {
                        Ok(event::Event::Key(k)) => UiEvent::Key(k),
                        Ok(event::Event::Mouse(m)) => UiEvent::Mouse(m),
                        Ok(event::Event::Resize(..)) => UiEvent::Resize,
                        Ok(_) => continue,
                        Err(e) => {
                            let _ = events.send(UiEvent::InputFailed(e));
                            return;
                        }
                    };
                    if events.send(ev).is_err() {
                        return;
                    }
                }
            })
            .ok();
        InputThread { stop, thread }
    }

    fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Whether the terminal is in raw mode on the alternate screen.
static TERMINAL_TAKEN: AtomicBool = AtomicBool::new(false);
/// The thread that draws; a panic elsewhere must not tear the screen down under it.
static UI_THREAD: OnceLock<ThreadId> = OnceLock::new();

/// Leaves raw mode and the alternate screen; safe to call more than once.
fn restore_terminal() {
    if TERMINAL_TAKEN.swap(false, Ordering::SeqCst) {
        let _ = disable_raw_mode();
        let _ = execute!(
            stdout(),
            DisableMouseCapture,
            LeaveAlternateScreen,
            cursor::Show
        );
    }
}

/// Takes the terminal over and gives it back when dropped, on any exit path.
struct TerminalGuard;

impl TerminalGuard {
    fn enter() -> std::io::Result<TerminalGuard> {
        install_panic_hook();
        let _ = UI_THREAD.set(std::thread::current().id());
        enable_raw_mode()?;
        TERMINAL_TAKEN.store(true, Ordering::SeqCst);
        let guard = TerminalGuard;
        execute!(stdout(), EnterAlternateScreen, EnableMouseCapture)?;
        Ok(guard)
    }

    fn restore(self) {
        drop(self);
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore_terminal();
    }
}

/// Restores the terminal before the panic message is printed, so it is readable. A
/// panic on another thread while the screen is taken goes to the log instead of
/// scribbling over the screen (the UI reports the stopped worker).
fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let on_ui = UI_THREAD.get() == Some(&std::thread::current().id());
            if TERMINAL_TAKEN.load(Ordering::SeqCst) && !on_ui {
                tracing::error!(
                    "panic on thread {}: {info}",
                    std::thread::current().name().unwrap_or("?")
                );
                return;
            }
            restore_terminal();
            previous(info);
        }));
    });
}
