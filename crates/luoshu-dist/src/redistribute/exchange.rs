//! Planning of point-to-point [`Exchange`]s: cutting each destination box into cells
//! that single devices hold, and choosing who sends each cell.

use super::{numel, Cell, Exchange, Target};
use crate::{Error, Result};
use std::ops::Range;

impl Target {
    /// Zeros over `region` (also how an empty region is produced).
    pub(super) fn zeros(region: Vec<Range<usize>>) -> Target {
        Target {
            region,
            grid: Vec::new(),
            cells: Vec::new(),
        }
    }

    /// `region`, cut by `device` out of what it holds.
    pub(super) fn kept(region: Vec<Range<usize>>, device: usize) -> Target {
        if numel(&region) == 0 {
            return Target::zeros(region);
        }
        Target {
            grid: vec![1; region.len()],
            cells: vec![Cell {
                region: region.clone(),
                owner: device,
            }],
            region,
        }
    }
}

/// Plans how every device `t` obtains the box `regions[t].0` from the non-partial boxes
/// `held` (which must form a grid: each dim cut the same way for every device), or zeros
/// over it when `regions[t].1` is false. A device keeps what it holds itself; any other cell comes from the
/// holder with the fewest bytes assigned so far (lowest device on ties). Adds the bytes
/// each device sends to `bytes_sent`.
pub(super) fn plan_exchange(
    held: Vec<Vec<Range<usize>>>,
    regions: Vec<(Vec<Range<usize>>, bool)>,
    element_bytes: usize,
    bytes_sent: &mut [usize],
) -> Result<Exchange> {
    let mut load = vec![0usize; held.len()];
    let mut targets = Vec::with_capacity(regions.len());
    for (device, (region, needs_data)) in regions.into_iter().enumerate() {
        if !needs_data || numel(&region) == 0 {
            targets.push(Target::zeros(region));
            continue;
        }
        let cuts: Vec<Vec<Range<usize>>> = (0..region.len())
            .map(|dim| cut_dim(&region[dim], held.iter().map(|h| &h[dim])))
            .collect();
        let mut cells = Vec::new();
        for cell in cartesian(&cuts) {
            let owner = choose_owner(&held, &load, device, &cell)?;
            if owner != device {
                load[owner] += numel(&cell) * element_bytes;
            }
            cells.push(Cell {
                region: cell,
                owner,
            });
        }
        targets.push(Target {
            grid: cuts.iter().map(Vec::len).collect(),
            cells,
            region,
        });
    }
    for (sent, added) in bytes_sent.iter_mut().zip(&load) {
        *sent += added;
    }
    Ok(Exchange { held, targets })
}

/// `range` cut at every boundary of the held ranges inside it (non-empty pieces, in order).
fn cut_dim<'a>(
    range: &Range<usize>,
    held: impl Iterator<Item = &'a Range<usize>>,
) -> Vec<Range<usize>> {
    let mut bounds = vec![range.start, range.end];
    for h in held {
        bounds.extend([h.start, h.end].into_iter().filter(|b| range.contains(b)));
    }
    bounds.sort_unstable();
    bounds.dedup();
    bounds.windows(2).map(|w| w[0]..w[1]).collect()
}

/// Every combination of one piece per dim, in row-major order (one empty box for rank 0).
fn cartesian(cuts: &[Vec<Range<usize>>]) -> Vec<Vec<Range<usize>>> {
    cuts.iter().fold(vec![Vec::new()], |boxes, pieces| {
        boxes
            .iter()
            .flat_map(|prefix| {
                pieces.iter().map(move |piece| {
                    let mut b = prefix.clone();
                    b.push(piece.clone());
                    b
                })
            })
            .collect()
    })
}

fn choose_owner(
    held: &[Vec<Range<usize>>],
    load: &[usize],
    device: usize,
    cell: &[Range<usize>],
) -> Result<usize> {
    let holds = |d: usize| {
        held[d]
            .iter()
            .zip(cell)
            .all(|(h, c)| h.start <= c.start && c.end <= h.end)
    };
    if holds(device) {
        return Ok(device);
    }
    (0..held.len())
        .filter(|&d| holds(d))
        .min_by_key(|&d| load[d])
        .ok_or_else(|| {
            Error::Redistribution(format!(
                "no device holds the box {cell:?} that device {device} needs (held: {held:?})"
            ))
        })
}
