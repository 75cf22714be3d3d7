//! Seconds of an op on one device: the roofline of its FLOPs against the class's share of
//! peak FLOP/s and of its bytes against the class's share of memory bandwidth.

use crate::hardware::Hardware;
use crate::ops::{OpClass, OpCost};
use crate::Result;
use luoshu_tensor::DType;

/// The device's rates for one compute dtype, resolved once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Roofline {
    /// Dense FLOP/s of one device in the compute dtype.
    pub peak_flops: f64,
    /// Bytes per second of device memory.
    pub memory_bandwidth: f64,
    /// Fractions of those peaks each class of op reaches.
    pub efficiency: crate::hardware::Efficiency,
}

impl Roofline {
    /// The rates of `hardware` for compute in `dtype`; errors when the hardware lists no
    /// peak FLOP/s for `dtype`.
    pub fn new(hardware: &Hardware, dtype: DType) -> Result<Self> {
        Ok(Roofline {
            peak_flops: hardware.peak_flops(dtype)?,
            memory_bandwidth: hardware.device.memory_bandwidth,
            efficiency: hardware.device.efficiency,
        })
    }

    /// `max(flops / (peak · e_compute), bytes / (bandwidth · e_memory))`: matmul and
    /// attention use their FLOP efficiency and the memory-bound bandwidth; elementwise
    /// kernels their own bandwidth share.
    pub fn seconds(&self, op: &OpCost) -> f64 {
        let e = self.efficiency;
        let (compute, memory) = match op.class {
            OpClass::Matmul => (e.matmul, e.memory_bound),
            OpClass::Attention => (e.attention, e.memory_bound),
            OpClass::Elementwise => (1.0, e.elementwise),
            OpClass::MemoryBound => (1.0, e.memory_bound),
        };
        let flops = op.flops / (self.peak_flops * compute);
        let bytes = op.bytes / (self.memory_bandwidth * memory);
        flops.max(bytes)
    }

    /// Seconds of `ops` run one after another.
    pub fn total(&self, ops: &[OpCost]) -> f64 {
        ops.iter().map(|op| self.seconds(op)).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hardware::Efficiency;

    fn roofline() -> Roofline {
        Roofline {
            peak_flops: 100.0,
            memory_bandwidth: 10.0,
            efficiency: Efficiency {
                matmul: 0.5,
                attention: 0.25,
                elementwise: 0.8,
                memory_bound: 0.5,
            },
        }
    }

    #[test]
    fn compute_and_memory_bound_ops_by_hand() {
        let r = roofline();
        let op = |class, flops, bytes| OpCost {
            name: "x",
            class,
            flops,
            bytes,
        };
        // 1000 FLOPs at 50 FLOP/s = 20 s beats 10 bytes at 5 B/s = 2 s.
        assert_eq!(r.seconds(&op(OpClass::Matmul, 1000.0, 10.0)), 20.0);
        // 1000 bytes at 5 B/s = 200 s beats 1000 FLOPs at 50.
        assert_eq!(r.seconds(&op(OpClass::Matmul, 1000.0, 1000.0)), 200.0);
        assert_eq!(r.seconds(&op(OpClass::Attention, 1000.0, 0.0)), 40.0);
        assert_eq!(r.seconds(&op(OpClass::Elementwise, 0.0, 80.0)), 10.0);
        assert_eq!(r.seconds(&op(OpClass::MemoryBound, 0.0, 80.0)), 16.0);
    }
}
