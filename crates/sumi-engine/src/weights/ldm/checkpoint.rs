//! An LDM-layout single-file checkpoint opened for reading: its tensor shapes, which family it
//! is, and the settings a companion `.yaml` adds. Pickle formats are refused, never read.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::family::Family;
use crate::weights::safetensors::SafetensorsFiles;
use crate::{Error, Result};

pub(super) const UNET: &str = "model.diffusion_model.";
pub(super) const VAE: &str = "first_stage_model.";

/// A single-file checkpoint with the shapes of all its tensors.
pub struct Checkpoint {
    path: PathBuf,
    pub(super) st: SafetensorsFiles,
    pub(super) shapes: HashMap<String, Vec<usize>>,
}

impl std::fmt::Debug for Checkpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkpoint")
            .field("path", &self.path)
            .field("tensors", &self.shapes.len())
            .finish()
    }
}

/// Refuses pickle-based formats without reading them as pickles; the message says how to convert.
pub fn refuse_pickle(path: &Path) -> Error {
    Error::model(
        path,
        "pickle checkpoints (.ckpt/.pt/.pth/.bin) can run arbitrary code when loaded, so Sumi never \
         opens them. Convert the file to .safetensors first, for example with a trusted tool in an \
         isolated environment (python: `safetensors.torch.save_file(torch.load(path, weights_only=True)[\"state_dict\"], \"model.safetensors\")`), \
         or download the .safetensors version of the model",
    )
}

/// Whether `path` has an extension of a pickle-based weight format.
pub fn is_pickle_extension(path: &Path) -> bool {
    path.extension().and_then(|e| e.to_str()).is_some_and(|e| {
        matches!(
            e.to_ascii_lowercase().as_str(),
            "ckpt" | "pt" | "pth" | "bin" | "pkl" | "pickle"
        )
    })
}

impl Checkpoint {
    /// Opens `path` and reads its header; malformed files give an error naming the file.
    pub fn open(path: &Path) -> Result<Self> {
        if is_pickle_extension(path) {
            return Err(refuse_pickle(path));
        }
        let st = SafetensorsFiles::open(&[path.to_path_buf()])?;
        let shapes = st
            .shapes()
            .map(|(name, shape)| (name.to_string(), shape.to_vec()))
            .collect();
        Ok(Self {
            path: path.to_path_buf(),
            st,
            shapes,
        })
    }

    /// Where the file is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The shape of tensor `name`, if the file has it.
    pub fn shape(&self, name: &str) -> Option<&[usize]> {
        self.shapes.get(name).map(Vec::as_slice)
    }

    pub(crate) fn has(&self, name: &str) -> bool {
        self.shapes.contains_key(name)
    }

    pub(super) fn need(&self, name: &str) -> Result<&[usize]> {
        self.shape(name).ok_or_else(|| {
            Error::model(
                &self.path,
                format!("tensor {name} is missing; the file is incomplete or not a Stable Diffusion checkpoint"),
            )
        })
    }

    /// Counts `i = 0, 1, ...` while `pattern` with `{}` replaced by `i` names a tensor.
    pub(super) fn count(&self, pattern: &str) -> usize {
        (0..)
            .take_while(|i| self.has(&pattern.replace("{}", &i.to_string())))
            .count()
    }

    /// The model family, from which text encoders the file carries.
    pub fn family(&self) -> Result<Family> {
        let any = |p: &str| self.shapes.keys().any(|k| k.starts_with(p));
        if !any(UNET) {
            return Err(Error::model(
                &self.path,
                "no UNet weights (model.diffusion_model.*): not a Stable Diffusion single-file checkpoint \
                 (a LoRA, VAE or embedding file cannot be loaded as a model)",
            ));
        }
        // A family is the one whose text encoders are all there (SDXL's two first).
        let has_all = |f: &Family| f.spec().ldm.text_encoders.iter().all(|te| any(te.prefix));
        if let Some(family) = [Family::Sdxl, Family::Sd2, Family::Sd1]
            .into_iter()
            .find(has_all)
        {
            return Ok(family);
        }
        let sdxl = Family::Sdxl.spec().ldm.text_encoders;
        if sdxl.iter().any(|te| any(te.prefix)) {
            return Err(Error::model(
                &self.path,
                "SDXL refiner checkpoints (one OpenCLIP encoder) are not supported yet",
            ));
        }
        Err(Error::model(
            &self.path,
            "no text encoder weights (cond_stage_model.* or conditioner.embedders.*); \
             the file holds only part of a model",
        ))
    }
}

/// Settings read from a companion LDM `.yaml` next to the checkpoint (same stem).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct YamlHints {
    /// `parameterization: "v"` makes the model a v-prediction model.
    pub v_prediction: Option<bool>,
    /// `num_heads` (SD 1.x style: the same head count in every block).
    pub num_heads: Option<usize>,
    /// `num_head_channels` (SD 2.x/SDXL style: fixed width per head).
    pub num_head_channels: Option<usize>,
    /// `scale_factor`: the latent scaling factor.
    pub scale_factor: Option<f64>,
}

impl YamlHints {
    /// Reads the handful of scalar keys Sumi uses from an LDM config; other keys are ignored.
    pub fn parse(text: &str) -> Self {
        let mut h = Self::default();
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or("").trim();
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim().trim_matches(|c| c == '"' || c == '\'');
            match key.trim() {
                "parameterization" => h.v_prediction = Some(value == "v"),
                "num_heads" => h.num_heads = value.parse().ok().filter(|&n: &usize| n > 0),
                "num_head_channels" => {
                    h.num_head_channels = value.parse().ok().filter(|&n: &usize| n > 0)
                }
                "scale_factor" => {
                    h.scale_factor = value
                        .parse()
                        .ok()
                        .filter(|f: &f64| f.is_finite() && *f > 0.0)
                }
                _ => {}
            }
        }
        h
    }

    /// Reads `<stem>.yaml` (or `.yml`) next to `checkpoint`, if there is one.
    pub fn next_to(checkpoint: &Path) -> Result<Option<Self>> {
        for ext in ["yaml", "yml"] {
            let p = checkpoint.with_extension(ext);
            if p.is_file() {
                let meta = std::fs::metadata(&p)?;
                if meta.len() > 1 << 20 {
                    return Err(Error::model(
                        &p,
                        "config is larger than 1 MiB; not an LDM config",
                    ));
                }
                let text = crate::fileio::read_to_string(&p, 1 << 20)
                    .map_err(|e| Error::model(&p, format!("cannot read: {e}")))?;
                return Ok(Some(Self::parse(&text)));
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_hints_read_ldm_keys() {
        let h = YamlHints::parse(
            "model:\n  params:\n    parameterization: \"v\" # comment\n    scale_factor: 0.13025\n    unet_config:\n      params:\n        num_head_channels: 64\n",
        );
        assert_eq!(h.v_prediction, Some(true));
        assert_eq!(h.num_head_channels, Some(64));
        assert_eq!(h.scale_factor, Some(0.13025));
        assert_eq!(h.num_heads, None);
        assert_eq!(
            YamlHints::parse("parameterization: eps").v_prediction,
            Some(false)
        );
        assert_eq!(
            YamlHints::parse("num_heads: -1\nscale_factor: nan"),
            YamlHints::default()
        );
    }
}
