//! `HubClient` against a local server with the hub's URL layout (tests/support/hub_server.rs):
//! the pulled snapshot has the hub cache layout and loads; broken transfers resume with `Range`;
//! corrupt files are refused; errors say what to do. Everything runs on 127.0.0.1.

#[path = "support/hub_server.rs"]
mod hub_server;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use hub_server::{sha256_hex, HubServer, Repo};
use sumi_engine::Model;
use sumi_hub::download::{HubClient, PullEvent};
use sumi_hub::{cache as hub, discover, HubError as Error};

const SHA: &str = "1111111111111111111111111111111111111111";
const REPO: &str = "org/tiny";

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

/// The tiny SD1.5 model as a hub repo, plus an fp16 UNet and files Sumi must not fetch.
fn tiny_repo() -> Repo {
    let dir = fixtures().join("sd15");
    let mut repo = Repo::from_dir(&dir, SHA);
    let unet = candle_core::safetensors::load(
        dir.join("unet/diffusion_pytorch_model.safetensors"),
        &Device::Cpu,
    )
    .unwrap();
    let half: HashMap<String, candle_core::Tensor> = unet
        .into_iter()
        .map(|(k, t)| (k, t.to_dtype(DType::F16).unwrap()))
        .collect();
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("fp16.safetensors");
    candle_core::safetensors::save(&half, &p).unwrap();
    repo.put(
        "unet/diffusion_pytorch_model.fp16.safetensors",
        std::fs::read(&p).unwrap(),
    );
    for junk in [
        "unet/diffusion_pytorch_model.bin",
        "vae/diffusion_flax_model.msgpack",
        "text_encoder/model.onnx",
        "v1-5-pruned.ckpt",
        "safety_checker/model.safetensors",
    ] {
        repo.put(junk, b"not for Sumi".to_vec());
    }
    repo.put("README.md", b"# tiny".to_vec());
    repo.put("safety_checker/config.json", b"{}".to_vec());
    repo
}

fn file_of(repo: &Repo, path: &str) -> Vec<u8> {
    repo.files
        .iter()
        .find(|(p, _)| p == path)
        .map(|(_, d)| d.clone())
        .unwrap()
}

fn client(server: &HubServer, cache: &Path) -> HubClient {
    HubClient::new(&server.url, cache).with_token(Some("secret".into()))
}

fn pull(c: &HubClient) -> sumi_hub::Result<PathBuf> {
    c.pull(REPO, "main", &mut |_| {})
}

fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(
                    p.strip_prefix(dir)
                        .unwrap()
                        .to_string_lossy()
                        .replace('\\', "/"),
                );
            }
        }
    }
    out.sort();
    out
}

#[test]
fn pull_makes_a_hub_cache_snapshot_that_loads_and_is_discovered() {
    let repo = tiny_repo();
    let fp16 = file_of(&repo, "unet/diffusion_pytorch_model.fp16.safetensors");
    let vae = file_of(&repo, "vae/diffusion_pytorch_model.safetensors");
    let server = HubServer::start(vec![(REPO, repo)]);
    let cache = tempfile::tempdir().unwrap();
    let c = client(&server, cache.path());
    let mut planned = None;
    let mut last_done = 0;
    let snap = c
        .pull(REPO, "main", &mut |e| match e {
            PullEvent::Planned { files, total, .. } => planned = Some((files, total)),
            PullEvent::Bytes { done, total, .. } => {
                assert!(done >= last_done && done <= total);
                last_done = done;
            }
            PullEvent::FileDone { .. } => {}
        })
        .unwrap();

    let base = cache.path().join("models--org--tiny");
    assert_eq!(snap, base.join("snapshots").join(SHA));
    assert_eq!(
        std::fs::read_to_string(base.join("refs/main")).unwrap(),
        SHA
    );
    let expected = [
        "model_index.json",
        "scheduler/scheduler_config.json",
        "text_encoder/config.json",
        "text_encoder/model.safetensors",
        "tokenizer/merges.txt",
        "tokenizer/tokenizer_config.json",
        "tokenizer/vocab.json",
        "tokenizer/tokenizer.json",
        "unet/config.json",
        "unet/diffusion_pytorch_model.fp16.safetensors",
        "vae/config.json",
        "vae/diffusion_pytorch_model.safetensors",
    ];
    let mut expected: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
    expected.sort();
    assert_eq!(files_under(&snap), expected);
    let (files, total) = planned.unwrap();
    assert_eq!(files, expected.len());
    assert_eq!(last_done, total);

    // Snapshot entries are relative links to blobs named by their etag (the sha256 for LFS files).
    let link =
        std::fs::read_link(snap.join("unet/diffusion_pytorch_model.fp16.safetensors")).unwrap();
    assert_eq!(
        link,
        PathBuf::from(format!("../../../blobs/{}", sha256_hex(&fp16)))
    );
    assert_eq!(
        std::fs::read(base.join("blobs").join(sha256_hex(&vae))).unwrap(),
        vae
    );
    let top = std::fs::read_link(snap.join("model_index.json")).unwrap();
    assert!(top.starts_with("../../blobs/"), "{}", top.display());

    // Only the needed files were asked for; the token went to the hub, never to the CDN.
    let log = server.log();
    for l in &log {
        for junk in [
            ".bin",
            ".msgpack",
            ".onnx",
            ".ckpt",
            "safety_checker",
            "README",
        ] {
            assert!(!l.path.contains(junk), "fetched {}", l.path);
        }
        assert!(
            !l.path.ends_with("unet/diffusion_pytorch_model.safetensors"),
            "fetched full-precision UNet"
        );
        match l.server {
            "hub" => assert_eq!(l.auth.as_deref(), Some("Bearer secret"), "{l:?}"),
            _ => assert_eq!(l.auth, None, "token leaked to {}", l.path),
        }
    }
    assert!(
        log.iter().any(|l| l.server == "cdn"),
        "LFS files come through the redirect"
    );

    // The fp16 UNet is what was pulled, and the snapshot loads and is found.
    let unet = candle_core::safetensors::load(
        snap.join("unet/diffusion_pytorch_model.fp16.safetensors"),
        &Device::Cpu,
    )
    .unwrap();
    assert!(unet.values().all(|t| t.dtype() == DType::F16));
    Model::load(&snap, &Device::Cpu, DType::F32).unwrap();
    assert_eq!(sumi_hub::model_name(&snap), REPO);
    assert_eq!(hub::snapshot_in(cache.path(), REPO).unwrap(), snap);
    let found = discover::discover(&[], Some(cache.path()));
    assert!(
        found.iter().any(|m| m.name == REPO && m.path == snap),
        "{found:?}"
    );

    // A second pull finds everything in place and downloads nothing.
    server.clear_log();
    pull(&c).unwrap();
    let log = server.log();
    assert!(
        log.iter().all(|l| l.path.starts_with("/api/")),
        "second pull only asks for the file list: {log:?}"
    );
}

