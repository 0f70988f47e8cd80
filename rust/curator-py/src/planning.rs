//! Python face of `curator_core::planning`: the Ray Data executor's plan as plain dicts and tuples.

use curator_core::{
    plan_ray_data as core_plan, CoreError, Pack, PlanNode, PlanSettings, PlanStage, Resources,
};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use crate::errors::PyCoreError;

fn config(msg: String) -> PyErr {
    PyCoreError(CoreError::Config(msg)).into()
}

fn field<'py, T: FromPyObjectOwned<'py>>(
    d: &Bound<'py, PyDict>,
    stage: &str,
    key: &str,
    default: Option<T>,
) -> PyResult<T> {
    match d.get_item(key)? {
        Some(v) if !v.is_none() => v.extract::<T>().map_err(|_| {
            config(format!(
                "stage '{stage}': '{key}' has the wrong type: {}",
                v.repr().map(|r| r.to_string()).unwrap_or_default()
            ))
        }),
        _ => default.ok_or_else(|| config(format!("stage '{stage}': '{key}' is required"))),
    }
}

fn optional<'py, T: FromPyObjectOwned<'py>>(
    d: &Bound<'py, PyDict>,
    stage: &str,
    key: &str,
) -> PyResult<Option<T>> {
    match d.get_item(key)? {
        Some(v) if !v.is_none() => v.extract::<T>().map(Some).map_err(|_| {
            config(format!(
                "stage '{stage}': '{key}' must be a number, got {}",
                v.repr().map(|r| r.to_string()).unwrap_or_default()
            ))
        }),
        _ => Ok(None),
    }
}

fn stage_of(d: &Bound<'_, PyDict>) -> PyResult<PlanStage> {
    let name: String = field(d, "?", "name", None)?;
    let batch_size: i64 = field(d, &name, "batch_size", Some(1))?;
    let batch_size = usize::try_from(batch_size).map_err(|_| {
        config(format!(
            "stage '{name}': batch_size must be >= 1, got {batch_size}"
        ))
    })?;
    let num_workers: Option<i64> = optional(d, &name, "num_workers")?;
    Ok(PlanStage {
        batch_size,
        resources: Resources {
            cpus: field(d, &name, "cpus", Some(1.0))?,
            gpus: field(d, &name, "gpus", Some(0.0))?,
        },
        actor: field(d, &name, "actor", Some(false))?,
        fanout: field(d, &name, "fanout", Some(false))?,
        // `num_workers()` of 0 or less means "not set", as in Curator.
        num_workers: num_workers
            .and_then(|n| usize::try_from(n).ok())
            .filter(|&n| n > 0),
        min_workers: optional(d, &name, "min_workers")?,
        max_workers: optional(d, &name, "max_workers")?,
        initial_workers: optional(d, &name, "initial_workers")?,
        alone: field(d, &name, "alone", Some(false))?,
        name,
    })
}

fn positive(key: &str, value: i64) -> PyResult<usize> {
    usize::try_from(value)
        .ok()
        .filter(|&v| v > 0)
        .ok_or_else(|| config(format!("{key} must be >= 1, got {value}")))
}

/// Plan a Ray Data run: see `curator_core::planning`. `stages` are dicts (`name`, `batch_size`,
/// `cpus`, `gpus`, `actor`, `fanout`, `num_workers`, `min_workers`, `max_workers`,
/// `initial_workers`); `nodes` are `(id, cpus, gpus, free_cpus, free_gpus)`; `task_sizes` the bytes
/// of each initial task. Returns a dict: `segments` (dicts: `stages`, `actor`, `cpus`, `gpus`,
/// `pool` as `(min, max, initial)` or None, `batch_size`, `repartition`, `pack` as `(spread, batch,
/// max_rows, max_bytes)` or None), `blocks` (`(start, end)`),
/// `claims` (`(cpus, gpus)` per node), `fits`, `fused`, `warnings`.
#[pyfunction]
#[pyo3(signature = (
    stages, nodes, task_sizes, *, pool_size = None, exact_batches = false,
    fanout_tasks_per_block = None, max_tasks_per_block = 1024, target_block_bytes = 16_777_216,
))]
#[allow(clippy::too_many_arguments)]
fn plan_ray_data<'py>(
    py: Python<'py>,
    stages: Vec<Bound<'py, PyDict>>,
    nodes: Vec<(String, f64, f64, f64, f64)>,
    task_sizes: Vec<u64>,
    pool_size: Option<i64>,
    exact_batches: bool,
    fanout_tasks_per_block: Option<i64>,
    max_tasks_per_block: i64,
    target_block_bytes: i64,
) -> PyResult<Bound<'py, PyDict>> {
    let stages = stages.iter().map(stage_of).collect::<PyResult<Vec<_>>>()?;
    let nodes: Vec<PlanNode> = nodes
        .into_iter()
        .map(|(id, cpus, gpus, free_cpus, free_gpus)| PlanNode {
            id,
            cpus,
            gpus,
            free_cpus,
            free_gpus,
        })
        .collect();
    let settings = PlanSettings {
        pool_size: pool_size.map(|n| positive("pool_size", n)).transpose()?,
        exact_batches,
        fanout_tasks_per_block: fanout_tasks_per_block
            .map(|n| positive("fanout_tasks_per_block", n))
            .transpose()?,
        max_tasks_per_block: positive("max_tasks_per_block", max_tasks_per_block)?,
        target_block_bytes: positive("target_block_bytes", target_block_bytes)? as u64,
    };
    let plan = core_plan(&stages, &nodes, &settings, &task_sizes).map_err(PyCoreError)?;
    let segments = PyList::empty(py);
    for seg in &plan.segments {
        let d = PyDict::new(py);
        d.set_item("stages", seg.stages.clone())?;
        d.set_item("actor", seg.actor)?;
        d.set_item("cpus", seg.cpus)?;
        d.set_item("gpus", seg.gpus)?;
        d.set_item("pool", seg.pool.map(|p| (p.min, p.max, p.initial)))?;
        d.set_item("batch_size", seg.batch_size)?;
        d.set_item("repartition", seg.repartition)?;
        d.set_item(
            "pack",
            seg.pack
                .map(|p| (p.spread, p.batch, p.max_rows, p.max_bytes)),
        )?;
        segments.append(d)?;
    }
    let out = PyDict::new(py);
    out.set_item("segments", segments)?;
    out.set_item("blocks", plan.blocks)?;
    out.set_item("claims", plan.claims)?;
    out.set_item("fits", plan.fits)?;
    out.set_item("fused", plan.fused)?;
    out.set_item("warnings", plan.warnings)?;
    Ok(out)
}

/// Children in a fan-out call's next packed row (`curator_core::planning::Pack::rows`): `pack` as the
/// plan gives it, `packed` rows out before it, `arriving` children the call gave at once.
#[pyfunction]
fn pack_rows(pack: (usize, usize, usize, u64), packed: usize, arriving: usize) -> usize {
    let (spread, batch, max_rows, max_bytes) = pack;
    Pack {
        spread,
        batch,
        max_rows,
        max_bytes,
    }
    .rows(packed, arriving)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(plan_ray_data, m)?)?;
    m.add_function(wrap_pyfunction!(pack_rows, m)?)?;
    Ok(())
}
