use std::path::PathBuf;

use proptest::prelude::*;

use super::*;

/// Written by `tests/fixtures/pickle/make_pickles.py` (torch.save for the benign files).
fn fixture(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/pickle");
    dir.join(name)
}

fn bytes(name: &str) -> Vec<u8> {
    std::fs::read(fixture(name)).unwrap()
}

const BENIGN: [&str; 8] = [
    "a1111.pt",
    "sdxl.pt",
    "bare_tensor.pt",
    "protocol4.pt",
    "tensors.pt",
    "uint16.pt",
    "parameter.pt",
    "state_dict.pt",
];

fn hex(s: &str) -> Vec<u8> {
    let byte = |i: usize| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap();
    (0..s.len() / 2).map(byte).collect()
}

/// The tensors the script recorded: (name, dtype name, shape, contiguous bytes).
fn expected(name: &str) -> Vec<(String, String, Vec<usize>, Vec<u8>)> {
    let text = std::fs::read_to_string(fixture(&format!("{name}.expected"))).unwrap();
    let tensor = |line: &str| {
        let f: Vec<&str> = line.split(' ').collect();
        let shape = f[2]
            .split(',')
            .filter(|d| !d.is_empty())
            .map(|d| d.parse().unwrap());
        (
            f[0].to_string(),
            f[1].to_string(),
            shape.collect(),
            hex(f[3]),
        )
    };
    text.lines().map(tensor).collect()
}

/// The value under string key `key` of a dict.
fn get<'v>(value: &'v Value, key: &str) -> &'v Value {
    let Value::Dict(items) = value else {
        panic!("not a dict: {value:?}");
    };
    let hit = items.iter().find(|(k, _)| *k == Key::Str(key.into()));
    &hit.unwrap_or_else(|| panic!("no key {key}")).1
}

