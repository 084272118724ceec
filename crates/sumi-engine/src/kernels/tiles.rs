//! What the convolution kernels share to split work over rayon tasks.

/// One band of Winograd tile rows: global tile rows `g0..g0 + rows` over the batch, each image
/// `h x w` cut into `th x tw` tiles.
#[derive(Clone, Copy)]
pub(crate) struct Band {
    pub(crate) h: usize,
    pub(crate) w: usize,
    pub(crate) th: usize,
    pub(crate) tw: usize,
    pub(crate) g0: usize,
    pub(crate) rows: usize,
}

/// A pointer that rayon tasks share to write disjoint elements of one buffer.
#[derive(Clone, Copy)]
pub(crate) struct SharedMut(pub(crate) *mut f32);
// SAFETY: every user writes a set of elements no other task touches (documented at each use).
unsafe impl Send for SharedMut {}
unsafe impl Sync for SharedMut {}

impl SharedMut {
    /// The pointer (a method, so closures capture the whole `SharedMut`, not its field).
    pub(crate) fn get(self) -> *mut f32 {
        self.0
    }
}
