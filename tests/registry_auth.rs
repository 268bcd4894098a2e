//! Authentication and TLS against a real registry: HTTPS with a self-signed CA (trusted through
//! --cert-dir or /etc/berth/certs.d/HOST:PORT), htpasswd basic auth with `berth login`/`logout`
//! and Docker's config.json, and Docker's token protocol with a token server run by the test
//! (JWTs signed with openssl, checked by the registry).

mod registry_support;

use base64::Engine;
use registry_support::*;
use serde_json::{json, Value};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

fn openssl(args: &[&str]) {
    ok("openssl", args);
}

/// A CA and a server certificate for 127.0.0.1 signed by it, in `dir`.
fn make_certificates(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let p = |n: &str| dir.join(n).to_str().unwrap().to_string();
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        &p("ca.key"),
        "-out",
        &p("ca.crt"),
        "-days",
        "2",
        "-subj",
        "/CN=berth test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        &p("server.key"),
        "-out",
        &p("server.csr"),
        "-subj",
        "/CN=127.0.0.1",
    ]);
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
         keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        &p("server.csr"),
        "-CA",
        &p("ca.crt"),
        "-CAkey",
        &p("ca.key"),
        "-CAcreateserial",
        "-out",
        &p("server.crt"),
        "-days",
        "2",
        "-extfile",
        &p("ext.cnf"),
    ]);
    let certs = dir.join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    std::fs::copy(dir.join("ca.crt"), certs.join("ca.crt")).unwrap();
    (dir.join("server.crt"), dir.join("server.key"), certs)
}

/// Removes /etc/berth/certs.d/HOST:PORT (and the parents it created) on drop.
struct CertsDirGuard(Vec<PathBuf>);

impl CertsDirGuard {
    fn install(host: &str, ca: &Path) -> CertsDirGuard {
        let dir = Path::new("/etc/berth/certs.d").join(host);
        let mut created = Vec::new();
        for p in [
            Path::new("/etc/berth"),
            Path::new("/etc/berth/certs.d"),
            dir.as_path(),
        ] {
            if !p.exists() {
                std::fs::create_dir(p).unwrap();
                created.push(p.to_path_buf());
            }
        }
        std::fs::copy(ca, dir.join("ca.crt")).unwrap();
        created.reverse();
        if !created.contains(&dir) {
            created.insert(0, dir);
        }
        CertsDirGuard(created)
    }
}

