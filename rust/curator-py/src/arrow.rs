//! Every Arrow <-> Python conversion of the extension, through the Arrow PyCapsule interface.
//!
//! Tables come in through `__arrow_c_array__` / `__arrow_c_stream__` (pyo3-arrow over arrow-rs) and go
//! back to Python as `pyarrow.Table`s through `__arrow_c_stream__`. Neither direction copies buffers: the
//! arrow-rs arrays point into pyarrow's memory (kept alive by the C release callbacks) and the exported
//! arrays point into the same memory again. The task codec (`codec.rs`) imports task tables and blocks
//! and exports blocks and decoded tables through here.
//!
//! The one copy arrow-rs 59 still makes: exporting a slice whose validity bitmap starts in the middle
//! of a byte (row offset not a multiple of 8 from the bitmap's start) re-aligns that bitmap, i.e. it
//! writes `ceil(rows / 8)` bytes. Values, offsets and child buffers are never copied.
//!
//! Byte sizes count the bytes a table references ("referenced bytes"), see [`range_bytes`].

use std::mem::size_of;

use arrow_array::cast::AsArray;
use arrow_array::{Array, OffsetSizeTrait, RecordBatch};
use arrow_buffer::OffsetBuffer;
use arrow_schema::{DataType, SchemaRef};
use pyo3::prelude::*;
use pyo3::{intern, Bound};
use pyo3_arrow::{PyRecordBatch, PyTable};

use crate::errors::value_error;

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

pub(crate) fn batches_bytes(batches: &[RecordBatch]) -> usize {
    batches.iter().map(batch_bytes).sum()
}

// ---------------------------------------------------------------------------------------------------
// Python boundary
// ---------------------------------------------------------------------------------------------------

/// Batches and schema imported from any Arrow PyCapsule producer, without copying.
pub(crate) struct Imported {
    pub(crate) schema: SchemaRef,
    pub(crate) batches: Vec<RecordBatch>,
}

/// Imports a `RecordBatch`-like object (`__arrow_c_array__`, one batch) or a table/stream
/// (`__arrow_c_stream__`; a `RecordBatchReader` is consumed).
pub(crate) fn import(obj: &Bound<'_, PyAny>) -> PyResult<Imported> {
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
pub(crate) fn export<'py>(
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

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::types::Int64Type;
    use arrow_array::{ArrayRef, Int64Array, ListArray, StringArray, StructArray};
    use arrow_schema::Field;
    use std::sync::Arc;

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
}
