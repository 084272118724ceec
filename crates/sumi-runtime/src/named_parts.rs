//! The parts an image made by another tool names in its infotext (Forge's `Module 1`, ...,
//! A1111's `VAE`), found beside the model a re-run loads, so that it runs with the same files.

use std::path::Path;

use sumi_engine::model::companions::{find_named, part_kind, search_dirs, PartKind};
use sumi_engine::model::{default_part, is_flux_file};
use sumi_gallery::{GenerationParams, ModelFiles};

use crate::model_files::absolute;

/// The parts `p` names, found beside the model at `model`, as the record of files a re-run fills
/// its options from ([`crate::model_files::fill_options`]); `None` when it names none or none
/// that changes what Sumi loads. A part that is the one Sumi takes anyway for a Flux file is
/// left out, so a re-run on the loaded model does not load it again for nothing. Names that are
/// not found, or are not parts Sumi can use on this model, are told to `note`.
pub fn from_names(
    p: &GenerationParams,
    model: &Path,
    note: &mut dyn FnMut(&str),
) -> Option<ModelFiles> {
    // Forge reads an A1111 `VAE` as its only module.
    let names: Vec<&str> = match (&p.vae_name, p.modules.is_empty()) {
        (_, false) => p.modules.iter().map(String::as_str).collect(),
        (Some(vae), true) => vec![vae.as_str()],
        (None, true) => return None,
    };
    let flux = is_flux_file(model);
    let mut files = ModelFiles {
        model: absolute(model).display().to_string(),
        ..Default::default()
    };
    for name in names {
        // CLIP-L and T5 share their folders.
        let found = [PartKind::Vae, PartKind::T5]
            .into_iter()
            .find_map(|k| find_named(model, name, k));
        let Some(path) = found else {
            let mut dirs: Vec<String> = Vec::new();
            for d in [PartKind::Vae, PartKind::T5]
                .map(|k| search_dirs(model, k))
                .concat()
            {
                let d = d.display().to_string();
                if !dirs.contains(&d) {
                    dirs.push(d);
                }
            }
            note(&format!(
                "{name}, which this image was made with, is not among the .safetensors and .gguf \
                 files in {}; the re-run uses the parts Sumi finds (name it with --vae, --t5 or \
                 --clip-l).",
                dirs.join(", ")
            ));
            continue;
        };
        let Some(kind) = part_kind(&path) else {
            note(&format!(
                "{} is neither a VAE nor a CLIP-L or T5 text encoder Sumi can read; left out.",
                path.display()
            ));
            continue;
        };
        if !flux && kind != PartKind::Vae {
            note(&format!(
                "{name} is a {}; Sumi runs this model with its own text encoders.",
                kind.what()
            ));
            continue;
        }
        if flux && default_part(model, kind).as_deref() == Some(path.as_path()) {
            continue;
        }
        let slot = match kind {
            PartKind::Vae => &mut files.vae,
            PartKind::ClipL => &mut files.clip_l,
            PartKind::T5 => &mut files.t5,
        };
        slot.get_or_insert(absolute(&path).display().to_string());
    }
    (files.vae.is_some() || files.clip_l.is_some() || files.t5.is_some()).then_some(files)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn fixtures() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
    }

    fn copy(from: &str, to: &Path) {
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(fixtures().join(from), to).unwrap();
    }

    #[test]
    fn an_a1111_vae_name_is_found_in_the_vae_folder_and_text_encoders_are_not_taken() {
        let dir = tempfile::tempdir().unwrap();
        let models = dir.path().join("models");
        let model = models.join("Stable-diffusion/sd15");
        std::fs::create_dir_all(&model).unwrap();
        let vae = models.join("VAE/sub/vae-ft-mse.safetensors");
        copy("sd15/vae/diffusion_pytorch_model.safetensors", &vae);
        copy(
            "flux/pipe-dev/text_encoder/model.safetensors",
            &models.join("text_encoder/clip_l.safetensors"),
        );
        let mut p = GenerationParams {
            vae_name: Some("vae-ft-mse.safetensors".into()),
            ..Default::default()
        };
        let mut notes = Vec::new();
        let files = from_names(&p, &model, &mut |n| notes.push(n.to_string())).unwrap();
        assert_eq!(files.vae, Some(absolute(&vae).display().to_string()));
        assert_eq!((files.t5, files.clip_l), (None, None));
        assert!(notes.is_empty(), "{notes:?}");

        // Forge's modules: the text encoder is not for this model; a missing name is told.
        p.modules = ["vae-ft-mse", "clip_l", "sdxl_vae"]
            .map(String::from)
            .to_vec();
        let files = from_names(&p, &model, &mut |n| notes.push(n.to_string())).unwrap();
        assert_eq!(files.vae, Some(absolute(&vae).display().to_string()));
        assert_eq!(notes.len(), 2, "{notes:?}");
        assert!(
            notes[0].contains("clip_l is a CLIP-L text encoder; Sumi runs this model with its own"),
            "{notes:?}"
        );
        assert!(notes[1].starts_with("sdxl_vae, which this image was made with, is not among"));

        // Nothing named: nothing to fill.
        assert_eq!(
            from_names(&GenerationParams::default(), &model, &mut |_| {}),
            None
        );
    }

    #[test]
    fn flux_modules_that_sumi_takes_anyway_are_left_out() {
        let dir = tempfile::tempdir().unwrap();
        let models = dir.path().join("models");
        let model = models.join("unet/flux1-dev-pipe-Q8_0.gguf");
        copy("flux/files/flux1-dev-pipe-Q8_0.gguf", &model);
        copy(
            "flux/pipe-dev/vae/diffusion_pytorch_model.safetensors",
            &models.join("vae/ae.safetensors"),
        );
        let t5 = models.join("clip/t5xxl_fp8_e4m3fn.safetensors");
        copy("flux/pipe-dev/text_encoder_2/model.safetensors", &t5);
        copy(
            "flux/pipe-dev/text_encoder_2/model.safetensors",
            &models.join("clip/t5xxl_fp16.safetensors"),
        );
        let p = GenerationParams {
            modules: ["ae", "t5xxl_fp8_e4m3fn"].map(String::from).to_vec(),
            ..Default::default()
        };
        let files = from_names(&p, &model, &mut |n| panic!("{n}")).unwrap();
        assert_eq!(files.t5, Some(absolute(&t5).display().to_string()));
        assert_eq!((files.vae, files.clip_l), (None, None));
        // Only parts Sumi would take anyway: no record, so a loaded model is not loaded again.
        let p = GenerationParams {
            modules: ["ae", "t5xxl_fp16"].map(String::from).to_vec(),
            ..Default::default()
        };
        assert_eq!(from_names(&p, &model, &mut |n| panic!("{n}")), None);
    }
}
