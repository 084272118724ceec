//! Stress test: many processes share one gallery home, as the app and several CLIs do.
//!
//! Phase 1, on a home that does not exist yet (so the processes also race to create and
//! migrate the database): 4 processes each open the gallery, add one random-noise image and
//! close it, 25 times; 2 processes import the same folder 3 times each (it also holds a FIFO
//! named `.png`); 1 process adds and deletes images. Phase 2, on the existing gallery: 20
//! processes that each add one image at once (like `sumi generate` runs).
//!
//! Afterwards: every process exited successfully (none hung on the FIFO), every addition a
//! process reported is listed with its settings, no deleted id is listed, each imported file
//! is in the gallery exactly once, every listed image exists, decodes as PNG and has its
//! thumbnail, nothing was moved to `unreadable/`, no temp file, journal entry, image without
//! row or stray thumbnail is left, `PRAGMA integrity_check` is clean and a final open has
//! nothing to repair.
//!
//! This binary plays every part: with `SUMI_STRESS_WORKER` set it is one worker process.

mod common;

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use image::RgbImage;
use sumi_gallery::{png_meta, Filter, Gallery, GalleryError, IMAGES_DIR, THUMBS_DIR};

const WORKER_ENV: &str = "SUMI_STRESS_WORKER";
const HOME_ENV: &str = "SUMI_STRESS_HOME";
const ADDERS: u64 = 4;
const ADDS: u64 = 25;
const IMPORTERS: usize = 2;
const IMPORT_ROUNDS: usize = 3;
const IMPORT_FILES: u64 = 8;
const CHURNS: u64 = 10;
const BURST: u64 = 20;
/// Side of the noise images.
const SIDE: u32 = 32;
/// A worker still running after this long is taken to hang.
const DEADLINE: Duration = Duration::from_secs(120);

fn main() {
    match std::env::var(WORKER_ENV) {
        Ok(role) => {
            let home = PathBuf::from(std::env::var_os(HOME_ENV).expect("worker without a home"));
            worker(&role, &home);
        }
        Err(_) => parent(),
    }
}

/// Random noise from a seed (so every added picture differs).
fn noise(seed: u64) -> RgbImage {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    RgbImage::from_fn(SIDE, SIDE, |_, _| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let b = state.to_le_bytes();
        image::Rgb([b[0], b[1], b[2]])
    })
}

/// One worker; prints one line per completed step and panics (non-zero exit) on any error.
fn worker(role: &str, home: &Path) {
    let mut words = role.split(' ');
    match (words.next(), words.next(), words.next()) {
        (Some("add"), Some(first), Some(count)) => {
            let first: u64 = first.parse().unwrap();
            for seed in first..first + count.parse::<u64>().unwrap() {
                let g = Gallery::open(home).expect("open");
                let saved = g
                    .add(&common::params(seed), &common::meta(), &noise(seed))
                    .expect("add");
                println!("added {} {seed}", saved.id);
            }
        }
        (Some("churn"), Some(first), Some(count)) => {
            let first: u64 = first.parse().unwrap();
            for seed in first..first + count.parse::<u64>().unwrap() {
                let g = Gallery::open(home).expect("open");
                let saved = g
                    .add(&common::params(seed), &common::meta(), &noise(seed))
                    .expect("add");
                g.delete(saved.id).expect("delete");
                println!("deleted {}", saved.id);
            }
        }
        (Some("import"), Some(src), None) => {
            for _ in 0..IMPORT_ROUNDS {
                let g = Gallery::open(home).expect("open");
                let report = g.import_paths(&[PathBuf::from(src)]);
                for gen in &report.imported {
                    println!("imported {} {}", gen.id, gen.params.seed);
                }
                for (_, id) in &report.already_in_gallery {
                    println!("already {id}");
                }
                for (path, why) in &report.failed {
                    println!("failed {}\t{why}", path.display());
                }
            }
        }
        _ => panic!("unknown worker role {role:?}"),
    }
}

/// A running worker, its role and where its output goes.
struct Worker {
    role: String,
    child: Child,
    out: PathBuf,
    err: PathBuf,
}

