//! Placement: pool sizes, packing actors onto nodes, and rebalancing pools while the run goes.
//!
//! Resources are counted in units of 1/10,000 (Ray's granularity), so sums never drift. An actor
//! needs its CPUs and GPUs on ONE node. GPUs are modelled per device, as Ray does: a fractional
//! request (< 1) must fit on one device, a request of n >= 1 takes n whole free devices.
//!
//! Pool targets: `Fixed(n)` → n; `Auto { max: Some(m) }` → m; `Auto { max: None }` → as many as fit,
//! except for stages that need no CPU and no GPU, which would fit without limit: they get one actor
//! per node.
//!
//! Demand: a `Fixed` pool, a GPU stage, and any stage when `actor_start_secs` is 0 want their whole
//! target at once. Other (`Auto`, CPU-only) pools grow with the work: one actor until the stage has a
//! measured mean batch time, then one actor per `actor_start_secs` of work waiting for it ((queued +
//! in-flight batches) × mean batch time), capped by the target. Starting an actor costs a process and
//! imports (about a second); many tiny tasks would never repay the actors that fit, while heavy work
//! asks for the whole cluster within its first batches. An `Auto` pool's demand is never below its
//! `min_pool_size`.
//!
//! At start: GPU stages get their whole pool up front (capped by what fits); then every other stage
//! gets one actor if one fits, upstream first; then `Auto` pools with an `initial_pool_size` get up
//! to it; then the leftover capacity is filled round-robin (most
//! downstream first) up to each stage's demand; the fill runs again whenever demand or capacity
//! changes. A fixed pool that does not fit is capped, with a
//! warning. Node choice: GPU actors go where they leave the fewest GPUs free (packing, so whole devices
//! stay free for whole-GPU actors); CPU-only actors spread: nodes without free GPUs first, then the
//! node holding fewest actors of the stage, then the most free CPUs.
//!
//! While running:
//! - A stage finished for good has its actors killed at once; freed capacity is filled the same way
//!   (stages with no actor first, most downstream first).
//! - A dead actor is replaced on the spot when it fits (see `scheduler.rs` for the replacement cap).
//! - Rebalancing, on `Tick`, at most one move per `rebalance_interval_secs`: the most downstream
//!   *starved* stage (dispatchable work and no actor at all; else, when none is, dispatchable work, no
//!   free slot, no actor still starting and fewer actors than its target) gets one more actor: on free
//!   capacity if any, else by killing actors idle for at least the interval, of stages that cannot use
//!   them now (no dispatchable work or backpressured), on the one node where the fewest kills make room. To grow a stage that
//!   already has actors, victims' stages keep at least one actor and GPU actors are not taken for a
//!   CPU-only stage, and no pool goes below its `min_pool_size` (giving a stage its first actor may).
//!   This makes every pipeline finish even when the cluster holds fewer actors than
//!   there are stages.

use std::cmp::Reverse;

use crate::errors::{CoreError, CoreResult};
use crate::scheduler::{ActorState, Scheduler};
use crate::spec::{ActorId, NodeSpec, PoolSize, Resources, StageSpec};

/// Resource units per CPU or GPU.
pub(crate) const UNITS: u64 = 10_000;

fn to_units(x: f64) -> u64 {
    (x * UNITS as f64).round() as u64
}

