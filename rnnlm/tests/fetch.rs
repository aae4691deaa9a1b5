//! PTB fetching against a small HTTP server on 127.0.0.1 that serves the real
//! files, damaged copies, 404s and cut-off bodies.

mod common;

use std::collections::HashMap;
use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use rnnlm::corpus::{SPLIT_FILES, TEST_FILE, TRAIN_FILE, VALID_FILE};
use rnnlm::fetch::{FetchError, FetchOptions, ensure_ptb};
use sha2::{Digest, Sha256};

/// Connections one server accepts before it stops.
const MAX_CONNECTIONS: usize = 32;
/// Time after which a server stops even if the test never drops it.
const SERVER_LIFETIME: Duration = Duration::from_secs(60);
/// Read and write limit on each connection.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest request head the server reads.
const MAX_REQUEST_BYTES: usize = 16 * 1024;

/// What the server sends for one path.
#[derive(Clone)]
enum Reply {
    /// 200 with this body.
    File(Vec<u8>),
    /// 200 whose Content-Length is the full body, but the connection closes
    /// after the first half.
    CutOff(Vec<u8>),
}

/// An HTTP/1.1 server on 127.0.0.1 that serves `routes` under `/data/` and
/// returns 404 for anything else. Stops when dropped, after
/// `MAX_CONNECTIONS` connections, or after `SERVER_LIFETIME`.
struct TestServer {
    base_url: String,
    requested: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl TestServer {
    fn start(routes: HashMap<String, Reply>) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let base_url = format!("http://{}/data/", listener.local_addr().unwrap());
        let requested = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));

        let thread = {
            let requested = Arc::clone(&requested);
            let stop = Arc::clone(&stop);
            thread::spawn(move || serve(listener, &routes, &requested, &stop))
        };
        TestServer {
            base_url,
            requested,
            stop,
            thread: Some(thread),
        }
    }

    fn options(&self) -> FetchOptions {
        FetchOptions {
            connect_timeout: Duration::from_secs(5),
            download_timeout: Duration::from_secs(30),
            ..FetchOptions::new(self.base_url.clone())
        }
    }

    fn verifying_options(&self) -> FetchOptions {
        FetchOptions {
            verify_existing: true,
            ..self.options()
        }
    }

    /// Returns the paths requested so far, in order.
    fn requested(&self) -> Vec<String> {
        self.requested.lock().unwrap().clone()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve(
    listener: TcpListener,
    routes: &HashMap<String, Reply>,
    requested: &Mutex<Vec<String>>,
    stop: &AtomicBool,
) {
    let deadline = Instant::now() + SERVER_LIFETIME;
    let mut connections = 0;
    while connections < MAX_CONNECTIONS && Instant::now() < deadline {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        match listener.accept() {
            Ok((stream, _)) => {
                connections += 1;
                // A broken connection fails the client side, where the test checks it.
                let _ = handle_connection(stream, routes, requested);
            }
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                thread::sleep(Duration::from_millis(5));
            }
            Err(error) => panic!("test server accept failed: {error}"),
        }
    }
}

fn handle_connection(
    mut stream: TcpStream,
    routes: &HashMap<String, Reply>,
    requested: &Mutex<Vec<String>>,
) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;

    let mut head = Vec::new();
    let mut buffer = [0u8; 1024];
    while !head.windows(4).any(|window| window == b"\r\n\r\n") {
        let count = stream.read(&mut buffer)?;
        if count == 0 || head.len() > MAX_REQUEST_BYTES {
            return Ok(());
        }
        head.extend_from_slice(&buffer[..count]);
    }
    let head = String::from_utf8_lossy(&head);
    let path = head.split_whitespace().nth(1).unwrap_or("").to_owned();
    requested.lock().unwrap().push(path.clone());

    match path
        .strip_prefix("/data/")
        .and_then(|name| routes.get(name))
    {
        Some(Reply::File(body)) => {
            write_head(&mut stream, "200 OK", body.len())?;
            stream.write_all(body)?;
        }
        Some(Reply::CutOff(body)) => {
            write_head(&mut stream, "200 OK", body.len())?;
            stream.write_all(&body[..body.len() / 2])?;
        }
        None => {
            let body = b"not found";
            write_head(&mut stream, "404 Not Found", body.len())?;
            stream.write_all(body)?;
        }
    }
    stream.flush()?;
    stream.shutdown(std::net::Shutdown::Both)
}

fn write_head(stream: &mut TcpStream, status: &str, content_length: usize) -> std::io::Result<()> {
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Length: {content_length}\r\n\
         Content-Type: text/plain\r\nConnection: close\r\n\r\n"
    )
}

