//! The worker end to end on the tiny SD 1.5 fixture.

use super::*;
use std::sync::mpsc;
use std::time::Duration;

struct Recorder(Mutex<mpsc::Sender<(WorkerEvent, Option<Vec<u8>>)>>);
impl Sink for Recorder {
    fn event(&self, event: WorkerEvent) {
        let _ = self.0.lock().unwrap().send((event, None));
    }
    fn preview(&self, job: u64, step: usize, png: Vec<u8>) {
        let e = WorkerEvent::Step {
            job,
            index: step,
            total: 0,
            it_per_sec: 0.0,
            eta_secs: 0.0,
        };
        let _ = self.0.lock().unwrap().send((e, Some(png)));
    }
}

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/sd15")
}

/// Everything the recorder saw: events, and preview bytes for preview reports.
type Events = mpsc::Receiver<(WorkerEvent, Option<Vec<u8>>)>;

fn setup() -> (tempfile::TempDir, Arc<Mutex<Gallery>>, Worker, Events) {
    let dir = tempfile::tempdir().unwrap();
    let gallery = Arc::new(Mutex::new(Gallery::open(dir.path()).unwrap()));
    let (tx, rx) = mpsc::channel();
    let worker = Worker::start(gallery.clone(), Arc::new(Recorder(Mutex::new(tx))));
    (dir, gallery, worker, rx)
}

fn wait_for(
    rx: &Events,
    mut done: impl FnMut(&WorkerEvent) -> bool,
) -> Vec<(WorkerEvent, Option<Vec<u8>>)> {
    let mut seen = Vec::new();
    loop {
        let got = rx
            .recv_timeout(Duration::from_secs(120))
            .expect("worker went quiet");
        let stop = done(&got.0);
        seen.push(got);
        if stop {
            return seen;
        }
    }
}

fn request(steps: u32) -> Request {
    Request {
        prompt: "a red circle".into(),
        negative_prompt: String::new(),
        seed: 42,
        steps,
        cfg: 7.0,
        sampler: "Euler".into(),
        schedule: "Normal".into(),
        width: 64,
        height: 64,
        noise: Default::default(),
        ..Default::default()
    }
}

#[test]
fn generates_streams_previews_saves_and_reruns_identically() {
    let (_d, gallery, worker, rx) = setup();
    let job = worker.enqueue(Job {
        model_files: None,
        made_from: None,
        request: request(3),
        comparison: None,
        model: None,
        lora_hashes: Vec::new(),
        ti_hashes: Vec::new(),
    });
    // Without a model the job fails with a readable message.
    let seen = wait_for(&rx, |e| matches!(e, WorkerEvent::Failed { .. }));
    match &seen.last().unwrap().0 {
        WorkerEvent::Failed { job: j, message } => {
            assert_eq!(*j, job);
            assert!(message.contains("No model"), "{message}");
        }
        e => panic!("{e:?}"),
    }

    worker.load(fixture());
    let seen = wait_for(&rx, |e| {
        matches!(
            e,
            WorkerEvent::ModelLoaded { .. } | WorkerEvent::ModelFailed { .. }
        )
    });
    assert!(matches!(
        seen.last().unwrap().0,
        WorkerEvent::ModelLoaded { .. }
    ));
    assert_eq!(worker.model().unwrap().family, "sd1");
    let stages: Vec<(String, u32)> = seen
        .iter()
        .filter_map(|(e, _)| match e {
            WorkerEvent::ModelProgress { stage, percent } => Some((stage.clone(), *percent)),
            _ => None,
        })
        .collect();
    let names: Vec<&str> = stages.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(names, ["config", "text encoder", "UNet", "VAE"]);
    assert!(stages.windows(2).all(|w| w[0].1 <= w[1].1), "{stages:?}");
    assert!(
        stages[3].1 > stages[2].1,
        "the UNet has weight bytes: {stages:?}"
    );

    let job = worker.enqueue(Job {
        model_files: None,
        made_from: None,
        request: request(3),
        comparison: None,
        model: None,
        lora_hashes: Vec::new(),
        ti_hashes: Vec::new(),
    });
    let seen = wait_for(&rx, |e| matches!(e, WorkerEvent::Finished { .. }));
    let previews: Vec<_> = seen.iter().filter_map(|(_, p)| p.clone()).collect();
    assert_eq!(previews.len(), 3, "one preview per step");
    assert!(previews.iter().all(|p| p.starts_with(b"\x89PNG")));
    let steps = seen
        .iter()
        .filter(|(e, p)| p.is_none() && matches!(e, WorkerEvent::Step { job: j, .. } if *j == job))
        .count();
    assert_eq!(steps, 3);
    let WorkerEvent::Finished { id, .. } = seen.last().unwrap().0 else {
        unreachable!()
    };

    let params = gallery.lock().unwrap().rerun(id).unwrap();
    worker.enqueue(Job {
        model_files: None,
        made_from: None,
        request: crate::record::request(&params),
        comparison: None,
        model: None,
        lora_hashes: Vec::new(),
        ti_hashes: Vec::new(),
    });
    let seen = wait_for(&rx, |e| matches!(e, WorkerEvent::Finished { .. }));
    let WorkerEvent::Finished { id: id2, .. } = seen.last().unwrap().0 else {
        unreachable!()
    };
    assert_ne!(id, id2);
    let g = gallery.lock().unwrap();
    let a = image::open(g.image_path(&g.get(id).unwrap())).unwrap();
    let b = image::open(g.image_path(&g.get(id2).unwrap())).unwrap();
    assert_eq!(a.to_rgb8().as_raw(), b.to_rgb8().as_raw());
}

