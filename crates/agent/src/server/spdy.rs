//! SPDY/3.1 framing, as much as port forwarding needs (the server side of Go's
//! `spdystream`): frames read from and written to a byte stream, header blocks with the
//! SPDY/3 zlib dictionary.
//!
//! Frames: control frames `SYN_STREAM` (1), `SYN_REPLY` (2), `RST_STREAM` (3), `SETTINGS` (4),
//! `PING` (6), `GOAWAY` (7), `HEADERS` (8), `WINDOW_UPDATE` (9); data frames with the `FIN`
//! flag. Header blocks are one zlib stream per direction across the whole connection: the
//! peer's is inflated with the dictionary (`miniz_oxide`, the window carried from frame to
//! frame); ours is written as stored (uncompressed) deflate blocks, each header block ending
//! with a sync-flush marker, after a zlib header without a dictionary, which every inflater
//! reads. Flow control is not enforced (neither
//! does spdystream).

use std::collections::BTreeMap;

use miniz_oxide::inflate::TINFLStatus;
use miniz_oxide::inflate::core::{DecompressorOxide, decompress, inflate_flags};
use tokio::io::{AsyncRead, AsyncReadExt};

/// The largest frame accepted (data frames from clients are at most a few tens of KiB).
pub const MAX_FRAME: usize = 1 << 20;
/// The largest decompressed header block accepted.
const MAX_HEADERS: usize = 64 * 1024;
/// Deflate's window.
const WINDOW: usize = 32 * 1024;

/// Control frame types.
pub mod kind {
    /// Opens a stream.
    pub const SYN_STREAM: u16 = 1;
    /// Accepts a stream.
    pub const SYN_REPLY: u16 = 2;
    /// Resets a stream.
    pub const RST_STREAM: u16 = 3;
    /// Settings.
    pub const SETTINGS: u16 = 4;
    /// Ping (echoed).
    pub const PING: u16 = 6;
    /// The connection ends.
    pub const GOAWAY: u16 = 7;
    /// More headers.
    pub const HEADERS: u16 = 8;
    /// Flow control.
    pub const WINDOW_UPDATE: u16 = 9;
}

/// `FLAG_FIN`: the sender's half of the stream is done.
pub const FLAG_FIN: u8 = 0x01;

/// A frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// A control frame: type, flags, payload.
    Control {
        /// The type.
        kind: u16,
        /// Flags.
        flags: u8,
        /// The payload.
        payload: Vec<u8>,
    },
    /// A data frame.
    Data {
        /// The stream.
        stream: u32,
        /// Flags.
        flags: u8,
        /// The bytes.
        data: Vec<u8>,
    },
}

/// Reads one frame; None at a clean end of the stream.
pub async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> std::io::Result<Option<Frame>> {
    let mut head = [0u8; 8];
    match r.read_exact(&mut head).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let flags = head[4];
    let len = u32::from_be_bytes([0, head[5], head[6], head[7]]) as usize;
    if len > MAX_FRAME {
        return Err(std::io::Error::other(format!("frame of {len} bytes")));
    }
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload).await?;
    if head[0] & 0x80 != 0 {
        let version = u16::from_be_bytes([head[0] & 0x7f, head[1]]);
        if version != 3 {
            return Err(std::io::Error::other(format!("SPDY version {version}")));
        }
        Ok(Some(Frame::Control {
            kind: u16::from_be_bytes([head[2], head[3]]),
            flags,
            payload,
        }))
    } else {
        Ok(Some(Frame::Data {
            stream: u32::from_be_bytes([head[0], head[1], head[2], head[3]]) & 0x7fff_ffff,
            flags,
            data: payload,
        }))
    }
}

fn control(kind: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(8 + payload.len());
    f.extend_from_slice(&[0x80, 3]);
    f.extend_from_slice(&kind.to_be_bytes());
    f.push(flags);
    f.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
    f.extend_from_slice(payload);
    f
}

