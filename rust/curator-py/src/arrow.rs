//! Every Arrow <-> Python conversion of the extension, through the Arrow PyCapsule interface.
//!
//! Tables come in through `__arrow_c_array__` / `__arrow_c_stream__` (pyo3-arrow over arrow-rs) and go
//! back to Python as `pyarrow.Table`s through `__arrow_c_stream__`. Neither direction copies buffers: the
//! arrow-rs arrays point into pyarrow's memory (kept alive by the C release callbacks) and the exported
//! arrays point into the same memory again. Splitting is slicing, coalescing is regrouping whole batches.
//!
//! The one copy arrow-rs 59 still makes: exporting a slice whose validity bitmap starts in the middle
//! of a byte (row offset not a multiple of 8 from the bitmap's start) re-aligns that bitmap, i.e. it
//! writes `ceil(rows / 8)` bytes. Values, offsets and child buffers are never copied.
//! `split_by_bytes` cuts on such byte boundaries when it can; `split_by_rows` keeps exact row counts.
//!
//! Byte sizes count the bytes a table references ("referenced bytes"), see [`range_bytes`].

use std::mem::size_of;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::{Array, OffsetSizeTrait, RecordBatch};
use arrow_buffer::OffsetBuffer;
use arrow_schema::{DataType, Schema, SchemaRef};
use pyo3::prelude::*;
use pyo3::types::PyList;
use pyo3::{intern, Bound};
use pyo3_arrow::{PyRecordBatch, PyTable};

use crate::errors::value_error;

/// Work (in column slices or size look-ups, roughly 20-50 ns each) below which the GIL is kept:
/// releasing and re-acquiring it costs more than the work when other threads want it.
const DETACH_MIN_WORK: usize = 512;

/// Copied bytes above which `concat_to_single_batch` releases the GIL (about 10 µs of memcpy).
const DETACH_MIN_COPY_BYTES: usize = 64 * 1024;

// ---------------------------------------------------------------------------------------------------
// Referenced bytes
// ---------------------------------------------------------------------------------------------------

/// Bytes of a bitmap that rows `[bit_offset, bit_offset + len)` touch (whole bytes, like Arrow C++).
fn covering_bytes(bit_offset: usize, len: usize) -> usize {
    if len == 0 {
        return 0;
    }
    (bit_offset + len).div_ceil(8) - bit_offset / 8
}

/// Offsets `[offset, offset + len]` plus the value range they delimit.
fn offsets_and_range<O: OffsetSizeTrait>(
    offsets: &OffsetBuffer<O>,
    offset: usize,
    len: usize,
) -> (usize, usize, usize) {
    if len == 0 {
        return (0, 0, 0);
    }
    let start = offsets[offset].as_usize();
    let end = offsets[offset + len].as_usize();
    ((len + 1) * size_of::<O>(), start, end - start)
}

fn list_bytes<O: OffsetSizeTrait>(
    offsets: &OffsetBuffer<O>,
    values: &dyn Array,
    offset: usize,
    len: usize,
) -> usize {
    let (offset_bytes, start, count) = offsets_and_range(offsets, offset, len);
    offset_bytes + range_bytes(values, start, count)
}

fn binary_bytes<O: OffsetSizeTrait>(offsets: &OffsetBuffer<O>, offset: usize, len: usize) -> usize {
    let (offset_bytes, _, count) = offsets_and_range(offsets, offset, len);
    offset_bytes + count
}

