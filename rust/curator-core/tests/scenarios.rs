//! Example-based tests of the scheduler's rules, driven by hand through the public API.

mod common;

use common::{Fanout, Outcome, Sim, SimParams};
use curator_core::{
    ActorId, Batch, Command, CoreError, Event, FailureKind, NodeSpec, PoolSize, Resources,
    Scheduler, SchedulerConfig, StageSpec, TaskMeta,
};

fn stage(name: &str, batch_size: usize) -> StageSpec {
    StageSpec {
        batch_size,
        ..StageSpec::new(name)
    }
}

fn cpus(n: f64) -> Vec<NodeSpec> {
    vec![NodeSpec::new("node0", n, 0.0)]
}

fn metas(n: usize) -> Vec<TaskMeta> {
    vec![
        TaskMeta {
            bytes: 100,
            items: 1
        };
        n
    ]
}

fn creates(cmds: &[Command]) -> Vec<(ActorId, usize, usize)> {
    cmds.iter()
        .filter_map(|c| match c {
            Command::CreateActor { actor, stage, node } => Some((*actor, *stage, *node)),
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

fn ready(s: &mut Scheduler, actors: impl IntoIterator<Item = ActorId>) {
    for actor in actors {
        s.handle(Event::ActorReady { actor }).unwrap();
    }
}

fn config_err(stages: Vec<StageSpec>, nodes: Vec<NodeSpec>, config: SchedulerConfig) -> CoreError {
    Scheduler::new(stages, nodes, config).unwrap_err()
}

#[test]
fn invalid_specs_are_config_errors_naming_the_stage() {
    let c = SchedulerConfig::default();
    assert!(matches!(
        config_err(vec![], cpus(1.0), c.clone()),
        CoreError::Config(_)
    ));
    let cases: Vec<(StageSpec, &str)> = vec![
        (stage("tok", 0), "batch_size"),
        (
            StageSpec {
                slots_per_actor: 0,
                ..stage("tok", 1)
            },
            "slots_per_actor",
        ),
        (
            StageSpec {
                max_batches_per_call: 0,
                ..stage("tok", 1)
            },
            "max_batches_per_call",
        ),
        (
            StageSpec {
                queue_max_tasks: 0,
                ..stage("tok", 1)
            },
            "queue_max_tasks",
        ),
        (
            StageSpec {
                queue_max_bytes: 0,
                ..stage("tok", 1)
            },
            "queue_max_bytes",
        ),
        (
            StageSpec {
                resources: Resources {
                    cpus: -1.0,
                    gpus: 0.0,
                },
                ..stage("tok", 1)
            },
            "cpus",
        ),
        (
            StageSpec {
                resources: Resources {
                    cpus: 1.0,
                    gpus: f64::NAN,
                },
                ..stage("tok", 1)
            },
            "gpus",
        ),
        (
            StageSpec {
                resources: Resources {
                    cpus: 1.0,
                    gpus: 1.5,
                },
                ..stage("tok", 1)
            },
            "whole number",
        ),
        (
            StageSpec {
                pool: PoolSize::Fixed(0),
                ..stage("tok", 1)
            },
            "pool size",
        ),
        (
            StageSpec {
                pool: PoolSize::Auto { max: Some(0) },
                ..stage("tok", 1)
            },
            "max pool size",
        ),
    ];
    for (spec, what) in cases {
        let err = config_err(vec![stage("read", 1), spec], cpus(4.0), c.clone());
        let CoreError::Config(msg) = &err else {
            panic!("{what}: expected a config error, got {err:?}")
        };
        assert!(msg.contains("stage 'tok'") && msg.contains(what), "{msg}");
    }
    let bad_node = vec![NodeSpec::new("n", -2.0, 0.0)];
    assert!(
        matches!(config_err(vec![stage("a", 1)], bad_node, c.clone()), CoreError::Config(m) if m.contains("node 'n'"))
    );
    let bad = SchedulerConfig {
        call_overhead_secs: -1.0,
        ..c.clone()
    };
    assert!(
        matches!(config_err(vec![stage("a", 1)], cpus(1.0), bad), CoreError::Config(m) if m.contains("call_overhead"))
    );
    let bad = SchedulerConfig {
        batch_timeout_secs: Some(f64::INFINITY),
        ..c
    };
    assert!(matches!(
        config_err(vec![stage("a", 1)], cpus(1.0), bad),
        CoreError::Config(_)
    ));
}

#[test]
fn stages_that_fit_nowhere_are_infeasible() {
    let c = SchedulerConfig::default();
    let err = config_err(vec![stage("a", 1)], vec![], c.clone());
    assert!(
        matches!(&err, CoreError::Infeasible { stage, have, .. } if stage == "a" && have == "no nodes"),
        "{err}"
    );
    let gpu = StageSpec {
        resources: Resources {
            cpus: 1.0,
            gpus: 1.0,
        },
        ..stage("embed", 1)
    };
    let err = config_err(
        vec![stage("a", 1), gpu],
        vec![NodeSpec::new("n", 64.0, 0.0)],
        c.clone(),
    );
    assert!(
        matches!(&err, CoreError::Infeasible { stage, .. } if stage == "embed"),
        "{err}"
    );
    // CPUs on one node and GPUs on another do not add up.
    let both = StageSpec {
        resources: Resources {
            cpus: 8.0,
            gpus: 1.0,
        },
        ..stage("embed", 1)
    };
    let nodes = vec![
        NodeSpec::new("cpu", 64.0, 0.0),
        NodeSpec::new("gpu", 4.0, 8.0),
    ];
    assert!(matches!(
        config_err(vec![both], nodes, c),
        CoreError::Infeasible { .. }
    ));
}

#[test]
fn batches_are_full_until_the_input_is_closed() {
    let mut s = Scheduler::new(vec![stage("a", 4)], cpus(1.0), SchedulerConfig::default()).unwrap();
    let cmds = s.poll();
    assert_eq!(creates(&cmds), vec![(0, 0, 0)]);
    ready(&mut s, [0]);
    s.add_tasks(&metas(10)).unwrap();
    let calls = submits(&s.poll());
    // 2 slots, one batch per call until a batch time is measured.
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0].1[0].tasks, vec![0, 1, 2, 3]);
    assert_eq!(calls[1].1[0].tasks, vec![4, 5, 6, 7]);
    s.batch_done(calls[0].1[0].id, &metas(4), 0.5).unwrap();
    assert!(
        submits(&s.poll()).is_empty(),
        "2 queued tasks are not a full batch"
    );
    s.close_input();
    let calls = submits(&s.poll());
    assert_eq!(calls.len(), 1);
    assert_eq!(
        calls[0].1[0].tasks,
        vec![8, 9],
        "the remainder goes once the input is closed"
    );
}

#[test]
fn a_batch_timeout_releases_partial_batches() {
    let config = SchedulerConfig {
        batch_timeout_secs: Some(2.0),
        ..SchedulerConfig::default()
    };
    let mut s = Scheduler::new(vec![stage("a", 8)], cpus(1.0), config).unwrap();
    s.handle(Event::Tick { now: 100.0 }).unwrap();
    let cmds = s.poll();
    ready(&mut s, creates(&cmds).into_iter().map(|c| c.0));
    s.add_tasks(&metas(3)).unwrap();
    s.handle(Event::Tick { now: 101.0 }).unwrap();
    assert!(submits(&s.poll()).is_empty());
    s.handle(Event::Tick { now: 102.5 }).unwrap();
    let calls = submits(&s.poll());
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].1[0].tasks.len(), 3);
}