fn spawn(role: String, home: &Path, logs: &Path, n: usize) -> Worker {
    let out = logs.join(format!("{n}.out"));
    let err = logs.join(format!("{n}.err"));
    let child = Command::new(std::env::current_exe().unwrap())
        .env(WORKER_ENV, &role)
        .env(HOME_ENV, home)
        .stdout(Stdio::from(fs::File::create(&out).unwrap()))
        .stderr(Stdio::from(fs::File::create(&err).unwrap()))
        .spawn()
        .unwrap();
    Worker {
        role,
        child,
        out,
        err,
    }
}

/// Waits for every worker (killing them all if one hangs) and returns their output lines.
fn finish(mut workers: Vec<Worker>) -> Vec<String> {
    let started = Instant::now();
    let mut statuses = vec![None; workers.len()];
    while statuses.iter().any(Option::is_none) {
        for (w, status) in workers.iter_mut().zip(&mut statuses) {
            if status.is_none() {
                *status = w.child.try_wait().unwrap();
            }
        }
        if started.elapsed() > DEADLINE {
            let hung: Vec<&str> = workers
                .iter()
                .zip(&statuses)
                .filter(|(_, s)| s.is_none())
                .map(|(w, _)| w.role.as_str())
                .collect();
            let hung = format!("{hung:?}");
            for w in &mut workers {
                let _ = w.child.kill();
                let _ = w.child.wait();
            }
            panic!("workers hang (over {DEADLINE:?}): {hung}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut lines = Vec::new();
    for (w, status) in workers.iter().zip(statuses) {
        let status = status.expect("all finished");
        let err = fs::read_to_string(&w.err).unwrap();
        assert!(
            status.success(),
            "worker {:?} failed: {status}\n{err}",
            w.role
        );
        lines.extend(
            fs::read_to_string(&w.out)
                .unwrap()
                .lines()
                .map(String::from),
        );
    }
    lines
}

/// Writes `n` A1111-style PNGs (distinct pictures and seeds), a FIFO named `.png` and a text file.
fn import_folder(dir: &Path) {
    for i in 0..IMPORT_FILES {
        let seed = 9_000 + i;
        let text = format!(
            "imported picture {i}\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: {seed}, \
             Size: {SIDE}x{SIDE}, Model: other-tool"
        );
        let png = png_meta::encode_png(&noise(seed), &[(png_meta::PARAMETERS_KEY, &text)]).unwrap();
        fs::write(dir.join(format!("{i:03}.png")), png).unwrap();
    }
    fs::write(dir.join("notes.txt"), "not an image").unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        let fifo = dir.join("fifo.png");
        let c = std::ffi::CString::new(fifo.as_os_str().as_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    }
}

/// What the workers reported.
#[derive(Default)]
struct Reported {
    /// Added id → seed.
    added: BTreeMap<i64, u64>,
    deleted: BTreeSet<i64>,
    /// Imported id → seed.
    imported: BTreeMap<i64, u64>,
    already: usize,
    failed: Vec<String>,
}

fn parse(lines: &[String], into: &mut Reported) {
    for line in lines {
        let mut w = line.split(' ');
        let kind = w.next().unwrap();
        let id = || w.clone().next().unwrap().parse::<i64>().unwrap();
        match kind {
            "added" => {
                let seed = line.split(' ').nth(2).unwrap().parse().unwrap();
                assert!(into.added.insert(id(), seed).is_none(), "id reused: {line}");
            }
            "deleted" => {
                into.deleted.insert(id());
            }
            "imported" => {
                let seed = line.split(' ').nth(2).unwrap().parse().unwrap();
                assert!(
                    into.imported.insert(id(), seed).is_none(),
                    "imported twice: {line}"
                );
            }
            "already" => into.already += 1,
            "failed" => into.failed.push(line.clone()),
            other => panic!("unexpected worker output {other:?}"),
        }
    }
}

fn parent() {
    let started = Instant::now();
    let root = tempfile::tempdir().unwrap();
    let home = root.path().join("home");
    let src = root.path().join("src");
    let logs = root.path().join("logs");
    fs::create_dir_all(&src).unwrap();
    fs::create_dir_all(&logs).unwrap();
    import_folder(&src);

    let mut roles = Vec::new();
    for a in 0..ADDERS {
        roles.push(format!("add {} {ADDS}", a * 1_000));
    }
    for _ in 0..IMPORTERS {
        roles.push(format!("import {}", src.display()));
    }
    roles.push(format!("churn 50000 {CHURNS}"));
    let phase1: Vec<Worker> = roles
        .into_iter()
        .enumerate()
        .map(|(n, role)| spawn(role, &home, &logs, n))
        .collect();
    let mut reported = Reported::default();
    parse(&finish(phase1), &mut reported);
    let phase1_s = started.elapsed().as_secs_f64();

    let burst: Vec<Worker> = (0..BURST)
        .map(|i| {
            spawn(
                format!("add {} 1", 70_000 + i),
                &home,
                &logs,
                100 + i as usize,
            )
        })
        .collect();
    parse(&finish(burst), &mut reported);

    check(&home, &reported);
    eprintln!(
        "stress test: {} additions, {} deletes, {} imports ({} already there), {} processes, \
         phase 1 {phase1_s:.1} s, total {:.1} s",
        reported.added.len(),
        reported.deleted.len(),
        reported.imported.len(),
        reported.already,
        ADDERS as usize + IMPORTERS + 1 + BURST as usize,
        started.elapsed().as_secs_f64()
    );
}

fn check(home: &Path, reported: &Reported) {
    assert_eq!(reported.added.len() as u64, ADDERS * ADDS + BURST);
    assert_eq!(reported.deleted.len() as u64, CHURNS);
    // Each file is imported exactly once, whichever importer got it; the rest saw it there.
    let seeds: BTreeSet<u64> = reported.imported.values().copied().collect();
    assert_eq!(seeds, (9_000..9_000 + IMPORT_FILES).collect());
    assert_eq!(reported.imported.len() as u64, IMPORT_FILES);
    let attempts = (IMPORTERS * IMPORT_ROUNDS) as u64 * IMPORT_FILES;
    assert_eq!(reported.already as u64, attempts - IMPORT_FILES);
    if cfg!(unix) {
        assert_eq!(reported.failed.len(), IMPORTERS * IMPORT_ROUNDS);
        for line in &reported.failed {
            assert!(
                line.contains("fifo.png") && line.contains("not a regular file"),
                "{line}"
            );
        }
    }

    let g = Gallery::open(home).unwrap();
    assert!(g.open_report().is_clean(), "{:?}", g.open_report());
    assert_eq!(g.integrity_check().unwrap(), Vec::<String>::new());
    let all = g.list(&Filter::default(), None, 0).unwrap().items;
    let listed: BTreeMap<i64, &sumi_gallery::Generation> = all.iter().map(|x| (x.id, x)).collect();
    for (id, seed) in &reported.added {
        let gen = listed
            .get(id)
            .unwrap_or_else(|| panic!("reported addition #{id} is not listed"));
        assert_eq!(gen.params, common::params(*seed), "#{id}");
    }
    for (id, seed) in &reported.imported {
        assert_eq!(listed[id].params.seed, *seed);
    }
    for id in &reported.deleted {
        assert!(!listed.contains_key(id), "deleted #{id} is listed");
        assert!(matches!(g.get(*id), Err(GalleryError::NotFound(_))));
    }
    assert_eq!(
        all.len(),
        reported.added.len() + reported.imported.len(),
        "rows nobody reported"
    );
    for gen in &all {
        let img = image::load_from_memory_with_format(
            &fs::read(g.image_path(gen)).unwrap(),
            image::ImageFormat::Png,
        )
        .unwrap_or_else(|e| panic!("#{} does not decode: {e}", gen.id));
        assert_eq!((img.width(), img.height()), (SIDE, SIDE));
        assert!(g.thumb_path(gen).is_file(), "#{} has no thumbnail", gen.id);
    }
    assert!(
        !home.join(sumi_gallery::UNREADABLE_DIR).exists(),
        "files were moved aside"
    );
    for dir in [IMAGES_DIR, THUMBS_DIR] {
        let names: Vec<String> = fs::read_dir(home.join(dir))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert!(
            names.iter().all(|n| !n.starts_with('.')),
            "temp files left in {dir}: {names:?}"
        );
        assert_eq!(names.len(), all.len(), "files without rows in {dir}");
    }
    let conn = rusqlite::Connection::open(home.join(sumi_gallery::DB_FILE)).unwrap();
    let pending: i64 = conn
        .query_row("SELECT count(*) FROM pending_files", [], |r| r.get(0))
        .unwrap();
    assert_eq!(pending, 0, "journal entries left");
}
