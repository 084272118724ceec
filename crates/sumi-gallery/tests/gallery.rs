//! Gallery operations end to end on a temporary home folder.

mod common;

use std::{fs, io::Cursor};

use common::{image, meta, params};
use sumi_gallery::{
    infotext,
    png_meta::{self, PARAMETERS_KEY, SUMI_KEY},
    ComparisonSlot, Cursor as PageCursor, EmbeddedRecord, Filter, Gallery, GalleryError,
    ModelFiles,
};

fn filled(n: u64) -> (tempfile::TempDir, Gallery, Vec<i64>) {
    let dir = tempfile::tempdir().unwrap();
    let g = Gallery::open(dir.path()).unwrap();
    let ids = (0..n)
        .map(|i| g.add(&params(i), &meta(), &image(i)).unwrap().id)
        .collect();
    (dir, g, ids)
}

#[test]
fn add_writes_png_thumbnail_and_row() {
    let (_dir, g, ids) = filled(1);
    let gen = g.get(ids[0]).unwrap();
    assert_eq!(gen.params, params(0));
    assert_eq!(gen.meta, meta());
    assert!(!gen.favourite);
    let bytes = fs::read(g.image_path(&gen)).unwrap();
    assert_eq!(image::load_from_memory(&bytes).unwrap().to_rgb8(), image(0));
    let chunks = png_meta::read_text_chunks(Cursor::new(&bytes)).unwrap();
    assert_eq!(chunks[0].key, PARAMETERS_KEY);
    assert_eq!(chunks[0].text, infotext::format(&params(0)));
    let embedded: EmbeddedRecord = serde_json::from_str(&chunks[1].text).unwrap();
    assert_eq!(chunks[1].key, SUMI_KEY);
    assert_eq!(embedded.params, params(0));
    assert_eq!(embedded.created_at, gen.created_at);
    let thumb = image::open(g.thumb_path(&gen)).unwrap();
    assert_eq!((thumb.width(), thumb.height()), (16, 8));
    assert!(g.open_report().is_clean());
}

#[test]
fn model_files_are_kept_in_the_database_and_not_in_the_png() {
    let (dir, g, ids) = filled(2);
    assert_eq!(g.get(ids[0]).unwrap().model_files, None);
    let files = ModelFiles {
        model: "/models/flux1-dev-Q8_0.gguf".into(),
        vae: Some("/models/vae/ae.safetensors".into()),
        t5: Some("/models/t5xxl_fp16.safetensors".into()),
        tokenizer_dirs: vec!["/models/tokenizers".into()],
        ..Default::default()
    };
    g.set_model_files(ids[0], &files).unwrap();
    let gen = g.get(ids[0]).unwrap();
    assert_eq!(gen.model_files.as_ref(), Some(&files));
    assert_eq!(g.get(ids[1]).unwrap().model_files, None);
    // Another process sees them; the PNG does not carry them.
    let other = Gallery::open(dir.path()).unwrap();
    assert_eq!(other.get(ids[0]).unwrap().model_files, Some(files));
    let bytes = fs::read(g.image_path(&gen)).unwrap();
    assert!(!String::from_utf8_lossy(&bytes).contains("/models/"));
    assert!(matches!(
        g.set_model_files(9999, &ModelFiles::default()),
        Err(GalleryError::NotFound(9999))
    ));
}

#[test]
fn large_images_get_small_thumbnails() {
    let dir = tempfile::tempdir().unwrap();
    let g = Gallery::open(dir.path()).unwrap();
    let big = image::RgbImage::new(640, 320);
    let gen = g.add(&params(0), &meta(), &big).unwrap();
    let thumb = image::open(g.thumb_path(&gen)).unwrap();
    assert_eq!((thumb.width(), thumb.height()), (256, 128));
}

