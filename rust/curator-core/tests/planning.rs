//! The Ray Data plan: examples, then properties over random pipelines and busy clusters.

mod fixed_seed;

use curator_core::planning::cut_blocks;
use curator_core::{
    plan_ray_data, CoreError, PlanNode, PlanSettings, PlanStage, RayDataPlan, Resources,
};
use proptest::prelude::*;

const UNITS: f64 = 10_000.0;

fn units(x: f64) -> u64 {
    (x * UNITS).round() as u64
}

fn node(cpus: f64, gpus: f64, free_cpus: f64, free_gpus: f64) -> PlanNode {
    PlanNode {
        id: "n0".into(),
        cpus,
        gpus,
        free_cpus,
        free_gpus,
    }
}

fn task(name: &str) -> PlanStage {
    PlanStage::new(name)
}

fn actor(name: &str) -> PlanStage {
    PlanStage {
        actor: true,
        ..PlanStage::new(name)
    }
}

fn plan(stages: &[PlanStage], nodes: &[PlanNode], n_tasks: usize) -> RayDataPlan {
    plan_ray_data(stages, nodes, &PlanSettings::default(), &vec![10; n_tasks]).expect("a plan")
}

#[test]
fn idle_cluster_leaves_a_cpu_for_the_task_stage() {
    let p = plan(
        &[task("read"), actor("score")],
        &[node(2.0, 0.0, 2.0, 0.0)],
        4,
    );
    assert!(p.fits && !p.fused, "{p:?}");
    assert_eq!(p.segments.len(), 2);
    let pool = p.segments[1].pool.expect("an actor pool");
    assert_eq!((pool.min, pool.max, pool.initial), (1, 2, 1));
    assert_eq!(p.claims, vec![(2.0, 0.0)]);
}

#[test]
fn one_busy_cpu_of_two_fuses_the_feeding_stage_into_the_actors() {
    let p = plan(
        &[task("read"), actor("score")],
        &[node(2.0, 0.0, 1.0, 0.0)],
        4,
    );
    assert!(p.fits && p.fused, "{p:?}");
    assert_eq!(p.segments.len(), 1);
    assert_eq!(p.segments[0].stages, vec![0, 1]);
    assert!(p.segments[0].actor);
    assert_eq!(p.segments[0].pool.map(|q| q.min), Some(1));
    assert!(p.warnings[0].contains("read+score"), "{:?}", p.warnings);
}

#[test]
fn tasks_alone_fit_when_their_largest_worker_does() {
    // A fan-out, a repartition and a task segment on one free CPU: each task gives its CPU back when it
    // ends, so the run progresses; the claim is one worker, not one per segment.
    let mut fan = task("list");
    fan.fanout = true;
    let p = plan(
        &[fan, task("read"), task("write")],
        &[node(2.0, 0.0, 1.0, 0.0)],
        1,
    );
    assert!(p.fits && !p.fused, "{p:?}");
    assert!(p.segments.iter().any(|s| s.repartition.is_some()), "{p:?}");
    assert_eq!(p.claims, vec![(1.0, 0.0)]);
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
}

#[test]
fn a_full_cluster_still_plans_one_actor_but_says_it_does_not_fit() {
    let p = plan(
        &[task("read"), actor("score")],
        &[node(2.0, 0.0, 0.0, 0.0)],
        4,
    );
    assert!(!p.fits, "{p:?}");
    assert!(p.segments.iter().all(|s| s.pool.is_none_or(|q| q.min >= 1)));
}

#[test]
fn infeasible_stage_is_named() {
    let mut big = actor("embed");
    big.resources = Resources {
        cpus: 1.0,
        gpus: 1.0,
    };
    let err = plan_ray_data(
        &[task("read"), big],
        &[node(8.0, 0.0, 8.0, 0.0)],
        &PlanSettings::default(),
        &[1],
    )
    .unwrap_err();
    assert!(
        matches!(err, CoreError::Infeasible { ref stage, .. } if stage == "embed"),
        "{err}"
    );
}

#[test]
fn bad_worker_counts_are_errors_naming_the_stage() {
    let nodes = [node(4.0, 0.0, 4.0, 0.0)];
    for (min, max) in [
        (Some(-1.0), None),
        (Some(f64::NAN), None),
        (Some(3.0), Some(2.0)),
    ] {
        let s = PlanStage {
            min_workers: min,
            max_workers: max,
            ..actor("score")
        };
        let err = plan_ray_data(&[s], &nodes, &PlanSettings::default(), &[1]).unwrap_err();
        assert!(
            matches!(err, CoreError::Config(ref m) if m.contains("stage 'score'")),
            "{err}"
        );
    }
}

