//! The guest side of the plugin ABI (version 5, specified in `plugins/ABI.md`): memory
//! hand-over, batch decoding, output encoding, failure reporting (the record being processed
//! and a panic hook), and the drivers the attribute macros call. Users never call this
//! directly.

use std::alloc::{Layout, alloc as raw_alloc, dealloc as raw_dealloc};
use std::cell::{Cell, RefCell};
use std::sync::Once;

use crate::{Header, Record};

/// Exported by `weir_abi_version`; the host refuses modules with another version.
pub const ABI_VERSION: u32 = 5;

/// Exported by `weir_kind`.
pub const KIND_FILTER: u32 = 1;
pub const KIND_MAP: u32 = 2;
pub const KIND_FILTER_MAP: u32 = 3;
pub const KIND_FLAT_MAP: u32 = 4;
pub const KIND_AGGREGATE: u32 = 5;
pub const KIND_ROUTE: u32 = 6;

/// Return values of `weir_init` and `weir_process`.
pub const STATUS_OK: i32 = 0;
pub const STATUS_ERROR: i32 = 1;

/// Output entry tags.
pub const ENTRY_KEEP: u8 = 0;
pub const ENTRY_NEW: u8 = 1;
/// Version 4: KEEP to the output named by the `u8` after the tag.
pub const ENTRY_KEEP_TO: u8 = 2;
/// Version 4: NEW to the output named by the `u8` after the tag.
pub const ENTRY_NEW_TO: u8 = 3;
/// Version 5: new records as a batch in the broker's format, to the output named by the `u8`
/// after the tag (what this SDK sends new records as).
pub const ENTRY_BATCH: u8 = 4;

/// New records go out in batches of about this many bytes (the host's own size).
const OUTPUT_BATCH_BYTES: usize = 1024 * 1024;

/// Outputs a record may be sent to: 0 (the main one) to 7.
pub const MAX_OUTPUTS: u8 = 8;

/// Batch format (docs/batch-format.md): header size and attribute bits.
const BATCH_HEADER_LEN: usize = 48;
const COMPRESSION_MASK: u8 = 0b0000_0111;
const LOG_APPEND_TIME_BIT: u8 = 0b0000_1000;
const EXPLICIT_OFFSETS_BIT: u8 = 0b0001_0000;

thread_local! {
    /// What the last `weir_init` / `weir_process` produced: the output batch, or an error
    /// message. Valid until the next call.
    static RESULT: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

thread_local! {
    /// The offset of the record being processed (-1: none yet): `weir_offset`, which the host
    /// reads after a failed call. One plain store per record (in wasm a thread local is a
    /// static).
    static OFFSET: Cell<i64> = const { Cell::new(-1) };

    /// The message of a panic, for the host to read after the trap it ends in.
    static PANIC: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Longest panic message kept (the host reads at most 4 KiB).
const MAX_PANIC_BYTES: usize = 4000;

/// `weir_offset`.
pub fn offset() -> i64 {
    OFFSET.get()
}

/// `weir_panic_ptr`.
pub fn panic_ptr() -> u32 {
    PANIC.with(|p| p.try_borrow().map_or(0, |p| p.as_ptr() as usize as u32))
}

/// `weir_panic_len`.
pub fn panic_len() -> u32 {
    PANIC.with(|p| p.try_borrow().map_or(0, |p| p.len() as u32))
}

/// Installs (once) a panic hook that keeps the panic's message and location where the host
/// reads them after the trap: `index out of bounds: ... (src/lib.rs:12:9)`. The hook that
/// was there before still runs (natively: the test harness's).
pub fn install_panic_hook() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let payload = info.payload();
            let what = payload
                .downcast_ref::<&str>()
                .copied()
                .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
                .unwrap_or("(a panic without a message)");
            let mut message = match info.location() {
                Some(l) => format!("{what} ({}:{}:{})", l.file(), l.line(), l.column()),
                None => what.to_string(),
            };
            if message.len() > MAX_PANIC_BYTES {
                let mut cut = MAX_PANIC_BYTES;
                while !message.is_char_boundary(cut) {
                    cut -= 1;
                }
                message.truncate(cut);
            }
            PANIC.with(|p| {
                if let Ok(mut p) = p.try_borrow_mut() {
                    *p = message.into_bytes();
                }
            });
            previous(info);
        }));
    });
}

/// `weir_alloc`: a buffer of `len` bytes for the host to write into.
pub fn alloc(len: u32) -> u32 {
    if len == 0 {
        return 1; // dangling but aligned: never dereferenced for 0 bytes
    }
    match Layout::from_size_align(len as usize, 1) {
        // SAFETY: the layout has a non-zero size.
        Ok(layout) => unsafe { raw_alloc(layout) as usize as u32 },
        Err(_) => 0,
    }
}

/// `weir_dealloc`: frees a buffer from [`alloc`].
///
/// # Safety
/// `ptr`/`len` must come from one [`alloc`] call that was not freed yet.
pub unsafe fn dealloc(ptr: u32, len: u32) {
    if len == 0 || ptr == 0 {
        return;
    }
    if let Ok(layout) = Layout::from_size_align(len as usize, 1) {
        // SAFETY: the caller guarantees ptr came from `alloc` with this length.
        unsafe { raw_dealloc(ptr as usize as *mut u8, layout) }
    }
}

/// `weir_result_ptr`.
pub fn result_ptr() -> u32 {
    RESULT.with(|r| r.borrow().as_ptr() as usize as u32)
}

/// `weir_result_len`.
pub fn result_len() -> u32 {
    RESULT.with(|r| r.borrow().len() as u32)
}

/// A copy of the last result (native tests: `weir_result_ptr` is a wasm address).
pub fn result() -> Vec<u8> {
    RESULT.with(|r| r.borrow().clone())
}

fn set_result(bytes: Vec<u8>) {
    RESULT.with(|r| *r.borrow_mut() = bytes);
}

fn fail(message: String) -> i32 {
    set_result(message.into_bytes());
    STATUS_ERROR
}

/// Takes the host's input buffer (freed when the guard drops).
struct Input {
    ptr: u32,
    len: u32,
}

impl Input {
    fn bytes(&self) -> &[u8] {
        if self.len == 0 {
            return &[];
        }
        // SAFETY: the host wrote `len` bytes at `ptr`, a buffer it got from `alloc`.
        unsafe { std::slice::from_raw_parts(self.ptr as usize as *const u8, self.len as usize) }
    }
}

