//! The cells of a needed box: the pieces of it that single source holdings cover. Where
//! source pieces do not overlap (every strategy's parameters) the cells are the
//! intersections with the source boxes; where they do (ZeRO shards of a tied embedding
//! kept by two pipeline stages with different flat layouts) the needed box is cut on the
//! finest common grid of the meeting boxes and each cell lists every holding covering it.

use super::index::SourceIndex;
use crate::placement::Region;
use crate::{Error, Result};

/// A cell of a needed box and the source holdings that cover all of it.
#[derive(Debug, Clone)]
pub(super) struct Cell {
    pub region: Region,
    pub holdings: Vec<usize>,
}

pub(super) fn cells_of(index: &SourceIndex, needed: &Region, tensor: usize) -> Result<Vec<Cell>> {
    let meeting = index.meeting(needed);
    let covered: usize = meeting.iter().map(|(_, common)| common.numel()).sum();
    if covered < needed.numel() {
        return Err(Error::Redistribution(format!(
            "tensor {tensor}: the source placement holds at most {covered} of the {} elements \
             of {needed:?}; some pieces are held by no rank",
            needed.numel()
        )));
    }
    if covered == needed.numel() {
        return Ok(meeting
            .into_iter()
            .map(|(source, region)| Cell {
                region,
                holdings: vec![source.holding],
            })
            .collect());
    }
    let cuts: Vec<Vec<usize>> = (0..needed.ndim())
        .map(|d| {
            let bounds = [needed.range(d).start, needed.range(d).end];
            let mut points: Vec<usize> = meeting
                .iter()
                .flat_map(|(_, c)| [c.range(d).start, c.range(d).end])
                .chain(bounds)
                .collect();
            points.sort_unstable();
            points.dedup();
            points
        })
        .collect();
    let mut cells = Vec::new();
    let mut corner = vec![0usize; needed.ndim()];
    loop {
        let ranges: Vec<_> = (0..needed.ndim())
            .map(|d| cuts[d][corner[d]]..cuts[d][corner[d] + 1])
            .collect();
        let region = Region::new(&ranges)?;
        let mut holdings: Vec<usize> = meeting
            .iter()
            .filter(|(_, common)| common.contains(&region))
            .map(|(source, _)| source.holding)
            .collect();
        holdings.dedup();
        if holdings.is_empty() {
            return Err(Error::Redistribution(format!(
                "tensor {tensor}: no rank holds {region:?} in the source placement"
            )));
        }
        cells.push(Cell { region, holdings });
        // Next grid cell, last dim fastest.
        let mut d = needed.ndim();
        loop {
            if d == 0 {
                return Ok(cells);
            }
            d -= 1;
            corner[d] += 1;
            if corner[d] + 1 < cuts[d].len() {
                break;
            }
            corner[d] = 0;
        }
    }
}
