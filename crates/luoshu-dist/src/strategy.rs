//! Parallel strategies named on the command line (`dp2tp2`, `tp4`, `dp2pp2`, `dp4zero1`,
//! `cp2`, `dp2cp2`) and the device mesh they lay out over a communicator.

use crate::{Error, Result};
use luoshu_comm::Communicator;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

/// A product of data, context, tensor (with sequence) and pipeline parallelism, optionally
/// with ZeRO-1 (optimizer state sharded over the data-parallel group). Context parallelism
/// (`cp`) splits every sequence along its length over `cp` ranks that hold the same
/// parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Strategy {
    /// Data-parallel replicas.
    pub dp: usize,
    /// Tensor-parallel ranks per replica (Megatron column/row with sequence parallelism).
    pub tp: usize,
    /// Pipeline stages.
    pub pp: usize,
    /// Whether the optimizer state is sharded over the data-parallel ranks (ZeRO-1).
    pub zero1: bool,
    /// Context-parallel ranks splitting each sequence.
    pub cp: usize,
}

impl Strategy {
    /// One device, no parallelism.
    pub const SINGLE: Strategy = Strategy {
        dp: 1,
        tp: 1,
        pp: 1,
        zero1: false,
        cp: 1,
    };

    /// Ranks the strategy needs.
    pub fn devices(&self) -> usize {
        self.dp * self.cp * self.tp * self.pp
    }

    /// Ranks holding the same parameter pieces, whose gradients are summed: the data- and
    /// context-parallel replicas.
    pub fn replicas(&self) -> usize {
        self.dp * self.cp
    }

    /// Why these degrees cannot run together, if they cannot: context parallelism does not
    /// combine with pipelines or ZeRO-1 yet.
    pub fn unsupported_combination(&self) -> Option<&'static str> {
        (self.cp > 1 && (self.pp > 1 || self.zero1)).then_some(
            "context parallelism (`cp`) does not combine with `pp` or `zero1` yet; use `cp` \
             with `dp` and `tp` only",
        )
    }
}

impl Default for Strategy {
    fn default() -> Self {
        Strategy::SINGLE
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut any = false;
        let degrees = [
            ("dp", self.dp),
            ("cp", self.cp),
            ("tp", self.tp),
            ("pp", self.pp),
        ];
        for (name, degree) in degrees {
            if degree > 1 {
                write!(f, "{name}{degree}")?;
                any = true;
            }
        }
        if self.zero1 {
            write!(f, "{}zero1", if any { "" } else { "dp1" })?;
        } else if !any {
            write!(f, "single")?;
        }
        Ok(())
    }
}

impl FromStr for Strategy {
    type Err = Error;

    /// `single`, or a concatenation of `dpN`, `cpN`, `tpN`, `ppN` (each at most once,
    /// N ≥ 1) and an optional `zero1`, e.g. `dp2tp2`, `tp4`, `dp2pp2`, `dp4zero1`, `dp2cp2`.
    /// Context parallelism does not combine with pipelines or ZeRO-1 (refused here).
    fn from_str(text: &str) -> Result<Self> {
        let bad = |why: String| Error::StrategySyntax {
            text: text.to_string(),
            why,
        };
        if text == "single" {
            return Ok(Strategy::SINGLE);
        }
        let mut strategy = Strategy::SINGLE;
        let mut seen: Vec<&str> = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            let name_len = rest
                .find(|c: char| !c.is_ascii_lowercase())
                .unwrap_or(rest.len());
            let (name, after) = rest.split_at(name_len);
            let digits = after
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(after.len());
            let (number, after) = after.split_at(digits);
            let degree: usize = number
                .parse()
                .map_err(|_| bad(format!("`{name}` needs a number after it")))?;
            if degree == 0 {
                return Err(bad(format!("`{name}0` has degree 0")));
            }
            if seen.contains(&name) {
                return Err(bad(format!("`{name}` appears twice")));
            }
            seen.push(name);
            match name {
                "dp" => strategy.dp = degree,
                "cp" => strategy.cp = degree,
                "tp" => strategy.tp = degree,
                "pp" => strategy.pp = degree,
                "zero" if degree == 1 => strategy.zero1 = true,
                "zero" => return Err(bad(format!("only ZeRO stage 1 exists, got zero{degree}"))),
                other => return Err(bad(format!("unknown parallelism `{other}`"))),
            }
            rest = after;
        }
        if text.is_empty() {
            return Err(bad("empty strategy".into()));
        }
        if let Some(why) = strategy.unsupported_combination() {
            return Err(bad(why.into()));
        }
        Ok(strategy)
    }
}

