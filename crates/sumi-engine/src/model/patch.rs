//! LoRAs applied to a loaded model in place: each LoRA adds its delta into the weight tensors
//! it touches (`W + multiplier * scale * update`, computed in f32, stored in the model's dtype)
//! and the untouched values are read again from the model's files (or kept in memory) to take
//! it out exactly. Changing the set rewrites only the weights whose stack of LoRAs changes;
//! the model is never reloaded and never copied. Weights a GGUF file keeps quantized are never
//! rewritten: their LoRAs are kept factored and the layer adds their products to its own
//! (`weights::lora::factored`).
//!
//! A set is applied all or nothing: every file, key, shape, value and weight is checked before
//! any weight is written, and a failure while writing (a device error, a weight that would
//! overflow) puts back the previous set.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Range;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use candle_core::{DType, Device, Tensor};

use crate::family::Family;
use crate::weights::ldm::LdmUnetNames;
use crate::weights::lora::delta::{
    all_finite, apply, dora_axis, fits_dtype, fitted, take_rows, update, DoraAxis, Factors, Patch,
};
use crate::weights::lora::factored::factored;
use crate::weights::lora::flux::{kohya_flux_layers, split_rows};
use crate::weights::lora::format::{fit, update_shape, Dora, Fit, Kind, Module};
use crate::weights::lora::inplace::add_into;
use crate::weights::lora::keys::{LayerIndex, Part};
use crate::weights::lora::{LoraError, LoraFile};
use crate::weights::params::{Param, ParamTable};
use crate::weights::quantized::{LoraTerm, QuantizedParam};
use crate::Result;

/// The largest LoRA weight accepted (A1111's sliders stop well inside it).
pub const MAX_LORA_WEIGHT: f64 = 10.0;

/// The parameters of a loaded model's networks, by part.
#[derive(Debug, Default)]
pub struct ModelParams {
    /// The UNet's, by diffusers name.
    pub unet: ParamTable,
    /// Each text encoder's by transformers name, under its slot (0: SD's encoder / SDXL's
    /// first, 1: SDXL's second).
    pub text: BTreeMap<u8, ParamTable>,
    /// The UNet's original (LDM) names, for kohya keys that use them.
    pub ldm: Option<LdmUnetNames>,
}

/// One LoRA of a set: the file and its weights for the text encoders and the UNet
/// (A1111's `<lora:name:te:unet>`).
#[derive(Clone, Debug)]
pub struct LoraUse {
    /// The opened file.
    pub file: Arc<LoraFile>,
    /// Multiplier of its text-encoder deltas.
    pub te: f64,
    /// Multiplier of its UNet deltas.
    pub unet: f64,
}

/// How the untouched weights are kept while a LoRA is applied.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LoraBackup {
    /// Read again from the model's files (which stay open): no extra memory; the files must
    /// not change while LoRAs are applied.
    #[default]
    File,
    /// A copy of each touched weight in CPU memory (A1111's way): faster to switch, costs the
    /// touched weights' size.
    Memory,
}

/// What applying a set did.
#[derive(Clone, Debug, Default)]
pub struct LoraReport {
    /// Per LoRA of the set, in order.
    pub loras: Vec<LoraApplied>,
    /// Weights rewritten (patched or restored).
    pub rewritten: usize,
    /// Wall time.
    pub elapsed: Duration,
}

/// How one LoRA of a set met the model.
#[derive(Clone, Debug, Default)]
pub struct LoraApplied {
    /// The file.
    pub path: PathBuf,
    /// Modules that patch a layer.
    pub matched: usize,
    /// Modules (or keys) that name no layer of this model, or that Sumi cannot apply.
    pub unmatched: Vec<String>,
}

/// One module's delta in one weight's stack.
#[derive(Clone)]
struct Item {
    file: Arc<LoraFile>,
    module: usize,
    multiplier: f64,
    shape: Vec<usize>,
    fit: Fit,
    dora: Option<DoraAxis>,
    /// The rows of the module's update that go into this weight, in order (a fused Flux
    /// layer split among diffusers' layers); `None`: all of them.
    rows: Option<Vec<Range<usize>>>,
}

