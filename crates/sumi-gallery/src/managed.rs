//! Which paths are a gallery's own files, so that no command writes into them: the database
//! (with its `-wal`, `-shm` and `-journal` files), the lock file, and everything in `images/`,
//! `thumbs/`, `unreadable/` and `sources/`.
//!
//! A path is judged by where a write to it would land: its folder is resolved through symlinks
//! (also when the file or some of its folders do not exist yet), and when the path itself is a
//! symlink every target along its chain counts too. A file hard-linked into the gallery counts
//! as well, since writing into it would change the gallery's copy.

use std::{
    ffi::OsStr,
    fs,
    path::{Component, Path, PathBuf},
};

use crate::{DB_FILE, IMAGES_DIR, LOCK_FILE, SOURCES_DIR, THUMBS_DIR, UNREADABLE_DIR};

/// Folders of a gallery home whose whole contents are the gallery's.
const MANAGED_DIRS: &[&str] = &[IMAGES_DIR, THUMBS_DIR, UNREADABLE_DIR, SOURCES_DIR];
/// Most symlinks followed in one chain (as the kernel's limit).
const MAX_LINKS: usize = 40;

/// Whether a file directly in a gallery home is one of its own.
fn is_home_file(name: &OsStr) -> bool {
    let name = name.to_string_lossy().to_lowercase();
    name.starts_with(DB_FILE) || name == LOCK_FILE
}

/// `path` made absolute (against the current folder) without touching the file system.
fn absolute(path: &Path) -> PathBuf {
    if path.is_absolute() {
        return path.to_path_buf();
    }
    std::env::current_dir()
        .map(|d| d.join(path))
        .unwrap_or_else(|_| path.to_path_buf())
}

/// A folder path with symlinks resolved: the longest existing part is canonicalised and the
/// rest (folders that would be created) appended with `.` and `..` applied by hand.
fn resolve_dir(dir: &Path) -> PathBuf {
    let dir = absolute(dir);
    for base in dir.ancestors() {
        let Ok(real) = fs::canonicalize(base) else {
            continue;
        };
        let rest = dir.strip_prefix(base).unwrap_or(Path::new(""));
        let mut out = real;
        for part in rest.components() {
            match part {
                Component::ParentDir => {
                    out.pop();
                }
                Component::Normal(name) => out.push(name),
                _ => {}
            }
        }
        return out;
    }
    dir
}

/// Every place a write to `path` could land: the path in its resolved folder, then each symlink
/// target in turn while the path found is a symlink.
pub(crate) fn landing_places(path: &Path) -> Vec<PathBuf> {
    let mut places = Vec::new();
    let mut current = absolute(path);
    for _ in 0..MAX_LINKS {
        let place = match current.file_name() {
            Some(name)
                if !matches!(current.components().next_back(), Some(Component::ParentDir)) =>
            {
                let parent = current.parent().unwrap_or(Path::new("/"));
                resolve_dir(parent).join(name)
            }
            _ => resolve_dir(&current),
        };
        places.push(place.clone());
        match fs::read_link(&place) {
            Ok(target) => {
                let dir = place.parent().unwrap_or(Path::new("/"));
                current = dir.join(target);
            }
            Err(_) => break,
        }
    }
    places
}

/// Whether `place` (already resolved) is a managed file of the gallery whose home is `home`
/// (also resolved).
pub(crate) fn managed_in(home: &Path, place: &Path) -> bool {
    let Ok(rel) = place.strip_prefix(home) else {
        return false;
    };
    let mut parts = rel.components();
    let Some(Component::Normal(first)) = parts.next() else {
        return false;
    };
    let in_dir = MANAGED_DIRS
        .iter()
        .any(|d| first.to_string_lossy().eq_ignore_ascii_case(d));
    in_dir || (parts.next().is_none() && is_home_file(first))
}

/// Whether `place` (already resolved) lies in the managed files of any folder above it that
/// holds a gallery database.
fn in_some_gallery(place: &Path) -> bool {
    place
        .ancestors()
        .skip(1)
        .any(|home| home.join(DB_FILE).is_file() && managed_in(home, place))
}

/// Whether writing to `path` would write into the managed files of any gallery (found by its
/// database file in a folder above the path).
pub fn is_inside_a_gallery(path: &Path) -> bool {
    landing_places(path).iter().any(|p| in_some_gallery(p))
}

/// Whether writing to `path` would write into the managed files of the gallery whose data folder
/// is `home` (whether or not it holds a gallery yet), or of any other gallery.
pub fn is_managed_by(home: &Path, path: &Path) -> bool {
    is_managed(&resolve_dir(home), path)
}

/// Whether writing to `path` would write into the managed files of the gallery at `home`
/// (resolved), or of any other gallery.
pub(crate) fn is_managed(home: &Path, path: &Path) -> bool {
    let places = landing_places(path);
    places
        .iter()
        .any(|p| managed_in(home, p) || in_some_gallery(p))
        || hard_linked_into(home, path)
}

/// Whether an existing file at `path` shares its data with a gallery file (a hard link).
#[cfg(unix)]
fn hard_linked_into(home: &Path, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = fs::metadata(path) else {
        return false;
    };
    if !meta.is_file() || meta.nlink() < 2 {
        return false;
    }
    let same = |p: &Path| {
        fs::symlink_metadata(p).is_ok_and(|m| m.dev() == meta.dev() && m.ino() == meta.ino())
    };
    let in_home = fs::read_dir(home)
        .into_iter()
        .flatten()
        .flatten()
        .any(|e| is_home_file(&e.file_name()) && same(&e.path()));
    in_home
        || MANAGED_DIRS.iter().any(|d| {
            fs::read_dir(home.join(d))
                .into_iter()
                .flatten()
                .flatten()
                .any(|e| same(&e.path()))
        })
}

/// Hard links are not looked for on this system.
#[cfg(not(unix))]
fn hard_linked_into(_home: &Path, _path: &Path) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn managed_files_are_the_database_lock_and_managed_folders() {
        let home = Path::new("/h");
        for yes in [
            "/h/gallery.db",
            "/h/gallery.db-wal",
            "/h/gallery.db-shm",
            "/h/Gallery.DB-journal",
            "/h/gallery.lock",
            "/h/images",
            "/h/images/a.png",
            "/h/thumbs/a.jpg",
            "/h/unreadable/x/y.png",
            "/h/sources/a.png",
        ] {
            assert!(managed_in(home, Path::new(yes)), "{yes}");
        }
        for no in [
            "/h",
            "/h/exports/grid.png",
            "/h/grid.png",
            "/h/models/images/a.png",
            "/other/images/a.png",
            "/hh/images/a.png",
        ] {
            assert!(!managed_in(home, Path::new(no)), "{no}");
        }
    }

    #[test]
    fn folders_that_do_not_exist_yet_resolve_by_hand() {
        let dir = tempfile::tempdir().unwrap();
        let real = fs::canonicalize(dir.path()).unwrap();
        let p = dir.path().join("new/deeper/../x.png");
        assert_eq!(landing_places(&p), [real.join("new/x.png")]);
    }
}