/// Reads the three real PTB files, or returns `None` to skip the test.
fn real_files() -> Option<(PathBuf, HashMap<String, Vec<u8>>)> {
    let dir = common::ptb_dir()?;
    let files = SPLIT_FILES
        .iter()
        .map(|name| (name.to_string(), fs::read(dir.join(name)).unwrap()))
        .collect();
    Some((dir, files))
}

fn serve_all(files: &HashMap<String, Vec<u8>>) -> HashMap<String, Reply> {
    files
        .iter()
        .map(|(name, bytes)| (name.clone(), Reply::File(bytes.clone())))
        .collect()
}

fn copy_splits(source: &Path, destination: &Path) {
    for name in SPLIT_FILES {
        fs::copy(source.join(name), destination.join(name)).unwrap();
    }
}

/// Returns the sorted names of the entries in `dir`, hidden ones included.
fn dir_entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

#[test]
fn fetch_writes_identical_files() {
    let Some((_, files)) = real_files() else {
        return;
    };
    let server = TestServer::start(serve_all(&files));
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("nested/ptb");

    ensure_ptb(&dir, &server.options()).unwrap();

    for name in SPLIT_FILES {
        let written = fs::read(dir.join(name)).unwrap();
        assert!(
            written == files[name],
            "{name} differs from the served copy"
        );
    }
    assert_eq!(dir_entries(&dir), [TEST_FILE, TRAIN_FILE, VALID_FILE]);
    assert_eq!(
        server.requested(),
        SPLIT_FILES.map(|name| format!("/data/{name}"))
    );
}

#[test]
fn fetch_skips_present_files() {
    let Some((source, files)) = real_files() else {
        return;
    };
    let server = TestServer::start(serve_all(&files));
    let temp = tempfile::tempdir().unwrap();
    copy_splits(&source, temp.path());

    ensure_ptb(temp.path(), &server.options()).unwrap();
    ensure_ptb(temp.path(), &server.verifying_options()).unwrap();

    assert!(server.requested().is_empty(), "{:?}", server.requested());
}

#[test]
fn fetch_downloads_only_missing() {
    let Some((source, files)) = real_files() else {
        return;
    };
    let server = TestServer::start(serve_all(&files));
    let temp = tempfile::tempdir().unwrap();
    fs::copy(source.join(VALID_FILE), temp.path().join(VALID_FILE)).unwrap();

    ensure_ptb(temp.path(), &server.options()).unwrap();

    assert_eq!(
        server.requested(),
        [format!("/data/{TRAIN_FILE}"), format!("/data/{TEST_FILE}")]
    );
    assert_eq!(
        dir_entries(temp.path()),
        [TEST_FILE, TRAIN_FILE, VALID_FILE]
    );
}

#[test]
fn verify_existing_rejects_modified_file() {
    let Some((source, files)) = real_files() else {
        return;
    };
    let server = TestServer::start(serve_all(&files));
    let temp = tempfile::tempdir().unwrap();
    copy_splits(&source, temp.path());
    let mut modified = files[TEST_FILE].clone();
    modified.extend_from_slice(b" extra line \n");
    fs::write(temp.path().join(TEST_FILE), &modified).unwrap();

    ensure_ptb(temp.path(), &server.options()).unwrap();
    let error = ensure_ptb(temp.path(), &server.verifying_options()).unwrap_err();

    match &error {
        FetchError::ExistingMismatch {
            path,
            expected,
            actual,
        } => {
            assert_eq!(path, &temp.path().join(TEST_FILE));
            assert_eq!(expected, &sha256_hex(&files[TEST_FILE]));
            assert_eq!(actual, &sha256_hex(&modified));
        }
        other => panic!("expected ExistingMismatch, got {other:?}"),
    }
    assert!(error.to_string().contains("delete it"), "{error}");
    assert!(server.requested().is_empty(), "{:?}", server.requested());
}