#[test]
fn list_pages_newest_first_without_gaps_or_repeats() {
    let (_dir, g, ids) = filled(25);
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = g.list(&Filter::default(), cursor, 7).unwrap();
        assert!(page.items.len() <= 7);
        seen.extend(page.items.iter().map(|x| x.id));
        match page.next {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    let mut expected = ids.clone();
    expected.reverse();
    assert_eq!(seen, expected);
}

#[test]
fn cursor_orders_by_creation_time_then_id() {
    let (_dir, g, ids) = filled(5);
    let after = g.get(ids[2]).unwrap();
    let page = g
        .list(
            &Filter::default(),
            Some(PageCursor {
                created_at: after.created_at,
                id: after.id,
            }),
            100,
        )
        .unwrap();
    let got: Vec<i64> = page.items.iter().map(|x| x.id).collect();
    assert_eq!(got, [ids[1], ids[0]]);
    assert_eq!(page.next, None);
}

#[test]
fn filters_by_model_sampler_favourite_and_date() {
    let (_dir, g, ids) = filled(12);
    let only = |f: Filter| -> Vec<i64> {
        let mut v: Vec<i64> = g
            .list(&f, None, 100)
            .unwrap()
            .items
            .iter()
            .map(|x| x.id)
            .collect();
        v.sort();
        v
    };
    let sd15 = only(Filter {
        model: Some("sd15".into()),
        ..Filter::default()
    });
    assert_eq!(sd15, ids.iter().step_by(2).copied().collect::<Vec<_>>());
    let euler = only(Filter {
        sampler: Some("Euler a".into()),
        ..Filter::default()
    });
    assert_eq!(euler, ids.iter().step_by(3).copied().collect::<Vec<_>>());

    g.set_favourite(ids[4], true).unwrap();
    g.set_favourite(ids[7], true).unwrap();
    g.set_favourite(ids[7], false).unwrap();
    let favs = only(Filter {
        favourites_only: true,
        ..Filter::default()
    });
    assert_eq!(favs, [ids[4]]);
    assert_eq!(g.count(&Filter::default()).unwrap(), 12);
    let fav_filter = Filter {
        favourites_only: true,
        ..Filter::default()
    };
    assert_eq!(g.count(&fav_filter).unwrap(), 1);
    assert!(g.get(ids[4]).unwrap().favourite);
    assert!(matches!(
        g.set_favourite(9999, true),
        Err(GalleryError::NotFound(9999))
    ));

    let t = g.get(ids[5]).unwrap().created_at;
    let in_range = only(Filter {
        created_from: Some(t),
        created_before: Some(t + 1),
        ..Filter::default()
    });
    assert!(in_range.contains(&ids[5]));
    assert!(in_range
        .iter()
        .all(|id| g.get(*id).unwrap().created_at == t));
    let none = only(Filter {
        created_before: Some(0),
        ..Filter::default()
    });
    assert!(none.is_empty());
}

#[test]
fn search_matches_prefixes_in_prompts_and_negatives() {
    let (_dir, g, ids) = filled(6);
    let mut other = params(100);
    other.prompt = "portrait of a cat wearing a tiny hat".into();
    other.negative_prompt = "watermark, jpeg artifacts".into();
    let cat = g.add(&other, &meta(), &image(100)).unwrap().id;

    let ids_of = |q: &str, f: &Filter| -> Vec<i64> {
        g.search(q, f, None, 100)
            .unwrap()
            .items
            .iter()
            .map(|x| x.id)
            .collect()
    };
    assert_eq!(ids_of("cat", &Filter::default()), [cat]);
    assert_eq!(ids_of("POrtr", &Filter::default()), [cat]);
    assert_eq!(ids_of("waterm", &Filter::default()), [cat]);
    assert_eq!(ids_of("lighthouse number", &Filter::default()).len(), 6);
    assert_eq!(
        ids_of("lighthouse cat", &Filter::default()),
        Vec::<i64>::new()
    );
    let blurry = ids_of("blur", &Filter::default());
    assert_eq!(blurry, [ids[4], ids[2], ids[0]]);
    let blurry_xl = ids_of(
        "blur",
        &Filter {
            model: Some("sdxl".into()),
            ..Filter::default()
        },
    );
    assert!(blurry_xl.is_empty());
    // FTS syntax in user text is neutralised, never an error.
    for nasty in [
        "\"",
        "cat*",
        "a AND OR NOT",
        "(",
        "col:x",
        "^",
        "NEAR(a b)",
        "-",
        "' OR 1=1 --",
        "",
    ] {
        g.search(nasty, &Filter::default(), None, 10).unwrap();
    }
    // Paging through search results.
    let first = g.search("lighthouse", &Filter::default(), None, 4).unwrap();
    let second = g
        .search("lighthouse", &Filter::default(), first.next, 4)
        .unwrap();
    assert_eq!(first.items.len(), 4);
    assert_eq!(second.items.len(), 2);
    assert!(second.items.iter().all(|x| x.id < first.items[3].id));
}

#[test]
fn search_index_follows_deletes() {
    let (_dir, g, ids) = filled(3);
    g.delete(ids[1]).unwrap();
    let found: Vec<i64> = g
        .search("lighthouse", &Filter::default(), None, 10)
        .unwrap()
        .items
        .iter()
        .map(|x| x.id)
        .collect();
    assert_eq!(found, [ids[2], ids[0]]);
}

#[test]
fn delete_removes_row_image_and_thumbnail() {
    let (_dir, g, ids) = filled(2);
    let gen = g.get(ids[0]).unwrap();
    g.delete(ids[0]).unwrap();
    assert!(matches!(g.get(ids[0]), Err(GalleryError::NotFound(_))));
    assert!(!g.image_path(&gen).exists());
    assert!(!g.thumb_path(&gen).exists());
    assert!(matches!(g.delete(ids[0]), Err(GalleryError::NotFound(_))));
    assert!(g.get(ids[1]).is_ok());
}

#[test]
fn rerun_returns_the_exact_request() {
    let dir = tempfile::tempdir().unwrap();
    let g = Gallery::open(dir.path()).unwrap();
    let mut p = params(3);
    p.seed = u64::MAX;
    p.cfg = 0.1 + 0.2;
    p.prompt = "multi\nline, with: colons".into();
    let id = g.add(&p, &meta(), &image(3)).unwrap().id;
    drop(g);
    let g = Gallery::open(dir.path()).unwrap();
    assert_eq!(g.rerun(id).unwrap(), p);
    let json = serde_json::to_string(&g.rerun(id).unwrap()).unwrap();
    assert_eq!(
        serde_json::from_str::<sumi_gallery::GenerationParams>(&json).unwrap(),
        p
    );
}

#[test]
fn comparison_groups_list_by_position() {
    let dir = tempfile::tempdir().unwrap();
    let g = Gallery::open(dir.path()).unwrap();
    let group = g.new_comparison_group().unwrap();
    assert_ne!(group, g.new_comparison_group().unwrap());
    let mut added = Vec::new();
    for pos in [2, 0, 1] {
        let m = sumi_gallery::GenerationMeta {
            comparison: Some(ComparisonSlot {
                group,
                position: pos,
            }),
            ..meta()
        };
        added.push(g.add(&params(pos as u64), &m, &image(0)).unwrap().id);
    }
    g.add(&params(9), &meta(), &image(9)).unwrap();
    let members: Vec<i64> = g
        .comparison_group(group)
        .unwrap()
        .iter()
        .map(|x| x.id)
        .collect();
    assert_eq!(members, [added[1], added[2], added[0]]);
    let listed = g
        .list(
            &Filter {
                group: Some(group),
                ..Filter::default()
            },
            None,
            10,
        )
        .unwrap();
    assert_eq!(listed.items.len(), 3);
    assert_eq!(
        g.get(added[0]).unwrap().meta.comparison,
        Some(ComparisonSlot { group, position: 2 })
    );
}

/// Writes a PNG as an A1111-compatible tool would: only a `parameters` chunk.
fn foreign_png(path: &std::path::Path, text: &str) {
    let png = png_meta::encode_png(&image(7), &[(PARAMETERS_KEY, text)]).unwrap();
    fs::write(path, png).unwrap();
}

#[test]
fn imports_a1111_style_pngs_and_keeps_their_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let src = tempfile::tempdir().unwrap();
    let g = Gallery::open(dir.path()).unwrap();
    let text = "a watercolor fox\nNegative prompt: ugly\nSteps: 28, Sampler: DPM++ 2M Karras, \
        CFG scale: 6, Seed: 77, Size: 16x8, Model hash: 7f96a1a9ca, Model: anything-v5, \
        Denoising strength: 0.4, Version: v1.6.0";
    let file = src.path().join("00001-77.png");
    foreign_png(&file, text);
    let gen = g.import(&file).unwrap();
    assert_eq!(gen.params.prompt, "a watercolor fox");
    assert_eq!(gen.params.negative_prompt, "ugly");
    assert_eq!(gen.params.sampler, "DPM++ 2M");
    assert_eq!(gen.params.schedule, "Karras");
    assert_eq!(gen.params.seed, 77);
    assert_eq!(gen.meta.engine_version, "v1.6.0");
    // The gallery copy keeps the original text and gains Sumi's record.
    let copy = fs::read(g.image_path(&gen)).unwrap();
    let chunks = png_meta::read_text_chunks(Cursor::new(&copy)).unwrap();
    assert!(chunks
        .iter()
        .any(|c| c.key == PARAMETERS_KEY && c.text == text));
    assert!(chunks.iter().any(|c| c.key == SUMI_KEY));
    assert!(g.thumb_path(&gen).exists());
    assert_eq!(
        g.search("waterc", &Filter::default(), None, 5)
            .unwrap()
            .items
            .len(),
        1
    );
}