/// A data frame.
pub fn data_frame(stream: u32, flags: u8, data: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(8 + data.len());
    f.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    f.push(flags);
    f.extend_from_slice(&(data.len() as u32).to_be_bytes()[1..]);
    f.extend_from_slice(data);
    f
}

/// A PING frame answering `payload`.
pub fn ping_frame(payload: &[u8]) -> Vec<u8> {
    control(kind::PING, 0, payload)
}

/// A RST_STREAM frame.
pub fn rst_frame(stream: u32, status: u32) -> Vec<u8> {
    let mut p = (stream & 0x7fff_ffff).to_be_bytes().to_vec();
    p.extend_from_slice(&status.to_be_bytes());
    control(kind::RST_STREAM, 0, &p)
}

/// A GOAWAY frame.
pub fn goaway_frame(last_stream: u32) -> Vec<u8> {
    let mut p = (last_stream & 0x7fff_ffff).to_be_bytes().to_vec();
    p.extend_from_slice(&0u32.to_be_bytes());
    control(kind::GOAWAY, 0, &p)
}

/// The SPDY/3 header dictionary (spec section 2.6.10.1).
const DICTIONARY: &[u8] = b"\x00\x00\x00\x07options\x00\x00\x00\x04head\x00\x00\x00\x04post\
\x00\x00\x00\x03put\x00\x00\x00\x06delete\x00\x00\x00\x05trace\x00\x00\x00\x06accept\
\x00\x00\x00\x0eaccept-charset\x00\x00\x00\x0faccept-encoding\x00\x00\x00\x0faccept-language\
\x00\x00\x00\x0daccept-ranges\x00\x00\x00\x03age\x00\x00\x00\x05allow\x00\x00\x00\x0dauthorization\
\x00\x00\x00\x0dcache-control\x00\x00\x00\x0aconnection\x00\x00\x00\x0ccontent-base\
\x00\x00\x00\x10content-encoding\x00\x00\x00\x10content-language\x00\x00\x00\x0econtent-length\
\x00\x00\x00\x10content-location\x00\x00\x00\x0bcontent-md5\x00\x00\x00\x0dcontent-range\
\x00\x00\x00\x0ccontent-type\x00\x00\x00\x04date\x00\x00\x00\x04etag\x00\x00\x00\x06expect\
\x00\x00\x00\x07expires\x00\x00\x00\x04from\x00\x00\x00\x04host\x00\x00\x00\x08if-match\
\x00\x00\x00\x11if-modified-since\x00\x00\x00\x0dif-none-match\x00\x00\x00\x08if-range\
\x00\x00\x00\x13if-unmodified-since\x00\x00\x00\x0dlast-modified\x00\x00\x00\x08location\
\x00\x00\x00\x0cmax-forwards\x00\x00\x00\x06pragma\x00\x00\x00\x12proxy-authenticate\
\x00\x00\x00\x13proxy-authorization\x00\x00\x00\x05range\x00\x00\x00\x07referer\
\x00\x00\x00\x0bretry-after\x00\x00\x00\x06server\x00\x00\x00\x02te\x00\x00\x00\x07trailer\
\x00\x00\x00\x11transfer-encoding\x00\x00\x00\x07upgrade\x00\x00\x00\x0auser-agent\
\x00\x00\x00\x04vary\x00\x00\x00\x03via\x00\x00\x00\x07warning\x00\x00\x00\x10www-authenticate\
\x00\x00\x00\x06method\x00\x00\x00\x03get\x00\x00\x00\x06status\x00\x00\x00\x06200 OK\
\x00\x00\x00\x07version\x00\x00\x00\x08HTTP/1.1\x00\x00\x00\x03url\x00\x00\x00\x06public\
\x00\x00\x00\x0aset-cookie\x00\x00\x00\x0akeep-alive\x00\x00\x00\x06origin100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.";

