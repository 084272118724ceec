//! The gallery refuses to damage itself: outputs among its own files, FIFOs, repeated imports.

mod common;

use std::{fs, path::Path};

use common::{image, meta, params};
use sumi_gallery::{
    grid, png_meta, Filter, Gallery, GalleryError, DB_FILE, IMAGES_DIR, THUMBS_DIR,
};

fn foreign_png(path: &Path, seed: u64) {
    let text = format!("a fox\nSteps: 1, Sampler: Euler, CFG scale: 1, Seed: {seed}, Size: 16x8");
    let png = png_meta::encode_png(&image(seed), &[(png_meta::PARAMETERS_KEY, &text)]).unwrap();
    fs::write(path, png).unwrap();
}

#[cfg(unix)]
fn mkfifo(path: &Path) {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
}

#[test]
fn reimporting_a_file_or_folder_adds_nothing_and_names_the_generation() {
    let dir = tempfile::tempdir().unwrap();
    let src = tempfile::tempdir().unwrap();
    let g = Gallery::open(dir.path()).unwrap();
    for seed in 0..3 {
        foreign_png(&src.path().join(format!("{seed}.png")), seed);
    }
    let first = g.import_paths(&[src.path().to_path_buf()]);
    assert_eq!(first.imported.len(), 3);
    assert!(first.already_in_gallery.is_empty() && first.failed.is_empty());

    let again = g.import_paths(&[src.path().to_path_buf()]);
    assert!(again.imported.is_empty(), "{:?}", again.imported);
    let mut ids: Vec<i64> = again.already_in_gallery.iter().map(|(_, id)| *id).collect();
    ids.sort();
    let mut first_ids: Vec<i64> = first.imported.iter().map(|x| x.id).collect();
    first_ids.sort();
    assert_eq!(ids, first_ids);

    let one = src.path().join("1.png");
    let err = g.import(&one).unwrap_err();
    assert!(
        matches!(err, GalleryError::AlreadyInGallery { .. }),
        "{err}"
    );
    assert!(
        err.to_string().contains("already in the gallery as #"),
        "{err}"
    );
    // The gallery's own copy (with Sumi's chunk added) is the same picture too.
    let copy = g.image_path(&first.imported[0]);
    assert!(matches!(
        g.import(&copy),
        Err(GalleryError::AlreadyInGallery { .. })
    ));
    assert_eq!(g.count(&Filter::default()).unwrap(), 3);

    // Same pixels with other settings are another generation.
    let other = src.path().join("other.png");
    let text = "another prompt\nSteps: 1, Sampler: Euler, CFG scale: 1, Seed: 1, Size: 16x8";
    let png = png_meta::encode_png(&image(1), &[(png_meta::PARAMETERS_KEY, text)]).unwrap();
    fs::write(&other, png).unwrap();
    g.import(&other).unwrap();
}

#[test]
fn rows_from_before_the_hash_column_are_recognised_too() {
    let dir = tempfile::tempdir().unwrap();
    let src = tempfile::tempdir().unwrap();
    let file = src.path().join("a.png");
    foreign_png(&file, 5);
    let g = Gallery::open(dir.path()).unwrap();
    let first = g.import(&file).unwrap();
    drop(g);
    let conn = rusqlite::Connection::open(dir.path().join(DB_FILE)).unwrap();
    conn.execute("UPDATE generations SET pixel_hash = NULL", [])
        .unwrap();
    drop(conn);
    let g = Gallery::open(dir.path()).unwrap();
    match g.import(&file) {
        Err(GalleryError::AlreadyInGallery { id, .. }) => assert_eq!(id, first.id),
        other => panic!("expected a duplicate, got {other:?}"),
    }
}

#[test]
fn limit_zero_lists_everything() {
    let dir = tempfile::tempdir().unwrap();
    let g = Gallery::open(dir.path()).unwrap();
    for i in 0..3 {
        g.add(&params(i), &meta(), &image(i)).unwrap();
    }
    let page = g.list(&Filter::default(), None, 0).unwrap();
    assert_eq!(page.items.len(), 3);
    assert_eq!(page.next, None);
    let found = g.search("lighthouse", &Filter::default(), None, 0).unwrap();
    assert_eq!(found.items.len(), 3);
    assert_eq!(
        g.list(&Filter::default(), None, usize::MAX)
            .unwrap()
            .items
            .len(),
        3
    );
}

#[test]
fn the_gallerys_own_files_are_managed_paths() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let g = Gallery::open(&home).unwrap();
    let gen = g.add(&params(0), &meta(), &image(0)).unwrap();
    let own = g.image_path(&gen);
    for managed in [
        own.clone(),
        g.thumb_path(&gen),
        home.join(DB_FILE),
        home.join("gallery.db-wal"),
        home.join("gallery.db-shm"),
        home.join(sumi_gallery::LOCK_FILE),
        home.join(IMAGES_DIR).join("new.png"),
        home.join(IMAGES_DIR).join("sub/dir/new.png"),
        home.join(THUMBS_DIR),
        home.join("unreadable/x.png"),
        home.join("exports/../images/x.png"),
    ] {
        assert!(g.is_managed_path(&managed), "{}", managed.display());
    }
    for free in [
        dir.path().join("out.png"),
        home.join("exports/grid.png"),
        home.join("grid.png"),
        dir.path().join("images/x.png"),
    ] {
        assert!(!g.is_managed_path(&free), "{}", free.display());
    }
}