#[test]
fn imports_sumi_pngs_from_their_json_chunk() {
    let (_a, first, ids) = filled(1);
    let original = first.get(ids[0]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let g = Gallery::open(dir.path()).unwrap();
    let gen = g.import(&first.image_path(&original)).unwrap();
    assert_eq!(gen.params, original.params);
    assert_eq!(gen.meta, original.meta);
    assert_eq!(gen.created_at, original.created_at);
}

#[test]
fn import_rejects_pngs_without_settings_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let g = Gallery::open(dir.path()).unwrap();
    let plain = dir.path().join("plain.png");
    fs::write(
        &plain,
        png_meta::encode_png(&image(1), &[("Software", "x")]).unwrap(),
    )
    .unwrap();
    let err = g.import(&plain).unwrap_err();
    assert!(matches!(err, GalleryError::NoParameters(_)));
    assert!(err.to_string().contains("no generation settings"));

    let caption = dir.path().join("caption.png");
    foreign_png(&caption, "just a caption");
    assert!(matches!(
        g.import(&caption),
        Err(GalleryError::Infotext { .. })
    ));

    let junk = dir.path().join("junk.png");
    fs::write(&junk, b"not a png at all").unwrap();
    assert!(matches!(g.import(&junk), Err(GalleryError::Png { .. })));
    assert!(g
        .list(&Filter::default(), None, 10)
        .unwrap()
        .items
        .is_empty());
}

