//! Python's character classes and number parsing, as A1111's prompt parser meets them through
//! `re` and `float()`: what counts as a space, a word character, a digit (any Unicode decimal
//! digit), and the number strings Python accepts.

/// Python's `\s` / `str.isspace`: Unicode White_Space plus U+001C..U+001F.
pub(super) fn py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Python's `\w`, approximately (Rust also counts a few marks and symbols as alphanumeric).
pub(super) fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// The zeros of the decimal-digit blocks (category Nd) of Python 3.10 (Unicode 13); ten digits each.
pub(super) const DIGIT_ZEROS: [u32; 65] = [
    0x30, 0x660, 0x6F0, 0x7C0, 0x966, 0x9E6, 0xA66, 0xAE6, 0xB66, 0xBE6, 0xC66, 0xCE6, 0xD66,
    0xDE6, 0xE50, 0xED0, 0xF20, 0x1040, 0x1090, 0x17E0, 0x1810, 0x1946, 0x19D0, 0x1A80, 0x1A90,
    0x1B50, 0x1BB0, 0x1C40, 0x1C50, 0xA620, 0xA8D0, 0xA900, 0xA9D0, 0xA9F0, 0xAA50, 0xABF0, 0xFF10,
    0x104A0, 0x10D30, 0x11066, 0x110F0, 0x11136, 0x111D0, 0x112F0, 0x11450, 0x114D0, 0x11650,
    0x116C0, 0x11730, 0x118E0, 0x11950, 0x11C50, 0x11D50, 0x11DA0, 0x16A60, 0x16B50, 0x1D7CE,
    0x1D7D8, 0x1D7E2, 0x1D7EC, 0x1D7F6, 0x1E140, 0x1E2F0, 0x1E950, 0x1FBF0,
];

/// A decimal digit's value as Python's `\d` and `float()` see it (`٣` and `３` are 3).
pub(super) fn py_digit(c: char) -> Option<u8> {
    let cp = u32::from(c);
    let zero = DIGIT_ZEROS[DIGIT_ZEROS.partition_point(|&z| z <= cp).checked_sub(1)?];
    u8::try_from(cp - zero).ok().filter(|&v| v < 10)
}

/// `s` as Python's `float()` and `int()` read it: trimmed, Unicode digits made ASCII, `_` between
/// digits dropped; `None` for other non-ASCII characters and misplaced `_`.
pub(super) fn py_number_ascii(s: &str) -> Option<String> {
    let chars: Vec<char> = s.trim_matches(py_space).chars().collect();
    let digit_at = |k: usize| chars.get(k).is_some_and(|&c| py_digit(c).is_some());
    let mut ascii = String::with_capacity(chars.len());
    for (k, &c) in chars.iter().enumerate() {
        if c == '_' {
            if k == 0 || !digit_at(k - 1) || !digit_at(k + 1) {
                return None;
            }
        } else if let Some(d) = py_digit(c) {
            ascii.push(char::from(b'0' + d));
        } else if c.is_ascii() {
            ascii.push(c);
        } else {
            return None;
        }
    }
    Some(ascii)
}

/// Python's `float(s)`; `None` where Python raises.
pub(super) fn py_float(s: &str) -> Option<f64> {
    py_number_ascii(s)?.parse().ok()
}

/// Python's `int(s)` within i64; `None` where Python raises (or past i64).
pub(super) fn py_int(s: &str) -> Option<i64> {
    let ascii = py_number_ascii(s)?;
    let digits = ascii.strip_prefix(['+', '-']).unwrap_or(&ascii);
    let ok = !digits.is_empty() && digits.bytes().all(|c| c.is_ascii_digit());
    ascii.parse().ok().filter(|_| ok)
}

/// First index at or after `i` of a byte in `set`, or the length.
pub(super) fn find_byte(b: &[u8], i: usize, set: &[u8]) -> usize {
    b[i..]
        .iter()
        .position(|c| set.contains(c))
        .map_or(b.len(), |off| i + off)
}

/// First byte index at or after `i` whose character does not satisfy `keep`, or the length.
pub(super) fn skip_chars(text: &str, i: usize, keep: impl Fn(char) -> bool) -> usize {
    let found = text[i..].char_indices().find(|&(_, c)| !keep(c));
    found.map_or(text.len(), |(off, _)| i + off)
}
