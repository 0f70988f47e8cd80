//! The Ray Data executor's task codec: a list of tasks <-> one Arrow block, one row per task.
//!
//! A block holds many tasks, so Ray Data moves few objects, sees true byte sizes (its backpressure
//! works) and counts rows as tasks (`batch_size` means tasks). Columns:
//!
//! - `_kind` (int8): [`ROW_TASK`], or [`ROW_LEDGER`] for a row that only carries accounting;
//! - `_task_id`, `_dataset_name` (string), `_task_class` ("module:qualname", dictionary-encoded);
//! - `_format` (int8): how `_payload` holds the task:
//!   [`FMT_ARROW`]: `data` is a `pyarrow.Table`, written as an Arrow IPC stream; reading maps it back
//!   without copying (its buffers are slices of the block's `_payload` buffer);
//!   [`FMT_PANDAS`]: `data` is a `pandas.DataFrame`, converted once to Arrow (pandas metadata keeps
//!   index and dtypes) and back to pandas when read;
//!   [`FMT_PICKLE`]: any other task, pickled whole;
//!   [`FMT_STORED`]: the task is element `position` of the list stored as object `index` of the
//!   lists the reader is given (two u32 LE in `_payload`): how the initial tasks enter, so the driver
//!   copies them once (into the object store) instead of twice;
//! - `_fields` (large_binary): for Arrow/pandas rows, the task's other attributes pickled
//!   (`_metadata`, `_stage_perf`, `_uuid` and subclass fields such as `reader_config`);
//! - `_payload` (large_binary): IPC stream, pickle or stored position. Every value starts at a
//!   64-byte boundary of the column's data buffer and carries trailing zero padding, which every
//!   reader ignores (pickle stops at its STOP opcode, IPC at its end marker). Padding every value,
//!   not only those before IPC streams, keeps the streams aligned when Ray Data slices blocks and
//!   concatenates the slices into new buffers;
//! - `_ledger` / `_failures` (binary, null but on the first row): the encoded
//!   `nemo_curator._core.Ledger` of what a worker call and the calls upstream of it did, and the
//!   pickled failure records of batches skipped under `ignore_failures`.
//!
//! Decoding rebuilds each task as an instance of its own class without running `__init__` (no
//! validation warnings, no new `_uuid`): every attribute comes back as it was. Tasks whose class
//! cannot be rebuilt that way (slots, custom pickling, classes local to a function or `__main__`)
//! are pickled whole, with `ray.cloudpickle` when the standard pickle refuses them.
//!
//! Arrays are built directly: one pass over the tasks, one buffer per column, all payloads written
//! into one 64-byte aligned buffer (the single copy of the data). Python is called only for what
//! only Python knows: attribute reads, pickling and building the task objects.

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use arrow_array::builder::{LargeBinaryBuilder, StringBuilder};
use arrow_array::cast::AsArray;
use arrow_array::types::Int32Type;
use arrow_array::{
    Array, ArrayRef, BinaryArray, DictionaryArray, Int32Array, Int8Array, LargeBinaryArray,
    RecordBatch, StringArray,
};
use arrow_buffer::{Buffer, MutableBuffer, OffsetBuffer, ScalarBuffer};
use arrow_ipc::reader::FileDecoder;
use arrow_ipc::writer::{IpcWriteOptions, StreamWriter};
use arrow_ipc::{Block, MessageHeader};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use pyo3::create_exception;
use pyo3::exceptions::{PyAttributeError, PyTypeError, PyValueError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple, PyType};

use crate::arrow::{batches_bytes, export, import, Imported};
use crate::errors::CuratorCoreError;

create_exception!(nemo_curator._core, CodecError, CuratorCoreError);

pub(crate) const ROW_TASK: i8 = 0;
pub(crate) const ROW_LEDGER: i8 = 1;

pub(crate) const FMT_ARROW: i8 = 0;
pub(crate) const FMT_PANDAS: i8 = 1;
pub(crate) const FMT_PICKLE: i8 = 2;
pub(crate) const FMT_STORED: i8 = 3;

const ALIGN: usize = 64;
/// Payload bytes above which writing an IPC stream releases the GIL (about 10 µs of copying).
const DETACH_MIN_BYTES: usize = 64 * 1024;
/// Attributes stored in their own columns (or as the payload) rather than in `_fields`.
const COLUMN_ATTRS: [&str; 3] = ["task_id", "dataset_name", "data"];

const COLUMNS: [&str; 9] = [
    "_kind",
    "_task_id",
    "_dataset_name",
    "_task_class",
    "_format",
    "_fields",
    "_payload",
    "_ledger",
    "_failures",
];

pub(crate) fn block_schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            let dict = DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8));
            Arc::new(Schema::new(vec![
                Field::new(COLUMNS[0], DataType::Int8, false),
                Field::new(COLUMNS[1], DataType::Utf8, true),
                Field::new(COLUMNS[2], DataType::Utf8, true),
                Field::new(COLUMNS[3], dict, true),
                Field::new(COLUMNS[4], DataType::Int8, true),
                Field::new(COLUMNS[5], DataType::LargeBinary, true),
                Field::new(COLUMNS[6], DataType::LargeBinary, true),
                Field::new(COLUMNS[7], DataType::Binary, true),
                Field::new(COLUMNS[8], DataType::Binary, true),
            ]))
        })
        .clone()
}

fn codec_error(msg: impl Into<String>) -> PyErr {
    CodecError::new_err(msg.into())
}

// ---------------------------------------------------------------------------------------------------
// Arrow IPC streams inside the payload buffer (pure Rust)
// ---------------------------------------------------------------------------------------------------

/// `std::io::Write` into a 64-byte aligned buffer.
struct Sink<'a>(&'a mut MutableBuffer);

