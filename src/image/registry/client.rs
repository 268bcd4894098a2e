//! HTTP/1.1 and HTTPS to one registry (ureq over rustls): which scheme the registry speaks, which
//! certificates to trust, authentication answered on a 401 and remembered per scope, and errors
//! that name the method, the URL and what the registry said.

use super::auth::{self, Challenge, Credential};
use anyhow::{anyhow, bail, Context, Result};
use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use ureq::http::{Method, Request, Response, StatusCode};
use ureq::tls::{Certificate, RootCerts, TlsConfig};

/// Where a registry's own CA certificates live, Docker's `/etc/docker/certs.d` habit:
/// `/etc/berth/certs.d/<host:port>/*.crt`.
pub const CERTS_D: &str = "/etc/berth/certs.d";

/// The system's bundle of trusted roots (Debian's ca-certificates).
const SYSTEM_ROOTS: &str = "/etc/ssl/certs/ca-certificates.crt";

/// How to reach a registry.
#[derive(Clone, Debug)]
pub struct TransportOptions {
    /// false: accept any certificate, and fall back to plain HTTP when HTTPS fails.
    pub tls_verify: bool,
    /// A directory of extra CA certificates (`*.crt`) for this registry, instead of
    /// `/etc/berth/certs.d/<host:port>`.
    pub cert_dir: Option<PathBuf>,
}

impl Default for TransportOptions {
    fn default() -> Self {
        TransportOptions {
            tls_verify: true,
            cert_dir: None,
        }
    }
}

impl TransportOptions {
    /// What Docker's engine does for `registry` (`host[:port]`) without configuration: a
    /// registry on a loopback address (127.0.0.0/8, ::1, `localhost`) is an insecure one, tried
    /// over plain HTTP when HTTPS fails; every other registry is verified.
    pub fn docker_engine(registry: &str) -> TransportOptions {
        let host = match registry.strip_prefix('[') {
            Some(rest) => rest.split(']').next().unwrap_or(rest),
            None => registry.split(':').next().unwrap_or(registry),
        };
        let loopback = host == "localhost"
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        TransportOptions {
            tls_verify: !loopback,
            cert_dir: None,
        }
    }
}

/// A request body that can be sent again after a 401 answered with credentials.
pub enum Body<'a> {
    Empty,
    Bytes(&'a [u8]),
    /// A file sent whole; `progress` is told of the bytes read from it.
    File(&'a Path, &'a (dyn Fn(u64) + Sync)),
}

/// One registry host, its scheme decided by [`Transport::connect`].
pub struct Transport {
    agent: ureq::Agent,
    /// The host the API is served from (`registry-1.docker.io` for `docker.io`).
    pub api_host: String,
    /// `https://host[:port]` or, with TLS verification off and HTTPS failing, `http://...`.
    pub base_url: String,
    credential: Option<Credential>,
    /// Authorization header values already earned, by scope ("" for basic auth, good for any).
    authorizations: Mutex<HashMap<String, String>>,
}

impl Transport {
    /// Picks the scheme by asking `GET /v2/` (the API version check), which also tells whether
    /// and how the registry wants us to authenticate.
    pub fn connect(
        registry: &str,
        options: &TransportOptions,
        credential: Option<Credential>,
    ) -> Result<Arc<Transport>> {
        let api_host = api_host(registry).to_string();
        let agent = build_agent(&api_host, options)?;
        let mut transport = Transport {
            agent,
            base_url: format!("https://{api_host}"),
            api_host,
            credential,
            authorizations: Mutex::new(HashMap::new()),
        };
        let https_error = match transport.ping() {
            Ok(()) => return Ok(Arc::new(transport)),
            Err(e) => e,
        };
        if options.tls_verify {
            return Err(https_error);
        }
        // An insecure registry may speak plain HTTP only.
        transport.base_url = format!("http://{}", transport.api_host);
        match transport.ping() {
            Ok(()) => Ok(Arc::new(transport)),
            Err(http_error) => Err(http_error.context(format!("{https_error:#}"))),
        }
    }

    fn ping(&self) -> Result<()> {
        let url = self.url("/v2/");
        let request = Request::get(&url).body(()).expect("valid request");
        let response = self
            .agent
            .run(request)
            .map_err(|e| unreachable_error(&url, e))?;
        match response.status().as_u16() {
            // 401 is the normal answer of a registry that wants credentials: they are asked
            // for per scope when a request needs them.
            200 | 401 => Ok(()),
            _ => Err(status_error("GET", &url, response)),
        }
    }