#[cfg(unix)]
#[test]
fn symlinks_and_hard_links_into_the_gallery_are_managed() {
    use std::os::unix::fs::symlink;
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let g = Gallery::open(&home).unwrap();
    let gen = g.add(&params(0), &meta(), &image(0)).unwrap();
    let own = g.image_path(&gen);

    let link = dir.path().join("link.png");
    symlink(&own, &link).unwrap();
    assert!(g.is_managed_path(&link));
    let dangling = dir.path().join("dangling.png");
    symlink(home.join(IMAGES_DIR).join("not-yet.png"), &dangling).unwrap();
    assert!(g.is_managed_path(&dangling));
    let chain = dir.path().join("chain.png");
    symlink(&link, &chain).unwrap();
    assert!(g.is_managed_path(&chain));
    let folder = dir.path().join("pics");
    symlink(home.join(IMAGES_DIR), &folder).unwrap();
    assert!(g.is_managed_path(&folder.join("x.png")));
    let db_link = dir.path().join("db");
    symlink(home.join(DB_FILE), &db_link).unwrap();
    assert!(g.is_managed_path(&db_link));

    let hard = dir.path().join("hard.png");
    fs::hard_link(&own, &hard).unwrap();
    assert!(g.is_managed_path(&hard));

    // Another gallery's files are refused by the free function too.
    assert!(sumi_gallery::is_inside_a_gallery(&link));
    assert!(!sumi_gallery::is_inside_a_gallery(
        &dir.path().join("free.png")
    ));
}

#[test]
fn exports_refuse_managed_paths_and_leave_the_image_intact() {
    let dir = tempfile::tempdir().unwrap();
    let g = Gallery::open(dir.path()).unwrap();
    let group = g.new_comparison_group().unwrap();
    let mut m = meta();
    m.comparison = Some(sumi_gallery::ComparisonSlot { group, position: 0 });
    let gen = g.add(&params(0), &m, &image(0)).unwrap();
    let own = g.image_path(&gen);
    let before = fs::read(&own).unwrap();

    let err = g.export_image(gen.id, &own).unwrap_err();
    assert!(matches!(err, GalleryError::ManagedPath(_)), "{err}");
    assert!(err.to_string().contains("gallery's own files"), "{err}");
    let err = g.export_grid(group, &dir.path().join(DB_FILE)).unwrap_err();
    assert!(matches!(err, GalleryError::ManagedPath(_)), "{err}");
    let (img, first) = g.group_grid(group).unwrap();
    let err = grid::write_png(&img, &first, &own).unwrap_err();
    assert!(matches!(err, GalleryError::ManagedPath(_)), "{err}");
    assert_eq!(fs::read(&own).unwrap(), before);
    assert!(g.integrity_check().unwrap().is_empty());

    let out = tempfile::tempdir().unwrap();
    let copy = out.path().join("copy.png");
    g.export_image(gen.id, &copy).unwrap();
    assert_eq!(fs::read(&copy).unwrap(), before);
    g.export_grid(group, &out.path().join("grid.png")).unwrap();
    let exported = g.exports_dir().unwrap().join("grid.png");
    g.export_grid(group, &exported).unwrap();
}

#[cfg(unix)]
#[test]
fn fifos_are_refused_without_hanging() {
    let dir = tempfile::tempdir().unwrap();
    let src = tempfile::tempdir().unwrap();
    let g = Gallery::open(dir.path()).unwrap();
    foreign_png(&src.path().join("a.png"), 1);
    let fifo = src.path().join("x.png");
    mkfifo(&fifo);
    let report = g.import_paths(&[src.path().to_path_buf()]);
    assert_eq!(report.imported.len(), 1);
    assert_eq!(report.failed.len(), 1, "{:?}", report.failed);
    assert_eq!(report.failed[0].0, fifo);
    assert!(report.failed[0].1.contains("not a regular file"));
    let err = g.import(&fifo).unwrap_err();
    assert!(matches!(err, GalleryError::NotRegularFile(_)), "{err}");
    let err = sumi_gallery::load_png(&fifo).unwrap_err();
    assert!(matches!(err, GalleryError::NotRegularFile(_)), "{err}");
    let err = sumi_gallery::read_regular_file(&fifo).unwrap_err();
    assert!(matches!(err, GalleryError::NotRegularFile(_)), "{err}");
    let direct = g.import_paths(std::slice::from_ref(&fifo));
    assert_eq!(direct.failed.len(), 1);
    assert!(direct.imported.is_empty());
}

#[cfg(unix)]
#[test]
fn a_fifo_inside_the_images_folder_is_moved_aside_without_hanging() {
    let dir = tempfile::tempdir().unwrap();
    let g = Gallery::open(dir.path()).unwrap();
    let gen = g.add(&params(0), &meta(), &image(0)).unwrap();
    drop(g);
    mkfifo(&dir.path().join(IMAGES_DIR).join("evil.png"));
    let g = Gallery::open(dir.path()).unwrap();
    let report = g.open_report();
    assert_eq!(
        report.moved_aside,
        [dir.path().join("unreadable").join("evil.png")]
    );
    assert!(g.get(gen.id).is_ok());
    assert_eq!(g.count(&Filter::default()).unwrap(), 1);
}

#[test]
fn threads_with_their_own_handles_add_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().to_path_buf();
    let handles: Vec<_> = (0..4u64)
        .map(|t| {
            let home = home.clone();
            std::thread::spawn(move || {
                (0..5)
                    .map(|i| {
                        let g = Gallery::open(&home).unwrap();
                        g.add(&params(t * 10 + i), &meta(), &image(i)).unwrap().id
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let ids: Vec<i64> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    let g = Gallery::open(&home).unwrap();
    assert_eq!(g.count(&Filter::default()).unwrap(), 20);
    for id in ids {
        assert!(fs::metadata(g.image_path(&g.get(id).unwrap())).is_ok());
    }
}
