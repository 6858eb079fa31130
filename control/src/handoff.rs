//! Handing a socket back to the kernel. With `netcon-dp --loopback kernel`, a bind or connect
//! to a loopback address is answered with [`KERNEL_SOCKET`] in [`Reply::value`]: the preload
//! then makes a kernel socket, applies the options the program set (carried in the reply's
//! option bytes as [`OptionRecord`]s), puts it in place of the netcon socket under the same
//! fd number, and makes the call on it.
//!
//! [`Reply::value`]: crate::Reply::value

use crate::wire::OPT_MAX;

/// [`crate::Reply::value`] of a bind or connect the program must make on a kernel socket.
pub const KERNEL_SOCKET: i64 = 0x6b65_726e_656c;

/// Bytes before each option's value: level (i32), name (i32), value length (u16), little
/// endian.
const RECORD_HEADER_LEN: usize = 10;

/// One socket option as `setsockopt` takes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OptionRecord<'a> {
    pub level: i32,
    pub name: i32,
    pub value: &'a [u8],
}

/// Encodes `records` one after the other into `out`, which holds [`OPT_MAX`] bytes. Returns
/// the bytes used and how many records did not fit (they are left out whole).
pub fn encode_options<'a>(
    records: impl IntoIterator<Item = OptionRecord<'a>>,
    out: &mut [u8; OPT_MAX],
) -> (usize, usize) {
    let (mut used, mut left_out) = (0, 0);
    for record in records {
        let len = RECORD_HEADER_LEN + record.value.len();
        let Ok(value_len) = u16::try_from(record.value.len()) else {
            left_out += 1;
            continue;
        };
        if used + len > OPT_MAX {
            left_out += 1;
            continue;
        }
        let slot = &mut out[used..used + len];
        slot[0..4].copy_from_slice(&record.level.to_le_bytes());
        slot[4..8].copy_from_slice(&record.name.to_le_bytes());
        slot[8..10].copy_from_slice(&value_len.to_le_bytes());
        slot[10..].copy_from_slice(record.value);
        used += len;
    }
    (used, left_out)
}

/// Decodes what [`encode_options`] wrote. Stops at the first record that does not fit in
/// `bytes`, so malformed input yields only the whole records before it.
pub fn decode_options(bytes: &[u8]) -> impl Iterator<Item = OptionRecord<'_>> {
    let mut rest = bytes;
    std::iter::from_fn(move || {
        let header = rest.get(..RECORD_HEADER_LEN)?;
        let level = i32::from_le_bytes(header[0..4].try_into().expect("4 bytes"));
        let name = i32::from_le_bytes(header[4..8].try_into().expect("4 bytes"));
        let len = usize::from(u16::from_le_bytes([header[8], header[9]]));
        let value = rest.get(RECORD_HEADER_LEN..RECORD_HEADER_LEN + len)?;
        rest = &rest[RECORD_HEADER_LEN + len..];
        Some(OptionRecord { level, name, value })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(level: i32, name: i32, value: &[u8]) -> OptionRecord<'_> {
        OptionRecord { level, name, value }
    }

    #[test]
    fn records_round_trip() {
        let one = 1i32.to_ne_bytes();
        let linger = [1, 0, 0, 0, 0, 0, 0, 0];
        let records = [
            record(6, 1, &one),
            record(1, 13, &linger),
            record(0, 1, b""),
        ];
        let mut out = [0u8; OPT_MAX];
        let (used, left_out) = encode_options(records, &mut out);
        assert_eq!(used, 3 * RECORD_HEADER_LEN + 4 + 8);
        assert_eq!(left_out, 0);
        let decoded: Vec<_> = decode_options(&out[..used]).collect();
        assert_eq!(decoded, records);
    }

    #[test]
    fn records_beyond_the_buffer_left_out() {
        let value = [7u8; 100];
        let records = (0..3).map(|name| record(1, name, &value));
        let mut out = [0u8; OPT_MAX];
        let (used, left_out) = encode_options(records, &mut out);
        assert_eq!(used, 2 * (RECORD_HEADER_LEN + 100));
        assert_eq!(left_out, 1);
        assert_eq!(decode_options(&out[..used]).count(), 2);
    }

    #[test]
    fn truncated_input_yields_whole_records() {
        let one = 1i32.to_ne_bytes();
        let mut out = [0u8; OPT_MAX];
        let (used, _) = encode_options([record(6, 1, &one), record(6, 9, &one)], &mut out);
        for cut in 0..used {
            let whole = cut / (RECORD_HEADER_LEN + 4);
            assert_eq!(decode_options(&out[..cut]).count(), whole, "{cut} bytes");
        }
    }
}