    /// `base_url` + `path` (a path starting with `/`), or `path` itself when it is absolute
    /// (upload locations may be).
    pub fn url(&self, path: &str) -> String {
        if path.starts_with("http://") || path.starts_with("https://") {
            path.to_string()
        } else {
            format!("{}{path}", self.base_url)
        }
    }

    /// Sends a request, authenticating for `scope` when the registry answers 401 (once: a second
    /// 401 is returned to the caller). Other statuses are returned as they are.
    pub fn send(
        &self,
        method: Method,
        url: &str,
        scope: &str,
        headers: &[(&str, &str)],
        body: &Body,
    ) -> Result<Response<ureq::Body>> {
        let first = self.send_once(&method, url, scope, headers, body)?;
        if first.status() != StatusCode::UNAUTHORIZED {
            return Ok(first);
        }
        let Some(header) = first
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
        else {
            return Ok(first);
        };
        let challenges = auth::parse_challenges(header)
            .with_context(|| format!("{method} {url}: the registry's 401 answer"))?;
        let answered = self
            .authenticate(&challenges, scope)
            .with_context(|| format!("{method} {url}: authenticating"))?;
        if !answered {
            return Ok(first);
        }
        self.send_once(&method, url, scope, headers, body)
    }

    /// Earns an Authorization value for `scope` from the challenges; false when none can be
    /// answered (basic auth without a credential, an unknown scheme).
    fn authenticate(&self, challenges: &[Challenge], scope: &str) -> Result<bool> {
        if let Some(bearer) = challenges.iter().find(|c| c.scheme == "bearer") {
            let token = auth::fetch_token(
                &self.agent,
                bearer,
                (!scope.is_empty()).then_some(scope),
                self.credential.as_ref(),
            )?;
            self.remember(scope, format!("Bearer {token}"));
            return Ok(true);
        }
        if challenges.iter().any(|c| c.scheme == "basic") {
            if let Some(c) = &self.credential {
                self.remember("", c.basic_header());
                return Ok(true);
            }
        }
        Ok(false)
    }

    fn remember(&self, scope: &str, authorization: String) {
        let mut map = self
            .authorizations
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        map.insert(scope.to_string(), authorization);
    }

    fn authorization(&self, scope: &str) -> Option<String> {
        let map = self
            .authorizations
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        map.get(scope).or_else(|| map.get("")).cloned()
    }

    fn send_once(
        &self,
        method: &Method,
        url: &str,
        scope: &str,
        headers: &[(&str, &str)],
        body: &Body,
    ) -> Result<Response<ureq::Body>> {
        let mut builder = Request::builder().method(method.clone()).uri(url);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        // Credentials go to the registry's own host only: not to a redirect target (ureq drops
        // them there) nor to an upload Location on another host.
        let own_host = url
            .strip_prefix(self.base_url.as_str())
            .is_some_and(|rest| rest.starts_with('/'));
        if let Some(a) = self.authorization(scope).filter(|_| own_host) {
            builder = builder.header("Authorization", a);
        }
        let result = match body {
            Body::Empty => {
                let with_length = if method == Method::GET || method == Method::HEAD {
                    builder
                } else {
                    builder.header("Content-Length", "0")
                };
                self.agent.run(with_length.body(()).context("bad request")?)
            }
            Body::Bytes(bytes) => {
                let request = builder
                    .header("Content-Length", bytes.len().to_string())
                    .body(*bytes)
                    .context("bad request")?;
                self.agent.run(request)
            }
            Body::File(path, progress) => {
                let file = std::fs::File::open(path)
                    .with_context(|| format!("cannot open {}", path.display()))?;
                let len = file.metadata()?.len();
                let mut reader = CountingReader {
                    inner: file,
                    progress: *progress,
                };
                let request = builder
                    .header("Content-Length", len.to_string())
                    .body(ureq::SendBody::from_reader(&mut reader))
                    .context("bad request")?;
                self.agent.run(request)
            }
        };
        result.map_err(|e| unreachable_error(url, e).context(format!("{method} {url}")))
    }
}

/// Docker Hub's API lives on another host than its name.
fn api_host(registry: &str) -> &str {
    match registry {
        "docker.io" | "index.docker.io" => "registry-1.docker.io",
        other => other,
    }
}

fn build_agent(api_host: &str, options: &TransportOptions) -> Result<ureq::Agent> {
    let tls = if options.tls_verify {
        let cert_dir = options
            .cert_dir
            .clone()
            .unwrap_or_else(|| Path::new(CERTS_D).join(api_host));
        TlsConfig::builder()
            .root_certs(RootCerts::from(trusted_roots(&cert_dir)?))
            .build()
    } else {
        TlsConfig::builder().disable_verification(true).build()
    };
    let config = ureq::Agent::config_builder()
        .tls_config(tls)
        .http_status_as_error(false)
        .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION")))
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_recv_response(Some(Duration::from_secs(120)))
        .max_idle_connections_per_host(8)
        .build();
    Ok(ureq::Agent::new_with_config(config))
}

