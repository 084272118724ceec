//! Kill test: a child process saves images in a loop and is SIGKILLed at random moments; after
//! every kill the gallery must open with an intact database, every row's image must decode,
//! every id the child reported as saved must still be there, no deleted id may come back, and
//! the repair must have finished everything the child left: no temp file, no journal entry, no
//! image without row, and nothing moved to `unreadable/` (a killed write leaves either a temp
//! file or a complete image, never a broken one). In every other round the parent also opens
//! the gallery while the child is frozen (SIGSTOP) at a random point, perhaps mid-write; that
//! open must neither touch the child's files nor disturb it once it goes on (it would exit with
//! an error instead of being killed).
//!
//! This binary plays both parts: with `SUMI_KILL_CHILD=<home>` set it is the child.

mod common;

use std::{
    collections::BTreeSet,
    io::{Read, Write},
    process::{Command, Stdio},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use sumi_gallery::{Filter, Gallery};

const CHILD_ENV: &str = "SUMI_KILL_CHILD";
const ROUNDS: usize = 120;
/// Longest time a child runs before it is killed.
const MAX_LIFE_MS: u64 = 200;
/// How long an open beside a frozen child may wait before the child is let go on.
const FROZEN_WAIT: Duration = Duration::from_secs(2);

fn main() {
    match std::env::var_os(CHILD_ENV) {
        Some(home) => child(std::path::Path::new(&home)),
        None => parent(),
    }
}

/// Saves images forever, reporting each committed id on its own line; every fourth step it
/// deletes an image it saved, reporting the start and the end of the delete.
fn child(home: &std::path::Path) -> ! {
    let g = Gallery::open(home).expect("child could not open the gallery");
    let mut out = std::io::stdout().lock();
    let mut mine = Vec::new();
    for i in 0u64.. {
        if i % 4 == 3 && !mine.is_empty() {
            let id = mine.remove(0);
            writeln!(out, "deleting {id}").unwrap();
            out.flush().unwrap();
            g.delete(id).expect("child could not delete");
            writeln!(out, "deleted {id}").unwrap();
        } else {
            let saved = g
                .add(&common::params(i), &common::meta(), &common::image(i))
                .expect("child could not save");
            mine.push(saved.id);
            writeln!(out, "saved {}", saved.id).unwrap();
        }
        out.flush().unwrap();
    }
    unreachable!("the loop above never ends")
}

/// Stops (SIGSTOP) or resumes (SIGCONT) a child process.
#[cfg(unix)]
fn pause(child: &std::process::Child, stop: bool) {
    let signal = if stop { libc::SIGSTOP } else { libc::SIGCONT };
    // SAFETY: signalling our own child, which has not been waited for yet.
    assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, signal) }, 0);
}

/// Pausing needs Unix signals; elsewhere the open runs beside the running child.
#[cfg(not(unix))]
fn pause(_: &std::process::Child, _: bool) {}

