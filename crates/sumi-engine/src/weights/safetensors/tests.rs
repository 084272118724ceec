use super::*;

fn save(path: &Path, tensors: &[(&str, Tensor)]) {
    let map: HashMap<String, Tensor> = tensors
        .iter()
        .map(|(n, t)| (n.to_string(), t.clone()))
        .collect();
    candle_core::safetensors::save(&map, path).unwrap();
}

fn values(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

fn err_text(r: candle_core::Result<Tensor>) -> String {
    match r {
        Ok(t) => panic!("expected an error, got a tensor of shape {:?}", t.shape()),
        Err(e) => e.to_string(),
    }
}

/// Values that are not exactly representable in f16/bf16, so conversions matter.
fn sample(shape: (usize, usize), seed: f32) -> Tensor {
    let n = shape.0 * shape.1;
    let v: Vec<f32> = (0..n)
        .map(|i| ((i as f32 + seed) * 0.731).sin() * 3.7 + 1e-3 * i as f32)
        .collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

#[test]
fn f32_f16_bf16_shards_load_to_candles_values() {
    let dir = tempfile::tempdir().unwrap();
    let a = sample((3, 5), 0.0);
    let b = sample((4, 7), 1.0).to_dtype(DType::F16).unwrap();
    let c = sample((2, 9), 2.0).to_dtype(DType::BF16).unwrap();
    let d = sample((1, 6), 3.0).to_dtype(DType::F16).unwrap();
    let first = dir.path().join("one.safetensors");
    let second = dir.path().join("two.safetensors");
    save(&first, &[("a", a), ("b", b)]);
    save(&second, &[("c", c), ("nested.d", d)]);
    let files = vec![first.clone(), second.clone()];
    let mut reference = candle_core::safetensors::load(&first, &Device::Cpu).unwrap();
    reference.extend(candle_core::safetensors::load(&second, &Device::Cpu).unwrap());

    let vb = var_builder(&files, DType::F32, &Device::Cpu).unwrap();
    for (name, shape) in [
        ("a", (3, 5)),
        ("b", (4, 7)),
        ("c", (2, 9)),
        ("nested.d", (1, 6)),
    ] {
        let got = vb.get(shape, name).unwrap();
        assert_eq!(got.dtype(), DType::F32, "{name}");
        assert_eq!(got.dims(), &[shape.0, shape.1], "{name}");
        let want = reference[name].to_dtype(DType::F32).unwrap();
        assert_eq!(values(&got), values(&want), "{name}");
    }
    assert_eq!(values(&vb.pp("nested").get((1, 6), "d").unwrap()), {
        values(&reference["nested.d"].to_dtype(DType::F32).unwrap())
    });

    // Other target types go through candle's conversion from the stored type.
    let vb16 = var_builder(&files, DType::F16, &Device::Cpu).unwrap();
    for (name, shape) in [("a", (3, 5)), ("b", (4, 7)), ("c", (2, 9))] {
        let got = vb16.get(shape, name).unwrap();
        assert_eq!(got.dtype(), DType::F16);
        let want = reference[name].to_dtype(DType::F16).unwrap();
        assert_eq!(
            values(&got.to_dtype(DType::F32).unwrap()),
            values(&want.to_dtype(DType::F32).unwrap()),
            "{name}"
        );
    }
    let bf = SafetensorsFiles::open(&files).unwrap();
    let got = bf.load("b", DType::BF16, &Device::Cpu).unwrap();
    let want = reference["b"].to_dtype(DType::BF16).unwrap();
    assert_eq!(
        values(&got.to_dtype(DType::F32).unwrap()),
        values(&want.to_dtype(DType::F32).unwrap())
    );
}

#[test]
fn same_values_as_candles_mmap_builder() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.safetensors");
    let w = sample((8, 3), 5.0).to_dtype(DType::F16).unwrap();
    let v = sample((2, 2), 6.0);
    save(&path, &[("w", w), ("v", v)]);
    let files = vec![path];
    let ours = var_builder(&files, DType::F32, &Device::Cpu).unwrap();
    // SAFETY: the temp file is not modified while mapped.
    let theirs =
        unsafe { VarBuilder::from_mmaped_safetensors(&files, DType::F32, &Device::Cpu) }.unwrap();
    for (name, shape) in [("w", (8, 3)), ("v", (2, 2))] {
        assert_eq!(
            values(&ours.get(shape, name).unwrap()),
            values(&theirs.get(shape, name).unwrap()),
            "{name}"
        );
    }
}

#[test]
fn missing_tensor_and_wrong_shape_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.safetensors");
    save(&path, &[("w", sample((4, 6), 0.0))]);
    let vb = var_builder(&[path], DType::F32, &Device::Cpu).unwrap();
    assert!(vb.contains_tensor("w"));
    assert!(!vb.contains_tensor("absent.weight"));
    let e = err_text(vb.get((4, 6), "absent.weight"));
    assert!(e.contains("absent.weight"), "{e}");
    let e = err_text(vb.get((6, 4), "w"));
    assert!(e.contains("shape mismatch for w"), "{e}");
    assert!(e.contains("[6, 4]") && e.contains("[4, 6]"), "{e}");
    let e = err_text(vb.get(24, "w"));
    assert!(e.contains("shape mismatch for w"), "{e}");
    // The right shape still loads after the errors.
    assert_eq!(vb.get((4, 6), "w").unwrap().dims(), &[4, 6]);
}