impl Write for Sink<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Appends `batches` to `out` as one IPC stream (with its end marker). Every IPC message is a
/// multiple of 64 bytes, so when the stream starts 64-byte aligned all its buffers are.
pub(crate) fn write_ipc_stream(
    out: &mut MutableBuffer,
    schema: &Schema,
    batches: &[RecordBatch],
) -> Result<(), String> {
    let mut writer =
        StreamWriter::try_new_with_options(Sink(out), schema, IpcWriteOptions::default())
            .map_err(|e| e.to_string())?;
    for batch in batches {
        writer.write(batch).map_err(|e| e.to_string())?;
    }
    writer.finish().map_err(|e| e.to_string())
}

fn u32_at(buf: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(buf[at..at + 4].try_into().expect("4 bytes"))
}

/// Reads an IPC stream written by [`write_ipc_stream`] from the front of `buf` without copying: the
/// batches' buffers are slices of `buf` (when it is aligned for their types; arrow-rs copies
/// misaligned buffers). Stops at the end marker or at zero padding.
///
/// The framing and the arrays (UTF-8, offsets) are checked: a value cut short or corrupted is an
/// error, not a read past its end.
pub(crate) fn read_ipc_stream(buf: &Buffer) -> Result<(SchemaRef, Vec<RecordBatch>), String> {
    const CONTINUATION: u32 = 0xFFFF_FFFF;
    let mut decoder: Option<FileDecoder> = None;
    let mut schema: Option<SchemaRef> = None;
    let mut batches = Vec::new();
    let mut pos = 0;
    while pos + 4 <= buf.len() {
        let (meta_len, meta_start) = match u32_at(buf, pos) {
            CONTINUATION if pos + 8 <= buf.len() => (u32_at(buf, pos + 4) as usize, pos + 8),
            CONTINUATION => return Err("IPC stream ends inside a message header".into()),
            legacy => (legacy as usize, pos + 4),
        };
        if meta_len == 0 {
            break; // End marker (or the zero padding after a stream that has none).
        }
        let meta_end = meta_start + meta_len;
        if meta_end > buf.len() {
            return Err(format!(
                "IPC message of {meta_len} bytes at {pos} runs past the value"
            ));
        }
        let message = arrow_ipc::root_as_message(&buf[meta_start..meta_end])
            .map_err(|e| format!("invalid IPC message at {pos}: {e}"))?;
        let body_len = usize::try_from(message.bodyLength())
            .map_err(|_| format!("negative IPC body length at {pos}"))?;
        let end = meta_end + body_len;
        if end > buf.len() {
            return Err(format!(
                "IPC body of {body_len} bytes at {meta_end} runs past the value"
            ));
        }
        let block = Block::new(0, (meta_end - pos) as i32, body_len as i64);
        let framed = buf.slice_with_length(pos, end - pos);
        match (message.header_type(), decoder.as_mut()) {
            (MessageHeader::Schema, None) => {
                let fb = message.header_as_schema().expect("schema header");
                let s = Arc::new(arrow_ipc::convert::fb_to_schema(fb));
                // Validated as it is read (UTF-8, offsets): a block is data from another process,
                // and the check costs ~0.1 ms per MB, small next to moving the block at all.
                let d = FileDecoder::new(s.clone(), message.version());
                (schema, decoder) = (Some(s), Some(d));
            }
            (MessageHeader::DictionaryBatch, Some(d)) => {
                d.read_dictionary(&block, &framed)
                    .map_err(|e| e.to_string())?;
            }
            (MessageHeader::RecordBatch, Some(d)) => {
                if let Some(batch) = d
                    .read_record_batch(&block, &framed)
                    .map_err(|e| e.to_string())?
                {
                    batches.push(batch);
                }
            }
            (other, _) => return Err(format!("unexpected IPC message {other:?} at {pos}")),
        }
        pos = end;
    }
    let schema = schema.ok_or("IPC stream without a schema")?;
    Ok((schema, batches))
}

// ---------------------------------------------------------------------------------------------------
// Python helpers (imports and class look-ups are cached)
// ---------------------------------------------------------------------------------------------------

static PICKLE_DUMPS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static PICKLE_LOADS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static PICKLING_ERROR: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static PA_TABLE: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static OBJECT: PyOnceLock<Py<PyType>> = PyOnceLock::new();

fn dumps<'py>(obj: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyBytes>> {
    let py = obj.py();
    let pickled = PICKLE_DUMPS.import(py, "pickle", "dumps")?.call1((obj, 5));
    match pickled {
        Ok(bytes) => Ok(bytes.cast_into::<PyBytes>()?),
        Err(err) => {
            let refused = PICKLING_ERROR.import(py, "pickle", "PicklingError")?;
            let types = (
                refused.clone(),
                py.get_type::<PyAttributeError>(),
                py.get_type::<PyTypeError>(),
            );
            if !err.matches(py, types)? {
                return Err(err);
            }
            // Classes or functions defined in `__main__` or inside functions: pickled by value.
            let cloudpickle = py.import(intern!(py, "ray.cloudpickle"))?;
            Ok(cloudpickle
                .call_method1(intern!(py, "dumps"), (obj, 5))?
                .cast_into::<PyBytes>()?)
        }
    }
}

fn loads<'py>(py: Python<'py>, data: &[u8]) -> PyResult<Bound<'py, PyAny>> {
    PICKLE_LOADS
        .import(py, "pickle", "loads")?
        .call1((PyBytes::new(py, data),))
}

/// "module:qualname" of a class.
fn class_name(cls: &Bound<'_, PyType>) -> PyResult<String> {
    let py = cls.py();
    let module: String = cls.getattr(intern!(py, "__module__"))?.extract()?;
    let qualname: String = cls.getattr(intern!(py, "__qualname__"))?.extract()?;
    Ok(format!("{module}:{qualname}"))
}

/// Classes by name, resolved once per process (the classes stay alive in this cache).
static RESOLVED: Mutex<Option<HashMap<String, Py<PyType>>>> = Mutex::new(None);

