//! Overlapping the data-parallel gradient reduction with backward. The flat gradient is cut
//! into buckets of whole parameters, walking from the last parameter (the head, then the
//! last layer: the order backward produces them); during the last micro-batch's backward a
//! bucket is handed to a communication thread as soon as every gradient in it has been
//! accumulated, and the thread reduces it over the replicas group while backward goes on.
//!
//! Every rank issues the buckets' collectives in the same fixed order (bucket order, not
//! the order its plan happens to produce gradients in, which depends on its micro-batch
//! shapes), and reduces each element exactly as the whole-buffer reduction does (the sum of
//! every rank's value in rank order), so the result has the same bits.

use super::optimizer::FlatLayout;
use crate::{Error, Result};
use luoshu_backend::Ops;
use luoshu_comm::{Communicator, ReduceOp};
use luoshu_dist::shard_range;
use luoshu_tensor::Tensor;
use std::ops::Range;
use std::sync::mpsc::{Receiver, Sender};

/// Contiguous ranges of parameter indices of `layout`, in launch order (the last
/// parameters first): each holds at least `bytes` bytes of f32 gradient, except the
/// first parameters' bucket, which takes what is left.
pub(crate) fn gradient_buckets(layout: &FlatLayout, bytes: usize) -> Vec<Range<usize>> {
    let elements = bytes.div_ceil(std::mem::size_of::<f32>());
    let mut buckets = Vec::new();
    let (mut end, mut filled) = (layout.offsets.len(), 0);
    for i in (0..layout.offsets.len()).rev() {
        filled += layout.offsets[i].len();
        if filled >= elements {
            buckets.push(i..end);
            (end, filled) = (i, 0);
        }
    }
    if end > 0 {
        buckets.push(0..end);
    }
    buckets
}

/// What the communication thread does with each bucket.
pub(crate) enum BucketReduction {
    /// Sum the bucket over the group in place (replicated optimizer).
    AllReduce,
    /// ZeRO-1: sum the bucket's part of every rank's piece of the flat gradient (pieces of
    /// [`shard_range`]) to that rank, and write this rank's part into `share`, its piece.
    ReduceScatter { share: Tensor },
}

/// Hands buckets to the communication thread in launch order as their gradients arrive.
pub(crate) struct BucketLauncher<'a> {
    buckets: &'a [Range<usize>],
    layout: &'a FlatLayout,
    accumulated: Vec<bool>,
    /// The first bucket not yet launched.
    next: usize,
    sender: Sender<Range<usize>>,
}

impl<'a> BucketLauncher<'a> {
    pub fn new(
        buckets: &'a [Range<usize>],
        layout: &'a FlatLayout,
        sender: Sender<Range<usize>>,
    ) -> Self {
        BucketLauncher {
            buckets,
            layout,
            accumulated: vec![false; layout.offsets.len()],
            next: 0,
            sender,
        }
    }

    /// Parameter `i`'s gradient is complete in the flat accumulator: launch every bucket,
    /// in order, whose gradients are now all complete.
    pub fn accumulated(&mut self, i: usize) {
        self.accumulated[i] = true;
        while let Some(bucket) = self.buckets.get(self.next) {
            if !self.accumulated[bucket.clone()].iter().all(|&done| done) {
                break;
            }
            self.launch_next();
        }
    }

    /// Launch the buckets not launched yet (a rank without micro-batches in this step
    /// reduces its zero gradients: its peers wait for its share of every collective).
    pub fn launch_rest(mut self) {
        while self.next < self.buckets.len() {
            self.launch_next();
        }
    }

    fn launch_next(&mut self) {
        let params = &self.buckets[self.next];
        let flat = self.layout.offsets[params.start].start..self.layout.offsets[params.end - 1].end;
        // A closed channel means the communication thread stopped on an error, which its
        // join reports.
        let _ = self.sender.send(flat);
        self.next += 1;
    }
}

