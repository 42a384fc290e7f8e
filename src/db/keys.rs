//! The database key: a random 256-bit key in a key file (mode 0600; 0640 in a study
//! shared with a group, see [`super::sharing`]) beside the database, or in
//! `MARROW_KEY`. The secret for keyed hashes of identifiers is derived from it, so the
//! key file is the only thing to guard.

use super::DbError;
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Environment variable that may hold the key as 64 hex characters.
pub const KEY_ENV: &str = "MARROW_KEY";
/// HKDF label of the identifier-hashing secret. Changing it would orphan every link.
const IDENTIFIER_LABEL: &[u8] = b"marrow/identifier-hmac/v1";

/// A 256-bit database key.
#[derive(Clone)]
pub struct Key([u8; 32]);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(<redacted>)")
    }
}

/// Where the key came from (said in messages; never the key itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    Env,
    File(PathBuf),
}

impl std::fmt::Display for KeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeySource::Env => write!(f, "${KEY_ENV}"),
            KeySource::File(p) => write!(f, "key file {}", p.display()),
        }
    }
}

impl Key {
    /// A fresh random key.
    pub fn generate() -> Result<Key, DbError> {
        let mut k = [0u8; 32];
        getrandom::fill(&mut k)
            .map_err(|e| DbError::Invalid(format!("no randomness for the key: {e}")))?;
        Ok(Key(k))
    }