impl PartialEq for Item {
    fn eq(&self, o: &Self) -> bool {
        Arc::ptr_eq(&self.file, &o.file)
            && self.module == o.module
            && self.multiplier.to_bits() == o.multiplier.to_bits()
    }
}

type Key = (Part, String);
type Stacks = BTreeMap<Key, Vec<Item>>;

/// A module's loaded factors and scale, by (file, module).
#[derive(Default)]
struct Loaded(HashMap<(usize, usize), (Factors, f64)>);

impl Loaded {
    fn get(
        &mut self,
        item: &Item,
        device: &Device,
    ) -> std::result::Result<&(Factors, f64), LoraError> {
        let id = (Arc::as_ptr(&item.file) as usize, item.module);
        match self.0.entry(id) {
            Entry::Occupied(e) => Ok(e.into_mut()),
            Entry::Vacant(v) => {
                let m = &item.file.modules()[item.module];
                let f = item.file.factors(m, device)?;
                let scale = item.file.scale(m, &f)?;
                Ok(v.insert((f, scale)))
            }
        }
    }
}

/// The LoRA state of a model: its parameters, the set applied and what each weight holds.
#[derive(Default)]
pub struct Patcher {
    params: ModelParams,
    index: OnceLock<LayerIndex>,
    applied: Vec<LoraUse>,
    stacks: Stacks,
    backup: LoraBackup,
    copies: HashMap<Key, Tensor>,
}

impl std::fmt::Debug for Patcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Patcher")
            .field("applied", &self.applied)
            .field("patched", &self.stacks.len())
            .field("backup", &self.backup)
            .finish()
    }
}

impl Patcher {
    /// A patcher over `params` with nothing applied.
    pub fn new(params: ModelParams) -> Self {
        Self {
            params,
            ..Self::default()
        }
    }

    /// The set applied now.
    pub fn applied(&self) -> &[LoraUse] {
        &self.applied
    }

    /// The model's parameters.
    pub fn params(&self) -> &ModelParams {
        &self.params
    }

    /// How untouched weights are kept; switching to `File` drops the copies of weights that
    /// are not patched (the others stay until they are restored).
    pub fn set_backup(&mut self, backup: LoraBackup) {
        self.backup = backup;
    }

    /// Bytes held in memory copies of touched weights.
    pub fn backup_bytes(&self) -> usize {
        self.copies
            .values()
            .map(|t| t.elem_count() * t.dtype().size_in_bytes())
            .sum()
    }

    /// The layer index; a Flux model's transformer (held as `unet`) is also indexed as the
    /// `transformer.` part that diffusers / PEFT keys name.
    fn index(&self, family: Family) -> &LayerIndex {
        self.index.get_or_init(|| {
            let mut index = LayerIndex::default();
            let p = &self.params;
            index.add(Part::Unet, p.unet.names(), p.ldm.as_ref());
            if family == Family::Flux {
                index.add(Part::Transformer, p.unet.names(), None);
            }
            for (slot, table) in &p.text {
                index.add(Part::Text(*slot), table.names(), None);
            }
            index
        })
    }

    fn table(&self, part: Part) -> Option<&ParamTable> {
        match part {
            Part::Unet => Some(&self.params.unet),
            Part::Text(s) => self.params.text.get(&s),
            Part::Transformer => None,
        }
    }

    fn param(&self, key: &Key) -> Option<&Param> {
        self.table(key.0)?.get(&key.1)
    }

    /// The weight `key` when its layer holds it quantized.
    fn quantized(&self, key: &Key) -> Option<&QuantizedParam> {
        self.table(key.0)?.quantized(&key.1)
    }

    /// The shape of weight `key`, dense or quantized.
    fn dims(&self, key: &Key) -> Option<Vec<usize>> {
        Some(self.table(key.0)?.dims(&key.1)?.to_vec())
    }

