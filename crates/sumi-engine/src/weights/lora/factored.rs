//! A module's update kept as factors, for a quantized weight (which is never rewritten): LoRA
//! as `up @ down`; LoHa's `(w1a w1b) * (w2a w2b)` as one product of rank r1*r2, with
//! `up[o, a*r2 + b] = w1a[o, a] w2a[o, b]` and `down[a*r2 + b, i] = w1b[a, i] w2b[b, i]`; LoKr
//! as `kron(w1, w2)`. A fused Flux layer's part takes its rows from the factors.

use std::ops::Range;

use candle_core::{Result, Tensor};

use super::delta::{lokr_factors, rows, take_rows, Factors};
use super::format::{Kind, Module};
use crate::weights::quantized::LoraTerm;

/// Why a module cannot be kept factored (said in the error that names the module).
pub type Unfactorable = String;

/// `m`'s update times `k` for a `[out, in]` weight as a [`LoraTerm`]; `rows`: the rows of the
/// update that go into this weight (all when `None`).
pub fn factored(
    m: &Module,
    f: &Factors,
    k: f64,
    target: &[usize],
    rows_taken: Option<&[Range<usize>]>,
) -> std::result::Result<LoraTerm, Unfactorable> {
    let term = build(m, f, k, rows_taken).map_err(|e| e.to_string())?;
    let Some(term) = term else {
        return Err(format!(
            "its {} update has a Tucker core, which only convolutions take, and a GGUF \
             layer is a linear one",
            m.kind.label()
        ));
    };
    let dims = |t: &Tensor| t.dims2().map_err(|e| e.to_string());
    let (out, inp) = match &term {
        LoraTerm::LowRank { up, down } => (dims(up)?.0, dims(down)?.1),
        LoraTerm::Kron { a, b } => {
            let ((p, q), (r, s)) = (dims(a)?, dims(b)?);
            (p * r, q * s)
        }
    };
    if [out, inp] != target {
        return Err(format!(
            "its factors give a [{out}, {inp}] update for a {target:?} weight"
        ));
    }
    Ok(term)
}

fn build(
    m: &Module,
    f: &Factors,
    k: f64,
    rows_taken: Option<&[Range<usize>]>,
) -> Result<Option<LoraTerm>> {
    let pick = |t: Tensor| match rows_taken {
        Some(r) => take_rows(&t, r),
        None => Ok(t),
    };
    let term = match m.kind {
        Kind::Lora | Kind::LoCon => LoraTerm::LowRank {
            up: pick((rows(f.get("lora_up")?)? * k)?)?,
            down: rows(f.get("lora_down")?)?.contiguous()?,
        },
        Kind::LoHa => {
            let (a1, a2) = ((f.get("hada_w1_a")? * k)?, f.get("hada_w2_a")?);
            let (b1, b2) = (rows(f.get("hada_w1_b")?)?, rows(f.get("hada_w2_b")?)?);
            let (out, r1, r2, inp) = (a1.dim(0)?, a1.dim(1)?, a2.dim(1)?, b1.dim(1)?);
            let up = a1
                .unsqueeze(2)?
                .broadcast_mul(&a2.unsqueeze(1)?)?
                .reshape((out, r1 * r2))?;
            let down = b1
                .unsqueeze(1)?
                .broadcast_mul(&b2.unsqueeze(0)?)?
                .reshape((r1 * r2, inp))?;
            LoraTerm::LowRank {
                up: pick(up)?,
                down,
            }
        }
        Kind::LoKr => {
            let (w1, w2) = lokr_factors(f)?;
            if w2.rank() != 2 {
                return Ok(None);
            }
            let a = (w1 * k)?;
            let a = match rows_taken {
                None => a,
                Some(r) => take_rows(&a, &kron_rows(r, w2.dim(0)?)?)?,
            };
            LoraTerm::Kron {
                a: a.contiguous()?,
                b: w2.contiguous()?,
            }
        }
        Kind::Tucker | Kind::LoHaTucker => return Ok(None),
    };
    Ok(Some(term))
}

/// The rows of `w1` whose Kronecker blocks of `block` rows are `ranges`; errs when a range
/// cuts a block.
fn kron_rows(ranges: &[Range<usize>], block: usize) -> Result<Vec<Range<usize>>> {
    ranges
        .iter()
        .map(
            |r| match block > 0 && r.start % block == 0 && r.len() % block == 0 {
                true => Ok(r.start / block..r.end / block),
                false => candle_core::bail!(
                    "its LoKr blocks of {block} rows do not line up with the fused layer's parts"
                ),
            },
        )
        .collect()
}
