use std::io::Cursor;

use proptest::prelude::*;

use super::*;

fn gradient(w: u32, h: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| image::Rgb([x as u8, y as u8, (x ^ y) as u8]))
}

#[test]
fn text_chunks_round_trip_and_image_still_decodes() {
    let img = gradient(17, 9);
    let texts = [
        (PARAMETERS_KEY, "a café\nSteps: 20, Seed: 1"),
        (SUMI_KEY, "{\"prompt\":\"猫\"}"),
    ];
    let png = encode_png(&img, &texts).unwrap();
    let chunks = read_text_chunks(Cursor::new(&png)).unwrap();
    assert_eq!(
        chunks,
        texts
            .iter()
            .map(|(k, t)| TextChunk {
                key: k.to_string(),
                text: t.to_string()
            })
            .collect::<Vec<_>>()
    );
    let decoded = image::load_from_memory(&png).unwrap().to_rgb8();
    assert_eq!(decoded, img);
}

#[test]
fn replacing_a_chunk_drops_every_old_one_and_keeps_the_rest() {
    let img = gradient(5, 3);
    let png = encode_png(
        &img,
        &[(SUMI_KEY, "old"), (PARAMETERS_KEY, "p"), (SUMI_KEY, "猫")],
    )
    .unwrap();
    let png = [png.as_slice(), b"tail"].concat();
    let new = replace_text_chunks(&png, &[(SUMI_KEY, "new")]).unwrap();
    let chunks = read_text_chunks(Cursor::new(&new)).unwrap();
    let keys: Vec<(&str, &str)> = chunks
        .iter()
        .map(|c| (c.key.as_str(), c.text.as_str()))
        .collect();
    assert_eq!(keys, [(SUMI_KEY, "new"), (PARAMETERS_KEY, "p")]);
    assert!(new.ends_with(b"tail"));
    check_chunks(&new).unwrap();
    assert_eq!(image::load_from_memory(&new).unwrap().to_rgb8(), img);
    assert_eq!(image_size(&new), Some((5, 3)));
    assert_eq!(image_size(b"\x89PNG"), None);
}

#[test]
fn latin1_text_goes_to_text_chunk_and_wide_text_to_itxt() {
    let png = encode_png(&gradient(2, 2), &[("a", "café"), ("b", "猫")]).unwrap();
    let find = |kind: &[u8]| png.windows(4).position(|w| w == kind);
    assert!(find(b"tEXt").unwrap() < find(b"iTXt").unwrap());
    assert!(find(b"iTXt").unwrap() < find(b"IDAT").unwrap());
}

#[test]
fn reads_compressed_chunks() {
    let body = "compressed parameters text, ".repeat(20);
    let packed = miniz_oxide::deflate::compress_to_vec_zlib(body.as_bytes(), 6);
    let mut ztxt = b"parameters\0\0".to_vec();
    ztxt.extend_from_slice(&packed);
    let mut itxt = b"sumi\0\x01\0en\0\0".to_vec();
    itxt.extend_from_slice(&packed);
    let mut png = encode_png(&gradient(2, 2), &[]).unwrap();
    let ihdr_end = 33;
    let mut chunks = Vec::new();
    for (kind, data) in [(b"zTXt", &ztxt), (b"iTXt", &itxt)] {
        chunks.extend_from_slice(&(data.len() as u32).to_be_bytes());
        chunks.extend_from_slice(kind);
        chunks.extend_from_slice(data);
        let mut h = crc32fast::Hasher::new();
        h.update(kind);
        h.update(data);
        chunks.extend_from_slice(&h.finalize().to_be_bytes());
    }
    png.splice(ihdr_end..ihdr_end, chunks);
    let found = read_text_chunks(Cursor::new(&png)).unwrap();
    assert_eq!(found.len(), 2);
    assert!(found.iter().all(|c| c.text == body));
}