    /// Makes `loras` (in order) the applied set of a `family` model; see the module docs.
    pub fn set(&mut self, loras: &[LoraUse], family: Family) -> Result<LoraReport> {
        let start = Instant::now();
        check_weights(loras)?;
        let mut report = LoraReport::default();
        let mut stacks = Stacks::new();
        for lora in loras {
            report.loras.push(self.plan(lora, family, &mut stacks)?);
        }
        let keys: BTreeSet<Key> = self.stacks.keys().chain(stacks.keys()).cloned().collect();
        let changed: Vec<Key> = keys
            .into_iter()
            .filter(|k| self.stacks.get(k) != stacks.get(k))
            .collect();
        let device = self.device();
        for lora in loras {
            lora.file.check_unchanged()?;
        }
        for k in &changed {
            if let Some(p) = self.param(k) {
                if self.backup == LoraBackup::File || self.stacks.contains_key(k) {
                    p.check_source()?;
                }
            }
        }
        let mut loaded = Loaded::default();
        for item in changed.iter().filter_map(|k| stacks.get(k)).flatten() {
            loaded.get(item, &device)?;
        }
        let mut done = Vec::new();
        for k in &changed {
            let patched = self.stacks.contains_key(k);
            // A failed write may have changed the weight: the rollback covers it too.
            done.push(k.clone());
            if let Err(e) = self.write(k, patched, stacks.get(k), &mut loaded, &device) {
                self.roll_back(&done, &stacks, &device);
                return Err(e);
            }
        }
        drop(loaded);
        crate::alloc::release_free();
        self.stacks = stacks;
        self.applied = loras.to_vec();
        report.rewritten = changed.len();
        report.elapsed = start.elapsed();
        tracing::info!(loras = loras.len(), rewritten = changed.len(), elapsed = ?report.elapsed, "LoRA set applied");
        Ok(report)
    }

    fn device(&self) -> Device {
        self.params
            .unet
            .iter()
            .next()
            .map(|(_, p)| p.tensor.device().clone())
            .unwrap_or(Device::Cpu)
    }

    /// Puts the applied set back into the weights in `done`, which hold `new`, after a failed write.
    fn roll_back(&mut self, done: &[Key], new: &Stacks, device: &Device) {
        let mut loaded = Loaded::default();
        for k in done {
            let old = self.stacks.get(k).cloned();
            if let Err(e) = self.write(k, new.contains_key(k), old.as_ref(), &mut loaded, device) {
                tracing::error!(layer = %k.1, error = %e, "could not put the previous LoRA set back");
            }
        }
    }

    /// The weights module `m` patches: the layer it names, or on a Flux model the diffusers
    /// layers of a kohya (Black Forest Labs named) module; `None` when the model lacks one.
    fn targets(&self, m: &Module, family: Family) -> Option<Targets> {
        if family == Family::Flux && m.key.part == Part::Unet {
            if let Some(l) = kohya_flux_layers(&m.key.lookup) {
                let weights = l
                    .layers
                    .iter()
                    .map(|layer| {
                        let key = (Part::Unet, format!("{layer}.weight"));
                        let dims = self.dims(&key)?;
                        Some((key, dims))
                    })
                    .collect::<Option<Vec<_>>>()?;
                return Some(Targets {
                    fused: weights.len() > 1 || l.swap_halves,
                    weights,
                    swap_halves: l.swap_halves,
                });
            }
        }
        let name = self.index(family).find(&m.key)?;
        // A Flux model's transformer is held as `unet`.
        let part = match m.key.part {
            Part::Transformer => Part::Unet,
            p => p,
        };
        let key = (part, name.to_string());
        let dims = self.dims(&key)?;
        Some(Targets {
            weights: vec![(key, dims)],
            swap_halves: false,
            fused: false,
        })
    }