#[test]
fn a_broken_transfer_resumes_with_a_range_request() {
    let repo = tiny_repo();
    let unet = file_of(&repo, "unet/diffusion_pytorch_model.fp16.safetensors");
    let etag = sha256_hex(&unet);
    let server = HubServer::start(vec![(REPO, repo)]);
    let cache = tempfile::tempdir().unwrap();
    let cut = 300_000;
    server.faults(|f| {
        f.drop_once = Some(("unet/diffusion_pytorch_model.fp16.safetensors".into(), cut))
    });

    // Without retries the pull stops, keeping the partial file.
    let c = client(&server, cache.path()).with_retries(0);
    let err = pull(&c).unwrap_err().to_string();
    assert!(err.contains("the same command again"), "{err}");
    let blobs = cache.path().join("models--org--tiny/blobs");
    let part = blobs.join(format!("{etag}.incomplete"));
    assert_eq!(std::fs::metadata(&part).unwrap().len(), cut as u64);
    assert!(!blobs.join(&etag).exists());

    // The next pull continues from there.
    server.clear_log();
    let snap = pull(&c).unwrap();
    let ranged: Vec<_> = server
        .log()
        .into_iter()
        .filter(|l| l.server == "cdn" && l.path.ends_with("fp16.safetensors"))
        .collect();
    assert_eq!(ranged.len(), 1);
    assert_eq!(
        ranged[0].range.as_deref(),
        Some(format!("bytes={cut}-").as_str())
    );
    assert_eq!(
        std::fs::read(snap.join("unet/diffusion_pytorch_model.fp16.safetensors")).unwrap(),
        unet
    );
    assert!(!part.exists());
}

#[test]
fn a_broken_transfer_is_resumed_within_one_pull() {
    let repo = tiny_repo();
    let vae = file_of(&repo, "vae/diffusion_pytorch_model.safetensors");
    let server = HubServer::start(vec![(REPO, repo)]);
    let cache = tempfile::tempdir().unwrap();
    server.faults(|f| f.drop_once = Some(("vae/diffusion_pytorch_model.safetensors".into(), 1000)));
    let snap = pull(&client(&server, cache.path())).unwrap();
    let vae_gets: Vec<_> = server
        .log()
        .into_iter()
        .filter(|l| l.server == "cdn" && l.path.contains("vae/"))
        .map(|l| l.range)
        .collect();
    assert_eq!(vae_gets, vec![None, Some("bytes=1000-".to_string())]);
    assert_eq!(
        std::fs::read(snap.join("vae/diffusion_pytorch_model.safetensors")).unwrap(),
        vae
    );
}

