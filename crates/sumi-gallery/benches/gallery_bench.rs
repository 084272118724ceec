//! Gallery benchmark with 100,000 records: open, first page, a later page, full-text search and
//! the favourites filter. Run with `cargo bench -p sumi-gallery --bench gallery_bench`.
//!
//! Rows are written in bulk in one transaction; every row's image and thumbnail are hard links
//! to one small placeholder, so the folders hold 100,000 real entries for reconciliation to scan.

use std::{
    fs,
    path::Path,
    time::{Duration, Instant},
};

use sumi_gallery::{png_meta, Cursor, Filter, Gallery, DB_FILE, IMAGES_DIR, THUMBS_DIR};

const ROWS: usize = 100_000;
const PAGE: usize = 100;
const REPEATS: usize = 25;

const WORDS: &[&str] = &[
    "portrait",
    "landscape",
    "castle",
    "forest",
    "river",
    "mountain",
    "city",
    "night",
    "sunset",
    "dragon",
    "knight",
    "robot",
    "cat",
    "dog",
    "fox",
    "owl",
    "ocean",
    "ship",
    "lighthouse",
    "storm",
    "flower",
    "garden",
    "temple",
    "desert",
    "snow",
    "winter",
    "autumn",
    "spring",
    "summer",
    "rain",
    "neon",
    "cyberpunk",
    "steampunk",
    "watercolor",
    "oil",
    "painting",
    "photo",
    "cinematic",
    "dramatic",
    "lighting",
    "golden",
    "hour",
    "misty",
    "ancient",
    "futuristic",
    "village",
    "bridge",
    "market",
    "library",
    "wizard",
    "witch",
    "samurai",
    "astronaut",
    "planet",
    "galaxy",
    "nebula",
    "crystal",
    "cave",
    "waterfall",
    "island",
    "volcano",
    "train",
    "station",
    "street",
    "cafe",
    "detailed",
    "intricate",
    "masterpiece",
    "sharp",
    "focus",
    "bokeh",
    "wide",
    "angle",
    "closeup",
];
const MODELS: &[&str] = &[
    "sd15",
    "sdxl-base",
    "dreamshaper",
    "anything-v5",
    "juggernaut",
];
const SAMPLERS: &[&str] = &["Euler a", "Euler", "DPM++ 2M", "DPM++ SDE", "DDIM", "UniPC"];

/// Deterministic pseudo-random numbers for the bench data.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

fn fill(home: &Path) {
    drop(Gallery::open(home).expect("open empty gallery"));
    let img = image::RgbImage::new(8, 8);
    let placeholder_bytes = png_meta::encode_png(&img, &[]).unwrap();
    // File systems cap links per file (ext4: 65,000), so a fresh placeholder every 30,000 rows.
    let placeholder = |i: usize| {
        let path = home.join(format!("placeholder-{}.png", i / 30_000));
        if !path.exists() {
            fs::write(&path, &placeholder_bytes).unwrap();
        }
        path
    };
    let (images, thumbs) = (home.join(IMAGES_DIR), home.join(THUMBS_DIR));
    let mut conn = rusqlite::Connection::open(home.join(DB_FILE)).unwrap();
    let tx = conn.transaction().unwrap();
    {
        let mut stmt = tx
            .prepare(
                "INSERT INTO generations (created_at, prompt, negative_prompt, seed, steps, cfg, \
                 sampler, schedule, width, height, model_name, model_hash, noise_source, \
                 engine_version, device, dtype, duration_ms, favourite, group_id, group_position, \
                 image_file, thumb_file) VALUES (?1, ?2, ?3, ?4, 20, 7.0, ?5, 'Karras', 512, 512, \
                 ?6, NULL, 'cpu', '0.1.0', 'cpu', 'f32', 1000, ?7, NULL, NULL, ?8, ?9)",
            )
            .unwrap();
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let base = 1_700_000_000_000i64;
        for i in 0..ROWS {
            let prompt: Vec<&str> = (0..10).map(|_| WORDS[rng.below(WORDS.len())]).collect();
            let negative: Vec<&str> = (0..3).map(|_| WORDS[rng.below(WORDS.len())]).collect();
            let image_file = format!("b{i:06}.png");
            let thumb_file = format!("b{i:06}.jpg");
            stmt.execute(rusqlite::params![
                base + i as i64 * 1000,
                prompt.join(" "),
                negative.join(", "),
                rng.below(1 << 30) as i64,
                SAMPLERS[rng.below(SAMPLERS.len())],
                MODELS[rng.below(MODELS.len())],
                rng.below(50) == 0,
                image_file,
                thumb_file,
            ])
            .unwrap();
            fs::hard_link(placeholder(2 * i), images.join(&image_file)).unwrap();
            fs::hard_link(placeholder(2 * i + 1), thumbs.join(&thumb_file)).unwrap();
        }
    }
    tx.commit().unwrap();
}

