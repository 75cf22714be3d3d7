//! Cases for the indexing primitives (gather/scatter families, concat, arange) and random.
use super::cases::{fresh, label, Dist, View};
use super::checker::Checker;
use super::compare::Class;
use super::primitives::FLOATS;
use crate::ops::RandomDist;
use crate::Result;
use luoshu_tensor::DType;

pub fn check_all(c: &mut Checker<'_>) {
    c.primitive("index_select", index_select);
    c.primitive("index_add", index_add);
    c.primitive("gather", gather);
    c.primitive("scatter_add", scatter_add);
    c.primitive("concat", concat);
    c.primitive("arange", arange);
    c.primitive("random", random);
}

fn value_dtypes() -> Vec<DType> {
    [FLOATS.as_slice(), &[DType::I64, DType::I32]].concat()
}

/// Accumulating ops are exact on integers and order-dependent on floats.
fn accumulate_class(dtype: DType) -> Class {
    if dtype.is_float() {
        Class::Accumulate
    } else {
        Class::Exact
    }
}

/// (x dims, dim, number of indices): repeats, empty index lists, empty tensors.
const SELECT_CASES: &[(&[usize], usize, usize)] = &[
    (&[5, 3], 0, 7),
    (&[5, 3], 1, 4),
    (&[5, 3], 0, 0),
    (&[4, 0], 0, 2),
    (&[1], 0, 3),
    (&[2, 6, 3], 1, 9),
    (&[2, 6, 3], 2, 5),
    (&[50, 16], 0, 33),
    // 72,000 elements selected or added: the parallel path.
    (&[300, 240], 0, 300),
];

fn index_select(c: &mut Checker<'_>) -> Result<()> {
    for dtype in value_dtypes() {
        for (i, &(dims, dim, n)) in SELECT_CASES.iter().enumerate() {
            let view = View::ALL[i % 5];
            let x = c.gen.view(dtype, dims, Dist::default_for(dtype), view)?;
            let index_dtype = [DType::I64, DType::I32][i % 2];
            let idx = c.gen.indices(index_dtype, &[n], dims[dim])?;
            let name = format!(
                "{} dim {dim} {n} {index_dtype} indices",
                label(dtype, dims, view)
            );
            c.case(&name, dtype, Class::Exact, &[&x, &idx], |ops| {
                Ok(vec![ops.index_select(&x, dim, &idx)?])
            });
        }
    }
    Ok(())
}

fn index_add(c: &mut Checker<'_>) -> Result<()> {
    for dtype in value_dtypes() {
        for (i, &(dims, dim, n)) in SELECT_CASES.iter().enumerate() {
            let dst = c.gen.tensor(dtype, dims, Dist::default_for(dtype))?;
            let index_dtype = [DType::I64, DType::I32][i % 2];
            let idx = c.gen.indices(index_dtype, &[n], dims[dim])?;
            let mut src_dims = dims.to_vec();
            src_dims[dim] = n;
            let view = View::ALL[i % 5];
            let src = c
                .gen
                .view(dtype, &src_dims, Dist::default_for(dtype), view)?;
            let name = format!(
                "dst {dtype}{dims:?} dim {dim}, src {}, {index_dtype} indices",
                label(dtype, &src_dims, view)
            );
            c.case(
                &name,
                dtype,
                accumulate_class(dtype),
                &[&dst, &idx, &src],
                |ops| {
                    let out = fresh(&dst)?;
                    ops.index_add(&out, dim, &idx, &src)?;
                    Ok(vec![out])
                },
            );
        }
    }
    Ok(())
}

/// (x dims, dim, index dims).
const GATHER_CASES: &[(&[usize], usize, &[usize])] = &[
    (&[4, 6], 1, &[4, 3]),
    (&[4, 6], 0, &[7, 6]),
    (&[4, 6], 1, &[2, 9]),
    (&[2, 5, 3], 1, &[2, 8, 3]),
    (&[2, 5, 3], 2, &[1, 5, 2]),
    (&[3, 4], 1, &[3, 0]),
    (&[1], 0, &[4]),
    // 72,000 elements gathered or scattered: the parallel path.
    (&[300, 240], 1, &[300, 240]),
];

fn gather(c: &mut Checker<'_>) -> Result<()> {
    for dtype in value_dtypes() {
        for (i, &(dims, dim, index_dims)) in GATHER_CASES.iter().enumerate() {
            let view = View::ALL[i % 5];
            let x = c.gen.view(dtype, dims, Dist::default_for(dtype), view)?;
            let index_dtype = [DType::I64, DType::I32][i % 2];
            let idx = c.gen.indices(index_dtype, index_dims, dims[dim])?;
            let name = format!(
                "{} dim {dim} index {index_dtype}{index_dims:?}",
                label(dtype, dims, view)
            );
            c.case(&name, dtype, Class::Exact, &[&x, &idx], |ops| {
                Ok(vec![ops.gather(&x, dim, &idx)?])
            });
        }
    }
    Ok(())
}

fn scatter_add(c: &mut Checker<'_>) -> Result<()> {
    for dtype in value_dtypes() {
        for (i, &(dims, dim, index_dims)) in GATHER_CASES.iter().enumerate() {
            let dst = c.gen.tensor(dtype, dims, Dist::default_for(dtype))?;
            let index_dtype = [DType::I64, DType::I32][i % 2];
            let idx = c.gen.indices(index_dtype, index_dims, dims[dim])?;
            let view = View::ALL[i % 5];
            let src = c
                .gen
                .view(dtype, index_dims, Dist::default_for(dtype), view)?;
            let name = format!(
                "dst {dtype}{dims:?} dim {dim}, src {}, {index_dtype} index",
                label(dtype, index_dims, view)
            );
            c.case(
                &name,
                dtype,
                accumulate_class(dtype),
                &[&dst, &idx, &src],
                |ops| {
                    let out = fresh(&dst)?;
                    ops.scatter_add(&out, dim, &idx, &src)?;
                    Ok(vec![out])
                },
            );
        }
    }
    Ok(())
}