#[test]
fn inputs_added_before_the_first_tick_wait_from_that_tick() {
    let config = SchedulerConfig {
        batch_timeout_secs: Some(2.0),
        ..SchedulerConfig::default()
    };
    let mut s = Scheduler::new(vec![stage("a", 8)], cpus(1.0), config).unwrap();
    let made = creates(&s.poll());
    ready(&mut s, made.into_iter().map(|c| c.0));
    s.add_tasks(&metas(3)).unwrap();
    s.handle(Event::Tick { now: 5000.0 }).unwrap();
    assert!(
        submits(&s.poll()).is_empty(),
        "the clock starts at the first tick, not at 0"
    );
    s.handle(Event::Tick { now: 5002.0 }).unwrap();
    assert_eq!(submits(&s.poll()).len(), 1);
}

#[test]
fn calls_pack_batches_once_a_batch_time_is_measured() {
    let spec = StageSpec {
        slots_per_actor: 1,
        max_batches_per_call: 16,
        ..stage("a", 1)
    };
    let config = SchedulerConfig {
        call_overhead_secs: 0.001,
        ..SchedulerConfig::default()
    };
    let mut s = Scheduler::new(vec![spec], cpus(1.0), config).unwrap();
    let made = creates(&s.poll());
    ready(&mut s, made.into_iter().map(|c| c.0));
    s.add_tasks(&metas(100)).unwrap();
    let calls = submits(&s.poll());
    assert_eq!(calls.len(), 1);
    assert_eq!(
        calls[0].1.len(),
        1,
        "one batch per call before any measurement"
    );
    // 4 ms per batch and 20 ms wanted per call: 5 batches.
    s.batch_done(calls[0].1[0].id, &metas(1), 0.004).unwrap();
    let calls = submits(&s.poll());
    assert_eq!(calls[0].1.len(), 5);
    for b in &calls[0].1 {
        s.batch_done(b.id, &metas(1), 0.0).unwrap();
    }
    // Now the mean is small: as many as allowed.
    let calls = submits(&s.poll());
    assert_eq!(calls[0].1.len(), 16);
}

#[test]
fn packing_spreads_work_over_every_free_slot() {
    let spec = StageSpec {
        slots_per_actor: 2,
        max_batches_per_call: 64,
        ..stage("a", 1)
    };
    let mut s = Scheduler::new(vec![spec], cpus(4.0), whole_pools()).unwrap();
    let actors: Vec<ActorId> = creates(&s.poll()).into_iter().map(|c| c.0).collect();
    assert_eq!(actors.len(), 4, "an automatic pool fills the node");
    ready(&mut s, [actors[0]]);
    s.add_tasks(&metas(1)).unwrap();
    let first = submits(&s.poll());
    s.batch_done(first[0].1[0].id, &metas(1), 0.0).unwrap();
    ready(&mut s, actors[1..].iter().copied());
    s.add_tasks(&metas(20)).unwrap();
    let calls = submits(&s.poll());
    // 8 free slots and 20 batches: at most ceil(20 / 8) = 3 per call, and all 4 actors busy.
    assert!(calls.iter().all(|(_, b)| b.len() <= 3));
    assert_eq!(calls.iter().map(|(_, b)| b.len()).sum::<usize>(), 20);
    let mut used: Vec<ActorId> = calls.iter().map(|c| c.0).collect();
    used.dedup();
    used.sort_unstable();
    used.dedup();
    assert_eq!(used.len(), 4);
    // First calls go to idle actors: the first four calls hit four different actors.
    let mut first_four: Vec<ActorId> = calls[..4].iter().map(|c| c.0).collect();
    first_four.sort_unstable();
    assert_eq!(first_four, actors);
}