#[test]
fn benign_files_give_exactly_the_tensors_torch_saved() {
    for name in BENIGN {
        let got = read_tensors(&fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        let got: Vec<_> = got
            .into_iter()
            .map(|(n, t)| {
                assert_eq!(t.data.len(), t.numel() * t.dtype.size(), "{name} {n}");
                (n, t.dtype.name().to_string(), t.shape, t.data)
            })
            .collect();
        assert_eq!(got, expected(name), "{name}");
    }
}

#[test]
fn a1111_embedding_keeps_its_fields() {
    let v = read(&fixture("a1111.pt")).unwrap();
    assert_eq!(get(&v, "name"), &Value::Str("x".into()));
    assert_eq!(get(&v, "step"), &Value::Int(100));
    assert_eq!(get(&v, "sd_checkpoint"), &Value::Str("abc".into()));
    assert_eq!(get(&v, "sd_checkpoint_name"), &Value::Str("y".into()));
    let token = Value::Dict(vec![(Key::Str("*".into()), Value::Int(265))]);
    assert_eq!(get(&v, "string_to_token"), &token);
    let Value::Tensor(t) = get(get(&v, "string_to_param"), "*") else {
        panic!("no tensor under string_to_param.*");
    };
    assert_eq!((t.dtype, t.shape.as_slice()), (DType::F32, &[1, 768][..]));
}

#[test]
fn plain_values_come_out_as_saved() {
    let v = read(&fixture("tensors.pt")).unwrap();
    let cases = [
        ("int", Value::Int(7)),
        ("neg", Value::Int(-5)),
        ("big", Value::Int(1 << 40)),
        ("float", Value::Float(0.25)),
        ("str", Value::Str("hi".into())),
        ("none", Value::None),
        ("true", Value::Bool(true)),
    ];
    for (key, want) in cases {
        assert_eq!(get(&v, key), &want, "{key}");
    }
    let int_keys = Value::Dict(vec![
        (Key::Int(1), Value::Str("one".into())),
        (Key::Int(2), Value::Str("two".into())),
    ]);
    assert_eq!(get(&v, "int_keys"), &int_keys);
    let Value::Tuple(t) = get(get(&v, "nested"), "tuple") else {
        panic!("not a tuple");
    };
    assert_eq!(t.len(), 1);
}

#[test]
fn views_are_gathered_from_their_shared_storage() {
    let tensors: HashMap<String, Tensor> = read_tensors(&fixture("tensors.pt"))
        .unwrap()
        .into_iter()
        .collect();
    let f32s = |t: &Tensor| -> Vec<f32> {
        t.data
            .chunks(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect()
    };
    let base = f32s(&tensors["base"]);
    let transposed = f32s(&tensors["transposed"]);
    let offset_view = f32s(&tensors["offset_view"]);
    for i in 0..3 {
        for j in 0..5 {
            assert_eq!(transposed[j * 3 + i], base[i * 5 + j]);
        }
    }
    for i in 0..2 {
        for j in 0..3 {
            assert_eq!(offset_view[i * 3 + j], base[(i + 1) * 5 + j + 2]);
        }
    }
    assert_eq!(tensors["scalar"].shape, Vec::<usize>::new());
    assert!(tensors["empty"].data.is_empty());
}

fn refusal(name: &str) -> PickleError {
    match read(&fixture(name)) {
        Ok(v) => panic!("{name} was accepted: {v:?}"),
        Err(e) => e,
    }
}

#[test]
fn code_in_the_pickle_is_refused_by_name() {
    let cases = [
        ("evil_os_system.pt", "os.system"),
        ("evil_eval.pt", "builtins.eval"),
        ("evil_popen.pt", "subprocess.Popen"),
        ("evil_reduce.pt", "posix.system"),
        ("evil_reduce_p4.pt", "posix.system"),
        ("evil_custom_class.pt", "__main__.Plain"),
    ];
    for (name, global) in cases {
        let e = refusal(name);
        assert!(
            matches!(&e, PickleError::Forbidden(g) if g == global),
            "{name}: {e}"
        );
        let msg = e.to_string();
        assert!(
            msg.contains(&format!("`{global}`")) && msg.contains(".safetensors"),
            "{msg}"
        );
    }
    let e = refusal("evil_inst.pt");
    assert!(
        matches!(&e, PickleError::Unsupported(s) if s.contains("'i'")),
        "{e}"
    );
    let e = refusal("tensor_attrs.pt");
    assert!(
        e.to_string()
            .contains("`torch._tensor._rebuild_from_type_v2`"),
        "{e}"
    );
    for name in ["a1111_legacy.pt", "evil_legacy.pt"] {
        let e = refusal(name);
        assert!(
            matches!(&e, PickleError::Unsupported(s) if s.contains("1.6")),
            "{e}"
        );
    }
}

#[test]
fn hostile_structures_fail_cleanly() {
    use PickleError::*;
    type Check = fn(&PickleError) -> bool;
    let cases: [(&str, Check); 21] = [
        ("bomb_laughs.pt", |e| matches!(e, Limit(_))),
        ("bomb_string.pt", |e| matches!(e, Corrupt(_))),
        ("deep_lists.pt", |e| matches!(e, Limit(_))),
        ("deep_marks.pt", |e| matches!(e, Limit(_))),
        ("shape_beyond_storage.pt", |e| matches!(e, Corrupt(_))),
        ("negative_shape.pt", |e| matches!(e, Corrupt(_))),
        ("negative_stride.pt", |e| matches!(e, Corrupt(_))),
        ("huge_shape.pt", |e| matches!(e, Limit(_))),
        ("huge_offset.pt", |e| matches!(e, Corrupt(_))),
        ("huge_storage.pt", |e| matches!(e, Corrupt(_))),
        ("expand_bomb.pt", |e| matches!(e, Limit(_))),
        ("short_storage.pt", |e| matches!(e, Corrupt(_))),
        (
            "compressed.pt",
            |e| matches!(e, Unsupported(s) if s.contains("compressed")),
        ),
        ("absurd_cd_offset.pt", |e| matches!(e, Corrupt(_))),
        ("absurd_cd_size.pt", |e| matches!(e, Corrupt(_))),
        ("absurd_entry_count.pt", |e| matches!(e, Corrupt(_))),
        ("absurd_entry_size.pt", |e| matches!(e, Corrupt(_))),
        ("absurd_local_offset.pt", |e| matches!(e, Corrupt(_))),
        (
            "bogus_zip64.pt",
            |e| matches!(e, Unsupported(s) if s.contains("zip64")),
        ),
        (
            "zip64_entry_count.pt",
            |e| matches!(e, Unsupported(s) if s.contains("zip64")),
        ),
        ("tensors.pt.expected", |e| matches!(e, NotTorch(_))),
    ];
    for (name, ok) in cases {
        let e = refusal(name);
        assert!(ok(&e), "{name}: {e:?}");
    }
}

#[test]
fn every_truncation_of_a_benign_file_is_an_error() {
    for name in ["a1111.pt", "tensors.pt"] {
        let data = bytes(name);
        for n in 0..data.len() {
            assert!(read_bytes(&data[..n]).is_err(), "{name} cut to {n} bytes");
        }
        // The zip's end record goes first, so cut data.pkl alone too.
        let mut entries = entries_of(name);
        let pkl = entries
            .iter()
            .position(|(n, _)| n.ends_with("/data.pkl"))
            .unwrap();
        let full = entries[pkl].1.clone();
        for n in 0..full.len() {
            entries[pkl].1 = full[..n].to_vec();
            assert!(
                read_bytes(&zip(&entries)).is_err(),
                "{name}: data.pkl cut to {n} bytes"
            );
        }
    }
}

/// A stored zip such as torch.save writes, with checksums of 0 (which are not checked).
fn zip(entries: &[(String, Vec<u8>)]) -> Vec<u8> {
    let (mut out, mut directory) = (Vec::new(), Vec::new());
    for (name, data) in entries {
        let (n, len, offset) = (name.len() as u16, data.len() as u32, out.len() as u32);
        out.extend(
            [
                &b"PK\x03\x04"[..],
                &[0; 14],
                &len.to_le_bytes(),
                &len.to_le_bytes(),
            ]
            .concat(),
        );
        out.extend([&n.to_le_bytes()[..], &[0, 0], name.as_bytes(), data].concat());
        directory.extend(
            [
                &b"PK\x01\x02"[..],
                &[0; 16],
                &len.to_le_bytes(),
                &len.to_le_bytes(),
            ]
            .concat(),
        );
        directory.extend([&n.to_le_bytes()[..], &[0; 12], &offset.to_le_bytes()].concat());
        directory.extend(name.as_bytes());
    }
    let count = (entries.len() as u16).to_le_bytes();
    let (size, offset) = (
        (directory.len() as u32).to_le_bytes(),
        (out.len() as u32).to_le_bytes(),
    );
    let end = [
        &b"PK\x05\x06\0\0\0\0"[..],
        &count,
        &count,
        &size,
        &offset,
        &[0, 0],
    ]
    .concat();
    [out, directory, end].concat()
}

/// An archive holding `pkl` as its data.pkl and no storage.
fn archive(pkl: &[u8]) -> Vec<u8> {
    zip(&[("archive/data.pkl".into(), pkl.to_vec())])
}

#[test]
fn the_test_zip_writer_makes_archives_the_reader_takes() {
    let copy = read_bytes(&zip(&entries_of("sdxl.pt"))).unwrap();
    assert_eq!(copy, read(&fixture("sdxl.pt")).unwrap());
}

#[test]
fn machine_limits_hold_on_large_hostile_pickles() {
    let deep_lists = [
        &b"\x80\x02"[..],
        &[b']'; 1 << 20],
        &[b'a'; (1 << 20) - 1],
        b".",
    ]
    .concat();
    assert!(matches!(
        read_bytes(&archive(&deep_lists)),
        Err(PickleError::Limit(_))
    ));
    let marks = [&b"\x80\x02"[..], &[b'('; 1 << 20], b"N."].concat();
    assert!(matches!(
        read_bytes(&archive(&marks)),
        Err(PickleError::Limit(_))
    ));
    // A list that holds itself.
    let cycle = b"\x80\x02]q\x00h\x00a.";
    assert!(matches!(
        read_bytes(&archive(cycle)),
        Err(PickleError::Limit(_))
    ));
    // A list of one shared string, which is charged at every use.
    let big = [
        &b"\x80\x02X\x00\x00\x10\x00"[..],
        &vec![b'a'; 1 << 20],
        b"q\x00](",
    ]
    .concat();
    let shared = [big, b"h\x00".repeat(100_000), b"e.".to_vec()].concat();
    assert!(matches!(
        read_bytes(&archive(&shared)),
        Err(PickleError::Limit(_))
    ));
    let stack_global = b"\x80\x04\x8c\x02os\x8c\x06system\x93.";
    let e = read_bytes(&archive(stack_global)).unwrap_err();
    assert!(
        matches!(e, PickleError::Forbidden(ref g) if g == "os.system"),
        "{e}"
    );
}

#[test]
fn machine_handles_the_less_common_opcodes() {
    // FRAME, STACK_GLOBAL of OrderedDict with MEMOIZE, LONG1 of -1, BINFLOAT, LONG_BINPUT and
    // LONG_BINGET, DUP, TUPLE.
    let pkl = b"\x80\x04\x95\x00\x00\x00\x00\x00\x00\x00\x00(\x8c\x0bcollections\x94\
                \x8c\x0bOrderedDict\x94\x93)R\x8a\x01\xffG?\xf0\x00\x00\x00\x00\x00\x00\
                r\x07\x00\x00\x00j\x07\x00\x00\x002t.";
    let v = read_bytes(&archive(pkl)).unwrap();
    let one = Value::Float(1.0);
    let want = [
        Value::Dict(vec![]),
        Value::Int(-1),
        one.clone(),
        one.clone(),
        one,
    ];
    assert_eq!(v, Value::Tuple(want.to_vec()));
    // A dict reached twice through the memo is the same dict, items added after the PUT.
    let shared = b"\x80\x02}q\x00X\x01\x00\x00\x00aK\x01sh\x00\x86.";
    let one = Value::Dict(vec![(Key::Str("a".into()), Value::Int(1))]);
    let want = Value::Tuple(vec![one.clone(), one]);
    assert_eq!(read_bytes(&archive(shared)).unwrap(), want);
    for bad in [
        &b"\x80\x02h\x05."[..],
        b"\x80\x02.",
        b"\x80\x02Ns.",
        b"\x80\x02Kx",
        b"\x80\x02",
    ] {
        let e = read_bytes(&archive(bad)).unwrap_err();
        assert!(matches!(e, PickleError::Corrupt(_)), "{bad:?}: {e}");
    }
    // Sets, bytes, NEWOBJ, INST and text opcodes never appear in a torch.save file.
    let refused: [&[u8]; 5] = [
        b"\x80\x04\x8f.",
        b"\x80\x03C\x01z.",
        b"\x80\x02)\x81.",
        b"(i",
        b"I1\n.",
    ];
    for pkl in refused {
        let e = read_bytes(&archive(pkl)).unwrap_err();
        assert!(matches!(e, PickleError::Unsupported(_)), "{pkl:?}: {e}");
    }
}

#[test]
fn foreign_and_missing_files_are_refused() {
    assert!(matches!(read_bytes(b""), Err(PickleError::NotTorch(_))));
    assert!(matches!(
        read_bytes(b"\x80\x02N."),
        Err(PickleError::NotTorch(_))
    ));
    let mut tar = vec![0u8; 600];
    tar[257..262].copy_from_slice(b"ustar");
    assert!(matches!(read_bytes(&tar), Err(PickleError::Unsupported(_))));
    let no_pkl = zip(&[("archive/other.pkl".into(), b"\x80\x02N.".to_vec())]);
    assert!(matches!(read_bytes(&no_pkl), Err(PickleError::NotTorch(_))));
    let missing = read(&fixture("no_such_file.pt")).unwrap_err();
    assert!(matches!(missing, PickleError::Io(_)), "{missing}");
    assert!(PickleError::TooLarge(5 << 30)
        .to_string()
        .contains(".safetensors"));
}

/// The benign files' entries, with data.pkl alone to be mutated and rewritten unchecked.
fn entries_of(name: &str) -> Vec<(String, Vec<u8>)> {
    let data = bytes(name);
    let entries = zip_entries(&data).unwrap();
    entries.into_iter().map(|(n, d)| (n, d.to_vec())).collect()
}

fn mutate(data: &mut Vec<u8>, edits: &[(usize, u8)], cut: Option<usize>) {
    for &(at, byte) in edits {
        let i = at % data.len();
        data[i] = byte;
    }
    if let Some(cut) = cut {
        data.truncate(cut % (data.len() + 1));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    /// Mutations of the whole file mostly hit the zip structure or fail its checksums.
    #[test]
    fn mutated_benign_files_never_panic(
        file in 0..BENIGN.len(),
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
        cut in proptest::option::weighted(0.1, any::<usize>()),
    ) {
        let mut data = bytes(BENIGN[file]);
        mutate(&mut data, &edits, cut);
        let _ = read_bytes(&data);
    }

    /// Mutations of data.pkl alone, in an archive with unchecked checksums, reach the machine.
    #[test]
    fn mutated_pickles_never_panic(
        file in 0..BENIGN.len(),
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
        cut in proptest::option::weighted(0.1, any::<usize>()),
    ) {
        let mut entries = entries_of(BENIGN[file]);
        for (name, data) in entries.iter_mut() {
            if name.ends_with("/data.pkl") {
                mutate(data, &edits, cut);
            }
        }
        let _ = read_bytes(&zip(&entries));
    }

    #[test]
    fn random_pickles_never_panic(body in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = read_bytes(&archive(&[&b"\x80\x02"[..], &body].concat()));
        let _ = read_bytes(&[&b"PK\x03\x04"[..], &body].concat());
    }
}
