//! Repairs made when a gallery is opened after a crash or after files were changed by hand.

mod common;

use std::fs;

use common::{image, meta, params};
use sumi_gallery::{png_meta, Filter, Gallery, IMAGES_DIR, THUMBS_DIR, UNREADABLE_DIR};

#[test]
fn row_whose_image_is_gone_is_removed_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let g = Gallery::open(dir.path()).unwrap();
    let keep = g.add(&params(0), &meta(), &image(0)).unwrap();
    let lost = g.add(&params(1), &meta(), &image(1)).unwrap();
    fs::remove_file(g.image_path(&lost)).unwrap();
    let thumb = g.thumb_path(&lost);
    drop(g);
    let g = Gallery::open(dir.path()).unwrap();
    assert_eq!(g.open_report().removed_rows, [lost.id]);
    assert!(!thumb.exists());
    assert!(g.get(lost.id).is_err());
    assert!(g.get(keep.id).is_ok());
    assert!(
        g.search("lighthouse", &Filter::default(), None, 10)
            .unwrap()
            .items
            .len()
            == 1
    );
    drop(g);
    assert!(Gallery::open(dir.path()).unwrap().open_report().is_clean());
}

#[test]
fn image_without_row_is_readded_from_its_sumi_record() {
    let src = tempfile::tempdir().unwrap();
    let other = Gallery::open(src.path()).unwrap();
    let made = other.add(&params(4), &meta(), &image(4)).unwrap();

    let dir = tempfile::tempdir().unwrap();
    drop(Gallery::open(dir.path()).unwrap());
    let name = "1700000000000-00000000deadbeef.png";
    fs::copy(
        other.image_path(&made),
        dir.path().join(IMAGES_DIR).join(name),
    )
    .unwrap();
    let g = Gallery::open(dir.path()).unwrap();
    let report = g.open_report().clone();
    assert_eq!(report.reimported.len(), 1);
    let back = g.get(report.reimported[0]).unwrap();
    assert_eq!(back.params, made.params);
    assert_eq!(back.meta, made.meta);
    assert_eq!(back.created_at, made.created_at);
    assert_eq!(back.image_file, name);
    assert!(g.thumb_path(&back).exists());
}

#[test]
fn unreadable_image_without_row_is_moved_aside() {
    let dir = tempfile::tempdir().unwrap();
    drop(Gallery::open(dir.path()).unwrap());
    let images = dir.path().join(IMAGES_DIR);
    fs::write(images.join("broken.png"), b"\x89PNG trash").unwrap();
    // A PNG with A1111 text only: not Sumi's, so not silently adopted either.
    let foreign = png_meta::encode_png(
        &image(0),
        &[(
            png_meta::PARAMETERS_KEY,
            "x\nSteps: 1, Sampler: Euler, CFG scale: 1, Seed: 1, Size: 16x8",
        )],
    )
    .unwrap();
    fs::write(images.join("foreign.png"), foreign).unwrap();
    let g = Gallery::open(dir.path()).unwrap();
    let mut moved = g.open_report().moved_aside.clone();
    moved.sort();
    let aside = dir.path().join(UNREADABLE_DIR);
    assert_eq!(moved, [aside.join("broken.png"), aside.join("foreign.png")]);
    assert!(moved.iter().all(|p| p.exists()));
    assert!(!images.join("broken.png").exists());
    assert!(g
        .list(&Filter::default(), None, 10)
        .unwrap()
        .items
        .is_empty());
}

#[test]
fn temp_files_and_stray_thumbnails_are_removed_and_missing_thumbnails_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let g = Gallery::open(dir.path()).unwrap();
    let gen = g.add(&params(0), &meta(), &image(0)).unwrap();
    fs::remove_file(g.thumb_path(&gen)).unwrap();
    drop(g);
    let images = dir.path().join(IMAGES_DIR);
    let thumbs = dir.path().join(THUMBS_DIR);
    fs::write(images.join(".tmp-123-abc.png"), b"half written").unwrap();
    fs::write(thumbs.join(".tmp-123-abc.jpg"), b"half written").unwrap();
    fs::write(thumbs.join("orphan.jpg"), b"left over").unwrap();
    let g = Gallery::open(dir.path()).unwrap();
    let report = g.open_report();
    assert_eq!(report.temp_files_removed, 2);
    assert_eq!(report.stray_thumbnails_removed, 1);
    assert_eq!(report.thumbnails_rebuilt, 1);
    assert!(report.removed_rows.is_empty() && report.reimported.is_empty());
    assert!(image::open(g.thumb_path(&gen)).is_ok());
    assert!(!images.join(".tmp-123-abc.png").exists());
    assert!(!thumbs.join("orphan.jpg").exists());
}

#[test]
fn open_scans_only_when_the_folders_changed_behind_its_back() {
    let dir = tempfile::tempdir().unwrap();
    let g = Gallery::open(dir.path()).unwrap();
    assert!(g.open_report().scanned, "a new gallery is scanned once");
    let a = g.add(&params(0), &meta(), &image(0)).unwrap();
    let b = g.add(&params(1), &meta(), &image(1)).unwrap();
    g.delete(b.id).unwrap();
    drop(g);
    let g = Gallery::open(dir.path()).unwrap();
    assert!(
        !g.open_report().scanned,
        "own writes keep the stamp current"
    );
    let image_path = g.image_path(&a);
    drop(g);
    fs::remove_file(image_path).unwrap();
    let mut g = Gallery::open(dir.path()).unwrap();
    assert!(g.open_report().scanned);
    assert_eq!(g.open_report().removed_rows, [a.id]);
    let report = g.rescan().unwrap();
    assert!(report.scanned && report.is_clean());
}
