//! A LoRA file's keys grouped into modules (one per patched layer), what kind of update each
//! module holds (LoRA / LoCon / Tucker, LoHa, LoKr; DoRA on top), and the shape its update has,
//! all from the header alone.

use std::collections::BTreeMap;

use super::keys::{parse_key, KeyParts, Naming, Part};

/// How a module's update is built from its factors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// `up @ down` (kohya LoRA, PEFT `lora_B @ lora_A`, old diffusers `up @ down`).
    Lora,
    /// LoRA on a convolution with a kernel larger than 1x1 (kohya LoCon).
    LoCon,
    /// LoCon with a Tucker core (`lora_mid`).
    Tucker,
    /// LyCORIS LoHa: `(w1a @ w1b) * (w2a @ w2b)`.
    LoHa,
    /// LoHa with Tucker cores (`hada_t1`, `hada_t2`).
    LoHaTucker,
    /// LyCORIS LoKr: `kron(w1, w2)`.
    LoKr,
}

impl Kind {
    /// How the kind is named in facts.
    pub fn label(self) -> &'static str {
        match self {
            Kind::Lora => "LoRA",
            Kind::LoCon => "LoCon",
            Kind::Tucker => "LoCon (Tucker)",
            Kind::LoHa => "LoHa",
            Kind::LoHaTucker => "LoHa (Tucker)",
            Kind::LoKr => "LoKr",
        }
    }
}

/// Weight decomposition (DoRA) on top of a module's update.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dora {
    /// kohya / LyCORIS `dora_scale`, applied as A1111's `apply_weight_decompose`.
    Scale,
    /// PEFT `lora_magnitude_vector`, applied as PEFT merges it.
    Magnitude,
}

/// The tensors of one patched layer.
#[derive(Clone, Debug)]
pub struct Module {
    /// The part and layer it patches, and how the file names it (role empty).
    pub key: KeyParts,
    /// Role (`lora_down`, `alpha`, ...) -> the tensor's key in the file.
    pub tensors: BTreeMap<String, String>,
    /// How the update is built.
    pub kind: Kind,
    /// Weight decomposition, when the module has one.
    pub dora: Option<Dora>,
}

impl Module {
    /// The file key of the tensor with `role`.
    pub fn tensor(&self, role: &str) -> Option<&str> {
        self.tensors.get(role).map(String::as_str)
    }

    /// Whether the module has a tensor with `role`.
    pub fn has(&self, role: &str) -> bool {
        self.tensors.contains_key(role)
    }
}

/// A file's keys sorted into modules.
#[derive(Clone, Debug, Default)]
pub struct Modules {
    /// Modules with a complete update, in key order.
    pub modules: Vec<Module>,
    /// Keys that belong to no module Sumi can apply (an unknown module type, a missing factor).
    pub unusable: Vec<String>,
}

/// The roles whose tensors the rules here use.
const KNOWN_ROLES: [&str; 20] = [
    "lora_down",
    "lora_up",
    "lora_mid",
    "alpha",
    "scale",
    "dora_scale",
    "magnitude",
    "hada_w1_a",
    "hada_w1_b",
    "hada_w2_a",
    "hada_w2_b",
    "hada_t1",
    "hada_t2",
    "lokr_w1",
    "lokr_w1_a",
    "lokr_w1_b",
    "lokr_w2",
    "lokr_w2_a",
    "lokr_w2_b",
    "lokr_t2",
];

/// Groups `keys` into modules and decides each module's kind; `shape` gives a key's shape.
pub fn group<'a>(
    keys: impl Iterator<Item = &'a str>,
    shape: &dyn Fn(&str) -> Vec<usize>,
) -> Modules {
    let mut by_module: BTreeMap<(Part, String), (KeyParts, BTreeMap<String, String>)> =
        BTreeMap::new();
    let mut unusable = Vec::new();
    for key in keys {
        let Some(parts) = parse_key(key) else {
            unusable.push(key.to_string());
            continue;
        };
        let entry = by_module
            .entry((parts.part, parts.lookup.clone()))
            .or_insert_with(|| {
                let mut k = parts.clone();
                k.role.clear();
                (k, BTreeMap::new())
            });
        if parts.naming == Naming::DiffusersOld {
            entry.0.naming = Naming::DiffusersOld;
        }
        entry.1.insert(parts.role, key.to_string());
    }
    let mut modules = Vec::new();
    for (_, (key, tensors)) in by_module {
        let has = |r: &str| tensors.contains_key(r);
        let kind = if has("lora_down") && has("lora_up") {
            let down = tensors
                .get("lora_down")
                .map(|k| shape(k))
                .unwrap_or_default();
            if has("lora_mid") {
                Some(Kind::Tucker)
            } else if down.len() == 4 && down[2..].iter().any(|&k| k > 1) {
                Some(Kind::LoCon)
            } else {
                Some(Kind::Lora)
            }
        } else if ["hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b"]
            .iter()
            .all(|r| has(r))
        {
            Some(if has("hada_t1") && has("hada_t2") {
                Kind::LoHaTucker
            } else {
                Kind::LoHa
            })
        } else if (has("lokr_w1") || (has("lokr_w1_a") && has("lokr_w1_b")))
            && (has("lokr_w2") || (has("lokr_w2_a") && has("lokr_w2_b")))
        {
            Some(Kind::LoKr)
        } else {
            None
        };
        let Some(kind) = kind else {
            unusable.extend(tensors.into_values());
            continue;
        };
        let dora = if has("magnitude") {
            Some(Dora::Magnitude)
        } else if has("dora_scale") {
            Some(Dora::Scale)
        } else {
            None
        };
        // Tensors of roles no rule here applies (a LoRA bias, LyCORIS norms) are reported.
        let (tensors, ignored): (BTreeMap<_, _>, BTreeMap<_, _>) = tensors
            .into_iter()
            .partition(|(r, _)| KNOWN_ROLES.contains(&r.as_str()));
        unusable.extend(ignored.into_values());
        modules.push(Module {
            key,
            tensors,
            kind,
            dora,
        });
    }
    Modules { modules, unusable }
}