/// Where one rank sits in the `dp × cp × pp × tp` mesh (tensor parallelism varies fastest,
/// so a tensor-parallel group is a run of consecutive ranks, the ones that talk most), and
/// the communicators of its groups.
#[derive(Clone)]
pub struct Mesh {
    /// The strategy the mesh lays out.
    pub strategy: Strategy,
    /// This rank's data-parallel replica.
    pub dp_rank: usize,
    /// This rank's index in its context-parallel group.
    pub cp_rank: usize,
    /// This rank's pipeline stage.
    pub pp_rank: usize,
    /// This rank's index in its tensor-parallel group.
    pub tp_rank: usize,
    /// Every rank of the strategy.
    pub world: Arc<dyn Communicator>,
    /// The ranks holding the same pieces in other data-parallel replicas.
    pub dp: Arc<dyn Communicator>,
    /// The ranks sharing this rank's sequences (context parallelism).
    pub cp: Arc<dyn Communicator>,
    /// The ranks of this rank's tensor-parallel group.
    pub tp: Arc<dyn Communicator>,
    /// The ranks of the other pipeline stages of this replica.
    pub pp: Arc<dyn Communicator>,
    /// The data- and context-parallel replicas of this rank's parameter pieces (gradients
    /// are summed over it); the same ranks as `dp` without context parallelism.
    pub replicas: Arc<dyn Communicator>,
}

impl Mesh {
    /// Collective over `world`: split it into the strategy's groups.
    pub fn new(strategy: Strategy, world: Arc<dyn Communicator>) -> Result<Self> {
        if world.size() != strategy.devices() {
            return Err(Error::Devices {
                strategy: strategy.to_string(),
                needs: strategy.devices(),
                has: world.size(),
            });
        }
        let Strategy { tp, pp, cp, .. } = strategy;
        let rank = world.rank();
        let (tp_rank, pp_rank, replica) = (rank % tp, (rank / tp) % pp, rank / (tp * pp));
        let (cp_rank, dp_rank) = (replica % cp, replica / cp);
        let tp_comm = world.split(replica * pp + pp_rank, tp_rank)?;
        let dp_comm = world.split((cp_rank * pp + pp_rank) * tp + tp_rank, dp_rank)?;
        let cp_comm = world.split((dp_rank * pp + pp_rank) * tp + tp_rank, cp_rank)?;
        let pp_comm = world.split(replica * tp + tp_rank, pp_rank)?;
        let replicas = world.split(pp_rank * tp + tp_rank, replica)?;
        Ok(Mesh {
            strategy,
            dp_rank,
            cp_rank,
            pp_rank,
            tp_rank,
            world,
            dp: dp_comm,
            cp: cp_comm,
            tp: tp_comm,
            pp: pp_comm,
            replicas,
        })
    }

    /// The world rank at mesh coordinates `(replica, pp, tp)`, where replica
    /// `dp_rank · cp + cp_rank` numbers the data- and context-parallel replicas.
    pub fn rank_of(&self, replica: usize, pp: usize, tp: usize) -> usize {
        (replica * self.strategy.pp + pp) * self.strategy.tp + tp
    }
}

impl fmt::Debug for Mesh {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mesh")
            .field("strategy", &self.strategy)
            .field("rank", &self.world.rank())
            .field("dp_rank", &self.dp_rank)
            .field("cp_rank", &self.cp_rank)
            .field("pp_rank", &self.pp_rank)
            .field("tp_rank", &self.tp_rank)
            .finish()
    }
}
