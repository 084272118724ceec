//! The zip archive `torch.save` writes since PyTorch 1.6: its entries by name, read from the
//! central directory with every offset and length checked against the file. Only stored
//! (uncompressed) entries are accepted, as torch writes them.

use std::collections::HashMap;

/// Why an archive cannot be read.
#[derive(Debug)]
pub enum ZipError {
    /// The archive is damaged or cut short.
    Corrupt(String),
    /// The archive uses a feature torch does not write (compression, zip64).
    Unsupported(String),
}

/// The entries of a zip archive by name; only stored (uncompressed) entries are accepted.
pub fn entries(bytes: &[u8]) -> Result<HashMap<String, &[u8]>, ZipError> {
    let from = bytes.len().saturating_sub(22 + 0xffff);
    let mut tail = (from..bytes.len().saturating_sub(21)).rev();
    let Some(end) = tail.find(|&i| le(bytes, i, 4) == Some(0x0605_4b50)) else {
        return Err(ZipError::Corrupt(
            "no end record (the file is cut short)".into(),
        ));
    };
    // The end record lies at least 22 bytes before the end, so its fields are all there.
    let field = |at: usize, n: usize| le(bytes, end + at, n).unwrap_or(0) as usize;
    let (count, size, offset) = (field(10, 2), field(12, 4), field(16, 4));
    // torch.save also writes a zip64 end record, but needs it only past 4 GiB.
    if count == 0xffff || size == 0xffff_ffff || offset == 0xffff_ffff {
        return Err(ZipError::Unsupported(
            "a zip64 archive (over 4 GiB or 65535 entries)".into(),
        ));
    }
    let cd = bytes
        .get(offset..offset.saturating_add(size))
        .filter(|cd| count <= cd.len() / 46);
    let cd = cd.ok_or_else(|| ZipError::Corrupt("the central directory is cut short".into()))?;
    let mut entries = HashMap::new();
    let mut at = 0;
    for _ in 0..count {
        let (name, data, next) = entry(bytes, cd, at)?;
        entries.insert(name, data);
        at = next;
    }
    Ok(entries)
}

/// The central directory record at `cd[at..]`: (name, data, offset of the next record).
fn entry<'a>(bytes: &'a [u8], cd: &[u8], at: usize) -> Result<(String, &'a [u8], usize), ZipError> {
    let head = cd
        .get(at..at + 46)
        .filter(|h| le(h, 0, 4) == Some(0x0201_4b50));
    let head =
        head.ok_or_else(|| ZipError::Corrupt("a damaged central directory record".into()))?;
    let field = |at: usize, n: usize| le(head, at, n).unwrap_or(0) as usize;
    let name_end = at + 46 + field(28, 2);
    let name = cd.get(at + 46..name_end);
    let name =
        String::from_utf8_lossy(name.ok_or_else(|| ZipError::Corrupt("a cut entry name".into()))?);
    let next = name_end + field(30, 2) + field(32, 2);
    if field(10, 2) != 0 || field(8, 2) & 1 != 0 {
        return Err(ZipError::Unsupported(format!(
            "the compressed or encrypted zip entry `{name}` (torch.save stores entries as \
             they are, so another tool repacked this file)"
        )));
    }
    // The local header repeats the name and has its own extra field (torch pads it there).
    let local = field(42, 4);
    if le(bytes, local, 4) != Some(0x0403_4b50) {
        return Err(ZipError::Corrupt(format!("`{name}` has no local header")));
    }
    let skip = |at: usize| le(bytes, local + at, 2).unwrap_or(0) as usize;
    let start = local + 30 + skip(26) + skip(28);
    let Some(data) = bytes.get(start..start.saturating_add(field(24, 4))) else {
        return Err(ZipError::Corrupt(format!("`{name}` lies outside the file")));
    };
    // torch.save writes a checksum of 0 when told not to compute them.
    let crc = field(16, 4) as u32;
    if crc != 0 && crc32(data) != crc {
        return Err(ZipError::Corrupt(format!("`{name}` fails its checksum")));
    }
    Ok((name.into_owned(), data, next))
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xedb8_8320 & (crc & 1).wrapping_neg());
        }
    }
    !crc
}

/// The `n`-byte little-endian unsigned integer at `bytes[at..]`, if it is all there.
pub fn le(bytes: &[u8], at: usize, n: usize) -> Option<u64> {
    let b = bytes.get(at..at.checked_add(n)?)?;
    Some(b.iter().rev().fold(0u64, |v, &x| (v << 8) | x as u64))
}
