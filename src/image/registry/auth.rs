//! Registry authentication: the `WWW-Authenticate` challenges of RFC 7235, Docker's token
//! protocol (a Bearer token from the challenge's realm, asked for a service and a scope) and
//! HTTP basic auth.

use anyhow::{bail, Context, Result};
use base64::Engine;

/// A user name and password (or identity token) for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credential {
    // The password never reaches a log or an error message.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credential {{ username: {:?} }}", self.username)
    }
}

impl Credential {
    /// The value of an `Authorization: Basic ...` header.
    pub fn basic_header(&self) -> String {
        let pair = format!("{}:{}", self.username, self.password);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(pair)
        )
    }
}

/// One challenge from a `WWW-Authenticate` header: `Bearer realm="...",service="..."`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Challenge {
    /// Lower-cased: `bearer`, `basic`, ...
    pub scheme: String,
    /// Parameter names lower-cased, values unquoted.
    pub params: Vec<(String, String)>,
}

impl Challenge {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Parses a `WWW-Authenticate` value, which may hold several challenges:
/// `Basic realm="x", Bearer realm="https://auth/token",service="reg",scope="repository:a:pull"`.
pub fn parse_challenges(header: &str) -> Result<Vec<Challenge>> {
    let mut lexer = Lexer {
        s: header.as_bytes(),
        pos: 0,
    };
    let mut out: Vec<Challenge> = Vec::new();
    loop {
        lexer.skip_separators();
        if lexer.at_end() {
            break;
        }
        let word = lexer
            .token()
            .with_context(|| format!("WWW-Authenticate {header:?}: expected a scheme"))?;
        lexer.skip_spaces();
        if lexer.peek() == Some(b'=') && !out.is_empty() {
            // `name=value` after a scheme: a parameter of the current challenge.
            lexer.pos += 1;
            lexer.skip_spaces();
            let value = lexer
                .value()
                .with_context(|| format!("WWW-Authenticate {header:?}: bad value of {word}"))?;
            let current = out.last_mut().expect("checked non-empty");
            current.params.push((word.to_ascii_lowercase(), value));
        } else {
            out.push(Challenge {
                scheme: word.to_ascii_lowercase(),
                params: Vec::new(),
            });
        }
    }
    if out.is_empty() {
        bail!("WWW-Authenticate header is empty");
    }
    Ok(out)
}

struct Lexer<'a> {
    s: &'a [u8],
    pos: usize,
}

impl Lexer<'_> {
    fn at_end(&self) -> bool {
        self.pos >= self.s.len()
    }
    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }
    fn skip_spaces(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
    }
    fn skip_separators(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b',')) {
            self.pos += 1;
        }
    }
    /// An RFC 7230 token (also accepts token68's `/+=`-free part).
    fn token(&mut self) -> Result<String> {
        let start = self.pos;
        while let Some(c) = self.peek() {
            if c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~/".contains(&c) {
                self.pos += 1;
            } else {
                break;
            }
        }
        if self.pos == start {
            bail!("unexpected character at byte {start}");
        }
        Ok(String::from_utf8_lossy(&self.s[start..self.pos]).into_owned())
    }
    /// A token or a quoted string with backslash escapes.
    fn value(&mut self) -> Result<String> {
        if self.peek() != Some(b'"') {
            return self.token();
        }
        self.pos += 1;
        let mut out = Vec::new();
        loop {
            match self.peek() {
                None => bail!("unterminated quoted string"),
                Some(b'"') => {
                    self.pos += 1;
                    break;
                }
                Some(b'\\') => {
                    let escaped = self.s.get(self.pos + 1).copied();
                    out.push(escaped.context("unterminated quoted string")?);
                    self.pos += 2;
                }
                Some(c) => {
                    out.push(c);
                    self.pos += 1;
                }
            }
        }
        Ok(String::from_utf8_lossy(&out).into_owned())
    }
}

