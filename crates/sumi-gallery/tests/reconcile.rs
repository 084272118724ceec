//! Repairs made when a gallery is opened after a crash or after files were changed by hand.

mod common;

use std::{fs, time::Duration};

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

/// Makes a file look untouched for longer than the repair's bound.
fn age(path: &std::path::Path) {
    let old = std::time::SystemTime::now() - sumi_gallery::STALE_AFTER - Duration::from_secs(60);
    fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(old)
        .unwrap();
}

#[test]
fn unreadable_image_without_row_is_moved_aside_once_it_is_old() {
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
    // Recent: perhaps still being copied in.
    let g = Gallery::open(dir.path()).unwrap();
    let mut later = g.open_report().left_for_later.clone();
    later.sort();
    assert_eq!(
        later,
        [images.join("broken.png"), images.join("foreign.png")]
    );
    assert!(g.open_report().moved_aside.is_empty());
    drop(g);
    age(&images.join("broken.png"));
    age(&images.join("foreign.png"));
    let g = Gallery::open(dir.path()).unwrap();
    assert!(
        g.open_report().scanned,
        "files left for later are looked at again"
    );
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

#[test]
fn files_of_a_live_writer_are_left_alone_until_it_finishes() {
    let dir = tempfile::tempdir().unwrap();
    let g = Gallery::open(dir.path()).unwrap();
    let kept = g.add(&params(0), &meta(), &image(0)).unwrap();
    drop(g);
    let images = dir.path().join(IMAGES_DIR);
    let temp = images.join(".tmp-1-1-00000000000000aa");
    fs::write(&temp, b"half written").unwrap();
    let orphan = images.join("1700000000000-00000000000000bb.png");
    fs::write(&orphan, b"\x89PNG half").unwrap();
    // Another process in the middle of a write holds the writers' lock shared.
    let lock = fs::File::options()
        .read(true)
        .write(true)
        .open(dir.path().join(sumi_gallery::LOCK_FILE))
        .unwrap();
    lock.lock_shared().unwrap();
    let mut g = Gallery::open(dir.path()).unwrap();
    assert!(g.open_report().busy);
    assert!(g.open_report().is_clean());
    assert!(temp.exists() && orphan.exists());
    assert!(g.repair_if_needed().unwrap().busy);
    lock.unlock().unwrap();
    // Now it has died: its temp file goes; its unreadable image waits until it is old.
    let report = g.repair_if_needed().unwrap().clone();
    assert!(!report.busy);
    assert_eq!(report.temp_files_removed, 1);
    assert_eq!(report.left_for_later, std::slice::from_ref(&orphan));
    assert!(!temp.exists() && orphan.exists());
    assert!(g.get(kept.id).is_ok());
    drop(g);
    let g = Gallery::open(dir.path()).unwrap();
    assert!(
        g.open_report().scanned,
        "files left for later are looked at again"
    );
    assert_eq!(
        g.open_report().left_for_later,
        std::slice::from_ref(&orphan)
    );
}

#[test]
fn an_interrupted_delete_is_finished_not_undone() {
    let dir = tempfile::tempdir().unwrap();
    let g = Gallery::open(dir.path()).unwrap();
    let gone = g.add(&params(0), &meta(), &image(0)).unwrap();
    let kept = g.add(&params(1), &meta(), &image(1)).unwrap();
    drop(g);
    // What a delete leaves when killed after its transaction: no row, a journal entry, files.
    let conn = rusqlite::Connection::open(dir.path().join(sumi_gallery::DB_FILE)).unwrap();
    conn.execute_batch(&format!(
        "DELETE FROM generations WHERE id = {}; \
         INSERT INTO pending_files VALUES ('{}', '{}', 'delete', 1, 0);",
        gone.id, gone.image_file, gone.thumb_file
    ))
    .unwrap();
    drop(conn);
    let image_path = dir.path().join(IMAGES_DIR).join(&gone.image_file);
    assert!(image_path.exists());
    let g = Gallery::open(dir.path()).unwrap();
    let report = g.open_report();
    assert_eq!(report.deletes_finished, 1);
    assert!(report.reimported.is_empty(), "the deleted image came back");
    assert!(!image_path.exists());
    assert!(!dir.path().join(THUMBS_DIR).join(&gone.thumb_file).exists());
    assert!(g.get(kept.id).is_ok());
    drop(g);
    assert!(Gallery::open(dir.path()).unwrap().open_report().is_clean());
}
