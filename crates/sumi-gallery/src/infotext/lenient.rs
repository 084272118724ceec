//! Reading a `parameters` text that lacks a setting or holds one that cannot be read, as A1111
//! does when it pastes one: what is missing or unreadable takes the value A1111's txt2img form
//! starts with, and each such setting is reported in a sentence for the import's note.

use super::{InfotextError, Parsed};
use crate::record::GenerationParams;

/// A1111's starting step count (v1.10 txt2img form).
pub const A1111_STEPS: u32 = 20;
/// A1111's starting CFG scale.
pub const A1111_CFG: f64 = 7.0;
/// A1111's starting sampler (v1.9 and later; its schedule is "Automatic").
pub const A1111_SAMPLER: &str = "DPM++ 2M";
/// A1111's starting image side.
pub const A1111_SIZE: u32 = 512;

/// Longest piece of an unreadable value quoted in a note.
const QUOTE_CHARS: usize = 40;

/// A request read from a `parameters` text, and what had to be assumed to complete it.
#[derive(Debug, Clone, PartialEq)]
pub struct Lenient {
    /// The request, every setting filled.
    pub params: GenerationParams,
    /// One sentence per setting that was missing or unreadable, saying what was recorded.
    pub problems: Vec<String>,
}

impl Parsed {
    /// Builds the full request as A1111 would paste it: a missing or unreadable setting takes
    /// A1111's starting value (a missing size, the image's own size when known) and is reported.
    /// Fails only when the text has no settings line at all.
    pub fn to_params_lenient(
        &self,
        image_size: Option<(u32, u32)>,
    ) -> Result<Lenient, InfotextError> {
        if !self.has_settings {
            return Err(InfotextError::NoSettings);
        }
        let mut f = Filler {
            extras: &self.extras,
            problems: Vec::new(),
        };
        let mut filled = self.clone();
        filled.steps = Some(f.or(
            self.steps,
            "Steps",
            A1111_STEPS,
            "20 (A1111's default) recorded",
        ));
        if self.sampler.is_none() {
            f.missing("Sampler", "DPM++ 2M (A1111's default) recorded");
            filled.sampler = Some(A1111_SAMPLER.to_string());
        }
        filled.cfg = Some(f.or(
            self.cfg,
            "CFG scale",
            A1111_CFG,
            "7 (A1111's default) recorded",
        ));
        filled.seed = Some(f.or(
            self.seed,
            "Seed",
            0,
            "0 recorded, so the image cannot be made again exactly",
        ));
        let (width, height) = f.size(self.width.zip(self.height), image_size);
        filled.width = Some(width);
        filled.height = Some(height);
        f.unreadable_only("ENSD", "0 (none) recorded");
        f.unreadable_only("Variation seed", "no variation seed recorded");
        f.unreadable_only("Variation seed strength", "0 recorded");
        f.unreadable_only("Clip skip", "1 (none skipped) recorded");
        let params = filled.to_params()?;
        Ok(Lenient {
            params,
            problems: f.problems,
        })
    }
}

/// Collects the sentences about settings that had to be filled in.
struct Filler<'a> {
    /// Pairs the parser could not store (known keys among them were unreadable).
    extras: &'a [(String, String)],
    problems: Vec<String>,
}

impl Filler<'_> {
    /// The unreadable value given for `key`, if the text had one.
    fn unreadable(&self, key: &str) -> Option<&str> {
        self.extras
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// `value`, or `fallback` with a sentence saying why (absent, or present but unreadable)
    /// and what was `recorded` instead.
    fn or<T>(&mut self, value: Option<T>, key: &str, fallback: T, recorded: &str) -> T {
        if let Some(v) = value {
            return v;
        }
        match self.unreadable(key) {
            Some(bad) => {
                let why = why_unreadable(key, bad);
                self.problems
                    .push(format!("{key} {} {why}: {recorded}", quoted(bad)));
            }
            None => self.missing(key, recorded),
        }
        fallback
    }

    /// Reports a setting the text lacks altogether.
    fn missing(&mut self, key: &str, recorded: &str) {
        self.problems
            .push(format!("the text has no {key}: {recorded}"));
    }

    /// Reports an optional setting only when it was present but unreadable (its default is
    /// then recorded, as when it is absent).
    fn unreadable_only(&mut self, key: &str, recorded: &str) {
        if let Some(bad) = self.unreadable(key) {
            let why = why_unreadable(key, bad);
            self.problems
                .push(format!("{key} {} {why}: {recorded}", quoted(bad)));
        }
    }

    /// The size read, else the image's own size, else A1111's.
    fn size(&mut self, read: Option<(u32, u32)>, image: Option<(u32, u32)>) -> (u32, u32) {
        if let Some(size) = read {
            return size;
        }
        let (size, recorded) = match image {
            Some((w, h)) => ((w, h), format!("the image's own size {w}x{h} recorded")),
            None => (
                (A1111_SIZE, A1111_SIZE),
                "512x512 (A1111's default) recorded".to_string(),
            ),
        };
        self.or(None, "Size", size, &recorded)
    }
}

/// Why a value of `key` could not be read, in words.
fn why_unreadable(key: &str, value: &str) -> &'static str {
    match key {
        "CFG scale" | "Variation seed strength" => match value.trim().parse::<f64>() {
            Ok(v) if v.is_nan() => "is not a number",
            Ok(_) => "is not a finite number",
            Err(_) => "is not a number",
        },
        "Size" => "is not a size in whole pixels (WIDTHxHEIGHT)",
        "Seed" | "Variation seed" | "ENSD" => {
            "is not a whole number from 0 to 18446744073709551615"
        }
        _ => "is not a whole number from 0 to 4294967295",
    }
}

/// A value for a note: in quotes, and cut short when long.
fn quoted(value: &str) -> String {
    let mut shown: String = value.chars().take(QUOTE_CHARS).collect();
    if value.chars().count() > QUOTE_CHARS {
        shown.push('…');
    }
    format!("\"{shown}\"")
}