#[test]
fn cancel_and_clear() {
    let (_d, _g, worker, rx) = setup();
    worker.load(fixture());
    wait_for(&rx, |e| matches!(e, WorkerEvent::ModelLoaded { .. }));
    let first = worker.enqueue(Job {
        model_files: None,
        made_from: None,
        request: request(200),
        comparison: None,
        model: None,
        lora_hashes: Vec::new(),
        ti_hashes: Vec::new(),
    });
    for _ in 0..3 {
        worker.enqueue(Job {
            model_files: None,
            made_from: None,
            request: request(2),
            comparison: None,
            model: None,
            lora_hashes: Vec::new(),
            ti_hashes: Vec::new(),
        });
    }
    assert_eq!(worker.queue().len(), 4);
    wait_for(
        &rx,
        |e| matches!(e, WorkerEvent::Step { job, .. } if *job == first),
    );
    assert_eq!(worker.clear(), 3);
    worker.cancel();
    let seen = wait_for(&rx, |e| {
        matches!(
            e,
            WorkerEvent::Cancelled { .. } | WorkerEvent::Finished { .. }
        )
    });
    assert_eq!(
        seen.last().unwrap().0,
        WorkerEvent::Cancelled { job: first }
    );
    wait_for(
        &rx,
        |e| matches!(e, WorkerEvent::Queue { items } if items.is_empty()),
    );
    assert!(worker.queue().is_empty());
}

#[test]
fn bad_model_folder_reports_a_message() {
    let (d, _g, worker, rx) = setup();
    worker.load(d.path().join("nothing-here"));
    let seen = wait_for(&rx, |e| {
        matches!(
            e,
            WorkerEvent::ModelLoaded { .. } | WorkerEvent::ModelFailed { .. }
        )
    });
    match &seen.last().unwrap().0 {
        WorkerEvent::ModelFailed { message } => assert!(message.contains("nothing-here")),
        e => panic!("{e:?}"),
    }
    assert!(worker.model().is_none());
    assert!(worker.loading().is_none());
    // The page asks for the failure after the event went by: it is still there...
    assert!(worker.load_error().unwrap().contains("nothing-here"));
    // ...until another load starts.
    worker.load(fixture());
    wait_for(&rx, |e| matches!(e, WorkerEvent::ModelLoaded { .. }));
    assert_eq!(worker.load_error(), None);
    assert!(worker.loading().is_none());

    worker.fail_load("SUMI_MODEL=x: no such model".into());
    let seen = wait_for(&rx, |e| matches!(e, WorkerEvent::ModelFailed { .. }));
    assert_eq!(
        seen.last().unwrap().0,
        WorkerEvent::ModelFailed {
            message: "SUMI_MODEL=x: no such model".into()
        }
    );
    assert_eq!(
        worker.load_error().as_deref(),
        Some("SUMI_MODEL=x: no such model")
    );
}

#[test]
fn a_waiting_load_is_reported_with_its_path() {
    let (_d, _g, worker, rx) = setup();
    worker.load(fixture());
    wait_for(&rx, |e| matches!(e, WorkerEvent::ModelLoaded { .. }));
    assert!(worker.loading().is_none());
    // A load asked for while a long job runs waits for it, and is reported as waiting.
    let long = worker.enqueue(Job {
        model_files: None,
        made_from: None,
        request: request(200),
        comparison: None,
        model: None,
        lora_hashes: Vec::new(),
        ti_hashes: Vec::new(),
    });
    wait_for(
        &rx,
        |e| matches!(e, WorkerEvent::Step { job, .. } if *job == long),
    );
    worker.load(fixture());
    assert_eq!(
        worker.loading(),
        Some(LoadingView {
            path: fixture().display().to_string(),
            stage: None,
            percent: 0
        })
    );
    worker.cancel();
    let seen = wait_for(&rx, |e| matches!(e, WorkerEvent::ModelLoaded { .. }));
    assert!(seen
        .iter()
        .any(|(e, _)| matches!(e, WorkerEvent::ModelProgress { stage, .. } if stage == "VAE")));
    assert!(worker.loading().is_none());
}

fn job(request: Request) -> Job {
    Job {
        model_files: None,
        made_from: None,
        request,
        comparison: None,
        model: None,
        lora_hashes: Vec::new(),
        ti_hashes: Vec::new(),
    }
}

