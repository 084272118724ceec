//! Sumi gallery.
