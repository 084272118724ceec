//! Evenly spaced values as torch and numpy compute them (the schedules' building block).

/// torch.linspace in f32, bit for bit as its CPU kernel computes it: an f32 step, the first
/// half counted up from `start` and the second half down from `end`, each value one fused
/// multiply-add.
pub(crate) fn linspace_f32(start: f64, end: f64, n: usize) -> Vec<f32> {
    let (s, e) = (start as f32, end as f32);
    if n <= 1 {
        return vec![s; n];
    }
    let step = (e - s) / (n - 1) as f32;
    let half = n / 2;
    (0..n)
        .map(|i| {
            if i < half {
                (s as f64 + step as f64 * i as f64) as f32
            } else {
                (e as f64 - step as f64 * (n - 1 - i) as f64) as f32
            }
        })
        .collect()
}

/// `n` evenly spaced values from `start` to `end` inclusive (numpy's formula).
pub(crate) fn linspace(start: f64, end: f64, n: usize) -> Vec<f64> {
    match n {
        0 => vec![],
        1 => vec![start],
        _ => {
            let step = (end - start) / (n - 1) as f64;
            (0..n)
                .map(|i| {
                    if i == n - 1 {
                        end
                    } else {
                        start + step * i as f64
                    }
                })
                .collect()
        }
    }
}
