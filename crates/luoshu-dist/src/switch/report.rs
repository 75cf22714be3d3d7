//! What a switch plan costs: pieces, fused messages, bytes per link class, the lower
//! bound, the busiest ranks and an α-β time estimate.

use super::plan::SwitchPlan;
use crate::topology::{LinkClass, Topology};
use std::collections::BTreeMap;
use std::fmt;

/// What a switch plan costs (see the module documentation).
#[derive(Debug, Clone, PartialEq)]
pub struct SwitchReport {
    /// Tensors moved.
    pub tensors: usize,
    /// Cells moved or copied.
    pub pieces: usize,
    /// Fused messages between distinct ranks (one per ordered pair that exchanges data).
    pub messages: usize,
    /// Bytes per link class; `SameRank` is local copies.
    pub bytes: BTreeMap<LinkClass, usize>,
    /// Bytes received over links (every class but `SameRank`).
    pub received: usize,
    /// What every rank must receive because it does not hold it.
    pub lower_bound: usize,
    /// Bytes the busiest sender sends.
    pub max_send: usize,
    /// Bytes the busiest receiver receives.
    pub max_receive: usize,
    /// The slowest rank's time: its messages (α + bytes / bandwidth each) sent and
    /// received concurrently (full-duplex links), local copies after them.
    pub estimated_seconds: f64,
}

impl SwitchReport {
    /// The report of `plan` moving `tensors` tensors on `topology`.
    pub fn of(plan: &SwitchPlan, tensors: usize, topology: &Topology) -> Self {
        let world = plan.world;
        let mut bytes: BTreeMap<LinkClass, usize> =
            LinkClass::ALL.iter().map(|&c| (c, 0)).collect();
        let mut pairs: BTreeMap<(usize, usize), usize> = BTreeMap::new();
        let mut local = vec![0usize; world];
        for t in &plan.transfers {
            let size = t.region.numel() * plan.element_bytes;
            *bytes.entry(topology.link(t.from, t.to)).or_default() += size;
            if t.from == t.to {
                local[t.from] += size;
            } else {
                *pairs.entry((t.from, t.to)).or_default() += size;
            }
        }
        let (mut send, mut receive) = (vec![0usize; world], vec![0usize; world]);
        let (mut send_time, mut receive_time) = (vec![0.0f64; world], vec![0.0f64; world]);
        for (&(from, to), &size) in &pairs {
            let time = topology.cost(topology.link(from, to)).time(size);
            send[from] += size;
            receive[to] += size;
            send_time[from] += time;
            receive_time[to] += time;
        }
        let copy = topology.cost(LinkClass::SameRank);
        let estimated_seconds = (0..world)
            .map(|r| {
                let copies = if local[r] > 0 {
                    copy.time(local[r])
                } else {
                    0.0
                };
                send_time[r].max(receive_time[r]) + copies
            })
            .fold(0.0, f64::max);
        SwitchReport {
            tensors,
            pieces: plan.transfers.len(),
            messages: pairs.len(),
            received: receive.iter().sum(),
            bytes,
            lower_bound: plan.lower_bound_per_rank.iter().sum(),
            max_send: send.iter().copied().max().unwrap_or(0),
            max_receive: receive.iter().copied().max().unwrap_or(0),
            estimated_seconds,
        }
    }
}

/// Bytes in binary units, e.g. `1.50 GiB`.
pub fn human_bytes(bytes: usize) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.2} {}", UNITS[unit])
    }
}

impl fmt::Display for SwitchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "tensors          {}", self.tensors)?;
        writeln!(f, "pieces           {}", self.pieces)?;
        writeln!(f, "messages         {}", self.messages)?;
        for (class, &b) in &self.bytes {
            writeln!(f, "bytes {:<10} {}", class.name(), human_bytes(b))?;
        }
        writeln!(f, "received         {}", human_bytes(self.received))?;
        writeln!(f, "lower bound      {}", human_bytes(self.lower_bound))?;
        writeln!(f, "max send / rank  {}", human_bytes(self.max_send))?;
        writeln!(f, "max recv / rank  {}", human_bytes(self.max_receive))?;
        write!(f, "estimated time   {:.3} ms", self.estimated_seconds * 1e3)
    }
}