#[test]
fn fixed_pools_are_capped_and_shrunk_with_warnings() {
    let s = PlanStage {
        num_workers: Some(8),
        ..actor("score")
    };
    let p = plan(&[task("read"), s], &[node(4.0, 0.0, 4.0, 0.0)], 4);
    let pool = p.segments[1].pool.unwrap();
    // Capped at the 4 that fit the node, then shrunk to the 3 left next to the task stage.
    assert_eq!((pool.min, pool.max, pool.initial), (3, 3, 3));
    assert_eq!(p.warnings.len(), 2, "{:?}", p.warnings);
}

#[test]
fn repartitions_and_ray_data_batches() {
    let mut fan = task("split");
    fan.fanout = true;
    let mut batched = task("filter");
    batched.batch_size = 4;
    let stages = [fan, task("clean"), batched];
    let p = plan(&stages, &[node(4.0, 0.0, 4.0, 0.0)], 2);
    assert_eq!(p.segments.len(), 2, "the fan-out ends its segment");
    assert_eq!(p.segments[1].stages, vec![1, 2]);
    assert_eq!(
        p.segments[1].repartition,
        Some(1),
        "few parents: one child per block"
    );
    assert_eq!(p.segments[1].batch_size, None);
    // The fan-out packs its children for that repartition: 4 groups of one (one per CPU), then more.
    let pack = p.segments[0].pack.expect("packed children");
    assert_eq!((pack.spread, pack.batch, pack.max_rows), (4, 1, 1024));
    let rows: Vec<usize> = (0..7).map(|k| pack.rows(k, 1)).collect();
    assert_eq!(rows, vec![1, 1, 1, 1, 2, 4, 8]);
    assert_eq!(pack.rows(100, 1), 1024);
    // Many children at once: cut evenly, four rows per CPU (48 children on 4 CPUs: rows of 3), at most
    // max_rows each.
    assert_eq!(pack.rows(0, 48), 3);
    assert_eq!(pack.rows(5, 48), 3);
    assert_eq!(pack.rows(0, 200_000), 1024);
    assert_eq!(
        pack.rows(0, 15),
        1,
        "fewer than four per CPU: the doubling rows"
    );
    assert_eq!(p.segments[1].pack, None);
    let exact = PlanSettings {
        exact_batches: true,
        ..PlanSettings::default()
    };
    let p = plan_ray_data(&stages, &[node(4.0, 0.0, 4.0, 0.0)], &exact, &[1; 2]).unwrap();
    assert_eq!(p.segments.len(), 3);
    assert_eq!(p.segments[2].repartition, Some(4));
    // Many parents: their children stay in their own blocks.
    let p = plan(&stages, &[node(4.0, 0.0, 4.0, 0.0)], 64);
    assert_eq!(p.segments[1].repartition, None);
    assert_eq!(p.segments[0].pack, None);
}

#[test]
fn blocks_hold_whole_batches() {
    assert_eq!(
        cut_blocks(&[1; 10], 1024, 1 << 20, 2, 3),
        vec![(0, 3), (3, 6), (6, 9), (9, 10)]
    );
    // Bytes cut earlier, still on batch boundaries.
    assert_eq!(
        cut_blocks(&[10; 6], 1024, 25, 1, 2),
        vec![(0, 2), (2, 4), (4, 6)]
    );
}

// ------------------------------------------------------------------------------------- properties

fn stage() -> impl Strategy<Value = PlanStage> {
    (
        prop_oneof![3 => Just(1usize), 1 => 2usize..=8],
        prop_oneof![1 => Just(0.0), 4 => Just(1.0), 1 => Just(0.5), 1 => Just(2.0)],
        prop_oneof![6 => Just(0.0), 1 => Just(0.5), 1 => Just(1.0)],
        any::<bool>(),
        prop_oneof![4 => Just(false), 1 => Just(true)],
        prop_oneof![3 => Just(None), 1 => (1usize..=6).prop_map(Some)],
        prop_oneof![3 => Just(None), 1 => (1u32..=4).prop_map(|v| Some(v as f64))],
        prop_oneof![3 => Just(None), 1 => (4u32..=8).prop_map(|v| Some(v as f64))],
        prop_oneof![3 => Just(None), 1 => (1u32..=8).prop_map(|v| Some(v as f64))],
    )
        .prop_map(
            |(batch_size, cpus, gpus, actor, fanout, num_workers, min, max, initial)| PlanStage {
                batch_size,
                resources: Resources { cpus, gpus },
                actor,
                fanout,
                num_workers,
                min_workers: min,
                max_workers: max,
                initial_workers: initial,
                ..PlanStage::new("s")
            },
        )
}