fn resolve<'py>(py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyType>> {
    // The lock is never held across a Python call.
    if let Some(cls) = RESOLVED
        .lock()
        .expect("lock")
        .as_ref()
        .and_then(|m| m.get(name))
    {
        return Ok(cls.bind(py).clone());
    }
    let cannot = |e: PyErr| codec_error(format!("task class {name} cannot be imported here: {e}"));
    let (module, qualname) = name
        .split_once(':')
        .ok_or_else(|| codec_error(format!("task class name {name:?} is not 'module:qualname'")))?;
    let mut obj = py.import(module).map_err(cannot)?.into_any();
    for part in qualname.split('.') {
        obj = obj.getattr(part).map_err(cannot)?;
    }
    let cls = obj
        .cast_into::<PyType>()
        .map_err(|e| codec_error(format!("task class {name} is not a class: {e}")))?;
    RESOLVED
        .lock()
        .expect("lock")
        .get_or_insert_with(HashMap::new)
        .insert(name.to_owned(), cls.clone().unbind());
    Ok(cls)
}

/// What encoding needs to know about a task class.
#[derive(Clone)]
struct ClassInfo {
    name: Arc<str>,
    /// Instances can be rebuilt from their attributes and the class's name.
    by_name: bool,
}

/// Class facts by type object address (the classes stay alive in this cache, so addresses are not reused).
type ClassCache = HashMap<usize, (Py<PyType>, ClassInfo)>;
static CLASSES: Mutex<Option<ClassCache>> = Mutex::new(None);

fn class_info(cls: &Bound<'_, PyType>) -> PyResult<ClassInfo> {
    let key = cls.as_ptr() as usize;
    if let Some((_, info)) = CLASSES
        .lock()
        .expect("lock")
        .as_ref()
        .and_then(|m| m.get(&key))
    {
        return Ok(info.clone());
    }
    let name = class_name(cls)?;
    let by_name = rebuilt_by_name(cls, &name)?;
    let info = ClassInfo {
        name: name.into(),
        by_name,
    };
    CLASSES
        .lock()
        .expect("lock")
        .get_or_insert_with(HashMap::new)
        .insert(key, (cls.clone().unbind(), info.clone()));
    Ok(info)
}

/// Whether instances of `cls` are plain attribute holders that `resolve(name)` finds again.
fn rebuilt_by_name(cls: &Bound<'_, PyType>, name: &str) -> PyResult<bool> {
    let py = cls.py();
    if name.contains("<locals>") || name.starts_with("__main__:") {
        return Ok(false);
    }
    // Empty `__slots__` (ABC, Generic) still leave a `__dict__`; real slots would not be in it.
    for c in cls.getattr(intern!(py, "__mro__"))?.try_iter()? {
        let slots = c?
            .getattr(intern!(py, "__dict__"))?
            .call_method1(intern!(py, "get"), (intern!(py, "__slots__"),))?;
        if slots.is_truthy()? {
            return Ok(false);
        }
    }
    let object = OBJECT.import(py, "builtins", "object")?;
    let default_reduce_ex = object.getattr(intern!(py, "__reduce_ex__"))?;
    match cls.getattr_opt(intern!(py, "__reduce_ex__"))? {
        Some(reduce_ex) if reduce_ex.is(&default_reduce_ex) => {}
        _ => return Ok(false),
    }
    let default_getstate = object.getattr(intern!(py, "__getstate__"))?;
    if let Some(getstate) = cls.getattr_opt(intern!(py, "__getstate__"))? {
        if !getstate.is(&default_getstate) {
            return Ok(false);
        }
    }
    if cls.hasattr(intern!(py, "__setstate__"))? {
        return Ok(false);
    }
    Ok(matches!(resolve(py, name), Ok(found) if found.is(cls)))
}

/// `pandas.DataFrame` once pandas was imported (a frame cannot exist before); cached from then on.
fn pandas_frame_type(py: Python<'_>) -> PyResult<Option<Bound<'_, PyAny>>> {
    static FRAME: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    if let Some(frame) = FRAME.get(py) {
        return Ok(Some(frame.bind(py).clone()));
    }
    let modules = py
        .import(intern!(py, "sys"))?
        .getattr(intern!(py, "modules"))?;
    match modules.cast::<PyDict>()?.get_item(intern!(py, "pandas"))? {
        Some(pandas) => {
            let frame = pandas.getattr(intern!(py, "DataFrame"))?;
            let _ = FRAME.set(py, frame.clone().unbind());
            Ok(Some(frame))
        }
        None => Ok(None),
    }
}

/// Whether Arrow gives this frame back as it is: unique string column names, string or unnamed
/// index levels, no attrs and no `object` columns or index levels (Arrow turns Python strings into
/// the string dtype and lists into numpy arrays); other frames are pickled.
fn frame_fits_arrow(frame: &Bound<'_, PyAny>) -> PyResult<bool> {
    let py = frame.py();
    let pandas = py.import(intern!(py, "pandas"))?;
    let multi = pandas.getattr(intern!(py, "MultiIndex"))?;
    let columns = frame.getattr(intern!(py, "columns"))?;
    if columns.is_instance(&multi)?
        || frame.getattr(intern!(py, "attrs"))?.is_truthy()?
        || !columns.getattr(intern!(py, "is_unique"))?.is_truthy()?
    {
        return Ok(false);
    }
    for c in columns.try_iter()? {
        if !c?.is_instance_of::<PyString>() {
            return Ok(false);
        }
    }
    let index = frame.getattr(intern!(py, "index"))?;
    for n in index.getattr(intern!(py, "names"))?.try_iter()? {
        let n = n?;
        if !n.is_none() && !n.is_instance_of::<PyString>() {
            return Ok(false);
        }
    }
    let is_object = pandas
        .getattr(intern!(py, "api"))?
        .getattr(intern!(py, "types"))?
        .getattr(intern!(py, "is_object_dtype"))?;
    let levels: Vec<Bound<'_, PyAny>> = if index.is_instance(&multi)? {
        index
            .getattr(intern!(py, "levels"))?
            .try_iter()?
            .collect::<PyResult<_>>()?
    } else {
        vec![index]
    };
    let dtypes = frame.getattr(intern!(py, "dtypes"))?;
    for dtype in dtypes.try_iter()? {
        if is_object.call1((dtype?,))?.is_truthy()? {
            return Ok(false);
        }
    }
    for level in levels {
        if is_object
            .call1((level.getattr(intern!(py, "dtype"))?,))?
            .is_truthy()?
        {
            return Ok(false);
        }
    }
    Ok(true)
}

