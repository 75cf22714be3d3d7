//! What the simulated cluster is made of: one kind of device (peak FLOP/s per dtype, memory,
//! memory bandwidth, the fraction of each peak a kernel class reaches), how many share a
//! node, and the α-β cost of links within and between nodes. Read from TOML; two presets
//! are built in, their numbers' sources written next to them.

use crate::{Error, Result};
use luoshu_dist::{LinkCost, Topology};
use luoshu_graph::passes::closest;
use luoshu_tensor::DType;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// The built-in hardware files, by name.
pub const PRESETS: [(&str, &str); 2] = [
    ("a800-node", include_str!("../hardware/a800-node.toml")),
    ("h100-node", include_str!("../hardware/h100-node.toml")),
];

/// Fractions of peak a class of kernel reaches (0 < e ≤ 1).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Efficiency {
    /// Of the peak FLOP/s, for matrix multiplications.
    pub matmul: f64,
    /// Of the peak FLOP/s, for fused (flash) attention.
    pub attention: f64,
    /// Of the memory bandwidth, for fused elementwise kernels (norms, rope, SwiGLU, loss).
    pub elementwise: f64,
    /// Of the memory bandwidth, for copies, gathers, optimizer updates and the memory side
    /// of matmul and attention.
    pub memory_bound: f64,
}

/// One accelerator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Device {
    /// Name of the accelerator, for reports and errors.
    pub model: String,
    /// Memory of one device, in bytes.
    pub memory_bytes: u64,
    /// Bytes per second.
    pub memory_bandwidth: f64,
    /// Dense FLOP/s by dtype name (`f32`, `tf32`, `bf16`, `f16`).
    pub peak_flops: BTreeMap<String, f64>,
    /// Fractions of the peaks each class of kernel reaches.
    pub efficiency: Efficiency,
    /// Seconds every kernel costs beyond its roofline time: dispatching it (the executor's
    /// step and the backend's checks on a CPU, a launch on an accelerator), counted per
    /// kernel of the compiled graphs ([`crate::kernels`]). Measured by `luoshu sim
    /// calibrate`; absent (0, not modelled) in the accelerator presets, whose launches are
    /// asynchronous and hide behind the kernels of models worth a cluster.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub kernel_overhead: f64,
}

fn is_zero(x: &f64) -> bool {
    *x == 0.0
}

/// α (seconds per message) and bandwidth (bytes per second per device and direction).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Link {
    /// Seconds of latency per message (α); at least 0.
    pub alpha: f64,
    /// Bytes per second per device and direction; positive.
    pub bandwidth: f64,
}

impl Link {
    fn cost(self) -> LinkCost {
        LinkCost {
            alpha: self.alpha,
            bandwidth: self.bandwidth,
        }
    }
}

/// A cluster of identical nodes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hardware {
    /// Name of the description (a preset's name for the presets).
    pub name: String,
    /// Devices in one node, sharing the intra-node link; at least 1.
    pub devices_per_node: usize,
    /// The devices of a node are ranks sharing one processor's cores (threads ranks on a
    /// CPU): a rank that waits lends its cores to the others, so a phase takes its ranks'
    /// total work at the node's rate, not the slowest pipeline with idle bubbles. False
    /// (the default) for accelerators, each with its own compute.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub shared_compute: bool,
    /// Every device of the cluster.
    pub device: Device,
    /// The link between two devices of one node.
    pub intra_node: Link,
    /// The link between devices of different nodes.
    pub inter_node: Link,
}

impl Hardware {
    /// A built-in preset (see [`PRESETS`]); an unknown name gets the closest one suggested.
    pub fn preset(name: &str) -> Result<Self> {
        match PRESETS.iter().find(|(n, _)| *n == name) {
            Some((n, text)) => Hardware::parse(text, &format!("preset {n}")),
            None => {
                let names: Vec<&str> = PRESETS.iter().map(|(n, _)| *n).collect();
                Err(Error::UnknownPreset {
                    name: name.to_string(),
                    suggestion: closest(name, &names).map(str::to_string),
                    available: names.join(", "),
                })
            }
        }
    }