#[test]
fn a_server_that_ignores_ranges_gets_a_fresh_download() {
    let repo = tiny_repo();
    let vae = file_of(&repo, "vae/diffusion_pytorch_model.safetensors");
    let server = HubServer::start(vec![(REPO, repo)]);
    let cache = tempfile::tempdir().unwrap();
    server.faults(|f| {
        f.drop_once = Some(("vae/diffusion_pytorch_model.safetensors".into(), 5000));
        f.ignore_range = true;
    });
    let snap = pull(&client(&server, cache.path())).unwrap();
    let ranges: Vec<_> = server
        .log()
        .into_iter()
        .filter(|l| l.server == "cdn" && l.path.contains("vae/"))
        .map(|l| l.range)
        .collect();
    assert_eq!(ranges, vec![None, Some("bytes=5000-".to_string())]);
    // The 200 answer to the range request replaced the partial file instead of being appended.
    assert_eq!(
        std::fs::read(snap.join("vae/diffusion_pytorch_model.safetensors")).unwrap(),
        vae
    );
}

#[test]
fn a_corrupt_file_is_refused_and_a_later_pull_fetches_it_fresh() {
    let repo = tiny_repo();
    let te = file_of(&repo, "text_encoder/model.safetensors");
    let etag = sha256_hex(&te);
    let server = HubServer::start(vec![(REPO, repo)]);
    let cache = tempfile::tempdir().unwrap();
    server.faults(|f| f.corrupt = vec!["text_encoder/model.safetensors".into()]);
    let c = client(&server, cache.path());
    let err = pull(&c).unwrap_err();
    match &err {
        Error::Checksum { file, expected, .. } => {
            assert_eq!(file, "org/tiny/text_encoder/model.safetensors");
            assert_eq!(expected, &etag);
        }
        other => panic!("expected a checksum error, got {other}"),
    }
    assert!(
        err.to_string().contains("run the same command again"),
        "{err}"
    );
    let blobs = cache.path().join("models--org--tiny/blobs");
    assert!(!blobs.join(&etag).exists());
    assert!(!blobs.join(format!("{etag}.incomplete")).exists());
    assert!(!cache
        .path()
        .join("models--org--tiny/snapshots")
        .join(SHA)
        .join("text_encoder/model.safetensors")
        .exists());

    server.faults(|f| f.corrupt.clear());
    let snap = pull(&c).unwrap();
    assert_eq!(
        std::fs::read(snap.join("text_encoder/model.safetensors")).unwrap(),
        te
    );
}

#[test]
fn errors_say_what_is_wrong_and_what_to_do() {
    let server = HubServer::start(vec![(REPO, tiny_repo()), ("org/locked", tiny_repo())]);
    server.faults(|f| f.gated = vec!["org/locked".into()]);
    let cache = tempfile::tempdir().unwrap();
    let c = HubClient::new(&server.url, cache.path());

    let err = c
        .pull("org/missing", "main", &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("org/missing was not found") && err.contains("HF_TOKEN"),
        "{err}"
    );
    let err = c
        .pull("org/locked", "main", &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(err.contains("gated") && err.contains("HF_TOKEN"), "{err}");
    let err = c.pull(REPO, "v9", &mut |_| {}).unwrap_err().to_string();
    assert!(err.contains("revision \"v9\" does not exist"), "{err}");
    let err = c
        .pull("../etc", "main", &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(err.contains("org/name"), "{err}");

    // Nothing listens on port 9 of the loopback interface: like being offline.
    let offline = HubClient::new("http://127.0.0.1:9", cache.path());
    let err = offline
        .pull(REPO, "main", &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("cannot connect") && err.contains("work offline"),
        "{err}"
    );
    assert!(!cache.path().join("models--org--missing").exists());
}

#[test]
fn a_pinned_commit_pulls_without_moving_refs() {
    let server = HubServer::start(vec![(REPO, tiny_repo())]);
    let cache = tempfile::tempdir().unwrap();
    let snap = client(&server, cache.path())
        .pull(REPO, SHA, &mut |_| {})
        .unwrap();
    assert!(snap.join("model_index.json").is_file());
    assert!(!cache.path().join("models--org--tiny/refs").exists());
}

#[test]
fn tokenizers_come_alone_from_a_clip_repo() {
    let mut clip = Repo::from_dir(&fixtures().join("sd15/tokenizer"), SHA);
    clip.put("pytorch_model.bin", b"weights".to_vec());
    clip.put("model.safetensors", b"weights".to_vec());
    clip.put("config.json", b"{}".to_vec());
    let server = HubServer::start(vec![("openai/clip-vit-large-patch14", clip)]);
    let cache = tempfile::tempdir().unwrap();
    let dir = client(&server, cache.path())
        .pull_tokenizer("openai/clip-vit-large-patch14", "", &mut |_| {})
        .unwrap();
    assert_eq!(
        files_under(&dir),
        [
            "merges.txt",
            "tokenizer.json",
            "tokenizer_config.json",
            "vocab.json"
        ]
    );
    sumi_engine::text::tokenizer::ClipTokenizer::load(&dir).unwrap();
    assert!(
        server.log().iter().all(|l| l.server == "hub"),
        "no weights fetched"
    );
}