    /// Parses 64 hex characters (surrounding whitespace allowed).
    pub fn from_hex(s: &str, source: &KeySource) -> Result<Key, DbError> {
        let s = s.trim();
        let bytes = hex::decode(s).ok().filter(|b| b.len() == 32).ok_or_else(|| {
            DbError::BadKey(format!(
                "{source} must hold exactly 64 hex characters (a 256-bit key); it holds {} characters that are not that",
                s.len()
            ))
        })?;
        let mut k = [0u8; 32];
        k.copy_from_slice(&bytes);
        Ok(Key(k))
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The key as SQLCipher's raw-key literal, `x'…'`.
    pub fn sql_literal(&self) -> String {
        format!("\"x'{}'\"", self.to_hex())
    }

    /// A 256-bit secret for one purpose, derived from this key with HKDF-SHA256 under
    /// `label` (so one key file is all there is to guard).
    pub fn derive(&self, label: &[u8]) -> [u8; 32] {
        let hk = Hkdf::<Sha256>::new(None, &self.0);
        let mut secret = [0u8; 32];
        hk.expand(label, &mut secret)
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        secret
    }

    /// Hasher for identifiers (MRN, DICOM PatientID), keyed by a secret derived from this key.
    pub fn identifier_hasher(&self) -> IdentifierHasher {
        let secret = self.derive(IDENTIFIER_LABEL);
        IdentifierHasher(
            Hmac::<Sha256>::new_from_slice(&secret).expect("HMAC takes keys of any length"),
        )
    }
}

/// Keyed hash of hospital identifiers: the same MRN always gives the same hash
/// under one key, and the hash cannot be reversed without it.
#[derive(Clone)]
pub struct IdentifierHasher(Hmac<Sha256>);

impl IdentifierHasher {
    /// Hash of an identifier, normalised (trimmed, upper case) so exports that differ
    /// only in case or padding still link.
    pub fn hash(&self, identifier: &str) -> String {
        let mut mac = self.0.clone();
        mac.update(identifier.trim().to_uppercase().as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }
}

/// The default key file of a database: `<db>.key`.
pub fn default_key_file(db: &Path) -> PathBuf {
    let mut s = db.as_os_str().to_owned();
    s.push(".key");
    PathBuf::from(s)
}

/// Finds the key: `MARROW_KEY` first, else the key file.
pub fn load_key(db: &Path, key_file: Option<&Path>) -> Result<(Key, KeySource), DbError> {
    if let Ok(v) = std::env::var(KEY_ENV)
        && !v.trim().is_empty()
    {
        let k = Key::from_hex(&v, &KeySource::Env)?;
        return Ok((k, KeySource::Env));
    }
    let path = key_file
        .map(Path::to_path_buf)
        .unwrap_or_else(|| default_key_file(db));
    let source = KeySource::File(path.clone());
    let meta = match fs::metadata(&path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(DbError::NoKey {
                db: db.to_path_buf(),
                key_file: path,
            });
        }
        Err(e) => {
            return Err(DbError::BadKey(unreadable(&path, &source, &e)));
        }
    };
    check_key_mode(db, &path, &meta)?;
    let text =
        fs::read_to_string(&path).map_err(|e| DbError::BadKey(unreadable(&path, &source, &e)))?;
    Ok((Key::from_hex(&text, &source)?, source))
}

fn unreadable(path: &Path, source: &KeySource, e: &std::io::Error) -> String {
    if e.kind() == std::io::ErrorKind::PermissionDenied
        && let Some(why) = super::sharing::permission_problem(path, false)
    {
        return why;
    }
    format!("cannot read {source}: {e}")
}

/// Refuses a key file that others may read; one the group may read only in a study
/// shared with that group (see [`super::sharing`]), and never one the group may write.
fn check_key_mode(db: &Path, path: &Path, meta: &fs::Metadata) -> Result<(), DbError> {
    use super::sharing::{Sharing, group_name};
    let mode = meta.permissions().mode() & 0o777;
    let p = path.display();
    if mode & 0o007 != 0 {
        return Err(DbError::BadKey(format!(
            "key file {p} is readable by every user on this machine (mode {mode:04o}); \
             run `chmod 600 {p}` (`chmod 640 {p}` in a study shared with a group) and try again"
        )));
    }
    if mode & 0o070 == 0 {
        return Ok(());
    }
    let group = group_name(meta.gid());
    match Sharing::of_study(db) {
        Sharing::Private => Err(DbError::BadKey(format!(
            "key file {p} is readable by the group {group} (mode {mode:04o}), but the study {} is private to its owner; \
             run `chmod 600 {p}`, or set the study up for the group (see \"Shared server\" in the README)",
            db.display()
        ))),
        Sharing::Group(gid) if gid != meta.gid() => Err(DbError::BadKey(format!(
            "key file {p} belongs to the group {group}, but the study {} is shared with the group {}; run `chgrp {} {p}`",
            db.display(),
            group_name(gid),
            group_name(gid)
        ))),
        Sharing::Group(_) if mode & 0o030 != 0 => Err(DbError::BadKey(format!(
            "key file {p} may be changed by the group {group} (mode {mode:04o}); run `chmod 640 {p}` and try again"
        ))),
        Sharing::Group(_) => Ok(()),
    }
}

/// Creates the key for a new database: `MARROW_KEY` when set, else a new key file
/// (mode 0600, never overwriting one that exists: an existing key file is used).
pub fn create_key(db: &Path, key_file: Option<&Path>) -> Result<(Key, KeySource, bool), DbError> {
    if std::env::var(KEY_ENV).is_ok_and(|v| !v.trim().is_empty()) {
        let (k, s) = load_key(db, key_file)?;
        return Ok((k, s, false));
    }
    let path = key_file
        .map(Path::to_path_buf)
        .unwrap_or_else(|| default_key_file(db));
    if path.exists() {
        let (k, s) = load_key(db, Some(&path))?;
        return Ok((k, s, false));
    }
    let key = Key::generate()?;
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| DbError::BadKey(format!("cannot create key file {}: {e}", path.display())))?;
    f.write_all(format!("{}\n", key.to_hex()).as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(|e| DbError::BadKey(format!("cannot write key file {}: {e}", path.display())))?;
    Ok((key, KeySource::File(path), true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifier_hash_is_keyed_stable_and_normalised() {
        let a = Key::from_hex(&"11".repeat(32), &KeySource::Env).unwrap();
        let b = Key::from_hex(&"22".repeat(32), &KeySource::Env).unwrap();
        let ha = a.identifier_hasher();
        assert_eq!(ha.hash("mrn-001"), ha.hash(" MRN-001 "));
        assert_ne!(ha.hash("MRN-001"), b.identifier_hasher().hash("MRN-001"));
        assert_ne!(ha.hash("MRN-001"), ha.hash("MRN-002"));
        assert_eq!(ha.hash("x").len(), 64);
    }

    #[test]
    fn bad_hex_is_refused_with_the_source_named() {
        let e = Key::from_hex("abc", &KeySource::File("/tmp/k".into())).unwrap_err();
        assert!(e.to_string().contains("/tmp/k"), "{e}");
    }
}
