//! Registry credentials in Docker's `config.json` format: `{"auths": {"host:port": {"auth":
//! base64("user:password")}}}`, at `$DOCKER_CONFIG/config.json` or `~/.docker/config.json`
//! (or `--authfile`). Everything else in the file is kept as it was; the file is written
//! atomically with mode 0600.

use super::registry::auth::Credential;
use anyhow::{bail, Context, Result};
use base64::Engine;
use serde_json::{Map, Value};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// The key Docker uses for Docker Hub.
const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";

/// `$DOCKER_CONFIG/config.json`, else `$HOME/.docker/config.json`.
pub fn default_auth_file() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir).join("config.json"));
    }
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .context("neither DOCKER_CONFIG nor HOME is set: give --authfile")?;
    Ok(PathBuf::from(home).join(".docker").join("config.json"))
}

/// The credential for `registry` in `auth_file` (default: [`default_auth_file`]), if any.
pub fn lookup(registry: &str, auth_file: Option<&Path>) -> Result<Option<Credential>> {
    let path = match auth_file {
        Some(p) => p.to_path_buf(),
        None => match default_auth_file() {
            Ok(p) => p,
            // No home and no --authfile: anonymous access.
            Err(_) => return Ok(None),
        },
    };
    AuthFile::load(&path)?.get(registry)
}

/// The `auths` key for a registry: Docker Hub's historical URL, else `host[:port]`.
fn auth_key(registry: &str) -> String {
    match canonical_host(registry).as_str() {
        "docker.io" => DOCKER_HUB_KEY.to_string(),
        host => host.to_string(),
    }
}

/// `https://index.docker.io/v1/`, `registry-1.docker.io` and `docker.io` are one registry;
/// elsewhere a key may carry a scheme and a path, which do not matter.
fn canonical_host(key: &str) -> String {
    let no_scheme = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let host = no_scheme.split('/').next().unwrap_or("");
    match host {
        "index.docker.io" | "registry-1.docker.io" | "docker.io" => "docker.io".to_string(),
        h => h.to_string(),
    }
}

/// A loaded `config.json`.
pub struct AuthFile {
    path: PathBuf,
    document: Map<String, Value>,
}