#[test]
fn the_last_batches_are_spread_over_every_slot_not_packed_into_the_free_ones() {
    let spec = StageSpec {
        slots_per_actor: 2,
        max_batches_per_call: 64,
        ..stage("a", 1)
    };
    let mut s = Scheduler::new(vec![spec], cpus(2.0), whole_pools()).unwrap();
    let actors: Vec<ActorId> = creates(&s.poll()).into_iter().map(|c| c.0).collect();
    assert_eq!(actors.len(), 2);
    ready(&mut s, [actors[0]]);
    // Measure a tiny batch time (calls would carry up to 64 batches), then fill actor 0's slots.
    s.add_tasks(&metas(1)).unwrap();
    let first = submits(&s.poll());
    s.batch_done(first[0].1[0].id, &metas(1), 0.0).unwrap();
    s.add_tasks(&metas(2)).unwrap();
    let busy = submits(&s.poll());
    assert_eq!((busy.len(), busy[0].0), (2, actors[0]));
    // Actor 1 comes up with 8 batches left and the input closed: 2 free slots, 4 slots in all.
    ready(&mut s, [actors[1]]);
    s.add_tasks(&metas(8)).unwrap();
    s.close_input();
    let calls = submits(&s.poll());
    assert!(calls.iter().all(|c| c.0 == actors[1]));
    assert_eq!(
        calls.iter().map(|(_, b)| b.len()).collect::<Vec<_>>(),
        vec![2, 2],
        "ceil(8 / 4 slots) per call: half the rest waits for actor 0"
    );
}

#[test]
fn a_full_next_queue_holds_upstream_back() {
    let down = StageSpec {
        queue_max_tasks: 3,
        ..stage("b", 1)
    };
    let up = StageSpec {
        slots_per_actor: 8,
        ..stage("a", 1)
    };
    let mut s = Scheduler::new(vec![up, down], cpus(2.0), SchedulerConfig::default()).unwrap();
    let cmds = s.poll();
    let made = creates(&cmds);
    let a = made.iter().find(|c| c.1 == 0).unwrap().0;
    ready(&mut s, [a]); // b's actor stays pending: nothing drains its queue
    s.add_tasks(&metas(20)).unwrap();
    let calls = submits(&s.poll());
    assert_eq!(
        calls.len(),
        3,
        "3 tasks in flight fill the projected queue of 3"
    );
    for (_, batches) in &calls {
        s.batch_done(batches[0].id, &metas(1), 0.01).unwrap();
    }
    assert!(
        submits(&s.poll()).is_empty(),
        "b's queue holds 3 = queue_max_tasks"
    );
    assert!(s.metrics().stages[0].backpressured);
    assert_eq!(s.metrics().stages[1].queued_tasks, 3);
    let b = made.iter().find(|c| c.1 == 1).unwrap().0;
    ready(&mut s, [b]);
    let calls = submits(&s.poll());
    // b (downstream, dispatched first) takes 2 tasks into its 2 slots; a may refill 2.
    assert_eq!(calls.iter().filter(|c| c.0 == b).count(), 2);
    assert_eq!(calls.iter().filter(|c| c.0 == a).count(), 2);
    assert_eq!(calls[0].0, b, "downstream stages are dispatched first");
}

fn one_stage_with_retries(max_retries: u32, ignore_failures: bool) -> (Scheduler, ActorId, Batch) {
    let spec = StageSpec {
        max_retries,
        slots_per_actor: 1,
        ..stage("embed", 2)
    };
    let config = SchedulerConfig {
        ignore_failures,
        ..SchedulerConfig::default()
    };
    let mut s = Scheduler::new(vec![spec], cpus(1.0), config).unwrap();
    let actor = creates(&s.poll())[0].0;
    ready(&mut s, [actor]);
    s.add_tasks(&metas(4)).unwrap();
    s.close_input();
    let calls = submits(&s.poll());
    (s, actor, calls[0].1[0].clone())
}

#[test]
fn infra_failures_retry_the_same_batch_first_then_fail_it() {
    let (mut s, actor, batch) = one_stage_with_retries(1, true);
    let infra = |b: u64, attempt: u32| Event::BatchFailed {
        batch: b,
        attempt,
        kind: FailureKind::Infra,
        message: "node lost".into(),
    };
    s.handle(infra(batch.id, 0)).unwrap();
    let calls = submits(&s.poll());
    assert_eq!(calls.len(), 1);
    let again = &calls[0].1[0];
    assert_eq!(
        (again.id, &again.tasks, again.attempt),
        (batch.id, &batch.tasks, 1),
        "same batch, at the front"
    );
    s.handle(infra(batch.id, 1)).unwrap();
    let cmds = s.poll();
    let failure = cmds.iter().find_map(|c| match c {
        Command::RecordFailure(f) => Some(f.clone()),
        _ => None,
    });
    let failure = failure.expect("a failure record");
    assert_eq!(
        (failure.batch, failure.attempts, failure.kind),
        (batch.id, 2, FailureKind::Infra)
    );
    assert_eq!(
        failure.roots, batch.tasks,
        "initial tasks are their own roots"
    );
    assert!(cmds.contains(&Command::Drop {
        tasks: batch.tasks.clone()
    }));
    assert_eq!(submits(&cmds)[0].1[0].tasks, vec![2, 3], "the run goes on");
    assert_eq!(s.metrics().stages[0].retries, 1);
    let _ = actor;
}

