//! Reading and writing PNG text chunks (`tEXt`, `zTXt`, `iTXt`) without trusting the input.
//!
//! The reader walks chunk headers, checks every text chunk's bounds and CRC, skips image data
//! without reading it, and caps both chunk sizes and decompressed sizes.

use std::io::{self, Read, Seek, SeekFrom};

use image::{codecs::png::PngEncoder, ImageEncoder, RgbImage};

/// Key of A1111's text chunk.
pub const PARAMETERS_KEY: &str = "parameters";
/// Key of Sumi's lossless JSON chunk.
pub const SUMI_KEY: &str = "sumi";

/// The eight bytes every PNG starts with.
const SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A];
/// Largest text chunk this reader will load.
const MAX_TEXT_CHUNK: u32 = 16 * 1024 * 1024;
/// Largest decompressed text this reader will produce.
const MAX_INFLATED: usize = 16 * 1024 * 1024;
/// Most chunks walked before giving up (guards against endless tiny chunks).
const MAX_CHUNKS: usize = 1_000_000;

/// Why PNG text chunks could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum PngMetaError {
    /// The bytes do not start with the PNG signature.
    #[error(
        "not a PNG file (the PNG signature is missing); only PNG images carry generation settings"
    )]
    NotPng,
    /// The file ends inside a chunk.
    #[error(
        "the PNG file is truncated inside a chunk; the file is damaged or was not fully written"
    )]
    Truncated,
    /// A chunk's stored CRC does not match its contents.
    #[error("the PNG chunk {0} has a wrong checksum; the file is damaged")]
    BadCrc(String),
    /// A text chunk is larger than this reader accepts.
    #[error("a PNG text chunk of {0} bytes is larger than the 16 MiB limit; the file is damaged or not a generation image")]
    TooLarge(u32),
    /// A text chunk's layout is invalid.
    #[error("the PNG text chunk is malformed ({0}); the file is damaged")]
    Malformed(&'static str),
    /// Reading the file failed.
    #[error("could not read the PNG file: {0}")]
    Io(#[from] io::Error),
    /// Encoding the image failed.
    #[error("could not encode the image as PNG: {0}")]
    Encode(#[from] image::ImageError),
}

/// One decoded text chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextChunk {
    /// The chunk's keyword (e.g. `parameters`).
    pub key: String,
    /// The chunk's text.
    pub text: String,
}

/// Reads every text chunk of a PNG stream, in file order.
pub fn read_text_chunks<R: Read + Seek>(mut r: R) -> Result<Vec<TextChunk>, PngMetaError> {
    let start = r.stream_position()?;
    let end = r.seek(SeekFrom::End(0))?;
    r.seek(SeekFrom::Start(start))?;
    let mut sig = [0u8; 8];
    // A file shorter than the signature (e.g. empty) is no PNG, rather than a truncated one.
    if matches!(read_exact(&mut r, &mut sig), Err(PngMetaError::Truncated)) || sig != SIGNATURE {
        return Err(PngMetaError::NotPng);
    }
    let mut out = Vec::new();
    for _ in 0..MAX_CHUNKS {
        let mut header = [0u8; 8];
        read_exact(&mut r, &mut header)?;
        let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
        if len > i32::MAX as u32 {
            return Err(PngMetaError::Malformed("chunk length out of range"));
        }
        let kind: [u8; 4] = [header[4], header[5], header[6], header[7]];
        match &kind {
            b"IEND" => return Ok(out),
            b"tEXt" | b"zTXt" | b"iTXt" => {
                if len > MAX_TEXT_CHUNK {
                    return Err(PngMetaError::TooLarge(len));
                }
                let mut data = Vec::new();
                (&mut r).take(u64::from(len)).read_to_end(&mut data)?;
                if data.len() != len as usize {
                    return Err(PngMetaError::Truncated);
                }
                let mut crc = [0u8; 4];
                read_exact(&mut r, &mut crc)?;
                let mut hasher = crc32fast::Hasher::new();
                hasher.update(&kind);
                hasher.update(&data);
                if hasher.finalize() != u32::from_be_bytes(crc) {
                    return Err(PngMetaError::BadCrc(chunk_name(&kind)));
                }
                out.push(decode_text(&kind, &data)?);
            }
            _ => {
                let next = r.stream_position()? + u64::from(len) + 4;
                if next > end {
                    return Err(PngMetaError::Truncated);
                }
                r.seek(SeekFrom::Start(next))?;
            }
        }
    }
    Err(PngMetaError::Malformed("too many chunks"))
}

/// Checks that PNG bytes are a signature followed by whole chunks up to `IEND`, each with a
/// correct checksum; a damaged file is then reported in plain words before any decoder sees it.
pub fn check_chunks(bytes: &[u8]) -> Result<(), PngMetaError> {
    if bytes.len() < 8 || bytes[..8] != SIGNATURE {
        return Err(PngMetaError::NotPng);
    }
    let mut at = 8usize;
    for _ in 0..MAX_CHUNKS {
        let header = bytes.get(at..at + 8).ok_or(PngMetaError::Truncated)?;
        let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
        if len > i32::MAX as u32 {
            return Err(PngMetaError::Malformed("chunk length out of range"));
        }
        let kind = [header[4], header[5], header[6], header[7]];
        let body_end = (at + 8).saturating_add(len as usize);
        let data = bytes.get(at + 8..body_end).ok_or(PngMetaError::Truncated)?;
        let stored = bytes
            .get(body_end..body_end.saturating_add(4))
            .ok_or(PngMetaError::Truncated)?;
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&kind);
        hasher.update(data);
        if hasher.finalize().to_be_bytes() != stored {
            return Err(PngMetaError::BadCrc(chunk_name(&kind)));
        }
        if &kind == b"IEND" {
            return Ok(());
        }
        at = body_end + 4;
    }
    Err(PngMetaError::Malformed("too many chunks"))
}