/// The header-block codec of one connection (one zlib stream per direction).
pub struct HeaderCodec {
    inflater: Box<DecompressorOxide>,
    /// The dictionary, then what was inflated (the last 32 KiB of it).
    history: Vec<u8>,
    /// Bytes of the peer's zlib header still to skip (2, plus 4 with a dictionary ID).
    header_left: Option<usize>,
    wrote_header: bool,
}

impl Default for HeaderCodec {
    fn default() -> Self {
        HeaderCodec {
            inflater: Box::default(),
            history: DICTIONARY.to_vec(),
            header_left: None,
            wrote_header: false,
        }
    }
}

impl HeaderCodec {
    /// Inflates one header block and parses its name/value pairs (names lowercased; values
    /// with several parts joined by NUL are kept whole).
    pub fn decode(&mut self, mut block: &[u8]) -> Result<BTreeMap<String, String>, String> {
        if self.header_left.is_none() {
            if block.len() < 2 {
                return Err("short zlib header".into());
            }
            let fdict = block[1] & 0x20 != 0;
            self.header_left = Some(if fdict { 6 } else { 2 });
        }
        let skip = self.header_left.unwrap_or(0).min(block.len());
        block = &block[skip..];
        self.header_left = Some(self.header_left.unwrap_or(0) - skip);
        let start = self.history.len();
        let mut out = std::mem::take(&mut self.history);
        out.resize(start + MAX_HEADERS, 0);
        let flags = inflate_flags::TINFL_FLAG_HAS_MORE_INPUT
            | inflate_flags::TINFL_FLAG_USING_NON_WRAPPING_OUTPUT_BUF;
        let (status, used, written) = decompress(&mut self.inflater, block, &mut out, start, flags);
        match status {
            TINFLStatus::NeedsMoreInput | TINFLStatus::Done if used == block.len() => {}
            TINFLStatus::HasMoreOutput => return Err("header block too large".into()),
            other => return Err(format!("header block: inflate {other:?}")),
        }
        out.truncate(start + written);
        let plain = out[start..].to_vec();
        let keep = out.len().saturating_sub(WINDOW);
        out.drain(..keep);
        self.history = out;
        parse_pairs(&plain)
    }

    /// A header block of `pairs` (uncompressed deflate blocks in the zlib stream).
    pub fn encode(&mut self, pairs: &[(&str, &str)]) -> Vec<u8> {
        let mut plain = (pairs.len() as u32).to_be_bytes().to_vec();
        for (k, v) in pairs {
            plain.extend_from_slice(&(k.len() as u32).to_be_bytes());
            plain.extend_from_slice(k.as_bytes());
            plain.extend_from_slice(&(v.len() as u32).to_be_bytes());
            plain.extend_from_slice(v.as_bytes());
        }
        let mut out = Vec::new();
        if !self.wrote_header {
            self.wrote_header = true;
            out.extend_from_slice(&[0x78, 0x01]);
        }
        for chunk in plain.chunks(0xffff) {
            let len = chunk.len() as u16;
            out.push(0x00);
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(&(!len).to_le_bytes());
            out.extend_from_slice(chunk);
        }
        // The sync-flush marker (an empty stored block), as zlib's Z_SYNC_FLUSH ends a block:
        // an inflater that reads the next block header before handing out the data (Go's)
        // finds it in this frame instead of waiting for the next one.
        out.extend_from_slice(&[0x00, 0x00, 0x00, 0xff, 0xff]);
        out
    }

    /// A SYN_REPLY frame for `stream` with no headers.
    pub fn syn_reply(&mut self, stream: u32) -> Vec<u8> {
        let mut p = (stream & 0x7fff_ffff).to_be_bytes().to_vec();
        p.extend(self.encode(&[]));
        control(kind::SYN_REPLY, 0, &p)
    }
}