fn stages() -> impl Strategy<Value = Vec<PlanStage>> {
    prop::collection::vec(stage(), 1..=5).prop_map(|mut v| {
        for (i, s) in v.iter_mut().enumerate() {
            s.name = format!("stage{i}");
        }
        v
    })
}

fn nodes() -> impl Strategy<Value = Vec<PlanNode>> {
    prop::collection::vec((1u32..=8, 0u32..=2, 0u32..=100, 0u32..=100), 1..=3).prop_map(|caps| {
        caps.into_iter()
            .enumerate()
            .map(|(i, (c, g, busy_c, busy_g))| PlanNode {
                id: format!("node{i}"),
                cpus: c as f64,
                gpus: g as f64,
                // Some of each node is held by other work.
                free_cpus: (c as f64 * (100 - busy_c.min(100)) as f64 / 100.0 * 2.0).round() / 2.0,
                free_gpus: if busy_g > 50 { 0.0 } else { g as f64 },
            })
            .collect()
    })
}

fn settings() -> impl Strategy<Value = PlanSettings> {
    (
        prop_oneof![3 => Just(None), 1 => (1usize..=4).prop_map(Some)],
        any::<bool>(),
        prop_oneof![3 => Just(None), 1 => (1usize..=3).prop_map(Some)],
        prop_oneof![1 => 1usize..=8, 1 => Just(1024usize)],
        prop_oneof![1 => 10u64..=100, 1 => Just(16u64 << 20)],
    )
        .prop_map(
            |(pool_size, exact, fanout, max_tasks, max_bytes)| PlanSettings {
                pool_size,
                exact_batches: exact,
                fanout_tasks_per_block: fanout,
                max_tasks_per_block: max_tasks,
                target_block_bytes: max_bytes,
            },
        )
}

fn worker_units(cpus: f64, gpus: f64) -> (u64, u64) {
    (
        if cpus > 0.0 { units(cpus) } else { units(1.0) },
        units(gpus),
    )
}

