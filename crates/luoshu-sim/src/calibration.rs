//! A machine described by measurement: what `luoshu sim calibrate` timed (a GEMM mix,
//! fused attention, elementwise kernels, a copy and all-reduces, every rank running them at
//! once) turned into a [`Hardware`] whose roofline and α-β models predict each of those
//! measurements exactly. The "peak" of such a file is therefore the rate the measured GEMM
//! mix reached (matmul efficiency 1), the memory bandwidth is the copy's, and the other
//! classes are fractions of those.

use crate::collective::Collective;
use crate::hardware::{Device, Efficiency, Hardware, Link};
use crate::ops::{backward, OpCost};
use crate::{Error, Result};
use luoshu_dist::LinkCost;
use std::collections::BTreeMap;

/// Work done by a timed kernel (as the cost model counts it) and its seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timed {
    /// The work: FLOPs, bytes or kernels, as the field of [`Measured`] holding it says.
    pub amount: f64,
    /// Wall-clock seconds it took.
    pub seconds: f64,
}

impl Timed {
    /// Work per second.
    pub fn rate(&self) -> f64 {
        self.amount / self.seconds
    }
}

/// What one rank measured while `devices` ranks ran the same kernels at once.
#[derive(Debug, Clone, PartialEq)]
pub struct Measured {
    /// Ranks that shared the machine (the devices of the description).
    pub devices: usize,
    /// What the description calls the device (e.g. "threads rank of 2 on a 2-core CPU").
    pub model: String,
    /// Memory each rank may use, in bytes.
    pub memory_bytes: u64,
    /// The dtype the kernels ran in (`f32`).
    pub dtype: String,
    /// FLOPs of the GEMM mix.
    pub matmul: Timed,
    /// FLOPs of fused attention forward + backward, counted as [`crate::ops`] counts them.
    pub attention: Timed,
    /// Bytes the elementwise kernels read and wrote.
    pub elementwise: Timed,
    /// Bytes a large copy read and wrote.
    pub copy: Timed,
    /// Bytes of a small all-reduce over the `devices` ranks; with the large one it fits
    /// the links' α and bandwidth.
    pub all_reduce_small: Timed,
    /// Bytes of a large all-reduce over the `devices` ranks (a size other than the small
    /// one's).
    pub all_reduce_large: Timed,
    /// Kernels of a few elements each, dispatched one after another through a compiled
    /// plan: their seconds per kernel are the kernel overhead.
    pub dispatch: Timed,
}

/// Fused attention's forward and backward FLOPs as the cost model counts them (the forward
/// op from [`crate::ops`] and its [`backward`]).
pub fn attention_flops(forward: &OpCost) -> f64 {
    forward.flops + backward(forward).flops
}

/// A fraction of a rate, at most 1 (a kernel class faster than the reference rate is
/// modelled at the reference rate).
fn fraction(rate: f64, reference: f64) -> f64 {
    (rate / reference).min(1.0)
}

/// α and bandwidth that make the all-reduce model reproduce both measurements: the model
/// is linear in α and 1/B, `t = a·α + b/B`, so two sizes determine both. A negative α
/// (the small message timed slower than the line through both allows) is clamped to 0.
fn fit_link(p: usize, small: Timed, large: Timed) -> Result<Link> {
    let per_alpha = |n: f64| {
        Collective::AllReduce.seconds(
            p,
            n,
            LinkCost {
                alpha: 1.0,
                bandwidth: f64::INFINITY,
            },
        )
    };
    let per_inverse_bandwidth = |n: f64| {
        Collective::AllReduce.seconds(
            p,
            n,
            LinkCost {
                alpha: 0.0,
                bandwidth: 1.0,
            },
        )
    };
    let (a1, b1) = (per_alpha(small.amount), per_inverse_bandwidth(small.amount));
    let (a2, b2) = (per_alpha(large.amount), per_inverse_bandwidth(large.amount));
    let determinant = a1 * b2 - a2 * b1;
    if determinant == 0.0 || determinant.is_nan() {
        return Err(Error::Input(
            "the two all-reduce sizes must differ to fit α and bandwidth".into(),
        ));
    }
    let alpha = (small.seconds * b2 - large.seconds * b1) / determinant;
    let inverse = (a1 * large.seconds - a2 * small.seconds) / determinant;
    let alpha = alpha.max(0.0);
    // With α clamped, the large message alone sets the bandwidth.
    let inverse = if alpha == 0.0 {
        large.seconds / b2
    } else {
        inverse
    };
    if !(inverse.is_finite() && inverse > 0.0) {
        return Err(Error::Input(format!(
            "the all-reduce timings ({} s for {} bytes, {} s for {} bytes) give no positive \
             bandwidth; calibrate again on a quieter machine",
            small.seconds, small.amount, large.seconds, large.amount
        )));
    }
    Ok(Link {
        alpha,
        bandwidth: 1.0 / inverse,
    })
}