/// `pyarrow.Table.from_pandas(frame)`, or `None` when Arrow cannot hold it (mixed object columns).
fn frame_to_arrow<'py>(frame: &Bound<'py, PyAny>) -> PyResult<Option<Bound<'py, PyAny>>> {
    let py = frame.py();
    let table_type = PA_TABLE.import(py, "pyarrow", "Table")?;
    match table_type.call_method1(intern!(py, "from_pandas"), (frame,)) {
        Ok(table) => Ok(Some(table)),
        Err(err) => {
            let arrow_error = py
                .import(intern!(py, "pyarrow"))?
                .getattr(intern!(py, "ArrowException"))?;
            let types = (
                arrow_error,
                py.get_type::<PyTypeError>(),
                py.get_type::<PyValueError>(),
            );
            if err.matches(py, types)? {
                Ok(None)
            } else {
                Err(err)
            }
        }
    }
}

fn str_or_none(value: &Bound<'_, PyAny>, what: &str) -> PyResult<Option<String>> {
    if value.is_none() {
        return Ok(None);
    }
    match value.cast::<PyString>() {
        Ok(s) => Ok(Some(s.to_str()?.to_owned())),
        Err(_) => Err(codec_error(format!(
            "task {what} must be a str or None, got {}",
            value.get_type().name()?
        ))),
    }
}

// ---------------------------------------------------------------------------------------------------
// Encoding
// ---------------------------------------------------------------------------------------------------

/// A task read for encoding: its row's columns and, for Arrow and pandas payloads, the table.
struct Prepared<'py> {
    task: Bound<'py, PyAny>,
    id: Option<String>,
    dataset: Option<String>,
    class_key: i32,
    table: Option<(Imported, i8)>,
}

/// Bytes to reserve for a table's IPC stream: its referenced bytes plus message overhead (an
/// estimate; reserving up front spares the payload buffer's growth copies).
fn ipc_estimate(table: &Imported) -> usize {
    batches_bytes(&table.batches)
        + ALIGN
        + 1024
        + 256 * table.schema.fields().len() * table.batches.len().max(1)
}

/// Rows of a block being written.
struct Rows {
    kinds: Vec<i8>,
    ids: StringBuilder,
    datasets: StringBuilder,
    class_keys: Vec<Option<i32>>,
    class_names: Vec<Arc<str>>,
    /// Type object address -> (the type, its dictionary key in this block, its facts).
    classes: HashMap<usize, (Py<PyType>, i32, bool)>,
    formats: Vec<Option<i8>>,
    fields: LargeBinaryBuilder,
    payload: MutableBuffer,
    offsets: Vec<i64>,
}

impl Rows {
    fn new() -> Self {
        Self {
            kinds: Vec::new(),
            ids: StringBuilder::new(),
            datasets: StringBuilder::new(),
            class_keys: Vec::new(),
            class_names: Vec::new(),
            classes: HashMap::new(),
            formats: Vec::new(),
            fields: LargeBinaryBuilder::new(),
            payload: MutableBuffer::new(0),
            offsets: vec![0],
        }
    }

    fn len(&self) -> usize {
        self.kinds.len()
    }

    fn payload_bytes(&self) -> usize {
        self.payload.len()
    }

    fn class_key(&mut self, cls: &Bound<'_, PyType>) -> PyResult<(i32, bool)> {
        let addr = cls.as_ptr() as usize;
        if let Some((_, key, by_name)) = self.classes.get(&addr) {
            return Ok((*key, *by_name));
        }
        let info = class_info(cls)?;
        let key = i32::try_from(self.class_names.len()).expect("fewer than 2^31 classes");
        self.class_names.push(info.name);
        self.classes
            .insert(addr, (cls.clone().unbind(), key, info.by_name));
        Ok((key, info.by_name))
    }

    /// Ends the current value: pads it so that the next one starts on a 64-byte boundary.
    fn end_payload(&mut self) {
        let pad = self.payload.len().next_multiple_of(ALIGN) - self.payload.len();
        self.payload.extend_zeros(pad);
        self.offsets.push(self.payload.len() as i64);
    }

    fn push_row(&mut self, p: &Prepared<'_>, format: i8, fields: Option<&[u8]>) {
        let (id, dataset) = (p.id.as_deref(), p.dataset.as_deref());
        self.push_fields(
            ROW_TASK,
            id,
            dataset,
            Some(p.class_key),
            Some(format),
            fields,
        );
    }

    fn push_fields(
        &mut self,
        kind: i8,
        id: Option<&str>,
        dataset: Option<&str>,
        class_key: Option<i32>,
        format: Option<i8>,
        fields: Option<&[u8]>,
    ) {
        self.kinds.push(kind);
        self.ids.append_option(id);
        self.datasets.append_option(dataset);
        self.class_keys.push(class_key);
        self.formats.push(format);
        self.fields.append_option(fields);
        self.end_payload();
    }

    /// Writes an Arrow payload; on failure the payload buffer is as before and the error is returned.
    fn write_table(&mut self, py: Python<'_>, table: &Imported) -> Result<(), String> {
        let start = self.payload.len();
        let bytes = batches_bytes(&table.batches);
        self.payload.reserve(ipc_estimate(table));
        let payload = &mut self.payload;
        let mut write = move || write_ipc_stream(payload, &table.schema, &table.batches);
        let written = if bytes >= DETACH_MIN_BYTES {
            py.detach(write)
        } else {
            write()
        };
        if written.is_err() {
            self.payload.truncate(start);
        }
        written
    }