impl Drop for CertsDirGuard {
    fn drop(&mut self) {
        for (i, p) in self.0.iter().enumerate() {
            if i == 0 {
                let _ = std::fs::remove_dir_all(p);
            } else {
                let _ = std::fs::remove_dir(p);
            }
        }
    }
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[test]
fn tls_with_a_private_ca_and_htpasswd_basic_auth_login_pull_push_logout() {
    let work = TempDir::new("tls-basic");
    let (cert, key, cert_dir) = make_certificates(work.path());
    let htpasswd = work.join("htpasswd");
    let line = ok("htpasswd", &["-Bbn", "alice", "wonder:land"]);
    std::fs::write(&htpasswd, line).unwrap();
    let registry = Registry::start_with(&[
        "--tls",
        cert.to_str().unwrap(),
        key.to_str().unwrap(),
        "--htpasswd",
        htpasswd.to_str().unwrap(),
    ]);
    let addr = registry.addr.clone();
    let reference = format!("{addr}/team/busybox:v1");
    seed_image(
        work.path(),
        &reference,
        &["--dest-creds", "alice:wonder:land"],
    );
    let root = work.join("root");
    let authfile = work.join("auth/config.json");
    let af = authfile.to_str().unwrap();
    let cd = cert_dir.to_str().unwrap();

    // Without the CA, verification fails and says where.
    let out = berth(
        &root,
        &[
            "login",
            &addr,
            "-u",
            "alice",
            "-p",
            "wonder:land",
            "--authfile",
            af,
        ],
    )
    .fails();
    assert!(
        out.stderr.contains(&format!("https://{addr}/v2/")) && out.stderr.contains("login to"),
        "{}",
        out.stderr
    );
    assert!(!authfile.exists(), "nothing written on failure");
    // A wrong password is refused by the registry.
    let out = berth(
        &root,
        &[
            "login",
            &addr,
            "-u",
            "alice",
            "-p",
            "nope",
            "--authfile",
            af,
            "--cert-dir",
            cd,
        ],
    )
    .fails();
    assert!(out.stderr.contains("401"), "{}", out.stderr);
    assert!(!authfile.exists());

    // Anonymous pull: 401, with the hint to log in.
    let out = berth(
        &root,
        &["pull", "--authfile", af, "--cert-dir", cd, &reference],
    )
    .fails();
    assert!(
        out.stderr.contains("401") && out.stderr.contains("berth login"),
        "{}",
        out.stderr
    );

    let out = berth_with_stdin(
        &root,
        &[
            "login",
            &addr,
            "-u",
            "alice",
            "--password-stdin",
            "--authfile",
            af,
            "--cert-dir",
            cd,
        ],
        "wonder:land\n",
    )
    .ok();
    assert!(out.stdout.contains("Login Succeeded"), "{}", out.stdout);
    let mode = std::fs::metadata(&authfile).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let config = read_json(&authfile);
    let encoded = base64::engine::general_purpose::STANDARD.encode("alice:wonder:land");
    assert_eq!(config["auths"][&addr]["auth"], json!(encoded));

    let pulled = berth(
        &root,
        &["pull", "--authfile", af, "--cert-dir", cd, &reference],
    )
    .ok();
    assert_eq!(
        pulled.digest(),
        skopeo_digest_creds(&reference, "alice:wonder:land")
    );
    let pushed_ref = format!("{addr}/team/copy:v2");
    berth(&root, &["tag", &reference, "local.test/copy:v2"]).ok();
    let pushed = berth(
        &root,
        &[
            "push",
            "--authfile",
            af,
            "--cert-dir",
            cd,
            "--chunk-size",
            "256k",
            "local.test/copy:v2",
            &pushed_ref,
        ],
    )
    .ok();
    // Named from another registry, so nothing to mount: every blob goes up over TLS with basic
    // auth, the busybox layer in PATCH chunks.
    assert!(
        pushed.stdout.contains("4 blobs pushed"),
        "{}",
        pushed.stdout
    );
    assert_eq!(
        skopeo_digest_creds(&pushed_ref, "alice:wonder:land"),
        pushed.digest()
    );

    // The CA where Docker users put it: /etc/berth/certs.d/HOST:PORT/ca.crt.
    {
        let _guard = CertsDirGuard::install(&addr, &cert_dir.join("ca.crt"));
        let out = berth(&root, &["pull", "-q", "--authfile", af, &reference]).ok();
        assert_eq!(out.stdout.trim(), reference);
    }
    // --tls-verify=false: any certificate.
    berth(
        &root,
        &["pull", "--tls-verify=false", "--authfile", af, &reference],
    )
    .ok();

    let out = berth(&root, &["logout", &addr, "--authfile", af]).ok();
    assert!(out.stdout.contains("Removed"), "{}", out.stdout);
    assert!(read_json(&authfile)["auths"].get(&addr).is_none());
    let out = berth(&root, &["logout", &addr, "--authfile", af]).fails();
    assert!(
        out.stderr.contains(&format!("not logged in to {addr}")),
        "{}",
        out.stderr
    );
    let out = berth(
        &root,
        &["pull", "--authfile", af, "--cert-dir", cd, &reference],
    )
    .fails();
    assert!(out.stderr.contains("401"), "{}", out.stderr);

    // $DOCKER_CONFIG is where the credentials go without --authfile.
    let docker_config = work.join("docker-config");
    let env = [("DOCKER_CONFIG", docker_config.to_str().unwrap())];
    berth_env(
        &root,
        &[
            "login",
            &addr,
            "-u",
            "alice",
            "-p",
            "wonder:land",
            "--cert-dir",
            cd,
        ],
        &env,
    )
    .ok();
    assert!(read_json(&docker_config.join("config.json"))["auths"][&addr].is_object());
    berth_env(&root, &["pull", "--cert-dir", cd, &reference], &env).ok();

    // On a terminal, login asks for the user name and (without echo) the password.
    let prompted = work.join("prompted.json");
    let line = format!(
        "{} --data-root {} login {addr} --cert-dir {cd} --authfile {}",
        env!("CARGO_BIN_EXE_berth"),
        root.display(),
        prompted.display()
    );
    let screen = converse(
        &line,
        &[("Username: ", "alice\n"), ("Password: ", "wonder:land\n")],
    );
    assert!(screen.contains("Login Succeeded"), "{screen}");
    let after_prompt = screen.split("Password: ").nth(1).unwrap_or("");
    assert!(
        after_prompt.contains("Login Succeeded") && !after_prompt.contains("wonder"),
        "the password was echoed: {screen:?}"
    );
    let encoded = base64::engine::general_purpose::STANDARD.encode("alice:wonder:land");
    assert_eq!(read_json(&prompted)["auths"][&addr]["auth"], json!(encoded));
}

/// Runs `line` on a pty (script(1)), answering each prompt once it has appeared; returns all
/// the terminal showed.
fn converse(line: &str, dialogue: &[(&str, &str)]) -> String {
    use std::io::{Read, Write};
    let mut child = Command::new("script")
        .args(["-qefc", line, "/dev/null"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut screen = Vec::new();
    let mut buf = [0u8; 256];
    for (prompt, answer) in dialogue {
        while !String::from_utf8_lossy(&screen).contains(prompt) {
            let n = stdout.read(&mut buf).unwrap();
            assert!(
                n > 0,
                "no prompt {prompt:?}: {}",
                String::from_utf8_lossy(&screen)
            );
            screen.extend_from_slice(&buf[..n]);
        }
        stdin.write_all(answer.as_bytes()).unwrap();
    }
    stdout.read_to_end(&mut screen).unwrap();
    assert!(
        child.wait().unwrap().success(),
        "{}",
        String::from_utf8_lossy(&screen)
    );
    String::from_utf8_lossy(&screen).into_owned()
}

fn skopeo_digest_creds(reference: &str, creds: &str) -> String {
    ok(
        "skopeo",
        &[
            "inspect",
            "--tls-verify=false",
            "--creds",
            creds,
            "--format",
            "{{.Digest}}",
            &format!("docker://{reference}"),
        ],
    )
    .trim()
    .to_string()
}

#[test]
fn login_refuses_bad_arguments() {
    let work = TempDir::new("login-args");
    let root = work.join("root");
    let af = work.join("c.json");
    let af = af.to_str().unwrap();
    let out = berth(&root, &["login", "127.0.0.1:1", "--authfile", af]).fails();
    assert!(out.stderr.contains("--username"), "{}", out.stderr);
    let out = berth(
        &root,
        &["login", "127.0.0.1:1", "-u", "a", "--authfile", af],
    )
    .fails();
    assert!(out.stderr.contains("--password-stdin"), "{}", out.stderr);
    let out = berth(
        &root,
        &["login", "bad host", "-u", "a", "-p", "b", "--authfile", af],
    )
    .fails();
    assert!(
        out.stderr.contains("invalid registry \"bad host\""),
        "{}",
        out.stderr
    );
    std::fs::write(work.join("c.json"), "{not json").unwrap();
    let out = berth(&root, &["logout", "x.example", "--authfile", af]).fails();
    assert!(
        out.stderr.contains("c.json") && out.stderr.contains("invalid JSON"),
        "{}",
        out.stderr
    );
}

// ---------------------------------------------------------------------------
// Token auth
// ---------------------------------------------------------------------------

const SERVICE: &str = "berth-test-registry";
const ISSUER: &str = "berth-test-issuer";

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Query parameters, percent-decoded.
fn query_params(target: &str) -> Vec<(String, String)> {
    let query = target.split_once('?').map(|(_, q)| q).unwrap_or("");
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (decode(k), decode(v)))
        .collect()
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap()
}

/// A JWT the registry accepts: RS256, signed by `key`, its certificate in the x5c header.
fn sign_token(dir: &Path, account: &str, access: Value) -> String {
    let pem = std::fs::read_to_string(dir.join("token.crt")).unwrap();
    let der_b64: String = pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect::<Vec<_>>()
        .concat();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let header = json!({"typ": "JWT", "alg": "RS256", "x5c": [der_b64]});
    let claims = json!({
        "iss": ISSUER, "sub": account, "aud": SERVICE,
        "exp": now + 600, "nbf": now - 60, "iat": now,
        "jti": format!("{now}-{}", std::process::id()),
        "access": access,
    });
    let signing_input = format!(
        "{}.{}",
        b64url(&serde_json::to_vec(&header).unwrap()),
        b64url(&serde_json::to_vec(&claims).unwrap())
    );
    let mut sign = Command::new("openssl");
    sign.args(["dgst", "-sha256", "-sign"])
        .arg(dir.join("token.key"));
    let out = output_with_input(sign, Some(signing_input.as_bytes()));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    format!("{signing_input}.{}", b64url(&out.stdout))
}

/// Docker's token server: anonymous users get pull, `bob:builder` gets pull and push; a wrong
/// password gets 401.
fn token_server(dir: PathBuf) -> FakeServer {
    FakeServer::start(move |r| {
        let params = query_params(&r.target);
        let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        if get("service").as_deref() != Some(SERVICE) {
            return Response::new(400, "wrong service");
        }
        let user = match r.header("authorization") {
            None => None,
            Some(h) => {
                let decoded = h
                    .strip_prefix("Basic ")
                    .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok());
                if decoded.as_deref() != Some(b"bob:builder") {
                    return Response::new(401, "bad credentials");
                }
                Some("bob")
            }
        };
        let mut access = Vec::new();
        for (_, scope) in params.iter().filter(|(n, _)| n == "scope") {
            let parts: Vec<&str> = scope.split(':').collect();
            if parts.len() != 3 {
                continue;
            }
            let actions: Vec<&str> = parts[2]
                .split(',')
                .filter(|a| *a == "pull" || (*a == "push" && user.is_some()))
                .collect();
            access.push(json!({"type": parts[0], "name": parts[1], "actions": actions}));
        }
        let token = sign_token(&dir, user.unwrap_or(""), Value::Array(access));
        Response::new(
            200,
            serde_json::to_vec(&json!({"token": token, "expires_in": 600})).unwrap(),
        )
        .header("Content-Type", "application/json")
    })
}

#[test]
fn token_auth_anonymous_pull_and_authenticated_push() {
    let work = TempDir::new("token");
    let dir = work.path().to_path_buf();
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        dir.join("token.key").to_str().unwrap(),
        "-out",
        dir.join("token.crt").to_str().unwrap(),
        "-days",
        "2",
        "-subj",
        "/CN=berth test token signer",
    ]);
    let tokens = token_server(dir.clone());
    let realm = format!("http://{}/token", tokens.addr);
    let registry = Registry::start_with(&[
        "--token",
        &realm,
        SERVICE,
        ISSUER,
        dir.join("token.crt").to_str().unwrap(),
    ]);
    let addr = registry.addr.clone();
    let reference = format!("{addr}/proj/busybox:v1");
    seed_image(work.path(), &reference, &["--dest-creds", "bob:builder"]);
    let expected = skopeo_digest_creds(&reference, "bob:builder");

    let root = work.join("root");
    let af = work.join("auth.json");
    let af = af.to_str().unwrap();
    // Anonymous pull: a token for the pull scope, asked of the realm for our service.
    let before = tokens.requests().len();
    let pulled = berth(
        &root,
        &["pull", "--tls-verify=false", "--authfile", af, &reference],
    )
    .ok();
    assert_eq!(pulled.digest(), expected);
    let asked: Vec<String> = tokens.requests()[before..].to_vec();
    assert!(
        asked.iter().any(|r| query_params(r).contains(&(
            "scope".to_string(),
            "repository:proj/busybox:pull".to_string()
        ))),
        "{asked:?}"
    );
    // One token serves the whole pull (manifest and four blobs).
    assert_eq!(asked.len(), 1, "{asked:?}");

    // Push without credentials: the token grants no push, the registry says 401.
    let target = format!("{addr}/proj/pushed:v1");
    let out = berth(
        &root,
        &[
            "push",
            "--tls-verify=false",
            "--authfile",
            af,
            &reference,
            &target,
        ],
    )
    .fails();
    assert!(
        out.stderr.contains("401") && out.stderr.contains(&target),
        "{}",
        out.stderr
    );

    // Wrong password: the token server refuses, and login says so.
    let out = berth(
        &root,
        &[
            "login",
            &addr,
            "--tls-verify=false",
            "-u",
            "bob",
            "-p",
            "x",
            "--authfile",
            af,
        ],
    )
    .fails();
    assert!(
        out.stderr.contains("token server") && out.stderr.contains("401"),
        "{}",
        out.stderr
    );
    berth(
        &root,
        &[
            "login",
            &addr,
            "--tls-verify=false",
            "-u",
            "bob",
            "-p",
            "builder",
            "--authfile",
            af,
        ],
    )
    .ok();
    let pushed = berth(
        &root,
        &[
            "push",
            "--tls-verify=false",
            "--authfile",
            af,
            &reference,
            &target,
        ],
    )
    .ok();
    assert_eq!(pushed.digest(), expected);
    // Same registry: the blobs are mounted from proj/busybox, with a token for both scopes.
    assert!(pushed.stdout.contains("4 mounted"), "{}", pushed.stdout);
    assert_eq!(skopeo_digest_creds(&target, "bob:builder"), expected);
    let push_scope = "repository:proj/pushed:pull,push".to_string();
    assert!(
        tokens
            .requests()
            .iter()
            .any(|r| query_params(r).contains(&("scope".to_string(), push_scope.clone()))),
        "{:?}",
        tokens.requests()
    );
}