proptest! {
    #![proptest_config(fixed_seed::config(256))]

    #[test]
    fn plans_fit_cover_and_respect_batches(
        stages in stages(),
        nodes in nodes(),
        settings in settings(),
        sizes in prop::collection::vec(1u64..=40, 0..=60),
    ) {
        let result = plan_ray_data(&stages, &nodes, &settings, &sizes);
        // Infeasible exactly when some stage's worker fits no node's totals.
        let fits_somewhere = |s: &PlanStage| {
            let (c, g) = worker_units(s.resources.cpus, s.resources.gpus);
            nodes.iter().any(|n| {
                let whole_ok = if g >= units(1.0) {
                    (units(n.gpus) / units(1.0)) >= g / units(1.0) && g % units(1.0) == 0
                } else {
                    g == 0 || units(n.gpus) >= g
                };
                units(n.cpus) >= c && whole_ok
            })
        };
        let infeasible = stages.iter().find(|s| !fits_somewhere(s));
        let p = match (result, infeasible) {
            (Err(CoreError::Infeasible { stage, .. }), Some(s)) => {
                prop_assert_eq!(stage, s.name.clone());
                return Ok(());
            }
            (Err(CoreError::Config(m)), _) => {
                // Only a min_workers above max_workers is invalid in these inputs.
                prop_assert!(m.contains("larger than max_workers"), "{}", m);
                return Ok(());
            }
            (Ok(p), None) => p,
            (other, inf) => {
                prop_assert!(false, "plan {:?} but infeasible stage {:?}", other, inf.map(|s| &s.name));
                unreachable!()
            }
        };

        // Every stage in exactly one segment, in order; actor segments hold an actor stage.
        let order: Vec<usize> = p.segments.iter().flat_map(|s| s.stages.clone()).collect();
        prop_assert_eq!(order, (0..stages.len()).collect::<Vec<_>>());
        for seg in &p.segments {
            let has_actor = seg.stages.iter().any(|&i| stages[i].actor);
            prop_assert_eq!(seg.actor, has_actor || p.fused && seg.actor);
            if !p.fused && has_actor {
                prop_assert_eq!(seg.stages.len(), 1);
            }
            // No stage starved: an actor segment has a pool of at least one actor.
            prop_assert_eq!(seg.pool.is_some(), seg.actor);
            if let Some(pool) = seg.pool {
                prop_assert!(pool.min >= 1 && pool.min <= pool.initial && pool.initial <= pool.max, "{:?}", pool);
            }
            // Ray Data cuts batches of the first stage's size, if at all.
            if let Some(b) = seg.batch_size {
                prop_assert_eq!(b, stages[seg.stages[0]].batch_size);
            }
            // Only task segments share one worker between stages of equal resources (unfused).
            if !p.fused && seg.stages.len() > 1 {
                for w in seg.stages.windows(2) {
                    prop_assert!(!stages[w[0]].fanout);
                    prop_assert_eq!(stages[w[0]].resources, stages[w[1]].resources);
                }
            }
        }
        prop_assert_eq!(p.segments[0].repartition, None);
        // Children are packed exactly when a fan-out feeds a one-row-per-block repartition.
        for (k, seg) in p.segments.iter().enumerate() {
            let feeds = p.segments.get(k + 1).is_some_and(|n| n.repartition == Some(1));
            let fan = stages[*seg.stages.last().unwrap()].fanout;
            prop_assert_eq!(seg.pack.is_some(), feeds && fan && settings.fanout_tasks_per_block.is_none());
            if let Some(pack) = seg.pack {
                prop_assert!(pack.max_rows % pack.batch == 0 && pack.max_rows >= pack.batch);
                prop_assert!((0..64).all(|k| [1, 7, 100, 5000].iter().all(|&n| pack.rows(k, n) >= pack.batch && pack.rows(k, n) <= pack.max_rows)));
            }
        }

        // The reservations fit the free resources, node by node, when the plan says it fits,
        // and add up to one worker per task segment, the pools' minima and a repartition CPU; with no
        // pool (tasks only, each ending and giving its worker back) to the largest of those workers.
        let claimed: (u64, u64) = p.claims.iter().fold((0, 0), |a, c| (a.0 + units(c.0), a.1 + units(c.1)));
        let pooled = p.segments.iter().any(|s| s.actor);
        let mut workers: Vec<(u64, u64)> = p
            .segments
            .iter()
            .map(|seg| {
                let (c, g) = worker_units(seg.cpus, seg.gpus);
                let n = seg.pool.map_or(1, |q| q.min) as u64;
                (n * c, n * g)
            })
            .collect();
        if p.segments.iter().any(|s| s.repartition.is_some()) {
            workers.push((units(1.0), 0));
        }
        let want = if pooled {
            workers.iter().fold((0, 0), |a, w| (a.0 + w.0, a.1 + w.1))
        } else {
            workers.iter().copied().max_by_key(|&(c, g)| (g, c)).expect("a segment")
        };
        if p.fits {
            for (c, n) in p.claims.iter().zip(&nodes) {
                prop_assert!(units(c.0) <= units(n.free_cpus) && units(c.1) <= units(n.free_gpus));
            }
            prop_assert_eq!(claimed, want);
        } else if nodes.len() == 1 && p.segments.iter().all(|s| s.gpus == 0.0) {
            // On one CPU-only node, not fitting means those workers need more than is free.
            prop_assert!(want.0 > units(nodes[0].free_cpus), "{:?}", p);
        }

        // Blocks: every task once, in order; whole batches of the first segment but the last.
        let first_batch = p.segments[0].stages.iter().fold(1usize, |a, &i| {
            let b = stages[i].batch_size;
            a / gcd(a, b) * b
        });
        let mut next = 0;
        for (k, &(start, end)) in p.blocks.iter().enumerate() {
            prop_assert_eq!(start, next);
            prop_assert!(end > start);
            if k + 1 < p.blocks.len() {
                prop_assert_eq!((end - start) % first_batch.min(sizes.len().max(1)), 0, "{:?}", p.blocks);
            }
            next = end;
        }
        prop_assert_eq!(next, sizes.len());
    }
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}