#[test]
fn a_timed_out_call_that_returns_later_is_ignored() {
    // The driver gives up a call after `call_timeout_s` (its actor is killed and reported failed);
    // the batch goes out again as attempt 1. The old call's result still arrives: it is stale.
    let (mut s, actor, batch) = one_stage_with_retries(3, false);
    s.handle(Event::ActorFailed {
        actor,
        kind: FailureKind::Infra,
        message: "call timed out".into(),
    })
    .unwrap();
    let cmds = s.poll();
    let fresh = creates(&cmds)[0].0;
    ready(&mut s, [fresh]);
    let again = submits(&s.poll())[0].1[0].clone();
    assert_eq!((again.id, again.attempt), (batch.id, 1));
    let late = TaskMeta { bytes: 7, items: 1 };
    assert_eq!(
        s.batch_result(batch.id, 0, 1, late, 9.0),
        Ok(None),
        "attempt 0 was given up"
    );
    assert_eq!(s.stale_results(), 1);
    let ids = s.batch_result(again.id, 1, 1, late, 0.1).unwrap().unwrap();
    assert_eq!(ids.clone().count(), 1);
    // The retry's result reported twice, and the old attempt's failure: both ignored.
    assert_eq!(s.batch_result(again.id, 1, 1, late, 0.1), Ok(None));
    s.handle(Event::BatchFailed {
        batch: batch.id,
        attempt: 0,
        kind: FailureKind::User,
        message: "late".into(),
    })
    .unwrap();
    assert_eq!(s.stale_results(), 3);
    let emitted: Vec<u64> = s
        .poll()
        .into_iter()
        .filter_map(|c| match c {
            Command::Emit { tasks } => Some(tasks),
            _ => None,
        })
        .flatten()
        .collect();
    assert_eq!(emitted, ids.collect::<Vec<_>>(), "one output, once");
    let b = s.balance();
    assert!(b.balanced() && b.emitted == 1 && b.failed == 0, "{b:?}");
}

#[test]
fn reports_after_an_abort_are_ignored_and_unknown_ones_rejected() {
    let (mut s, _actor, batch) = one_stage_with_retries(0, false);
    s.handle(Event::BatchFailed {
        batch: batch.id,
        attempt: 0,
        kind: FailureKind::User,
        message: "ValueError".into(),
    })
    .unwrap();
    assert!(s.is_aborted());
    let before = s.balance();
    let meta = TaskMeta::default();
    assert_eq!(s.batch_result(batch.id, 0, 2, meta, 0.1), Ok(None));
    assert_eq!(s.batch_done(batch.id, &metas(2), 0.1), Ok(vec![]));
    s.handle(Event::ActorFailed {
        actor: 0,
        kind: FailureKind::User,
        message: "setup".into(),
    })
    .unwrap();
    assert!(matches!(
        s.batch_result(1 << 40, 0, 1, meta, 0.1),
        Err(CoreError::Protocol(_))
    ));
    assert!(matches!(
        s.handle(Event::ActorReady { actor: 77 }),
        Err(CoreError::Protocol(_))
    ));
    assert_eq!(s.balance(), before);
    let cmds = s.poll();
    assert!(
        matches!(cmds.last(), Some(Command::Abort { .. })),
        "{cmds:?}"
    );
    assert!(s.poll().is_empty());
}

#[test]
fn exhausted_retries_abort_without_ignore_failures() {
    let (mut s, actor, batch) = one_stage_with_retries(0, false);
    s.handle(Event::BatchFailed {
        batch: batch.id,
        attempt: 0,
        kind: FailureKind::Infra,
        message: "oom".into(),
    })
    .unwrap();
    let cmds = s.poll();
    assert_eq!(kills(&cmds), vec![actor]);
    let Some(Command::Abort {
        reason,
        failure: Some(f),
    }) = cmds.last()
    else {
        panic!("{cmds:?}")
    };
    assert!(
        reason.contains("embed") && reason.contains("oom"),
        "{reason}"
    );
    assert_eq!((f.batch, &f.tasks, f.attempts), (batch.id, &batch.tasks, 1));
    assert!(submits(&cmds).is_empty());
    assert!(s.is_finished() && s.is_aborted());
    assert!(s.balance().balanced());
}

#[test]
fn user_errors_are_recorded_with_ignore_failures_and_the_run_finishes() {
    let (mut s, actor, batch) = one_stage_with_retries(3, true);
    s.handle(Event::BatchFailed {
        batch: batch.id,
        attempt: 0,
        kind: FailureKind::User,
        message: "KeyError".into(),
    })
    .unwrap();
    let cmds = s.poll();
    assert!(
        matches!(&cmds[..], [Command::RecordFailure(f), Command::Submit { .. }, Command::Drop { .. }]
        if f.kind == FailureKind::User && f.attempts == 1),
        "{cmds:?}"
    );
    let next = submits(&cmds)[0].1[0].clone();
    let out = s.batch_done(next.id, &metas(1), 0.1).unwrap();
    let cmds = s.poll();
    assert_eq!(cmds[0], Command::KillActor { actor });
    assert_eq!(cmds[1], Command::Emit { tasks: out });
    assert_eq!(cmds.last(), Some(&Command::Finish));
    let b = s.balance();
    assert!(b.complete(), "{b:?}");
    assert_eq!((b.initial, b.failed, b.consumed, b.emitted), (4, 2, 2, 1));
}

#[test]
fn user_errors_abort_without_ignore_failures() {
    let (mut s, actor, batch) = one_stage_with_retries(3, false);
    s.handle(Event::BatchFailed {
        batch: batch.id,
        attempt: 0,
        kind: FailureKind::User,
        message: "KeyError: 'text'".into(),
    })
    .unwrap();
    let cmds = s.poll();
    assert_eq!(cmds[0], Command::KillActor { actor });
    let Some(Command::Abort {
        reason,
        failure: Some(f),
    }) = cmds.last()
    else {
        panic!("{cmds:?}")
    };
    assert!(
        reason.contains("stage 'embed' raised") && reason.contains("KeyError"),
        "{reason}"
    );
    assert_eq!(f.kind, FailureKind::User);
    // Late events are accepted and change nothing.
    s.handle(Event::Tick { now: 10.0 }).unwrap();
    s.handle(Event::ActorFailed {
        actor,
        kind: FailureKind::Infra,
        message: "gone".into(),
    })
    .unwrap();
    assert!(s.poll().is_empty());
}