/// A module's update before it meets its layer: its shape (out, in, kernel...) and its rank.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpdateShape {
    /// The shape the factors make (`[out, in]` or `[out, in, kh, kw]`, or LoKr's flat `[out, in*k*k]`).
    pub shape: Vec<usize>,
    /// The rank A1111 divides alpha by (`None`: scale 1 unless a `scale` is given).
    pub rank: Option<usize>,
}

/// The shape and rank of `m`'s update from the header shapes; the error says which factors
/// do not fit together.
pub fn update_shape(m: &Module, shape: &dyn Fn(&str) -> Vec<usize>) -> Result<UpdateShape, String> {
    let get = |role: &str| m.tensor(role).map(shape).unwrap_or_default();
    let rank2 = |s: &[usize], role: &str| -> Result<(), String> {
        if s.len() < 2 {
            return Err(format!("{role} has shape {s:?}, expected a matrix"));
        }
        Ok(())
    };
    match m.kind {
        Kind::Lora | Kind::LoCon | Kind::Tucker => {
            let (down, up) = (get("lora_down"), get("lora_up"));
            rank2(&down, "lora_down")?;
            rank2(&up, "lora_up")?;
            let r = down[0];
            let inner: usize = up[1..].iter().product();
            let mut out = vec![up[0], down[1]];
            if m.kind == Kind::Tucker {
                let mid = get("lora_mid");
                if mid.len() != 4 || mid[0] != inner || mid[1] != r {
                    return Err(format!(
                        "lora_mid has shape {mid:?}, expected [{inner}, {r}, kh, kw]"
                    ));
                }
                out.extend(&mid[2..]);
            } else {
                if inner != r {
                    return Err(format!(
                        "lora_up {up:?} does not fit lora_down {down:?} (rank {r})"
                    ));
                }
                out.extend(&down[2..]);
            }
            Ok(UpdateShape {
                shape: out,
                rank: Some(r),
            })
        }
        Kind::LoHa | Kind::LoHaTucker => {
            let (w1a, w1b, w2a, w2b) = (
                get("hada_w1_a"),
                get("hada_w1_b"),
                get("hada_w2_a"),
                get("hada_w2_b"),
            );
            for (s, r) in [
                (&w1a, "hada_w1_a"),
                (&w1b, "hada_w1_b"),
                (&w2a, "hada_w2_a"),
                (&w2b, "hada_w2_b"),
            ] {
                rank2(s, r)?;
            }
            let shape = if m.kind == Kind::LoHaTucker {
                let t1 = get("hada_t1");
                if t1.len() < 2 || t1[0] != w1a[0] || t1[1] != w1b[0] {
                    return Err(format!(
                        "hada_t1 {t1:?} does not fit hada_w1_a {w1a:?} and hada_w1_b {w1b:?}"
                    ));
                }
                let mut s = vec![w1a[1], w1b[1]];
                s.extend(&t1[2..]);
                s
            } else {
                if w1a[1] != w1b[0] || w2a[1] != w2b[0] {
                    return Err(format!(
                        "hada factors do not chain: w1 {w1a:?} @ {w1b:?}, w2 {w2a:?} @ {w2b:?}"
                    ));
                }
                let mut s = vec![w1a[0], w1b[1]];
                s.extend(&w1b[2..]);
                s
            };
            Ok(UpdateShape {
                shape,
                rank: Some(w1b[0]),
            })
        }
        Kind::LoKr => lokr_shape(m, &get),
    }
}