/// Bytes that rows `[offset, offset + len)` of `array` reference.
///
/// Zero rows reference nothing. Otherwise counted: validity and boolean bitmaps by the whole bytes the rows touch; fixed-width values by
/// `len * width`; binary/string/list/map offsets as `len + 1` entries (none for `len == 0`) plus the
/// value bytes or child rows they delimit; struct and fixed-size-list children over the same rows;
/// dictionary keys over the rows plus the whole dictionary; view types as 16 bytes per view plus
/// all their data buffers (views may point anywhere in them). Union, run-end-encoded and list-view
/// arrays fall back to arrow-rs' `get_slice_memory_size` of the slice. Shared buffers count once
/// per reference. Validity bitmaps with no nulls are not counted: arrow-rs drops them on import.
pub(crate) fn range_bytes(array: &dyn Array, offset: usize, len: usize) -> usize {
    if len == 0 {
        return 0;
    }
    let validity = array
        .nulls()
        .map_or(0, |n| covering_bytes(n.offset() + offset, len));
    let data = match array.data_type() {
        DataType::Null => 0,
        DataType::Boolean => covering_bytes(array.as_boolean().values().offset() + offset, len),
        DataType::FixedSizeBinary(width) => len * (*width as usize),
        DataType::Utf8 => binary_bytes(array.as_string::<i32>().offsets(), offset, len),
        DataType::LargeUtf8 => binary_bytes(array.as_string::<i64>().offsets(), offset, len),
        DataType::Binary => binary_bytes(array.as_binary::<i32>().offsets(), offset, len),
        DataType::LargeBinary => binary_bytes(array.as_binary::<i64>().offsets(), offset, len),
        DataType::Utf8View | DataType::BinaryView => {
            let buffers: usize = match array.data_type() {
                DataType::Utf8View => array
                    .as_string_view()
                    .data_buffers()
                    .iter()
                    .map(|b| b.len())
                    .sum(),
                _ => array
                    .as_binary_view()
                    .data_buffers()
                    .iter()
                    .map(|b| b.len())
                    .sum(),
            };
            len * 16 + buffers
        }
        DataType::List(_) => {
            let list = array.as_list::<i32>();
            list_bytes(list.offsets(), list.values().as_ref(), offset, len)
        }
        DataType::LargeList(_) => {
            let list = array.as_list::<i64>();
            list_bytes(list.offsets(), list.values().as_ref(), offset, len)
        }
        DataType::Map(_, _) => {
            let map = array.as_map();
            list_bytes(map.offsets(), map.entries(), offset, len)
        }
        DataType::FixedSizeList(_, size) => {
            let size = *size as usize;
            range_bytes(
                array.as_fixed_size_list().values().as_ref(),
                offset * size,
                len * size,
            )
        }
        DataType::Struct(_) => array
            .as_struct()
            .columns()
            .iter()
            .map(|child| range_bytes(child.as_ref(), offset, len))
            .sum(),
        DataType::Dictionary(key, _) => {
            let dict = array.as_any_dictionary();
            len * key.primitive_width().unwrap_or(0) + array_bytes(dict.values().as_ref())
        }
        dt => match dt.primitive_width() {
            Some(width) => len * width,
            None => {
                let slice = array.slice(offset, len).to_data();
                let size = slice.get_slice_memory_size();
                // Validity was counted above; the fallback counts it again.
                size.unwrap_or_else(|_| slice.get_buffer_memory_size())
                    .saturating_sub(validity)
            }
        },
    };
    validity + data
}

/// Referenced bytes of a whole array (see [`range_bytes`]).
pub(crate) fn array_bytes(array: &dyn Array) -> usize {
    range_bytes(array, 0, array.len())
}

fn batch_range_bytes(batch: &RecordBatch, offset: usize, len: usize) -> usize {
    batch
        .columns()
        .iter()
        .map(|c| range_bytes(c.as_ref(), offset, len))
        .sum()
}

fn batch_bytes(batch: &RecordBatch) -> usize {
    batch_range_bytes(batch, 0, batch.num_rows())
}

fn batches_bytes(batches: &[RecordBatch]) -> usize {
    batches.iter().map(batch_bytes).sum()
}

fn batches_rows(batches: &[RecordBatch]) -> usize {
    batches.iter().map(RecordBatch::num_rows).sum()
}

// ---------------------------------------------------------------------------------------------------
// Splitting and coalescing (pure Rust, zero-copy)
// ---------------------------------------------------------------------------------------------------

/// Cuts `batches` into consecutive pieces of `max_rows` rows (the last may be shorter).
/// Pieces can span input batches; empty batches are dropped and no piece is empty.
pub(crate) fn split_rows(batches: &[RecordBatch], max_rows: usize) -> Vec<Vec<RecordBatch>> {
    assert!(max_rows > 0);
    let mut pieces = Vec::new();
    let mut piece = Vec::new();
    let mut room = max_rows;
    for batch in batches {
        let mut pos = 0;
        while pos < batch.num_rows() {
            let take = room.min(batch.num_rows() - pos);
            piece.push(slice(batch, pos, take));
            pos += take;
            room -= take;
            if room == 0 {
                pieces.push(std::mem::take(&mut piece));
                room = max_rows;
            }
        }
    }
    if !piece.is_empty() {
        pieces.push(piece);
    }
    pieces
}