#[test]
fn import_paths_walks_folders_and_reports_failures() {
    let dir = tempfile::tempdir().unwrap();
    let src = tempfile::tempdir().unwrap();
    let g = Gallery::open(dir.path()).unwrap();
    let nested = src.path().join("day1");
    fs::create_dir(&nested).unwrap();
    let ok = "x\nSteps: 1, Sampler: Euler, CFG scale: 1, Seed: 1, Size: 16x8";
    foreign_png(&src.path().join("a.png"), ok);
    foreign_png(&nested.join("b.PNG"), &ok.replace("Seed: 1", "Seed: 2"));
    fs::write(nested.join("notes.txt"), "ignored").unwrap();
    fs::write(nested.join("broken.png"), "nope").unwrap();
    let report = g.import_paths(&[src.path().to_path_buf()]);
    assert_eq!(report.imported.len(), 2);
    assert_eq!(report.failed.len(), 1);
    assert!(report.failed[0].0.ends_with("broken.png"));
}

#[test]
fn damaged_database_is_an_error_not_a_reset() {
    let dir = tempfile::tempdir().unwrap();
    // Closing the last connection folds the WAL into the main file.
    drop(filled_in(dir.path()));
    let db = dir.path().join(sumi_gallery::DB_FILE);
    let mut bytes = fs::read(&db).unwrap();
    bytes[..16].copy_from_slice(b"garbage garbage!");
    fs::write(&db, &bytes).unwrap();
    let err = Gallery::open(dir.path())
        .err()
        .expect("damaged file must not open");
    assert!(matches!(err, GalleryError::DamagedDb { .. }), "{err}");
    assert!(err.to_string().contains("move it aside"));
    assert_eq!(
        fs::read(&db).unwrap(),
        bytes,
        "the damaged file was modified"
    );
}