impl Drop for Input {
    fn drop(&mut self) {
        // SAFETY: the host hands over a buffer from `alloc` of exactly this length.
        unsafe { dealloc(self.ptr, self.len) }
    }
}

/// Runs `f` on the buffer the host wrote at `ptr` (from [`alloc`]), then frees it: what
/// `weir_init` and `weir_process` do with their argument.
pub fn with_input<R>(ptr: u32, len: u32, f: impl FnOnce(&[u8]) -> R) -> R {
    let input = Input { ptr, len };
    f(input.bytes())
}

/// A malformed input (the host never sends one): a static message, cheap to pass around in
/// the per-record loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InputError(&'static str);

impl std::fmt::Display for InputError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

/// Reads fields from the input.
#[derive(Clone, Copy)]
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    #[inline(always)]
    fn take(&mut self, n: usize) -> Result<&'a [u8], InputError> {
        let (head, rest) = self
            .buf
            .split_at_checked(n)
            .ok_or(InputError("truncated input batch"))?;
        self.buf = rest;
        Ok(head)
    }

    fn u32(&mut self) -> Result<u32, InputError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64, InputError> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(a))
    }

    fn bytes(&mut self) -> Result<&'a [u8], InputError> {
        let n = self.u32()? as usize;
        self.take(n)
    }

    /// An unsigned LEB128 varint (as protobuf).
    #[inline(always)]
    fn varint(&mut self) -> Result<u64, InputError> {
        // One byte: the common case (lengths under 128, small deltas); the loop below cost
        // about a tenth of a filter call in wasm.
        if let [b, rest @ ..] = self.buf
            && *b < 0x80
        {
            self.buf = rest;
            return Ok(u64::from(*b));
        }
        let mut v = 0u64;
        for (i, &b) in self.buf.iter().enumerate().take(10) {
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                self.buf = &self.buf[i + 1..];
                return Ok(v);
            }
        }
        Err(InputError("bad varint in input batch"))
    }

    #[inline(always)]
    fn zigzag(&mut self) -> Result<i64, InputError> {
        let v = self.varint()?;
        Ok(((v >> 1) as i64) ^ -((v & 1) as i64))
    }

    #[inline(always)]
    fn varint_bytes(&mut self) -> Result<&'a [u8], InputError> {
        let n = self.varint()?;
        self.take(usize::try_from(n).map_err(|_| InputError("bad length in input batch"))?)
    }
}

/// Decodes `u32 state_len | state | u64 skip_below | u32 batch_count | batch*` (see ABI.md)
/// into the state and the records to process.
pub fn decode_input(buf: &[u8]) -> Result<(&[u8], Vec<Record>), String> {
    let (state, mut records) = Records::open(buf).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    records.for_each_owned(|_, r| {
        out.push(r);
        Ok(())
    })?;
    Ok((state, out))
}

/// The batch being read.
struct Batch<'a> {
    records: Reader<'a>,
    left: u32,
    base_offset: u64,
    base_timestamp: i64,
    log_append: bool,
    explicit: bool,
    index: u32,
    last_delta: u64,
}

/// The records of an input, decoded one at a time — into a fresh [`Record`] or into one
/// reused for every record (no allocation once its buffers are big enough). Records below
/// the input's `skip_below` are passed over (but counted: indices are positions in the input).
pub struct Records<'a> {
    batches: Reader<'a>,
    batches_left: u32,
    current: Option<Batch<'a>>,
    skip_below: u64,
    /// Index of the next record in the whole input.
    index: u32,
}

impl<'a> Records<'a> {
    /// The state and the records of an input.
    pub fn open(buf: &'a [u8]) -> Result<(&'a [u8], Self), InputError> {
        let mut reader = Reader { buf };
        let state = reader.bytes()?;
        let skip_below = reader.u64()?;
        let batches_left = reader.u32()?;
        Ok((
            state,
            Self {
                batches: reader,
                batches_left,
                current: None,
                skip_below,
                index: 0,
            },
        ))
    }

    /// Hands every remaining record, freshly decoded, to `step` with its index. Errors are
    /// returned as they are (the host reads the record's offset from `weir_offset`).
    fn for_each_owned(
        &mut self,
        mut step: impl FnMut(u32, Record) -> Result<(), String>,
    ) -> Result<(), String> {
        loop {
            let mut r = Record::new(Vec::new());
            let Some(i) = self.next_into(&mut r).map_err(|e| e.to_string())? else {
                return Ok(());
            };
            step(i, r)?;
        }
    }

    /// Opens the next batch; `false` after the last one.
    fn next_batch(&mut self) -> Result<bool, InputError> {
        if self.batches_left == 0 {
            if !self.batches.buf.is_empty() {
                return Err(InputError("bytes left over after the input batches"));
            }
            return Ok(false);
        }
        self.batches_left -= 1;
        let mut h = Reader {
            buf: self.batches.take(BATCH_HEADER_LEN)?,
        };
        let _magic = h.take(1)?;
        let attributes = h.take(1)?[0];
        if attributes & COMPRESSION_MASK != 0 {
            return Err(InputError(
                "compressed input batch (the host decompresses batches)",
            ));
        }
        h.take(2)?;
        let count = h.u32()?;
        let base_offset = h.u64()?;
        let base_timestamp = h.u64()? as i64;
        h.take(8 + 8 + 4)?; // max timestamp, producer id, base sequence
        let records_len = h.u32()? as usize;
        self.current = Some(Batch {
            records: Reader {
                buf: self.batches.take(records_len)?,
            },
            left: count,
            base_offset,
            base_timestamp,
            log_append: attributes & LOG_APPEND_TIME_BIT != 0,
            explicit: attributes & EXPLICIT_OFFSETS_BIT != 0,
            index: 0,
            last_delta: 0,
        });
        Ok(true)
    }

