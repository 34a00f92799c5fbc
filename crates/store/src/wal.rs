//! The write-ahead log of the redb backend: makes a batch durable with one sequential
//! `fdatasync`, so redb can commit it without its own (slower, scattered) sync.
//!
//! # Format
//!
//! One preallocated, zero-filled file next to the store (`<store>.wal`). Records are appended
//! from offset 0: `magic u32 | payload length u32 | crc32(payload) u32 | payload`, all little
//! endian. A payload is one committed batch: its writes as (revision, key, tombstone or
//! (create_revision, value)), in revision order.
//!
//! # Rules
//!
//! * A batch is acknowledged only after its record is written and `fdatasync`ed.
//! * A checkpoint (a durable redb commit of everything so far) resets the append offset to 0;
//!   later records overwrite the old ones.
//! * Replay reads records from offset 0 and applies each whose first revision is exactly the
//!   next one the durable redb file lacks; it stops at the first record that is torn (bad magic
//!   or checksum), stale (older revisions, left from before a checkpoint) or not contiguous.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::Revision;

const MAGIC: u32 = 0x5044_574c; // "PDWL"
const HEADER: usize = 12;
/// The default preallocated size of the log; a checkpoint happens before it fills.
pub(crate) const CAPACITY: u64 = 64 * 1024 * 1024;

/// One write of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Effect {
    pub rev: Revision,
    pub key: String,
    /// `None` for a delete, else (create_revision, value).
    pub put: Option<(Revision, Vec<u8>)>,
}

pub(crate) struct Wal {
    file: File,
    offset: u64,
    capacity: u64,
}

fn crc32(data: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut table = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 {
                    0xedb8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
                k += 1;
            }
            table[i] = c;
            i += 1;
        }
        table
    };
    let mut c = 0xffff_ffffu32;
    for &b in data {
        c = TABLE[((c ^ u32::from(b)) & 0xff) as usize] ^ (c >> 8);
    }
    c ^ 0xffff_ffff
}

/// Encodes a batch.
pub(crate) fn encode(effects: &[Effect]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(effects.len() as u32).to_le_bytes());
    for e in effects {
        out.extend_from_slice(&e.rev.to_le_bytes());
        out.extend_from_slice(&(e.key.len() as u32).to_le_bytes());
        out.extend_from_slice(e.key.as_bytes());
        match &e.put {
            None => out.push(0),
            Some((create, value)) => {
                out.push(1);
                out.extend_from_slice(&create.to_le_bytes());
                out.extend_from_slice(&(value.len() as u32).to_le_bytes());
                out.extend_from_slice(value);
            }
        }
    }
    out
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4)?.try_into().ok().map(u32::from_le_bytes)
    }
    fn i64(&mut self) -> Option<i64> {
        self.take(8)?.try_into().ok().map(i64::from_le_bytes)
    }
}

/// Decodes a batch; `None` if it is malformed.
fn decode(payload: &[u8]) -> Option<Vec<Effect>> {
    let mut r = Reader(payload);
    let n = r.u32()? as usize;
    let mut out = Vec::with_capacity(n.min(4096));
    for _ in 0..n {
        let rev = r.i64()?;
        let klen = r.u32()? as usize;
        let key = String::from_utf8(r.take(klen)?.to_vec()).ok()?;
        let put = match r.take(1)?.first()? {
            0 => None,
            1 => {
                let create = r.i64()?;
                let vlen = r.u32()? as usize;
                Some((create, r.take(vlen)?.to_vec()))
            }
            _ => return None,
        };
        out.push(Effect { rev, key, put });
    }
    r.0.is_empty().then_some(out)
}

