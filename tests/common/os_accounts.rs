//! Real OS accounts for the tests that need them (root only; CI and the development
//! container run as root): `useradd`/`groupadd` with names unique to this process
//! (`mrw<role><tag>`, the tag from the process id, the clock and a counter, so tests
//! running at the same time in this binary or in another never collide), a folder
//! every account may enter holding a copy of the binary (the build folder is under
//! root's home, which only root may enter) and a private home per account, and
//! `User::command`, which runs a program as the account (its uid and groups, umask
//! 077, a clean environment). Everything is removed when the `OsFixture` is dropped,
//! also when the test fails: `userdel` is retried while a process of the account is
//! still ending, then forced.
//!
//! Included with `#[path = "common/os_accounts.rs"] mod os_accounts;` by the test files
//! that use it (not by `common/mod.rs`, which every test binary compiles).
#![allow(dead_code)]

use std::ffi::CString;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

/// Whether this process runs as root.
pub fn is_root() -> bool {
    // SAFETY: a plain system call.
    unsafe { libc::geteuid() == 0 }
}

/// Whether a system tool is installed.
pub fn found(tool: &str) -> bool {
    ["/usr/sbin", "/usr/bin", "/sbin", "/bin"]
        .iter()
        .any(|d| Path::new(d).join(tool).exists())
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Runs an account tool (`useradd`, `groupadd`), retrying while another process holds
/// the lock on /etc/passwd or /etc/group; panics if it fails otherwise.
fn admin_tool(cmd: &str, args: &[&str]) {
    let mut tries = 0;
    loop {
        let out = Command::new(cmd)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("{cmd}: {e}"));
        if out.status.success() {
            return;
        }
        tries += 1;
        let said = text(&out);
        assert!(
            said.to_lowercase().contains("lock") && tries < 50,
            "{cmd} {args:?}: exit {:?}: {said}",
            out.status.code()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// uid and primary gid of a user name.
pub fn passwd(name: &str) -> (u32, u32) {
    let c = CString::new(name).unwrap();
    // SAFETY: getpwnam's result is read at once; the fixture's callers make accounts
    // one at a time.
    unsafe {
        let p = libc::getpwnam(c.as_ptr());
        assert!(!p.is_null(), "no user {name}");
        ((*p).pw_uid, (*p).pw_gid)
    }
}

/// Drops root for `uid` (between fork and exec): groups first, then the gid, then the
/// uid; umask 077 (so only marrow's own modes can make a file the group's).
pub fn become_user(uid: u32, gid: u32, groups: &[u32]) -> std::io::Result<()> {
    // SAFETY: plain system calls with a slice that outlives them.
    unsafe {
        libc::umask(0o077);
        if libc::setgroups(groups.len(), groups.as_ptr()) != 0
            || libc::setgid(gid) != 0
            || libc::setuid(uid) != 0
        {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// An OS account made for the test.
#[derive(Clone, Debug)]
pub struct User {
    pub name: String,
    pub uid: u32,
    /// The primary group.
    pub gid: u32,
    /// The primary group and, for a member, the study group.
    pub groups: Vec<u32>,
    /// A private home (0700) of its own.
    pub home: PathBuf,
    /// A copy of the binary this user may run.
    pub bin: PathBuf,
}

impl User {
    /// `marrow ARGS` as this user, to be run: their uid, primary and supplementary
    /// groups, umask 077, a clean environment with their HOME/USER/LOGNAME, in their
    /// home.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        c.args(args)
            .current_dir(&self.home)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("HOME", &self.home)
            .env("USER", &self.name)
            .env("LOGNAME", &self.name)
            .env("NO_COLOR", "1")
            .env("LANG", "C.UTF-8");
        let (uid, gid, groups) = (self.uid, self.gid, self.groups.clone());
        // SAFETY: only system calls between fork and exec.
        unsafe {
            c.pre_exec(move || become_user(uid, gid, &groups));
        }
        c
    }

    /// Runs `marrow ARGS` as this user.
    pub fn marrow(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run marrow")
    }

    /// Runs `marrow ARGS` as this user, asserts it succeeded, returns stdout.
    pub fn expect(&self, args: &[&str]) -> String {
        let out = self.marrow(args);
        assert!(
            out.status.success(),
            "{} as {}: exit {:?}\n{}",
            args.join(" "),
            self.name,
            out.status.code(),
            text(&out)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// Removes the users and the group it made, on every way out of the test.
struct Accounts {
    users: Vec<String>,
    group: Option<String>,
}

impl Drop for Accounts {
    fn drop(&mut self) {
        for u in &self.users {
            // A process of the user that was just told to end (a terminal's shell on
            // SIGHUP) may still be going: userdel refuses until it has. After 5 s the
            // account is removed anyway (`-f`).
            let mut tries = 0;
            loop {
                let out = Command::new("userdel").arg(u).output();
                if out.as_ref().is_ok_and(|o| o.status.success()) {
                    break;
                }
                tries += 1;
                if tries == 50 {
                    let forced = Command::new("userdel").args(["-f", u]).output();
                    if !forced.as_ref().is_ok_and(|o| o.status.success()) {
                        eprintln!("warning: userdel {u}: {out:?}; userdel -f {u}: {forced:?}");
                    }
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        if let Some(g) = &self.group {
            let out = Command::new("groupdel").arg(g).output();
            if !out.as_ref().is_ok_and(|o| o.status.success()) {
                eprintln!("warning: groupdel {g}: {out:?}");
            }
        }
    }
}

/// Root's set-up for the tests with real accounts: optionally a new group, a folder
/// every test user may enter holding a copy of the binary and their homes; the
/// accounts and the group are removed when it is dropped, then the folder.
pub struct OsFixture {
    /// The study group and its gid, when asked for.
    group: Option<(String, u32)>,
    /// Unique to this fixture: every name it makes ends with it.
    pub tag: String,
    homes: PathBuf,
    /// The copy of the binary every account may run.
    pub bin: PathBuf,
    // Dropped after the accounts: the folder goes last.
    accounts: Accounts,
    /// A folder (0755, under /tmp) every account may enter.
    pub base: tempfile::TempDir,
}

impl OsFixture {
    /// Why this process cannot make OS accounts (not root, tools missing), or `None`.
    pub fn unavailable(with_group: bool) -> Option<String> {
        if !is_root() {
            return Some("making OS accounts needs root (CI runs as root)".into());
        }
        let tools: &[&str] = if with_group {
            &["useradd", "userdel", "groupadd", "groupdel"]
        } else {
            &["useradd", "userdel"]
        };
        let missing: Vec<&str> = tools.iter().copied().filter(|t| !found(t)).collect();
        if !missing.is_empty() {
            return Some(format!("{} not installed", missing.join("/")));
        }
        None
    }

    /// The fixture, with a new group when `with_group`; `Err` says why it cannot be made
    /// here (see `unavailable`).
    pub fn new(with_group: bool) -> Result<OsFixture, String> {
        if let Some(why) = Self::unavailable(with_group) {
            return Err(why);
        }
        // Short unique names (user names are at most 32 characters).
        static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let tag = format!("{:x}", (std::process::id() << 12) ^ nanos ^ (seq << 28));
        let tag = tag[tag.len().saturating_sub(6)..].to_string();
        let mut accounts = Accounts {
            users: Vec::new(),
            group: None,
        };
        let group = if with_group {
            let name = format!("mrwg{tag}");
            admin_tool("groupadd", &[&name]);
            accounts.group = Some(name.clone());
            let gid = marrow::db::sharing::group_id(&name).expect("the new group");
            Some((name, gid))
        } else {
            None
        };

        let base = tempfile::Builder::new()
            .prefix("marrow-os-")
            .tempdir_in("/tmp")
            .unwrap();
        let open =
            |p: &Path| std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
        open(base.path());
        let bin_dir = base.path().join("bin");
        std::fs::create_dir(&bin_dir).unwrap();
        open(&bin_dir);
        let bin = bin_dir.join("marrow");
        std::fs::copy(env!("CARGO_BIN_EXE_marrow"), &bin).unwrap();
        open(&bin);
        let homes = base.path().join("home");
        std::fs::create_dir(&homes).unwrap();
        open(&homes);
        Ok(OsFixture {
            group,
            tag,
            homes,
            bin,
            accounts,
            base,
        })
    }

    /// The study group's name (a fixture made with a group).
    pub fn group(&self) -> &str {
        &self.group.as_ref().expect("a fixture with a group").0
    }

    /// The study group's gid (a fixture made with a group).
    pub fn gid(&self) -> u32 {
        self.group.as_ref().expect("a fixture with a group").1
    }

    /// A new account `mrw<role><tag>`, in the study group when `member`, with a
    /// private home of its own. Its primary group is the system's default (`-N`), never
    /// the study group.
    pub fn user(&mut self, role: &str, member: bool) -> User {
        let name = format!("mrw{role}{}", self.tag);
        let mut args = vec!["-M", "-N", "-s", "/bin/sh"];
        if member {
            args.extend(["-G", self.group()]);
        }
        args.push(&name);
        admin_tool("useradd", &args);
        self.accounts.users.push(name.clone());
        let (uid, primary) = passwd(&name);
        if let Some((_, gid)) = &self.group {
            assert_ne!(
                primary, *gid,
                "the study group must not be their primary group"
            );
        }
        let home = self.homes.join(&name);
        std::fs::create_dir(&home).unwrap();
        std::os::unix::fs::chown(&home, Some(uid), Some(primary)).unwrap();
        std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o700)).unwrap();
        let mut groups = vec![primary];
        if member {
            groups.push(self.gid());
        }
        User {
            name,
            uid,
            gid: primary,
            groups,
            home,
            bin: self.bin.clone(),
        }
    }

    /// A new, empty folder for the study, owned by `owner` (0700); `init --group`
    /// makes it the group's.
    pub fn study_dir(&self, owner: &User) -> PathBuf {
        let dir = self.base.path().join("study");
        std::fs::create_dir(&dir).unwrap();
        std::os::unix::fs::chown(&dir, Some(owner.uid), Some(owner.gid)).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        dir
    }
}