/// Runs `f` several times and prints the median and the worst time.
fn time<T>(label: &str, repeats: usize, mut f: impl FnMut() -> T) -> T {
    let mut times: Vec<Duration> = Vec::with_capacity(repeats);
    let mut last = None;
    for _ in 0..repeats {
        let t = Instant::now();
        last = Some(f());
        times.push(t.elapsed());
    }
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{label:<44} median {:>8.3} ms   max {:>8.3} ms   ({repeats} runs)",
        ms(times[repeats / 2]),
        ms(times[repeats - 1])
    );
    last.unwrap()
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    let t = Instant::now();
    fill(home);
    println!(
        "filled {ROWS} rows and {} file links in {:.1} s",
        2 * ROWS,
        t.elapsed().as_secs_f64()
    );

    drop(Gallery::open(home).unwrap());
    time("open (folders unchanged: no scan)", REPEATS, || {
        let g = Gallery::open(home).unwrap();
        assert!(!g.open_report().scanned);
    });
    let mut scan_times = Vec::new();
    for touch in 0..5 {
        // Touch the images folder so that open must scan and reconcile all 200,000 files.
        let marker = home.join(IMAGES_DIR).join(format!("touch{touch}.txt"));
        fs::write(&marker, b"x").unwrap();
        fs::remove_file(&marker).unwrap();
        let t = Instant::now();
        let g = Gallery::open(home).unwrap();
        scan_times.push(t.elapsed());
        assert!(g.open_report().scanned && g.open_report().is_clean());
    }
    scan_times.sort();
    println!(
        "{:<44} median {:>8.3} ms   max {:>8.3} ms   (5 runs)",
        "open after folder change (full scan)",
        scan_times[2].as_secs_f64() * 1000.0,
        scan_times[4].as_secs_f64() * 1000.0
    );
    let g = Gallery::open(home).unwrap();
    let all = Filter::default();
    let first = time("list: first page of 100", REPEATS, || {
        g.list(&all, None, PAGE).unwrap()
    });
    assert_eq!(first.items.len(), PAGE);
    let middle = Some(Cursor {
        created_at: 1_700_000_000_000 + 50_000 * 1000,
        id: 50_001,
    });
    let later = time("list: page of 100 after 50,000 rows", REPEATS, || {
        g.list(&all, middle, PAGE).unwrap()
    });
    assert_eq!(later.items.len(), PAGE);
    let mut cursor = None;
    time("list: walk 10 consecutive pages", 5, || {
        for _ in 0..10 {
            cursor = g.list(&all, cursor, PAGE).unwrap().next;
        }
    });
    let favs = Filter {
        favourites_only: true,
        ..Filter::default()
    };
    let fav_page = time("favourites: first page of 100", REPEATS, || {
        g.list(&favs, None, PAGE).unwrap()
    });
    assert_eq!(fav_page.items.len(), PAGE);
    let model = Filter {
        model: Some("dreamshaper".into()),
        ..Filter::default()
    };
    time("model filter: first page of 100", REPEATS, || {
        g.list(&model, None, PAGE).unwrap()
    });
    let hits = time("search \"lighthouse\": first page of 100", REPEATS, || {
        g.search("lighthouse", &all, None, PAGE).unwrap()
    });
    assert_eq!(hits.items.len(), PAGE);
    time(
        "search \"light\" (prefix): first page of 100",
        REPEATS,
        || g.search("light", &all, None, PAGE).unwrap(),
    );
    time(
        "search \"dragon castle night\": first page",
        REPEATS,
        || g.search("dragon castle night", &all, None, PAGE).unwrap(),
    );
    time("search \"lighthouse\", page after first", REPEATS, || {
        g.search("lighthouse", &all, hits.next, PAGE).unwrap()
    });
    time("search \"cat\" + favourites: first page", REPEATS, || {
        g.search("cat", &favs, None, PAGE).unwrap()
    });
    time("count all", REPEATS, || g.count(&all).unwrap());
    time("count favourites", REPEATS, || g.count(&favs).unwrap());
    time("get one by id", REPEATS, || g.get(77_777).unwrap());
    let picture = image::RgbImage::from_fn(512, 512, |x, y| {
        image::Rgb([((x * 7) ^ (y * 3)) as u8, (x + y) as u8, (x * y) as u8])
    });
    let request = g.rerun(1).unwrap();
    let meta = sumi_gallery::GenerationMeta::default();
    time("add a 512x512 image (PNG + thumbnail + fsyncs)", 10, || {
        g.add(&request, &meta, &picture).unwrap()
    });
}
