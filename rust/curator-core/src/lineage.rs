//! Where every task came from, which source tasks are done, and the ledger that proves none was lost.
//!
//! The core keeps records only for what is alive, so its memory is bounded by the work in flight, not
//! by the size of the run. A live task (queued, in a batch, or an output not yet handed out) carries a
//! *tag* naming the source tasks (roots) it descends from: the root's own id when it is one, else a
//! shared, reference-counted group of roots (a batch's outputs share one group; a batch of tasks with
//! the same roots passes their tag on). Per open root, the core counts its live descendants; when that
//! count reaches 0 every descendant has ended (output, filtered or failed) and the root is *completed*:
//! it is reported once (`take_completed`) and forgotten. Ids stay dense and increasing, so an id below
//! the next one that has no record is known to have ended.
//!
//! Cost: one hash-map entry per open root, one group per batch whose inputs have different roots
//! (its sorted roots), nothing per ended task or batch.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::ops::Range;

use crate::spec::TaskId;

/// A multiplicative hash for dense integer ids (the std SipHash costs more than the work it guards).
#[derive(Default, Clone, Copy)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    #[inline]
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

/// A hash map keyed by dense ids.
pub(crate) type IdMap<V> = HashMap<u64, V, BuildHasherDefault<IdHasher>>;

/// The roots a live task descends from: a root's own id, or `GROUP | index` of a shared group.
pub(crate) type Tag = u64;
const GROUP: Tag = 1 << 63;

#[derive(Debug, Default)]
struct Group {
    /// Sorted, at least two.
    roots: Vec<TaskId>,
    /// Live tasks carrying this group.
    refs: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Lineage {
    next_task: TaskId,
    groups: Vec<Group>,
    free_groups: Vec<usize>,
    /// Live descendants (the root itself included while it lives) of each open root.
    open: IdMap<u64>,
    /// Roots completed since the last `take_completed`, in completion order.
    completed: Vec<TaskId>,
    /// Roots completed in total.
    completed_total: u64,
}

impl Lineage {
    /// Allocate `n` dense ids for new source tasks; each is its own open root.
    pub fn new_roots(&mut self, n: usize) -> Range<TaskId> {
        let ids = self.next_task..self.next_task + n as TaskId;
        self.next_task = ids.end;
        self.open.reserve(n);
        for r in ids.clone() {
            self.open.insert(r, 1);
        }
        ids
    }

    /// Allocate `n_out` ids for the outputs of a batch whose inputs carry `inputs`, and end the
    /// inputs. Returns the ids and the outputs' tag (meaningless when `n_out` is 0).
    pub fn batch_outputs(&mut self, inputs: &[Tag], n_out: usize) -> (Range<TaskId>, Tag) {
        let ids = self.next_task..self.next_task + n_out as TaskId;
        self.next_task = ids.end;
        let mut tag = 0;
        if n_out > 0 {
            tag = self.union(inputs);
            let n = n_out as u64;
            if tag & GROUP != 0 {
                let g = &mut self.groups[(tag & !GROUP) as usize];
                g.refs += n;
                for r in &g.roots {
                    *self.open.get_mut(r).expect("an open root") += n;
                }
            } else {
                *self.open.get_mut(&tag).expect("an open root") += n;
            }
        }
        for &t in inputs {
            self.end(t);
        }
        (ids, tag)
    }

    /// The tag of tasks descending from every input: shared when all inputs carry the same one.
    fn union(&mut self, inputs: &[Tag]) -> Tag {
        let first = inputs.first().copied().unwrap_or(0);
        if inputs.iter().all(|&t| t == first) {
            return first;
        }
        let mut roots: Vec<TaskId> = Vec::new();
        let mut tags: Vec<Tag> = inputs.to_vec();
        tags.sort_unstable();
        tags.dedup();
        for t in tags {
            if t & GROUP != 0 {
                roots.extend_from_slice(&self.groups[(t & !GROUP) as usize].roots);
            } else {
                roots.push(t);
            }
        }
        roots.sort_unstable();
        roots.dedup();
        if roots.len() == 1 {
            return roots[0];
        }
        let group = Group { roots, refs: 0 };
        let index = match self.free_groups.pop() {
            Some(i) => {
                self.groups[i] = group;
                i
            }
            None => {
                self.groups.push(group);
                self.groups.len() - 1
            }
        };
        GROUP | index as Tag
    }

    /// A live task carrying `tag` ended (consumed, emitted, filtered or failed).
    pub fn end(&mut self, tag: Tag) {
        if tag & GROUP == 0 {
            self.close_one(tag);
            return;
        }
        let i = (tag & !GROUP) as usize;
        let roots = std::mem::take(&mut self.groups[i].roots);
        for &r in &roots {
            self.close_one(r);
        }
        let g = &mut self.groups[i];
        g.refs -= 1;
        if g.refs == 0 {
            self.free_groups.push(i);
        } else {
            g.roots = roots;
        }
    }

    fn close_one(&mut self, root: TaskId) {
        let left = self.open.get_mut(&root).expect("an open root");
        *left -= 1;
        if *left == 0 {
            self.open.remove(&root);
            self.completed.push(root);
            self.completed_total += 1;
        }
    }

    /// The roots named by `tag`, sorted.
    pub fn roots_of(&self, tag: Tag) -> Vec<TaskId> {
        if tag & GROUP != 0 {
            self.groups[(tag & !GROUP) as usize].roots.clone()
        } else {
            vec![tag]
        }
    }

    /// Roots completed since the last call, in completion order.
    pub fn take_completed(&mut self) -> Vec<TaskId> {
        std::mem::take(&mut self.completed)
    }