    /// The next record to process, borrowed from the input (nothing copied), with its index
    /// in the input; `None` after the last one. Header keys are checked to be UTF-8 here.
    #[inline(always)]
    pub fn next_view(&mut self) -> Result<Option<(u32, RecordView<'a>)>, InputError> {
        loop {
            let batch = match &mut self.current {
                Some(b) if b.left > 0 => b,
                Some(b) if !b.records.buf.is_empty() => {
                    return Err(InputError("bytes left over after a batch's records"));
                }
                _ => {
                    if !self.next_batch()? {
                        return Ok(None);
                    }
                    continue;
                }
            };
            batch.left -= 1;
            let mut body = Reader {
                buf: batch.records.varint_bytes()?,
            };
            let delta = if batch.explicit {
                let d = body.varint()?;
                if d < batch.last_delta {
                    return Err(InputError("offsets go backwards in an input batch"));
                }
                batch.last_delta = d;
                d
            } else {
                u64::from(batch.index)
            };
            batch.index += 1;
            let index = self.index;
            self.index += 1;
            let offset = batch.base_offset.wrapping_add(delta);
            if offset < self.skip_below {
                continue;
            }
            OFFSET.set(offset as i64);
            let ts_delta = body.zigzag()?;
            let timestamp = if batch.log_append {
                batch.base_timestamp
            } else {
                batch.base_timestamp.wrapping_add(ts_delta)
            };
            let key = match body.zigzag()? {
                -1 => None,
                n => {
                    Some(body.take(usize::try_from(n).map_err(|_| InputError("bad key length"))?)?)
                }
            };
            let value = body.varint_bytes()?;
            let header_count = body.varint()? as usize;
            let headers = body.buf;
            if header_count == 0 {
                if !headers.is_empty() {
                    return Err(InputError("trailing bytes in an input record"));
                }
            } else {
                check_headers(headers, header_count)?;
            }
            return Ok(Some((
                index,
                RecordView {
                    offset,
                    timestamp,
                    key,
                    value,
                    headers: HeadersView {
                        raw: headers,
                        count: header_count,
                    },
                },
            )));
        }
    }

    /// Decodes the next record to process into `rec`, reusing its buffers, and returns its
    /// index in the input; `None` after the last one.
    pub fn next_into(&mut self, rec: &mut Record) -> Result<Option<u32>, InputError> {
        let Some((index, view)) = self.next_view()? else {
            return Ok(None);
        };
        rec.offset = view.offset;
        rec.timestamp = view.timestamp;
        match view.key {
            None => rec.key = None,
            Some(k) => set_bytes(rec.key.get_or_insert_with(Vec::new), k),
        }
        set_bytes(&mut rec.value, view.value);
        if rec.headers.len() > view.headers.count {
            rec.headers.truncate(view.headers.count);
        }
        for (i, (key, value)) in view.headers.iter().enumerate() {
            match rec.headers.get_mut(i) {
                Some(h) => {
                    h.key.clear();
                    h.key.push_str(key);
                    set_bytes(&mut h.value, value);
                }
                None => rec.headers.push(Header {
                    key: key.to_string(),
                    value: value.to_vec(),
                }),
            }
        }
        Ok(Some(index))
    }
}

/// Checks `count` headers (`varint key_len, key (UTF-8), varint value_len, value`) fill
/// `raw` exactly.
fn check_headers(raw: &[u8], count: usize) -> Result<(), InputError> {
    let mut r = Reader { buf: raw };
    for _ in 0..count {
        std::str::from_utf8(r.varint_bytes()?)
            .map_err(|_| InputError("header key is not UTF-8"))?;
        r.varint_bytes()?;
    }
    if !r.buf.is_empty() {
        return Err(InputError("trailing bytes in an input record"));
    }
    Ok(())
}

/// A record's headers, borrowed from the input (checked when the record was decoded).
#[derive(Debug, Clone, Copy, Default)]
pub struct HeadersView<'a> {
    raw: &'a [u8],
    count: usize,
}

impl<'a> HeadersView<'a> {
    /// How many there are.
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// `(key, value)` in order.
    pub fn iter(&self) -> impl Iterator<Item = (&'a str, &'a [u8])> + use<'a> {
        let mut r = Reader { buf: self.raw };
        (0..self.count).map_while(move |_| {
            let key = std::str::from_utf8(r.varint_bytes().ok()?).ok()?;
            Some((key, r.varint_bytes().ok()?))
        })
    }
}

/// A record as a plugin sees it without copying: its key, value and headers are borrowed
/// from the batch the host handed over. Take one in a plugin function
/// (`fn(RecordView<'_> [, &P])`) to pay nothing for the fields it does not read;
/// [`RecordView::to_record`] and [`RecordView::with_value`] make an owned [`Record`] for output.
#[derive(Debug, Clone, Copy)]
pub struct RecordView<'a> {
    pub offset: u64,
    /// Unix ms.
    pub timestamp: i64,
    pub key: Option<&'a [u8]>,
    pub value: &'a [u8],
    pub headers: HeadersView<'a>,
}

impl<'a> RecordView<'a> {
    /// A view of this value, no key and no headers (offset and timestamp 0): for native
    /// tests of a plugin function.
    pub fn new(value: &'a [u8]) -> Self {
        Self {
            offset: 0,
            timestamp: 0,
            key: None,
            value,
            headers: HeadersView::default(),
        }
    }

    /// Sets the key.
    pub fn with_key(mut self, key: &'a [u8]) -> Self {
        self.key = Some(key);
        self
    }

    /// The value as UTF-8, if it is.
    pub fn value_str(&self) -> Option<&'a str> {
        std::str::from_utf8(self.value).ok()
    }

    /// The key as UTF-8, if there is one and it is.
    pub fn key_str(&self) -> Option<&'a str> {
        self.key.and_then(|k| std::str::from_utf8(k).ok())
    }

    /// The first header named `key`.
    pub fn header(&self, key: &str) -> Option<&'a [u8]> {
        self.headers.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// An owned copy.
    pub fn to_record(&self) -> Record {
        Record {
            offset: self.offset,
            ..self.with_value(self.value).into_record()
        }
    }

    /// This record with another value: key and headers stay borrowed from the input, so a
    /// map that changes only the value builds nothing but the value (`examples/uppercase`).
    pub fn with_value(&self, value: impl Into<Vec<u8>>) -> Mapped<'a> {
        Mapped {
            timestamp: self.timestamp,
            key: self.key,
            value: value.into(),
            headers: self.headers,
        }
    }
}

/// A map's output from a [`RecordView`]: the view's timestamp, key and headers (still
/// borrowed from the input) with a new value. [`Mapped::into_record`] makes it an owned
/// [`Record`] to change more.
#[derive(Debug, Clone)]
pub struct Mapped<'a> {
    /// Unix ms.
    pub timestamp: i64,
    pub key: Option<&'a [u8]>,
    pub value: Vec<u8>,
    pub headers: HeadersView<'a>,
}