impl AuthFile {
    /// Loads the file; a missing file is an empty one.
    pub fn load(path: &Path) -> Result<AuthFile> {
        let document = match std::fs::read(path) {
            Ok(bytes) if bytes.iter().all(u8::is_ascii_whitespace) => Map::new(),
            Ok(bytes) => match serde_json::from_slice::<Value>(&bytes) {
                Ok(Value::Object(map)) => map,
                Ok(_) => bail!("{}: not a JSON object", path.display()),
                Err(e) => bail!("{}: invalid JSON: {e}", path.display()),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Map::new(),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        Ok(AuthFile {
            path: path.to_path_buf(),
            document,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn auths(&self) -> Option<&Map<String, Value>> {
        self.document.get("auths").and_then(Value::as_object)
    }

    /// The key under `auths` that names `registry`, however it was written.
    fn find_key(&self, registry: &str) -> Option<String> {
        let want = canonical_host(registry);
        self.auths()?
            .keys()
            .find(|k| canonical_host(k) == want)
            .cloned()
    }

    /// The credential stored for `registry`, if any.
    pub fn get(&self, registry: &str) -> Result<Option<Credential>> {
        let Some(key) = self.find_key(registry) else {
            return Ok(None);
        };
        let entry = &self.auths().expect("key found")[&key];
        let field = |name: &str| {
            entry
                .get(name)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
        };
        let at = || format!("{}: auths.{key:?}", self.path.display());
        if let Some(encoded) = field("auth") {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(encoded.trim())
                .with_context(|| format!("{}.auth: not base64", at()))?;
            let decoded =
                String::from_utf8(decoded).with_context(|| format!("{}.auth: not UTF-8", at()))?;
            let (user, pass) = decoded
                .split_once(':')
                .with_context(|| format!("{}.auth: not of the form user:password", at()))?;
            return Ok(Some(Credential {
                username: user.to_string(),
                password: pass.to_string(),
            }));
        }
        if let (Some(user), Some(pass)) = (field("username"), field("password")) {
            return Ok(Some(Credential {
                username: user.to_string(),
                password: pass.to_string(),
            }));
        }
        if field("identitytoken").is_some() {
            bail!(
                "{}: identity tokens are not supported; log in again with a password",
                at()
            );
        }
        Ok(None)
    }

    /// Stores `credential` for `registry` (replacing any entry for the same registry).
    pub fn set(&mut self, registry: &str, credential: &Credential) {
        self.remove(registry);
        let pair = format!("{}:{}", credential.username, credential.password);
        let entry = serde_json::json!({
            "auth": base64::engine::general_purpose::STANDARD.encode(pair)
        });
        let auths = self
            .document
            .entry("auths")
            .or_insert_with(|| Value::Object(Map::new()));
        if !auths.is_object() {
            *auths = Value::Object(Map::new());
        }
        auths
            .as_object_mut()
            .expect("made an object")
            .insert(auth_key(registry), entry);
    }

    /// Removes the entry for `registry`; false when there was none.
    pub fn remove(&mut self, registry: &str) -> bool {
        let Some(key) = self.find_key(registry) else {
            return false;
        };
        self.document
            .get_mut("auths")
            .and_then(Value::as_object_mut)
            .is_some_and(|a| a.remove(&key).is_some())
    }

    /// Writes the file atomically (a 0600 temp file renamed over it), creating its directory
    /// (mode 0700) when missing.
    pub fn save(&self) -> Result<()> {
        let dir = self
            .path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let name = self
            .path
            .file_name()
            .with_context(|| format!("{}: not a file name", self.path.display()))?;
        let temp = dir.join(format!(
            ".{}.tmp-{}",
            name.to_string_lossy(),
            std::process::id()
        ));
        let mut bytes = serde_json::to_vec_pretty(&Value::Object(self.document.clone()))?;
        bytes.push(b'\n');
        let write = || -> Result<()> {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&temp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            std::fs::rename(&temp, &self.path)?;
            Ok(())
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&temp);
            e.context(format!("cannot write {}", self.path.display()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn temp_dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "berth-creds-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn set_save_load_remove_keeps_other_fields_and_mode_0600() {
        let dir = temp_dir();
        let path = dir.join("sub").join("config.json");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(
            &path,
            r#"{"auths":{"https://index.docker.io/v1/":{"auth":"eDp5"}},"credHelpers":{"a":"b"}}"#,
        )
        .unwrap();
        let mut file = AuthFile::load(&path).unwrap();
        assert_eq!(file.get("docker.io").unwrap().unwrap().username, "x");
        let cred = Credential {
            username: "bob".into(),
            password: "p:w".into(),
        };
        file.set("127.0.0.1:5000", &cred);
        file.save().unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("\"credHelpers\""), "{text}");
        assert!(text.contains("Ym9iOnA6dw=="), "{text}");
        let mut again = AuthFile::load(&path).unwrap();
        assert_eq!(again.get("https://127.0.0.1:5000/v2/").unwrap(), Some(cred));
        assert!(again.remove("127.0.0.1:5000"));
        assert!(!again.remove("127.0.0.1:5000"));
        assert_eq!(again.get("127.0.0.1:5000").unwrap(), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_files_and_entries_name_the_file_and_key() {
        let dir = temp_dir();
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("config.json");
        std::fs::write(&path, "[1]").unwrap();
        let err = AuthFile::load(&path).err().unwrap().to_string();
        assert!(
            err.contains("config.json") && err.contains("not a JSON object"),
            "{err}"
        );
        std::fs::write(&path, r#"{"auths":{"reg:1":{"auth":"!!"}}}"#).unwrap();
        let err = format!(
            "{:#}",
            AuthFile::load(&path).unwrap().get("reg:1").unwrap_err()
        );
        assert!(
            err.contains("\"reg:1\"") && err.contains("not base64"),
            "{err}"
        );
        assert!(AuthFile::load(&dir.join("missing.json"))
            .unwrap()
            .get("x")
            .unwrap()
            .is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
