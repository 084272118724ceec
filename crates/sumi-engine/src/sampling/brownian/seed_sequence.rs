//! numpy's `SeedSequence` (`numpy.random.SeedSequence`), the part torchsde uses: entropy and a
//! spawn key in, `generate_state(n)` 32-bit words out.
//!
//! torchsde seeds every node of its Brownian tree with
//! `SeedSequence(entropy=seed, spawn_key=(key, depth), pool_size=24).generate_state(4)`, so
//! these words must be numpy's exactly. The algorithm (from numpy's documentation and
//! behaviour, itself after M. E. O'Neill's `seed_seq` replacement):
//! * Entropy and each spawn-key integer become little-endian 32-bit words (`0` is one word).
//!   With a spawn key, the entropy words are first padded with zeros to the pool size.
//! * The first `pool_size` words are hashed into the pool, every pool word is then mixed into
//!   every other one, and any words beyond the pool size are mixed into every pool word.
//! * `generate_state` cycles over the pool, hashing each word with a second running constant.

const INIT_A: u32 = 0x43b0_d7e5;
const MULT_A: u32 = 0x931e_8875;
const INIT_B: u32 = 0x8b51_f9dd;
const MULT_B: u32 = 0x58f3_8ded;
const MIX_MULT_L: u32 = 0xca01_f9dd;
const MIX_MULT_R: u32 = 0x4973_f715;
const XSHIFT: u32 = 16;

/// A mixed entropy pool, as `numpy.random.SeedSequence` holds it after construction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedSequence {
    pool: Vec<u32>,
}

/// The 32-bit words numpy makes of a non-negative integer: lowest first, `[0]` for zero.
pub fn int_words(n: u128) -> Vec<u32> {
    if n == 0 {
        return vec![0];
    }
    let mut words = Vec::new();
    let mut rest = n;
    while rest > 0 {
        words.push(rest as u32);
        rest >>= 32;
    }
    words
}

/// The running hash: mixes `value` with the constant, then advances the constant.
fn hashmix(value: u32, hash_const: &mut u32) -> u32 {
    let mut v = value ^ *hash_const;
    *hash_const = hash_const.wrapping_mul(MULT_A);
    v = v.wrapping_mul(*hash_const);
    v ^ (v >> XSHIFT)
}

fn mix(x: u32, y: u32) -> u32 {
    let r = MIX_MULT_L
        .wrapping_mul(x)
        .wrapping_sub(MIX_MULT_R.wrapping_mul(y));
    r ^ (r >> XSHIFT)
}

impl SeedSequence {
    /// `SeedSequence(entropy, spawn_key=spawn_key, pool_size=pool_size)` with both given as
    /// 32-bit words (see [`int_words`]; a spawn key of several integers is their words
    /// concatenated). numpy requires `pool_size >= 4`; smaller sizes are raised to 4.
    pub fn new(entropy: &[u32], spawn_key: &[u32], pool_size: usize) -> Self {
        let pool_size = pool_size.max(4);
        let mut words = entropy.to_vec();
        if !spawn_key.is_empty() && words.len() < pool_size {
            // numpy pads so that a spawn key can never alias plain entropy.
            words.resize(pool_size, 0);
        }
        words.extend_from_slice(spawn_key);
        Self {
            pool: mix_entropy(pool_size, &words),
        }
    }

    /// `generate_state(n_words)` with the default `uint32` words.
    pub fn generate_state(&self, n_words: usize) -> Vec<u32> {
        let mut hash_const = INIT_B;
        (0..n_words)
            .map(|i| {
                let mut v = self.pool[i % self.pool.len()] ^ hash_const;
                hash_const = hash_const.wrapping_mul(MULT_B);
                v = v.wrapping_mul(hash_const);
                v ^ (v >> XSHIFT)
            })
            .collect()
    }
}

fn mix_entropy(pool_size: usize, entropy: &[u32]) -> Vec<u32> {
    let mut hash_const = INIT_A;
    let mut pool: Vec<u32> = (0..pool_size)
        .map(|i| hashmix(entropy.get(i).copied().unwrap_or(0), &mut hash_const))
        .collect();
    for src in 0..pool_size {
        for dst in 0..pool_size {
            if src != dst {
                let h = hashmix(pool[src], &mut hash_const);
                pool[dst] = mix(pool[dst], h);
            }
        }
    }
    for &word in entropy.iter().skip(pool_size) {
        for p in pool.iter_mut() {
            *p = mix(*p, hashmix(word, &mut hash_const));
        }
    }
    pool
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_split_into_little_endian_words() {
        assert_eq!(int_words(0), vec![0]);
        assert_eq!(int_words(12345), vec![12345]);
        assert_eq!(int_words((1 << 32) + 7), vec![7, 1]);
        assert_eq!(int_words(u64::MAX.into()), vec![u32::MAX, u32::MAX]);
    }

    #[test]
    fn matches_numpy() {
        // From numpy 2.4: SeedSequence(e, spawn_key=k, pool_size=p).generate_state(n).
        let cases: [(u128, &[u128], usize, &[u32]); 6] = [
            (
                0,
                &[],
                4,
                &[2_968_811_710, 3_677_149_159, 745_650_761, 2_884_920_346],
            ),
            (42, &[], 24, &[387_750_627, 2_536_650_517, 4_078_839_648]),
            (
                42,
                &[0, 0],
                24,
                &[2_102_017_995, 2_891_809_698, 2_144_110_403, 379_559_146],
            ),
            (
                (1 << 63) + 5,
                &[1_234_567, 25],
                24,
                &[913_016_675, 1_002_065_934, 40_033_693, 3_098_362_260],
            ),
            (
                u64::MAX as u128,
                &[3],
                4,
                &[
                    1_660_468_937,
                    1_511_082_730,
                    1_179_584_482,
                    3_582_071_979,
                    2_239_170_278,
                    3_765_689_864,
                ],
            ),
            (
                7,
                &[],
                4,
                &[
                    2_083_679_832,
                    3_939_563_265,
                    4_185_785_210,
                    142_198_000,
                    1_732_601_695,
                    1_648_004_171,
                    1_614_310_572,
                    3_007_594_413,
                    3_068_976_102,
                ],
            ),
        ];
        for (entropy, key, pool, want) in cases {
            let key: Vec<u32> = key.iter().flat_map(|k| int_words(*k)).collect();
            let got = SeedSequence::new(&int_words(entropy), &key, pool).generate_state(want.len());
            assert_eq!(got, want, "entropy {entropy} key {key:?} pool {pool}");
        }
    }
}