/// (input dims, dim), with empty and size-1 pieces.
const CONCAT_CASES: &[(&[&[usize]], usize)] = &[
    (&[&[2, 3], &[4, 3]], 0),
    (&[&[2, 3], &[2, 0], &[2, 5]], 1),
    (&[&[3], &[0], &[4]], 0),
    (&[&[2, 3, 4], &[2, 1, 4]], 1),
    (&[&[2, 3, 4], &[2, 3, 4], &[2, 3, 1]], 2),
    (&[&[5, 2]], 0),
    // 72,000 elements: the parallel path.
    (&[&[300, 100], &[300, 140]], 1),
];

fn concat(c: &mut Checker<'_>) -> Result<()> {
    for dtype in DType::ALL {
        for (i, &(pieces, dim)) in CONCAT_CASES.iter().enumerate() {
            let mut inputs = Vec::new();
            let mut names = Vec::new();
            for (j, dims) in pieces.iter().enumerate() {
                let view = View::ALL[(i + j) % 5];
                inputs.push(c.gen.view(dtype, dims, Dist::default_for(dtype), view)?);
                names.push(label(dtype, dims, view));
            }
            let refs: Vec<_> = inputs.iter().collect();
            let name = format!("{} along {dim}", names.join(" + "));
            c.case(&name, dtype, Class::Exact, &refs, |ops| {
                Ok(vec![ops.concat(&refs, dim)?])
            });
        }
    }
    Ok(())
}

fn arange(c: &mut Checker<'_>) -> Result<()> {
    let dtypes = [FLOATS.as_slice(), &[DType::I64, DType::I32, DType::U8]].concat();
    for dtype in dtypes {
        let cases: &[(f64, f64, usize)] = match dtype {
            DType::U8 => &[(0.0, 1.0, 10), (2.0, 3.0, 20), (0.0, 1.0, 0)],
            d if d.is_integer() => &[
                (0.0, 1.0, 10),
                (5.0, -2.0, 7),
                (-3.0, 4.0, 1),
                (0.0, 1.0, 0),
                (-9.0, 3.0, 70_000),
            ],
            _ => &[
                (0.0, 1.0, 10),
                (-3.5, 0.25, 17),
                (5.0, -2.0, 7),
                (0.0, 1.0, 0),
                (0.1, 0.1, 300),
                (-20.0, 0.5, 70_000),
            ],
        };
        let class = if dtype.is_float() {
            Class::Rounding
        } else {
            Class::Exact
        };
        for &(start, step, len) in cases {
            let name = format!("{dtype} start {start} step {step} len {len}");
            c.case(&name, dtype, class, &[], |ops| {
                Ok(vec![ops.arange(start, step, len, dtype)?])
            });
        }
    }
    Ok(())
}

const DISTS: [RandomDist; 3] = [
    RandomDist::Uniform {
        low: -1.0,
        high: 2.0,
    },
    RandomDist::Normal {
        mean: 0.5,
        std: 2.0,
    },
    RandomDist::Bernoulli { p: 0.3 },
];

/// Mean and variance a distribution should have.
fn moments(dist: RandomDist) -> (f64, f64) {
    match dist {
        RandomDist::Uniform { low, high } => {
            let (l, h) = (low as f64, high as f64);
            ((l + h) / 2.0, (h - l) * (h - l) / 12.0)
        }
        RandomDist::Normal { mean, std } => (mean as f64, (std as f64).powi(2)),
        RandomDist::Bernoulli { p } => (p as f64, p as f64 * (1.0 - p as f64)),
    }
}

/// The sample mean within 5 standard errors and the variance within 10 %.
fn plausible(values: &[f64], dist: RandomDist) -> std::result::Result<(), String> {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
    let (want_mean, want_var) = moments(dist);
    let mean_ok = (mean - want_mean).abs() <= 5.0 * (want_var / n).sqrt();
    let var_ok = (var - want_var).abs() <= 0.1 * want_var;
    if mean_ok && var_ok {
        Ok(())
    } else {
        Err(format!(
            "{dist:?}: sample mean {mean:.4} variance {var:.4}, expected {want_mean:.4} and {want_var:.4}"
        ))
    }
}

fn random(c: &mut Checker<'_>) -> Result<()> {
    for dist in DISTS {
        let mut dtypes = FLOATS.to_vec();
        if matches!(dist, RandomDist::Bernoulli { .. }) {
            dtypes.push(DType::Bool);
        }
        for dtype in dtypes {
            for (i, dims) in [&[][..], &[0], &[1], &[7], &[3, 5], &[2, 3, 11], &[300, 240]]
                .iter()
                .enumerate()
            {
                let (seed, stream) = (17 + i as u64, i as u64 * 3);
                let name = format!("{dtype}{dims:?} {dist:?} seed {seed} stream {stream}");
                c.case(&name, dtype, Class::Exact, &[], |ops| {
                    Ok(vec![ops.random(dist, seed, stream, dtype, dims)?])
                });
            }
        }
        let sample = c.ops.random(dist, 5, 1, DType::F32, &[20000]);
        let verdict = sample
            .map_err(|e| e.to_string())
            .and_then(|t| plausible(&t.to_f64_vec(), dist));
        c.verdict("moments of 20000 f32 samples", DType::F32, verdict);
    }
    Ok(())
}
