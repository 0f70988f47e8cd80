//! Throughput of the core alone: 1,000,000 tasks through 3 stages (batch sizes 1, 8, 64) with mock
//! workers that finish every call at once, events fed in rounds like a driver does.
//!
//! `cargo run --release -p curator-core --example throughput [n_tasks]`

use std::time::Instant;

use curator_core::{Command, Event, NodeSpec, Scheduler, SchedulerConfig, StageSpec, TaskMeta};

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let stages: Vec<StageSpec> = [("read", 1), ("tokenize", 8), ("write", 64)]
        .into_iter()
        .map(|(name, batch_size)| StageSpec {
            batch_size,
            ..StageSpec::new(name)
        })
        .collect();
    let nodes = vec![NodeSpec::new("node0", 8.0, 0.0)];
    let started = Instant::now();
    let mut s = Scheduler::new(stages, nodes, SchedulerConfig::default()).unwrap();
    s.add_tasks(&vec![
        TaskMeta {
            bytes: 1000,
            items: 10
        };
        n
    ])
    .unwrap();
    s.close_input();
    let (mut rounds, mut emitted, mut task_events, mut now) = (0u64, 0u64, 0u64, 0.0);
    let mut done: Vec<(u64, usize)> = Vec::new();
    while !s.is_finished() {
        rounds += 1;
        for command in s.poll() {
            match command {
                Command::CreateActor { actor, .. } => {
                    s.handle(Event::ActorReady { actor }).unwrap()
                }
                Command::Submit { batches, .. } => {
                    done.extend(batches.iter().map(|b| (b.id, b.tasks.len())))
                }
                Command::Emit { tasks } => emitted += tasks.len() as u64,
                _ => {}
            }
        }
        for (batch, n_in) in done.drain(..) {
            task_events += n_in as u64;
            s.batch_done_totals(
                batch,
                n_in,
                TaskMeta {
                    bytes: 1000 * n_in as u64,
                    items: 10 * n_in as u64,
                },
                1e-5,
            )
            .unwrap();
        }
        now += 0.001;
        s.handle(Event::Tick { now }).unwrap();
    }
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(emitted, n as u64);
    assert!(s.balance().complete());
    println!(
        "{n} tasks, {rounds} rounds in {secs:.3} s: {:.0} tasks/s, {:.0} task-events/s, scheduler heap {:.1} MiB",
        n as f64 / secs,
        task_events as f64 / secs,
        s.heap_bytes() as f64 / (1 << 20) as f64
    );
}