    /// Has `task` been handed out (it may have ended since)?
    pub fn issued(&self, task: TaskId) -> bool {
        task < self.next_task
    }

    pub fn open_roots(&self) -> usize {
        self.open.len()
    }

    pub fn live_groups(&self) -> usize {
        self.groups.len() - self.free_groups.len()
    }

    pub fn completed_total(&self) -> u64 {
        self.completed_total
    }

    /// Give back memory held beyond what the live records need.
    pub fn shrink_to_fit(&mut self) {
        self.open.shrink_to_fit();
        if self.free_groups.len() == self.groups.len() {
            self.groups = Vec::new();
            self.free_groups = Vec::new();
        }
    }

    /// Bytes held (approximate: map and vectors at capacity, groups' roots).
    pub fn heap_bytes(&self) -> usize {
        let groups: usize = self.groups.iter().map(|g| g.roots.capacity() * 8).sum();
        self.open.capacity() * 17
            + self.groups.capacity() * std::mem::size_of::<Group>()
            + groups
            + self.free_groups.capacity() * 8
            + self.completed.capacity() * 8
    }
}

/// Records the core holds (see `Scheduler::live_records`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LiveRecords {
    /// Batches queued for a retry or in flight.
    pub batches: usize,
    /// Remote calls in flight.
    pub calls: usize,
    /// Source tasks with a descendant that has not ended.
    pub open_roots: usize,
    /// Shared root sets of live tasks.
    pub groups: usize,
}

impl LiveRecords {
    pub fn total(&self) -> usize {
        self.batches + self.calls + self.open_roots + self.groups
    }
}

/// Where every task of the run is, in counts. Every task is created either by the driver (`initial`)
/// or as an output of a batch (`produced`); each then ends as exactly one of: emitted (an output of
/// the last stage), consumed (input of a batch that succeeded), failed (input of a batch that failed
/// for good), or is still queued or in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Balance {
    /// Tasks added by the driver.
    pub initial: u64,
    /// Outputs of all batches of all stages (the last stage's included).
    pub produced: u64,
    /// Outputs of the last stage, handed to the driver.
    pub emitted: u64,
    /// Inputs of batches that succeeded.
    pub consumed: u64,
    /// Inputs of batches that succeeded with no output at all (a subset of `consumed`).
    pub filtered: u64,
    /// Inputs of batches that failed for good.
    pub failed: u64,
    /// Waiting in a stage's input queue (retries included).
    pub queued: u64,
    /// In a submitted batch that has not finished.
    pub in_flight: u64,
}

impl Balance {
    /// Every task created is in exactly one place.
    pub fn balanced(&self) -> bool {
        self.initial + self.produced
            == self.emitted + self.consumed + self.failed + self.queued + self.in_flight
    }

    /// Balanced and nothing left to do: every task ended as output, consumed or failed.
    pub fn complete(&self) -> bool {
        self.balanced() && self.queued == 0 && self.in_flight == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roots_complete_when_every_descendant_ended() {
        let mut l = Lineage::default();
        let roots = l.new_roots(3); // 0, 1, 2
        assert_eq!(roots, 0..3);
        // A batch of {0, 1} makes two outputs: they share one group.
        let (mid, g) = l.batch_outputs(&[0, 1], 2);
        assert_eq!((mid, l.roots_of(g)), (3..5, vec![0, 1]));
        assert!(
            l.take_completed().is_empty(),
            "0 and 1 live on in their outputs"
        );
        // A batch of {2} alone passes its tag on; it filters, so 2 completes.
        let (none, _) = l.batch_outputs(&[2], 0);
        assert_eq!(none, 5..5);
        assert_eq!(l.take_completed(), vec![2]);
        // Output 3 is consumed with no output; output 4 ends later (emitted).
        l.batch_outputs(&[g], 0);
        assert!(l.take_completed().is_empty());
        assert_eq!(l.live_groups(), 1);
        l.end(g);
        assert_eq!(l.take_completed(), vec![0, 1]);
        assert_eq!(
            (l.open_roots(), l.live_groups(), l.completed_total()),
            (0, 0, 3)
        );
        assert!(l.issued(4) && !l.issued(5));
    }

    #[test]
    fn unions_of_groups_are_sorted_without_repeats() {
        let mut l = Lineage::default();
        l.new_roots(4);
        let (_, a) = l.batch_outputs(&[0, 1], 1); // 4 from {0, 1}
        let (_, b) = l.batch_outputs(&[2, 3], 2); // 5, 6 from {2, 3}
        let (_, c) = l.batch_outputs(&[b], 1); // 7 from 5: same group as b
        assert_eq!(c, b);
        let (_, d) = l.batch_outputs(&[a, c, b], 1); // 8 from 4, 7, 6
        assert_eq!(l.roots_of(d), vec![0, 1, 2, 3]);
        assert!(l.take_completed().is_empty());
        assert_eq!(l.live_groups(), 1, "the consumed groups were freed");
        l.end(d);
        assert_eq!(l.take_completed().len(), 4);
    }

    #[test]
    fn balance_counts_every_place_once() {
        let mut b = Balance {
            initial: 10,
            produced: 6,
            emitted: 4,
            consumed: 8,
            failed: 2,
            ..Default::default()
        };
        assert!(!b.balanced());
        b.queued = 1;
        b.in_flight = 1;
        assert!(b.balanced());
        assert!(!b.complete());
        b.in_flight = 0;
        b.queued = 0;
        b.consumed = 10;
        assert!(b.complete());
    }
}