impl Mapped<'_> {
    /// The value as UTF-8, if it is.
    pub fn value_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.value).ok()
    }

    /// The key as UTF-8, if there is one and it is.
    pub fn key_str(&self) -> Option<&str> {
        self.key.and_then(|k| std::str::from_utf8(k).ok())
    }

    /// The first header named `key`.
    pub fn header(&self, key: &str) -> Option<&[u8]> {
        self.headers.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// An owned record (offset 0: outputs keep their source's offset anyway).
    pub fn into_record(self) -> Record {
        Record {
            offset: 0,
            timestamp: self.timestamp,
            key: self.key.map(<[u8]>::to_vec),
            value: self.value,
            headers: self
                .headers
                .iter()
                .map(|(key, value)| Header {
                    key: key.to_string(),
                    value: value.to_vec(),
                })
                .collect(),
        }
    }
}

thread_local! {
    /// The value buffer of the last output record, emptied, for [`value_buffer`].
    static SPARE: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

#[inline(always)]
fn give_back(mut value: Vec<u8>) {
    value.clear();
    SPARE.set(value);
}

/// An empty buffer to build a new value in. Once a record has gone out, its value's buffer is
/// handed back here, so a map that builds each value in one of these allocates nothing per
/// record (`examples/uppercase`).
pub fn value_buffer() -> Vec<u8> {
    SPARE.take()
}

/// A record a plugin emits: [`Record`] (owned) or [`Mapped`] (borrowing from the input).
pub trait NewRecord {
    /// Called once the record is written: gives the value's buffer back to [`value_buffer`].
    fn recycle(self)
    where
        Self: Sized,
    {
    }

    /// Unix ms.
    fn timestamp(&self) -> i64;
    fn key(&self) -> Option<&[u8]>;
    fn value(&self) -> &[u8];
    /// How many headers.
    fn header_count(&self) -> usize;
    /// Bytes the headers take in the batch format (`varint len, key, varint len, value` each).
    fn headers_len(&self) -> usize;
    /// Appends the headers in the batch format.
    fn put_headers(&self, out: &mut Vec<u8>);
}

impl NewRecord for Record {
    fn recycle(self) {
        give_back(self.value);
    }

    fn timestamp(&self) -> i64 {
        self.timestamp
    }

    fn key(&self) -> Option<&[u8]> {
        self.key.as_deref()
    }

    fn value(&self) -> &[u8] {
        &self.value
    }

    fn header_count(&self) -> usize {
        self.headers.len()
    }

    fn headers_len(&self) -> usize {
        self.headers
            .iter()
            .map(|h| {
                varint_len(h.key.len() as u64)
                    + h.key.len()
                    + varint_len(h.value.len() as u64)
                    + h.value.len()
            })
            .sum()
    }

    fn put_headers(&self, out: &mut Vec<u8>) {
        for h in &self.headers {
            put_varint(out, h.key.len() as u64);
            out.extend_from_slice(h.key.as_bytes());
            put_varint(out, h.value.len() as u64);
            out.extend_from_slice(&h.value);
        }
    }
}

impl NewRecord for Mapped<'_> {
    fn recycle(self) {
        give_back(self.value);
    }

    fn timestamp(&self) -> i64 {
        self.timestamp
    }

    fn key(&self) -> Option<&[u8]> {
        self.key
    }

    fn value(&self) -> &[u8] {
        &self.value
    }

    fn header_count(&self) -> usize {
        self.headers.count
    }

    /// The view's headers are already in the batch format: copied as they are.
    fn headers_len(&self) -> usize {
        self.headers.raw.len()
    }

    fn put_headers(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.headers.raw);
    }
}

/// Makes `dst` a copy of `src`, reusing its buffer: one `memory.copy`, nothing else once the
/// buffer is big enough (`extend_from_slice` goes through a generic, non-inlined extend).
#[inline(always)]
fn set_bytes(dst: &mut Vec<u8>, src: &[u8]) {
    dst.clear();
    dst.reserve(src.len());
    // SAFETY: `dst` has room for `src.len()` bytes (reserved above), the two cannot overlap
    // (`dst` is owned), and all `src.len()` bytes are initialised by the copy before `set_len`.
    unsafe {
        std::ptr::copy_nonoverlapping(src.as_ptr(), dst.as_mut_ptr(), src.len());
        dst.set_len(src.len());
    }
}

/// The output being built: `u32 state_len | state | u32 entry_count | entry*`. Records passed
/// on unchanged are run-length encoded (a filter that keeps everything answers in 9 bytes);
/// new records are written straight into batches in the broker's format, which the host
/// checks and passes on as they are.
pub struct Output {
    /// Room for an empty state and the count, then the entries.
    entries: Vec<u8>,
    count: u32,
    /// The open run of kept records: where its count is in `entries`, and the index after it.
    run: Option<(usize, u32)>,
    /// The same for records sent to another output (the output is 5 bytes before the count).
    run_to: Option<(usize, u32)>,
    /// The open batch of new records.
    batch: Option<OpenBatch>,
}

/// A BATCH entry being written: its header is filled in when it closes.
struct OpenBatch {
    /// Where the batch (its 48-byte header) starts in the entries.
    at: usize,
    base_offset: u64,
    base_timestamp: i64,
    max_timestamp: i64,
    count: u32,
}

impl Output {
    fn new() -> Self {
        Self::with_capacity(0)
    }

    /// Room for about `bytes` of entries (a map's output is about its input's size).
    fn with_capacity(bytes: usize) -> Self {
        let mut entries = Vec::with_capacity(8 + bytes);
        entries.resize(8, 0);
        Self {
            entries,
            count: 0,
            run: None,
            run_to: None,
            batch: None,
        }
    }

    /// Emits input record `index` as it was.
    #[inline(always)]
    pub fn push_unchanged(&mut self, index: u32) {
        self.run_to = None;
        if let Some((at, next)) = &mut self.run
            && *next == index
        {
            let c = &mut self.entries[*at..*at + 4];
            let n = u32::from_le_bytes([c[0], c[1], c[2], c[3]]) + 1;
            c.copy_from_slice(&n.to_le_bytes());
            *next += 1;
            return;
        }
        self.close_batch();
        self.entries.push(ENTRY_KEEP);
        self.entries.extend_from_slice(&index.to_le_bytes());
        self.run = Some((self.entries.len(), index + 1));
        self.entries.extend_from_slice(&1u32.to_le_bytes());
        self.count += 1;
    }

