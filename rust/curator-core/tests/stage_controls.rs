//! Per-stage worker controls: a batch budget per actor (`max_batches_per_actor`), and an automatic
//! pool's floor and start size (`min_pool_size`, `initial_pool_size`).

use std::collections::HashMap;

use curator_core::{
    ActorId, Batch, Command, CoreError, Event, NodeSpec, PoolSize, Scheduler, SchedulerConfig,
    StageSpec, TaskMeta,
};

fn metas(n: usize) -> Vec<TaskMeta> {
    vec![
        TaskMeta {
            bytes: 10,
            items: 1
        };
        n
    ]
}

fn creates(cmds: &[Command]) -> Vec<ActorId> {
    cmds.iter()
        .filter_map(|c| match c {
            Command::CreateActor { actor, .. } => Some(*actor),
            _ => None,
        })
        .collect()
}

fn submits(cmds: &[Command]) -> Vec<(ActorId, Vec<Batch>)> {
    cmds.iter()
        .filter_map(|c| match c {
            Command::Submit { actor, batches } => Some((*actor, batches.clone())),
            _ => None,
        })
        .collect()
}

fn kills(cmds: &[Command]) -> Vec<ActorId> {
    cmds.iter()
        .filter_map(|c| match c {
            Command::KillActor { actor } => Some(*actor),
            _ => None,
        })
        .collect()
}

/// Runs a one-stage pipeline over `n` tasks with workers that answer at once (each batch taking
/// `busy` seconds); returns the batches each actor got and the actors killed.
fn drive(spec: StageSpec, cpus: f64, n: usize, busy: f64) -> (HashMap<ActorId, u64>, Vec<ActorId>) {
    let mut s = Scheduler::new(
        vec![spec],
        vec![NodeSpec::new("n", cpus, 0.0)],
        SchedulerConfig::default(),
    )
    .unwrap();
    s.add_tasks(&metas(n)).unwrap();
    s.close_input();
    let mut given: HashMap<ActorId, u64> = HashMap::new();
    let mut killed = Vec::new();
    for _ in 0..10_000 {
        let cmds = s.poll();
        killed.extend(kills(&cmds));
        if cmds.iter().any(|c| matches!(c, Command::Finish)) {
            return (given, killed);
        }
        for a in creates(&cmds) {
            s.handle(Event::ActorReady { actor: a }).unwrap();
        }
        for (actor, batches) in submits(&cmds) {
            *given.entry(actor).or_default() += batches.len() as u64;
            for b in batches {
                s.batch_done(b.id, &metas(b.tasks.len()), busy).unwrap();
            }
        }
    }
    panic!("the run did not finish");
}

#[test]
fn an_actor_takes_at_most_its_batch_budget_then_is_replaced() {
    let spec = StageSpec {
        max_batches_per_actor: Some(2),
        pool: PoolSize::Fixed(1),
        ..StageSpec::new("leaky")
    };
    // Tiny batches would be packed many to a call: the budget caps the packing too.
    let (given, mut killed) = drive(spec, 1.0, 9, 0.000_1);
    assert_eq!(given.values().sum::<u64>(), 9);
    assert!(given.values().all(|&n| n <= 2), "{given:?}");
    assert_eq!(given.len(), 5, "ceil(9 / 2) actors: {given:?}");
    let mut every: Vec<ActorId> = given.keys().copied().collect();
    every.sort_unstable();
    killed.sort_unstable();
    killed.dedup();
    assert_eq!(
        killed, every,
        "each actor is killed once (spent, or at the end)"
    );
}

#[test]
fn without_a_budget_one_actor_takes_everything() {
    let spec = StageSpec {
        pool: PoolSize::Fixed(1),
        ..StageSpec::new("a")
    };
    let (given, _) = drive(spec, 1.0, 9, 0.000_1);
    assert_eq!(given.len(), 1);
}

#[test]
fn a_pool_starts_at_its_initial_size() {
    let spec = StageSpec {
        initial_pool_size: Some(3),
        ..StageSpec::new("a")
    };
    let mut s = Scheduler::new(
        vec![spec],
        vec![NodeSpec::new("n", 8.0, 0.0)],
        SchedulerConfig::default(),
    )
    .unwrap();
    assert_eq!(
        creates(&s.poll()).len(),
        3,
        "an automatic CPU pool would start with one"
    );
}

#[test]
fn a_pool_keeps_its_minimum_while_tiny_batches_need_one_actor() {
    let spec = StageSpec {
        min_pool_size: 2,
        ..StageSpec::new("a")
    };
    let mut s = Scheduler::new(
        vec![spec],
        vec![NodeSpec::new("n", 8.0, 0.0)],
        SchedulerConfig::default(),
    )
    .unwrap();
    let made = creates(&s.poll());
    assert_eq!(made.len(), 2);
    for a in &made {
        s.handle(Event::ActorReady { actor: *a }).unwrap();
    }
    s.add_tasks(&metas(100)).unwrap();
    let first = submits(&s.poll());
    s.batch_done(first[0].1[0].id, &metas(1), 0.000_1).unwrap();
    s.handle(Event::Tick { now: 5.0 }).unwrap();
    let cmds = s.poll();
    assert!(
        creates(&cmds).is_empty() && kills(&cmds).is_empty(),
        "{cmds:?}"
    );
}

#[test]
fn bad_bounds_are_errors_naming_the_stage() {
    let node = || vec![NodeSpec::new("n", 4.0, 0.0)];
    let bad = [
        StageSpec {
            max_batches_per_actor: Some(0),
            ..StageSpec::new("s")
        },
        StageSpec {
            min_pool_size: 3,
            pool: PoolSize::Auto { max: Some(2) },
            ..StageSpec::new("s")
        },
        StageSpec {
            min_pool_size: 2,
            initial_pool_size: Some(1),
            ..StageSpec::new("s")
        },
        StageSpec {
            initial_pool_size: Some(3),
            pool: PoolSize::Auto { max: Some(2) },
            ..StageSpec::new("s")
        },
    ];
    for spec in bad {
        let err =
            Scheduler::new(vec![spec.clone()], node(), SchedulerConfig::default()).unwrap_err();
        assert!(
            matches!(err, CoreError::Config(ref m) if m.contains("stage 's'")),
            "{spec:?}: {err}"
        );
    }
}