/// Bit offset (mod 8) at which the batch's validity bitmaps start; cuts at rows where
/// `(phase + row) % 8 == 0` export their bitmaps without re-aligning them.
fn bitmap_phase(batch: &RecordBatch) -> Option<usize> {
    batch
        .columns()
        .iter()
        .find_map(|c| c.nulls().map(|n| n.offset() % 8))
}

/// Cuts `batches` into consecutive pieces of at most `max_bytes` referenced bytes each
/// (see [`range_bytes`]), greedily; a single row larger than `max_bytes` is a piece of its own.
/// Cuts inside a batch move back (at most 7 rows, at most half the piece) to a validity-bitmap
/// byte boundary, so that exporting the piece copies nothing.
pub(crate) fn split_bytes(batches: &[RecordBatch], max_bytes: usize) -> Vec<Vec<RecordBatch>> {
    assert!(max_bytes > 0);
    let mut pieces = Vec::new();
    let mut piece: Vec<RecordBatch> = Vec::new();
    let mut used = 0;
    for batch in batches {
        let rows = batch.num_rows();
        let phase = bitmap_phase(batch);
        let mut pos = 0;
        while pos < rows {
            let budget = max_bytes - used;
            let rest = batch_range_bytes(batch, pos, rows - pos);
            if rest <= budget {
                piece.push(slice(batch, pos, rows - pos));
                used += rest;
                break;
            }
            // Largest `take` in [0, rows - pos) whose bytes fit the budget (bytes grow with rows).
            let (mut lo, mut hi) = (0, rows - pos);
            while lo + 1 < hi {
                let mid = lo + (hi - lo) / 2;
                if batch_range_bytes(batch, pos, mid) <= budget {
                    lo = mid;
                } else {
                    hi = mid;
                }
            }
            let mut take = lo;
            if take == 0 {
                if !piece.is_empty() {
                    pieces.push(std::mem::take(&mut piece));
                    used = 0;
                    continue;
                }
                take = 1; // This row alone exceeds max_bytes.
            } else if let Some(phase) = phase {
                // Only when it costs at most half the piece: tiny pieces keep their size.
                let misalign = (phase + pos + take) % 8;
                let piece_rows = batches_rows(&piece) + take;
                // Never below zero: the misalignment may exceed `take` when the piece already
                // holds rows of earlier batches.
                if misalign <= take && 2 * misalign <= piece_rows {
                    take -= misalign; // Zero when the piece ends with the previous batch.
                }
            }
            if take > 0 {
                piece.push(slice(batch, pos, take));
                pos += take;
            }
            pieces.push(std::mem::take(&mut piece));
            used = 0;
        }
        if used >= max_bytes && !piece.is_empty() {
            pieces.push(std::mem::take(&mut piece));
            used = 0;
        }
    }
    if !piece.is_empty() {
        pieces.push(piece);
    }
    pieces
}

/// A whole input table of `coalesce`: its batches, rows and referenced bytes.
pub(crate) struct Part {
    batches: Vec<RecordBatch>,
    rows: usize,
    bytes: usize,
}

impl Part {
    fn new(batches: Vec<RecordBatch>) -> Self {
        let batches: Vec<_> = batches.into_iter().filter(|b| b.num_rows() > 0).collect();
        let rows = batches_rows(&batches);
        let bytes = batches_bytes(&batches);
        Self {
            batches,
            rows,
            bytes,
        }
    }
}

/// Groups consecutive parts greedily while the group stays within `max_rows` and `max_bytes`.
/// A part that alone exceeds a bound is a group of its own (parts are never split); empty parts
/// are dropped.
pub(crate) fn coalesce_parts(
    parts: Vec<Part>,
    max_rows: usize,
    max_bytes: usize,
) -> Vec<Vec<RecordBatch>> {
    let mut groups = Vec::new();
    let mut group: Vec<RecordBatch> = Vec::new();
    let (mut rows, mut bytes) = (0usize, 0usize);
    for part in parts.into_iter().filter(|p| p.rows > 0) {
        let fits = rows + part.rows <= max_rows && bytes.saturating_add(part.bytes) <= max_bytes;
        if !group.is_empty() && !fits {
            groups.push(std::mem::take(&mut group));
            (rows, bytes) = (0, 0);
        }
        rows += part.rows;
        bytes = bytes.saturating_add(part.bytes);
        group.extend(part.batches);
    }
    if !group.is_empty() {
        groups.push(group);
    }
    groups
}