    /// Sends input record `index`, as it was, to output `output` (0: as `push_unchanged`).
    /// Consecutive records to the same output share one entry.
    #[inline(always)]
    pub fn push_unchanged_to(&mut self, output: u8, index: u32) {
        if output == 0 {
            return self.push_unchanged(index);
        }
        if let Some((at, next)) = &mut self.run_to
            && *next == index
            && self.entries[*at - 5] == output
        {
            let c = &mut self.entries[*at..*at + 4];
            let n = u32::from_le_bytes([c[0], c[1], c[2], c[3]]) + 1;
            c.copy_from_slice(&n.to_le_bytes());
            *next += 1;
            return;
        }
        self.run = None;
        self.close_batch();
        self.entries.extend_from_slice(&[ENTRY_KEEP_TO, output]);
        self.entries.extend_from_slice(&index.to_le_bytes());
        self.run_to = Some((self.entries.len(), index + 1));
        self.entries.extend_from_slice(&1u32.to_le_bytes());
        self.count += 1;
    }

    /// Emits a new record that came from the input record at `source_offset` (it keeps that
    /// offset; sources come in input order).
    #[inline]
    pub fn push(&mut self, source_offset: u64, r: &impl NewRecord) {
        self.run = None;
        self.run_to = None;
        let timestamp = r.timestamp();
        let open = match &mut self.batch {
            Some(b) if self.entries.len() - b.at < OUTPUT_BATCH_BYTES => b,
            _ => self.open_batch(source_offset, timestamp),
        };
        open.count += 1;
        open.max_timestamp = open.max_timestamp.max(timestamp);
        let delta = source_offset - open.base_offset;
        let timestamp_delta = zigzag(timestamp.wrapping_sub(open.base_timestamp));
        let key = r.key();
        let key_len = key.map_or(zigzag(-1), |k| zigzag(k.len() as i64));
        let value = r.value();
        let headers = r.header_count() as u64;
        let body = varint_len(delta)
            + varint_len(timestamp_delta)
            + varint_len(key_len)
            + key.map_or(0, <[u8]>::len)
            + varint_len(value.len() as u64)
            + value.len()
            + varint_len(headers)
            + r.headers_len();
        let out = &mut self.entries;
        let need = varint_len(body as u64) + body;
        out.reserve(need);
        let start = out.len();
        // SAFETY: `need` bytes are reserved after `start`; exactly `need` are written below
        // (every varint takes the `varint_len` counted in `body`, the slices their lengths,
        // the headers `headers_len`), then the length is set to cover them.
        unsafe {
            let mut p = out.as_mut_ptr().add(start);
            p = write_varint(p, body as u64);
            p = write_varint(p, delta);
            p = write_varint(p, timestamp_delta);
            p = write_varint(p, key_len);
            if let Some(k) = key {
                p = write_bytes(p, k);
            }
            p = write_varint(p, value.len() as u64);
            p = write_bytes(p, value);
            p = write_varint(p, headers);
            debug_assert_eq!(
                p.offset_from(out.as_ptr()) as usize,
                start + need - r.headers_len()
            );
            out.set_len(start + need - r.headers_len());
        }
        if headers > 0 {
            r.put_headers(out);
        }
    }

    /// Closes the open batch (if any) and opens one whose first record is at `offset`.
    #[cold]
    fn open_batch(&mut self, offset: u64, timestamp: i64) -> &mut OpenBatch {
        self.close_batch();
        self.entries
            .extend_from_slice(&[ENTRY_BATCH, 0, 0, 0, 0, 0]);
        let at = self.entries.len();
        self.entries.resize(at + BATCH_HEADER_LEN, 0);
        self.count += 1;
        self.batch.insert(OpenBatch {
            at,
            base_offset: offset,
            base_timestamp: timestamp,
            max_timestamp: timestamp,
            count: 0,
        })
    }

    /// Writes the open batch's header and length.
    fn close_batch(&mut self) {
        let Some(b) = self.batch.take() else {
            return;
        };
        let len = self.entries.len() - b.at;
        let records_len = (len - BATCH_HEADER_LEN) as u32;
        self.entries[b.at - 4..b.at].copy_from_slice(&(len as u32).to_le_bytes());
        let h = &mut self.entries[b.at..b.at + BATCH_HEADER_LEN];
        h[0] = 1; // magic
        h[1] = EXPLICIT_OFFSETS_BIT;
        h[4..8].copy_from_slice(&b.count.to_le_bytes());
        h[8..16].copy_from_slice(&b.base_offset.to_le_bytes());
        h[16..24].copy_from_slice(&b.base_timestamp.to_le_bytes());
        h[24..32].copy_from_slice(&b.max_timestamp.to_le_bytes());
        // Producer id and base sequence stay 0.
        h[44..48].copy_from_slice(&records_len.to_le_bytes());
    }

    fn finish(mut self, state: &[u8]) -> Vec<u8> {
        self.close_batch();
        self.entries[4..8].copy_from_slice(&self.count.to_le_bytes());
        if state.is_empty() {
            return self.entries;
        }
        let mut buf = Vec::with_capacity(state.len() + self.entries.len());
        buf.extend_from_slice(&(state.len() as u32).to_le_bytes());
        buf.extend_from_slice(state);
        buf.extend_from_slice(&self.entries[4..]);
        buf
    }
}

/// Where a plugin keeps its params between `weir_init` and `weir_process` (the attribute
/// macros declare one per plugin; per thread, so native tests of one plugin run in parallel).
pub type ParamsSlot<P> = std::thread::LocalKey<RefCell<Option<P>>>;

/// `weir_init`: parses the JSON params (empty means `{}`) into `slot`, and installs the
/// panic hook.
pub fn init<P: serde::de::DeserializeOwned>(slot: &'static ParamsSlot<P>, params: &[u8]) -> i32 {
    install_panic_hook();
    OFFSET.set(-1);
    let json = match params {
        [] => &b"{}"[..],
        b => b,
    };
    match serde_json::from_slice::<P>(json) {
        Ok(p) => {
            slot.set(Some(p));
            set_result(Vec::new());
            STATUS_OK
        }
        Err(e) => fail(format!("bad params: {e}")),
    }
}

/// `weir_process` before a successful `weir_init`: reports the mistake.
pub fn fail_uninitialized() -> i32 {
    fail("weir_process called before a successful weir_init".into())
}

/// A plugin's entry points as plain functions on byte slices — what its `weir_init` and
/// `weir_process` exports run — for [`crate::testing`]. The attribute macros define one as
/// `WEIR_PLUGIN` next to the annotated function.
#[derive(Clone, Copy)]
pub struct Plugin {
    /// `weir_kind`.
    pub kind: u32,
    /// `weir_init` on the params JSON.
    pub init: fn(&[u8]) -> i32,
    /// `weir_process` on one input (ABI.md, "Input").
    pub process: fn(&[u8]) -> i32,
}

