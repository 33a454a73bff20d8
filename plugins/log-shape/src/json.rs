//! JSON strings as nginx `log_format escape=json` writes them: `"` and `\`
//! escaped, control characters as `\n`, `\r`, `\t` or `\u00XX`, the rest
//! (UTF-8 included) as is. Most values have nothing to escape: they are
//! checked eight bytes at a time and copied whole.

/// `text` as a JSON string, quotes included.
pub fn string(text: &str, out: &mut String) {
    out.reserve(text.len() + 2);
    out.push('"');
    escaped(text, out);
    out.push('"');
}

/// `text` escaped for the inside of a JSON string (no quotes).
#[inline(always)]
pub fn escaped(text: &str, out: &mut String) {
    if has_escape(text.as_bytes()) {
        escaped_slowly(text, out);
    } else {
        out.push_str(text);
    }
}

const ONES: u64 = u64::from_le_bytes([0x01; 8]);
const HIGHS: u64 = u64::from_le_bytes([0x80; 8]);

/// The high bit of a byte is set where a byte of `word` needs escaping
/// (below 0x20, `"`, `\` or 0x7f) — exact for the word as a whole, though
/// not per byte (bit tricks, "hasless").
#[inline(always)]
fn escapes(word: u64) -> u64 {
    let below = |word: u64, n: u8| word.wrapping_sub(ONES * u64::from(n)) & !word;
    let equal = |word: u64, b: u8| below(word ^ (ONES * u64::from(b)), 1);
    (below(word, 0x20) | equal(word, b'"') | equal(word, b'\\') | equal(word, 0x7f)) & HIGHS
}

/// Whether any byte of `bytes` needs escaping. A few word loads whatever
/// the length (the short ends overlap), no loop over bytes.
#[inline(always)]
pub fn has_escape(bytes: &[u8]) -> bool {
    let len = bytes.len();
    if let Some(last) = bytes.last_chunk::<8>() {
        let (words, _) = bytes.as_chunks::<8>();
        let mut found = escapes(u64::from_le_bytes(*last));
        for word in words {
            found |= escapes(u64::from_le_bytes(*word));
        }
        found != 0
    } else if let (Some(first), Some(last)) = (bytes.first_chunk::<4>(), bytes.last_chunk::<4>()) {
        let word =
            u64::from(u32::from_le_bytes(*first)) | u64::from(u32::from_le_bytes(*last)) << 32;
        escapes(word) != 0
    } else if let (Some(&first), Some(&last)) = (bytes.first(), bytes.last()) {
        // One to three bytes; the rest of the word is a harmless 'A'.
        let word = u64::from(first)
            | u64::from(bytes[len / 2]) << 8
            | u64::from(last) << 16
            | u64::from_le_bytes(*b"\0\0\0AAAAA");
        escapes(word) != 0
    } else {
        false
    }
}

/// The bytes a JSON string must escape: `"`, `\`, controls and DEL.
const NEEDS_ESCAPE: [bool; 256] = {
    let mut table = [false; 256];
    let mut byte = 0;
    while byte < 0x20 {
        table[byte] = true;
        byte += 1;
    }
    table[b'"' as usize] = true;
    table[b'\\' as usize] = true;
    table[0x7f] = true;
    table
};

/// [`escaped`] for text that has something to escape.
#[cold]
fn escaped_slowly(text: &str, out: &mut String) {
    // Runs of bytes that need no escape are copied whole; every byte that
    // does is ASCII, so the slices always end on a char boundary.
    let bytes = text.as_bytes();
    let mut run = 0;
    for (at, &byte) in bytes.iter().enumerate() {
        if !NEEDS_ESCAPE[usize::from(byte)] {
            continue;
        }
        out.push_str(text.get(run..at).unwrap_or_default());
        match byte {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            byte => {
                out.push_str("\\u00");
                out.push(hex_digit(byte >> 4));
                out.push(hex_digit(byte & 0xf));
            }
        }
        run = at + 1;
    }
    out.push_str(text.get(run..).unwrap_or_default());
}

/// `0`-`9`, `a`-`f` for `n` < 16.
fn hex_digit(n: u8) -> char {
    char::from(if n < 10 {
        b'0' + n
    } else {
        b'a' + (n & 0xf) - 10
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The escaping char by char, as the line was first written.
    fn naive(text: &str) -> String {
        let mut out = String::from("\"");
        for c in text.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                    out.push_str(&format!("\\u{:04x}", c as u32))
                }
                c => out.push(c),
            }
        }
        out.push('"');
        out
    }

    #[test]
    fn every_escaped_byte_is_found_wherever_it_sits() {
        // The word-at-a-time check against a byte-by-byte one, for each
        // byte that needs escaping (and some that do not), at each offset
        // of strings of every length up to 20.
        for special in [
            '"', '\\', '\n', '\r', '\t', '\u{0}', '\u{1f}', '\u{7f}', ' ', '~', 'é', '\u{80}', '!',
            '#', '[', ']', '\u{ff}', '\u{20}', 'A',
        ] {
            for len in 1..=20 {
                for at in 0..len {
                    let text: String = (0..len)
                        .map(|i| if i == at { special } else { 'a' })
                        .collect();
                    let mut out = String::new();
                    string(&text, &mut out);
                    assert_eq!(out, naive(&text), "{special:?} at {at} of {len}");
                }
            }
        }
        let mut out = String::new();
        string("", &mut out);
        assert_eq!(out, "\"\"");
    }

    #[test]
    fn every_byte_value_alone_and_in_company() {
        for byte in 0..=0x7fu8 {
            let c = char::from(byte);
            for text in [
                c.to_string(),
                format!("{c}{c}"),
                format!("ab{c}"),
                format!("{c}bcdefgh"),
                format!("abcdefghijklmn{c}"),
            ] {
                let mut out = String::new();
                string(&text, &mut out);
                assert_eq!(out, naive(&text), "{byte:#x} in {text:?}");
                assert_eq!(
                    has_escape(text.as_bytes()),
                    naive(&text) != format!("\"{text}\"")
                );
            }
        }
        let text = "a\"b\\c\nd\u{1}é\u{7f}\r\t";
        let mut out = String::new();
        string(text, &mut out);
        assert_eq!(out, naive(text));
    }
}