    /// Reads what a task's row needs; Arrow and pandas payloads are imported (not copied yet).
    fn prepare<'py>(&mut self, task: Bound<'py, PyAny>) -> PyResult<Prepared<'py>> {
        let py = task.py();
        let id = str_or_none(&task.getattr(intern!(py, "task_id"))?, "task_id")?;
        let dataset = str_or_none(&task.getattr(intern!(py, "dataset_name"))?, "dataset_name")?;
        let (class_key, by_name) = self.class_key(&task.get_type())?;
        let mut table = None;
        if by_name {
            if let Some(data) = task.getattr_opt(intern!(py, "data"))? {
                let table_type = PA_TABLE.import(py, "pyarrow", "Table")?;
                // Tables arrow-rs cannot import (schema metadata that is not UTF-8) are pickled.
                if data.is_instance(table_type.as_any())? {
                    table = import(&data).ok().map(|t| (t, FMT_ARROW));
                } else if pandas_frame_type(py)?
                    .is_some_and(|t| data.is_instance(&t).unwrap_or(false))
                    && frame_fits_arrow(&data)?
                {
                    if let Some(converted) = frame_to_arrow(&data)? {
                        table = import(&converted).ok().map(|t| (t, FMT_PANDAS));
                    }
                }
            }
        }
        Ok(Prepared {
            task,
            id,
            dataset,
            class_key,
            table,
        })
    }

    /// Writes a prepared task's row: its table as IPC and its other attributes pickled, or the whole
    /// task pickled (also when arrow-rs cannot write its table, e.g. some extension types).
    fn write(&mut self, p: Prepared<'_>) -> PyResult<()> {
        let py = p.task.py();
        if let Some((table, format)) = &p.table {
            if self.write_table(py, table).is_ok() {
                let attrs = p
                    .task
                    .getattr(intern!(py, "__dict__"))?
                    .cast_into::<PyDict>()?
                    .copy()?;
                for name in COLUMN_ATTRS {
                    if attrs.contains(name)? {
                        attrs.del_item(name)?;
                    }
                }
                let fields = match dumps(attrs.as_any()) {
                    Ok(f) => f,
                    Err(e) => {
                        let start = *self.offsets.last().expect("offsets start with 0");
                        self.payload.truncate(start as usize);
                        return Err(e);
                    }
                };
                let format = *format;
                self.push_row(&p, format, Some(fields.as_bytes()));
                return Ok(());
            }
        }
        let pickled = dumps(&p.task)?;
        self.payload.extend_from_slice(pickled.as_bytes());
        self.push_row(&p, FMT_PICKLE, None);
        Ok(())
    }

    fn add_task(&mut self, task: Bound<'_, PyAny>) -> PyResult<()> {
        let prepared = self.prepare(task)?;
        self.write(prepared)
    }

    fn add_stored(&mut self, task: &Bound<'_, PyAny>, index: u32, position: u32) -> PyResult<()> {
        let py = task.py();
        let id = str_or_none(&task.getattr(intern!(py, "task_id"))?, "task_id")?;
        let dataset = str_or_none(&task.getattr(intern!(py, "dataset_name"))?, "dataset_name")?;
        let (class_key, _) = self.class_key(&task.get_type())?;
        self.payload.extend_from_slice(&index.to_le_bytes());
        self.payload.extend_from_slice(&position.to_le_bytes());
        let (id, dataset) = (id.as_deref(), dataset.as_deref());
        self.push_fields(
            ROW_TASK,
            id,
            dataset,
            Some(class_key),
            Some(FMT_STORED),
            None,
        );
        Ok(())
    }

    /// The block; `ledger` and `failures` ride on its first row (a `ROW_LEDGER` row when there are
    /// no tasks). Leaves `self` empty.
    fn finish(&mut self, ledger: Option<&[u8]>, failures: Option<&[u8]>) -> RecordBatch {
        if self.len() == 0 && (ledger.is_some() || failures.is_some()) {
            self.push_fields(ROW_LEDGER, None, None, None, None, None);
        }
        let mut rows = std::mem::replace(self, Rows::new());
        let n = rows.len();
        let first_only = |value: Option<&[u8]>| -> ArrayRef {
            match value {
                Some(v) if n > 0 => Arc::new(BinaryArray::from_iter(
                    std::iter::once(Some(v)).chain(std::iter::repeat_n(None, n - 1)),
                )),
                _ => arrow_array::new_null_array(&DataType::Binary, n),
            }
        };
        let names = StringArray::from_iter_values(rows.class_names.iter().map(|s| s.as_ref()));
        let keys = Int32Array::from(rows.class_keys);
        let classes = DictionaryArray::<Int32Type>::try_new(keys, Arc::new(names))
            .expect("keys index the class names");
        let offsets = OffsetBuffer::new(ScalarBuffer::from(rows.offsets));
        let payload = LargeBinaryArray::new(offsets, Buffer::from(rows.payload), None);
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int8Array::from(rows.kinds)),
            Arc::new(rows.ids.finish()),
            Arc::new(rows.datasets.finish()),
            Arc::new(classes),
            Arc::new(Int8Array::from(rows.formats)),
            Arc::new(rows.fields.finish()),
            Arc::new(payload),
            first_only(ledger),
            first_only(failures),
        ];
        RecordBatch::try_new(block_schema(), columns).expect("columns match the block schema")
    }
}

fn pickled_failures<'py>(
    failures: Option<&Bound<'py, PyAny>>,
) -> PyResult<Option<Bound<'py, PyBytes>>> {
    match failures {
        Some(f) if !f.is_none() && f.len()? > 0 => {
            let list = PyList::empty(f.py());
            for item in f.try_iter()? {
                list.append(item?)?;
            }
            Ok(Some(dumps(list.as_any())?))
        }
        _ => Ok(None),
    }
}

fn export_block<'py>(py: Python<'py>, batch: RecordBatch) -> PyResult<Bound<'py, PyAny>> {
    export(py, block_schema(), vec![batch])
}