    /// A preset name, or else a path to a hardware TOML file.
    pub fn load(name_or_path: &str) -> Result<Self> {
        let path = Path::new(name_or_path);
        if PRESETS.iter().any(|(n, _)| *n == name_or_path) || !path.exists() {
            return Hardware::preset(name_or_path);
        }
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Hardware(format!("{}: {e}", path.display())))?;
        Hardware::parse(&text, &path.display().to_string())
    }

    /// Parses and validates a hardware file; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self> {
        let hardware: Hardware =
            toml::from_str(text).map_err(|e| Error::Hardware(format!("{origin}: {e}")))?;
        hardware
            .validate()
            .map_err(|why| Error::Hardware(format!("{origin}: {why}")))?;
        Ok(hardware)
    }

    fn validate(&self) -> std::result::Result<(), String> {
        if self.devices_per_node == 0 {
            return Err("devices_per_node must be at least 1".into());
        }
        if self.device.memory_bytes == 0 {
            return Err("device.memory_bytes must be positive".into());
        }
        let e = self.device.efficiency;
        let mut positive = vec![
            ("device.memory_bandwidth", self.device.memory_bandwidth),
            ("intra_node.bandwidth", self.intra_node.bandwidth),
            ("inter_node.bandwidth", self.inter_node.bandwidth),
        ];
        positive.extend(
            self.device
                .peak_flops
                .iter()
                .map(|(dtype, &flops)| (dtype.as_str(), flops)),
        );
        if let Some((field, value)) = positive.iter().find(|(_, v)| !(v.is_finite() && *v > 0.0)) {
            return Err(format!("{field} must be a positive number, got {value}"));
        }
        for (field, value) in [
            ("intra_node.alpha", self.intra_node.alpha),
            ("inter_node.alpha", self.inter_node.alpha),
            ("device.kernel_overhead", self.device.kernel_overhead),
        ] {
            if !(value.is_finite() && value >= 0.0) {
                return Err(format!(
                    "{field} must be a non-negative number, got {value}"
                ));
            }
        }
        for (field, value) in [
            ("matmul", e.matmul),
            ("attention", e.attention),
            ("elementwise", e.elementwise),
            ("memory_bound", e.memory_bound),
        ] {
            if !(value > 0.0 && value <= 1.0) {
                return Err(format!(
                    "device.efficiency.{field} must be in (0, 1], got {value}"
                ));
            }
        }
        Ok(())
    }

    /// Dense FLOP/s of one device in `dtype`.
    pub fn peak_flops(&self, dtype: DType) -> Result<f64> {
        self.device
            .peak_flops
            .get(dtype.name())
            .copied()
            .ok_or_else(|| {
                Error::Hardware(format!(
                    "{} has no device.peak_flops.{} (it lists {}); add the {} peak",
                    self.name,
                    dtype.name(),
                    self.device
                        .peak_flops
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", "),
                    dtype.name()
                ))
            })
    }

    /// `devices` ranks of this hardware, `devices_per_node` to a node, as the switch
    /// planner and the α-β models see them. A local copy reads and writes every byte at
    /// the memory-bound fraction of the memory bandwidth; its launch is not modelled.
    pub fn topology(&self, devices: usize) -> Result<Topology> {
        let copy = LinkCost {
            alpha: 0.0,
            bandwidth: self.device.memory_bandwidth * self.device.efficiency.memory_bound / 2.0,
        };
        Ok(Topology::new(
            devices,
            self.devices_per_node.min(devices.max(1)),
            copy,
            self.intra_node.cost(),
            self.inter_node.cost(),
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_parse_and_misspelt_names_get_a_suggestion() {
        for (name, _) in PRESETS {
            let hw = Hardware::preset(name).unwrap();
            assert_eq!(hw.name, name);
            assert!(hw.peak_flops(DType::BF16).unwrap() > hw.peak_flops(DType::F32).unwrap());
        }
        let err = Hardware::preset("a800").unwrap_err().to_string();
        assert!(err.contains("did you mean `a800-node`"), "{err}");
        let err = Hardware::preset("zzzzzzzzzzzzzz").unwrap_err().to_string();
        assert!(!err.contains("did you mean"), "{err}");
    }

    #[test]
    fn bad_files_name_the_field() {
        let good = PRESETS[0].1;
        let missing = good.replace("memory_bandwidth = 2.039e12", "");
        let err = Hardware::parse(&missing, "x.toml").unwrap_err().to_string();
        assert!(
            err.contains("x.toml") && err.contains("memory_bandwidth"),
            "{err}"
        );
        let negative = good.replace("bandwidth = 12.5e9", "bandwidth = -12.5e9");
        let err = Hardware::parse(&negative, "x.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("inter_node.bandwidth"), "{err}");
        let efficiency = good.replace("matmul = 0.75", "matmul = 1.5");
        let err = Hardware::parse(&efficiency, "x.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("efficiency.matmul"), "{err}");
        let typo = good.replace("devices_per_node", "devices_per_nod");
        assert!(Hardware::parse(&typo, "x.toml").is_err());
        let err = Hardware::preset("a800-node")
            .unwrap()
            .peak_flops(DType::F64)
            .unwrap_err()
            .to_string();
        assert!(err.contains("peak_flops.f64"), "{err}");
    }
}
