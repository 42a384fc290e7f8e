//! The terminal application: a worklist of patients, each patient's screening
//! checklist with manual answers, and the bone-density reading; the patient's
//! images; blinded reading (the reader's worklist and read screen), adjudication
//! and the agreement figures (`reading`).
//!
//! Key -> `Action` (keymap) -> `App::update` -> requests to the database worker ->
//! responses -> `App::apply` -> `App::render`. The UI thread never touches the
//! database: a worker thread owns its own `Study`. The terminal is restored on every
//! exit path: normal return, error return (Drop guard) and panic (panic hook).

pub mod app;
pub mod dashboard;
pub mod fixture;
pub mod followup;
pub mod jobs;
pub mod keymap;
pub mod reading;
pub mod summary;
pub mod theme;
pub mod ui;
pub mod worker;

#[cfg(test)]
mod tests;

pub use app::{
    App, Choice, Filters, ImagesView, LoadState, Message, MessageKind, Pane, PreviewCache, Screen,
    Session,
};
pub use dashboard::{BoxPatients, DashboardFigures, DashboardView, FlowLine};
pub use followup::{FollowupView, VisitField, VisitForm};
pub use jobs::{Confirmation, JobsView, ModelFigures, ModelView};
pub use keymap::Action;
pub use reading::{CaseList, CaseScreen, FormField, FormMode, GradeChoice, GradeForm};
pub use summary::{SummaryLine, SummaryPart, SummaryView};
pub use theme::Theme;
pub use worker::{
    AgreementFigures, EvaluationFigures, Explanation, ExplanationFigures, FollowupScope,
    ImageExplanation, LoadedCase, Preview, PreviewKey, RecordVisit, RenderImage, Request, Response,
    SaveFailure, SetAnswer,
};

use anyhow::{Context as _, bail};
use crossterm::event::{self, DisableMouseCapture, EnableMouseCapture, KeyEvent, MouseEvent};
use crossterm::terminal::{
    EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode,
};
use crossterm::{cursor, execute};
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;
use ratatui::backend::{Backend as _, ClearType};
use ratatui_image::picker::{Picker, ProtocolType};
use std::io::{IsTerminal, Stdout, Write as _, stdout};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Once, OnceLock};
use std::thread::{JoinHandle, ThreadId};
use std::time::{Duration, Instant};
use worker::Worker;

/// How often the app is ticked (`App::tick`): the jobs screen's refresh.
pub const TICK: Duration = Duration::from_secs(1);

/// Opens the TUI on a study database; images are drawn as `MARROW_GRAPHICS` says
/// (detected when unset). The command line passes `--graphics` through [`run_with`].
pub fn run(db: &Path, key_file: Option<&Path>, as_user: Option<&str>) -> anyhow::Result<()> {
    run_with(db, key_file, as_user, Graphics::from_env())
}

