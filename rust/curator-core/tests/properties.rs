//! Property tests: random pipelines, clusters and failures against the mock cluster in `common`,
//! which checks every rule after every poll (see its docs).

mod common;
mod fixed_seed;

use common::{Fanout, Outcome, Sim, SimParams};
use curator_core::{NodeSpec, PoolSize, Resources, SchedulerConfig, StageSpec};
use proptest::prelude::*;

fn fanout() -> impl Strategy<Value = Fanout> {
    prop_oneof![
        3 => Just(Fanout::Const(1)),
        1 => Just(Fanout::Const(0)),
        1 => (2u32..=3).prop_map(Fanout::Const),
        2 => (1u32..=2).prop_map(Fanout::Upto),
        1 => Just(Fanout::Upto(5)),
    ]
}

fn pool() -> impl Strategy<Value = PoolSize> {
    prop_oneof![
        2 => Just(PoolSize::Auto { max: None }),
        1 => (1usize..=3).prop_map(|m| PoolSize::Auto { max: Some(m) }),
        1 => (1usize..=4).prop_map(PoolSize::Fixed),
    ]
}

fn stage() -> impl Strategy<Value = StageSpec> {
    (
        prop_oneof![3 => 1usize..=4, 1 => 1usize..=64],
        prop_oneof![1 => Just(0.0), 4 => Just(1.0), 1 => Just(0.5), 1 => Just(2.0)],
        prop_oneof![8 => Just(0.0), 1 => Just(0.5), 1 => Just(1.0)],
        pool(),
        1usize..=3,
        1usize..=8,
        0u32..=3,
        prop_oneof![1 => 1usize..=8, 2 => 8usize..=100, 1 => Just(10_000usize)],
        prop_oneof![1 => 500u64..=5_000, 3 => Just(1u64 << 30)],
        prop_oneof![3 => Just(0u32), 1 => 1u32..=2],
        (
            prop_oneof![3 => Just(None), 1 => (1u64..=3).prop_map(Some)],
            prop_oneof![3 => Just(0usize), 1 => 1usize..=3],
            prop_oneof![3 => Just(None), 1 => (1usize..=4).prop_map(Some)],
        ),
    )
        .prop_map(
            |(
                batch_size,
                cpus,
                gpus,
                pool,
                slots,
                per_call,
                retries,
                max_tasks,
                max_bytes,
                user_retries,
                (max_batches_per_actor, min, initial),
            )| {
                // Pool bounds that validate: min <= initial <= max.
                let max = match pool {
                    PoolSize::Auto { max } => max,
                    PoolSize::Fixed(_) => Some(0),
                };
                let min_pool_size = max.map_or(min, |m| min.min(m));
                let initial_pool_size = initial
                    .map(|n| n.max(min_pool_size).max(1))
                    .filter(|&n| max.is_none_or(|m| n <= m));
                StageSpec {
                    max_batches_per_actor,
                    min_pool_size,
                    initial_pool_size,
                    max_user_retries: user_retries,
                    batch_size,
                    resources: Resources { cpus, gpus },
                    pool,
                    slots_per_actor: slots,
                    max_batches_per_call: per_call,
                    max_retries: retries,
                    queue_max_tasks: max_tasks,
                    queue_max_bytes: max_bytes,
                    ..StageSpec::new("s")
                }
            },
        )
}

fn nodes() -> impl Strategy<Value = Vec<NodeSpec>> {
    prop::collection::vec((1u32..=8, 0u32..=2), 1..=3).prop_map(|caps| {
        caps.into_iter()
            .enumerate()
            .map(|(i, (c, g))| NodeSpec::new(format!("node{i}"), c as f64, g as f64))
            .collect()
    })
}

fn config() -> impl Strategy<Value = SchedulerConfig> {
    (
        any::<bool>(),
        prop_oneof![2 => Just(None), 1 => (0.05f64..2.0).prop_map(Some)],
        prop_oneof![Just(0.0), Just(0.0005), Just(0.01)],
        prop_oneof![Just(0.0), Just(0.1), Just(1.0)],
        prop_oneof![Just(0.0), Just(0.001), Just(1.0)],
        prop_oneof![3 => Just(false), 1 => Just(true)],
        prop_oneof![3 => Just(0.0), 1 => Just(0.3)],
    )
        .prop_map(
            |(
                ignore_failures,
                batch_timeout_secs,
                call_overhead_secs,
                rebalance_interval_secs,
                actor_start_secs,
                stage_by_stage,
                growth_interval_secs,
            )| {
                SchedulerConfig {
                    ignore_failures,
                    batch_timeout_secs,
                    call_overhead_secs,
                    rebalance_interval_secs,
                    actor_start_secs,
                    stage_by_stage,
                    growth_interval_secs,
                }
            },
        )
}

