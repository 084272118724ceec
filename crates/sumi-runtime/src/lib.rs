//! What Sumi's two faces, the desktop app and the `sumi` command, share: the one conversion
//! between the engine's request and the gallery's record, loading a model as both do, the
//! generation worker and its queue, re-running a gallery image, importing images with the
//! engine's rules, comparisons, seeds, and the limits and name tables handed to the page. The
//! faces only parse input and show output.

pub mod compare;
mod error;
pub mod form;
pub mod import;
pub mod limits;
pub mod load;
pub mod model_files;
pub mod named_parts;
pub mod networks;
pub mod record;
pub mod rerun;
pub mod seed;
pub mod sources;
pub mod worker;

pub use error::{Result, RuntimeError};