    /// Adds `lora`'s modules to `stacks` after checking family, names and shapes.
    fn plan(&self, lora: &LoraUse, family: Family, stacks: &mut Stacks) -> Result<LoraApplied> {
        let file = &lora.file;
        let facts = file.facts();
        let wrong = |fits: String| LoraError::WrongFamily {
            path: file.path().to_path_buf(),
            fits,
            model: family.display_name().to_string(),
        };
        if family == Family::Flux {
            let flux = facts.fits == Some(Family::Flux)
                || (facts.fits.is_none() && facts.parts.contains(&Part::Transformer));
            if !flux {
                return Err(wrong(match facts.fits {
                    Some(f) => f.display_name().to_string(),
                    None => "a Stable Diffusion (UNet) model".into(),
                })
                .into());
            }
        } else if facts.fits.is_some_and(|f| f != family) || facts.parts == [Part::Transformer] {
            return Err(wrong(facts.fits_label()).into());
        }
        let mut out = LoraApplied {
            path: file.path().to_path_buf(),
            matched: 0,
            unmatched: file.unusable().to_vec(),
        };
        for (i, m) in file.modules().iter().enumerate() {
            let Some(targets) = self.targets(m, family) else {
                out.unmatched.push(m.key.module.clone());
                continue;
            };
            let bad = |reason: String| LoraError::BadModule {
                path: file.path().to_path_buf(),
                module: m.key.module.clone(),
                reason,
            };
            let u = update_shape(m, &|k| file.shape(k)).map_err(bad)?;
            let split = split(&targets, &u.shape, file.path())?;
            if split.is_some() && m.dora.is_some() {
                let why = "DoRA on a fused Flux layer (qkv, linear1) is not supported; use a \
                           version of the LoRA without DoRA";
                return Err(bad(why.into()).into());
            }
            let mut items = Vec::new();
            if m.dora.is_some()
                && targets
                    .weights
                    .iter()
                    .any(|(k, _)| self.quantized(k).is_some())
            {
                let why = "DoRA on a GGUF-quantized layer is not supported (its weight stays \
                           quantized); use a version of the LoRA without DoRA, or a \
                           safetensors model";
                return Err(bad(why.into()).into());
            }
            for (t, (key, target)) in targets.weights.iter().enumerate() {
                let rows = split.as_ref().map(|s| s[t].clone());
                let mut shape = u.shape.clone();
                if let Some(r) = &rows {
                    shape[0] = r.iter().map(|r| r.len()).sum();
                }
                let target = target.clone();
                let mismatch = || LoraError::ShapeMismatch {
                    path: file.path().to_path_buf(),
                    layer: format!("{} {}", part_label(family, key.0), key.1),
                    target: target.clone(),
                    delta: shape.clone(),
                };
                let f = fit(&shape, &target).ok_or_else(mismatch)?;
                let dora = match m.dora {
                    None => None,
                    Some(kind) => {
                        let role = if kind == Dora::Scale {
                            "dora_scale"
                        } else {
                            "magnitude"
                        };
                        let s = file.shape(m.tensor(role).unwrap_or_default());
                        Some(dora_axis(kind, &s, &target).ok_or_else(|| {
                            bad(format!("{role} has shape {s:?}, which fits neither the rows nor the columns of {target:?}"))
                        })?)
                    }
                };
                items.push((
                    key.clone(),
                    Item {
                        file: file.clone(),
                        module: i,
                        multiplier: 0.0,
                        shape: u.shape.clone(),
                        fit: f,
                        dora,
                        rows,
                    },
                ));
            }
            out.matched += 1;
            for (key, mut item) in items {
                item.multiplier = if key.0 == Part::Unet {
                    lora.unet
                } else {
                    lora.te
                };
                if item.multiplier != 0.0 {
                    stacks.entry(key).or_default().push(item);
                }
            }
        }
        if out.matched == 0 {
            let examples: Vec<&str> = file
                .modules()
                .iter()
                .take(3)
                .map(|m| m.key.module.as_str())
                .collect();
            return Err(LoraError::NoMatch {
                path: file.path().to_path_buf(),
                count: file.modules().len(),
                examples: examples.join(", "),
            }
            .into());
        }
        if !out.unmatched.is_empty() {
            let examples: Vec<&str> = out.unmatched.iter().take(5).map(String::as_str).collect();
            tracing::warn!(
                file = %file.path().display(),
                unmatched = out.unmatched.len(),
                matched = out.matched,
                examples = %examples.join(", "),
                "LoRA keys that match no layer of the model are ignored"
            );
        }
        Ok(out)
    }