/// Node 0 is made big enough for every stage, so the pipeline is feasible.
fn make_feasible(stages: &mut [StageSpec], nodes: &mut [NodeSpec]) {
    for (i, s) in stages.iter_mut().enumerate() {
        s.name = format!("stage{i}");
    }
    let cpus = stages.iter().map(|s| s.resources.cpus).fold(0.0, f64::max);
    let gpus = stages.iter().map(|s| s.resources.gpus).fold(0.0, f64::max);
    nodes[0].cpus = nodes[0].cpus.max(cpus);
    nodes[0].gpus = nodes[0].gpus.max(gpus);
}

#[derive(Debug, Clone)]
struct Case {
    stages: Vec<StageSpec>,
    nodes: Vec<NodeSpec>,
    config: SchedulerConfig,
    params: SimParams,
}

fn case(failures: bool) -> impl Strategy<Value = Case> {
    (1usize..=6)
        .prop_flat_map(move |n| {
            (
                prop::collection::vec(stage(), n),
                nodes(),
                config(),
                prop::collection::vec(fanout(), n),
                any::<u64>(),
                0usize..=300,
                1usize..=5,
                if failures {
                    prop_oneof![Just(0.0), Just(0.05), Just(0.2)].boxed()
                } else {
                    Just(0.0).boxed()
                },
                if failures {
                    prop_oneof![3 => Just(0.0), 1 => Just(0.01)].boxed()
                } else {
                    Just(0.0).boxed()
                },
                if failures {
                    prop_oneof![Just(0.0), Just(0.01), Just(0.05)].boxed()
                } else {
                    Just(0.0).boxed()
                },
                if failures {
                    prop_oneof![4 => Just(0.0), 1 => Just(0.02)].boxed()
                } else {
                    Just(0.0).boxed()
                },
            )
        })
        .prop_map(
            |(
                mut stages,
                mut nodes,
                config,
                fanouts,
                seed,
                n_tasks,
                chunks,
                p_infra,
                p_user,
                p_death,
                p_setup,
            )| {
                make_feasible(&mut stages, &mut nodes);
                let params = SimParams {
                    seed,
                    n_tasks,
                    chunks,
                    fanouts,
                    p_infra_fail: p_infra,
                    p_user_fail: p_user,
                    p_death,
                    max_deaths: if p_death > 0.0 { 12 } else { 0 },
                    p_setup_fail: p_setup,
                    strict_queue_bound: false,
                    task_cap: 3_000,
                    max_steps: 400_000,
                    p_stale: 0.05,
                    multi_event_rounds: true,
                };
                Case {
                    stages,
                    nodes,
                    config,
                    params,
                }
            },
        )
}

fn run(c: Case) -> (Outcome, common::Stats) {
    let (outcome, stats, _) = Sim::new(c.stages, c.nodes, c.config, c.params).run();
    (outcome, stats)
}

proptest! {
    #![proptest_config(ProptestConfig { max_shrink_iters: 2_000, ..fixed_seed::config(256) })]

    /// Any pipeline, cluster and failure pattern: every rule holds after every poll, the run ends with
    /// exactly one Finish or Abort, and Finish comes only with every task accounted for.
    #[test]
    fn random_pipelines_keep_every_rule(c in case(true)) {
        let ignore = c.config.ignore_failures;
        let failures = c.params.p_user_fail > 0.0 || c.params.p_infra_fail > 0.0
            || c.params.p_death > 0.0 || c.params.p_setup_fail > 0.0;
        let (outcome, _) = run(c);
        if !failures {
            prop_assert_eq!(outcome, Outcome::Finished);
        } else if let Outcome::Aborted { failure: Some(_), .. } = outcome {
            prop_assert!(!ignore);
        }
    }

    /// Without failures every pipeline finishes, also when the cluster holds fewer actors than there
    /// are stages (rebalancing moves actors to starved stages).
    #[test]
    fn pipelines_finish_on_scarce_clusters(
        mut c in case(false),
        cpus in 1u32..=2,
    ) {
        c.nodes = vec![NodeSpec::new("only", cpus as f64, 1.0)];
        for s in &mut c.stages {
            s.resources.cpus = s.resources.cpus.min(cpus as f64);
        }
        let (outcome, _) = run(c);
        prop_assert_eq!(outcome, Outcome::Finished);
    }

    /// With a constant fan-out of 0 or 1 per stage, a queue exceeds its bound by at most one call's
    /// outputs, counting the outputs still to come from the batches in flight.
    #[test]
    fn queues_overshoot_by_at_most_one_call(
        mut c in case(false),
        ones in prop::collection::vec(prop_oneof![4 => Just(1u32), 1 => Just(0u32)], 6),
    ) {
        for (i, f) in c.params.fanouts.iter_mut().enumerate() {
            *f = Fanout::Const(ones[i]);
        }
        c.params.strict_queue_bound = true;
        c.config.stage_by_stage = false; // stage by stage, queues are unbounded on purpose
        let (outcome, _) = run(c);
        prop_assert_eq!(outcome, Outcome::Finished);
    }
}