/// A registry that sends uploads to another host: the credentials stay with the registry.
#[test]
fn credentials_are_not_sent_to_an_upload_location_on_another_host() {
    let work = TempDir::new("foreign-location");
    let root = work.join("root");
    let storage = FakeServer::start(|r| {
        let status = if r.method == "PUT" { 201 } else { 405 };
        Response::new(status, "")
    });
    let storage_addr = storage.addr.clone();
    let registry = FakeServer::start(move |r| {
        let basic = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("carol:pw")
        );
        if r.header("authorization") != Some(basic.as_str()) {
            return Response::new(401, "").header("WWW-Authenticate", r#"Basic realm="fake""#);
        }
        match (r.method.as_str(), r.target.as_str()) {
            ("GET", "/v2/") => Response::new(200, "{}"),
            ("HEAD", _) => Response::new(404, ""),
            ("POST", t) if t.ends_with("/blobs/uploads/") => Response::new(202, "").header(
                "Location",
                &format!("http://{storage_addr}/upload/1?state=x"),
            ),
            ("PUT", t) if t.contains("/manifests/") => Response::new(201, ""),
            _ => Response::new(400, "unexpected"),
        }
    });
    let rootfs = repo_dir().join("bundles/busybox/rootfs");
    let tarball = work.join("etc.tar");
    ok(
        "tar",
        &[
            "-C",
            rootfs.to_str().unwrap(),
            "-cf",
            tarball.to_str().unwrap(),
            "./etc",
        ],
    );
    berth(
        &root,
        &["import", tarball.to_str().unwrap(), "local.test/etc:1"],
    )
    .ok();
    let authfile = work.join("auth.json");
    std::fs::write(
        &authfile,
        json!({"auths": {registry.addr.clone(): {"auth":
            base64::engine::general_purpose::STANDARD.encode("carol:pw")}}})
        .to_string(),
    )
    .unwrap();
    let target = format!("{}/team/etc:1", registry.addr);
    let af = authfile.to_str().unwrap();
    berth(
        &root,
        &[
            "push",
            "--tls-verify=false",
            "--authfile",
            af,
            "local.test/etc:1",
            &target,
        ],
    )
    .ok();
    let uploads = storage.requests();
    assert_eq!(uploads.len(), 2, "config and layer uploaded: {uploads:?}");
    assert!(uploads
        .iter()
        .all(|u| u.starts_with("PUT /upload/1?state=x&digest=sha256%3A")));
    assert!(
        storage.saw_no_header("authorization"),
        "credentials leaked to the upload host"
    );
}