    /// Rewrites weight `key` (which holds a patch when `patched`) as its untouched values plus
    /// `stack` (restores it when `None`).
    fn write(
        &mut self,
        key: &Key,
        patched: bool,
        stack: Option<&Vec<Item>>,
        loaded: &mut Loaded,
        device: &Device,
    ) -> Result<()> {
        if let Some(q) = self.quantized(key) {
            let terms = match stack {
                None => Vec::new(),
                Some(stack) => self.factored_terms(key, stack, loaded, device)?,
            };
            q.lora.set(terms)?;
            return Ok(());
        }
        let param = self.param(key).cloned().ok_or_else(|| {
            candle_core::Error::Msg(format!("no parameter {} in the model", key.1))
        })?;
        let original = match (patched, self.copies.get(key)) {
            (false, _) => param.tensor.clone(),
            (true, Some(copy)) => copy.to_device(device)?,
            (true, None) => param.reread()?,
        };
        let Some(stack) = stack.filter(|s| !s.is_empty()) else {
            if !patched {
                return Ok(());
            }
            param.tensor.slice_set(&original.contiguous()?, 0, 0)?;
            self.copies.remove(key);
            return Ok(());
        };
        let not_finite = || LoraError::NotFinite {
            path: stack[0].file.path().to_path_buf(),
            tensor: format!("the patched weight of {} {}", key.0.label(), key.1),
        };
        if !patched && self.backup == LoraBackup::Memory {
            let copy = original.to_device(&Device::Cpu)?.copy()?;
            self.copies.insert(key.clone(), copy);
        }
        let plain = stack
            .iter()
            .all(|i| i.file.modules()[i.module].dora.is_none());
        if plain && device.is_cpu() {
            let mut total: Option<Tensor> = None;
            for item in stack {
                let u = self.item_update(item, loaded, device, param.tensor.dims())?;
                total = Some(match total {
                    None => u,
                    Some(t) => (t + u)?,
                });
            }
            if patched {
                param.tensor.slice_set(&original.contiguous()?, 0, 0)?;
            }
            let total = total.ok_or_else(|| candle_core::Error::Msg("empty LoRA stack".into()))?;
            return match add_into(&param.tensor, &total)? {
                true => Ok(()),
                false => Err(not_finite().into()),
            };
        }
        let mut w = original.to_dtype(DType::F32)?;
        for item in stack {
            let u = self.item_update(item, loaded, device, param.tensor.dims())?;
            let (factors, _) = loaded.get(item, device)?;
            let m = &item.file.modules()[item.module];
            let magnitude = m.dora.map(|d| {
                let role = if d == Dora::Scale {
                    "dora_scale"
                } else {
                    "magnitude"
                };
                (d, factors.0.get(role))
            });
            let dora = match (magnitude, item.dora) {
                (Some((d, Some(t))), Some(axis)) => Some((d, axis, t)),
                _ => None,
            };
            let patch = Patch {
                update: u,
                multiplier: item.multiplier,
                dora,
            };
            w = apply(&w, &patch)?;
        }
        if !fits_dtype(&w, param.tensor.dtype())? {
            return Err(not_finite().into());
        }
        let new = w.to_dtype(param.tensor.dtype())?.contiguous()?;
        param.tensor.slice_set(&new, 0, 0)?;
        Ok(())
    }

    /// The stack's updates of quantized weight `key`, kept factored.
    fn factored_terms(
        &self,
        key: &Key,
        stack: &[Item],
        loaded: &mut Loaded,
        device: &Device,
    ) -> Result<Vec<LoraTerm>> {
        let target = self.dims(key).unwrap_or_default();
        let mut terms = Vec::with_capacity(stack.len());
        for item in stack {
            let (factors, scale) = loaded.get(item, device)?;
            let m = &item.file.modules()[item.module];
            let k = Patch::factor(m.dora, *scale, item.multiplier);
            let term =
                factored(m, factors, k, &target, item.rows.as_deref()).map_err(|reason| {
                    LoraError::BadModule {
                        path: item.file.path().to_path_buf(),
                        module: m.key.module.clone(),
                        reason: format!("{reason} (GGUF layer {})", key.1),
                    }
                })?;
            let factors = match &term {
                LoraTerm::LowRank { up, down } => [up, down],
                LoraTerm::Kron { a, b } => [a, b],
            };
            for t in factors {
                if !all_finite(t)? {
                    return Err(LoraError::NotFinite {
                        path: item.file.path().to_path_buf(),
                        tensor: format!("the factors of {} for {}", m.key.module, key.1),
                    }
                    .into());
                }
            }
            terms.push(term);
        }
        Ok(terms)
    }

