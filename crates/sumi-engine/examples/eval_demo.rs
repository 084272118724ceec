//! Evaluates the built-in demo model through the engine: generates pictures for held-out prompts
//! (tools/demo_model/eval_cases.json) over several seeds, names their colours and the object's
//! position with a simple detector, and prints accuracy per attribute and sampler.
//!
//! ```text
//! cargo run --release -p sumi-engine --example eval_demo -- [--model DIR] [--seeds N]
//!     [--cases N] [--cases-file CASES.json] [--cfg SCALE]
//!     [--samplers default|all|NAME,NAME] [--grid OUT.png] [--json OUT.json]
//! cargo run --release -p sumi-engine --example eval_demo -- detect IMAGE.png ...
//! ```

#[path = "../tests/support/demo_detect.rs"]
mod demo_detect;

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use candle_core::{DType, Device};
use image::RgbImage;
use sumi_engine::{generate, sampling, Model, Request};

type Res<T> = std::result::Result<T, Box<dyn std::error::Error>>;

struct Case {
    caption: String,
    color: String,
    background: String,
    position: String,
}

fn load_cases(path: &std::path::Path, n: usize) -> Res<Vec<Case>> {
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path)?)?;
    let s = |c: &serde_json::Value, k: &str| c[k].as_str().unwrap_or_default().to_string();
    Ok(json["cases"]
        .as_array()
        .ok_or("eval_cases.json has no cases")?
        .iter()
        .take(n)
        .map(|c| Case {
            caption: s(c, "caption"),
            color: s(c, "color"),
            background: s(c, "background"),
            position: s(c, "position"),
        })
        .collect())
}

#[derive(Default, Clone, Copy)]
struct Score {
    n: usize,
    object: usize,
    background: usize,
    position: usize,
    all: usize,
}

impl Score {
    fn pct(&self, k: usize) -> f64 {
        100.0 * k as f64 / self.n.max(1) as f64
    }
}

fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("detect") {
        for p in &args[1..] {
            let img = image::open(p)?.to_rgb8();
            println!("{p}: {:?}", demo_detect::detect(&img));
        }
        return Ok(());
    }
    let mut dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../assets/demo-model");
    let (mut seeds, mut ncases) = (3u64, 30usize);
    let mut samplers = "default".to_string();
    let (mut grid_out, mut json_out) = (None, None);
    let mut cfg = None;
    let mut cases_file =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tools/demo_model/eval_cases.json");
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        let mut v = || it.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--model" => dir = PathBuf::from(v()?),
            "--seeds" => seeds = v()?.parse()?,
            "--cases" => ncases = v()?.parse()?,
            "--cases-file" => cases_file = PathBuf::from(v()?),
            "--cfg" => cfg = Some(v()?.parse::<f64>()?),
            "--samplers" => samplers = v()?,
            "--grid" => grid_out = Some(PathBuf::from(v()?)),
            "--json" => json_out = Some(PathBuf::from(v()?)),
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    let model = Model::load(&dir, &Device::Cpu, DType::F32)?;
    let cases = load_cases(&cases_file, ncases)?;
    let mut defaults = model.info.defaults();
    if let Some(cfg) = cfg {
        defaults.cfg = cfg;
    }
    let names: Vec<String> = match samplers.as_str() {
        "default" => vec![defaults.sampler.to_string()],
        "all" => sampling::SAMPLERS
            .iter()
            .map(|s| s.name.to_string())
            .collect(),
        list => list.split(',').map(|s| s.trim().to_string()).collect(),
    };
    println!(
        "model {} ({}x{}), {} held-out prompts x {} seeds, {} steps, CFG {}",
        dir.display(),
        defaults.size,
        defaults.size,
        cases.len(),
        seeds,
        defaults.steps,
        defaults.cfg
    );
    let cancel = AtomicBool::new(false);
    let mut report = Vec::new();
    let mut grid: Vec<RgbImage> = Vec::new();
    println!(
        "{:<14} {:<10} {:>5} {:>8} {:>8} {:>8} {:>8} {:>7}",
        "sampler", "schedule", "n", "object", "backgr.", "position", "all", "s/img"
    );
    for name in &names {
        let (entry, sched) = sampling::parse_sampler(name)?;
        // The default sampler runs with the model's default schedule; others with their own.
        let schedule = match sched {
            Some(s) => s.name.to_string(),
            None if entry.name == defaults.sampler => defaults.schedule.to_string(),
            None => "Automatic".to_string(),
        };
        let mut score = Score::default();
        let t0 = Instant::now();
        for case in &cases {
            for seed in 0..seeds {
                let mut req = Request::with_defaults(&model.info, &case.caption, 1000 + seed);
                req.sampler = entry.name.to_string();
                req.schedule = schedule.clone();
                req.cfg = defaults.cfg;
                let img = generate(&model, &req, &cancel, &mut |_| {})?;
                let d = demo_detect::detect(&img);
                let (o, b, p) = (
                    d.object == case.color,
                    d.background == case.background,
                    d.position == case.position,
                );
                score.n += 1;
                score.object += o as usize;
                score.background += b as usize;
                score.position += p as usize;
                score.all += (o && b && p) as usize;
                if grid.len() < 60 && name == &names[0] {
                    grid.push(img);
                }
            }
        }
        let per = t0.elapsed().as_secs_f64() / score.n.max(1) as f64;
        println!(
            "{:<14} {:<10} {:>5} {:>7.1}% {:>7.1}% {:>7.1}% {:>7.1}% {:>7.2}",
            entry.name,
            schedule,
            score.n,
            score.pct(score.object),
            score.pct(score.background),
            score.pct(score.position),
            score.pct(score.all),
            per
        );
        report.push(serde_json::json!({
            "sampler": entry.name, "schedule": schedule, "n": score.n,
            "object_color": score.pct(score.object), "background_color": score.pct(score.background),
            "position": score.pct(score.position), "all_three": score.pct(score.all),
            "seconds_per_image": per,
        }));
    }
    if let Some(path) = json_out {
        std::fs::write(&path, serde_json::to_string_pretty(&report)?)?;
    }
    if let (Some(path), Some(first)) = (grid_out, grid.first()) {
        let (w, h) = first.dimensions();
        let cols = seeds.max(1) as u32 * 2;
        let rows = (grid.len() as u32).div_ceil(cols);
        let mut out = RgbImage::new(cols * w, rows * h);
        for (i, img) in grid.iter().enumerate() {
            let (c, r) = (i as u32 % cols, i as u32 / cols);
            image::imageops::replace(&mut out, img, (c * w) as i64, (r * h) as i64);
        }
        image::imageops::resize(
            &out,
            out.width() * 3,
            out.height() * 3,
            image::imageops::FilterType::Nearest,
        )
        .save(&path)?;
    }
    Ok(())
}