fn slice(batch: &RecordBatch, offset: usize, len: usize) -> RecordBatch {
    if offset == 0 && len == batch.num_rows() {
        batch.clone()
    } else {
        batch.slice(offset, len)
    }
}

/// Describes how `other` differs from `first` (field names, types, nullability), or `None` when they
/// describe the same columns. Schema-level metadata is ignored.
pub(crate) fn schema_mismatch(first: &Schema, other: &Schema) -> Option<String> {
    let names = |s: &Schema| {
        s.fields()
            .iter()
            .map(|f| f.name().clone())
            .collect::<Vec<_>>()
    };
    if names(first) != names(other) {
        return Some(format!(
            "columns {:?} differ from {:?}",
            names(other),
            names(first)
        ));
    }
    for (a, b) in first.fields().iter().zip(other.fields().iter()) {
        if !a.data_type().equals_datatype(b.data_type()) {
            return Some(format!(
                "column '{}' has type {} instead of {}",
                b.name(),
                b.data_type(),
                a.data_type()
            ));
        }
        if a.is_nullable() != b.is_nullable() {
            return Some(format!(
                "column '{}' is {}nullable, unlike the first table",
                b.name(),
                if b.is_nullable() { "" } else { "not " }
            ));
        }
    }
    None
}

// ---------------------------------------------------------------------------------------------------
// Python boundary
// ---------------------------------------------------------------------------------------------------

/// Batches and schema imported from any Arrow PyCapsule producer, without copying.
struct Imported {
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
}

impl Imported {
    fn columns(&self) -> usize {
        self.schema.fields().len().max(1)
    }
}

/// Imports a `RecordBatch`-like object (`__arrow_c_array__`, one batch) or a table/stream
/// (`__arrow_c_stream__`; a `RecordBatchReader` is consumed).
fn import(obj: &Bound<'_, PyAny>) -> PyResult<Imported> {
    let py = obj.py();
    if obj.hasattr(intern!(py, "__arrow_c_array__"))? {
        let batch = obj.extract::<PyRecordBatch>()?.into_inner();
        return Ok(Imported {
            schema: batch.schema(),
            batches: vec![batch],
        });
    }
    if obj.hasattr(intern!(py, "__arrow_c_stream__"))? {
        let (batches, schema) = obj.extract::<PyTable>()?.into_inner();
        return Ok(Imported { schema, batches });
    }
    Err(value_error(format!(
        "expected an Arrow table or record batch (an object with __arrow_c_stream__ or \
         __arrow_c_array__), got {}",
        obj.get_type().name()?
    )))
}

/// Exports batches as one `pyarrow.Table` (each batch one chunk), without copying.
///
/// Goes through `pyarrow.RecordBatchReader.from_stream(..).read_all()`: the same C stream import as
/// `pyarrow.table(..)`, minus that function's checks for other input types (half the cost).
fn export<'py>(
    py: Python<'py>,
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
) -> PyResult<Bound<'py, PyAny>> {
    let table = Bound::new(py, PyTable::try_new(batches, schema)?)?;
    py.import(intern!(py, "pyarrow"))?
        .getattr(intern!(py, "RecordBatchReader"))?
        .call_method1(intern!(py, "from_stream"), (table,))?
        .call_method0(intern!(py, "read_all"))
}