/// The scope a registry operation needs, as the token protocol writes it.
pub fn repository_scope(repository: &str, push: bool) -> String {
    let actions = if push { "pull,push" } else { "pull" };
    format!("repository:{repository}:{actions}")
}

/// The JSON a token server answers with; servers send `token`, `access_token` or both.
#[derive(serde::Deserialize)]
struct TokenResponse {
    token: Option<String>,
    access_token: Option<String>,
}

/// Asks the challenge's realm for a Bearer token (Docker's token protocol, GET form), with the
/// credential as basic auth when there is one. `scope` is the scope we need; a scope named by the
/// challenge itself is asked for too.
pub fn fetch_token(
    agent: &ureq::Agent,
    challenge: &Challenge,
    scope: Option<&str>,
    credential: Option<&Credential>,
) -> Result<String> {
    let realm = challenge
        .param("realm")
        .context("the registry's Bearer challenge has no realm")?;
    let mut request = agent.get(realm);
    if let Some(service) = challenge.param("service") {
        request = request.query("service", service);
    }
    // Several scopes (space-separated, as in a challenge) go as several parameters.
    let mut scopes: Vec<&str> = scope.into_iter().flat_map(str::split_whitespace).collect();
    for s in challenge
        .param("scope")
        .into_iter()
        .flat_map(str::split_whitespace)
    {
        if !scopes.contains(&s) {
            scopes.push(s);
        }
    }
    for s in scopes {
        request = request.query("scope", s);
    }
    if let Some(c) = credential {
        request = request
            .query("account", &c.username)
            .header("Authorization", c.basic_header());
    }
    let mut response = request
        .call()
        .with_context(|| format!("cannot reach the token server {realm}"))?;
    let status = response.status();
    if !status.is_success() {
        let hint = if matches!(status.as_u16(), 401 | 403) {
            if credential.is_some() {
                " (wrong user name or password?)"
            } else {
                " (no credentials: try `berth login`)"
            }
        } else {
            ""
        };
        bail!("token server {realm} refused: {status}{hint}");
    }
    let text = response
        .body_mut()
        .with_config()
        .limit(1 << 20)
        .read_to_vec()
        .with_context(|| format!("token server {realm}: cannot read its answer"))?;
    let body: TokenResponse = serde_json::from_slice(&text)
        .with_context(|| format!("token server {realm}: invalid JSON answer"))?;
    body.token
        .or(body.access_token)
        .filter(|t| !t.is_empty())
        .with_context(|| format!("token server {realm} answered without a token"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_docker_hub_bearer_challenge() {
        let c = parse_challenges(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#,
        )
        .unwrap();
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].scheme, "bearer");
        assert_eq!(c[0].param("realm"), Some("https://auth.docker.io/token"));
        assert_eq!(c[0].param("service"), Some("registry.docker.io"));
        assert_eq!(c[0].param("scope"), Some("repository:library/busybox:pull"));
    }

    #[test]
    fn parses_several_challenges_tokens_and_escapes() {
        let c =
            parse_challenges(r#"Basic realm="a \"quoted\" realm", Bearer realm=tok,Service = "s""#)
                .unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].scheme, "basic");
        assert_eq!(c[0].param("realm"), Some(r#"a "quoted" realm"#));
        assert_eq!(c[1].scheme, "bearer");
        assert_eq!(c[1].param("realm"), Some("tok"));
        assert_eq!(c[1].param("service"), Some("s"));
    }

    #[test]
    fn rejects_malformed_challenges() {
        assert!(parse_challenges("").is_err());
        assert!(parse_challenges(r#"Bearer realm="unterminated"#).is_err());
        assert!(parse_challenges("Bearer realm=\u{1}").is_err());
    }

    #[test]
    fn basic_header_is_base64_of_user_colon_password() {
        let c = Credential {
            username: "alice".into(),
            password: "s3cret:x".into(),
        };
        assert_eq!(c.basic_header(), "Basic YWxpY2U6czNjcmV0Ong=");
        assert!(!format!("{c:?}").contains("s3cret"));
    }
}