/// Params of a plugin that takes none: any JSON object (or nothing) is accepted.
#[derive(Debug, Default, serde::Deserialize)]
pub struct NoParams {}

/// `weir_process` of a stateless plugin: calls `step(index, record, output)` per record.
pub fn process(
    input: &[u8],
    mut step: impl FnMut(u32, Record, &mut Output) -> Result<(), String>,
) -> i32 {
    let (_, mut records) = match Records::open(input) {
        Ok(d) => d,
        Err(e) => return fail(e.to_string()),
    };
    let mut out = Output::new();
    if let Err(e) = records.for_each_owned(|i, r| step(i, r, &mut out)) {
        return fail(e);
    }
    set_result(out.finish(&[]));
    STATUS_OK
}

/// `weir_process` of a filter: a route to output 0 of the records it keeps.
pub fn process_filter(input: &[u8], mut keep: impl FnMut(&Record) -> Result<bool, String>) -> i32 {
    process_route(input, |r| keep(r).map(|k| k.then_some(0)))
}

/// `weir_process` of a filter on borrowed records: nothing is copied out of the input.
pub fn process_filter_view(
    input: &[u8],
    mut keep: impl FnMut(RecordView<'_>) -> Result<bool, String>,
) -> i32 {
    process_route_view(input, |r| keep(r).map(|k| k.then_some(0)))
}

/// Sends input record `i` where a route plugin said (`to`), or reports why not.
#[inline(always)]
fn route_one(out: &mut Output, i: u32, to: Result<Option<u8>, String>) -> Result<(), String> {
    match to? {
        Some(k) if k < MAX_OUTPUTS => out.push_unchanged_to(k, i),
        Some(k) => {
            return Err(format!(
                "routed a record to output {k}; outputs go from 0 to {}",
                MAX_OUTPUTS - 1
            ));
        }
        None => {}
    }
    Ok(())
}

/// Runs `step` over the input's records until it says they are done (`Ok(false)`), then
/// answers with what it put in the output (or fails with its error).
fn drive<'a>(
    input: &'a [u8],
    mut step: impl FnMut(&mut Records<'a>, &mut Output) -> Result<bool, String>,
) -> i32 {
    let (_, mut records) = match Records::open(input) {
        Ok(d) => d,
        Err(e) => return fail(e.to_string()),
    };
    let mut out = Output::new();
    loop {
        match step(&mut records, &mut out) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => return fail(e),
        }
    }
    set_result(out.finish(&[]));
    STATUS_OK
}

