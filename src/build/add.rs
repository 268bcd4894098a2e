//! What ADD does beyond COPY: remote URLs downloaded (never extracted), local tar archives
//! extracted.
//!
//! API:
//! - [`is_url`]: whether an ADD source is a remote URL (`http://`, `https://`).
//! - [`download`]`(url, checksum)` -> [`Download`]: the body in an unnamed temporary file,
//!   the file name from the URL's path, the mtime from `Last-Modified`, `--checksum` verified.
//! - [`open_archive`]: a local file opened as a tar stream when its content is a tar (plain,
//!   gzip, bzip2, xz or zstd), as BuildKit decides before unpacking; None otherwise.

use super::archive;
use crate::image::digest::Digest;
use crate::image::registry::client;
use anyhow::{bail, Context, Result};
use sha2::Digest as _;
use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::Path;
use std::time::Duration;

/// True for the sources ADD downloads.
pub fn is_url(source: &str) -> bool {
    source.starts_with("http://") || source.starts_with("https://")
}

/// A downloaded ADD source.
#[derive(Debug)]
pub struct Download {
    pub url: String,
    /// The base name the URL's path ends with (`__unnamed__` when it has none, as BuildKit).
    pub file_name: String,
    /// From `Last-Modified`; the time of the download without one.
    pub mtime: i64,
    /// The body, in an unnamed temporary file.
    pub file: File,
    pub size: u64,
    pub digest: Digest,
}

impl Download {
    /// The body from its start.
    pub fn reader(&self) -> Result<File> {
        let mut f = self.file.try_clone()?;
        f.rewind()?;
        Ok(f)
    }
}

/// The last path component of the URL (query and fragment left out).
pub fn file_name_of(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let path = rest.split(['?', '#']).next().unwrap_or("");
    let path = path.split_once('/').map_or("", |(_, p)| p);
    match path.rsplit('/').next() {
        Some(name) if !name.is_empty() && name != "." && name != ".." => name.to_string(),
        _ => "__unnamed__".to_string(),
    }
}

/// Downloads `url`; `checksum` (`sha256:<hex>`) must then match the body.
pub fn download(url: &str, checksum: Option<&str>) -> Result<Download> {
    let want = checksum
        .map(|c| Digest::parse(c).with_context(|| format!("invalid checksum {c:?}")))
        .transpose()?;
    if let Some(d) = &want {
        if d.algorithm() != "sha256" {
            bail!("unsupported checksum algorithm {:?}", d.algorithm());
        }
    }
    // The registries' trust: the system's roots and /etc/berth/certs.d/<host:port>/*.crt.
    let host = url
        .split_once("://")
        .map_or("", |(_, r)| r.split(['/', '?', '#']).next().unwrap_or(""));
    let roots = client::trusted_roots(&Path::new(client::CERTS_D).join(host))?;
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .tls_config(
            ureq::tls::TlsConfig::builder()
                .root_certs(ureq::tls::RootCerts::from(roots))
                .build(),
        )
        .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION")))
        .http_status_as_error(false)
        .timeout_connect(Some(Duration::from_secs(30)))
        .build()
        .into();
    let mut response = agent
        .get(url)
        .call()
        .with_context(|| format!("failed to load {url}"))?;
    let status = response.status();
    if !status.is_success() {
        bail!("failed to load {url}: invalid response status {}", status);
    }
    let mtime = response
        .headers()
        .get("last-modified")
        .and_then(|v| v.to_str().ok())
        .and_then(parse_http_date)
        .unwrap_or_else(crate::image::time::now_secs);
    let mut file = super::archive::unnamed_temp_file()?;
    let mut body = response.body_mut().as_reader();
    let mut hasher = sha2::Sha256::new();
    let mut size = 0u64;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = body
            .read(&mut buf)
            .with_context(|| format!("failed to read {url}"))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        file.write_all(&buf[..n])?;
        size += n as u64;
    }
    let hex: String = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let digest = Digest::from_hex(&hex)?;
    if let Some(want) = want {
        if want != digest {
            bail!("digest mismatch for {url}: expected {want}, got {digest}");
        }
    }
    Ok(Download {
        url: url.to_string(),
        file_name: file_name_of(url),
        mtime,
        file,
        size,
        digest,
    })
}

/// An HTTP date (RFC 7231's IMF-fixdate, `Sun, 06 Nov 1994 08:49:37 GMT`) in seconds.
pub fn parse_http_date(text: &str) -> Option<i64> {
    let parts: Vec<&str> = text.split_whitespace().collect();
    let [_, day, month, year, time, "GMT"] = parts.as_slice() else {
        return None;
    };
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]
    .iter()
    .position(|m| m == month)?
        + 1;
    let mut hms = time.split(':').map(|p| p.parse::<i64>().ok());
    let (h, mi, s) = (hms.next()??, hms.next()??, hms.next()??);
    let stamp = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        year.parse::<i64>().ok()?,
        month,
        day.parse::<i64>().ok()?,
        h,
        mi,
        s
    );
    crate::image::time::parse_rfc3339(&stamp)
}

/// The local file `file` as an uncompressed tar stream when it is an archive.
pub fn open_archive(file: File) -> Result<Option<Box<dyn Read>>> {
    let (_, mut stream) = match archive::decompress(file) {
        Ok(s) => s,
        // A file that starts like a compressed stream but is not one is copied as it is.
        Err(_) => return Ok(None),
    };
    let mut head = [0u8; 512];
    let mut got = 0;
    while got < head.len() {
        match stream.read(&mut head[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(_) => return Ok(None),
        }
    }
    if got < 512 || !archive::is_tar_header(&head) {
        return Ok(None);
    }
    Ok(Some(Box::new(std::io::Cursor::new(head).chain(stream))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_dates() {
        assert_eq!(file_name_of("http://h:1/a/b/c.tar.gz?x=1#f"), "c.tar.gz");
        assert_eq!(file_name_of("https://h/"), "__unnamed__");
        assert_eq!(file_name_of("https://h"), "__unnamed__");
        assert_eq!(
            parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784111777)
        );
        assert_eq!(parse_http_date("yesterday"), None);
    }
}