/// One block with a row per task; `ledger` and `failures` ride on its first row. With no tasks but
/// something to carry, the block is a single `ROW_LEDGER` row; with neither, it is empty.
#[pyfunction]
#[pyo3(signature = (tasks, *, ledger=None, failures=None))]
fn encode_tasks<'py>(
    py: Python<'py>,
    tasks: &Bound<'py, PyAny>,
    ledger: Option<&[u8]>,
    failures: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    let mut rows = Rows::new();
    let prepared = tasks
        .try_iter()?
        .map(|task| rows.prepare(task?))
        .collect::<PyResult<Vec<_>>>()?;
    // One allocation for all Arrow payloads: growing the buffer would copy them (and touch fresh pages).
    let arrow_bytes: usize = prepared
        .iter()
        .filter_map(|p| p.table.as_ref())
        .map(|(t, _)| ipc_estimate(t))
        .sum();
    rows.payload.reserve(arrow_bytes);
    for p in prepared {
        rows.write(p)?;
    }
    let failures = pickled_failures(failures)?;
    let batch = rows.finish(ledger, failures.as_ref().map(|f| f.as_bytes()));
    export_block(py, batch)
}

/// A block pointing at `tasks`, which the caller stores as object `index` of its stored lists.
#[pyfunction]
fn encode_stored<'py>(
    py: Python<'py>,
    tasks: &Bound<'py, PyAny>,
    index: u32,
) -> PyResult<Bound<'py, PyAny>> {
    let mut rows = Rows::new();
    for (position, task) in tasks.try_iter()?.enumerate() {
        let position = u32::try_from(position)
            .map_err(|_| codec_error("a stored task list holds more than 2^32 tasks"))?;
        rows.add_stored(&task?, index, position)?;
    }
    export_block(py, rows.finish(None, None))
}

/// A block without rows.
#[pyfunction]
fn empty_block(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
    export(py, block_schema(), vec![])
}

/// Encodes tasks as they come and hands them over as blocks of about `chunk_bytes` payload bytes.
///
/// The last task added is held back (unencoded) until more come or `finish`, so the final block
/// always has a task row to carry the call's ledger and failure records: a `ROW_LEDGER` row would
/// count as a task in Ray Data's row-based batching. Held tasks are encoded as soon as a newer one
/// arrives, so the Python objects of the outputs are released early.
#[pyclass(module = "nemo_curator._core")]
pub struct BlockWriter {
    rows: Rows,
    held: Option<Py<PyAny>>,
    chunk_bytes: usize,
}

#[pymethods]
impl BlockWriter {
    #[new]
    fn new(chunk_bytes: i64) -> PyResult<Self> {
        let chunk_bytes = usize::try_from(chunk_bytes)
            .ok()
            .filter(|&b| b > 0)
            .ok_or_else(|| {
                PyValueError::new_err(format!("chunk_bytes must be at least 1, got {chunk_bytes}"))
            })?;
        Ok(Self {
            rows: Rows::new(),
            held: None,
            chunk_bytes,
        })
    }

    /// Adds tasks (the last one is held back until the next call or `finish`).
    fn add(&mut self, py: Python<'_>, tasks: &Bound<'_, PyAny>) -> PyResult<()> {
        for task in tasks.try_iter()? {
            if let Some(previous) = self.held.replace(task?.unbind()) {
                self.rows.add_task(previous.into_bound(py))?;
            }
        }
        Ok(())
    }

    /// A block of the encoded tasks once they reach `chunk_bytes` of payload, else `None`.
    fn ready<'py>(&mut self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        if self.rows.len() == 0 || self.rows.payload_bytes() < self.chunk_bytes {
            return Ok(None);
        }
        export_block(py, self.rows.finish(None, None)).map(Some)
    }

    /// The last block: every remaining task, with `ledger` and `failures` on its first row.
    #[pyo3(signature = (ledger=None, failures=None))]
    fn finish<'py>(
        &mut self,
        py: Python<'py>,
        ledger: Option<&[u8]>,
        failures: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        if let Some(task) = self.held.take() {
            self.rows.add_task(task.into_bound(py))?;
        }
        let failures = pickled_failures(failures)?;
        let batch = self
            .rows
            .finish(ledger, failures.as_ref().map(|f| f.as_bytes()));
        export_block(py, batch)
    }

    /// Encoded rows not handed over yet (the held task not counted).
    #[getter]
    fn pending_rows(&self) -> usize {
        self.rows.len()
    }

    /// Payload bytes of those rows.
    #[getter]
    fn pending_bytes(&self) -> usize {
        self.rows.payload_bytes()
    }
}

// ---------------------------------------------------------------------------------------------------
// Decoding
// ---------------------------------------------------------------------------------------------------

fn column<'a, T: 'static>(
    batch: &'a RecordBatch,
    name: &str,
    columns: &[String],
) -> PyResult<&'a T> {
    let array = batch.column_by_name(name).ok_or_else(|| {
        codec_error(format!(
            "not a task block: column '{name}' is missing (columns: {columns:?})"
        ))
    })?;
    array.as_any().downcast_ref::<T>().ok_or_else(|| {
        codec_error(format!(
            "not a task block: column '{name}' has type {}",
            array.data_type()
        ))
    })
}

/// A clear error unless `schema` has every block column with its type.
fn check_schema(schema: &Schema, names: &[String]) -> PyResult<()> {
    for want in block_schema().fields() {
        let name = want.name();
        let Ok(field) = schema.field_with_name(name) else {
            return Err(codec_error(format!(
                "not a task block: column '{name}' is missing (columns: {names:?})"
            )));
        };
        if !field.data_type().equals_datatype(want.data_type()) {
            return Err(codec_error(format!(
                "not a task block: column '{name}' has type {} instead of {}",
                field.data_type(),
                want.data_type()
            )));
        }
    }
    Ok(())
}

fn column_names(schema: &Schema) -> Vec<String> {
    schema.fields().iter().map(|f| f.name().clone()).collect()
}

/// A decoded Arrow payload as a `pyarrow.Table` over the block's buffer (or a pandas frame).
fn decode_table<'py>(
    py: Python<'py>,
    values: &Buffer,
    start: usize,
    end: usize,
    format: i8,
    row: usize,
) -> PyResult<Bound<'py, PyAny>> {
    let (schema, batches) = read_ipc_stream(&values.slice_with_length(start, end - start))
        .map_err(|e| codec_error(format!("row {row}: bad Arrow payload: {e}")))?;
    let table = export(py, schema, batches)?;
    if format == FMT_PANDAS {
        return table.call_method0(intern!(py, "to_pandas"));
    }
    Ok(table)
}

