//! Helpers shared by the integration tests.

use std::path::PathBuf;

/// Returns the directory holding the real PTB files, or `None` to skip.
///
/// Looks for `data/ptb` in the repository, then for `shared/data/ptb` beside
/// the repository. When neither has `ptb.train.txt`, prints a "skipped" line
/// and returns `None`, unless the environment variable `CI` is set: there the
/// data must be present, so this panics.
pub fn ptb_dir() -> Option<PathBuf> {
    let repo_root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let candidates = [
        repo_root.join("data/ptb"),
        repo_root.join("../shared/data/ptb"),
    ];
    if let Some(found) = candidates
        .iter()
        .find(|dir| dir.join("ptb.train.txt").is_file())
    {
        return Some(found.canonicalize().unwrap_or_else(|_| found.clone()));
    }

    let tried: Vec<String> = candidates
        .iter()
        .map(|dir| dir.display().to_string())
        .collect();
    let message = format!("PTB not found at {}", tried.join(" or "));
    if std::env::var_os("CI").is_some() {
        panic!("{message}; CI needs the real data");
    }
    println!("skipped: {message}");
    None
}