    /// `item`'s update shaped as a weight of shape `target`, times its multiplier and scale.
    fn item_update(
        &self,
        item: &Item,
        loaded: &mut Loaded,
        device: &Device,
        target: &[usize],
    ) -> Result<Tensor> {
        let (factors, scale) = loaded.get(item, device)?;
        let m = &item.file.modules()[item.module];
        let k = Patch::factor(m.dora, *scale, item.multiplier);
        let u = match &item.rows {
            None => update(m, factors, &item.shape, k)?,
            Some(rows) => {
                let mut shape = item.shape.clone();
                shape[0] = rows.iter().map(|r| r.len()).sum();
                match (m.kind, factors.0.get("lora_up")) {
                    // Only the rows' part of the up factor is needed: no full-size update.
                    (Kind::Lora | Kind::LoCon, Some(up)) => {
                        let mut part = Factors(factors.0.clone());
                        part.0.insert("lora_up".into(), take_rows(up, rows)?);
                        update(m, &part, &shape, k)?
                    }
                    _ => take_rows(&update(m, factors, &item.shape, k)?, rows)?,
                }
            }
        };
        Ok(fitted(u, item.fit, target)?)
    }
}

/// How `part` of a `family` model is named in messages (a Flux model's `unet` is its transformer).
fn part_label(family: Family, part: Part) -> &'static str {
    match (family, part) {
        (Family::Flux, Part::Unet) => Part::Transformer.label(),
        _ => part.label(),
    }
}

/// The weights one module patches.
struct Targets {
    /// Each weight's key and shape, in the order of the update's rows.
    weights: Vec<(Key, Vec<usize>)>,
    /// Whether the update's two row halves swap (Flux's final modulation).
    swap_halves: bool,
    /// Whether the update's rows are split among the weights (or swapped).
    fused: bool,
}

/// The rows of an update of shape `shape` that go into each of `t`'s weights, when it is
/// fused; the error names the layers when their rows do not add up to the update's.
fn split(
    t: &Targets,
    shape: &[usize],
    path: &std::path::Path,
) -> Result<Option<Vec<Vec<Range<usize>>>>> {
    if !t.fused {
        return Ok(None);
    }
    let sizes: Vec<usize> = t.weights.iter().map(|(_, d)| d[0]).collect();
    let rows = shape.first().copied().unwrap_or(0);
    split_rows(rows, &sizes, t.swap_halves)
        .map(Some)
        .ok_or_else(|| {
            let names: Vec<&str> = t.weights.iter().map(|(k, _)| k.1.as_str()).collect();
            let mut target = t.weights[0].1.clone();
            target[0] = sizes.iter().sum();
            LoraError::ShapeMismatch {
                path: path.to_path_buf(),
                layer: format!("transformer {}", names.join(" + ")),
                target,
                delta: shape.to_vec(),
            }
            .into()
        })
}

/// Every weight finite and within ±[`MAX_LORA_WEIGHT`], and no file twice.
fn check_weights(loras: &[LoraUse]) -> Result<()> {
    let mut seen = BTreeSet::new();
    for l in loras {
        for v in [l.te, l.unet] {
            if !v.is_finite() || v.abs() > MAX_LORA_WEIGHT {
                return Err(LoraError::Multiplier {
                    name: l.file.stem(),
                    value: v,
                    max: MAX_LORA_WEIGHT,
                }
                .into());
            }
        }
        if !seen.insert(l.file.path().to_path_buf()) {
            return Err(LoraError::Duplicate {
                path: l.file.path().to_path_buf(),
            }
            .into());
        }
    }
    Ok(())
}