/// `weir_process` of a route plugin on borrowed records: `to(view)` names the output each
/// record goes to, unchanged (`None`: dropped).
pub fn process_route_view(
    input: &[u8],
    mut to: impl FnMut(RecordView<'_>) -> Result<Option<u8>, String>,
) -> i32 {
    drive(input, |records, out| match records.next_view() {
        Ok(Some((i, r))) => route_one(out, i, to(r)).map(|()| true),
        Ok(None) => Ok(false),
        Err(e) => Err(e.to_string()),
    })
}

/// `weir_process` of a route plugin on owned records (one reused `Record`).
pub fn process_route(
    input: &[u8],
    mut to: impl FnMut(&Record) -> Result<Option<u8>, String>,
) -> i32 {
    let mut rec = Record::default();
    drive(input, |records, out| match records.next_into(&mut rec) {
        Ok(Some(i)) => route_one(out, i, to(&rec)).map(|()| true),
        Ok(None) => Ok(false),
        Err(e) => Err(e.to_string()),
    })
}

/// `weir_process` of a stateless plugin on borrowed records: `step(index, view, output)`.
pub fn process_view(
    input: &[u8],
    mut step: impl FnMut(u32, RecordView<'_>, &mut Output) -> Result<(), String>,
) -> i32 {
    let (_, mut records) = match Records::open(input) {
        Ok(d) => d,
        Err(e) => return fail(e.to_string()),
    };
    // New records take about what they took in the input (plus an offset delta each).
    let mut out = Output::with_capacity(input.len() + input.len() / 8);
    loop {
        let (i, r) = match records.next_view() {
            Ok(Some(v)) => v,
            Ok(None) => break,
            Err(e) => return fail(e.to_string()),
        };
        if let Err(e) = step(i, r, &mut out) {
            return fail(e);
        }
    }
    set_result(out.finish(&[]));
    STATUS_OK
}

/// `weir_process` of an aggregate: the state comes in with the batch (JSON; empty means
/// `S::default()`) and goes out with the output.
pub fn process_aggregate<S>(
    input: &[u8],
    mut step: impl FnMut(&mut S, u32, Record, &mut Output) -> Result<(), String>,
) -> i32
where
    S: Default + serde::Serialize + serde::de::DeserializeOwned,
{
    let (state, mut records) = match Records::open(input) {
        Ok(d) => d,
        Err(e) => return fail(e.to_string()),
    };
    let mut state: S = if state.is_empty() {
        S::default()
    } else {
        match serde_json::from_slice(state) {
            Ok(s) => s,
            Err(e) => return fail(format!("cannot read the aggregate state: {e}")),
        }
    };
    let mut out = Output::new();
    if let Err(e) = records.for_each_owned(|i, r| step(&mut state, i, r, &mut out)) {
        return fail(e);
    }
    let state = match serde_json::to_vec(&state) {
        Ok(s) => s,
        Err(e) => return fail(format!("cannot save the aggregate state: {e}")),
    };
    set_result(out.finish(&state));
    STATUS_OK
}

#[inline(always)]
fn put_varint(b: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        b.push(v as u8 | 0x80);
        v >>= 7;
    }
    b.push(v as u8);
}

fn put_zigzag(b: &mut Vec<u8>, v: i64) {
    put_varint(b, zigzag(v));
}

#[inline(always)]
fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

/// Writes `v` as a varint at `p`; returns the byte after it.
///
/// # Safety
/// `p` must be valid for `varint_len(v)` bytes of writes.
#[inline(always)]
unsafe fn write_varint(mut p: *mut u8, mut v: u64) -> *mut u8 {
    // SAFETY (all writes): the caller makes room for `varint_len(v)` bytes, which is how many
    // this loop writes.
    unsafe {
        while v >= 0x80 {
            p.write(v as u8 | 0x80);
            p = p.add(1);
            v >>= 7;
        }
        p.write(v as u8);
        p.add(1)
    }
}

/// Copies `b` to `p`; returns the byte after it.
///
/// # Safety
/// `p` must be valid for `b.len()` bytes of writes and not overlap `b`.
#[inline(always)]
unsafe fn write_bytes(p: *mut u8, b: &[u8]) -> *mut u8 {
    // SAFETY: as the caller guarantees.
    unsafe {
        std::ptr::copy_nonoverlapping(b.as_ptr(), p, b.len());
        p.add(b.len())
    }
}

/// Bytes `v` takes as a varint.
#[inline(always)]
fn varint_len(v: u64) -> usize {
    // 1 + floor(bits / 7), with v | 1 so that 0 counts one bit.
    (((64 - (v | 1).leading_zeros()) * 9 + 64) / 64) as usize
}

/// Encodes `records` as one batch in the broker's format (docs/batch-format.md), with
/// explicit offsets so each keeps its own (they must not decrease).
pub fn encode_batch(records: &[Record]) -> Vec<u8> {
    encode_batch_as(records, EXPLICIT_OFFSETS_BIT)
}

/// A batch with these attribute bits (without explicit offsets, record `i` has offset
/// `records[0].offset + i`).
fn encode_batch_as(records: &[Record], attributes: u8) -> Vec<u8> {
    let explicit = attributes & EXPLICIT_OFFSETS_BIT != 0;
    let base_offset = records.first().map_or(0, |r| r.offset);
    let base_timestamp = records.first().map_or(0, |r| r.timestamp);
    let mut section = Vec::new();
    for r in records {
        let mut body = Vec::new();
        if explicit {
            put_varint(&mut body, r.offset - base_offset);
        }
        put_zigzag(&mut body, r.timestamp - base_timestamp);
        match &r.key {
            None => put_zigzag(&mut body, -1),
            Some(k) => {
                put_zigzag(&mut body, k.len() as i64);
                body.extend_from_slice(k);
            }
        }
        put_varint(&mut body, r.value.len() as u64);
        body.extend_from_slice(&r.value);
        put_varint(&mut body, r.headers.len() as u64);
        for h in &r.headers {
            put_varint(&mut body, h.key.len() as u64);
            body.extend_from_slice(h.key.as_bytes());
            put_varint(&mut body, h.value.len() as u64);
            body.extend_from_slice(&h.value);
        }
        put_varint(&mut section, body.len() as u64);
        section.extend_from_slice(&body);
    }
    let max_timestamp = records.iter().map(|r| r.timestamp).max().unwrap_or(0);
    let mut b = Vec::with_capacity(BATCH_HEADER_LEN + section.len());
    b.push(1); // magic
    b.push(attributes);
    b.extend_from_slice(&[0, 0]);
    b.extend_from_slice(&(records.len() as u32).to_le_bytes());
    b.extend_from_slice(&base_offset.to_le_bytes());
    b.extend_from_slice(&base_timestamp.to_le_bytes());
    b.extend_from_slice(&max_timestamp.to_le_bytes());
    b.extend_from_slice(&[0; 12]); // producer id, base sequence
    b.extend_from_slice(&(section.len() as u32).to_le_bytes());
    b.extend_from_slice(&section);
    b
}

/// Encodes a call's input the way the host does: `state`, then `batches` (each from
/// [`encode_batch`] or the broker), records below `skip_below` to be passed over. For native
/// tests of plugins and of this codec.
pub fn encode_input(state: &[u8], skip_below: u64, batches: &[Vec<u8>]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&(state.len() as u32).to_le_bytes());
    b.extend_from_slice(state);
    b.extend_from_slice(&skip_below.to_le_bytes());
    b.extend_from_slice(&(batches.len() as u32).to_le_bytes());
    for batch in batches {
        b.extend_from_slice(batch);
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(offset: u64, key: Option<&str>, value: &str) -> Record {
        Record {
            offset,
            timestamp: 1_700_000_000_000 + offset as i64,
            key: key.map(|k| k.as_bytes().to_vec()),
            value: value.as_bytes().to_vec(),
            headers: vec![Header {
                key: "h".into(),
                value: vec![0, 255],
            }],
        }
    }

    #[test]
    fn input_round_trips() {
        let first = vec![
            rec(7, Some("k"), "héllo"),
            rec(7, None, ""),
            rec(9, None, "x"),
        ];
        // Multi-byte varints: a 300-byte value, a 200-byte key, an offset delta over 127.
        let (key, value) = ("k".repeat(200), "v".repeat(300));
        let second = vec![rec(10, Some(""), "y"), rec(1000, Some(&key), &value)];
        let bytes = encode_input(b"{}", 0, &[encode_batch(&first), encode_batch(&second)]);
        let (state, back) = decode_input(&bytes).unwrap();
        assert_eq!(state, b"{}");
        assert_eq!(back, [first, second].concat());
        for cut in 0..bytes.len() {
            assert!(decode_input(&bytes[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn stored_batches_number_their_records_and_skipping_keeps_indices() {
        let records = vec![rec(5, None, "a"), rec(6, None, "b"), rec(7, None, "c")];
        let stored = encode_batch_as(&records, 0);
        let appended = encode_batch_as(&records, LOG_APPEND_TIME_BIT);
        let bytes = encode_input(b"", 6, &[stored, appended]);
        let (_, mut it) = Records::open(&bytes).unwrap();
        let mut r = Record::default();
        let mut seen = Vec::new();
        while let Some(i) = it.next_into(&mut r).unwrap() {
            seen.push((i, r.offset, r.timestamp, r.value_str().unwrap().to_string()));
        }
        let ts = 1_700_000_000_005;
        assert_eq!(
            seen,
            [
                (1, 6, ts + 1, "b".to_string()),
                (2, 7, ts + 2, "c".into()),
                // Index 3 (offset 5) is below skip_below; log-append: the batch's time.
                (4, 6, ts, "b".into()),
                (5, 7, ts, "c".into()),
            ]
        );
    }

    #[test]
    fn output_layout_matches_the_abi() {
        let mut out = Output::new();
        out.push_unchanged(3);
        out.push_unchanged(4);
        // Sources at offsets 104 (twice: a flat_map) and 106, then a kept record.
        out.push(104, &Record::new("v").with_key("k"));
        out.push(104, &Record::new("w"));
        out.push(
            106,
            &Record {
                timestamp: 9,
                ..Record::new("x")
            },
        );
        out.push_unchanged(7);
        let buf = out.finish(b"S");
        assert_eq!(&buf[..9], &[1, 0, 0, 0, b'S', 3, 0, 0, 0]);
        assert_eq!(&buf[9..18], &[ENTRY_KEEP, 3, 0, 0, 0, 2, 0, 0, 0]);
        assert_eq!(&buf[18..20], &[ENTRY_BATCH, 0]);
        let len = u32::from_le_bytes(buf[20..24].try_into().unwrap()) as usize;
        let batch = &buf[24..24 + len];
        assert_eq!(&buf[24 + len..], &[ENTRY_KEEP, 7, 0, 0, 0, 1, 0, 0, 0]);
        // The broker's batch format: explicit offsets, three records from offset 104.
        assert_eq!(&batch[..2], &[1, EXPLICIT_OFFSETS_BIT]);
        assert_eq!(&batch[4..8], &3u32.to_le_bytes());
        assert_eq!(&batch[8..16], &104u64.to_le_bytes());
        assert_eq!(&batch[16..24], &0i64.to_le_bytes());
        assert_eq!(&batch[24..32], &9i64.to_le_bytes());
        assert_eq!(
            &batch[44..48],
            &((len - BATCH_HEADER_LEN) as u32).to_le_bytes()
        );
        let records = &batch[BATCH_HEADER_LEN..];
        // len, offset delta, timestamp delta, key, value, no headers
        assert_eq!(&records[..8], &[7, 0, 0, 2, b'k', 1, b'v', 0][..]);
        assert_eq!(&records[8..15], &[6, 0, 0, 1, 1, b'w', 0][..]);
        assert_eq!(&records[15..], &[6, 2, 18, 1, 1, b'x', 0][..]);
        let mut empty = Output::new();
        empty.push_unchanged(0);
        assert_eq!(
            empty.finish(&[]),
            [0, 0, 0, 0, 1, 0, 0, 0, ENTRY_KEEP, 0, 0, 0, 0, 1, 0, 0, 0]
        );
    }

    #[test]
    fn new_records_go_out_in_batches_the_sdk_reads_back() {
        let records: Vec<Record> = (0..3000u64)
            .map(|i| {
                let mut r = rec(i / 2, Some("key"), &"v".repeat(700));
                r.timestamp = 1_000 + (i as i64 % 7) * 1_000_000;
                r
            })
            .collect();
        let mut out = Output::new();
        for r in &records {
            out.push(r.offset, r);
        }
        let buf = out.finish(&[]);
        // 3000 records of about 720 bytes: three batches of about 1 MiB each.
        assert_eq!(u32::from_le_bytes(buf[4..8].try_into().unwrap()), 3);
        let mut r = Reader { buf: &buf[8..] };
        let mut back = Vec::new();
        while !r.buf.is_empty() {
            assert_eq!(r.take(2).unwrap(), &[ENTRY_BATCH, 0]);
            let batch = r.bytes().unwrap().to_vec();
            let input = encode_input(&[], 0, &[batch]);
            let (_, mut it) = Records::open(&input).unwrap();
            while let Some((_, v)) = it.next_view().unwrap() {
                back.push(v.to_record());
            }
        }
        assert_eq!(back, records);
    }

    #[test]
    fn a_mapped_view_encodes_as_the_owned_record_would() {
        let mut source = rec(7, Some("k"), "v");
        source.headers.push(Header {
            key: "second".into(),
            value: b"2".to_vec(),
        });
        let bytes = encode_input(b"", 0, &[encode_batch(std::slice::from_ref(&source))]);
        let (_, mut it) = Records::open(&bytes).unwrap();
        let (i, view) = it.next_view().unwrap().unwrap();
        let mapped = view.with_value("V");
        assert_eq!(mapped.header("second"), Some(&b"2"[..]));
        let (mut borrowed, mut owned) = (Output::new(), Output::new());
        assert_eq!(i, 0);
        borrowed.push(view.offset, &mapped);
        owned.push(view.offset, &source.clone().with_value("V"));
        assert_eq!(borrowed.finish(&[]), owned.finish(&[]));
        assert_eq!(
            mapped.into_record(),
            Record {
                offset: 0,
                ..source.with_value("V")
            }
        );
    }

    #[test]
    fn a_reused_record_decodes_each_record_exactly() {
        let mut two_headers = rec(1, Some("long key"), "a longer value than the next");
        two_headers.headers.push(Header {
            key: "second".into(),
            value: b"2".to_vec(),
        });
        let mut no_headers = rec(2, None, "short");
        no_headers.headers.clear();
        let records = vec![
            two_headers,
            no_headers,
            rec(3, Some("k"), "v"),
            rec(4, None, ""),
            rec(500, Some(&"k".repeat(130)), &"v".repeat(1000)),
            rec(501, None, "after the long one"),
        ];
        let bytes = encode_input(b"", 0, &[encode_batch(&records)]);
        let (_, mut it) = Records::open(&bytes).unwrap();
        let mut reused = Record::new(Vec::new());
        let mut seen = Vec::new();
        while it.next_into(&mut reused).unwrap().is_some() {
            seen.push(reused.clone());
        }
        assert_eq!(seen, records);
    }

    #[test]
    fn views_borrow_every_field_and_refuse_what_records_refuse() {
        let mut with_headers = rec(7, Some("k"), "v");
        with_headers.headers.push(Header {
            key: "second".into(),
            value: b"2".to_vec(),
        });
        let records = vec![with_headers, rec(8, None, ""), rec(9, Some(""), "x")];
        let bytes = encode_input(b"", 8, &[encode_batch(&records)]);
        let (_, mut it) = Records::open(&bytes).unwrap();
        let mut seen = Vec::new();
        while let Some((i, v)) = it.next_view().unwrap() {
            assert_eq!(offset(), v.offset as i64);
            seen.push((i, v.to_record()));
        }
        // Offset 7 is below skip_below: passed over, its index kept.
        assert_eq!(seen, [(1, records[1].clone()), (2, records[2].clone())]);
        let first = encode_input(b"", 0, &[encode_batch(&records[..1])]);
        let (_, mut it) = Records::open(&first).unwrap();
        let (_, v) = it.next_view().unwrap().unwrap();
        assert_eq!(v.header("second"), Some(&b"2"[..]));
        assert_eq!(v.headers.len(), 2);
        assert_eq!(v.key_str(), Some("k"));
        for cut in 0..first.len() {
            let r = Records::open(&first[..cut]).and_then(|(_, mut it)| {
                while it.next_view()?.is_some() {}
                Ok(())
            });
            assert!(r.is_err(), "cut at {cut}");
        }
    }
}