/// A chunk type as text, with bytes that are not ASCII letters shown as `?`.
fn chunk_name(kind: &[u8; 4]) -> String {
    kind.iter()
        .map(|&b| {
            if b.is_ascii_alphabetic() {
                char::from(b)
            } else {
                '?'
            }
        })
        .collect()
}

/// Reads the text of the first chunk with keyword `key`, if any.
pub fn find_text<R: Read + Seek>(r: R, key: &str) -> Result<Option<String>, PngMetaError> {
    Ok(read_text_chunks(r)?
        .into_iter()
        .find(|c| c.key == key)
        .map(|c| c.text))
}

/// `read_exact` that reports a short read as a truncated PNG.
fn read_exact<R: Read>(r: &mut R, buf: &mut [u8]) -> Result<(), PngMetaError> {
    r.read_exact(buf).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => PngMetaError::Truncated,
        _ => PngMetaError::Io(e),
    })
}

/// Decodes the body of a `tEXt`, `zTXt` or `iTXt` chunk.
fn decode_text(kind: &[u8; 4], data: &[u8]) -> Result<TextChunk, PngMetaError> {
    let nul = data
        .iter()
        .position(|&b| b == 0)
        .ok_or(PngMetaError::Malformed("keyword not terminated"))?;
    if nul == 0 || nul > 79 {
        return Err(PngMetaError::Malformed("keyword length not 1-79 bytes"));
    }
    let key = latin1(&data[..nul]);
    let rest = &data[nul + 1..];
    let text = match kind {
        b"tEXt" => latin1(rest),
        b"zTXt" => {
            let (&method, body) = rest
                .split_first()
                .ok_or(PngMetaError::Malformed("zTXt without compression method"))?;
            if method != 0 {
                return Err(PngMetaError::Malformed("unknown compression method"));
            }
            latin1(&inflate(body)?)
        }
        _ => {
            if rest.len() < 2 {
                return Err(PngMetaError::Malformed("iTXt header too short"));
            }
            let (flag, method) = (rest[0], rest[1]);
            let after_lang = skip_nul_terminated(&rest[2..])?;
            let body = skip_nul_terminated(after_lang)?;
            let bytes = match (flag, method) {
                (0, _) => body.to_vec(),
                (1, 0) => inflate(body)?,
                _ => return Err(PngMetaError::Malformed("unknown iTXt compression")),
            };
            String::from_utf8(bytes)
                .map_err(|_| PngMetaError::Malformed("iTXt text is not UTF-8"))?
        }
    };
    Ok(TextChunk { key, text })
}

/// Returns what follows the first NUL byte.
fn skip_nul_terminated(data: &[u8]) -> Result<&[u8], PngMetaError> {
    let nul = data
        .iter()
        .position(|&b| b == 0)
        .ok_or(PngMetaError::Malformed("iTXt field not terminated"))?;
    Ok(&data[nul + 1..])
}

/// Decompresses zlib data, refusing to produce more than [`MAX_INFLATED`] bytes.
fn inflate(data: &[u8]) -> Result<Vec<u8>, PngMetaError> {
    miniz_oxide::inflate::decompress_to_vec_zlib_with_limit(data, MAX_INFLATED)
        .map_err(|_| PngMetaError::Malformed("compressed text is corrupt or too large"))
}

/// Decodes ISO-8859-1 bytes (PNG's `tEXt` encoding).
fn latin1(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| char::from(b)).collect()
}

