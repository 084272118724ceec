//! Building blocks shared by the networks: convolutions, group norm, resnet blocks, attention,
//! transformer blocks, timestep embeddings, up/down sampling. Tensor names follow diffusers.

mod attention;
mod conv;
mod embeddings;
mod linear;
mod norm;
mod resnet;
mod transformer;

pub use attention::{attention, Attention};
pub use conv::{conv2d, Conv2d, Downsample, Upsample};
pub use embeddings::{timestep_features, TimestepEmbedding};
pub use linear::{linear, linear_no_bias, Linear};
pub use norm::{group_norm, GroupNorm};
pub use resnet::ResnetBlock;
pub use transformer::{SpatialTransformer, TransformerShape};