/// Opens the TUI on a study database, drawing images as `graphics` says.
pub fn run_with(
    db: &Path,
    key_file: Option<&Path>,
    as_user: Option<&str>,
    graphics: Graphics,
) -> anyhow::Result<()> {
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
    // The terminal is asked how to draw images only when the images screen first opens.
    app.expect_picker();
    let guard = TerminalGuard::enter().context("cannot take over the terminal")?;
    let result = (|| -> anyhow::Result<()> {
        let mut terminal = Terminal::new(CrosstermBackend::new(stdout()))?;
        terminal.clear()?;
        let input = InputThread::spawn(events);
        // The terminal answers the graphics query on stdin: the input thread is parked
        // while it is asked, so the answer is not read as keys.
        let mut graphics =
            GraphicsSetup::new(graphics, multiplexed(), || input.paused(query_terminal));
        for r in app.start() {
            dispatch(&worker, &mut app, r);
        }
        let out = event_loop(&mut terminal, &mut app, &worker, &inbox, &mut graphics);
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

/// Opens the combined view of summary files (`marrow summary merge A.json B.json
/// --tui`): read-only, and without a study: no database, no worker, no login.
pub fn run_summary(parts: Vec<SummaryPart>) -> anyhow::Result<()> {
    if !stdout().is_terminal() {
        bail!(
            "the summary screen needs a terminal on stdout; in scripts leave out --tui \
             (`marrow summary merge A.json B.json [--json]`)"
        );
    }
    let mut app = App::summary_only(parts).map_err(anyhow::Error::msg)?;
    let guard = TerminalGuard::enter().context("cannot take over the terminal")?;
    let result = (|| -> anyhow::Result<()> {
        let mut terminal = Terminal::new(CrosstermBackend::new(stdout()))?;
        terminal.clear()?;
        while !app.should_quit() {
            terminal.draw(|f| app.render(f))?;
            // Nothing here asks a worker: the requests of a key are always empty.
            match event::read()? {
                event::Event::Key(k) => drop(app.handle_key(k)),
                event::Event::Mouse(m) => drop(app.handle_mouse(m)),
                _ => {}
            }
        }
        Ok(())
    })();
    guard.restore();
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

/// The environment variable that forces how images are drawn when `--graphics` is
/// not given (read leniently: an unknown value is logged and detection used).
pub const GRAPHICS_ENV: &str = "MARROW_GRAPHICS";

/// How images are drawn: `--graphics` / `MARROW_GRAPHICS`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Graphics {
    /// Ask the terminal when the images screen first opens; half-blocks inside tmux or
    /// screen, or when it does not answer.
    #[default]
    Auto,
    /// Half-block characters: any terminal, any SSH link, tmux; never asks the terminal.
    #[value(alias = "half-blocks", alias = "blocks")]
    Halfblocks,
    /// Sixel graphics (foot, WezTerm, xterm with sixel, mlterm…).
    Sixel,
    /// The kitty graphics protocol (kitty, Ghostty…).
    Kitty,
    /// iTerm2's inline images (iTerm2, WezTerm…).
    #[value(alias = "iterm")]
    Iterm2,
}

impl Graphics {
    /// The protocol forced, if any.
    pub fn forced(self) -> Option<ProtocolType> {
        match self {
            Graphics::Auto => None,
            Graphics::Halfblocks => Some(ProtocolType::Halfblocks),
            Graphics::Sixel => Some(ProtocolType::Sixel),
            Graphics::Kitty => Some(ProtocolType::Kitty),
            Graphics::Iterm2 => Some(ProtocolType::Iterm2),
        }
    }

    /// From `MARROW_GRAPHICS` (for `marrow demo`, which has no `--graphics`); an
    /// unknown value is logged and detection used.
    pub fn from_env() -> Graphics {
        match std::env::var(GRAPHICS_ENV) {
            Ok(v) if !v.trim().is_empty() => graphics_override(&v).unwrap_or_else(|| {
                tracing::warn!(
                    "tui: {GRAPHICS_ENV}={v:?} is not halfblocks, sixel, kitty or iterm2; detecting"
                );
                Graphics::Auto
            }),
            _ => Graphics::Auto,
        }
    }
}

/// The mode named by a `MARROW_GRAPHICS` value (`halfblocks`, `sixel`, `kitty`,
/// `iterm2`, `auto`), as `--graphics` spells them.
pub fn graphics_override(value: &str) -> Option<Graphics> {
    use clap::ValueEnum as _;
    Graphics::from_str(value.trim(), true).ok()
}

/// Whether marrow runs inside tmux or screen (as ratatui-image sees it too).
fn multiplexed() -> bool {
    std::env::var("TMUX").is_ok_and(|v| !v.is_empty())
        || std::env::var("TERM_PROGRAM").is_ok_and(|t| t == "tmux")
        || std::env::var("TERM").is_ok_and(|t| t.starts_with("tmux") || t.starts_with("screen"))
}

/// How long ratatui-image waits for the terminal's answer.
const QUERY_TIMEOUT: Duration = Duration::from_secs(2);

/// Asks the terminal for its graphics protocols and cell size (stdin must be ours).
/// ratatui-image hands back a fallback picker when nothing answers, and leaves its
/// reader blocked on stdin, where it would swallow the next keys or the answer to
/// ratatui's cursor query; a Device Status Report that any terminal answers releases it.
fn query_terminal() -> Result<Picker, String> {
    let asked = std::time::Instant::now();
    let picker = Picker::from_query_stdio().map_err(|e| e.to_string())?;
    if picker.capabilities().is_empty() && asked.elapsed() >= QUERY_TIMEOUT {
        let mut out = stdout();
        let _ = out.write_all(b"\x1b[5n").and_then(|()| out.flush());
        std::thread::sleep(Duration::from_millis(300));
        return Err(format!("no answer within {} s", QUERY_TIMEOUT.as_secs()));
    }
    Ok(picker)
}

/// Chooses how images are drawn, asking the terminal (`query`) only when needed:
/// never for half-blocks, and not inside tmux or screen unless a protocol is forced
/// (there the query goes through passthrough to an outer terminal that may never
/// answer, a detached session, and the unanswered query's reader would then swallow
/// keys). Returns the picker and, when the terminal did not answer, a note for the
/// status line.
pub fn choose_picker(
    graphics: Graphics,
    multiplexed: bool,
    query: impl FnOnce() -> Result<Picker, String>,
) -> (Picker, Option<String>) {
    let forced = graphics.forced();
    let mut note = None;
    let mut picker = match forced {
        Some(ProtocolType::Halfblocks) => Picker::halfblocks(),
        None if multiplexed => {
            tracing::info!("tui: inside tmux/screen: half-blocks (--graphics overrides)");
            Picker::halfblocks()
        }
        _ => {
            let asked = std::time::Instant::now();
            tracing::info!("tui: asking the terminal how to draw images");
            let answer = query();
            tracing::info!(
                elapsed_ms = asked.elapsed().as_secs_f64() * 1000.0,
                answered = answer.is_ok(),
                "tui: the graphics query is over"
            );
            answer
        }
        .unwrap_or_else(|e| {
            tracing::info!(
                "tui: the terminal did not answer the graphics query ({e}); half-blocks"
            );
            note = Some(format!(
                "the terminal did not answer the graphics query ({e}): images in half-blocks \
                 (--graphics sixel|kitty|iterm2 forces one)"
            ));
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
    (picker, note)
}

/// The lazy graphics set-up: the picker is chosen the first time the images screen
/// is open, between event reads on the UI thread, so a user who never opens images
/// never sees the terminal queried.
pub struct GraphicsSetup<Q> {
    graphics: Graphics,
    multiplexed: bool,
    query: Q,
}

impl<Q: FnMut() -> Result<Picker, String>> GraphicsSetup<Q> {
    pub fn new(graphics: Graphics, multiplexed: bool, query: Q) -> GraphicsSetup<Q> {
        GraphicsSetup {
            graphics,
            multiplexed,
            query,
        }
    }

    /// Before a frame is drawn: when the app waits for a picker, chooses one (asking
    /// the terminal if needed) and hands it over. Returns `None` when nothing was to
    /// do, else the requests that follow (the frame the images screen waits for).
    pub fn settle(&mut self, app: &mut App) -> Option<Vec<Request>> {
        if !app.wants_picker() {
            return None;
        }
        let (picker, note) = choose_picker(self.graphics, self.multiplexed, &mut self.query);
        Some(app.set_picker(picker, note))
    }
}

fn event_loop(
    terminal: &mut Terminal<CrosstermBackend<Stdout>>,
    app: &mut App,
    worker: &Worker,
    inbox: &Receiver<UiEvent>,
    graphics: &mut GraphicsSetup<impl FnMut() -> Result<Picker, String>>,
) -> anyhow::Result<()> {
    // The startup figures of docs/BENCHMARKS.md, from process start: the first frame
    // that shows patients (or the empty or failed worklist), and the frame that shows
    // the whole worklist.
    let (mut first_logged, mut whole_logged) = (false, false);
    let mut next_tick = Instant::now() + TICK;
    loop {
        if let Some(requests) = graphics.settle(app) {
            // The query may have left bytes on screen: redraw all (not `clear`, whose
            // cursor query would race a reader the query may have left behind).
            terminal.backend_mut().clear_region(ClearType::All)?;
            terminal.swap_buffers();
            for r in requests {
                dispatch(worker, app, r);
            }
        }
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
        let first = match inbox.recv_timeout(next_tick.saturating_duration_since(Instant::now())) {
            Ok(ev) => Some(ev),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => return Ok(()),
        };
        if Instant::now() >= next_tick {
            next_tick = Instant::now() + TICK;
            for r in app.tick() {
                dispatch(worker, app, r);
            }
            if app.should_quit() {
                return Ok(());
            }
        }
        let Some(first) = first else {
            continue;
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

/// Reads terminal events on its own thread (polling, so it can be stopped, and parked
/// while the terminal is asked about graphics).
struct InputThread {
    gate: Arc<InputGate>,
    thread: Option<JoinHandle<()>>,
}

/// The input thread's controls: stop, and park (not reading) while the UI thread asks.
#[derive(Default)]
struct InputGate {
    state: Mutex<GateState>,
    changed: Condvar,
}

#[derive(Default)]
struct GateState {
    stop: bool,
    /// The UI thread wants stdin to itself.
    park: bool,
    /// The input thread is parked (between reads).
    parked: bool,
}

impl InputGate {
    fn lock(&self) -> MutexGuard<'_, GateState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Between reads: parks while asked to; false when the thread must stop.
    fn wait_turn(&self) -> bool {
        let mut s = self.lock();
        if s.park && !s.stop {
            s.parked = true;
            self.changed.notify_all();
            while s.park && !s.stop {
                s = self.changed.wait(s).unwrap_or_else(|e| e.into_inner());
            }
            s.parked = false;
        }
        !s.stop
    }
}

impl InputThread {
    fn spawn(events: Sender<UiEvent>) -> InputThread {
        let gate = Arc::new(InputGate::default());
        let g = gate.clone();
        let thread = std::thread::Builder::new()
            .name("marrow-input".into())
            .spawn(move || {
                while g.wait_turn() {
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
        InputThread { gate, thread }
    }

    /// Runs `f` while the input thread reads nothing (it parks at its next poll, within
    /// 100 ms); events read before stay queued for the UI thread.
    fn paused<T>(&self, f: impl FnOnce() -> T) -> T {
        let running = self.thread.as_ref().is_some_and(|t| !t.is_finished());
        {
            let mut s = self.gate.lock();
            s.park = true;
            let deadline = std::time::Instant::now() + Duration::from_secs(1);
            while running && !s.parked {
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                if left.is_zero() {
                    tracing::warn!("tui: the input thread did not park; asking anyway");
                    break;
                }
                s = match self.gate.changed.wait_timeout(s, left) {
                    Ok((g, _)) => g,
                    Err(e) => e.into_inner().0,
                };
            }
        }
        let out = f();
        self.gate.lock().park = false;
        self.gate.changed.notify_all();
        out
    }

    fn stop(mut self) {
        self.gate.lock().stop = true;
        self.gate.changed.notify_all();
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
        // NO_COLOR is honoured by the theme (text and borders carry no colour);
        // crossterm would also drop the grey levels of a half-block radiograph,
        // which are the image itself, not decoration.
        crossterm::style::Colored::set_ansi_color_disabled(false);
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
