//! The simulated cluster: a model on `devices` accelerators of one hardware description,
//! with the rates every cost is computed from.

use crate::hardware::Hardware;
use crate::kernels::KernelCounts;
use crate::memory::Bytes;
use crate::roofline::Roofline;
use crate::{Error, Result};
use luoshu_dist::Topology;
use luoshu_model::{ModelConfig, Precision};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// A model on a cluster of identical devices, with the rates and sizes every cost of the
/// simulator is computed from.
#[derive(Debug, Clone)]
pub struct Simulator {
    /// The model being trained.
    pub model: ModelConfig,
    /// What every device and link is.
    pub hardware: Hardware,
    /// Number of devices (ranks) in the cluster.
    pub devices: usize,
    /// Parameter and compute dtypes of the run.
    pub precision: Precision,
    /// The device's rates in the compute dtype.
    pub roofline: Roofline,
    /// The ranks laid out on nodes, with the α-β cost of each kind of link.
    pub topology: Topology,
    /// Element sizes of `precision`.
    pub bytes: Bytes,
    /// Kernel counts by (tp, cp), counted on first use: only hardware with a kernel
    /// overhead needs them, and a search asks for the same few degrees many times.
    kernel_counts: Arc<KernelCache>,
}

/// Kernel counts by tensor- and context-parallel degree.
type KernelCache = Mutex<BTreeMap<(usize, usize), Arc<KernelCounts>>>;

impl Simulator {
    /// `model` on `devices` devices of `hardware`. Errors when the model config is invalid,
    /// `devices` is 0 or more than one node but not whole nodes, or the hardware has no
    /// peak FLOP/s for the compute dtype of `precision`.
    pub fn new(
        model: ModelConfig,
        hardware: Hardware,
        devices: usize,
        precision: Precision,
    ) -> Result<Self> {
        model.validate()?;
        if devices == 0 {
            return Err(Error::Input("at least one device is needed".into()));
        }
        if devices > hardware.devices_per_node && !devices.is_multiple_of(hardware.devices_per_node)
        {
            return Err(Error::Input(format!(
                "{devices} devices are not whole nodes of {} ({} per node); use a multiple of {}",
                hardware.name, hardware.devices_per_node, hardware.devices_per_node
            )));
        }
        let roofline = Roofline::new(&hardware, precision.compute_dtype())?;
        let topology = hardware.topology(devices)?;
        Ok(Simulator {
            model,
            hardware,
            devices,
            precision,
            roofline,
            topology,
            bytes: Bytes::of(precision),
            kernel_counts: Arc::default(),
        })
    }

    /// The model's kernel counts under `tp`-way tensor and `cp`-way context parallelism.
    pub fn kernel_counts(&self, tp: usize, cp: usize) -> Result<Arc<KernelCounts>> {
        let mut cache = self
            .kernel_counts
            .lock()
            .map_err(|_| Error::Input("a kernel count panicked on another thread".into()))?;
        if let Some(counts) = cache.get(&(tp, cp)) {
            return Ok(counts.clone());
        }
        let counts = Arc::new(KernelCounts::of(&self.model, self.precision, tp, cp)?);
        cache.insert((tp, cp), counts.clone());
        Ok(counts)
    }

    /// Devices that share a node (and may share a tensor-parallel group).
    pub fn per_node(&self) -> usize {
        self.topology.ranks_per_node
    }

    /// Device memory in bytes.
    pub fn memory_capacity(&self) -> f64 {
        self.hardware.device.memory_bytes as f64
    }
}
