//! The page's TypeScript types are generated from the Rust types it exchanges with the app
//! (ts-rs), into `ui/src/lib/bindings.ts`. This test fails when that file is not current;
//! `SUMI_BLESS=1 cargo test -p sumi-app bindings` writes it.

use ts_rs::TS;

/// Every type the page sends or receives, in a readable order.
fn declarations() -> Vec<String> {
    use sumi_engine::imaging::{Extend, MaskedContent, ResizeMode};
    use sumi_engine::noise::NoiseSource;
    use sumi_engine::pipeline::{Hires, Img2Img};
    use sumi_engine::preview::Quantize;
    use sumi_engine::text::Emphasis;
    use sumi_engine::Request;
    use sumi_gallery::{
        ComparisonSlot, Cursor, Generation, GenerationMeta, GenerationParams, HiresParams,
        NamedHash, Page, SourceParams,
    };
    use sumi_runtime::compare::{LoraWeight, Variant};
    use sumi_runtime::form::GenerateForm;
    use sumi_runtime::limits::{Limits, SamplerView, Tables};
    use sumi_runtime::worker::{LoadingView, ModelView, QueueItem, WorkerEvent};

    use crate::commands::{Comparison, ModelEntry, ModelsView, Queued};
    use crate::prompting::{LoraEntry, TokenCountView};
    use crate::sources::SourceInfo;
    vec![
        Request::decl(),
        Img2Img::decl(),
        Hires::decl(),
        Extend::decl(),
        ResizeMode::decl(),
        MaskedContent::decl(),
        SourceInfo::decl(),
        NoiseSource::decl(),
        Emphasis::decl(),
        Quantize::decl(),
        GenerateForm::decl(),
        Variant::decl(),
        LoraWeight::decl(),
        Queued::decl(),
        Comparison::decl(),
        Tables::decl(),
        SamplerView::decl(),
        Limits::decl(),
        WorkerEvent::decl(),
        QueueItem::decl(),
        ModelView::decl(),
        LoadingView::decl(),
        ModelEntry::decl(),
        ModelsView::decl(),
        Generation::decl(),
        GenerationParams::decl(),
        NamedHash::decl(),
        SourceParams::decl(),
        HiresParams::decl(),
        GenerationMeta::decl(),
        ComparisonSlot::decl(),
        Cursor::decl(),
        Page::decl(),
        LoraEntry::decl(),
        TokenCountView::decl(),
    ]
}

/// The whole generated file.
pub fn bindings_ts() -> String {
    let mut out = String::from(
        "// Generated from the Rust types by ts-rs: do not edit. To regenerate:\n\
         // SUMI_BLESS=1 cargo test -p sumi-app bindings\n",
    );
    for d in declarations() {
        out.push('\n');
        out.push_str("export ");
        out.push_str(&d);
        out.push('\n');
    }
    out
}

#[test]
fn bindings_are_current() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../ui/src/lib/bindings.ts");
    let want = bindings_ts();
    if std::env::var_os("SUMI_BLESS").is_some() {
        std::fs::write(&path, &want).unwrap();
        return;
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        have == want,
        "{} is not current with the Rust types: run `SUMI_BLESS=1 cargo test -p sumi-app bindings` and commit it",
        path.display()
    );
}