impl Measured {
    /// The hardware description these measurements imply, named `name`: one node of
    /// `devices`. With one device there is no link to measure; its links are the copy.
    pub fn to_hardware(&self, name: &str) -> Result<Hardware> {
        let timings = [
            ("matmul", self.matmul),
            ("attention", self.attention),
            ("elementwise", self.elementwise),
            ("copy", self.copy),
            ("all_reduce_small", self.all_reduce_small),
            ("all_reduce_large", self.all_reduce_large),
            ("dispatch", self.dispatch),
        ];
        for (what, t) in timings {
            if !(t.amount > 0.0 && t.seconds > 0.0 && t.rate().is_finite()) {
                return Err(Error::Input(format!(
                    "calibration of {what}: {} units in {} s is not a rate",
                    t.amount, t.seconds
                )));
            }
        }
        let peak = self.matmul.rate();
        let bandwidth = self.copy.rate();
        let link = match self.devices {
            0 => {
                return Err(Error::Input(
                    "a calibration needs at least one device".into(),
                ))
            }
            1 => Link {
                alpha: 0.0,
                bandwidth: bandwidth / 2.0,
            },
            p => fit_link(p, self.all_reduce_small, self.all_reduce_large)?,
        };
        let hardware = Hardware {
            name: name.to_string(),
            devices_per_node: self.devices,
            // Threads ranks share this machine's cores.
            shared_compute: true,
            device: Device {
                model: self.model.clone(),
                memory_bytes: self.memory_bytes,
                memory_bandwidth: bandwidth,
                peak_flops: BTreeMap::from([(self.dtype.clone(), peak)]),
                efficiency: Efficiency {
                    matmul: 1.0,
                    attention: fraction(self.attention.rate(), peak),
                    elementwise: fraction(self.elementwise.rate(), bandwidth),
                    memory_bound: 1.0,
                },
                // The dispatched kernels' work is a few hundred bytes: their time is the
                // overhead.
                kernel_overhead: 1.0 / self.dispatch.rate(),
            },
            intra_node: link,
            // One node: the inter-node link is never used; it repeats the node's.
            inter_node: link,
        };
        // The same validation a hand-written file gets.
        let text = toml::to_string(&hardware).map_err(|e| Error::Hardware(e.to_string()))?;
        Hardware::parse(&text, name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::OpClass;
    use crate::roofline::Roofline;
    use luoshu_tensor::DType;

    fn measured(devices: usize) -> Measured {
        Measured {
            devices,
            model: "test".into(),
            memory_bytes: 1 << 30,
            dtype: "f32".into(),
            matmul: Timed {
                amount: 100e9,
                seconds: 2.0,
            },
            attention: Timed {
                amount: 30e9,
                seconds: 1.0,
            },
            elementwise: Timed {
                amount: 4e9,
                seconds: 1.0,
            },
            copy: Timed {
                amount: 10e9,
                seconds: 1.0,
            },
            // p = 2: t = 2α + n/B; α = 10 µs, B = 1 GB/s.
            all_reduce_small: Timed {
                amount: 4096.0,
                seconds: 20e-6 + 4096e-9,
            },
            all_reduce_large: Timed {
                amount: 16e6,
                seconds: 20e-6 + 16e-3,
            },
            dispatch: Timed {
                amount: 100.0,
                seconds: 1e-3,
            },
        }
    }

    #[test]
    fn every_measurement_is_reproduced_by_the_model() {
        let m = measured(2);
        let hardware = m.to_hardware("local").unwrap();
        let roofline = Roofline::new(&hardware, DType::F32).unwrap();
        let op = |class, flops, bytes| OpCost {
            name: "x",
            class,
            flops,
            bytes,
        };
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * b.abs().max(1e-12);
        assert!(close(
            roofline.seconds(&op(OpClass::Matmul, 100e9, 0.0)),
            2.0
        ));
        assert!(close(
            roofline.seconds(&op(OpClass::Attention, 30e9, 0.0)),
            1.0
        ));
        assert!(close(
            roofline.seconds(&op(OpClass::Elementwise, 0.0, 4e9)),
            1.0
        ));
        assert!(close(
            roofline.seconds(&op(OpClass::MemoryBound, 0.0, 10e9)),
            1.0
        ));
        let link = LinkCost {
            alpha: hardware.intra_node.alpha,
            bandwidth: hardware.intra_node.bandwidth,
        };
        assert!(close(hardware.device.kernel_overhead, 10e-6));
        assert!(close(hardware.intra_node.alpha, 10e-6));
        assert!(close(hardware.intra_node.bandwidth, 1e9));
        for t in [m.all_reduce_small, m.all_reduce_large] {
            assert!(close(
                Collective::AllReduce.seconds(2, t.amount, link),
                t.seconds
            ));
        }
    }

    #[test]
    fn a_kernel_faster_than_the_gemm_rate_is_capped_and_alpha_never_negative() {
        let mut m = measured(4);
        m.attention.seconds = 0.01;
        // A small message timed slower than the line through both allows: α < 0 → 0.
        m.all_reduce_small.seconds = 1e-9;
        let hardware = m.to_hardware("local").unwrap();
        assert_eq!(hardware.device.efficiency.attention, 1.0);
        assert_eq!(hardware.intra_node.alpha, 0.0);
        assert!(hardware.intra_node.bandwidth > 0.0);
    }

    #[test]
    fn one_device_has_no_link_to_fit_and_bad_timings_are_refused() {
        let hardware = measured(1).to_hardware("local").unwrap();
        assert_eq!(hardware.devices_per_node, 1);
        let mut m = measured(2);
        m.copy.seconds = 0.0;
        let err = m.to_hardware("local").unwrap_err().to_string();
        assert!(err.contains("copy"), "{err}");
    }

    #[test]
    fn attention_counts_forward_and_backward() {
        let forward = OpCost {
            name: "attention",
            class: OpClass::Attention,
            flops: 2.0,
            bytes: 0.0,
        };
        assert_eq!(attention_flops(&forward), 2.0 + 5.0);
    }
}
