//! What the registry tests share: a real registry (Debian's docker-registry, started by
//! scripts/registry.sh) and a scripted fake one, temp dirs, test images made with umoci from the
//! busybox rootfs, and skopeo. Every guard cleans up on drop, also when the test panics.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

pub fn repo_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A directory under /tmp removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "berth-{tag}-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
    pub fn join(&self, p: &str) -> PathBuf {
        self.0.join(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs a program, failing the test with its output when it cannot be started.
pub fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run {program} (is it installed? .ci/run installs it): {e}")
        })
}

/// Runs a program that must succeed; returns its stdout.
pub fn ok(program: &str, args: &[&str]) -> String {
    let out = run(program, args);
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// berth's result: exit status, stdout and stderr.
pub struct Berth {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Runs berth with `--data-root data_root` (and no stdin).
pub fn berth(data_root: &Path, args: &[&str]) -> Berth {
    berth_env(data_root, args, &[])
}

pub fn berth_env(data_root: &Path, args: &[&str], env: &[(&str, &str)]) -> Berth {
    let mut command = Command::new(env!("CARGO_BIN_EXE_berth"));
    command
        .arg("--data-root")
        .arg(data_root)
        .args(args)
        .envs(env.iter().copied());
    Berth::from(output_with_input(command, None))
}

/// Runs berth with `input` on its standard input.
pub fn berth_with_stdin(data_root: &Path, args: &[&str], input: &str) -> Berth {
    let mut command = Command::new(env!("CARGO_BIN_EXE_berth"));
    command.arg("--data-root").arg(data_root).args(args);
    Berth::from(output_with_input(command, Some(input.as_bytes())))
}

/// Runs `command` with `input` (or nothing) on its standard input; its output.
pub fn output_with_input(mut command: Command, input: Option<&[u8]>) -> Output {
    use std::process::Stdio;
    let mut child = command
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    if let Some(bytes) = input {
        child.stdin.take().unwrap().write_all(bytes).unwrap();
    }
    child.wait_with_output().unwrap()
}

impl From<Output> for Berth {
    fn from(out: Output) -> Berth {
        Berth {
            success: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

impl Berth {
    pub fn ok(self) -> Berth {
        assert!(
            self.success,
            "berth failed:\n{}\n{}",
            self.stdout, self.stderr
        );
        self
    }
    pub fn fails(self) -> Berth {
        assert!(
            !self.success,
            "berth succeeded but should not have:\n{}",
            self.stdout
        );
        self
    }
    /// The `sha256:...` after `Digest: ` in pull/push output.
    pub fn digest(&self) -> String {
        self.stdout
            .lines()
            .find_map(|l| l.strip_prefix("Digest: "))
            .and_then(|l| l.split_whitespace().next())
            .unwrap_or_else(|| panic!("no digest in {:?}", self.stdout))
            .to_string()
    }
}

/// A running docker-registry; stopped and its storage removed on drop.
pub struct Registry {
    dir: PathBuf,
    pub addr: String,
}

impl Registry {
    /// A plain-HTTP registry without auth.
    pub fn start() -> Registry {
        Registry::start_with(&[])
    }

    /// `options` as scripts/registry.sh takes them (`--tls CERT KEY`, `--htpasswd F`, ...).
    pub fn start_with(options: &[&str]) -> Registry {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "berth-registry-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::SeqCst)
        ));
        let script = repo_dir().join("scripts/registry.sh");
        let mut args = vec!["start", dir.to_str().unwrap()];
        args.extend_from_slice(options);
        let out = run(script.to_str().unwrap(), &args);
        if !out.status.success() {
            let _ = std::fs::remove_dir_all(&dir);
            panic!(
                "registry.sh {args:?} failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let addr = String::from_utf8_lossy(&out.stdout).trim().to_string();
        Registry { dir, addr }
    }

    /// The registry's log so far (requests are logged at info level).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("registry.log")).unwrap_or_default()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let script = repo_dir().join("scripts/registry.sh");
        let _ = Command::new(script)
            .args(["stop", self.dir.to_str().unwrap()])
            .status();
    }
}

/// Makes a 3-layer OCI image with umoci in `dir/oci` under `tag`: the busybox rootfs, a file
/// added (/etc/hello.txt), a file deleted by a whiteout (/etc/group); cmd /bin/sh.
pub fn make_test_image(dir: &Path, tag: &str) -> String {
    let rootfs = repo_dir().join("bundles/busybox/rootfs");
    assert!(
        rootfs.join("bin/busybox").exists(),
        "run `make rootfs` first ({} is missing)",
        rootfs.display()
    );
    let layout = dir.join("oci");
    let image = format!("{}:{tag}", layout.display());
    if !layout.exists() {
        ok("umoci", &["init", "--layout", layout.to_str().unwrap()]);
    }
    ok("umoci", &["new", "--image", &image]);
    ok(
        "umoci",
        &["insert", "--image", &image, rootfs.to_str().unwrap(), "/"],
    );
    let hello = dir.join("hello.txt");
    // 512 bytes: umoci 0.4.7's insert writes a layer without the padding after its last file
    // (GNU tar reads it, berth's unpacker refuses it), so the file fills whole tar blocks.
    let text = format!("hello from {tag}\n");
    std::fs::write(&hello, format!("{text:<511}\n")).unwrap();
    ok(
        "umoci",
        &[
            "insert",
            "--image",
            &image,
            hello.to_str().unwrap(),
            "/etc/hello.txt",
        ],
    );
    ok(
        "umoci",
        &["insert", "--image", &image, "--whiteout", "/etc/group"],
    );
    ok(
        "umoci",
        &["config", "--image", &image, "--config.cmd", "/bin/sh"],
    );
    format!("oci:{image}")
}

/// Makes the test image in `work` and copies it with skopeo to the registry reference
/// `host/repo:tag` (`skopeo_flags` such as `--dest-creds u:p`).
pub fn seed_image(work: &Path, reference: &str, skopeo_flags: &[&str]) {
    let source = make_test_image(work, "v1");
    skopeo_copy(&source, &format!("docker://{reference}"), skopeo_flags);
}

/// `skopeo copy` with TLS verification off on both ends, plus `extra` flags.
pub fn skopeo_copy(from: &str, to: &str, extra: &[&str]) {
    let mut args = vec![
        "copy",
        "--quiet",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
    ];
    args.extend_from_slice(extra);
    args.extend_from_slice(&[from, to]);
    ok("skopeo", &args);
}

/// The manifest digest skopeo sees at a registry reference (`host/repo:tag`).
pub fn skopeo_digest(reference: &str) -> String {
    let out = ok(
        "skopeo",
        &[
            "inspect",
            "--tls-verify=false",
            "--format",
            "{{.Digest}}",
            &format!("docker://{reference}"),
        ],
    );
    out.trim().to_string()
}

/// The raw manifest skopeo reads at a registry reference.
pub fn skopeo_raw(reference: &str) -> serde_json::Value {
    let out = ok(
        "skopeo",
        &[
            "inspect",
            "--tls-verify=false",
            "--raw",
            &format!("docker://{reference}"),
        ],
    );
    serde_json::from_str(&out).unwrap()
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The names in the store's index.json.
pub fn store_names(data_root: &Path) -> Vec<String> {
    let Ok(text) = std::fs::read_to_string(data_root.join("image/index.json")) else {
        return Vec::new();
    };
    let index: serde_json::Value = serde_json::from_str(&text).unwrap();
    index["manifests"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["annotations"]["org.opencontainers.image.ref.name"].as_str())
        .map(str::to_string)
        .collect()
}

pub fn store_has_blob(data_root: &Path, digest: &str) -> bool {
    let hex = digest.strip_prefix("sha256:").unwrap();
    data_root.join("image/blobs/sha256").join(hex).exists()
}

/// Files left in the store's ingest directory (partial downloads).
pub fn ingest_leftovers(data_root: &Path) -> Vec<PathBuf> {
    match std::fs::read_dir(data_root.join("image/ingest")) {
        Ok(d) => d.map(|e| e.unwrap().path()).collect(),
        Err(_) => Vec::new(),
    }
}

// ---------------------------------------------------------------------------
// Talking to the registry directly (to put odd content in it)
// ---------------------------------------------------------------------------

/// Uploads a blob (POST, then one PUT), returns its digest.
pub fn put_blob(addr: &str, repo: &str, bytes: &[u8]) -> String {
    let digest = format!("sha256:{}", sha256_hex(bytes));
    let url = format!("http://{addr}/v2/{repo}/blobs/uploads/");
    let response = ureq::post(&url)
        .send_empty()
        .unwrap_or_else(|e| panic!("POST {url}: {e}"));
    assert_eq!(response.status(), 202, "POST {url}");
    let location = response.headers()["location"].to_str().unwrap().to_string();
    let location = if location.starts_with("http") {
        location
    } else {
        format!("http://{addr}{location}")
    };
    let url = format!("{location}&digest={digest}");
    let response = ureq::put(&url)
        .header("Content-Type", "application/octet-stream")
        .send(bytes)
        .unwrap_or_else(|e| panic!("PUT {url}: {e}"));
    assert_eq!(response.status(), 201, "PUT {url}");
    digest
}

pub fn put_manifest(addr: &str, repo: &str, tag: &str, media_type: &str, bytes: &[u8]) -> String {
    let url = format!("http://{addr}/v2/{repo}/manifests/{tag}");
    let response = ureq::put(&url)
        .header("Content-Type", media_type)
        .send(bytes)
        .unwrap_or_else(|e| panic!("PUT {url}: {e}"));
    assert_eq!(response.status(), 201, "PUT {url}");
    format!("sha256:{}", sha256_hex(bytes))
}

/// A manifest's exact bytes.
pub fn get_manifest(addr: &str, repo: &str, tag: &str) -> Vec<u8> {
    let url = format!("http://{addr}/v2/{repo}/manifests/{tag}");
    let mut response = ureq::get(&url)
        .header(
            "Accept",
            "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json",
        )
        .call()
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    response.body_mut().read_to_vec().unwrap()
}

pub fn get_blob(addr: &str, repo: &str, digest: &str) -> Vec<u8> {
    let url = format!("http://{addr}/v2/{repo}/blobs/{digest}");
    let mut response = ureq::get(&url)
        .call()
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    response
        .body_mut()
        .with_config()
        .limit(1 << 30)
        .read_to_vec()
        .unwrap()
}

// ---------------------------------------------------------------------------
// A scripted HTTP server: a fake registry or a token server
// ---------------------------------------------------------------------------

pub struct Request {
    pub method: String,
    /// Path and query as sent.
    pub target: String,
    pub headers: Vec<(String, String)>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Announce the whole body but send only this many bytes, then close (a dropped link).
    pub cut_after: Option<usize>,
}

impl Response {
    pub fn new(status: u16, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status,
            headers: Vec::new(),
            body: body.into(),
            cut_after: None,
        }
    }
    pub fn header(mut self, name: &str, value: &str) -> Response {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }
}

type Handler = dyn Fn(&Request) -> Response + Send + Sync;

/// An HTTP/1.1 server on 127.0.0.1 answering each request with `handler`, one request per
/// connection. Stops on drop. `requests` records `METHOD target` of everything it was sent.
pub struct FakeServer {
    pub addr: String,
    pub requests: Arc<Mutex<Vec<String>>>,
    /// The names of the headers of every request, lower-cased.
    pub header_names: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FakeServer {
    pub fn start(handler: impl Fn(&Request) -> Response + Send + Sync + 'static) -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let stop = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let header_names = Arc::new(Mutex::new(Vec::new()));
        let handler: Arc<Handler> = Arc::new(handler);
        let (stop2, requests2, names2) = (stop.clone(), requests.clone(), header_names.clone());
        let thread = std::thread::spawn(move || {
            while !stop2.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let (h, r, n) = (handler.clone(), requests2.clone(), names2.clone());
                        std::thread::spawn(move || serve(stream, &*h, &r, &n));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        FakeServer {
            addr,
            requests,
            header_names,
            stop,
            thread: Some(thread),
        }
    }

    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }

    pub fn saw_no_header(&self, name: &str) -> bool {
        !self.header_names.lock().unwrap().iter().any(|h| h == name)
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(
    stream: TcpStream,
    handler: &Handler,
    log: &Mutex<Vec<String>>,
    names: &Mutex<Vec<String>>,
) {
    stream.set_nonblocking(false).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("").to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.trim_end().split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let request = Request {
        method,
        target,
        headers,
    };
    if let Some(len) = request
        .header("content-length")
        .and_then(|l| l.parse::<u64>().ok())
    {
        let _ = std::io::copy(&mut (&mut reader).take(len), &mut std::io::sink());
    }
    log.lock()
        .unwrap()
        .push(format!("{} {}", request.method, request.target));
    names
        .lock()
        .unwrap()
        .extend(request.headers.iter().map(|(k, _)| k.to_ascii_lowercase()));
    let response = handler(&request);
    let mut out = stream;
    let mut head = format!(
        "HTTP/1.1 {} X\r\nContent-Length: {}\r\nConnection: close\r\n",
        response.status,
        response.body.len()
    );
    for (k, v) in &response.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let body = match response.cut_after {
        Some(n) => &response.body[..n.min(response.body.len())],
        None => &response.body[..],
    };
    let _ = out.write_all(head.as_bytes());
    if request.method != "HEAD" {
        let _ = out.write_all(body);
    }
    let _ = out.flush();
}