/// The system's roots (`$SSL_CERT_FILE` or Debian's bundle) plus every `*.crt` in `cert_dir`
/// (also what `ADD https://...` of a build trusts).
pub fn trusted_roots(cert_dir: &Path) -> Result<Vec<Certificate<'static>>> {
    let mut roots = Vec::new();
    let system = std::env::var_os("SSL_CERT_FILE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(SYSTEM_ROOTS));
    if let Ok(pem) = std::fs::read(&system) {
        roots.extend(pem_certificates(&pem, &system)?);
    }
    let entries = match std::fs::read_dir(cert_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(roots),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", cert_dir.display())),
    };
    for entry in entries {
        let path = entry?.path();
        if path.extension().is_some_and(|x| x == "crt") {
            let pem =
                std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
            let found = pem_certificates(&pem, &path)?;
            if found.is_empty() {
                bail!("{}: no PEM certificate in it", path.display());
            }
            roots.extend(found);
        }
    }
    Ok(roots)
}

fn pem_certificates(pem: &[u8], path: &Path) -> Result<Vec<Certificate<'static>>> {
    let mut out = Vec::new();
    for item in ureq::tls::parse_pem(pem) {
        if let ureq::tls::PemItem::Certificate(c) =
            item.with_context(|| format!("{}: bad PEM", path.display()))?
        {
            out.push(c);
        }
    }
    Ok(out)
}

/// Counts the bytes read through it.
pub struct CountingReader<'a, R> {
    pub inner: R,
    pub progress: &'a (dyn Fn(u64) + Sync),
}

impl<R: Read> Read for CountingReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        (self.progress)(n as u64);
        Ok(n)
    }
}

/// A transport failure (no answer at all): the URL and why.
fn unreachable_error(url: &str, e: ureq::Error) -> anyhow::Error {
    let text = e.to_string();
    // What rustls says when the other end answers TLS with plain HTTP.
    let hint = if url.starts_with("https://") && text.contains("InvalidContentType") {
        " (the registry speaks plain HTTP? use --tls-verify=false)"
    } else {
        ""
    };
    anyhow!("cannot reach the registry at {url}: {text}{hint}")
}

/// The error for an unexpected status: method, URL, status and the registry's own error codes
/// (`{"errors":[{"code":"MANIFEST_UNKNOWN","message":"..."}]}`) when it sent them.
pub fn status_error(method: &str, url: &str, mut response: Response<ureq::Body>) -> anyhow::Error {
    #[derive(serde::Deserialize)]
    struct Errors {
        errors: Vec<ErrorEntry>,
    }
    #[derive(serde::Deserialize)]
    struct ErrorEntry {
        code: Option<String>,
        message: Option<String>,
    }
    let status = response.status();
    let body = response
        .body_mut()
        .with_config()
        .limit(64 * 1024)
        .read_to_string()
        .unwrap_or_default();
    let detail = serde_json::from_str::<Errors>(&body)
        .ok()
        .map(|e| {
            e.errors
                .iter()
                .map(|x| {
                    let code = x.code.as_deref().unwrap_or("ERROR");
                    match &x.message {
                        Some(m) => format!("{code}: {m}"),
                        None => code.to_string(),
                    }
                })
                .collect::<Vec<_>>()
                .join("; ")
        })
        .filter(|s| !s.is_empty());
    let hint = match status.as_u16() {
        401 => " (authentication required or refused: try `berth login`)",
        403 => " (access denied)",
        _ => "",
    };
    match detail {
        Some(d) => anyhow!("{method} {url}: {status}{hint}: {d}"),
        None => anyhow!("{method} {url}: {status}{hint}"),
    }
}

#[cfg(test)]
mod tests {
    use super::TransportOptions;

    #[test]
    fn loopback_registries_are_insecure_as_in_docker() {
        for r in [
            "127.0.0.1:5000",
            "127.1.2.3",
            "localhost:5000",
            "[::1]:5000",
        ] {
            assert!(!TransportOptions::docker_engine(r).tls_verify, "{r}");
        }
        for r in [
            "docker.io",
            "10.0.0.1:5000",
            "registry.example:443",
            "[fe80::1]:5000",
        ] {
            assert!(TransportOptions::docker_engine(r).tls_verify, "{r}");
        }
    }
}