#[test]
fn rejects_bad_crc_truncation_and_non_png() {
    let png = encode_png(&gradient(4, 4), &[(PARAMETERS_KEY, "hello")]).unwrap();
    let mut bad = png.clone();
    let pos = bad.windows(5).position(|w| w == b"hello").unwrap();
    bad[pos] = b'j';
    assert!(matches!(
        read_text_chunks(Cursor::new(&bad)),
        Err(PngMetaError::BadCrc(_))
    ));
    assert!(matches!(
        read_text_chunks(Cursor::new(&png[..pos])),
        Err(PngMetaError::Truncated)
    ));
    assert!(matches!(
        read_text_chunks(Cursor::new(b"GIF89a....")),
        Err(PngMetaError::NotPng)
    ));
}

#[test]
fn refuses_huge_declared_chunk_without_allocating() {
    let mut png = SIGNATURE.to_vec();
    png.extend_from_slice(&0x7fff_ffffu32.to_be_bytes());
    png.extend_from_slice(b"tEXt");
    assert!(matches!(
        read_text_chunks(Cursor::new(&png)),
        Err(PngMetaError::TooLarge(_))
    ));
    let mut png = SIGNATURE.to_vec();
    png.extend_from_slice(&0x00ff_ffffu32.to_be_bytes());
    png.extend_from_slice(b"IDAT");
    assert!(matches!(
        read_text_chunks(Cursor::new(&png)),
        Err(PngMetaError::Truncated)
    ));
}

#[test]
fn refuses_decompression_bombs() {
    let zeros = vec![b'a'; MAX_INFLATED + 1];
    let packed = miniz_oxide::deflate::compress_to_vec_zlib(&zeros, 9);
    assert!(packed.len() < 100_000);
    let mut data = b"parameters\0\0".to_vec();
    data.extend_from_slice(&packed);
    let mut png = encode_png(&gradient(1, 1), &[]).unwrap();
    let mut chunk = (data.len() as u32).to_be_bytes().to_vec();
    chunk.extend_from_slice(b"zTXt");
    chunk.extend_from_slice(&data);
    let mut h = crc32fast::Hasher::new();
    h.update(b"zTXt");
    h.update(&data);
    chunk.extend_from_slice(&h.finalize().to_be_bytes());
    png.splice(33..33, chunk);
    assert!(matches!(
        read_text_chunks(Cursor::new(&png)),
        Err(PngMetaError::Malformed(_))
    ));
}

#[test]
fn find_text_picks_the_key() {
    let png = encode_png(&gradient(1, 1), &[("x", "1"), (SUMI_KEY, "2")]).unwrap();
    assert_eq!(
        find_text(Cursor::new(&png), SUMI_KEY).unwrap().as_deref(),
        Some("2")
    );
    assert_eq!(find_text(Cursor::new(&png), "nope").unwrap(), None);
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = read_text_chunks(Cursor::new(&bytes));
        let mut with_sig = SIGNATURE.to_vec();
        with_sig.extend_from_slice(&bytes);
        let _ = read_text_chunks(Cursor::new(&with_sig));
    }

    #[test]
    fn mutated_pngs_never_panic(flips in proptest::collection::vec((0usize..400, any::<u8>()), 1..8)) {
        let mut png = encode_png(&gradient(3, 3), &[(PARAMETERS_KEY, "a: b, c"), (SUMI_KEY, "{}")]).unwrap();
        for (at, byte) in flips {
            let i = at % png.len();
            png[i] = byte;
        }
        let _ = read_text_chunks(Cursor::new(&png));
    }

    #[test]
    fn any_text_round_trips(key in "[a-zA-Z][a-zA-Z0-9 ]{0,30}", text in "\\PC{0,200}") {
        let png = encode_png(&gradient(1, 1), &[(&key, &text)]).unwrap();
        prop_assert_eq!(find_text(Cursor::new(&png), &key).unwrap(), Some(text));
    }
}
