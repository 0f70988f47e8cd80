//! The Ray Data executor's plan: which stages share one `map_batches` segment, the actor pool of
//! each actor segment, the repartition before each segment, whether Ray Data cuts its batches, and
//! how the initial tasks are cut into blocks. Pure: the driver passes what it measured (stages,
//! nodes with their free and total resources, task sizes) and turns the plan into Ray Data calls.
//!
//! Segments: consecutive task stages with the same resources share a segment, unless the earlier
//! one fans out or `exact_batches` starts a new segment at a stage with `batch_size` > 1; an actor
//! stage, and a stage whose workers need options of their own (`alone`), is a segment of its own
//! (also when busy-cluster fusing merges the others).
//!
//! Feasibility and resources follow the actor pool (`placement.rs`, the same units and per-device
//! GPU model): a stage whose worker fits no node's *total* resources is `Infeasible`. A worker that
//! asks for no CPU gets one from Ray Data anyway, so it is counted as one.
//!
//! Pools are fitted to what is *free* now: first one worker of every task segment and one CPU for
//! repartitions (when there are any) are set aside, so that the stages feeding the actor pools can
//! always run; then every actor segment gets one actor (upstream first), then its minimum
//! (`num_workers()` or `pool_size` when fixed, else `min_workers`), round-robin; a pool whose minimum
//! does not fit is shrunk (never below one actor) with a warning, rather than wait for resources
//! that may never come. The pools' initial sizes then share what is left (most downstream first) up
//! to their maxima (`max_workers`, else as many as fit the cluster's totals). A fixed size larger
//! than the cluster's totals can hold is capped with a warning.
//!
//! When even that does not fit (another job holds part of the cluster), and the pipeline has an
//! actor segment, adjacent segments are fused into actor segments (a worker then asks for the
//! largest CPU and GPU request of its stages and runs them one after the other): an actor pool of
//! one next to a task stage that can never get a CPU would wait forever. `fits` says whether the
//! chosen plan's reservations fit the free resources at all; `claims` what it reserves per node.
//!
//! Initial blocks: enough blocks for every CPU of the cluster to have work (two per CPU), each of
//! at most `max_tasks_per_block` tasks and `target_block_bytes`, and whole batches of the first
//! segment (the lcm of its batch sizes), except the last block.

use crate::errors::{CoreError, CoreResult};
use crate::placement::{Cluster, Need, UNITS};
use crate::scheduler::check_resource;
use crate::spec::{NodeSpec, Resources};

/// Fewer initial tasks than this per CPU: a fan-out's children are re-blocked (one per block by
/// default) so that the next segment spreads them over its workers.
pub const FEW_PARENTS_PER_CPU: usize = 4;

/// One stage as the Ray Data planner sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanStage {
    pub name: String,
    /// Tasks per `process_batch` call (>= 1).
    pub batch_size: usize,
    /// What the stage declares per worker (a CPU request of 0 still takes one CPU in Ray Data).
    pub resources: Resources,
    /// Runs in an actor pool (per-worker state), else in Ray tasks.
    pub actor: bool,
    /// `is_fanout_stage`: ends its segment; its outputs may be re-blocked.
    pub fanout: bool,
    /// `stage.num_workers()`: an exact pool size (None or 0: not set).
    pub num_workers: Option<usize>,
    /// `ray_stage_spec` `min_workers` / `max_workers` / `initial_workers` as given (whole numbers
    /// >= 0; 0 means not set).
    pub min_workers: Option<f64>,
    pub max_workers: Option<f64>,
    pub initial_workers: Option<f64>,
    /// Its workers need options of their own (a `runtime_env`, `ray_remote_args`,
    /// `max_calls_per_worker`): a segment of its own, never fused with a neighbour.
    pub alone: bool,
}

impl PlanStage {
    /// A task stage with one CPU, batches of one, nothing else set.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            batch_size: 1,
            resources: Resources {
                cpus: 1.0,
                gpus: 0.0,
            },
            actor: false,
            fanout: false,
            num_workers: None,
            min_workers: None,
            max_workers: None,
            initial_workers: None,
            alone: false,
        }
    }
}

