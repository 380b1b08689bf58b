//! The write-ahead log: length- and CRC-framed records, replayed at start.
//!
//! Record layout (little endian): `len: u32 | crc32(payload): u32 | payload`,
//! where `payload = key_len: u16 | key | value`.

use std::fmt;

const HEADER: usize = 8;

/// Appends the framed record for one SET to `out`.
pub fn encode(key: &str, value: &str, out: &mut Vec<u8>) {
    let payload_len = 2 + key.len() + value.len();
    out.reserve(HEADER + payload_len);
    let start = out.len();
    out.extend_from_slice(&(payload_len as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&(key.len() as u16).to_le_bytes());
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(value.as_bytes());
    let crc = crc32fast::hash(&out[start + HEADER..]);
    out[start + 4..start + HEADER].copy_from_slice(&crc.to_le_bytes());
}

/// Where and why replay stopped before the end of the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRecord {
    pub offset: usize,
    pub reason: &'static str,
}

impl fmt::Display for BadRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at byte {}", self.reason, self.offset)
    }
}

/// What a replay found: the good records in order, and the first bad one.
#[derive(Debug, Default)]
pub struct Replay {
    pub records: Vec<(String, String)>,
    /// Bytes of the log that hold good records; the rest is damaged.
    pub good_len: usize,
    pub bad: Option<BadRecord>,
    /// The bad record has no valid record after it: the log's normal end
    /// after a crash mid-append (a torn tail), not corruption.
    pub torn_tail: bool,
}

/// Decodes records until the end or the first bad one (cut short, or a CRC
/// mismatch). As in PostgreSQL, SQLite, RocksDB or Redis
/// (`aof-load-truncated`), a bad record with nothing valid after it is the
/// end of the log; only damage followed by a valid record is corruption.
pub fn replay(log: &[u8]) -> Replay {
    let mut replay = Replay::default();
    let mut at = 0;
    while at < log.len() {
        match decode_one(&log[at..]) {
            Ok((key, value, len)) => {
                replay.records.push((key, value));
                at += len;
            }
            Err(reason) => {
                replay.bad = Some(BadRecord { offset: at, reason });
                break;
            }
        }
    }
    replay.good_len = at;
    replay.torn_tail = replay.bad.is_some() && !(at + 1..log.len()).any(|from| decode_one(&log[from..]).is_ok());
    replay
}

fn decode_one(bytes: &[u8]) -> Result<(String, String, usize), &'static str> {
    if bytes.len() < HEADER {
        return Err("torn record header");
    }
    let len = u32::from_le_bytes(bytes[0..4].try_into().unwrap()) as usize;
    let crc = u32::from_le_bytes(bytes[4..8].try_into().unwrap());
    let payload = bytes.get(HEADER..HEADER + len).ok_or("torn record (shorter than its length)")?;
    if crc32fast::hash(payload) != crc {
        return Err("checksum mismatch");
    }
    if len < 2 {
        return Err("record too short for its key length");
    }
    let key_len = u16::from_le_bytes([payload[0], payload[1]]) as usize;
    let key = payload.get(2..2 + key_len).ok_or("key longer than its record")?;
    let value = &payload[2 + key_len..];
    let key = std::str::from_utf8(key).map_err(|_| "key is not UTF-8")?;
    let value = std::str::from_utf8(value).map_err(|_| "value is not UTF-8")?;
    Ok((key.to_string(), value.to_string(), HEADER + len))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log_of(pairs: &[(&str, &str)]) -> Vec<u8> {
        let mut log = Vec::new();
        for (k, v) in pairs {
            encode(k, v, &mut log);
        }
        log
    }

    #[test]
    fn round_trips() {
        let log = log_of(&[("a", "1"), ("b", "22"), ("a", "333")]);
        let replay = replay(&log);
        assert_eq!(replay.records.len(), 3);
        assert_eq!(replay.records[2], ("a".into(), "333".into()));
        assert_eq!(replay.good_len, log.len());
        assert!(replay.bad.is_none());
    }

    #[test]
    fn a_torn_tail_stops_replay_at_the_last_whole_record() {
        let mut log = log_of(&[("a", "1"), ("b", "2")]);
        let whole = log_of(&[("a", "1")]).len();
        log.truncate(log.len() - 3);
        let replay = replay(&log);
        assert_eq!(replay.records, vec![("a".to_string(), "1".to_string())]);
        assert_eq!(replay.good_len, whole);
        assert_eq!(replay.bad.unwrap().offset, whole);
    }

    #[test]
    fn a_flipped_bit_is_caught_by_the_crc() {
        let mut log = log_of(&[("a", "1"), ("b", "2"), ("c", "3")]);
        let second = log_of(&[("a", "1")]).len();
        log[second + HEADER + 2] ^= 0x01;
        let replay = replay(&log);
        assert_eq!(replay.records.len(), 1);
        assert_eq!(replay.bad, Some(BadRecord { offset: second, reason: "checksum mismatch" }));
    }

    #[test]
    fn damage_is_corruption_only_if_a_valid_record_follows() {
        let log = log_of(&[("a", "1"), ("b", "2"), ("c", "3")]);
        // Cut inside the last record: a torn tail.
        let cut = replay(&log[..log.len() - 3]);
        assert_eq!((cut.records.len(), cut.bad.is_some(), cut.torn_tail), (2, true, true));
        // A flipped bit in the last record: nothing valid follows either.
        let mut last = log.clone();
        *last.last_mut().unwrap() ^= 1;
        assert!(replay(&last).torn_tail);
        // A flipped bit in the first record: two valid ones follow.
        let mut first = log.clone();
        first[HEADER + 1] ^= 1;
        let hurt = replay(&first);
        assert_eq!((hurt.records.len(), hurt.bad.is_some(), hurt.torn_tail), (0, true, false));
        assert!(!replay(&log).torn_tail, "a whole log has no tail to tear");
    }
}
