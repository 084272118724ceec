//! The runtime's error type.

/// What can go wrong in the layer both faces share; each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// A request or a choice that cannot be carried out, in words for the user.
    #[error("{0}")]
    Invalid(String),
    /// The engine refused something.
    #[error(transparent)]
    Engine(#[from] sumi_engine::Error),
    /// The gallery failed.
    #[error(transparent)]
    Gallery(#[from] sumi_gallery::GalleryError),
    /// Finding or fetching a model failed.
    #[error(transparent)]
    Hub(#[from] sumi_hub::HubError),
}

/// The runtime's result type.
pub type Result<T> = std::result::Result<T, RuntimeError>;
