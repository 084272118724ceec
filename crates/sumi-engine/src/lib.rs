//! Sumi engine.