/// Exports pieces (lists of non-empty batches) as `pyarrow.Table`s, without copying.
///
/// All batches cross in one C stream (its schema is imported once), then pyarrow regroups them
/// per piece with `Table.from_batches` (a few µs a piece, less than one more stream import each).
fn export_list<'py>(
    py: Python<'py>,
    schema: &SchemaRef,
    pieces: Vec<Vec<RecordBatch>>,
) -> PyResult<Bound<'py, PyList>> {
    if pieces.is_empty() {
        return Ok(PyList::empty(py));
    }
    let counts: Vec<usize> = pieces.iter().map(Vec::len).collect();
    let all: Vec<RecordBatch> = pieces.into_iter().flatten().collect();
    let total = all.len();
    let table = export(py, schema.clone(), all)?;
    let batches = table
        .call_method0(intern!(py, "to_batches"))?
        .cast_into::<PyList>()?;
    if batches.len() != total {
        return Err(value_error(format!(
            "pyarrow returned {} record batches for {total} exported ones",
            batches.len()
        )));
    }
    let table_type = table.get_type();
    let table_schema = table.getattr(intern!(py, "schema"))?;
    let mut start = 0;
    let mut tables = Vec::with_capacity(counts.len());
    for count in counts {
        let group = batches.get_slice(start, start + count);
        start += count;
        tables.push(table_type.call_method1(intern!(py, "from_batches"), (group, &table_schema))?);
    }
    PyList::new(py, tables)
}

/// Runs `f` without the GIL when `detach` (the work is worth more than releasing the GIL).
fn maybe_detach<T: Send>(py: Python<'_>, detach: bool, f: impl FnOnce() -> T + Send) -> T {
    if detach {
        py.detach(f)
    } else {
        f()
    }
}

fn positive(name: &str, value: i64) -> PyResult<usize> {
    if value < 1 {
        return Err(value_error(format!(
            "{name} must be at least 1, got {value}"
        )));
    }
    usize::try_from(value).map_err(|_| value_error(format!("{name} is too large: {value}")))
}

/// Referenced bytes of an Arrow table or record batch (see `nemo_curator.arrow_bridge`).
#[pyfunction]
fn table_nbytes(py: Python<'_>, table: &Bound<'_, PyAny>) -> PyResult<usize> {
    let t = import(table)?;
    let work = t.batches.len() * t.columns();
    Ok(maybe_detach(py, work >= DETACH_MIN_WORK, || {
        batches_bytes(&t.batches)
    }))
}

/// Number of rows of an Arrow table or record batch.
#[pyfunction]
fn table_num_rows(table: &Bound<'_, PyAny>) -> PyResult<usize> {
    Ok(batches_rows(&import(table)?.batches))
}

/// Imports and exports again: a `pyarrow.Table` over the same buffers.
#[pyfunction]
fn roundtrip<'py>(py: Python<'py>, table: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    let t = import(table)?;
    export(py, t.schema, t.batches)
}

/// Zero-copy pieces of at most `max_rows` rows each.
#[pyfunction]
fn split_by_rows<'py>(
    py: Python<'py>,
    table: &Bound<'py, PyAny>,
    max_rows: i64,
) -> PyResult<Bound<'py, PyList>> {
    let max_rows = positive("max_rows", max_rows)?;
    let t = import(table)?;
    let pieces_estimate = batches_rows(&t.batches) / max_rows + t.batches.len();
    let work = pieces_estimate * t.columns();
    let pieces = maybe_detach(py, work >= DETACH_MIN_WORK, || {
        split_rows(&t.batches, max_rows)
    });
    export_list(py, &t.schema, pieces)
}

/// Zero-copy pieces of at most `max_bytes` referenced bytes each.
#[pyfunction]
fn split_by_bytes<'py>(
    py: Python<'py>,
    table: &Bound<'py, PyAny>,
    max_bytes: i64,
) -> PyResult<Bound<'py, PyList>> {
    let max_bytes = positive("max_bytes", max_bytes)?;
    let t = import(table)?;
    let rows = batches_rows(&t.batches);
    // Each cut costs a binary search over the rows; guess the cut count from rows and batches.
    let search = usize::BITS as usize - rows.leading_zeros() as usize + 1;
    let work = (t.batches.len() + rows.min(64)) * search * t.columns();
    let pieces = maybe_detach(py, work >= DETACH_MIN_WORK, || {
        split_bytes(&t.batches, max_bytes)
    });
    export_list(py, &t.schema, pieces)
}