/// One usable node: its total resources and what is free now (both already less any reserved).
#[derive(Debug, Clone, PartialEq)]
pub struct PlanNode {
    pub id: String,
    pub cpus: f64,
    pub gpus: f64,
    pub free_cpus: f64,
    pub free_gpus: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PlanSettings {
    /// Actors per actor stage (fixed), unless the stage's `num_workers()` says otherwise.
    pub pool_size: Option<usize>,
    pub exact_batches: bool,
    pub fanout_tasks_per_block: Option<usize>,
    pub max_tasks_per_block: usize,
    pub target_block_bytes: u64,
}

impl Default for PlanSettings {
    fn default() -> Self {
        Self {
            pool_size: None,
            exact_batches: false,
            fanout_tasks_per_block: None,
            max_tasks_per_block: 1024,
            target_block_bytes: 16 << 20,
        }
    }
}

/// An actor pool: Ray Data's `ActorPoolStrategy(min_size, max_size, initial_size)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolPlan {
    pub min: usize,
    pub max: usize,
    pub initial: usize,
}

/// One `map_batches` call.
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentPlan {
    /// Indices of the stages it runs, consecutive.
    pub stages: Vec<usize>,
    pub actor: bool,
    /// What each worker asks Ray Data for (the largest request of its stages; 0 CPUs: Ray Data's
    /// default of one).
    pub cpus: f64,
    pub gpus: f64,
    /// Actor segments only.
    pub pool: Option<PoolPlan>,
    /// `map_batches(batch_size=...)`: Ray Data cuts batches of this many rows; None: a call takes
    /// whole blocks and the stages cut their batches themselves.
    pub batch_size: Option<usize>,
    /// Rows per block of a strict repartition before this segment; None: no repartition.
    pub repartition: Option<usize>,
    /// Set when the segment ends with a fan-out whose children the next segment re-blocks one row
    /// per block (few parents): its children go out packed, see [`Pack`].
    pub pack: Option<Pack>,
}

/// How a fan-out call packs its children into rows. Children that trickle in: `spread` groups of
/// `batch` first (so few parents still give every worker a block), then groups twice as large each
/// time. Children that come many at once are cut evenly, `EVEN_ROWS_PER_CPU` rows per CPU (`spread`):
/// growing rows would leave the last, largest one to a single worker. Rows hold at most `max_rows` (a
/// multiple of `batch`) or `max_bytes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pack {
    pub spread: usize,
    pub batch: usize,
    pub max_rows: usize,
    pub max_bytes: u64,
}

/// Rows per CPU when a fan-out call's children come at once (see [`Pack`]).
pub const EVEN_ROWS_PER_CPU: usize = 4;

impl Pack {
    /// Children in the next row, when `packed` rows went out before it and the call gave `arriving`
    /// children at once.
    pub fn rows(&self, packed: usize, arriving: usize) -> usize {
        let even_rows = EVEN_ROWS_PER_CPU * self.spread;
        if arriving >= even_rows * self.batch {
            let even = arriving.div_ceil(even_rows).div_ceil(self.batch) * self.batch;
            return self.max_rows.min(even);
        }
        let doublings = (packed + 1).saturating_sub(self.spread).min(30);
        self.max_rows.min(self.batch << doublings)
    }
}

