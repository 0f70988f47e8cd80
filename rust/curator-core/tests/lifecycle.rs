//! Example tests of the rules behind Xenna-style runs: stage-by-stage execution, user-error retries,
//! per-stage `ignore_failures`, actor lifetimes and replacement after a failure.

use curator_core::{
    ActorId, Batch, Command, Event, FailureKind, NodeSpec, Scheduler, SchedulerConfig, StageSpec,
    TaskMeta,
};

fn stage(name: &str, batch_size: usize) -> StageSpec {
    StageSpec {
        batch_size,
        slots_per_actor: 1,
        max_batches_per_call: 1,
        ..StageSpec::new(name)
    }
}

fn metas(n: usize) -> Vec<TaskMeta> {
    vec![
        TaskMeta {
            bytes: 10,
            items: 1
        };
        n
    ]
}

fn creates(cmds: &[Command]) -> Vec<(ActorId, usize)> {
    cmds.iter()
        .filter_map(|c| match c {
            Command::CreateActor { actor, stage, .. } => Some((*actor, *stage)),
            _ => None,
        })
        .collect()
}

fn submits(cmds: &[Command]) -> Vec<(ActorId, Batch)> {
    cmds.iter()
        .filter_map(|c| match c {
            Command::Submit { actor, batches } => {
                assert_eq!(batches.len(), 1, "these tests send one batch per call");
                Some((*actor, batches[0].clone()))
            }
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

fn ready_all(s: &mut Scheduler, cmds: &[Command]) {
    for (actor, _) in creates(cmds) {
        s.handle(Event::ActorReady { actor }).unwrap();
    }
}

/// A user error in the batch's current attempt.
fn user_error(s: &mut Scheduler, batch: u64) -> Result<(), curator_core::CoreError> {
    s.batch_failed_attempt(batch, None, FailureKind::User, "ValueError: flaky")
}

#[test]
fn stage_by_stage_starts_a_stage_only_after_the_one_before_finished() {
    let config = SchedulerConfig {
        stage_by_stage: true,
        actor_start_secs: 0.0,
        ..SchedulerConfig::default()
    };
    // Tiny queue bounds: stage by stage they must not hold anything back.
    let small = |name: &str| StageSpec {
        queue_max_tasks: 2,
        ..stage(name, 1)
    };
    let mut s = Scheduler::new(
        vec![small("read"), small("filter"), small("write")],
        vec![NodeSpec::new("n", 4.0, 0.0)],
        config,
    )
    .unwrap();
    s.add_tasks(&metas(6)).unwrap();
    s.close_input();
    let mut cmds = s.poll();
    assert!(
        creates(&cmds).iter().all(|&(_, st)| st == 0),
        "only the first stage gets actors at start: {cmds:?}"
    );
    let mut order: Vec<usize> = Vec::new();
    let mut finished_at: Vec<Option<usize>> = vec![None; 3];
    for round in 0..200 {
        ready_all(&mut s, &cmds);
        let calls = submits(&cmds);
        for (_, b) in &calls {
            for (st, f) in finished_at.iter().enumerate() {
                if st < b.stage {
                    assert!(
                        f.is_some(),
                        "stage {} ran before stage {st} finished",
                        b.stage
                    );
                }
            }
            order.push(b.stage);
        }
        for (_, b) in calls {
            s.batch_done(b.id, &metas(1), 0.01).unwrap();
        }
        s.handle(Event::Tick {
            now: round as f64 * 0.1,
        })
        .unwrap();
        cmds = s.poll();
        for (st, f) in finished_at.iter_mut().enumerate() {
            let m = &s.metrics().stages[st];
            if f.is_none() && m.tasks_done == 6 {
                *f = Some(round);
            }
        }
        if cmds.contains(&Command::Finish) {
            break;
        }
    }
    assert!(s.is_finished() && !s.is_aborted());
    assert!(s.balance().complete());
    assert_eq!(order.len(), 18);
    assert!(
        order.windows(2).all(|w| w[0] <= w[1]),
        "stages ran out of order: {order:?}"
    );
}

#[test]
fn user_errors_are_retried_up_to_max_user_retries_without_using_infra_retries() {
    let spec = StageSpec {
        max_user_retries: 2,
        max_retries: 0,
        ..stage("flaky", 1)
    };
    let mut s = Scheduler::new(
        vec![spec],
        vec![NodeSpec::new("n", 1.0, 0.0)],
        SchedulerConfig::default(),
    )
    .unwrap();
    s.add_tasks(&metas(1)).unwrap();
    s.close_input();
    let cmds = s.poll();
    ready_all(&mut s, &cmds);
    let (_, first) = submits(&s.poll())[0].clone();
    user_error(&mut s, first.id).unwrap();
    let (_, second) = submits(&s.poll())[0].clone();
    assert_eq!(
        (second.id, second.attempt),
        (first.id, 1),
        "the same batch again"
    );
    user_error(&mut s, first.id).unwrap();
    let (_, third) = submits(&s.poll())[0].clone();
    assert_eq!(third.attempt, 2);
    user_error(&mut s, first.id).unwrap();
    let cmds = s.poll();
    let Some(Command::Abort {
        failure: Some(f), ..
    }) = cmds.last()
    else {
        panic!("the third user error fails the run: {cmds:?}")
    };
    assert_eq!((f.kind, f.attempts), (FailureKind::User, 3));
    assert_eq!(s.metrics().stages[0].retries, 2);
}

#[test]
fn a_retried_user_error_still_gets_its_infrastructure_retries() {
    let spec = StageSpec {
        max_user_retries: 1,
        max_retries: 1,
        ..stage("s", 1)
    };
    let mut s = Scheduler::new(
        vec![spec],
        vec![NodeSpec::new("n", 1.0, 0.0)],
        SchedulerConfig::default(),
    )
    .unwrap();
    s.add_tasks(&metas(1)).unwrap();
    s.close_input();
    let cmds = s.poll();
    ready_all(&mut s, &cmds);
    let (_, b) = submits(&s.poll())[0].clone();
    user_error(&mut s, b.id).unwrap();
    assert_eq!(submits(&s.poll())[0].1.attempt, 1);
    s.handle(Event::BatchFailed {
        batch: b.id,
        attempt: 1,
        kind: FailureKind::Infra,
        message: "worker died".into(),
    })
    .unwrap();
    let (_, again) = submits(&s.poll())[0].clone();
    assert_eq!(
        again.attempt, 2,
        "one infra retry is left after a user retry"
    );
    let out = s.batch_done(b.id, &metas(1), 0.01).unwrap();
    let cmds = s.poll();
    assert!(cmds.contains(&Command::Emit { tasks: out }));
    assert_eq!(cmds.last(), Some(&Command::Finish));
}

#[test]
fn a_stage_can_ignore_failures_while_the_run_does_not() {
    let lenient = StageSpec {
        ignore_failures: Some(true),
        ..stage("lenient", 1)
    };
    let strict = stage("strict", 1);
    let mut s = Scheduler::new(
        vec![lenient, strict],
        vec![NodeSpec::new("n", 2.0, 0.0)],
        SchedulerConfig::default(),
    )
    .unwrap();
    s.add_tasks(&metas(2)).unwrap();
    s.close_input();
    let cmds = s.poll();
    ready_all(&mut s, &cmds);
    let (_, b) = submits(&s.poll())[0].clone();
    assert_eq!(b.stage, 0);
    user_error(&mut s, b.id).unwrap();
    let cmds = s.poll();
    assert!(
        cmds.iter()
            .any(|c| matches!(c, Command::RecordFailure(f) if f.stage == 0)),
        "{cmds:?}"
    );
    assert!(!s.is_aborted());
    let (_, b2) = submits(&cmds)[0].clone();
    s.batch_done(b2.id, &metas(1), 0.01).unwrap();
    let (_, down) = submits(&s.poll())
        .into_iter()
        .find(|(_, b)| b.stage == 1)
        .expect("the strict stage runs the survivor");
    user_error(&mut s, down.id).unwrap();
    let cmds = s.poll();
    assert!(
        matches!(cmds.last(), Some(Command::Abort { failure: Some(f), .. }) if f.stage == 1),
        "{cmds:?}"
    );
}

#[test]
fn old_actors_are_drained_and_replaced_one_per_interval() {
    let spec = StageSpec {
        pool: curator_core::PoolSize::Fixed(2),
        max_actor_age_secs: Some(10.0),
        actor_restart_interval_secs: 5.0,
        ..stage("model", 1)
    };
    let mut s = Scheduler::new(
        vec![spec],
        vec![NodeSpec::new("n", 4.0, 0.0)],
        SchedulerConfig::default(),
    )
    .unwrap();
    s.add_tasks(&metas(100)).unwrap();
    s.handle(Event::Tick { now: 0.0 }).unwrap();
    let cmds = s.poll();
    assert_eq!(creates(&cmds).len(), 2);
    ready_all(&mut s, &cmds);
    let calls = submits(&s.poll());
    assert_eq!(calls.len(), 2);
    // Past the age: the oldest actor (0) takes no new call; it is killed once its call is done.
    s.handle(Event::Tick { now: 11.0 }).unwrap();
    let cmds = s.poll();
    assert!(
        kills(&cmds).is_empty(),
        "a busy actor is drained, not killed"
    );
    for (_, b) in &calls {
        s.batch_done(b.id, &metas(1), 0.01).unwrap();
    }
    let cmds = s.poll();
    assert_eq!(kills(&cmds), vec![0], "{cmds:?}");
    let replacement = creates(&cmds);
    assert_eq!(replacement.len(), 1, "a replacement starts: {cmds:?}");
    assert!(
        submits(&cmds).iter().all(|(a, _)| *a == 1),
        "only the young actor takes work"
    );
    let on_one: Vec<Batch> = submits(&cmds).into_iter().map(|(_, b)| b).collect();
    assert_eq!(on_one.len(), 1);
    // Actor 1 is as old, but one replacement per 5 s.
    s.handle(Event::Tick { now: 12.0 }).unwrap();
    assert!(kills(&s.poll()).is_empty());
    s.handle(Event::ActorReady {
        actor: replacement[0].0,
    })
    .unwrap();
    s.handle(Event::Tick { now: 16.5 }).unwrap();
    let cmds = s.poll();
    assert!(
        submits(&cmds).iter().all(|(a, _)| *a == replacement[0].0),
        "actor 1 is retired at 16.5 s: only the replacement takes work: {cmds:?}"
    );
    s.batch_done(on_one[0].id, &metas(1), 0.01).unwrap();
    let cmds = s.poll();
    assert_eq!(kills(&cmds), vec![1]);
    assert_eq!(creates(&cmds).len(), 1);
    assert!(s.balance().balanced());
}

#[test]
fn replace_actor_on_failure_retires_the_actor_that_failed() {
    let spec = StageSpec {
        replace_actor_on_failure: true,
        ignore_failures: Some(true),
        ..stage("s", 1)
    };
    let mut s = Scheduler::new(
        vec![spec],
        vec![NodeSpec::new("n", 1.0, 0.0)],
        SchedulerConfig::default(),
    )
    .unwrap();
    s.add_tasks(&metas(3)).unwrap();
    s.close_input();
    let cmds = s.poll();
    ready_all(&mut s, &cmds);
    let (actor, b) = submits(&s.poll())[0].clone();
    user_error(&mut s, b.id).unwrap();
    let cmds = s.poll();
    assert_eq!(kills(&cmds), vec![actor], "{cmds:?}");
    let new = creates(&cmds);
    assert_eq!(new.len(), 1, "a fresh actor replaces it");
    assert!(submits(&cmds).is_empty(), "the killed actor takes no call");
    ready_all(&mut s, &cmds);
    let calls = submits(&s.poll());
    assert_eq!(calls[0].0, new[0].0);
}

#[test]
fn batches_on_a_worker_that_could_not_load_the_stage_are_not_lost() {
    // A Ray-task slot loads the stage with its first call: a load failure arrives with calls in
    // flight. Those batches go back to the queue, uncounted, and a fresh slot takes them.
    let spec = StageSpec {
        max_retries: 1,
        slots_per_actor: 2,
        ..stage("s", 1)
    };
    let mut s = Scheduler::new(
        vec![spec],
        vec![NodeSpec::new("n", 1.0, 0.0)],
        SchedulerConfig::default(),
    )
    .unwrap();
    s.add_tasks(&metas(2)).unwrap();
    s.close_input();
    let cmds = s.poll();
    ready_all(&mut s, &cmds);
    let calls = submits(&s.poll());
    assert_eq!(calls.len(), 2);
    s.handle(Event::ActorFailed {
        actor: calls[0].0,
        kind: FailureKind::User,
        message: "cannot import the stage".into(),
    })
    .unwrap();
    let cmds = s.poll();
    assert_eq!(creates(&cmds).len(), 1, "a fresh slot: {cmds:?}");
    assert!(s.balance().balanced());
    ready_all(&mut s, &cmds);
    let again = submits(&s.poll());
    let mut ids: Vec<u64> = again.iter().map(|(_, b)| b.id).collect();
    ids.sort_unstable();
    assert_eq!(
        ids,
        vec![calls[0].1.id, calls[1].1.id],
        "both batches run again"
    );
    for (_, b) in again {
        s.batch_done(b.id, &metas(1), 0.01).unwrap();
    }
    assert_eq!(s.poll().last(), Some(&Command::Finish));
}

#[test]
fn after_a_node_is_lost_its_actors_are_replaced_on_the_nodes_left() {
    let spec = StageSpec {
        pool: curator_core::PoolSize::Fixed(2),
        ..stage("s", 1)
    };
    let nodes = vec![NodeSpec::new("a", 1.0, 0.0), NodeSpec::new("b", 2.0, 0.0)];
    let config = SchedulerConfig {
        actor_start_secs: 0.0,
        ..SchedulerConfig::default()
    };
    let mut s = Scheduler::new(vec![spec], nodes, config).unwrap();
    s.add_tasks(&metas(4)).unwrap();
    s.close_input();
    let cmds = s.poll();
    ready_all(&mut s, &cmds);
    let on_b: Vec<ActorId> = cmds
        .iter()
        .filter_map(|c| match c {
            Command::CreateActor { actor, node: 1, .. } => Some(*actor),
            _ => None,
        })
        .collect();
    assert!(!on_b.is_empty(), "{cmds:?}");
    let calls = submits(&s.poll());
    s.handle(Event::NodeLost { node: 1 }).unwrap();
    s.handle(Event::NodeLost { node: 1 }).unwrap(); // reported twice: no change
    assert!(s.handle(Event::NodeLost { node: 7 }).is_err());
    for actor in &on_b {
        s.handle(Event::ActorFailed {
            actor: *actor,
            kind: FailureKind::Infra,
            message: "node died".into(),
        })
        .unwrap();
    }
    let cmds = s.poll();
    // Replacements go to node 0 only (node 1's freed CPUs are not given back).
    for c in &cmds {
        if let Command::CreateActor { node, .. } = c {
            assert_eq!(*node, 0, "{cmds:?}");
        }
    }
    // The lost batches are not lost: every task still ends.
    let mut done = 0;
    let mut pending: Vec<(ActorId, Batch)> = calls
        .into_iter()
        .filter(|(a, _)| !on_b.contains(a))
        .collect();
    ready_all(&mut s, &cmds);
    for _ in 0..20 {
        pending.extend(submits(&s.poll()));
        let Some((_, b)) = pending.pop() else { break };
        s.batch_done(b.id, &[], 0.0).unwrap();
        done += 1;
        if s.is_finished() {
            break;
        }
    }
    let _ = s.poll();
    assert!(s.is_finished(), "done {done}");
}