/// Groups consecutive tables into multi-chunk tables within the given bounds, without copying.
#[pyfunction]
#[pyo3(signature = (tables, max_rows=None, max_bytes=None))]
fn coalesce<'py>(
    py: Python<'py>,
    tables: Vec<Bound<'py, PyAny>>,
    max_rows: Option<i64>,
    max_bytes: Option<i64>,
) -> PyResult<Bound<'py, PyList>> {
    let max_rows = max_rows.map(|v| positive("max_rows", v)).transpose()?;
    let max_bytes = max_bytes.map(|v| positive("max_bytes", v)).transpose()?;
    let imported = tables.iter().map(import).collect::<PyResult<Vec<_>>>()?;
    let Some(schema) = imported.first().map(|t| t.schema.clone()) else {
        return Ok(PyList::empty(py));
    };
    for (i, t) in imported.iter().enumerate().skip(1) {
        if let Some(why) = schema_mismatch(&schema, &t.schema) {
            return Err(value_error(format!(
                "coalesce: table {i} does not match the schema of table 0: {why}"
            )));
        }
    }
    let work: usize = imported.iter().map(|t| t.batches.len() * t.columns()).sum();
    let groups = maybe_detach(py, work >= DETACH_MIN_WORK, || {
        let parts = imported
            .into_iter()
            .map(|t| Part::new(with_schema(&schema, t.batches)))
            .collect();
        coalesce_parts(
            parts,
            max_rows.unwrap_or(usize::MAX),
            max_bytes.unwrap_or(usize::MAX),
        )
    });
    export_list(py, &schema, groups)
}

/// Puts batches under `schema` (same columns, possibly other metadata) by sharing their columns.
fn with_schema(schema: &SchemaRef, batches: Vec<RecordBatch>) -> Vec<RecordBatch> {
    batches
        .into_iter()
        .map(|b| {
            if Arc::ptr_eq(&b.schema(), schema) || b.schema_ref().as_ref() == schema.as_ref() {
                return b;
            }
            // Same columns (checked by the caller): only metadata or nested field names differ.
            // Should arrow-rs still refuse, the batch keeps its schema; pyarrow then reads it
            // under the first table's schema, which describes the same buffers.
            RecordBatch::try_new_with_options(
                schema.clone(),
                b.columns().to_vec(),
                &arrow_array::RecordBatchOptions::new().with_row_count(Some(b.num_rows())),
            )
            .unwrap_or(b)
        })
        .collect()
}