fn finished_or_failed(rx: &Events) -> WorkerEvent {
    let seen = wait_for(rx, |e| {
        matches!(e, WorkerEvent::Finished { .. } | WorkerEvent::Failed { .. })
    });
    seen.last().unwrap().0.clone()
}

#[test]
fn prompts_use_the_homes_loras_and_embeddings_and_record_them() {
    let (d, gallery, worker, rx) = setup();
    let fixtures = fixture().join("..");
    for (from, to) in [
        ("lora/sd15_kohya.safetensors", "loras/ink.safetensors"),
        (
            "prompt/embeddings/sumired.safetensors",
            "embeddings/sumired.safetensors",
        ),
    ] {
        let to = d.path().join(to);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(fixtures.join(from), to).unwrap();
    }
    let count = |text: &str| {
        worker
            .token_count(text, true, Default::default(), None, 20)
            .unwrap()
            .map(|c| (c.tokens, c.capacity))
    };
    assert_eq!(count("a circle"), None, "no model yet");
    worker.load(fixture());
    wait_for(&rx, |e| matches!(e, WorkerEvent::ModelLoaded { .. }));
    assert_eq!(count("a circle"), Some((2, 75)));
    // The embedding counts its 3 vectors; the tag counts nothing.
    assert_eq!(count("a sumired circle <lora:ink:0.6>"), Some((5, 75)));
    let mut r = request(2);
    r.prompt = "a sumired circle <lora:ink:0.6>".into();
    worker.enqueue(job(r.clone()));
    let WorkerEvent::Finished { id, .. } = finished_or_failed(&rx) else {
        panic!("the job failed")
    };
    let p = gallery.lock().unwrap().get(id).unwrap().params;
    assert_eq!(p.lora_hashes.len(), 1);
    assert_eq!(p.lora_hashes[0].name, "ink");
    assert_eq!(p.ti_hashes.len(), 1);
    assert_eq!(p.ti_hashes[0].name, "sumired");

    // A LoRA that is nowhere fails the job with its name.
    r.prompt = "a circle <lora:gone:1>".into();
    worker.enqueue(job(r.clone()));
    match finished_or_failed(&rx) {
        WorkerEvent::Failed { message, .. } => {
            assert!(message.contains("no LoRA called \"gone\""), "{message}")
        }
        e => panic!("{e:?}"),
    }
    // A re-run of an image whose embedding is missing says which.
    let mut rerun = job(r);
    rerun.request.prompt = "a circle".into();
    rerun.request.negative_prompt = "badhands".into();
    rerun.ti_hashes = vec![NamedHash::new("badhands", "0123456789ab")];
    worker.enqueue(rerun);
    match finished_or_failed(&rx) {
        WorkerEvent::Failed { message, .. } => {
            assert!(message.contains("badhands (0123456789ab)"), "{message}")
        }
        e => panic!("{e:?}"),
    }
}

#[test]
fn a_rerun_loads_the_parts_its_image_was_made_with_and_records_them_again() {
    let (_d, gallery, worker, rx) = setup();
    let flux = fixture().join("../flux");
    let pipe = flux.join("pipe-dev").canonicalize().unwrap();
    let model = flux.join("files/flux1-dev-pipe-Q8_0.gguf");
    let files = sumi_gallery::ModelFiles {
        model: model.canonicalize().unwrap().display().to_string(),
        vae: Some(pipe.join("vae").display().to_string()),
        t5: Some(pipe.join("text_encoder_2").display().to_string()),
        clip_l: Some(pipe.join("text_encoder").display().to_string()),
        tokenizer_dirs: vec![pipe.display().to_string()],
        ..Default::default()
    };
    let flux_request = Request {
        cfg: 1.0,
        guidance: Some(3.5),
        schedule: "Flow".into(),
        ..request(2)
    };
    // The transformer file alone lacks its text encoders.
    worker.enqueue(Job {
        model: Some(model.clone()),
        ..job(flux_request.clone())
    });
    let seen = wait_for(&rx, |e| {
        matches!(e, WorkerEvent::Finished { .. } | WorkerEvent::Failed { .. })
    });
    assert!(matches!(seen.last().unwrap().0, WorkerEvent::Failed { .. }));
    assert!(seen.iter().any(
        |(e, _)| matches!(e, WorkerEvent::ModelFailed { message } if message.contains("--clip-l"))
    ));
    worker.enqueue(Job {
        model: Some(model.clone()),
        model_files: Some(files.clone()),
        ..job(flux_request)
    });
    let WorkerEvent::Finished { id, .. } = finished_or_failed(&rx) else {
        panic!("the re-run with its recorded parts failed");
    };
    let saved = gallery.lock().unwrap().get(id).unwrap();
    assert_eq!(saved.model_files, Some(files.clone()));
    // The loaded model has these parts; other parts, or another model, would load.
    assert!(!worker.needs_load(&model, Some(&files)));
    let other_vae = sumi_gallery::ModelFiles {
        vae: Some(pipe.join("elsewhere").display().to_string()),
        ..files
    };
    assert!(worker.needs_load(&model, Some(&other_vae)));
    assert!(worker.needs_load(&fixture(), None));
}
