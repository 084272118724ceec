//! What a family module says about its models: the facts and defaults the rest of the engine
//! reads instead of matching on the family itself.

/// How the text encoders' outputs become the network's context.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextStyle {
    /// One encoder, last layer after the final layer norm (SD 1.x, SD 2.x).
    LastLayer,
    /// Second-to-last layer of each encoder, concatenated; pooled output of the last (SDXL).
    Penultimate,
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
}