#[test]
fn corrupted_download_rejected_and_removed() {
    let Some((_, files)) = real_files() else {
        return;
    };
    let mut corrupted = files[VALID_FILE].clone();
    corrupted[1000] ^= 0x20;
    let mut routes = serve_all(&files);
    routes.insert(VALID_FILE.to_owned(), Reply::File(corrupted.clone()));
    let server = TestServer::start(routes);
    let temp = tempfile::tempdir().unwrap();

    let error = ensure_ptb(temp.path(), &server.options()).unwrap_err();

    let expected_digest = sha256_hex(&files[VALID_FILE]);
    let actual_digest = sha256_hex(&corrupted);
    match &error {
        FetchError::ChecksumMismatch {
            file,
            url,
            expected,
            actual,
            ..
        } => {
            assert_eq!(file, VALID_FILE);
            assert_eq!(url, &format!("{}{VALID_FILE}", server.base_url));
            assert_eq!(expected, &expected_digest);
            assert_eq!(actual, &actual_digest);
        }
        other => panic!("expected ChecksumMismatch, got {other:?}"),
    }
    let message = error.to_string();
    assert!(message.contains(VALID_FILE), "{message}");
    assert!(message.contains(&expected_digest), "{message}");
    assert!(message.contains(&actual_digest), "{message}");
    // Train came first and was verified; the damaged file left nothing behind.
    assert_eq!(dir_entries(temp.path()), [TRAIN_FILE]);
}

#[test]
fn http_404_reported_with_url() {
    let Some((_, files)) = real_files() else {
        return;
    };
    let mut routes = serve_all(&files);
    routes.remove(TEST_FILE);
    let server = TestServer::start(routes);
    let temp = tempfile::tempdir().unwrap();

    let error = ensure_ptb(temp.path(), &server.options()).unwrap_err();

    match &error {
        FetchError::HttpStatus {
            url,
            status,
            placement,
        } => {
            assert_eq!(url, &format!("{}{TEST_FILE}", server.base_url));
            assert_eq!(*status, 404);
            assert_eq!(placement.missing, [TEST_FILE]);
        }
        other => panic!("expected HttpStatus, got {other:?}"),
    }
    assert!(error.to_string().contains("404"), "{error}");
    assert_eq!(dir_entries(temp.path()), [TRAIN_FILE, VALID_FILE]);
}

#[test]
fn cut_off_download_leaves_nothing() {
    let Some((_, files)) = real_files() else {
        return;
    };
    let mut routes = serve_all(&files);
    routes.insert(
        TRAIN_FILE.to_owned(),
        Reply::CutOff(files[TRAIN_FILE].clone()),
    );
    let server = TestServer::start(routes);
    let temp = tempfile::tempdir().unwrap();

    let error = ensure_ptb(temp.path(), &server.options()).unwrap_err();

    match &error {
        FetchError::Interrupted { url, placement, .. } => {
            assert_eq!(url, &format!("{}{TRAIN_FILE}", server.base_url));
            assert_eq!(placement.missing, SPLIT_FILES);
        }
        other => panic!("expected Interrupted, got {other:?}"),
    }
    assert!(dir_entries(temp.path()).is_empty());
}

#[test]
fn refused_connection_gives_offline_error() {
    // Bind and close a listener so that nothing listens on its port.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let base_url = format!("http://127.0.0.1:{port}/ptb/");
    let options = FetchOptions {
        connect_timeout: Duration::from_secs(5),
        download_timeout: Duration::from_secs(10),
        ..FetchOptions::new(base_url.clone())
    };
    let temp = tempfile::tempdir().unwrap();

    let error = ensure_ptb(temp.path(), &options).unwrap_err();

    match &error {
        FetchError::Unreachable { url, placement, .. } => {
            assert_eq!(url, &format!("{base_url}{TRAIN_FILE}"));
            assert_eq!(placement.dir, temp.path());
            assert_eq!(placement.missing, SPLIT_FILES);
        }
        other => panic!("expected Unreachable, got {other:?}"),
    }
    let message = error.to_string();
    assert!(message.contains(&base_url), "{message}");
    assert!(
        message.contains(&temp.path().display().to_string()),
        "{message}"
    );
    for name in SPLIT_FILES {
        assert!(message.contains(name), "{message}");
    }
    println!("offline error: {message}");
    assert!(dir_entries(temp.path()).is_empty());
}

#[test]
fn known_ptb_mismatches_name_changed_files() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ptb.valid.txt"), " a changed file\n").unwrap();
    let mismatches = rnnlm::fetch::known_ptb_mismatches(dir.path());
    assert_eq!(mismatches.len(), 1, "{mismatches:?}");
    assert!(
        matches!(&mismatches[0], FetchError::ExistingMismatch { path, .. }
            if path.ends_with("ptb.valid.txt")),
        "{mismatches:?}"
    );

    if let Some(ptb) = common::ptb_dir() {
        let mismatches = rnnlm::fetch::known_ptb_mismatches(&ptb);
        assert!(mismatches.is_empty(), "{mismatches:?}");
    }
}