fn describe(cpus: u64, gpus: u64) -> String {
    format!(
        "cpus={}, gpus={}",
        cpus as f64 / UNITS as f64,
        gpus as f64 / UNITS as f64
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Need {
    pub cpus: u64,
    pub gpus: u64,
}

impl Need {
    pub fn of(r: &Resources) -> Self {
        Self {
            cpus: to_units(r.cpus),
            gpus: to_units(r.gpus),
        }
    }

    pub fn is_zero(&self) -> bool {
        self.cpus == 0 && self.gpus == 0
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum GpuGrant {
    None,
    /// A fraction of one device.
    Part {
        device: usize,
        units: u64,
    },
    /// Whole devices.
    Whole(Vec<usize>),
}

/// What one actor holds: where, and how much.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Grant {
    pub node: usize,
    pub cpus: u64,
    pub gpus: GpuGrant,
}

impl Grant {
    pub fn holds_gpus(&self) -> bool {
        self.gpus != GpuGrant::None
    }
}

/// Free capacity of one node.
#[derive(Debug, Clone)]
pub(crate) struct NodeCap {
    cpus: u64,
    /// Free units per GPU device.
    devices: Vec<u64>,
    /// Capacity per device (the last one may be a fraction).
    device_cap: Vec<u64>,
}

impl NodeCap {
    fn new(spec: &NodeSpec) -> Self {
        let gpus = to_units(spec.gpus);
        let mut device_cap = vec![UNITS; (gpus / UNITS) as usize];
        if gpus % UNITS > 0 {
            device_cap.push(gpus % UNITS);
        }
        Self {
            cpus: to_units(spec.cpus),
            devices: device_cap.clone(),
            device_cap,
        }
    }

    fn free_gpus(&self) -> u64 {
        self.devices.iter().sum()
    }

    /// How the node would give `need`, if it can.
    fn plan(&self, need: Need) -> Option<GpuGrant> {
        if self.cpus < need.cpus {
            return None;
        }
        if need.gpus == 0 {
            return Some(GpuGrant::None);
        }
        if need.gpus < UNITS {
            // Best fit: the device with the least room that still fits keeps others whole.
            return self
                .devices
                .iter()
                .enumerate()
                .filter(|(_, &free)| free >= need.gpus)
                .min_by_key(|(i, &free)| (free, *i))
                .map(|(device, _)| GpuGrant::Part {
                    device,
                    units: need.gpus,
                });
        }
        let n = (need.gpus / UNITS) as usize;
        let whole: Vec<usize> = (0..self.devices.len())
            .filter(|&d| self.device_cap[d] == UNITS && self.devices[d] == UNITS)
            .take(n)
            .collect();
        (whole.len() == n).then_some(GpuGrant::Whole(whole))
    }

    fn take(&mut self, need: Need, gpus: &GpuGrant) {
        self.cpus -= need.cpus;
        match gpus {
            GpuGrant::None => {}
            GpuGrant::Part { device, units } => self.devices[*device] -= units,
            GpuGrant::Whole(devices) => devices.iter().for_each(|&d| self.devices[d] = 0),
        }
    }

    fn give_back(&mut self, grant: &Grant) {
        self.cpus += grant.cpus;
        match &grant.gpus {
            GpuGrant::None => {}
            GpuGrant::Part { device, units } => self.devices[*device] += units,
            GpuGrant::Whole(devices) => devices.iter().for_each(|&d| self.devices[d] = UNITS),
        }
    }
}

/// Free capacity of the nodes this run may use.
#[derive(Debug)]
pub(crate) struct Cluster {
    nodes: Vec<NodeCap>,
    empty: Vec<NodeCap>,
    /// Nodes that left the cluster: nothing is placed there again, and what their actors held is
    /// not given back.
    lost: Vec<bool>,
}

impl Cluster {
    pub fn new(nodes: &[NodeSpec]) -> Self {
        let nodes: Vec<NodeCap> = nodes.iter().map(NodeCap::new).collect();
        Self {
            empty: nodes.clone(),
            lost: vec![false; nodes.len()],
            nodes,
        }
    }

    /// The node left the cluster: it offers nothing from now on. Returns false when it was already
    /// lost (or is not one of the run's nodes).
    pub fn lose(&mut self, node: usize) -> bool {
        if node >= self.nodes.len() || self.lost[node] {
            return false;
        }
        self.lost[node] = true;
        let gone = NodeCap {
            cpus: 0,
            devices: vec![0; self.nodes[node].devices.len()],
            device_cap: self.nodes[node].device_cap.clone(),
        };
        self.nodes[node] = gone.clone();
        self.empty[node] = gone;
        true
    }

    /// `Infeasible` when no node, even empty, can hold one actor of the stage.
    pub fn check_feasible(&self, spec: &StageSpec) -> CoreResult<()> {
        self.check_need(&spec.name, Need::of(&spec.resources))
    }

    /// `Infeasible` (naming `stage`) when no node, even empty, can hold one worker needing `need`.
    pub fn check_need(&self, stage: &str, need: Need) -> CoreResult<()> {
        if self.empty.iter().any(|n| n.plan(need).is_some()) {
            return Ok(());
        }
        let have = if self.empty.is_empty() {
            "no nodes".to_string()
        } else {
            let cpus = self.empty.iter().map(|n| n.cpus).max().unwrap_or(0);
            let gpus = self.empty.iter().map(|n| n.free_gpus()).max().unwrap_or(0);
            format!("at most {} (per node)", describe(cpus, gpus))
        };
        Err(CoreError::Infeasible {
            stage: stage.to_string(),
            need: describe(need.cpus, need.gpus),
            have,
        })
    }

    pub fn take(&mut self, node: usize, need: Need, gpus: GpuGrant) -> Grant {
        self.nodes[node].take(need, &gpus);
        Grant {
            node,
            cpus: need.cpus,
            gpus,
        }
    }

    pub fn release(&mut self, grant: &Grant) {
        if self.lost[grant.node] {
            return;
        }
        self.nodes[grant.node].give_back(grant);
    }

    /// How many workers needing `need` fit on the nodes as they are now (`empty`: with nothing
    /// placed), at most `limit` (workers that need nothing fit without bound).
    pub fn capacity(&self, need: Need, empty: bool, limit: usize) -> usize {
        if need.is_zero() {
            return limit;
        }
        let nodes = if empty { &self.empty } else { &self.nodes };
        let mut count = 0;
        for node in nodes {
            let mut node = node.clone();
            while count < limit {
                let Some(plan) = node.plan(need) else { break };
                node.take(need, &plan);
                count += 1;
            }
        }
        count
    }

    /// Reserve room for one worker needing `need` on any node, if one has it: GPU workers where they
    /// leave the fewest GPUs free (packing), CPU-only workers on nodes without free GPUs first, then
    /// where the most CPUs are free (spreading).
    pub fn place(&mut self, need: Need) -> Option<Grant> {
        let mut best: Option<((u64, u64, usize), usize, GpuGrant)> = None;
        for (i, node) in self.nodes.iter().enumerate() {
            let Some(plan) = node.plan(need) else {
                continue;
            };
            let key = if need.gpus > 0 {
                (node.free_gpus() - need.gpus, 0, i)
            } else {
                (u64::from(node.free_gpus() > 0), u64::MAX - node.cpus, i)
            };
            if best.as_ref().is_none_or(|(k, ..)| key < *k) {
                best = Some((key, i, plan));
            }
        }
        let (_, node, plan) = best?;
        Some(self.take(node, need, plan))
    }

    /// Free (cpus, gpus) of a node, in units.
    pub fn free(&self, node: usize) -> (u64, u64) {
        (self.nodes[node].cpus, self.nodes[node].free_gpus())
    }
}

/// Node preference for one actor; smaller is better.
type NodeKey = (u64, u64, u64, usize);

/// The pool size a stage aims for; `None`: as many as fit.
pub(crate) fn pool_target(spec: &StageSpec, n_nodes: usize) -> Option<usize> {
    match spec.pool {
        PoolSize::Fixed(n) => Some(n),
        PoolSize::Auto { max: Some(m) } => Some(m),
        PoolSize::Auto { max: None } if Need::of(&spec.resources).is_zero() => Some(n_nodes.max(1)),
        PoolSize::Auto { max: None } => None,
    }
}

impl Scheduler {
    pub(crate) fn below_target(&self, s: usize) -> bool {
        let st = &self.stages[s];
        st.target.is_none_or(|t| st.actors.len() < t)
    }

    /// Actors stage `s` can use now (see the module docs); `usize::MAX`: as many as fit.
    pub(crate) fn demand(&self, s: usize) -> usize {
        let st = &self.stages[s];
        let cap = st.target.unwrap_or(usize::MAX);
        let start = self.config.actor_start_secs;
        if matches!(st.spec.pool, PoolSize::Fixed(_)) || st.need.gpus > 0 || start <= 0.0 {
            return cap;
        }
        // `min_pool_size` is a floor whatever the work (validation keeps it within the target).
        let floor = st.spec.min_pool_size.max(1);
        let Some(mean) = st.packing.mean_batch_secs() else {
            return cap.min(floor);
        };
        let waiting = st.queue.tasks().div_ceil(st.spec.batch_size as u64) + st.in_flight_batches;
        let want = (waiting as f64 * mean / start).ceil();
        if want >= cap as f64 {
            cap
        } else {
            (want as usize).clamp(floor.min(cap), cap)
        }
    }

    /// Actors a pool keeps when rebalancing takes from it to grow another stage: at least one, and
    /// its `min_pool_size`. A stage with no actor at all may take any idle actor (else a pool at its
    /// minimum could hold the cluster while the pipeline cannot go on).
    fn keep_at_least(&self, s: usize, growth: bool) -> usize {
        if growth {
            self.stages[s].spec.min_pool_size.max(1)
        } else {
            0
        }
    }

    pub(crate) fn below_demand(&self, s: usize) -> bool {
        self.stages[s].actors.len() < self.demand(s)
    }

    pub(crate) fn free_slots(&self, s: usize) -> usize {
        let st = &self.stages[s];
        st.actors
            .iter()
            .map(|&a| &self.actors[a as usize])
            .filter(|a| a.state == ActorState::Ready && !a.isolated && !a.retiring)
            .map(|a| st.spec.slots_per_actor.saturating_sub(a.calls))
            .sum()
    }

    /// Reserve room for one actor of stage `s` on the best node (see the module docs), if any.
    pub(crate) fn find_place(&mut self, s: usize) -> Option<Grant> {
        let st = &self.stages[s];
        let need = st.need;
        // (preference key, node, how the node gives it); the smallest key wins.
        let mut best: Option<(NodeKey, usize, GpuGrant)> = None;
        for (i, node) in self.cluster.nodes.iter().enumerate() {
            let Some(plan) = node.plan(need) else {
                continue;
            };
            let here = u64::from(st.per_node[i]);
            let key = if need.gpus > 0 {
                (node.free_gpus() - need.gpus, here, 0, i)
            } else {
                (
                    u64::from(node.free_gpus() > 0),
                    here,
                    u64::MAX - node.cpus,
                    i,
                )
            };
            if best.as_ref().is_none_or(|(k, ..)| key < *k) {
                best = Some((key, i, plan));
            }
        }
        let (_, node, plan) = best?;
        Some(self.cluster.take(node, need, plan))
    }

    fn find_place_on(&mut self, s: usize, node: usize) -> Option<Grant> {
        let need = self.stages[s].need;
        let plan = self.cluster.nodes[node].plan(need)?;
        Some(self.cluster.take(node, need, plan))
    }

    fn place_one(&mut self, s: usize) -> bool {
        match self.find_place(s) {
            Some(grant) => {
                self.create_actor(s, grant);
                true
            }
            None => false,
        }
    }

    pub(crate) fn initial_placement(&mut self) {
        let n = self.stages.len();
        for s in 0..n {
            if self.stages[s].need.gpus > 0 && self.active(s) {
                while self.below_target(s) && self.place_one(s) {}
            }
        }
        for s in 0..n {
            if self.stages[s].actors.is_empty() && self.active(s) {
                self.place_one(s);
            }
        }
        // Pools with an initial size (`initial_workers`) start at it, when it fits.
        for s in 0..n {
            let st = &self.stages[s];
            let want = st
                .spec
                .initial_pool_size
                .unwrap_or(0)
                .min(st.target.unwrap_or(usize::MAX));
            if matches!(st.spec.pool, PoolSize::Auto { .. }) && self.active(s) {
                while self.stages[s].actors.len() < want && self.place_one(s) {}
            }
        }
        self.fill();
        for st in &self.stages {
            let have = st.actors.len();
            if let PoolSize::Fixed(want) = st.spec.pool {
                if have < want {
                    self.warnings.push(format!(
                        "stage '{}': pool size {want} capped to {have}: only {have} actors fit on the cluster",
                        st.spec.name
                    ));
                }
            }
            if have == 0 && !self.config.stage_by_stage {
                self.warnings.push(format!(
                    "stage '{}' gets no actor at start (the cluster is full); it runs when other stages \
                     free capacity",
                    st.spec.name
                ));
            }
        }
    }

    /// Give free capacity to unfinished stages below their target: stages without any actor first,
    /// then one actor per stage per round; most downstream first.
    pub(crate) fn fill(&mut self) {
        let n = self.stages.len();
        for s in (0..n).rev() {
            if !self.stages[s].finished && self.active(s) && self.stages[s].actors.is_empty() {
                self.place_one(s);
            }
        }
        loop {
            let mut placed = false;
            for s in (0..n).rev() {
                if !self.stages[s].finished && self.active(s) && self.below_demand(s) {
                    placed |= self.place_one(s);
                }
            }
            if !placed {
                break;
            }
        }
    }

    fn growth_starved(&self, s: usize) -> bool {
        let st = &self.stages[s];
        !st.actors.is_empty()
            && self.below_demand(s)
            && st
                .actors
                .iter()
                .all(|&a| self.actors[a as usize].state == ActorState::Ready)
            && self.free_slots(s) == 0
            && self.has_dispatchable_work(s)
    }

    /// One rebalancing move (see the module docs). Returns whether an actor was created.
    pub(crate) fn rebalance(&mut self) -> bool {
        let n = self.stages.len();
        let empty = (0..n)
            .rev()
            .find(|&s| self.stages[s].actors.is_empty() && self.has_dispatchable_work(s));
        let (s, growth) = match empty {
            Some(s) => (s, false),
            None => match (0..n).rev().find(|&s| self.growth_starved(s)) {
                Some(s) if self.now - self.last_growth >= self.config.growth_interval_secs => {
                    (s, true)
                }
                _ => return false,
            },
        };
        if !self.place_one(s) {
            let Some((node, victims)) = self.plan_eviction(s, growth) else {
                return false;
            };
            for a in victims {
                self.release(a, true);
            }
            match self.find_place_on(s, node) {
                Some(grant) => {
                    self.create_actor(s, grant);
                }
                None => debug_assert!(false, "eviction plan did not make room"),
            }
        }
        self.last_rebalance = self.now;
        if growth {
            self.last_growth = self.now;
        }
        true
    }

    /// The node where killing the fewest idle, unusable actors makes room for one actor of `s`.
    fn plan_eviction(&self, s: usize, growth: bool) -> Option<(usize, Vec<ActorId>)> {
        let need = self.stages[s].need;
        let mut by_node: Vec<Vec<ActorId>> = vec![Vec::new(); self.nodes.len()];
        for (v, st) in self.stages.iter().enumerate() {
            if v == s || self.has_dispatchable_work(v) {
                continue;
            }
            for &a in &st.actors {
                let rec = &self.actors[a as usize];
                // Idle for a whole interval: not just between two calls.
                let idle = rec.state == ActorState::Ready
                    && rec.calls == 0
                    && self.now - rec.idle_since >= self.config.rebalance_interval_secs;
                if idle && !(growth && need.gpus == 0 && rec.grant.holds_gpus()) {
                    by_node[rec.grant.node].push(a);
                }
            }
        }
        let mut best: Option<(usize, Vec<ActorId>)> = None;
        for (node, mut candidates) in by_node.into_iter().enumerate() {
            // Spare GPU actors for CPU work, and take from the largest pools first.
            candidates.sort_by_key(|&a| {
                let rec = &self.actors[a as usize];
                let wasted_gpu = need.gpus == 0 && rec.grant.holds_gpus();
                (
                    wasted_gpu,
                    Reverse(self.stages[rec.stage].actors.len()),
                    rec.stage,
                    a,
                )
            });
            let mut cap = self.cluster.nodes[node].clone();
            let mut kills = vec![0usize; self.stages.len()];
            let mut chosen = Vec::new();
            for a in candidates {
                if best
                    .as_ref()
                    .is_some_and(|(_, b)| chosen.len() + 1 >= b.len())
                {
                    break;
                }
                let rec = &self.actors[a as usize];
                let left = self.stages[rec.stage].actors.len() - kills[rec.stage];
                if left <= self.keep_at_least(rec.stage, growth) {
                    continue;
                }
                cap.give_back(&rec.grant);
                kills[rec.stage] += 1;
                chosen.push(a);
                if cap.plan(need).is_some() {
                    best = Some((node, chosen));
                    break;
                }
            }
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(cpus: f64, gpus: f64) -> NodeCap {
        NodeCap::new(&NodeSpec::new("n", cpus, gpus))
    }

    fn need(cpus: f64, gpus: f64) -> Need {
        Need::of(&Resources { cpus, gpus })
    }

    #[test]
    fn fractional_gpus_fit_per_device() {
        let mut n = node(8.0, 2.0);
        for _ in 0..4 {
            let plan = n.plan(need(1.0, 0.4)).expect("fits");
            n.take(need(1.0, 0.4), &plan);
        }
        // Two devices with 0.2 free each: 0.4 fits on neither although 0.4 is free in total.
        assert_eq!(n.free_gpus(), to_units(0.4));
        assert!(n.plan(need(1.0, 0.4)).is_none());
        assert!(n.plan(need(1.0, 0.2)).is_some());
    }

    #[test]
    fn whole_gpus_need_whole_free_devices() {
        let mut n = node(8.0, 2.5);
        assert_eq!(n.device_cap, vec![UNITS, UNITS, UNITS / 2]);
        let half = n.plan(need(0.0, 0.5)).expect("fits");
        assert_eq!(
            half,
            GpuGrant::Part {
                device: 2,
                units: UNITS / 2
            },
            "best fit takes the half device"
        );
        n.take(need(0.0, 0.5), &half);
        let two = n.plan(need(1.0, 2.0)).expect("fits");
        assert_eq!(two, GpuGrant::Whole(vec![0, 1]));
        n.take(need(1.0, 2.0), &two);
        assert!(n.plan(need(0.0, 0.1)).is_none());
        let grant = Grant {
            node: 0,
            cpus: to_units(1.0),
            gpus: two,
        };
        n.give_back(&grant);
        assert_eq!(n.free_gpus(), 2 * UNITS);
        assert_eq!(n.cpus, to_units(8.0));
    }

    #[test]
    fn cpus_and_gpus_must_be_on_one_node() {
        let c = Cluster::new(&[
            NodeSpec::new("cpu", 16.0, 0.0),
            NodeSpec::new("gpu", 1.0, 1.0),
        ]);
        let mut spec = StageSpec::new("s");
        spec.resources = Resources {
            cpus: 2.0,
            gpus: 1.0,
        };
        let err = c.check_feasible(&spec).unwrap_err();
        assert!(
            matches!(err, CoreError::Infeasible { ref stage, .. } if stage == "s"),
            "{err}"
        );
        assert!(err.to_string().contains("cpus=2, gpus=1"), "{err}");
        spec.resources.cpus = 1.0;
        assert!(c.check_feasible(&spec).is_ok());
    }

    #[test]
    fn targets() {
        let mut spec = StageSpec::new("s");
        assert_eq!(pool_target(&spec, 3), None);
        spec.pool = PoolSize::Fixed(4);
        assert_eq!(pool_target(&spec, 3), Some(4));
        spec.pool = PoolSize::Auto { max: Some(2) };
        assert_eq!(pool_target(&spec, 3), Some(2));
        spec.pool = PoolSize::Auto { max: None };
        spec.resources = Resources {
            cpus: 0.0,
            gpus: 0.0,
        };
        assert_eq!(pool_target(&spec, 3), Some(3), "free actors: one per node");
    }
}