struct Decoder<'py, 'a> {
    py: Python<'py>,
    stored: Option<&'a Bound<'py, PyAny>>,
    stored_lists: HashMap<u32, Bound<'py, PyAny>>,
}

impl<'py> Decoder<'py, '_> {
    fn stored_task(&mut self, payload: &[u8], row: usize) -> PyResult<Bound<'py, PyAny>> {
        let Some(stored) = self.stored else {
            return Err(codec_error(
                "a block row points at a stored task list but no stored lists were given",
            ));
        };
        if payload.len() < 8 {
            return Err(codec_error(format!(
                "row {row}: stored position has {} bytes",
                payload.len()
            )));
        }
        let (index, position) = (u32_at(payload, 0), u32_at(payload, 4));
        let list = match self.stored_lists.get(&index) {
            Some(list) => list.clone(),
            None => {
                let list = stored.call1((index,))?;
                self.stored_lists.insert(index, list.clone());
                list
            }
        };
        list.get_item(position)
    }

    fn batch(&mut self, batch: &RecordBatch, out: &Bound<'py, PyList>) -> PyResult<()> {
        let py = self.py;
        let names = column_names(&batch.schema());
        let kinds: &Int8Array = column(batch, "_kind", &names)?;
        let formats: &Int8Array = column(batch, "_format", &names)?;
        let payload: &LargeBinaryArray = column(batch, "_payload", &names)?;
        let ids: &StringArray = column(batch, "_task_id", &names)?;
        let datasets: &StringArray = column(batch, "_dataset_name", &names)?;
        let classes: &DictionaryArray<Int32Type> = column(batch, "_task_class", &names)?;
        let fields: &LargeBinaryArray = column(batch, "_fields", &names)?;
        let class_names = classes
            .values()
            .as_string_opt::<i32>()
            .ok_or_else(|| codec_error("not a task block: '_task_class' does not hold strings"))?;
        // Resolved classes by dictionary key, for this batch.
        let mut resolved: HashMap<i32, Bound<'py, PyType>> = HashMap::new();
        let values = payload.values();
        let offsets = payload.value_offsets();
        for row in 0..batch.num_rows() {
            if kinds.value(row) != ROW_TASK {
                continue;
            }
            let (start, end) = (offsets[row] as usize, offsets[row + 1] as usize);
            if formats.is_null(row) {
                return Err(codec_error(format!(
                    "row {row}: task row without a payload format"
                )));
            }
            let format = formats.value(row);
            let task = match format {
                FMT_PICKLE => loads(py, &values[start..end])?,
                FMT_STORED => self.stored_task(&values[start..end], row)?,
                FMT_ARROW | FMT_PANDAS => {
                    let data = decode_table(py, values, start, end, format, row)?;
                    if classes.is_null(row) || fields.is_null(row) {
                        return Err(codec_error(format!(
                            "row {row}: Arrow task row without class or fields"
                        )));
                    }
                    let key = classes.keys().value(row);
                    let cls = match resolved.get(&key) {
                        Some(cls) => cls.clone(),
                        None => {
                            let cls = resolve(py, class_names.value(key as usize))?;
                            resolved.insert(key, cls.clone());
                            cls
                        }
                    };
                    let attrs = loads(py, fields.value(row))?;
                    rebuild(&cls, &attrs, ids, datasets, row, data)?
                }
                other => {
                    return Err(codec_error(format!(
                        "unknown payload format {other} in row {row}"
                    )))
                }
            };
            out.append(task)?;
        }
        Ok(())
    }
}

/// An instance of `cls` with its attributes set, without running `__init__`.
fn rebuild<'py>(
    cls: &Bound<'py, PyType>,
    attrs: &Bound<'py, PyAny>,
    ids: &StringArray,
    datasets: &StringArray,
    row: usize,
    data: Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyAny>> {
    let py = cls.py();
    let task = cls.call_method1(intern!(py, "__new__"), (cls,))?;
    let state = task
        .getattr(intern!(py, "__dict__"))?
        .cast_into::<PyDict>()?;
    fn text(a: &StringArray, row: usize) -> Option<&str> {
        (!a.is_null(row)).then(|| a.value(row))
    }
    state.set_item(intern!(py, "task_id"), text(ids, row))?;
    state.set_item(intern!(py, "dataset_name"), text(datasets, row))?;
    state.set_item(intern!(py, "data"), data)?;
    state.update(attrs.cast::<PyDict>()?.as_mapping())?;
    Ok(task)
}

/// The tasks, ledgers and failure records of a block: `(tasks, ledgers, failures)`.
///
/// Arrow payloads come back without a copy: their buffers are slices of the block's buffer.
/// `stored(index)` returns the stored task list `index` (for `FMT_STORED` rows); with
/// `tasks=False` only ledgers and failures are read.
#[pyfunction]
#[pyo3(signature = (block, *, stored=None, tasks=true))]
fn decode_block<'py>(
    py: Python<'py>,
    block: &Bound<'py, PyAny>,
    stored: Option<&Bound<'py, PyAny>>,
    tasks: bool,
) -> PyResult<Bound<'py, PyTuple>> {
    let imported = import(block)?;
    let names = column_names(&imported.schema);
    check_schema(&imported.schema, &names)?;
    let out_tasks = PyList::empty(py);
    let ledgers = PyList::empty(py);
    let failures = PyList::empty(py);
    let mut decoder = Decoder {
        py,
        stored: stored.filter(|s| !s.is_none()),
        stored_lists: HashMap::new(),
    };
    for batch in &imported.batches {
        let ledger: &BinaryArray = column(batch, "_ledger", &names)?;
        for value in ledger.iter().flatten() {
            ledgers.append(PyBytes::new(py, value))?;
        }
        let failure: &BinaryArray = column(batch, "_failures", &names)?;
        for value in failure.iter().flatten() {
            for record in loads(py, value)?.try_iter()? {
                failures.append(record?)?;
            }
        }
        if tasks {
            decoder.batch(batch, &out_tasks)?;
        }
    }
    PyTuple::new(
        py,
        [
            out_tasks.into_any(),
            ledgers.into_any(),
            failures.into_any(),
        ],
    )
}