#[test]
fn a_failed_setup_is_retried_on_a_fresh_actor_up_to_max_retries() {
    let embed = StageSpec {
        max_retries: 2,
        ..stage("embed", 1)
    };
    let mut s = Scheduler::new(vec![embed], cpus(1.0), SchedulerConfig::default()).unwrap();
    let mut actor = creates(&s.poll())[0].0;
    for n in 1..=2 {
        s.handle(Event::ActorFailed {
            actor,
            kind: FailureKind::User,
            message: "ConnectionError".into(),
        })
        .unwrap();
        let cmds = s.poll();
        let made = creates(&cmds);
        assert_eq!(made.len(), 1, "setup failure {n}: a fresh actor: {cmds:?}");
        actor = made[0].0;
    }
    s.handle(Event::ActorFailed {
        actor,
        kind: FailureKind::User,
        message: "ConnectionError".into(),
    })
    .unwrap();
    let cmds = s.poll();
    assert!(
        matches!(cmds.last(), Some(Command::Abort { reason, .. }) if reason.contains("3 actors")),
        "{cmds:?}"
    );
}

#[test]
fn a_failed_setup_aborts_naming_the_stage() {
    let mut s = Scheduler::new(
        vec![
            stage("read", 1),
            StageSpec {
                max_retries: 0,
                ..stage("embed", 1)
            },
        ],
        cpus(2.0),
        SchedulerConfig::default(),
    )
    .unwrap();
    let made = creates(&s.poll());
    let embed = made.iter().find(|c| c.1 == 1).unwrap().0;
    s.handle(Event::ActorFailed {
        actor: embed,
        kind: FailureKind::User,
        message: "CUDA error".into(),
    })
    .unwrap();
    let cmds = s.poll();
    let mut killed = kills(&cmds);
    killed.sort_unstable();
    let mut others: Vec<ActorId> = made.iter().map(|c| c.0).filter(|&a| a != embed).collect();
    others.sort_unstable();
    assert_eq!(
        killed, others,
        "every live actor killed once; the dead one not"
    );
    let Some(Command::Abort {
        reason,
        failure: None,
    }) = cmds.last()
    else {
        panic!("{cmds:?}")
    };
    assert!(
        reason.contains("stage 'embed'")
            && reason.contains("setup")
            && reason.contains("CUDA error")
    );
}

#[test]
fn dead_actors_are_replaced_and_their_batches_retried() {
    let spec = StageSpec {
        slots_per_actor: 2,
        pool: PoolSize::Fixed(1),
        ..stage("a", 1)
    };
    let mut s = Scheduler::new(vec![spec], cpus(1.0), SchedulerConfig::default()).unwrap();
    let actor = creates(&s.poll())[0].0;
    ready(&mut s, [actor]);
    s.add_tasks(&metas(5)).unwrap();
    let calls = submits(&s.poll());
    assert_eq!(calls.len(), 2);
    s.handle(Event::ActorFailed {
        actor,
        kind: FailureKind::Infra,
        message: "killed".into(),
    })
    .unwrap();
    let cmds = s.poll();
    let made = creates(&cmds);
    assert_eq!(made.len(), 1, "one replacement: {cmds:?}");
    assert!(kills(&cmds).is_empty(), "a dead actor is not killed again");
    let replacement = made[0].0;
    ready(&mut s, [replacement]);
    // Each lost batch is retried alone (its call only, on an actor with nothing else in flight), oldest
    // first and before new batches, so a batch that kills actors cannot take its neighbours down.
    for lost in [0, 1] {
        let calls = submits(&s.poll());
        assert_eq!(
            calls.len(),
            1,
            "the actor takes nothing beside a lone retry"
        );
        assert_eq!(
            (calls[0].1.len(), calls[0].1[0].id, calls[0].1[0].attempt),
            (1, lost, 1)
        );
        s.batch_done(lost, &metas(1), 0.1).unwrap();
    }
    let calls = submits(&s.poll());
    assert_eq!(calls.len(), 2, "then both slots get new batches");
    assert!(calls.iter().all(|c| c.1[0].attempt == 0));
    assert_eq!(s.metrics().stages[0].actors_died, 1);
}

#[test]
fn a_batch_that_kills_its_actor_uses_up_only_its_own_retries() {
    let spec = StageSpec {
        max_retries: 1,
        pool: PoolSize::Fixed(1),
        ..stage("crashy", 1)
    };
    let config = SchedulerConfig {
        ignore_failures: true,
        ..SchedulerConfig::default()
    };
    let mut s = Scheduler::new(vec![spec], cpus(1.0), config).unwrap();
    let mut actor = creates(&s.poll())[0].0;
    s.add_tasks(&metas(3)).unwrap();
    s.close_input();
    let culprit = 1; // batch 1 (task 1) kills every actor that runs it
    let mut failures = Vec::new();
    let mut emitted = Vec::new();
    ready(&mut s, [actor]);
    for _ in 0..20 {
        let cmds = s.poll();
        for c in &cmds {
            match c {
                Command::CreateActor { actor: a, .. } => {
                    actor = *a;
                    ready(&mut s, [actor]);
                }
                Command::RecordFailure(f) => failures.push(f.clone()),
                Command::Emit { tasks } => emitted.extend(tasks.iter().copied()),
                _ => {}
            }
        }
        let calls = submits(&cmds);
        if calls.iter().any(|(_, b)| b.iter().any(|b| b.id == culprit)) {
            s.handle(Event::ActorFailed {
                actor,
                kind: FailureKind::Infra,
                message: "SIGSEGV".into(),
            })
            .unwrap();
            continue;
        }
        for (_, batches) in calls {
            for b in batches {
                s.batch_done(b.id, &metas(1), 0.1).unwrap();
            }
        }
        if s.is_finished() {
            break;
        }
    }
    assert!(s.is_finished() && !s.is_aborted());
    assert_eq!(failures.len(), 1);
    // The first death held two batches: neither is blamed; then the culprit runs alone, dies, is
    // retried once (max_retries = 1) and fails: three tries.
    assert_eq!((failures[0].batch, failures[0].attempts), (culprit, 3));
    assert_eq!(emitted.len(), 2, "the batches that ran beside it succeed");
    assert_eq!(s.metrics().stages[0].actors_died, 3);
}

