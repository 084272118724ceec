//! What a family module says about its models: the facts and defaults the rest of the engine
//! reads instead of matching on the family itself.

/// How the text encoders' outputs become the network's context.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextStyle {
    /// One encoder, last layer after the final layer norm (SD 1.x).
    LastLayer,
    /// One encoder whose tower is stored without its last layer, so that the stored last layer
    /// (after the final layer norm) is the original's penultimate (SD 2.x).
    TruncatedLastLayer,
    /// Second-to-last layer of each encoder, concatenated; pooled output of the last (SDXL).
    Penultimate,
    /// T5's last layer makes the context; CLIP-L gives only its pooled output (Flux).
    Flux,
}

/// A linear latent -> RGB map fitted to a family's standard VAE: `rgb = latent · weights + bias`
/// in [-1, 1] colour units, one row per latent channel.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PreviewCoefficients {
    /// Rows: latent channels; columns: R, G, B.
    pub weights: &'static [[f32; 3]],
    /// Added to R, G, B.
    pub bias: [f32; 3],
}

/// How one text encoder of a family is stored in an LDM single-file checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LdmTextEncoder {
    /// The key prefix of its tensors.
    pub prefix: &'static str,
    /// OpenCLIP names with fused attention (else transformers' `CLIPTextModel` names).
    pub openclip: bool,
    /// Whether the tower's last resblock is left out (SD 2.x uses its penultimate layer).
    pub skip_last_layer: bool,
    /// Whether the tower ends in a text projection (SDXL's second encoder).
    pub projection: bool,
}

/// The attention head count of a UNet when its checkpoint does not say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Heads {
    /// The same number of heads in every block (SD 1.x: 8).
    Count(usize),
    /// Heads of this many channels (SD 2.x, SDXL: 64).
    Width(usize),
}

/// What a family's single-file (LDM layout) checkpoints look like.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LdmLayout {
    /// Its text encoders, in the order the pipeline uses them.
    pub text_encoders: &'static [LdmTextEncoder],
    /// UNet heads when no companion `.yaml` says.
    pub heads: Heads,
    /// The UNet's latent size for eps models and for v models.
    pub sample_size: (usize, usize),
}

/// The facts and defaults of one model family.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FamilySpec {
    /// Human-readable name.
    pub display_name: &'static str,
    /// How many text encoders the family's models have.
    pub text_encoders: usize,
    /// Which encoder layers make the context.
    pub text_style: TextStyle,
    /// Default classifier-free guidance scale.
    pub cfg: f64,
    /// The latent scaling factor of the family's standard VAE (for single files that carry no
    /// VAE config).
    pub scaling_factor: f64,
    /// Latent previews for the family's standard VAE.
    pub preview: PreviewCoefficients,
    /// Its single-file checkpoints.
    pub ldm: LdmLayout,
}