/// A small xorshift generator seeded from the clock: kill moments differ run to run.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn parent() {
    let started = Instant::now();
    let home = tempfile::tempdir().unwrap();
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    eprintln!("kill test: seed {seed}");
    let mut rng = Rng(seed);
    let mut reported = BTreeSet::new();
    let mut deleted = BTreeSet::new();
    let mut deletes_started = 0;
    let mut repaired = 0;
    let mut waits = 0;
    for round in 0..ROUNDS {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .env(CHILD_ENV, home.path())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let life = rng.below(MAX_LIFE_MS);
        if round % 2 == 1 {
            std::thread::sleep(Duration::from_millis(life / 2));
            // Freeze the child wherever it is (perhaps mid-write, holding the lock), open the
            // gallery beside it, then let it go on: had the open touched its files, its next
            // step would fail and it would exit on its own.
            pause(&child, true);
            // Frozen inside SQLite's own exclusive moments (recovering the WAL its killed
            // predecessor left), the child makes every other connection wait: the open must
            // wait for it, not fail, so the child goes on if the open is still waiting.
            let opening = {
                let home = home.path().to_path_buf();
                std::thread::spawn(move || {
                    Gallery::open(&home).map(|g| g.open_report().moved_aside.clone())
                })
            };
            let frozen_since = Instant::now();
            while !opening.is_finished() && frozen_since.elapsed() < FROZEN_WAIT {
                std::thread::sleep(Duration::from_millis(5));
            }
            let waited = !opening.is_finished();
            if waited {
                waits += 1;
                pause(&child, false);
            }
            let moved_aside = opening
                .join()
                .unwrap()
                .unwrap_or_else(|e| panic!("round {round}: open beside a live writer failed: {e}"));
            assert!(moved_aside.is_empty(), "round {round}: {moved_aside:?}");
            if !waited {
                pause(&child, false);
            }
            std::thread::sleep(Duration::from_millis(life / 2));
        } else {
            std::thread::sleep(Duration::from_millis(life));
        }
        child.kill().unwrap(); // SIGKILL on Unix.
        let mut text = String::new();
        child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        let status = child.wait().unwrap();
        #[cfg(not(unix))]
        assert!(
            !status.success(),
            "round {round}: child exited on its own: {status}"
        );
        #[cfg(unix)]
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(9),
            "round {round}: child exited on its own (an error in the child?): {status}"
        );
        for line in text.split_inclusive('\n').filter(|l| l.ends_with('\n')) {
            let (what, id) = line.trim().split_once(' ').unwrap();
            let id: i64 = id.parse().unwrap();
            match what {
                "saved" => {
                    reported.insert(id);
                }
                "deleting" => {
                    // Whether it is still there depends on when the kill came.
                    reported.remove(&id);
                    deletes_started += 1;
                }
                "deleted" => {
                    deleted.insert(id);
                }
                other => panic!("unexpected child output {other:?}"),
            }
        }

        let g = Gallery::open(home.path())
            .unwrap_or_else(|e| panic!("round {round}: gallery failed to open after kill: {e}"));
        if !g.open_report().is_clean() {
            repaired += 1;
        }
        assert_eq!(
            g.integrity_check().unwrap(),
            Vec::<String>::new(),
            "round {round}"
        );
        let mut present = BTreeSet::new();
        let mut cursor = None;
        loop {
            let page = g.list(&Filter::default(), cursor, 200).unwrap();
            for gen in &page.items {
                let img = image::open(g.image_path(gen))
                    .unwrap_or_else(|e| panic!("round {round}: row {} image broken: {e}", gen.id));
                assert_eq!((img.width(), img.height()), (16, 8));
                assert!(
                    g.thumb_path(gen).exists(),
                    "round {round}: row {} thumbnail",
                    gen.id
                );
                present.insert(gen.id);
            }
            match page.next {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        let lost: Vec<_> = reported.difference(&present).collect();
        assert!(
            lost.is_empty(),
            "round {round}: reported ids lost: {lost:?}"
        );
        let back: Vec<_> = deleted.intersection(&present).collect();
        assert!(
            back.is_empty(),
            "round {round}: deleted ids came back: {back:?}"
        );
        let stray = std::fs::read_dir(home.path().join(sumi_gallery::IMAGES_DIR))
            .unwrap()
            .count();
        assert_eq!(
            stray,
            present.len(),
            "round {round}: image files without rows (or temp files)"
        );
        let thumbs = std::fs::read_dir(home.path().join(sumi_gallery::THUMBS_DIR))
            .unwrap()
            .count();
        assert_eq!(thumbs, present.len(), "round {round}: stray thumbnails");
        assert!(
            !home.path().join(sumi_gallery::UNREADABLE_DIR).exists(),
            "round {round}: a file was moved aside: {:?}",
            g.open_report()
        );
        let conn = rusqlite::Connection::open(home.path().join(sumi_gallery::DB_FILE)).unwrap();
        let pending: i64 = conn
            .query_row("SELECT count(*) FROM pending_files", [], |r| r.get(0))
            .unwrap();
        assert_eq!(pending, 0, "round {round}: journal entries left");
    }
    assert!(
        reported.len() >= ROUNDS / 4,
        "children saved only {} images; the kill moments never fell inside saves",
        reported.len()
    );
    eprintln!(
        "kill test: {ROUNDS} kills, {} saves and {deletes_started} deletes reported, \
         {repaired} opens repaired something, {waits} opens waited for a frozen child, {:.1} s",
        reported.len(),
        started.elapsed().as_secs_f64()
    );
}