#[test]
fn with_no_retries_only_the_batch_that_kills_its_actor_fails() {
    let spec = StageSpec {
        max_retries: 0,
        slots_per_actor: 2,
        max_batches_per_call: 4,
        pool: PoolSize::Fixed(1),
        ..stage("crashy", 1)
    };
    let config = SchedulerConfig {
        ignore_failures: true,
        call_overhead_secs: 1.0, // pack as many batches per call as allowed
        ..SchedulerConfig::default()
    };
    let mut s = Scheduler::new(vec![spec], cpus(1.0), config).unwrap();
    let mut actor = creates(&s.poll())[0].0;
    s.add_tasks(&metas(30)).unwrap();
    s.close_input();
    ready(&mut s, [actor]);
    let culprit_task = 7;
    let (mut failures, mut emitted) = (Vec::new(), 0usize);
    for _ in 0..200 {
        let cmds = s.poll();
        for c in &cmds {
            match c {
                Command::CreateActor { actor: a, .. } => {
                    actor = *a;
                    ready(&mut s, [actor]);
                }
                Command::RecordFailure(f) => failures.push(f.clone()),
                Command::Emit { tasks } => emitted += tasks.len(),
                _ => {}
            }
        }
        let calls = submits(&cmds);
        if calls
            .iter()
            .any(|(_, b)| b.iter().any(|b| b.tasks.contains(&culprit_task)))
        {
            s.handle(Event::ActorFailed {
                actor,
                kind: FailureKind::Infra,
                message: "SIGSEGV".into(),
            })
            .unwrap();
            continue;
        }
        for (_, batches) in calls {
            for b in batches {
                s.batch_done(b.id, &metas(1), 0.1).unwrap();
            }
        }
        if s.is_finished() {
            break;
        }
    }
    assert!(s.is_finished() && !s.is_aborted());
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[0].tasks, vec![culprit_task]);
    assert_eq!(
        emitted, 29,
        "every healthy task that shared a call with it succeeds"
    );
}

#[test]
fn too_many_deaths_abort_with_a_clear_reason() {
    let spec = StageSpec {
        pool: PoolSize::Fixed(1),
        ..stage("flaky", 1)
    };
    let mut s = Scheduler::new(vec![spec], cpus(1.0), SchedulerConfig::default()).unwrap();
    s.add_tasks(&metas(1)).unwrap();
    let mut actor = creates(&s.poll())[0].0;
    for death in 1..=6 {
        s.handle(Event::ActorFailed {
            actor,
            kind: FailureKind::Infra,
            message: "segfault".into(),
        })
        .unwrap();
        let cmds = s.poll();
        if death <= 5 {
            actor = creates(&cmds)[0].0;
        } else {
            let Some(Command::Abort { reason, .. }) = cmds.last() else {
                panic!("{cmds:?}")
            };
            assert!(
                reason.contains("stage 'flaky'") && reason.contains("6 actors died (limit 5)"),
                "{reason}"
            );
        }
    }
}

#[test]
fn gpu_pools_start_full_and_fixed_pools_are_capped_with_a_warning() {
    let embed = StageSpec {
        resources: Resources {
            cpus: 1.0,
            gpus: 0.5,
        },
        pool: PoolSize::Auto { max: None },
        ..stage("embed", 1)
    };
    let read = StageSpec {
        pool: PoolSize::Fixed(10),
        ..stage("read", 1)
    };
    let nodes = vec![
        NodeSpec::new("cpu", 4.0, 0.0),
        NodeSpec::new("gpu", 8.0, 2.0),
    ];
    let mut s = Scheduler::new(vec![read, embed], nodes, SchedulerConfig::default()).unwrap();
    let made = creates(&s.poll());
    let on =
        |stage: usize, node: usize| made.iter().filter(|c| c.1 == stage && c.2 == node).count();
    assert_eq!(
        on(1, 1),
        4,
        "two GPUs at 0.5 each: four actors, all up front"
    );
    assert_eq!(on(0, 0) + on(0, 1), 8, "the rest of the CPUs: 4 + (8 - 4)");
    let warnings = s.take_warnings();
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("stage 'read'") && w.contains("capped to 8")),
        "{warnings:?}"
    );
    assert!(s.take_warnings().is_empty(), "warnings are taken once");
}

#[test]
fn three_stages_finish_on_a_node_with_room_for_two_actors() {
    let stages = vec![stage("a", 1), stage("b", 2), stage("c", 3)];
    let config = SchedulerConfig {
        rebalance_interval_secs: 0.5,
        ..SchedulerConfig::default()
    };
    let mut sched = Scheduler::new(stages.clone(), cpus(2.0), config.clone()).unwrap();
    let made = creates(&sched.poll());
    assert_eq!(
        made.iter().map(|c| c.1).collect::<Vec<_>>(),
        vec![0, 1],
        "upstream first"
    );
    assert!(sched
        .take_warnings()
        .iter()
        .any(|w| w.contains("stage 'c' gets no actor")));
    let params = SimParams {
        n_tasks: 200,
        ..SimParams::simple(200, 3)
    };
    let (outcome, stats, s) = Sim::new(stages, cpus(2.0), config, params).run();
    assert_eq!(outcome, Outcome::Finished);
    assert!(stats.kills_before_end > 0, "actors were moved");
    let m = s.metrics();
    assert_eq!(m.tasks_emitted, 200);
    assert!(m
        .stages
        .iter()
        .all(|st| st.finished && st.actors_ready == 0));
}