fn parse_pairs(b: &[u8]) -> Result<BTreeMap<String, String>, String> {
    let mut at = 0usize;
    let mut take = |n: usize| -> Result<&[u8], String> {
        let s = b.get(at..at + n).ok_or("truncated header block")?;
        at += n;
        Ok(s)
    };
    let be = |s: &[u8]| u32::from_be_bytes([s[0], s[1], s[2], s[3]]) as usize;
    let n = be(take(4)?);
    let mut out = BTreeMap::new();
    for _ in 0..n.min(1024) {
        let kl = be(take(4)?);
        let k = String::from_utf8_lossy(take(kl)?).to_ascii_lowercase();
        let vl = be(take(4)?);
        let v = String::from_utf8_lossy(take(vl)?).into_owned();
        out.insert(k, v);
    }
    Ok(out)
}

/// A SYN_STREAM's stream ID and header block.
pub fn syn_stream(payload: &[u8]) -> Result<(u32, &[u8]), String> {
    if payload.len() < 10 {
        return Err("short SYN_STREAM".into());
    }
    let id = u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]) & 0x7fff_ffff;
    Ok((id, &payload[10..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Header blocks compressed as spdystream does (zlib with the SPDY/3 dictionary, best
    /// compression, a sync flush after each block, one stream for the connection): the error
    /// and the data stream of port 8080, request 0 (made with Python's zlib, `zdict`).
    const PEER_BLOCKS: [&str; 2] = [
        "78f9e3c6a7c202253a703a2b294a4dcc851625aca9a0808614cb45e01c6061606100a4398b20d198094ade8c0600000000ffff",
        "c2aa19540e2512d60b000000ffff",
    ];

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn peer_header_blocks_inflate_with_the_dictionary_across_frames() {
        assert_eq!(DICTIONARY.len(), 1423);
        let mut c = HeaderCodec::default();
        let a = c.decode(&unhex(PEER_BLOCKS[0])).unwrap();
        assert_eq!(a["streamtype"], "error");
        assert_eq!(a["port"], "8080");
        assert_eq!(a["requestid"], "0");
        let b = c.decode(&unhex(PEER_BLOCKS[1])).unwrap();
        assert_eq!(b["streamtype"], "data");
        assert_eq!(b["port"], "8080");
        // garbage is an error, not a panic
        let mut g = HeaderCodec::default();
        assert!(g.decode(&[0x78, 0x01, 0xff, 0xff, 0xff]).is_err());
    }

    #[test]
    fn our_header_blocks_inflate_with_any_zlib() {
        let mut c = HeaderCodec::default();
        let a = c.encode(&[("streamtype", "data"), ("port", "80")]);
        let b = c.encode(&[("requestid", "1")]);
        // read back with the same codec logic (no dictionary: the header says so)
        let mut r = HeaderCodec::default();
        let pa = r.decode(&a).unwrap();
        assert_eq!(pa["streamtype"], "data");
        assert_eq!(pa["port"], "80");
        assert_eq!(r.decode(&b).unwrap()["requestid"], "1");
    }

    #[test]
    fn frames_round_trip() {
        let f = data_frame(5, FLAG_FIN, b"hey");
        let got = futures::executor::block_on(read_frame(&mut &f[..]))
            .unwrap()
            .unwrap();
        assert_eq!(
            got,
            Frame::Data {
                stream: 5,
                flags: FLAG_FIN,
                data: b"hey".to_vec()
            }
        );
        let p = ping_frame(&7u32.to_be_bytes());
        match futures::executor::block_on(read_frame(&mut &p[..]))
            .unwrap()
            .unwrap()
        {
            Frame::Control { kind, payload, .. } => {
                assert_eq!(kind, kind::PING);
                assert_eq!(payload, 7u32.to_be_bytes());
            }
            other => panic!("{other:?}"),
        }
        assert!(
            futures::executor::block_on(read_frame(&mut &[][..]))
                .unwrap()
                .is_none()
        );
    }
}