impl Wal {
    /// Opens (or creates and preallocates) the log and returns it with the batches to replay
    /// onto a durable store at revision `durable`.
    pub(crate) fn open(
        path: &Path,
        durable: Revision,
        capacity: u64,
    ) -> io::Result<(Wal, Vec<Vec<Effect>>)> {
        let file = crate::private_file(path)?;
        let len = file.metadata()?.len();
        let mut replay = Vec::new();
        let mut next = durable + 1;
        let mut offset = 0u64;
        let mut header = [0u8; HEADER];
        while offset + HEADER as u64 <= len {
            file.read_exact_at(&mut header, offset)?;
            let mut r = Reader(&header);
            let (Some(magic), Some(plen), Some(crc)) = (r.u32(), r.u32(), r.u32()) else {
                break;
            };
            if magic != MAGIC || offset + (HEADER as u64) + u64::from(plen) > len {
                break;
            }
            let mut payload = vec![0u8; plen as usize];
            file.read_exact_at(&mut payload, offset + HEADER as u64)?;
            if crc32(&payload) != crc {
                break;
            }
            let Some(effects) = decode(&payload) else {
                break;
            };
            match effects.first() {
                Some(first) if first.rev == next => {
                    next = effects.last().map_or(next, |e| e.rev + 1);
                    replay.push(effects);
                }
                _ => break,
            }
            offset += HEADER as u64 + u64::from(plen);
        }
        // Preallocate with real zeros, so appends overwrite allocated blocks.
        if len < capacity {
            let zeros = vec![0u8; 1024 * 1024];
            let mut at = len;
            while at < capacity {
                let n = usize::try_from(capacity - at).map_or(zeros.len(), |n| n.min(zeros.len()));
                file.write_all_at(&zeros[..n], at)?;
                at += n as u64;
            }
            file.sync_all()?;
        }
        Ok((
            Wal {
                file,
                offset: 0,
                capacity,
            },
            replay,
        ))
    }

    /// Whether a payload of `len` bytes still fits before a checkpoint is due.
    pub(crate) fn fits(&self, len: usize) -> bool {
        self.offset + (HEADER + len) as u64 <= self.capacity
    }

    /// Appends one record and makes it durable.
    pub(crate) fn append(&mut self, payload: &[u8]) -> io::Result<()> {
        let mut record = Vec::with_capacity(HEADER + payload.len());
        record.extend_from_slice(&MAGIC.to_le_bytes());
        record.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        record.extend_from_slice(&crc32(payload).to_le_bytes());
        record.extend_from_slice(payload);
        self.file.write_all_at(&record, self.offset)?;
        self.file.sync_data()?;
        self.offset += record.len() as u64;
        Ok(())
    }

    /// Where the next record goes.
    pub(crate) fn offset(&self) -> u64 {
        self.offset
    }

    /// Takes back the records from `offset` on (their batch could not be committed): the
    /// header there is zeroed and synced, so a replay stops before it, and the next record
    /// is written there.
    pub(crate) fn undo(&mut self, offset: u64) -> io::Result<()> {
        self.file.write_all_at(&[0u8; HEADER], offset)?;
        self.file.sync_data()?;
        self.offset = offset;
        Ok(())
    }

    /// Starts over after a checkpoint made every logged batch durable in the store.
    pub(crate) fn reset(&mut self) {
        self.offset = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn effects(first: Revision, n: i64) -> Vec<Effect> {
        (first..first + n)
            .map(|rev| Effect {
                rev,
                key: format!("/k/{rev}"),
                put: (rev % 3 != 0).then(|| (rev - 1, vec![rev as u8; rev as usize])),
            })
            .collect()
    }

    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
    }

    #[test]
    fn replay_takes_contiguous_records_and_stops_at_stale_or_torn_ones() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.wal");
        let (mut wal, replay) = Wal::open(&path, 1, CAPACITY).unwrap();
        assert!(replay.is_empty());
        wal.append(&encode(&effects(2, 3))).unwrap();
        wal.append(&encode(&effects(5, 2))).unwrap();
        wal.append(&encode(&effects(7, 4))).unwrap();
        drop(wal);
        // Everything after revision 1 is replayed.
        let (_, replay) = Wal::open(&path, 1, CAPACITY).unwrap();
        assert_eq!(replay, vec![effects(2, 3), effects(5, 2), effects(7, 4)]);
        // A store that is durable up to 4 needs the records from 5: the first is older, so
        // nothing is replayed (a checkpoint covered it and the log starts a new generation).
        let (mut wal, replay) = Wal::open(&path, 4, CAPACITY).unwrap();
        assert!(replay.is_empty());
        // After a checkpoint at 10, new records overwrite the old generation from offset 0.
        wal.reset();
        wal.append(&encode(&effects(11, 1))).unwrap();
        drop(wal);
        let (_, replay) = Wal::open(&path, 10, CAPACITY).unwrap();
        assert_eq!(replay, vec![effects(11, 1)]);
        // A torn record (bad checksum) ends the replay.
        let (mut wal, _) = Wal::open(&path, 10, CAPACITY).unwrap();
        wal.append(&encode(&effects(11, 1))).unwrap();
        let at = wal.offset;
        wal.append(&encode(&effects(12, 2))).unwrap();
        drop(wal);
        let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        file.write_all_at(&[0xff, 0xee], at + HEADER as u64 + 5)
            .unwrap();
        let (_, replay) = Wal::open(&path, 10, CAPACITY).unwrap();
        assert_eq!(replay, vec![effects(11, 1)]);
    }
}