/// Number of task rows of a block (its other rows only carry accounting).
#[pyfunction]
fn count_tasks(block: &Bound<'_, PyAny>) -> PyResult<usize> {
    let imported = import(block)?;
    let names = column_names(&imported.schema);
    check_schema(&imported.schema, &names)?;
    let mut n = 0;
    for batch in &imported.batches {
        let kinds: &Int8Array = column(batch, "_kind", &names)?;
        n += kinds.values().iter().filter(|&&k| k == ROW_TASK).count();
    }
    Ok(n)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("CodecError", py.get_type::<CodecError>())?;
    let formats = PyDict::new(py);
    for (name, value) in [
        ("arrow", FMT_ARROW),
        ("pandas", FMT_PANDAS),
        ("pickle", FMT_PICKLE),
        ("stored", FMT_STORED),
    ] {
        formats.set_item(name, value)?;
    }
    m.add("BLOCK_FORMATS", formats)?;
    m.add_class::<BlockWriter>()?;
    m.add_function(wrap_pyfunction!(encode_tasks, m)?)?;
    m.add_function(wrap_pyfunction!(encode_stored, m)?)?;
    m.add_function(wrap_pyfunction!(decode_block, m)?)?;
    m.add_function(wrap_pyfunction!(count_tasks, m)?)?;
    m.add_function(wrap_pyfunction!(empty_block, m)?)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{DictionaryArray, Int64Array};

    fn table(n: i64) -> RecordBatch {
        let ints: ArrayRef = Arc::new(Int64Array::from_iter(
            (0..n).map(|v| (v % 3 != 0).then_some(v)),
        ));
        let strs: ArrayRef = Arc::new(StringArray::from_iter(
            (0..n).map(|v| Some(format!("s{v}"))),
        ));
        let dict: ArrayRef = Arc::new(
            (0..n)
                .map(|v| if v % 2 == 0 { "a" } else { "b" })
                .collect::<DictionaryArray<Int32Type>>(),
        );
        RecordBatch::try_from_iter_with_nullable([
            ("i", ints, true),
            ("s", strs, true),
            ("d", dict, true),
        ])
        .unwrap()
    }

    fn within(buf: &Buffer, inner: &Buffer) -> bool {
        let (lo, hi) = (buf.as_ptr() as usize, buf.as_ptr() as usize + buf.len());
        let p = inner.as_ptr() as usize;
        lo <= p && p + inner.len() <= hi
    }

    #[test]
    fn ipc_round_trip_is_zero_copy_and_ignores_padding() {
        let batches = vec![table(10), table(0), table(7).slice(2, 4)];
        let schema = batches[0].schema();
        let mut out = MutableBuffer::new(0);
        write_ipc_stream(&mut out, &schema, &batches).unwrap();
        assert_eq!(out.len() % 8, 0);
        out.extend_zeros(40); // padding up to the next value
        let buf = Buffer::from(out);
        let (got_schema, got) = read_ipc_stream(&buf).unwrap();
        assert_eq!(got_schema.as_ref(), schema.as_ref());
        assert_eq!(got.len(), 3);
        for (a, b) in got.iter().zip(&batches) {
            assert_eq!(a, b);
        }
        for column in got[0].columns() {
            for b in column.to_data().buffers() {
                assert!(within(&buf, b), "buffer copied");
                assert_eq!(b.as_ptr() as usize % 8, 0);
            }
        }
    }

    #[test]
    fn ipc_stream_without_batches_keeps_schema() {
        let schema = table(1).schema();
        let mut out = MutableBuffer::new(0);
        write_ipc_stream(&mut out, &schema, &[]).unwrap();
        let (got, batches) = read_ipc_stream(&Buffer::from(out)).unwrap();
        assert_eq!(got.as_ref(), schema.as_ref());
        assert!(batches.is_empty());
    }

    #[test]
    fn truncated_ipc_is_an_error() {
        let batch = table(5);
        let mut out = MutableBuffer::new(0);
        write_ipc_stream(&mut out, &batch.schema(), &[batch]).unwrap();
        let buf = Buffer::from(out);
        let cut = buf.slice_with_length(0, buf.len() / 2);
        assert!(read_ipc_stream(&cut).is_err());
        assert!(read_ipc_stream(&Buffer::from_vec(vec![0u8; 16])).is_err()); // no schema
    }

    #[test]
    fn rows_pad_every_value_to_64_bytes() {
        let mut rows = Rows::new();
        rows.payload.extend_from_slice(b"abc");
        rows.push_fields(ROW_TASK, Some("a"), None, None, Some(FMT_PICKLE), None);
        assert_eq!(rows.offsets, vec![0, 64]);
        rows.push_fields(ROW_LEDGER, None, None, None, None, None);
        let batch = rows.finish(Some(b"L"), None);
        assert_eq!(batch.num_rows(), 2);
        assert_eq!(batch.schema(), block_schema());
        let ledger = batch.column(7).as_binary::<i32>();
        assert_eq!(ledger.value(0), b"L");
        assert!(ledger.is_null(1));
        assert_eq!(rows.len(), 0, "finish leaves the rows empty");
    }

    #[test]
    fn empty_rows_carry_a_ledger_row_only_when_needed() {
        assert_eq!(Rows::new().finish(None, None).num_rows(), 0);
        let batch = Rows::new().finish(None, Some(b"F"));
        assert_eq!(batch.num_rows(), 1);
        assert_eq!(
            batch
                .column(0)
                .as_primitive::<arrow_array::types::Int8Type>()
                .value(0),
            ROW_LEDGER
        );
    }
}