/// One-chunk `pyarrow.Table` with all rows: returned as is when it already has one batch,
/// otherwise the only function of this module that copies (the referenced rows, into new buffers).
#[pyfunction]
fn concat_to_single_batch<'py>(
    py: Python<'py>,
    table: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyAny>> {
    let t = import(table)?;
    let mut batches: Vec<_> = t.batches.into_iter().filter(|b| b.num_rows() > 0).collect();
    if batches.len() <= 1 {
        let batch = batches
            .pop()
            .unwrap_or_else(|| RecordBatch::new_empty(t.schema.clone()));
        return export(py, t.schema, vec![batch]);
    }
    let detach = batches_bytes(&batches) >= DETACH_MIN_COPY_BYTES;
    let schema = t.schema.clone();
    let batch = maybe_detach(py, detach, move || {
        arrow_select::concat::concat_batches(&schema, &batches)
    })
    .map_err(|e| value_error(format!("concat_to_single_batch: {e}")))?;
    export(py, t.schema, vec![batch])
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(table_nbytes, m)?)?;
    m.add_function(wrap_pyfunction!(table_num_rows, m)?)?;
    m.add_function(wrap_pyfunction!(roundtrip, m)?)?;
    m.add_function(wrap_pyfunction!(split_by_rows, m)?)?;
    m.add_function(wrap_pyfunction!(split_by_bytes, m)?)?;
    m.add_function(wrap_pyfunction!(coalesce, m)?)?;
    m.add_function(wrap_pyfunction!(concat_to_single_batch, m)?)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::types::Int64Type;
    use arrow_array::{ArrayRef, Int64Array, ListArray, StringArray, StructArray};
    use arrow_schema::Field;

    fn batch(values: &[Option<i64>], strings: &[Option<&str>]) -> RecordBatch {
        let ints: ArrayRef = Arc::new(Int64Array::from(values.to_vec()));
        let strs: ArrayRef = Arc::new(StringArray::from(strings.to_vec()));
        RecordBatch::try_from_iter_with_nullable([("i", ints, true), ("s", strs, true)]).unwrap()
    }

    fn ints(n: i64) -> RecordBatch {
        let values: Vec<Option<i64>> = (0..n).map(|v| (v % 3 != 0).then_some(v)).collect();
        let strings: Vec<Option<&str>> = (0..n).map(|v| (v % 2 == 0).then_some("abc")).collect();
        batch(&values, &strings)
    }

    fn rows(pieces: &[Vec<RecordBatch>]) -> Vec<usize> {
        pieces.iter().map(|p| batches_rows(p)).collect()
    }

    #[test]
    fn covering_bytes_counts_touched_bytes() {
        assert_eq!(covering_bytes(0, 10), 2);
        assert_eq!(covering_bytes(7, 2), 2);
        assert_eq!(covering_bytes(8, 8), 1);
        assert_eq!(covering_bytes(5, 0), 0);
    }

    #[test]
    fn range_bytes_of_primitive_string_and_list() {
        let i = Int64Array::from(vec![Some(1), None, Some(3)]);
        assert_eq!(array_bytes(&i), 3 * 8 + 1);
        let no_nulls = Int64Array::from(vec![1, 2, 3]);
        assert_eq!(array_bytes(&no_nulls), 24);
        let s = StringArray::from(vec![Some("ab"), None, Some("cde")]);
        assert_eq!(array_bytes(&s), 4 * 4 + 5 + 1);
        assert_eq!(range_bytes(&s, 1, 2), 3 * 4 + 3 + 1);
        assert_eq!(range_bytes(&s, 1, 0), 0);
        let l = ListArray::from_iter_primitive::<Int64Type, _, _>(vec![
            Some(vec![Some(1), Some(2)]),
            None,
            Some(vec![Some(3)]),
        ]);
        assert_eq!(array_bytes(&l), 4 * 4 + 1 + 3 * 8);
        assert_eq!(range_bytes(&l, 2, 1), 2 * 4 + 1 + 8);
        let st = StructArray::from(vec![(
            Arc::new(Field::new("x", DataType::Int64, false)),
            Arc::new(no_nulls) as ArrayRef,
        )]);
        assert_eq!(range_bytes(&st, 1, 2), 16);
    }

    #[test]
    fn slice_bytes_match_range_bytes() {
        let b = ints(50);
        for (offset, len) in [(0, 50), (3, 20), (17, 1), (49, 1)] {
            assert_eq!(
                batch_bytes(&b.slice(offset, len)),
                batch_range_bytes(&b, offset, len)
            );
        }
    }

    #[test]
    fn split_rows_spans_batches_and_keeps_order() {
        let batches = vec![ints(3), ints(0), ints(3), ints(3)];
        let pieces = split_rows(&batches, 5);
        assert_eq!(rows(&pieces), vec![5, 4]);
        assert_eq!(pieces[0].len(), 2);
        assert_eq!(pieces[0][1].num_rows(), 2);
        assert!(split_rows(&[ints(0)], 3).is_empty());
    }

    #[test]
    fn split_bytes_respects_bound_and_single_large_rows() {
        let b = ints(100);
        let total = batch_bytes(&b);
        let pieces = split_bytes(std::slice::from_ref(&b), total / 4);
        assert_eq!(rows(&pieces).iter().sum::<usize>(), 100);
        for p in &pieces {
            assert!(batches_bytes(p) <= total / 4);
            assert!(batches_rows(p) > 0);
        }
        // Every cut but the last lands on a validity-bitmap byte boundary.
        let mut end = 0;
        for p in &pieces[..pieces.len() - 1] {
            end += batches_rows(p);
            assert_eq!(end % 8, 0, "cut at row {end}");
        }
        let singles = split_bytes(&[b], 1);
        assert_eq!(singles.len(), 100);
    }

    #[test]
    fn coalesce_groups_greedily() {
        let parts = [3, 0, 3, 3, 10, 1]
            .iter()
            .map(|&n| Part::new(vec![ints(n)]))
            .collect();
        let groups = coalesce_parts(parts, 6, usize::MAX);
        assert_eq!(rows(&groups), vec![6, 3, 10, 1]);
    }

    #[test]
    fn schema_mismatch_names_the_column() {
        let a = ints(1).schema();
        let b = batch(&[Some(1)], &[Some("x")]).schema();
        assert!(schema_mismatch(&a, &b).is_none());
        let other = Schema::new(vec![
            Field::new("i", DataType::Int32, true),
            Field::new("s", DataType::Utf8, true),
        ]);
        let why = schema_mismatch(&a, &other).unwrap();
        assert!(why.contains("'i'") && why.contains("Int32"), "{why}");
    }
}