fn open_err(path: &Path) -> String {
    match SafetensorsFiles::open(&[path.to_path_buf()]) {
        Ok(f) => panic!("expected an error for {}, got {f:?}", path.display()),
        Err(e) => e.to_string(),
    }
}

fn raw_file(path: &Path, header: &str, data: &[u8]) {
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend(header.as_bytes());
    bytes.extend(data);
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn truncated_and_lying_files_are_named_errors() {
    let dir = tempfile::tempdir().unwrap();
    let full = dir.path().join("full.safetensors");
    save(
        &full,
        &[("a", sample((16, 16), 0.0)), ("b", sample((16, 16), 1.0))],
    );
    let bytes = std::fs::read(&full).unwrap();
    let cut = dir.path().join("cut.safetensors");
    std::fs::write(&cut, &bytes[..bytes.len() - 100]).unwrap();
    let e = open_err(&cut);
    assert!(
        e.contains("cut.safetensors") && e.contains("truncated"),
        "{e}"
    );
    // Cut inside the header.
    let stub = dir.path().join("stub.safetensors");
    std::fs::write(&stub, &bytes[..20]).unwrap();
    let e = open_err(&stub);
    assert!(
        e.contains("stub.safetensors") && e.contains("header"),
        "{e}"
    );
    // Too short for the length prefix.
    let tiny = dir.path().join("tiny.safetensors");
    std::fs::write(&tiny, [1u8, 2, 3]).unwrap();
    let e = open_err(&tiny);
    assert!(e.contains("too short"), "{e}");

    // Offsets far past the end: refused before any allocation of that size.
    let lies = dir.path().join("lies.safetensors");
    raw_file(
        &lies,
        r#"{"x":{"dtype":"F32","shape":[1000000,1000000],"data_offsets":[0,4000000000000]}}"#,
        &[0u8; 16],
    );
    let e = open_err(&lies);
    assert!(e.contains("lies.safetensors") && e.contains("x"), "{e}");
    // Offsets in range but the shape needs more bytes than the entry has.
    let shape = dir.path().join("shape.safetensors");
    raw_file(
        &shape,
        r#"{"y":{"dtype":"F32","shape":[4,4],"data_offsets":[0,8]}}"#,
        &[0u8; 8],
    );
    let e = open_err(&shape);
    assert!(e.contains("shape.safetensors") && e.contains("y"), "{e}");
    // A shape whose byte size overflows u64.
    let overflow = dir.path().join("overflow.safetensors");
    raw_file(
        &overflow,
        r#"{"z":{"dtype":"F32","shape":[4294967296,4294967296,4],"data_offsets":[0,8]}}"#,
        &[0u8; 8],
    );
    let e = open_err(&overflow);
    assert!(e.contains("overflow.safetensors") && e.contains("z"), "{e}");
    // Reversed offsets.
    let reversed = dir.path().join("reversed.safetensors");
    raw_file(
        &reversed,
        r#"{"r":{"dtype":"F32","shape":[1],"data_offsets":[8,4]}}"#,
        &[0u8; 8],
    );
    let e = open_err(&reversed);
    assert!(e.contains("reversed.safetensors"), "{e}");
    // Header that is not a tensor table.
    let junk = dir.path().join("junk.safetensors");
    raw_file(&junk, r#"{"q":{"dtype":"F32"}}"#, &[]);
    let e = open_err(&junk);
    assert!(e.contains("junk.safetensors") && e.contains("q"), "{e}");
    // Metadata is allowed; an unsupported element type only fails when that tensor is read.
    let meta = dir.path().join("meta.safetensors");
    raw_file(
        &meta,
        r#"{"__metadata__":{"format":"pt"},"k":{"dtype":"F8_E5M2","shape":[2],"data_offsets":[0,2]},"f":{"dtype":"F32","shape":[1],"data_offsets":[2,6]}}"#,
        &[0, 0, 0, 0, 0x80, 0x3f],
    );
    let st = SafetensorsFiles::open(&[meta]).unwrap();
    let f = st.load("f", DType::F32, &Device::Cpu).unwrap();
    assert_eq!(values(&f), vec![1.0]);
    let e = err_text(st.load("k", DType::F32, &Device::Cpu));
    assert!(e.contains("F8_E5M2") && e.contains("k"), "{e}");
}

#[test]
fn file_shrinking_after_open_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.safetensors");
    save(&path, &[("w", sample((64, 64), 0.0))]);
    let st = SafetensorsFiles::open(std::slice::from_ref(&path)).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let e = err_text(st.load("w", DType::F32, &Device::Cpu));
    assert!(
        e.contains("w.safetensors") && e.contains("reading tensor w"),
        "{e}"
    );
}

#[test]
fn large_tensors_read_in_parallel_chunks_keep_their_values() {
    // 1.5M floats (6 MiB, two read chunks, the last one partial) as f32 and as f16 (3 MiB,
    // one read), next to a small tensor so the large one starts at an unaligned offset.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.safetensors");
    let big = sample((1000, 1500), 0.5);
    let half = sample((1500, 1000), 1.5).to_dtype(DType::F16).unwrap();
    save(
        &path,
        &[
            ("a", sample((1, 3), 0.0)),
            ("big", big.clone()),
            ("half", half.clone()),
        ],
    );
    let st = SafetensorsFiles::open(std::slice::from_ref(&path)).unwrap();
    assert_eq!(
        values(&st.load("big", DType::F32, &Device::Cpu).unwrap()),
        values(&big)
    );
    let got = st.load("half", DType::F32, &Device::Cpu).unwrap();
    assert_eq!(values(&got), values(&half.to_dtype(DType::F32).unwrap()));

    // A file cut inside the second chunk is still a named error.
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let e = err_text(st.load("big", DType::F32, &Device::Cpu));
    assert!(e.contains("reading tensor big"), "{e}");
}

#[test]
fn read_ahead_hands_out_the_files_values_once_and_drops_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let a = sample((3, 5), 0.0);
    let b = sample((4, 7), 1.0).to_dtype(DType::F16).unwrap();
    let c = sample((2, 9), 2.0).to_dtype(DType::BF16).unwrap();
    let path = dir.path().join("one.safetensors");
    save(
        &path,
        &[
            ("a", a),
            ("b", b),
            ("c", c),
            ("unused", sample((2, 2), 4.0)),
        ],
    );
    let files = vec![path];
    let plain = var_builder(&files, DType::F32, &Device::Cpu).unwrap();
    let (got, tables) = params::record(|| {
        build_with_weights(&files, DType::F32, &Device::Cpu, |vb| {
            let first = vb.get((3, 5), "a").unwrap();
            // A second request reads the file again: a tensor of its own, same values.
            let again = vb.get((3, 5), "a").unwrap();
            let b = vb.get((4, 7), "b").unwrap();
            // Another dtype than the one read ahead, and a wrong shape, as without reading ahead.
            let c16 = vb.get_with_hints_dtype((2, 9), "c", Default::default(), DType::F16);
            let bad = vb.get((9, 2), "c").is_err();
            (first, again, b, c16.unwrap(), bad)
        })
        .unwrap()
    });
    let (first, again, b, c16, bad) = got;
    assert!(bad);
    assert_eq!(values(&first), values(&plain.get((3, 5), "a").unwrap()));
    assert_eq!(values(&again), values(&first));
    let storage = |t: &Tensor| &*t.storage_and_layout().0 as *const candle_core::Storage as usize;
    assert_ne!(storage(&first), storage(&again));
    assert_eq!(values(&b), values(&plain.get((4, 7), "b").unwrap()));
    assert_eq!(c16.dtype(), DType::F16);
    let want = plain
        .get((2, 9), "c")
        .unwrap()
        .to_dtype(DType::F16)
        .unwrap();
    assert_eq!(
        values(&c16.to_dtype(DType::F32).unwrap()),
        values(&want.to_dtype(DType::F32).unwrap())
    );
    // The recorded parameters are the tensors handed out (what a LoRA patches in place).
    let table = &tables[0];
    let a_param = &table.get("a").unwrap().tensor;
    assert_eq!(values(a_param), values(&first));
    assert_eq!(
        values(&table.get("a").unwrap().reread().unwrap()),
        values(&first)
    );
}