/// The [`Pack`] of each segment (see [`SegmentPlan::pack`]).
fn packs(segments: &mut [SegmentPlan], stages: &[PlanStage], settings: &PlanSettings, cpus: usize) {
    if settings.fanout_tasks_per_block.is_some() {
        return;
    }
    for k in 0..segments.len().saturating_sub(1) {
        let last = *segments[k].stages.last().expect("a segment has stages");
        let next = &segments[k + 1];
        if next.repartition == Some(1) && stages[last].fanout {
            let batch = stages[next.stages[0]].batch_size;
            segments[k].pack = Some(Pack {
                spread: cpus.max(1),
                batch,
                max_rows: batch.max(settings.max_tasks_per_block / batch * batch),
                max_bytes: settings.target_block_bytes,
            });
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct RayDataPlan {
    pub segments: Vec<SegmentPlan>,
    /// The initial tasks cut into blocks: `[start, end)` ranges, in order, covering every task once.
    pub blocks: Vec<(usize, usize)>,
    /// What the plan reserves on each node (in the order given): (cpus, gpus).
    pub claims: Vec<(f64, f64)>,
    /// Every reservation (one worker per task segment, repartitions, each pool's minimum) fits the
    /// free resources.
    pub fits: bool,
    /// Segments were fused to fit a busy cluster (see the module docs).
    pub fused: bool,
    /// Pools capped or shrunk, segments fused: for the log.
    pub warnings: Vec<String>,
}

/// A stage's pool settings, resolved.
#[derive(Debug, Clone, Copy)]
enum Wanted {
    Fixed(usize),
    Auto {
        min: usize,
        max: Option<usize>,
        initial: Option<usize>,
    },
}

/// A segment while planning.
#[derive(Debug, Clone)]
struct Seg {
    stages: Vec<usize>,
    actor: bool,
    cpus: f64,
    gpus: f64,
    need: Need,
    wanted: Option<Wanted>,
    alone: bool,
}

fn config(msg: String) -> CoreError {
    CoreError::Config(msg)
}

/// A worker's need as Ray Data grants it: a CPU request of 0 takes one CPU.
fn worker_need(r: &Resources) -> Need {
    let mut need = Need::of(r);
    if need.cpus == 0 {
        need.cpus = UNITS;
    }
    need
}

fn whole(stage: &str, key: &str, value: Option<f64>) -> CoreResult<Option<usize>> {
    let Some(v) = value else { return Ok(None) };
    if !v.is_finite() || v < 0.0 || v.fract() != 0.0 || v > u32::MAX as f64 {
        return Err(config(format!(
            "stage '{stage}': ray_stage_spec '{key}' must be a whole number >= 0, got {v}"
        )));
    }
    Ok((v > 0.0).then_some(v as usize))
}

fn wanted(stage: &PlanStage, pool_size: Option<usize>) -> CoreResult<Wanted> {
    let min = whole(&stage.name, "min_workers", stage.min_workers)?;
    let max = whole(&stage.name, "max_workers", stage.max_workers)?;
    let initial = whole(&stage.name, "initial_workers", stage.initial_workers)?;
    if let (Some(lo), Some(hi)) = (min, max) {
        if lo > hi {
            return Err(config(format!(
                "stage '{}': ray_stage_spec min_workers ({lo}) is larger than max_workers ({hi})",
                stage.name
            )));
        }
    }
    if let Some(n) = stage.num_workers.filter(|&n| n > 0).or(pool_size) {
        return Ok(Wanted::Fixed(n));
    }
    Ok(Wanted::Auto {
        min: min.unwrap_or(1),
        max,
        initial,
    })
}

fn validate(
    stages: &[PlanStage],
    nodes: &[PlanNode],
    settings: &PlanSettings,
    task_sizes: &[u64],
) -> CoreResult<()> {
    if stages.is_empty() {
        return Err(config("a pipeline needs at least one stage".into()));
    }
    for s in stages {
        let owner = format!("stage '{}'", s.name);
        if s.batch_size == 0 {
            return Err(config(format!("{owner}: batch_size must be >= 1")));
        }
        check_resource("cpus", &owner, s.resources.cpus)?;
        check_resource("gpus", &owner, s.resources.gpus)?;
    }
    for n in nodes {
        let owner = format!("node '{}'", n.id);
        for (what, v) in [
            ("cpus", n.cpus),
            ("gpus", n.gpus),
            ("free cpus", n.free_cpus),
            ("free gpus", n.free_gpus),
        ] {
            check_resource(what, &owner, v)?;
        }
    }
    if settings.max_tasks_per_block == 0 || settings.target_block_bytes == 0 {
        return Err(config(
            "max_tasks_per_block and target_block_bytes must be >= 1".into(),
        ));
    }
    if settings.fanout_tasks_per_block == Some(0) || settings.pool_size == Some(0) {
        return Err(config(
            "fanout_tasks_per_block and pool_size must be >= 1 when given".into(),
        ));
    }
    let _ = task_sizes;
    Ok(())
}

/// Plan a Ray Data run (see the module docs).
pub fn plan_ray_data(
    stages: &[PlanStage],
    nodes: &[PlanNode],
    settings: &PlanSettings,
    task_sizes: &[u64],
) -> CoreResult<RayDataPlan> {
    validate(stages, nodes, settings, task_sizes)?;
    let totals = Cluster::new(
        &nodes
            .iter()
            .map(|n| NodeSpec::new(n.id.clone(), n.cpus, n.gpus))
            .collect::<Vec<_>>(),
    );
    let mut wants = Vec::with_capacity(stages.len());
    for s in stages {
        totals.check_need(&s.name, worker_need(&s.resources))?;
        wants.push(wanted(s, settings.pool_size)?);
    }
    let total_cpus = nodes.iter().map(|n| n.cpus).sum::<f64>().floor().max(1.0) as usize;

    let segments = segments(stages, &wants, settings.exact_batches);
    let plain = Planner::new(
        stages,
        nodes,
        settings,
        &totals,
        total_cpus,
        task_sizes.len(),
    )
    .finish(segments.clone());
    let plan = if plain.fits || !segments.iter().any(|s| s.actor) || segments.len() < 2 {
        plain
    } else {
        let fused_segments = fuse(segments, &totals);
        let mut fused = Planner::new(
            stages,
            nodes,
            settings,
            &totals,
            total_cpus,
            task_sizes.len(),
        )
        .finish(fused_segments);
        if fused.fits {
            fused.fused = true;
            fused.warnings.insert(
                0,
                format!(
                    "the free resources ({}) do not hold every stage's workers at once: stages run \
                     fused as {}",
                    free_description(nodes),
                    fused
                        .segments
                        .iter()
                        .map(|s| s
                            .stages
                            .iter()
                            .map(|&i| stages[i].name.as_str())
                            .collect::<Vec<_>>()
                            .join("+"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
            fused
        } else {
            plain
        }
    };
    let mut plan = plan;
    packs(&mut plan.segments, stages, settings, total_cpus);
    let first_batch = plan.segments[0].stages.iter().fold(1usize, |acc, &i| {
        lcm_capped(acc, stages[i].batch_size, task_sizes.len().max(1))
    });
    let blocks = cut_blocks(
        task_sizes,
        settings.max_tasks_per_block,
        settings.target_block_bytes,
        total_cpus,
        first_batch,
    );
    Ok(RayDataPlan { blocks, ..plan })
}

fn free_description(nodes: &[PlanNode]) -> String {
    let cpus: f64 = nodes.iter().map(|n| n.free_cpus).sum();
    let gpus: f64 = nodes.iter().map(|n| n.free_gpus).sum();
    format!("{cpus} CPUs, {gpus} GPUs free")
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// lcm(a, b), but at most `cap` (blocks never hold more than every task anyway).
fn lcm_capped(a: usize, b: usize, cap: usize) -> usize {
    let l = (a / gcd(a, b)).saturating_mul(b);
    l.min(cap.max(a).max(b))
}

fn segments(stages: &[PlanStage], wants: &[Wanted], exact_batches: bool) -> Vec<Seg> {
    let mut out: Vec<Seg> = Vec::new();
    for (i, s) in stages.iter().enumerate() {
        if i > 0 {
            let prev = &stages[i - 1];
            let split = s.actor
                || s.alone
                || prev.alone
                || prev.actor
                || prev.fanout
                || (exact_batches && s.batch_size > 1)
                || s.resources != prev.resources;
            if !split {
                out.last_mut().expect("a segment").stages.push(i);
                continue;
            }
        }
        out.push(Seg {
            stages: vec![i],
            actor: s.actor,
            cpus: s.resources.cpus,
            gpus: s.resources.gpus,
            need: worker_need(&s.resources),
            wanted: s.actor.then_some(wants[i]),
            alone: s.alone,
        });
    }
    out
}

/// Merge adjacent segments into actor segments where one worker can hold both (see the module docs).
fn fuse(segments: Vec<Seg>, totals: &Cluster) -> Vec<Seg> {
    let mut out: Vec<Seg> = Vec::new();
    for seg in segments {
        if let Some(last) = out.last_mut() {
            let cpus = last.cpus.max(seg.cpus);
            let gpus = last.gpus.max(seg.gpus);
            let need = worker_need(&Resources { cpus, gpus });
            let apart = last.alone || seg.alone;
            if !apart && (last.actor || seg.actor) && totals.check_need("", need).is_ok() {
                last.stages.extend(seg.stages);
                last.actor = true;
                last.cpus = cpus;
                last.gpus = gpus;
                last.need = need;
                last.wanted = combine(last.wanted, seg.wanted);
                continue;
            }
        }
        out.push(seg);
    }
    out
}

fn combine(a: Option<Wanted>, b: Option<Wanted>) -> Option<Wanted> {
    match (a, b) {
        (Some(Wanted::Fixed(x)), Some(Wanted::Fixed(y))) => Some(Wanted::Fixed(x.min(y))),
        (Some(w @ Wanted::Fixed(_)), _) | (_, Some(w @ Wanted::Fixed(_))) => Some(w),
        (Some(w), _) | (None, Some(w)) => Some(w),
        (None, None) => Some(Wanted::Auto {
            min: 1,
            max: None,
            initial: None,
        }),
    }
}

struct Planner<'a> {
    stages: &'a [PlanStage],
    settings: &'a PlanSettings,
    totals: &'a Cluster,
    free: Cluster,
    claims: Vec<(u64, u64)>,
    total_cpus: usize,
    num_tasks: usize,
    fits: bool,
    warnings: Vec<String>,
}

impl<'a> Planner<'a> {
    fn new(
        stages: &'a [PlanStage],
        nodes: &[PlanNode],
        settings: &'a PlanSettings,
        totals: &'a Cluster,
        total_cpus: usize,
        num_tasks: usize,
    ) -> Self {
        let free = Cluster::new(
            &nodes
                .iter()
                .map(|n| NodeSpec::new(n.id.clone(), n.free_cpus, n.free_gpus))
                .collect::<Vec<_>>(),
        );
        Self {
            stages,
            settings,
            totals,
            claims: vec![(0, 0); nodes.len()],
            free,
            total_cpus,
            num_tasks,
            fits: true,
            warnings: Vec::new(),
        }
    }

    /// Reserve room for one worker; a `required` one that does not fit makes the plan not fit.
    fn reserve(&mut self, need: Need, required: bool) -> bool {
        match self.free.place(need) {
            Some(grant) => {
                let claim = &mut self.claims[grant.node];
                claim.0 += need.cpus;
                claim.1 += need.gpus;
                true
            }
            None => {
                self.fits &= !required;
                false
            }
        }
    }

    fn label(&self, seg: &Seg) -> String {
        seg.stages
            .iter()
            .map(|&i| self.stages[i].name.as_str())
            .collect::<Vec<_>>()
            .join("+")
    }

    fn repartition(&self, prev: &Seg, seg: &Seg) -> Option<usize> {
        let head = self.stages[seg.stages[0]].batch_size;
        let prev_fanout = self.stages[*prev.stages.last().expect("a stage")].fanout;
        if head > 1 {
            // Otherwise Ray Data cuts batches across the blocks of each call (`batch_size`).
            self.settings.exact_batches.then_some(head)
        } else if prev_fanout
            && (self.settings.fanout_tasks_per_block.is_some()
                || self.num_tasks < FEW_PARENTS_PER_CPU * self.total_cpus)
        {
            // Few parents fanning out: spread their children over the next segment's workers.
            Some(self.settings.fanout_tasks_per_block.unwrap_or(1))
        } else {
            None
        }
    }

    fn finish(mut self, segs: Vec<Seg>) -> RayDataPlan {
        let repartitions: Vec<Option<usize>> = (0..segs.len())
            .map(|k| {
                (k > 0)
                    .then(|| self.repartition(&segs[k - 1], &segs[k]))
                    .flatten()
            })
            .collect();
        let repartition_need = repartitions.iter().any(Option::is_some).then_some(Need {
            cpus: UNITS,
            gpus: 0,
        });
        if segs.iter().any(|s| s.actor) {
            // Room for the stages that feed the pools first: the pools hold theirs for the whole run.
            for seg in segs.iter().filter(|s| !s.actor) {
                self.reserve(seg.need, true);
            }
            if let Some(need) = repartition_need {
                self.reserve(need, true);
            }
        } else {
            // Only tasks: each gives its worker back when it ends, so the run progresses as long as the
            // largest of them fits (they share the room, one after another when it is small).
            let largest = segs
                .iter()
                .map(|s| s.need)
                .chain(repartition_need)
                .max_by_key(|n| (n.gpus, n.cpus))
                .expect("a segment");
            self.reserve(largest, true);
        }
        let pools = self.size_pools(&segs);
        let segments = segs
            .iter()
            .enumerate()
            .map(|(k, seg)| {
                let head = self.stages[seg.stages[0]].batch_size;
                let by_batch =
                    seg.gpus > 0.0 || (k > 0 && head > 1 && !self.settings.exact_batches);
                SegmentPlan {
                    stages: seg.stages.clone(),
                    actor: seg.actor,
                    cpus: seg.cpus,
                    gpus: seg.gpus,
                    pool: pools[k],
                    batch_size: by_batch.then_some(head),
                    repartition: repartitions[k],
                    pack: None,
                }
            })
            .collect();
        let unit = UNITS as f64;
        RayDataPlan {
            segments,
            blocks: Vec::new(),
            claims: self
                .claims
                .iter()
                .map(|&(c, g)| (c as f64 / unit, g as f64 / unit))
                .collect(),
            fits: self.fits,
            fused: false,
            warnings: self.warnings,
        }
    }

    /// Pools of the actor segments (see the module docs); None for task segments.
    fn size_pools(&mut self, segs: &[Seg]) -> Vec<Option<PoolPlan>> {
        let n = segs.len();
        let mut pools: Vec<Option<PoolPlan>> = vec![None; n];
        let mut placed = vec![0usize; n];
        let limit = 1 << 20;
        // Targets against the cluster's totals.
        for (k, seg) in segs.iter().enumerate() {
            let Some(wanted) = seg.wanted.filter(|_| seg.actor) else {
                continue;
            };
            let capacity = self.totals.capacity(seg.need, true, limit).max(1);
            pools[k] = Some(match wanted {
                Wanted::Fixed(want) => {
                    let size = if want > capacity {
                        self.warnings.push(format!(
                            "stage '{}' asks for {want} actors but only {capacity} fit the cluster; \
                             using {capacity}",
                            self.label(seg)
                        ));
                        capacity
                    } else {
                        want
                    };
                    PoolPlan {
                        min: size,
                        max: size,
                        initial: size,
                    }
                }
                Wanted::Auto { min, max, initial } => {
                    let min = min.min(capacity);
                    let max = max.unwrap_or(capacity).min(capacity).max(min);
                    PoolPlan {
                        min,
                        max,
                        initial: initial.unwrap_or(0),
                    }
                }
            });
        }
        // One actor each (upstream first), then the minima round-robin, on the free resources.
        for (k, seg) in segs.iter().enumerate() {
            if pools[k].is_some() && self.reserve(seg.need, true) {
                placed[k] = 1;
            }
        }
        loop {
            let mut any = false;
            for (k, seg) in segs.iter().enumerate() {
                if let Some(pool) = pools[k] {
                    if placed[k] >= 1 && placed[k] < pool.min && self.reserve(seg.need, false) {
                        placed[k] += 1;
                        any = true;
                    }
                }
            }
            if !any {
                break;
            }
        }
        // Minima that do not fit shrink (never below one actor).
        let mut shrunk = Vec::new();
        for (k, seg) in segs.iter().enumerate() {
            let Some(pool) = pools[k].as_mut() else {
                continue;
            };
            let got = placed[k].max(1);
            if got < pool.min {
                shrunk.push(format!("'{}': {} -> {got}", self.label(seg), pool.min));
                if pool.max == pool.min {
                    pool.max = got;
                }
                pool.min = got;
            }
        }
        if !shrunk.is_empty() {
            self.warnings.push(format!(
                "actor pools shrunk to fit the free resources next to the task stages: {}",
                shrunk.join(", ")
            ));
        }
        // Initial sizes: what is left, shared round-robin (most downstream first), up to the maxima.
        let mut initial: Vec<usize> = placed.iter().map(|&p| p.max(1)).collect();
        loop {
            let mut any = false;
            for (k, seg) in segs.iter().enumerate().rev() {
                if let Some(pool) = pools[k] {
                    if initial[k] < pool.max && self.free.place(seg.need).is_some() {
                        initial[k] += 1;
                        any = true;
                    }
                }
            }
            if !any {
                break;
            }
        }
        for (k, pool) in pools.iter_mut().enumerate() {
            if let Some(pool) = pool.as_mut() {
                let chosen = if pool.initial > 0 {
                    pool.initial
                } else {
                    initial[k]
                };
                pool.initial = chosen.clamp(pool.min, pool.max);
            }
        }
        pools
    }
}

/// Cut the initial tasks into blocks (see the module docs): `[start, end)` ranges, in order.
pub fn cut_blocks(
    task_sizes: &[u64],
    max_tasks: usize,
    max_bytes: u64,
    total_cpus: usize,
    first_batch: usize,
) -> Vec<(usize, usize)> {
    let n = task_sizes.len();
    let first_batch = first_batch.max(1);
    let per_block = n
        .div_ceil(2 * total_cpus.max(1))
        .min(max_tasks.max(1))
        .max(1);
    let per_block = (per_block - per_block % first_batch).max(first_batch);
    let mut blocks = Vec::new();
    let mut start = 0;
    let mut bytes: u64 = 0;
    for (i, &size) in task_sizes.iter().enumerate() {
        let len = i - start;
        let too_big = bytes.saturating_add(size) > max_bytes && len % first_batch == 0;
        if len > 0 && (len >= per_block || too_big) {
            blocks.push((start, i));
            start = i;
            bytes = 0;
        }
        bytes = bytes.saturating_add(size);
    }
    if start < n {
        blocks.push((start, n));
    }
    blocks
}
