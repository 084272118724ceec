use std::collections::HashMap;
use std::path::PathBuf;

use super::*;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

fn save(dir: &Path, name: &str, tensors: &[(&str, Tensor)]) -> PathBuf {
    let path = dir.join(name);
    let map: HashMap<String, Tensor> = tensors
        .iter()
        .map(|(k, t)| (k.to_string(), t.clone()))
        .collect();
    candle_core::safetensors::save(&map, &path).unwrap();
    path
}

fn zeros(shape: &[usize]) -> Tensor {
    Tensor::zeros(shape, DType::F32, &Device::Cpu).unwrap()
}

fn reason(set: &Embeddings, name: &str) -> String {
    match set.vectors(set.find(name).unwrap()) {
        Err(Error::Embedding { reason, .. }) => reason,
        Err(e) => panic!("{name}: unexpected error {e}"),
        Ok(_) => panic!("{name}: accepted"),
    }
}

#[test]
fn formats_a1111_reads() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    save(d, "single.safetensors", &[("emb_params", zeros(&[2, 8]))]);
    save(d, "vector.safetensors", &[("tok", zeros(&[8]))]);
    save(
        d,
        "xl.safetensors",
        &[("clip_l", zeros(&[3, 8])), ("clip_g", zeros(&[3, 12]))],
    );
    save(
        d,
        "two.safetensors",
        &[("a", zeros(&[1, 8])), ("b", zeros(&[1, 8]))],
    );
    save(d, "many.safetensors", &[("emb_params", zeros(&[76, 8]))]);
    save(d, "cube.safetensors", &[("emb_params", zeros(&[1, 2, 8]))]);
    save(
        d,
        "uneven.safetensors",
        &[("clip_l", zeros(&[2, 8])), ("clip_g", zeros(&[3, 8]))],
    );
    std::fs::copy(
        fixtures().join("prompt/embeddings/sumiblue.pt"),
        d.join("a1111.pt"),
    )
    .unwrap();
    std::fs::copy(
        fixtures().join("pickle/evil_os_system.pt"),
        d.join("evil.pt"),
    )
    .unwrap();
    std::fs::write(d.join("empty.pt"), b"").unwrap();
    std::fs::write(d.join("notes.txt"), b"not an embedding").unwrap();
    let set = Embeddings::from_paths(&[d]).unwrap();
    assert!(set.find("empty").is_none() && set.find("notes").is_none());
    let count = |n: &str| set.vectors(set.find(n).unwrap()).unwrap().count();
    assert_eq!(count("single"), 2);
    assert_eq!(count("vector"), 1);
    assert_eq!(count("xl"), 3);
    assert_eq!(count("a1111"), 2);
    assert!(reason(&set, "two").contains("2 tensors (a, b)"));
    assert!(reason(&set, "many").contains("76 vectors"));
    assert!(reason(&set, "cube").contains("3 dimensions"));
    assert!(reason(&set, "uneven").contains("equally many"));
    let evil = reason(&set, "evil");
    assert!(evil.contains("refuses"), "{evil}");
}

#[test]
fn vectors_fit_one_model_family_or_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    save(
        dir.path(),
        "sd1.safetensors",
        &[("emb_params", zeros(&[1, 768]))],
    );
    save(
        dir.path(),
        "xl.safetensors",
        &[("clip_l", zeros(&[1, 768])), ("clip_g", zeros(&[1, 1280]))],
    );
    let set = Embeddings::from_paths(&[dir.path()]).unwrap();
    let (sd1, xl) = (set.find("sd1").unwrap(), set.find("xl").unwrap());
    let slot = |index, encoders, width, comfy| Slot {
        index,
        encoders,
        width,
        comfy,
    };
    assert!(set.vectors_for(sd1, slot(0, 1, 768, false)).is_ok());
    let err = set.vectors_for(sd1, slot(0, 1, 1024, false)).unwrap_err();
    assert!(err.to_string().contains("made for SD 1.x"), "{err}");
    let err = set.vectors_for(sd1, slot(1, 2, 1280, false)).unwrap_err();
    assert!(err.to_string().contains("SDXL embeddings"), "{err}");
    assert_eq!(
        set.vectors_for(xl, slot(1, 2, 1280, false)).unwrap().dims(),
        [1, 1280]
    );
    assert_eq!(
        set.vectors_for(xl, slot(0, 2, 768, false)).unwrap().dims(),
        [1, 768]
    );
    let err = set.vectors_for(xl, slot(0, 1, 768, false)).unwrap_err();
    assert!(err.to_string().contains("made for SDXL"), "{err}");
    // ComfyUI gives a one-encoder model an SDXL file's clip_l part.
    assert!(set.vectors_for(xl, slot(0, 1, 768, true)).is_ok());
}

#[test]
fn names_hashes_and_lookups() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    save(
        a.path(),
        "Name.safetensors",
        &[("emb_params", zeros(&[1, 4]))],
    );
    std::fs::create_dir(b.path().join("sub")).unwrap();
    save(
        &b.path().join("sub"),
        "Name.safetensors",
        &[("emb_params", zeros(&[2, 4]))],
    );
    save(
        &b.path().join("sub"),
        "other.pt.safetensors",
        &[("x", zeros(&[1, 4]))],
    );
    let set = Embeddings::from_paths(&[a.path(), b.path()]).unwrap();
    assert_eq!(set.len(), 2, "the second Name is skipped");
    let i = set.find("Name").unwrap();
    assert_eq!(set.vectors(i).unwrap().count(), 1, "earlier paths win");
    let bytes = std::fs::read(set.path(i)).unwrap();
    let want: String = Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(set.short_hash(i).unwrap(), want[..12]);
    assert!(set.find("name").is_none());
    assert_eq!(set.find_comfy("Name"), Some(i));
    assert_eq!(set.find_comfy("Name.safetensors"), Some(i));
    assert_eq!(set.find_comfy("sub/Name"), Some(i));
    assert_eq!(set.find_comfy("other.pt"), set.find("other.pt"));
    assert!(set.find_comfy("missing").is_none());
    assert!(Embeddings::empty().is_empty());
}