#[test]
fn fp8_e4m3_bytes_decode_as_candle_does() {
    let bytes: Vec<u8> = (0..=255).collect();
    let candle = Tensor::from_raw_buffer(&bytes, DType::F8E4M3, &[256], &Device::Cpu)
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    for (b, want) in bytes.iter().zip(candle) {
        let got = f8e4m3_to_f32(*b);
        assert!(
            got == want || (got.is_nan() && want.is_nan()),
            "byte {b:#04x}: {got} vs {want}"
        );
    }
    assert_eq!(f8e4m3_to_f32(0x7e), 448.0);
    assert_eq!(f8e4m3_to_f32(0x01), 2f32.powi(-9));
}

#[cfg(target_os = "linux")]
#[test]
fn large_tensors_in_their_stored_dtype_are_mapped_and_patches_stay_in_memory() {
    if !mapped::enabled() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.safetensors");
    let big = sample((300, 1000), 0.5);
    let half = sample((300, 1000), 2.5).to_dtype(DType::BF16).unwrap();
    // The small tensor first puts the others at offsets that are not page-aligned.
    save(
        &path,
        &[
            ("a", sample((1, 3), 0.0)),
            ("big", big.clone()),
            ("half", half.clone()),
        ],
    );
    let bytes = std::fs::read(&path).unwrap();
    let ptr = |t: &Tensor| match &*t.storage_and_layout().0 {
        candle_core::Storage::Cpu(candle_core::CpuStorage::F32(v)) => v.as_ptr() as *mut u8,
        candle_core::Storage::Cpu(candle_core::CpuStorage::BF16(v)) => v.as_ptr() as *mut u8,
        _ => panic!("not an f32/bf16 CPU tensor"),
    };
    let files = vec![path.clone()];
    let (got, tables) = params::record(|| {
        build_with_weights(&files, DType::F32, &Device::Cpu, |vb| {
            let big = vb.get((300, 1000), "big").unwrap();
            let a = vb.get((1, 3), "a").unwrap();
            let half =
                vb.get_with_hints_dtype((300, 1000), "half", Default::default(), DType::BF16);
            let wide = vb.get((300, 1000), "half").unwrap();
            (big, a, half.unwrap(), wide)
        })
        .unwrap()
    });
    let (got_big, a, got_half, wide) = got;
    assert!(mapped::is_mapped(ptr(&got_big)));
    assert!(mapped::is_mapped(ptr(&got_half)));
    // Small tensors and converted ones are read.
    assert!(!mapped::is_mapped(ptr(&a)) && !mapped::is_mapped(ptr(&wide)));
    assert_eq!(values(&got_big), values(&big));
    assert_eq!(
        values(&got_half.to_dtype(DType::F32).unwrap()),
        values(&half.to_dtype(DType::F32).unwrap())
    );
    assert_eq!(values(&wide), values(&half.to_dtype(DType::F32).unwrap()));
    // A patch written into the mapped weight (as a LoRA is) changes the tensor, not the file,
    // and reading it again gives the file's values.
    got_big
        .slice_set(
            &Tensor::zeros((2, 1000), DType::F32, &Device::Cpu).unwrap(),
            0,
            0,
        )
        .unwrap();
    assert_eq!(values(&got_big)[..3], [0.0; 3]);
    assert_eq!(values(&got_big)[2000..], values(&big)[2000..]);
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
    let reread = tables[0].get("big").unwrap().reread().unwrap();
    assert_eq!(values(&reread), values(&big));
    // A file cut after opening is read (a named error), not mapped.
    let st = SafetensorsFiles::open(std::slice::from_ref(&path)).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let e = err_text(st.load("half", DType::BF16, &Device::Cpu));
    assert!(e.contains("reading tensor half"), "{e}");
}
