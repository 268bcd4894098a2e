//! Archives as `berth build -` and ADD take them: compression told by content, and whether a
//! stream is a tar at all.
//!
//! API:
//! - [`decompress`]: wraps a reader with the decompressor its first bytes call for (gzip,
//!   bzip2, xz, zstd) or passes it through.
//! - [`is_tar_header`]: whether a 512-byte block is a tar header (its checksum holds), as
//!   Docker's `IsArchive`/BuildKit's unpack decide before extracting.

use anyhow::{Context, Result};
use std::io::{BufRead, BufReader, Read, Seek};

/// A compression told from the first bytes of a stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Bzip2,
    Xz,
    Zstd,
}

/// Wraps `src` with the decompressor its magic bytes call for: bzip2 and xz here (archives that
/// ADD extracts), gzip, zstd and plain tar as the image layer reads its layers.
pub fn decompress<'a>(src: impl Read + 'a) -> Result<(Compression, Box<dyn Read + 'a>)> {
    use crate::image::unpack;
    let mut buffered = BufReader::with_capacity(1 << 16, src);
    let head = buffered.fill_buf().context("reading the archive")?;
    if head.starts_with(b"BZh") {
        let reader = Box::new(bzip2::bufread::MultiBzDecoder::new(buffered));
        return Ok((Compression::Bzip2, reader));
    }
    if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
        // lzma-rs decodes xz into a writer, not as a reader: into an unnamed temporary
        // file (gone when closed), then read back.
        let mut out = unnamed_temp_file()?;
        lzma_rs::xz_decompress(&mut buffered, &mut out)
            .map_err(|e| anyhow::anyhow!("invalid xz stream: {e:?}"))?;
        out.rewind()?;
        return Ok((Compression::Xz, Box::new(BufReader::new(out))));
    }
    let (kind, reader) = unpack::decompress(buffered)?;
    let kind = match kind {
        unpack::Compression::None => Compression::None,
        unpack::Compression::Gzip => Compression::Gzip,
        unpack::Compression::Zstd => Compression::Zstd,
    };
    Ok((kind, reader))
}

/// A file with no name in the temporary directory (O_TMPFILE): nothing to clean up.
pub(crate) fn unnamed_temp_file() -> Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = std::env::temp_dir();
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_TMPFILE)
        .mode(0o600)
        .open(&dir)
        .with_context(|| format!("cannot create a temporary file in {}", dir.display()))
}

/// True when `block` is a tar header: a name, and a checksum that matches (the test
/// Go's archive/tar and so Docker's archive detection rely on).
pub fn is_tar_header(block: &[u8; 512]) -> bool {
    if block.iter().all(|b| *b == 0) {
        return false;
    }
    let field = &block[148..156];
    let text: String = field
        .iter()
        .take_while(|b| **b != 0)
        .map(|b| *b as char)
        .collect();
    let Ok(stored) = u32::from_str_radix(text.trim(), 8) else {
        return false;
    };
    let unsigned: u32 = block
        .iter()
        .enumerate()
        .map(|(i, b)| {
            if (148..156).contains(&i) {
                u32::from(b' ')
            } else {
                u32::from(*b)
            }
        })
        .sum();
    let signed: i64 = block
        .iter()
        .enumerate()
        .map(|(i, b)| {
            if (148..156).contains(&i) {
                i64::from(b' ')
            } else {
                i64::from(*b as i8)
            }
        })
        .sum();
    stored == unsigned || i64::from(stored) == signed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_bytes() -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_ustar();
        h.set_size(2);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, "f", &b"hi"[..]).unwrap();
        b.into_inner().unwrap()
    }

    #[test]
    fn every_compression_is_told_by_content() {
        let plain = tar_bytes();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &plain).unwrap();
        let mut bz = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
        std::io::Write::write_all(&mut bz, &plain).unwrap();
        let mut xz = Vec::new();
        lzma_rs::xz_compress(&mut &plain[..], &mut xz).unwrap();
        let cases = [
            (Compression::None, plain.clone()),
            (Compression::Gzip, gz.finish().unwrap()),
            (Compression::Bzip2, bz.finish().unwrap()),
            (Compression::Xz, xz),
        ];
        for (want, bytes) in cases {
            let (kind, mut r) = decompress(&bytes[..]).unwrap();
            assert_eq!(kind, want);
            let mut out = Vec::new();
            r.read_to_end(&mut out).unwrap();
            assert_eq!(out, plain, "{want:?}");
            let block: [u8; 512] = out[..512].try_into().unwrap();
            assert!(is_tar_header(&block));
        }
        let mut text = [0u8; 512];
        text[..13].copy_from_slice(b"FROM scratch\n");
        assert!(!is_tar_header(&text));
        assert!(!is_tar_header(&[0u8; 512]));
    }
}
