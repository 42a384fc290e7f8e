//! A tmux server driving the `marrow` binary for the end-to-end TUI tests.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// A tmux server of our own (its own socket), killed when dropped, even on failure.
pub struct Tmux {
    socket: String,
}

impl Tmux {
    pub fn start(width: u16, height: u16, command: &str) -> Tmux {
        match Command::new("tmux").arg("-V").output() {
            Ok(o) if o.status.success() => {}
            _ => panic!(
                "tmux is not installed or does not run: the end-to-end TUI test needs it \
                 (install it, e.g. `apt-get install tmux`)"
            ),
        }
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let tmux = Tmux {
            socket: format!("marrow-test-{}-{nanos}", std::process::id()),
        };
        let out = tmux.run(&[
            "new-session",
            "-d",
            "-x",
            &width.to_string(),
            "-y",
            &height.to_string(),
            "-s",
            "main",
            command,
        ]);
        assert!(
            out.status.success(),
            "tmux new-session failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        tmux
    }

    pub fn run(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("run tmux")
    }

    pub fn screen(&self) -> String {
        String::from_utf8_lossy(&self.run(&["capture-pane", "-p", "-t", "main"]).stdout)
            .into_owned()
    }

    /// Named keys (`Enter`, `Escape`, `j`).
    pub fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "main"];
        args.extend_from_slice(keys);
        assert!(self.run(&args).status.success(), "send-keys {keys:?}");
    }

    /// Text typed as is.
    pub fn type_text(&self, text: &str) {
        assert!(
            self.run(&["send-keys", "-t", "main", "-l", text])
                .status
                .success(),
            "send-keys -l {text:?}"
        );
    }

    /// Waits until the screen passes `test`; fails with the screen after `timeout`.
    pub fn wait_until(&self, what: &str, timeout: Duration, test: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let screen = self.screen();
            if test(&screen) {
                return screen;
            }
            if start.elapsed() > timeout {
                panic!("waited {timeout:?} for {what}; the screen shows:\n{screen}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until the screen differs from `before` and then holds still (two
    /// captures 150 ms apart agree): a capture taken while the application is
    /// still writing its frame shows half of the old one.
    pub fn wait_for_change(&self, what: &str, timeout: Duration, before: &str) -> String {
        let mut screen = self.wait_until(what, timeout, |s| s != before);
        let start = Instant::now();
        loop {
            std::thread::sleep(Duration::from_millis(150));
            let again = self.screen();
            if again == screen || start.elapsed() > timeout {
                return again;
            }
            screen = again;
        }
    }

    /// Waits until the screen shows `text`; fails with the screen after `timeout`.
    pub fn wait_for(&self, text: &str, timeout: Duration) -> String {
        self.wait_until(&format!("{text:?}"), timeout, |s| s.contains(text))
    }

    /// The screen with its escapes (`capture-pane -e`): colours and attributes as
    /// tmux holds them.
    pub fn screen_with_escapes(&self) -> String {
        String::from_utf8_lossy(&self.run(&["capture-pane", "-e", "-p", "-t", "main"]).stdout)
            .into_owned()
    }

    /// From the worklist of a study whose patients include PKUPH-OA-0001 (and three
    /// patients in all): searches `oa-0001`, keeps the search, opens the patient,
    /// answers I4 "yes" by hand with `reason` and saves. Returns the screen that says
    /// it was saved.
    pub fn answer_i4_of_oa_0001(&self, reason: &str, wait: Duration) -> String {
        self.type_text("/");
        self.type_text("oa-0001");
        self.wait_for("Patients 1 of 3", wait);
        self.keys(&["Enter"]);
        self.keys(&["Enter"]);
        self.wait_for("Target area free of deformity", wait);

        // Down to I4, open the popup, answer yes with the reason, save.
        self.keys(&["j", "j", "j"]);
        self.wait_for("I4 · Target area free of deformity", wait);
        self.keys(&["Enter"]);
        self.wait_for("Answer I4 by hand", wait);
        self.keys(&["y"]);
        self.type_text(reason);
        self.wait_for(reason, wait);
        self.keys(&["Enter"]);
        self.wait_for("saved: PKUPH-OA-0001 I4 set to met", wait)
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        // The socket file can outlive the server; remove it too.
        let socket = self.run(&["display-message", "-p", "#{socket_path}"]);
        let _ = self.run(&["kill-server"]);
        let path = String::from_utf8_lossy(&socket.stdout).trim().to_string();
        if !path.is_empty() {
            let _ = std::fs::remove_file(path);
        }
    }
}

pub fn shell_quote(p: &Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', r"'\''"))
}

/// The terminals an SSH session brings, and one without colour (`NO_COLOR`): the
/// `TERM` and whether `NO_COLOR` is set.
pub const TERMS: [(&str, bool); 4] = [
    ("xterm-256color", false),
    ("screen-256color", false),
    ("tmux-256color", false),
    ("xterm-256color", true),
];

/// A shell command for a tmux pane: the `marrow` binary with `args` (quoted already)
/// under `TERM=term`, with `NO_COLOR=1` or without `NO_COLOR`; then the exit status as
/// `MARROW-EXIT=<status>`, and the pane kept open.
pub fn marrow_under_term(term: &str, no_color: bool, args: &str) -> String {
    format!(
        "env -u NO_COLOR TERM={term} {} {} {args}; echo MARROW-EXIT=$?; sleep 600",
        if no_color { "NO_COLOR=1" } else { "" },
        shell_quote(Path::new(env!("CARGO_BIN_EXE_marrow"))),
    )
}

/// The colour parameters of the SGR escapes in `raw` (foreground/background 30-49,
/// 90-107, and 38/48 extended colours).
pub fn sgr_colours(raw: &str) -> Vec<String> {
    let mut out = Vec::new();
    for part in raw.split("\x1b[").skip(1) {
        let Some(end) = part.find('m') else { continue };
        let params = &part[..end];
        if !params.bytes().all(|b| b.is_ascii_digit() || b == b';') {
            continue;
        }
        let nums: Vec<u32> = params.split(';').filter_map(|p| p.parse().ok()).collect();
        if nums
            .iter()
            .any(|&n| (30..=49).contains(&n) && n != 39 && n != 49 || (90..=107).contains(&n))
        {
            out.push(params.to_string());
        }
    }
    out
}

/// A cell of the screen drawn in a colour (foreground, background or both).
#[derive(Debug, Clone, PartialEq)]
pub struct ColouredCell {
    /// Line and character on the line (a wide character counts one), from 0.
    pub row: usize,
    pub col: usize,
    pub ch: char,
    /// The colours in force, as their SGR parameters: "fg bg", "-" for the default.
    pub colour: String,
}

/// Every cell of `raw` (`capture-pane -e` output) drawn in a colour, following the
/// SGR escapes as a terminal does (colours stay in force across lines until reset).
pub fn coloured_cells(raw: &str) -> Vec<ColouredCell> {
    let mut out = Vec::new();
    let (mut fg, mut bg): (Option<String>, Option<String>) = (None, None);
    for (row, line) in raw.lines().enumerate() {
        let mut col = 0;
        let mut rest = line;
        while let Some(ch) = rest.chars().next() {
            if let Some(after) = rest.strip_prefix("\x1b[") {
                let end = after
                    .find(|c: char| c.is_ascii_alphabetic())
                    .unwrap_or(after.len());
                if after[end..].starts_with('m') {
                    apply_sgr(&after[..end], &mut fg, &mut bg);
                }
                rest = &after[(end + 1).min(after.len())..];
                continue;
            }
            rest = &rest[ch.len_utf8()..];
            if fg.is_some() || bg.is_some() {
                out.push(ColouredCell {
                    row,
                    col,
                    ch,
                    colour: format!(
                        "{} {}",
                        fg.as_deref().unwrap_or("-"),
                        bg.as_deref().unwrap_or("-")
                    ),
                });
            }
            col += 1;
        }
    }
    out
}

/// One SGR escape's parameters applied to the colours in force.
fn apply_sgr(params: &str, fg: &mut Option<String>, bg: &mut Option<String>) {
    let parts: Vec<&str> = if params.is_empty() {
        vec!["0"]
    } else {
        params.split(';').collect()
    };
    let mut i = 0;
    while i < parts.len() {
        let n: u32 = parts[i].parse().unwrap_or(u32::MAX);
        match n {
            0 => {
                *fg = None;
                *bg = None;
            }
            39 => *fg = None,
            49 => *bg = None,
            30..=37 | 90..=97 => *fg = Some(n.to_string()),
            40..=47 | 100..=107 => *bg = Some(n.to_string()),
            38 | 48 => {
                let extra = match parts.get(i + 1) {
                    Some(&"5") => 2,
                    Some(&"2") => 4,
                    _ => 0,
                };
                let end = (i + 1 + extra).min(parts.len());
                let colour = Some(parts[i..end].join(";"));
                if n == 38 {
                    *fg = colour;
                } else {
                    *bg = colour;
                }
                i = end;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
}
