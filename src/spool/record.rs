//! The spool's record format, pure: length (u32 LE), CRC-32 of the payload (u32 LE), payload.
//! Decoding resynchronises after damage: bytes that do not form a valid record are skipped
//! up to the next offset where one does, and reported, so that one bad stretch never hides
//! the acknowledged records after it.

/// Largest payload a record may claim: a damaged length beyond it is not believed.
pub const MAX_RECORD: usize = 64 << 20;

/// Encodes one record.
pub fn encode(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 8);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// What a file holds.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Decoded {
    pub records: Vec<Vec<u8>>,
    /// Bytes that belonged to no valid record.
    pub skipped: usize,
    /// Where the last valid record ends: appends may continue from here.
    pub valid_end: usize,
}

/// The record starting at `at`, if a whole and valid one does: its payload range.
fn record_at(bytes: &[u8], at: usize) -> Option<std::ops::Range<usize>> {
    let head = bytes.get(at..at + 8)?;
    let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
    let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
    // Herald never writes an empty record: zeros (a file extended by a crash) are not one.
    if len == 0 || len > MAX_RECORD {
        return None;
    }
    let range = at + 8..at + 8 + len;
    let payload = bytes.get(range.clone())?;
    (crc32fast::hash(payload) == crc).then_some(range)
}

/// Decodes every valid record, skipping damaged stretches.
pub fn decode(bytes: &[u8]) -> Decoded {
    let mut out = Decoded::default();
    let mut at = 0;
    while at < bytes.len() {
        match record_at(bytes, at) {
            Some(r) => {
                out.records.push(bytes[r.clone()].to_vec());
                at = r.end;
                out.valid_end = at;
            }
            None => {
                // Resynchronise: the next offset where a valid record starts.
                let next = (at + 1..bytes.len()).find(|&i| record_at(bytes, i).is_some());
                let to = next.unwrap_or(bytes.len());
                out.skipped += to - at;
                at = to;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(records: &[&[u8]]) -> Vec<u8> {
        records.iter().flat_map(|r| encode(r)).collect()
    }

    #[test]
    fn records_round_trip() {
        let d = decode(&file(&[b"one", b"two"]));
        assert_eq!(d.records, vec![b"one".to_vec(), b"two".to_vec()]);
        assert_eq!(d.skipped, 0);
        assert_eq!(d.valid_end, 2 * 8 + 6);
        assert_eq!(decode(&[]), Decoded::default());
    }

    #[test]
    fn a_torn_tail_is_skipped_and_the_valid_end_is_where_appends_resume() {
        let whole = file(&[b"one", b"two"]);
        for cut in 1..=(8 + 3) {
            let d = decode(&whole[..whole.len() - cut]);
            assert_eq!(d.records, vec![b"one".to_vec()], "cut {cut}");
            assert_eq!(d.valid_end, 11);
            assert_eq!(d.skipped, whole.len() - cut - 11);
        }
    }

    #[test]
    fn records_after_a_fragment_are_found_again() {
        // A write cut short (ENOSPC, a crash) in the middle, then more acknowledged records.
        let mut bytes = file(&[b"first"]);
        bytes.extend_from_slice(&encode(b"lost in the middle")[..10]);
        bytes.extend(file(&[b"after-1", b"after-2"]));
        let d = decode(&bytes);
        assert_eq!(
            d.records,
            vec![b"first".to_vec(), b"after-1".to_vec(), b"after-2".to_vec()]
        );
        assert_eq!(d.skipped, 10);
        assert_eq!(d.valid_end, bytes.len());
    }

    #[test]
    fn a_flipped_byte_costs_only_its_record() {
        let mut bytes = file(&[b"aaaa", b"bbbb", b"cccc"]);
        bytes[12 + 8 + 1] ^= 0x40; // inside "bbbb"
        let d = decode(&bytes);
        assert_eq!(d.records, vec![b"aaaa".to_vec(), b"cccc".to_vec()]);
        assert_eq!(d.skipped, 12);
    }

    #[test]
    fn zeros_are_not_records() {
        let mut bytes = file(&[b"ok"]);
        bytes.extend_from_slice(&[0u8; 64]);
        let d = decode(&bytes);
        assert_eq!(d.records, vec![b"ok".to_vec()]);
        assert_eq!((d.skipped, d.valid_end), (64, 10));
    }

    #[test]
    fn an_absurd_length_is_not_believed() {
        let mut bytes = vec![0xff, 0xff, 0xff, 0x7f, 0, 0, 0, 0];
        bytes.extend(file(&[b"ok"]));
        let d = decode(&bytes);
        assert_eq!(d.records, vec![b"ok".to_vec()]);
        assert_eq!(d.skipped, 8);
    }
}
