//! The content part of a COPY/ADD cache key, as BuildKit keys it: what lands where, with its
//! metadata and content, but not the sources' mtimes (BuildKit leaves them out of the key and
//! keeps them in the layer).
//!
//! API: [`super::copy::CopyPlan::content_digest`] feeds a [`DigestSink`] the entries the copy
//! would write, in the copy's (sorted, deterministic) order; [`DigestSink::finish`] gives
//! `sha256:<hex>`.

use crate::image::tarstream::{Entry, EntryKind, Sink};
use anyhow::Result;
use sha2::{Digest as _, Sha256};
use std::io::Read;
use std::os::unix::ffi::OsStrExt;

/// Hashes entries: length-prefixed fields, so no two different sequences hash alike.
#[derive(Default)]
pub struct DigestSink {
    hasher: Sha256,
}

impl DigestSink {
    /// Adds a field of the key's own (the instruction kind).
    pub fn note(&mut self, bytes: &[u8]) {
        self.field(bytes);
    }

    fn field(&mut self, bytes: &[u8]) {
        self.hasher.update((bytes.len() as u64).to_le_bytes());
        self.hasher.update(bytes);
    }

    fn number(&mut self, n: u64) {
        self.hasher.update(n.to_le_bytes());
    }

    pub fn finish(self) -> String {
        let hex: String = self
            .hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        format!("sha256:{hex}")
    }
}

impl Sink for DigestSink {
    fn put(&mut self, e: &Entry, data: &mut dyn Read) -> Result<()> {
        self.field(e.path.as_os_str().as_bytes());
        let (tag, detail): (u8, Vec<u8>) = match &e.kind {
            EntryKind::Dir => (b'd', Vec::new()),
            EntryKind::File(size) => (b'f', size.to_le_bytes().to_vec()),
            EntryKind::Symlink(t) => (b'l', t.as_os_str().as_bytes().to_vec()),
            EntryKind::HardLink(t) => (b'h', t.as_os_str().as_bytes().to_vec()),
            EntryKind::Char(dev) => (b'c', dev.to_le_bytes().to_vec()),
            EntryKind::Block(dev) => (b'b', dev.to_le_bytes().to_vec()),
            EntryKind::Fifo => (b'p', Vec::new()),
        };
        self.field(&[tag]);
        self.field(&detail);
        self.number(u64::from(e.mode));
        self.number(u64::from(e.uid));
        self.number(u64::from(e.gid));
        let mut xattrs = e.xattrs.clone();
        xattrs.sort();
        self.number(xattrs.len() as u64);
        for (k, v) in &xattrs {
            self.field(k.as_bytes());
            self.field(v);
        }
        if let EntryKind::File(size) = e.kind {
            // The content's own digest, so a file's bytes cannot run into the next field.
            let mut content = Sha256::new();
            let mut buf = vec![0u8; 1 << 16];
            let mut left = size;
            while left > 0 {
                let n = data.read(&mut buf[..left.min(1 << 16) as usize])?;
                if n == 0 {
                    anyhow::bail!("{}: the data ended early", e.path.display());
                }
                content.update(&buf[..n]);
                left -= n as u64;
            }
            self.hasher.update(content.finalize());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(entries: &[(Entry, &[u8])]) -> String {
        let mut d = DigestSink::default();
        for (e, data) in entries {
            d.put(e, &mut &data[..]).unwrap();
        }
        d.finish()
    }

    #[test]
    fn fields_cannot_run_into_each_other_and_mtimes_do_not_count() {
        let f = |path: &str, data: &'static [u8]| {
            (
                Entry::new(path, EntryKind::File(data.len() as u64), 0o644),
                data,
            )
        };
        // The same bytes split differently between name and content.
        assert_ne!(digest(&[f("ab", b"c")]), digest(&[f("a", b"bc")]));
        assert_ne!(
            digest(&[f("a", b"x"), f("b", b"y")]),
            digest(&[f("b", b"y"), f("a", b"x")]),
            "order counts"
        );
        let (mut e, data) = f("a", b"x");
        let before = digest(&[(e.clone(), data)]);
        e.mtime = 12345;
        assert_eq!(before, digest(&[(e.clone(), data)]));
        e.uid = 1;
        assert_ne!(before, digest(&[(e, data)]));
        let link = |t: &str| Entry::new("l", EntryKind::Symlink(t.into()), 0o777);
        assert_ne!(digest(&[(link("x"), b"")]), digest(&[(link("y"), b"")]));
    }
}