/// The communication thread: reduces every flat range received, in order, over `group`,
/// until the launcher is dropped.
pub(crate) fn reduce_buckets(
    ops: &Ops,
    group: &dyn Communicator,
    grads: &Tensor,
    reduction: &BucketReduction,
    ranges: Receiver<Range<usize>>,
) -> Result<()> {
    for range in ranges {
        let bucket = grads.narrow(0, range.start, range.len())?;
        match reduction {
            BucketReduction::AllReduce => group.all_reduce_in_place(&bucket, ReduceOp::Sum)?,
            BucketReduction::ReduceScatter { share } => {
                let (len, size) = (grads.numel(), group.size());
                let piece_of = |rank: usize| overlap(&range, &shard_range(len, size, rank));
                let parts = (0..size)
                    .map(|rank| {
                        let part = piece_of(rank);
                        Ok(grads.narrow(0, part.start, part.len())?)
                    })
                    .collect::<Result<Vec<_>>>()?;
                let summed = group.reduce_scatter(&parts, ReduceOp::Sum)?;
                let mine = piece_of(group.rank());
                let piece_start = shard_range(len, size, group.rank()).start;
                let target = share.narrow(0, mine.start - piece_start, mine.len())?;
                ops.copy_into(&summed, &target)?;
            }
        }
    }
    Ok(())
}

/// The part of `a` inside `b` (empty, at `b`'s clamp of `a.start`, when they are disjoint).
fn overlap(a: &Range<usize>, b: &Range<usize>) -> Range<usize> {
    let start = a.start.clamp(b.start, b.end);
    start..a.end.clamp(start, b.end)
}

/// The error of a communication thread that panicked.
pub(crate) fn thread_panicked() -> Error {
    Error::State("the gradient reduction thread panicked".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(sizes: &[usize]) -> FlatLayout {
        let mut offsets = Vec::new();
        let mut len = 0;
        for &n in sizes {
            offsets.push(len..len + n);
            len += n;
        }
        FlatLayout {
            dims: sizes.iter().map(|&n| vec![n]).collect(),
            offsets,
            len,
        }
    }

    #[test]
    fn buckets_cover_every_parameter_from_the_last() {
        let l = layout(&[3, 5, 1, 1, 8, 2]);
        assert_eq!(gradient_buckets(&l, 16), vec![4..6, 1..4, 0..1]);
        assert_eq!(gradient_buckets(&l, 8), vec![5..6, 4..5, 2..4, 1..2, 0..1]);
        assert_eq!(gradient_buckets(&l, 1 << 20), vec![0..6]);
    }

    #[test]
    fn launcher_sends_buckets_in_order_once_complete() {
        let l = layout(&[3, 5, 1, 1, 8, 2]);
        let buckets = gradient_buckets(&l, 16);
        let (sender, receiver) = std::sync::mpsc::channel();
        let mut launcher = BucketLauncher::new(&buckets, &l, sender);
        // Parameters 1..4 complete before 4..6: their bucket waits for the first one.
        for i in [2, 3, 1, 5] {
            launcher.accumulated(i);
        }
        assert!(receiver.try_recv().is_err());
        launcher.accumulated(4);
        assert_eq!(receiver.try_recv(), Ok(10..20));
        assert_eq!(receiver.try_recv(), Ok(3..10));
        assert!(receiver.try_recv().is_err());
        launcher.launch_rest();
        assert_eq!(receiver.recv(), Ok(0..3));
        assert!(receiver.recv().is_err());
    }

    #[test]
    fn overlap_clamps_into_the_piece() {
        assert_eq!(overlap(&(3..10), &(0..5)), 3..5);
        assert_eq!(overlap(&(3..10), &(5..20)), 5..10);
        assert_eq!(overlap(&(3..10), &(12..20)), 12..12);
        assert_eq!(overlap(&(3..10), &(0..2)), 2..2);
    }
}
