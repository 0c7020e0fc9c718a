//! Base64 (RFC 4648, standard alphabet, padded) in MIME lines, for generated attachments.

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Input bytes per MIME line: 57 bytes encode to the 76 characters RFC 2045 allows.
pub const BYTES_PER_LINE: usize = 57;

/// `data` in base64 with `=` padding, on one line.
pub fn encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// `data` in base64 as MIME body lines of at most 76 characters, each ending in CRLF.
pub fn encode_lines(data: &[u8]) -> String {
    let mut out = String::with_capacity(encoded_len(data.len()));
    for line in data.chunks(BYTES_PER_LINE) {
        out.push_str(&encode(line));
        out.push_str("\r\n");
    }
    out
}

/// The length of [`encode_lines`] for `n` input bytes.
pub fn encoded_len(n: usize) -> usize {
    let full = n / BYTES_PER_LINE;
    let rest = n % BYTES_PER_LINE;
    full * (76 + 2)
        + if rest == 0 {
            0
        } else {
            rest.div_ceil(3) * 4 + 2
        }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_4648_test_vectors() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(encode(plain.as_bytes()), encoded, "{plain:?}");
        }
        assert_eq!(encode(&[0xff, 0xfe, 0xfd]), "//79");
    }

    #[test]
    fn lines_are_76_characters_and_lengths_are_predicted() {
        let data: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        let text = encode_lines(&data);
        assert!(text.split("\r\n").all(|l| l.len() <= 76));
        assert_eq!(text.split("\r\n").next().unwrap().len(), 76);
        for n in [0, 1, 56, 57, 58, 114, 1000] {
            assert_eq!(encode_lines(&data[..n]).len(), encoded_len(n), "{n}");
        }
    }
}