#[test]
fn finished_stages_free_their_actors_for_the_rest() {
    let mut s =
        Scheduler::new(vec![stage("a", 1), stage("b", 1)], cpus(2.0), whole_pools()).unwrap();
    let made = creates(&s.poll());
    assert_eq!(made.len(), 2);
    let (a, b) = (made[0].0, made[1].0);
    ready(&mut s, [a, b]);
    s.add_tasks(&metas(1)).unwrap();
    s.close_input();
    let call = submits(&s.poll());
    s.batch_done(call[0].1[0].id, &metas(3), 0.1).unwrap();
    let cmds = s.poll();
    assert_eq!(
        cmds[0],
        Command::KillActor { actor: a },
        "stage a is done for good"
    );
    let grown = creates(&cmds);
    assert_eq!(grown, vec![(2, 1, 0)], "b takes the freed CPU");
    assert_eq!(
        submits(&cmds).len(),
        2,
        "b's ready actor takes 2 of 3 tasks in its 2 slots"
    );
}

#[test]
fn rebalancing_moves_at_most_one_actor_per_interval() {
    // One CPU; a is busy until backpressured, b starts with no actor.
    let a = StageSpec {
        slots_per_actor: 1,
        ..stage("a", 1)
    };
    let b = StageSpec {
        queue_max_tasks: 2,
        ..stage("b", 1)
    };
    let config = SchedulerConfig {
        rebalance_interval_secs: 10.0,
        ..SchedulerConfig::default()
    };
    let mut s = Scheduler::new(vec![a, b], cpus(1.0), config).unwrap();
    let made = creates(&s.poll());
    assert_eq!(made.len(), 1);
    ready(&mut s, [made[0].0]);
    s.add_tasks(&metas(10)).unwrap();
    for _ in 0..2 {
        let call = submits(&s.poll());
        s.batch_done(call[0].1[0].id, &metas(1), 0.1).unwrap();
    }
    s.handle(Event::Tick { now: 5.0 }).unwrap();
    assert!(
        kills(&s.poll()).is_empty(),
        "idle for less than an interval: kept"
    );
    s.handle(Event::Tick { now: 10.0 }).unwrap();
    let cmds = s.poll();
    assert_eq!(
        kills(&cmds),
        vec![made[0].0],
        "a is idle (for an interval) and backpressured: its actor goes to b"
    );
    assert_eq!(creates(&cmds), vec![(1, 1, 0)]);
    ready(&mut s, [1]);
    let calls = submits(&s.poll());
    for (_, batches) in &calls {
        s.batch_done(batches[0].id, &metas(1), 0.1).unwrap();
    }
    // b drained its queue; a is starved now, but the interval has not passed.
    s.handle(Event::Tick { now: 15.0 }).unwrap();
    assert!(creates(&s.poll()).is_empty());
    s.handle(Event::Tick { now: 21.0 }).unwrap();
    let cmds = s.poll();
    assert_eq!(kills(&cmds), vec![1]);
    assert_eq!(creates(&cmds), vec![(2, 0, 0)]);
}

#[test]
fn protocol_errors() {
    let (mut s, actor, batch) = one_stage_with_retries(3, false);
    let is_protocol = |r: Result<(), CoreError>| matches!(r, Err(CoreError::Protocol(_)));
    assert!(is_protocol(s.handle(Event::ActorReady { actor: 99 })));
    assert!(
        is_protocol(s.handle(Event::ActorReady { actor })),
        "ready twice"
    );
    assert!(is_protocol(s.handle(Event::BatchDone {
        batch: 99,
        attempt: 0,
        outputs: vec![],
        busy_secs: 0.0
    })));
    assert!(is_protocol(s.handle(Event::BatchFailed {
        batch: 99,
        attempt: 0,
        kind: FailureKind::User,
        message: String::new()
    })));
    assert!(is_protocol(s.handle(Event::ActorFailed {
        actor: 99,
        kind: FailureKind::Infra,
        message: String::new()
    })));
    assert!(
        is_protocol(s.handle(Event::BatchDone {
            batch: batch.id,
            attempt: 1,
            outputs: vec![],
            busy_secs: 0.0
        })),
        "an attempt never submitted"
    );
    s.batch_done(batch.id, &metas(1), 0.1).unwrap();
    let dup = s.batch_done(batch.id, &metas(1), 0.1);
    assert_eq!(dup, Ok(vec![]), "a duplicate report is ignored");
    assert_eq!(s.stale_results(), 1);
    assert!(
        matches!(s.add_tasks(&metas(1)), Err(CoreError::Protocol(_))),
        "add after close"
    );
}

#[test]
fn an_empty_run_finishes_at_once() {
    let mut s = Scheduler::new(
        vec![stage("a", 1), stage("b", 1)],
        cpus(2.0),
        SchedulerConfig::default(),
    )
    .unwrap();
    s.close_input();
    let cmds = s.poll();
    let made: Vec<ActorId> = creates(&cmds).into_iter().map(|c| c.0).collect();
    assert_eq!(kills(&cmds), made, "every created actor killed once");
    assert_eq!(cmds.last(), Some(&Command::Finish));
    assert!(s.is_finished() && !s.is_aborted());
    assert!(s.poll().is_empty());
    assert!(s.balance().complete());
}

#[test]
fn poll_is_empty_when_nothing_changed() {
    let mut s = Scheduler::new(vec![stage("a", 1)], cpus(1.0), SchedulerConfig::default()).unwrap();
    assert!(!s.poll().is_empty());
    assert!(s.poll().is_empty());
    s.handle(Event::Tick { now: 1.0 }).unwrap();
    assert!(s.poll().is_empty());
}