fn filled_in(home: &std::path::Path) -> Gallery {
    let g = Gallery::open(home).unwrap();
    g.add(&params(0), &meta(), &image(0)).unwrap();
    g
}

#[test]
fn foreign_and_newer_databases_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join(sumi_gallery::DB_FILE);
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch("CREATE TABLE contacts (name TEXT);")
        .unwrap();
    drop(conn);
    let err = Gallery::open(dir.path()).err().unwrap();
    assert!(matches!(err, GalleryError::DamagedDb { .. }), "{err}");

    // Another program's database with its own schema version.
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join(sumi_gallery::DB_FILE);
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch("CREATE TABLE notes (body TEXT); PRAGMA user_version = 7;")
        .unwrap();
    drop(conn);
    let err = Gallery::open(dir.path()).err().unwrap();
    assert!(matches!(err, GalleryError::DamagedDb { .. }), "{err}");
    assert!(err.to_string().contains("another program"));

    let dir = tempfile::tempdir().unwrap();
    drop(Gallery::open(dir.path()).unwrap());
    let db = dir.path().join(sumi_gallery::DB_FILE);
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.pragma_update(None, "user_version", 99).unwrap();
    drop(conn);
    let err = Gallery::open(dir.path()).err().unwrap();
    assert!(
        matches!(err, GalleryError::NewerSchema { found: 99, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("update Sumi"));

    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join(sumi_gallery::DB_FILE), vec![0x42u8; 8192]).unwrap();
    let err = Gallery::open(dir.path()).err().unwrap();
    assert!(matches!(err, GalleryError::DamagedDb { .. }), "{err}");
}

#[test]
fn integrity_check_is_clean_on_a_fresh_gallery() {
    let (_dir, g, _) = filled(3);
    assert!(g.integrity_check().unwrap().is_empty());
}

#[test]
fn img2img_records_keep_their_sources_until_the_last_one_is_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let g = Gallery::open(dir.path()).unwrap();
    let init = g.store_source(b"init picture bytes").unwrap();
    let with = |seed: u64| sumi_gallery::GenerationParams {
        img2img: Some(sumi_gallery::SourceParams {
            init_image: init.clone(),
            made_from: Some(7),
            strength: 0.5,
            ..Default::default()
        }),
        ..params(seed)
    };
    let a = g.add(&with(1), &meta(), &image(1)).unwrap().id;
    let b = g.add(&with(2), &meta(), &image(2)).unwrap().id;
    assert_eq!(g.get(a).unwrap().params, with(1));
    assert_eq!(g.rerun(b).unwrap().img2img.unwrap().made_from, Some(7));
    let path = dir.path().join("sources").join(&init);
    let old = std::time::SystemTime::now() - sumi_gallery::STALE_AFTER * 2;
    let age = || {
        fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(old)
            .unwrap()
    };
    age();
    g.delete(a).unwrap();
    assert!(path.exists(), "still named by #{b}");
    g.delete(b).unwrap();
    assert!(!path.exists(), "no record names it any more");
    assert!(g
        .read_source(&init)
        .unwrap_err()
        .to_string()
        .contains("give the picture again"));
}