fn lokr_shape(m: &Module, get: &dyn Fn(&str) -> Vec<usize>) -> Result<UpdateShape, String> {
    let mut rank = None;
    let w1 = if m.has("lokr_w1") {
        get("lokr_w1")
    } else {
        let (a, b) = (get("lokr_w1_a"), get("lokr_w1_b"));
        if a.len() != 2 || b.len() != 2 || a[1] != b[0] {
            return Err(format!("lokr_w1_a {a:?} and lokr_w1_b {b:?} do not chain"));
        }
        rank = Some(b[0]);
        vec![a[0], b[1]]
    };
    let w2 = if m.has("lokr_w2") {
        get("lokr_w2")
    } else {
        let (a, b) = (get("lokr_w2_a"), get("lokr_w2_b"));
        rank = b.first().copied().or(rank);
        if m.has("lokr_t2") {
            let t = get("lokr_t2");
            if a.len() != 2 || b.len() != 2 || t.len() < 2 || t[0] != a[0] || t[1] != b[0] {
                return Err(format!(
                    "lokr_t2 {t:?} does not fit lokr_w2_a {a:?} and lokr_w2_b {b:?}"
                ));
            }
            let mut s = vec![a[1], b[1]];
            s.extend(&t[2..]);
            s
        } else {
            if a.len() != 2 || b.len() < 2 || a[1] != b[0] {
                return Err(format!("lokr_w2_a {a:?} and lokr_w2_b {b:?} do not chain"));
            }
            let mut s = vec![a[0], b[1]];
            s.extend(&b[2..]);
            s
        }
    };
    if w1.len() != 2 || w2.len() < 2 {
        return Err(format!("lokr_w1 {w1:?} / lokr_w2 {w2:?} are not matrices"));
    }
    let mut shape = vec![w1[0] * w2[0], w1[1] * w2[1]];
    shape.extend(&w2[2..]);
    Ok(UpdateShape { shape, rank })
}

/// How an update of shape `delta` meets a layer weight of shape `target`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fit {
    /// Same number of values and output channels: reshaped to the weight's shape.
    Reshape,
    /// A convolution with more input channels than the update (a 9-channel inpainting UNet's
    /// `conv_in`): the extra input channels get zeros, as A1111 pads them.
    PadInputs,
}

/// Whether an update of shape `delta` can patch a weight of shape `target`.
pub fn fit(delta: &[usize], target: &[usize]) -> Option<Fit> {
    let numel = |s: &[usize]| s.iter().product::<usize>();
    if delta.first() != target.first() {
        return None;
    }
    if numel(delta) == numel(target) {
        return Some(Fit::Reshape);
    }
    let conv = delta.len() == 4 && target.len() == 4;
    (conv && delta[2..] == target[2..] && delta[1] < target[1]).then_some(Fit::PadInputs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn modules(keys: &[(&str, &[usize])]) -> Modules {
        let shapes: BTreeMap<String, Vec<usize>> = keys
            .iter()
            .map(|(k, s)| (k.to_string(), s.to_vec()))
            .collect();
        group(keys.iter().map(|(k, _)| *k), &|k| shapes[k].clone())
    }

    #[test]
    fn kinds_and_shapes() {
        let shapes: BTreeMap<String, Vec<usize>> = [
            ("lora_unet_a.lora_down.weight", vec![4, 16, 3, 3]),
            ("lora_unet_a.lora_up.weight", vec![32, 4, 1, 1]),
            ("lora_unet_a.alpha", vec![]),
            ("lora_unet_b.hada_w1_a", vec![8, 2]),
            ("lora_unet_b.hada_w1_b", vec![2, 6]),
            ("lora_unet_b.hada_w2_a", vec![8, 2]),
            ("lora_unet_b.hada_w2_b", vec![2, 6]),
            ("lora_unet_c.lokr_w1", vec![2, 2]),
            ("lora_unet_c.lokr_w2_a", vec![4, 3]),
            ("lora_unet_c.lokr_w2_b", vec![3, 8]),
            ("lora_unet_d.lora_down.weight", vec![4, 16]),
            ("junk", vec![1]),
            ("lora_unet_a.w_norm", vec![32]),
        ]
        .into_iter()
        .map(|(k, s)| (k.to_string(), s))
        .collect();
        let keys: Vec<(&str, &[usize])> = shapes
            .iter()
            .map(|(k, s)| (k.as_str(), s.as_slice()))
            .collect();
        let m = modules(&keys);
        let kinds: Vec<Kind> = m.modules.iter().map(|m| m.kind).collect();
        assert_eq!(kinds, vec![Kind::LoCon, Kind::LoHa, Kind::LoKr]);
        let s = |i: usize| update_shape(&m.modules[i], &|k| shapes[k].clone()).unwrap();
        assert_eq!(s(0).shape, vec![32, 16, 3, 3]);
        assert_eq!(s(0).rank, Some(4));
        assert_eq!(s(1).shape, vec![8, 6]);
        assert_eq!(s(2).shape, vec![8, 16]);
        assert_eq!(s(2).rank, Some(3));
        assert_eq!(m.unusable.len(), 3);
        assert!(m.unusable.contains(&"lora_unet_a.w_norm".to_string()));
    }

    #[test]
    fn fits() {
        assert_eq!(fit(&[8, 4, 3, 3], &[8, 4, 3, 3]), Some(Fit::Reshape));
        assert_eq!(fit(&[8, 36], &[8, 4, 3, 3]), Some(Fit::Reshape));
        assert_eq!(fit(&[8, 4, 3, 3], &[8, 9, 3, 3]), Some(Fit::PadInputs));
        assert_eq!(fit(&[8, 4], &[4, 8]), None);
        assert_eq!(fit(&[8, 4], &[8, 5]), None);
    }
}
