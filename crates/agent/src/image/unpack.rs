//! Unpacking one image layer (a tar stream, plain, gzip or zstd) into a directory that
//! overlayfs can stack as a lower layer.
//!
//! Whiteouts become overlayfs whiteouts: `.wh.NAME` a character device 0:0 named `NAME`,
//! `.wh..wh..opq` the `trusted.overlay.opaque=y` attribute on its directory. Owners, modes,
//! modification times and extended attributes are kept when the agent runs as root; device
//! nodes are skipped (a container's `/dev` is made fresh for each instance). Paths that leave
//! the directory (`..`, absolute links followed outside) are refused by the tar reader.

use std::io::{BufRead, BufReader, Read};
use std::path::{Component, Path, PathBuf};

/// The compression of a layer, detected from its first bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// A plain tar.
    None,
    /// gzip.
    Gzip,
    /// zstd.
    Zstd,
}

/// Detects the compression from the magic number.
pub fn detect(head: &[u8]) -> Compression {
    if head.starts_with(&[0x1f, 0x8b]) {
        Compression::Gzip
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Compression::Zstd
    } else {
        Compression::None
    }
}

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_MARKER: &str = ".wh..wh..opq";

/// Unpacks the layer read from `input` into `dest` (which must exist and be empty). Returns
/// the number of bytes of file content written.
pub fn unpack_layer(input: impl Read, dest: &Path) -> std::io::Result<u64> {
    let mut reader = BufReader::with_capacity(256 * 1024, input);
    let head = reader.fill_buf()?.to_vec();
    let stream: Box<dyn Read> = match detect(&head) {
        Compression::None => Box::new(reader),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(reader)),
        Compression::Zstd => Box::new(
            ruzstd::decoding::StreamingDecoder::new(reader)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?,
        ),
    };
    unpack_tar(stream, dest)
}

fn unpack_tar(stream: impl Read, dest: &Path) -> std::io::Result<u64> {
    let root = nix::unistd::geteuid().is_root();
    let mut archive = tar::Archive::new(stream);
    archive.set_preserve_permissions(true);
    archive.set_preserve_ownerships(root);
    archive.set_unpack_xattrs(root);
    archive.set_preserve_mtime(true);
    archive.set_overwrite(true);
    let mut written = 0u64;
    for entry in archive.entries()? {
        let mut entry = entry?;
        let path = entry.path()?.into_owned();
        let Some(rel) = clean(&path) else {
            continue;
        };
        let kind = entry.header().entry_type();
        if kind.is_character_special() || kind.is_block_special() {
            continue;
        }
        let name = rel
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name == OPAQUE_MARKER {
            let dir = dest.join(rel.parent().unwrap_or(Path::new("")));
            std::fs::create_dir_all(&dir)?;
            if root {
                set_opaque(&dir)?;
            }
            continue;
        }
        if let Some(hidden) = name.strip_prefix(WHITEOUT_PREFIX) {
            let parent = dest.join(rel.parent().unwrap_or(Path::new("")));
            std::fs::create_dir_all(&parent)?;
            let target = parent.join(hidden);
            remove_any(&target)?;
            if root {
                nix::sys::stat::mknod(
                    &target,
                    nix::sys::stat::SFlag::S_IFCHR,
                    nix::sys::stat::Mode::empty(),
                    0,
                )
                .map_err(std::io::Error::from)?;
            }
            continue;
        }
        // A file replacing a directory (or the reverse) of the same layer: the later wins.
        let target = dest.join(&rel);
        if let Ok(meta) = std::fs::symlink_metadata(&target)
            && (meta.is_dir() != kind.is_dir())
        {
            remove_any(&target)?;
        }
        written += entry.header().size().unwrap_or(0);
        entry.unpack_in(dest)?;
    }
    Ok(written)
}

/// The entry's path made relative and normal; None for the root itself or a path that
/// climbs out.
fn clean(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    (!out.as_os_str().is_empty()).then_some(out)
}

fn remove_any(p: &Path) -> std::io::Result<()> {
    match std::fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(p),
        Ok(_) => std::fs::remove_file(p),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

fn set_opaque(dir: &Path) -> std::io::Result<()> {
    rustix::fs::setxattr(
        dir,
        "trusted.overlay.opaque",
        b"y",
        rustix::fs::XattrFlags::empty(),
    )
    .map_err(std::io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(entries: &[(&str, Option<&[u8]>)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(1);
            match data {
                Some(d) => {
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_size(d.len() as u64);
                    h.set_mode(0o644);
                    h.set_cksum();
                    b.append_data(&mut h, path, *d).expect("append");
                }
                None => {
                    h.set_entry_type(tar::EntryType::Directory);
                    h.set_size(0);
                    h.set_mode(0o755);
                    h.set_cksum();
                    b.append_data(&mut h, path, &[][..]).expect("append");
                }
            }
        }
        b.into_inner().expect("tar")
    }

    #[test]
    fn gzip_and_zstd_are_detected_by_magic() {
        assert_eq!(detect(&[0x1f, 0x8b, 8]), Compression::Gzip);
        assert_eq!(detect(&[0x28, 0xb5, 0x2f, 0xfd, 0]), Compression::Zstd);
        assert_eq!(detect(b"etc/\0\0"), Compression::None);
    }

    #[test]
    fn a_gzip_layer_unpacks_with_whiteouts_and_opaque_dirs() {
        let raw = layer(&[
            ("etc/", None),
            ("etc/os-release", Some(b"ID=test\n")),
            ("etc/.wh.gone", Some(b"")),
            ("var/.wh..wh..opq", Some(b"")),
        ]);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &raw).expect("gzip");
        let gz = gz.finish().expect("gzip");
        let dir = tempfile::tempdir().expect("tempdir");
        let n = unpack_layer(&gz[..], dir.path()).expect("unpack");
        assert_eq!(n, 8);
        assert_eq!(
            std::fs::read_to_string(dir.path().join("etc/os-release")).expect("read"),
            "ID=test\n"
        );
        assert!(!dir.path().join("etc/.wh.gone").exists());
        assert!(!dir.path().join("var/.wh..wh..opq").exists());
        if nix::unistd::geteuid().is_root() {
            use std::os::unix::fs::FileTypeExt;
            let meta = std::fs::symlink_metadata(dir.path().join("etc/gone")).expect("whiteout");
            assert!(meta.file_type().is_char_device());
            let mut buf = [0u8; 4];
            let n =
                rustix::fs::getxattr(dir.path().join("var"), "trusted.overlay.opaque", &mut buf)
                    .expect("opaque xattr");
            assert_eq!(&buf[..n], b"y");
        }
    }

    #[test]
    fn a_plain_tar_layer_unpacks() {
        let raw = layer(&[("bin/", None), ("bin/tool", Some(b"#!/bin/sh\n"))]);
        let dir = tempfile::tempdir().expect("tempdir");
        unpack_layer(&raw[..], dir.path()).expect("unpack");
        assert!(dir.path().join("bin/tool").is_file());
    }
}