/// Encodes an RGB image as PNG with the given text chunks placed before the image data.
///
/// Text that fits ISO-8859-1 goes into `tEXt` (as A1111 writes it); other text into `iTXt` (UTF-8).
pub fn encode_png(img: &RgbImage, texts: &[(&str, &str)]) -> Result<Vec<u8>, PngMetaError> {
    let mut plain = Vec::new();
    PngEncoder::new(&mut plain).write_image(
        img.as_raw(),
        img.width(),
        img.height(),
        image::ExtendedColorType::Rgb8,
    )?;
    insert_text_chunks(&plain, texts)
}

/// Returns a copy of a PNG with text chunks added right after its header chunk.
pub fn insert_text_chunks(png: &[u8], texts: &[(&str, &str)]) -> Result<Vec<u8>, PngMetaError> {
    // Signature (8) + IHDR chunk (4 length + 4 type + 13 data + 4 CRC) = 33 bytes.
    const AFTER_IHDR: usize = 33;
    if png.len() < 8 || png[..8] != SIGNATURE {
        return Err(PngMetaError::NotPng);
    }
    if png.len() < AFTER_IHDR || &png[8..16] != b"\0\0\0\x0dIHDR" {
        return Err(PngMetaError::Malformed(
            "the PNG does not start with a 13-byte IHDR chunk",
        ));
    }
    let extra: usize = texts.iter().map(|t| t.0.len() + t.1.len() + 32).sum();
    let mut out = Vec::with_capacity(png.len() + extra);
    out.extend_from_slice(&png[..AFTER_IHDR]);
    for (key, text) in texts {
        write_text_chunk(&mut out, key, text)?;
    }
    out.extend_from_slice(&png[AFTER_IHDR..]);
    Ok(out)
}

/// A copy of a PNG whose text chunks with these keys are replaced by the given texts (put
/// right after the header chunk); other chunks, and anything after `IEND`, are kept as they are.
pub fn replace_text_chunks(png: &[u8], texts: &[(&str, &str)]) -> Result<Vec<u8>, PngMetaError> {
    let keys: Vec<&str> = texts.iter().map(|t| t.0).collect();
    let mut kept = Vec::with_capacity(png.len());
    kept.extend_from_slice(png.get(..8).ok_or(PngMetaError::NotPng)?);
    let mut at = 8usize;
    while let Some(header) = png.get(at..at + 8) {
        let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let end = (at + 12).saturating_add(len);
        let Some(chunk) = png.get(at..end) else { break };
        let kind = &header[4..8];
        let is_text = matches!(kind, b"tEXt" | b"zTXt" | b"iTXt");
        let key = chunk[8..8 + len]
            .split(|&b| b == 0)
            .next()
            .unwrap_or_default();
        if !(is_text && keys.iter().any(|k| k.as_bytes() == key)) {
            kept.extend_from_slice(chunk);
        }
        at = end;
        if kind == b"IEND" {
            break;
        }
    }
    kept.extend_from_slice(&png[at.min(png.len())..]);
    insert_text_chunks(&kept, texts)
}

/// Width and height from a PNG's header chunk, when the bytes start with one.
pub fn image_size(png: &[u8]) -> Option<(u32, u32)> {
    if png.get(..8)? != SIGNATURE || png.get(12..16)? != b"IHDR" {
        return None;
    }
    let word = |at: usize| Some(u32::from_be_bytes(png.get(at..at + 4)?.try_into().ok()?));
    Some((word(16)?, word(20)?))
}

/// Appends one text chunk (`tEXt` when the text is ISO-8859-1 without NUL, else `iTXt`).
fn write_text_chunk(out: &mut Vec<u8>, key: &str, text: &str) -> Result<(), PngMetaError> {
    if key.is_empty() || key.len() > 79 || !key.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Err(PngMetaError::Malformed(
            "keyword must be 1-79 printable ASCII bytes",
        ));
    }
    let mut data = Vec::with_capacity(key.len() + text.len() + 8);
    data.extend_from_slice(key.as_bytes());
    data.push(0);
    let latin1_ok = text.chars().all(|c| (c as u32) <= 0xFF && c != '\0');
    let kind: &[u8; 4] = if latin1_ok {
        data.extend(text.chars().map(|c| c as u8));
        b"tEXt"
    } else {
        // Compression flag 0, method 0, empty language tag, empty translated keyword.
        data.extend_from_slice(&[0, 0, 0, 0]);
        data.extend_from_slice(text.as_bytes());
        b"iTXt"
    };
    let len = u32::try_from(data.len())
        .ok()
        .filter(|&l| l <= MAX_TEXT_CHUNK)
        .ok_or(PngMetaError::TooLarge(u32::MAX))?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(kind);
    out.extend_from_slice(&data);
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(kind);
    hasher.update(&data);
    out.extend_from_slice(&hasher.finalize().to_be_bytes());
    Ok(())
}

#[cfg(test)]
mod tests;
