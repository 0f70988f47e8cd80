//! The core driving a simulated cluster: many nodes and actors, millions of tasks streamed in by a
//! reader, results reported in rounds of many events (in random order) like a driver does. Prints
//! the scheduler's throughput in task-events/s (one event = one input task of a batch reported
//! done), its peak heap and records, and the process's peak memory (VmHWM): memory must stay bounded
//! by the work in flight, not grow with the number of tasks.
//!
//! `cargo run --release -p curator-core --example simulate -- [tasks] [nodes] [actors]`
//! (defaults: 200,000 tasks, 1,000 nodes, 10,000 actors).
//!
//! Pipeline: `read` (batches of 1), `split` (batches of 8; filters about 1 in 10 tasks), `write`
//! (batches of 64, one output per batch: a merge, so outputs descend from many sources). Every actor
//! takes 1 CPU; each node has `actors / nodes` CPUs.

use std::time::Instant;

use curator_core::{Command, Event, NodeSpec, Scheduler, SchedulerConfig, StageSpec, TaskMeta};

/// splitmix64.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

fn arg(i: usize, default: usize) -> usize {
    std::env::args()
        .nth(i)
        .map(|a| a.replace(['_', ','], ""))
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

/// Peak resident memory of this process in KiB (Linux), 0 elsewhere.
fn vm_hwm_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn main() {
    let n_tasks = arg(1, 200_000);
    let n_nodes = arg(2, 1_000).max(1);
    let n_actors = arg(3, 10_000).max(n_nodes);
    let cpus_per_node = (n_actors / n_nodes) as f64;
    let stages: Vec<StageSpec> = [("read", 1), ("split", 8), ("write", 64)]
        .into_iter()
        .map(|(name, batch_size)| StageSpec {
            batch_size,
            ..StageSpec::new(name)
        })
        .collect();
    let nodes: Vec<NodeSpec> = (0..n_nodes)
        .map(|i| NodeSpec::new(format!("node{i}"), cpus_per_node, 0.0))
        .collect();
    let hwm_before = vm_hwm_kib();
    let started = Instant::now();
    // Actors start at once here: pools are created whole.
    let config = SchedulerConfig {
        actor_start_secs: 0.0,
        ..SchedulerConfig::default()
    };
    let mut s = Scheduler::new(stages, nodes, config).unwrap();
    // A reader adds inputs in chunks, whenever fewer than a chunk wait: two calls' worth per actor.
    let read_chunk = (2 * n_actors).max(1_000);
    let mut rng = Rng(7);
    let (mut added, mut rounds, mut emitted, mut task_events) = (0usize, 0u64, 0u64, 0u64);
    let (mut completed, mut actors) = (0u64, 0u64);
    let (mut peak_heap, mut peak_records, mut peak_in_flight) = (0usize, 0usize, 0u64);
    let mut now = 0.0;
    // (batch, attempt, inputs) of every batch sent this round.
    let mut sent: Vec<(u64, u32, usize, usize)> = Vec::new();
    while !s.is_finished() {
        rounds += 1;
        let b = s.balance();
        if added < n_tasks && b.queued < read_chunk as u64 {
            let n = read_chunk.min(n_tasks - added);
            let metas = vec![
                TaskMeta {
                    bytes: 1000,
                    items: 10
                };
                n
            ];
            s.add_tasks_range(&metas).unwrap();
            added += n;
            if added == n_tasks {
                s.close_input();
            }
        }
        peak_in_flight = peak_in_flight.max(b.in_flight + b.queued);
        for command in s.poll() {
            match command {
                Command::CreateActor { actor, .. } => {
                    actors += 1;
                    s.handle(Event::ActorReady { actor }).unwrap();
                }
                Command::Submit { batches, .. } => sent.extend(
                    batches
                        .iter()
                        .map(|b| (b.id, b.attempt, b.stage, b.tasks.len())),
                ),
                Command::Emit { tasks } => emitted += tasks.len() as u64,
                _ => {}
            }
        }
        completed += s.take_completed_roots().len() as u64;
        peak_heap = peak_heap.max(s.heap_bytes());
        peak_records = peak_records.max(s.live_records().total());
        // Every call of the round finishes, in random order.
        for i in (1..sent.len()).rev() {
            sent.swap(i, (rng.next() % (i as u64 + 1)) as usize);
        }
        for (batch, attempt, stage, n_in) in sent.drain(..) {
            task_events += n_in as u64;
            let n_out = match stage {
                0 => n_in,
                1 => (0..n_in).filter(|_| rng.next() % 10 != 0).count(),
                _ => 1,
            };
            let total = TaskMeta {
                bytes: 1000 * n_out as u64,
                items: 10 * n_out as u64,
            };
            s.batch_result(batch, attempt, n_out, total, 1e-3).unwrap();
        }
        now += 0.001;
        s.handle(Event::Tick { now }).unwrap();
    }
    let secs = started.elapsed().as_secs_f64();
    completed += s.take_completed_roots().len() as u64;
    let b = s.balance();
    assert!(b.complete(), "{b:?}");
    assert_eq!(
        completed, n_tasks as u64,
        "every source task completed once"
    );
    assert_eq!(s.live_records().total(), 0, "records left after the run");
    let mib = |bytes: f64| bytes / (1 << 20) as f64;
    let hwm = vm_hwm_kib();
    println!(
        "{n_tasks} tasks, {n_nodes} nodes, {actors} actors started, {rounds} rounds: {emitted} outputs in {secs:.2} s"
    );
    println!(
        "  {:.2}M task-events/s ({task_events} task-events), {:.2}M tasks/s",
        task_events as f64 / secs / 1e6,
        n_tasks as f64 / secs / 1e6
    );
    println!(
        "  peak: scheduler heap {:.1} MiB, {peak_records} records, {peak_in_flight} tasks queued or in flight; \
         VmHWM {:.1} MiB (at start {:.1} MiB); at the end heap {:.2} MiB, 0 records",
        mib(peak_heap as f64),
        hwm as f64 / 1024.0,
        hwm_before as f64 / 1024.0,
        mib(s.heap_bytes() as f64)
    );
}