#[test]
fn outputs_are_emitted_with_their_lineage() {
    let stages = vec![stage("split", 1), stage("merge", 3)];
    let mut s = Scheduler::new(stages, cpus(2.0), SchedulerConfig::default()).unwrap();
    let made = creates(&s.poll());
    ready(&mut s, made.into_iter().map(|c| c.0));
    let inputs = s.add_tasks(&metas(2)).unwrap();
    assert_eq!(
        s.roots(inputs[0]),
        vec![inputs[0]],
        "a queued source task is its own root"
    );
    s.close_input();
    let (mut emitted, mut all_roots, mut completed) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..10 {
        let cmds = s.poll();
        completed.extend(s.take_completed_roots());
        for c in cmds {
            match c {
                Command::CreateActor { actor, .. } => ready(&mut s, [actor]),
                Command::Emit { tasks } => emitted.extend(tasks),
                Command::Submit { batches, .. } => {
                    for b in batches {
                        // split: 2 outputs per input; merge: 1 output per batch
                        let n = if b.stage == 0 { 2 } else { 1 };
                        let out = s.batch_done(b.id, &metas(n), 0.1).unwrap();
                        // Outputs are known until the poll that hands them out.
                        all_roots.extend(out.iter().map(|&t| s.roots(t)));
                    }
                }
                _ => {}
            }
        }
    }
    assert!(s.is_finished());
    assert_eq!(
        emitted.len(),
        2,
        "4 split outputs merged by 3: batches of 3 and 1"
    );
    assert!(
        all_roots.contains(&inputs),
        "the batch of 3 descends from both inputs: {all_roots:?}"
    );
    completed.sort_unstable();
    assert_eq!(completed, inputs, "each source task completed once");
    assert_eq!(
        s.live_records().total(),
        0,
        "the core forgot what has ended"
    );
    assert!(s.roots(emitted[0]).is_empty() && s.roots(inputs[0]).is_empty());
    let m = s.metrics();
    assert_eq!(
        (
            m.stages[0].tasks_out,
            m.stages[1].tasks_in,
            m.stages[1].batches_done
        ),
        (4, 4, 2)
    );
}

#[test]
fn a_simulated_run_with_fan_out_and_filtering_balances() {
    let stages = vec![stage("read", 2), stage("split", 4), stage("filter", 8)];
    let mut params = SimParams::simple(500, 3);
    params.fanouts = vec![Fanout::Const(1), Fanout::Upto(4), Fanout::Upto(1)];
    let nodes = vec![NodeSpec::new("a", 4.0, 0.0), NodeSpec::new("b", 4.0, 0.0)];
    let (outcome, stats, s) = Sim::new(stages, nodes, whole_pools(), params).run();
    assert_eq!(outcome, Outcome::Finished);
    assert!(stats.packed_calls > 0);
    let b = s.balance();
    assert!(b.complete());
    assert_eq!(b.initial, 500);
    assert!(b.filtered > 0);
}

/// Every pool at its whole target from the start (no demand-driven growth).
fn whole_pools() -> SchedulerConfig {
    SchedulerConfig {
        actor_start_secs: 0.0,
        ..SchedulerConfig::default()
    }
}

/// One 1-CPU stage on 4 CPUs; returns the scheduler after its first batch took `busy` seconds,
/// with 100 tasks queued, and the actors created so far.
fn after_first_batch(busy: f64) -> (Scheduler, Vec<ActorId>) {
    let mut s = Scheduler::new(vec![stage("a", 1)], cpus(4.0), SchedulerConfig::default()).unwrap();
    let mut actors: Vec<ActorId> = creates(&s.poll()).into_iter().map(|c| c.0).collect();
    assert_eq!(
        actors.len(),
        1,
        "an automatic CPU pool starts with one actor"
    );
    ready(&mut s, actors.clone());
    s.add_tasks(&metas(100)).unwrap();
    let first = submits(&s.poll());
    s.batch_done(first[0].1[0].id, &metas(1), busy).unwrap();
    actors.extend(creates(&s.poll()).into_iter().map(|c| c.0));
    (s, actors)
}

#[test]
fn an_auto_pool_grows_to_what_its_measured_work_is_worth() {
    // 100 batches of 0.1 s waiting: 10 s of work, one actor per second of it, capped by the 4 CPUs.
    let (_, actors) = after_first_batch(0.1);
    assert_eq!(actors.len(), 4);
}

#[test]
fn tiny_batches_keep_one_actor() {
    // 100 batches of 0.1 ms: 10 ms of work is not worth starting a second actor.
    let (mut s, actors) = after_first_batch(0.0001);
    assert_eq!(actors.len(), 1);
    s.handle(Event::Tick { now: 5.0 }).unwrap();
    assert!(
        creates(&s.poll()).is_empty(),
        "rebalancing does not grow it either"
    );
}

#[test]
fn fixed_and_gpu_pools_start_whole() {
    let fixed = StageSpec {
        pool: PoolSize::Fixed(3),
        ..stage("fixed", 1)
    };
    let gpu = StageSpec {
        resources: Resources {
            cpus: 0.0,
            gpus: 0.5,
        },
        ..stage("gpu", 1)
    };
    let nodes = vec![NodeSpec::new("n", 4.0, 1.0)];
    let mut s = Scheduler::new(vec![fixed, gpu], nodes, SchedulerConfig::default()).unwrap();
    let made = creates(&s.poll());
    assert_eq!(made.iter().filter(|c| c.1 == 0).count(), 3);
    assert_eq!(made.iter().filter(|c| c.1 == 1).count(), 2);
}

#[test]
fn a_full_queue_that_holds_a_full_batch_sends_no_partial_one() {
    let spec = StageSpec {
        queue_max_tasks: 4,
        max_batches_per_call: 8,
        ..stage("a", 3)
    };
    let mut s = Scheduler::new(vec![spec], cpus(1.0), SchedulerConfig::default()).unwrap();
    let actors: Vec<ActorId> = creates(&s.poll()).into_iter().map(|c| c.0).collect();
    ready(&mut s, actors);
    s.add_tasks(&metas(4)).unwrap();
    let calls = submits(&s.poll());
    let sizes: Vec<usize> = calls
        .iter()
        .flat_map(|c| c.1.iter().map(|b| b.tasks.len()))
        .collect();
    assert_eq!(sizes, vec![3], "the fourth task waits for two more");
}
