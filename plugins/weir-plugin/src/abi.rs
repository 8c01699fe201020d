//! The guest side of the plugin ABI (version 1, specified in `plugins/ABI.md`): memory
//! hand-over, batch decoding, output encoding, and the drivers the attribute macros call.
//! Users never call this directly.

use std::alloc::{Layout, alloc as raw_alloc, dealloc as raw_dealloc};
use std::cell::RefCell;

use crate::{Header, Record};

/// Exported by `weir_abi_version`; the host refuses modules with another version.
pub const ABI_VERSION: u32 = 1;

/// Exported by `weir_kind`.
pub const KIND_FILTER: u32 = 1;
pub const KIND_MAP: u32 = 2;
pub const KIND_FILTER_MAP: u32 = 3;
pub const KIND_FLAT_MAP: u32 = 4;
pub const KIND_AGGREGATE: u32 = 5;

/// Return values of `weir_init` and `weir_process`.
pub const STATUS_OK: i32 = 0;
pub const STATUS_ERROR: i32 = 1;

/// Output record flags.
pub const OUTPUT_UNCHANGED: u8 = 0;
pub const OUTPUT_NEW: u8 = 1;

thread_local! {
    /// What the last `weir_init` / `weir_process` produced: the output batch, or an error
    /// message. Valid until the next call.
    static RESULT: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
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

/// Reads little-endian fields from the input.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.buf.len() < n {
            return Err("truncated input batch".into());
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    fn u32(&mut self) -> Result<u32, String> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64, String> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    fn bytes(&mut self) -> Result<&'a [u8], String> {
        let n = self.u32()? as usize;
        self.take(n)
    }
}

/// Decodes `u32 state_len | state | u32 count | record*` (see ABI.md).
pub fn decode_input(buf: &[u8]) -> Result<(&[u8], Vec<Record>), String> {
    let (state, mut records) = Records::open(buf)?;
    let mut out = Vec::with_capacity(records.remaining.min(buf.len() / 24));
    records.for_each_owned(|_, r| {
        out.push(r);
        Ok(())
    })?;
    Ok((state, out))
}

/// The records of an input batch, decoded one at a time — into a fresh [`Record`] or into one
/// reused for every record (no allocation once its buffers are big enough).
pub struct Records<'a> {
    reader: Reader<'a>,
    remaining: usize,
}

impl<'a> Records<'a> {
    /// The state and the records of an input batch.
    pub fn open(buf: &'a [u8]) -> Result<(&'a [u8], Self), String> {
        let mut reader = Reader { buf };
        let state = reader.bytes()?;
        let remaining = reader.u32()? as usize;
        Ok((state, Self { reader, remaining }))
    }

    /// Hands every remaining record, freshly decoded, to `step` with its index. A decoding
    /// error is returned as it is; an error of `step` names the record's offset.
    fn for_each_owned(
        &mut self,
        mut step: impl FnMut(u32, Record) -> Result<(), String>,
    ) -> Result<(), String> {
        let mut i = 0u32;
        loop {
            let mut r = Record::new(Vec::new());
            if !self.next_into(&mut r)? {
                return Ok(());
            }
            let offset = r.offset;
            step(i, r).map_err(|e| format!("record at offset {offset}: {e}"))?;
            i += 1;
        }
    }

    /// Decodes the next record into `rec`, reusing its buffers; `false` after the last one.
    pub fn next_into(&mut self, rec: &mut Record) -> Result<bool, String> {
        if self.remaining == 0 {
            if !self.reader.buf.is_empty() {
                return Err("bytes left over after the input batch".into());
            }
            return Ok(false);
        }
        self.remaining -= 1;
        let r = &mut self.reader;
        rec.offset = r.u64()?;
        rec.timestamp = r.u64()? as i64;
        let key_len = r.u32()?;
        if key_len == u32::MAX {
            rec.key = None;
        } else {
            let k = r.take(key_len as usize)?;
            let key = rec.key.get_or_insert_with(Vec::new);
            key.clear();
            key.extend_from_slice(k);
        }
        let v = r.bytes()?;
        rec.value.clear();
        rec.value.extend_from_slice(v);
        let header_count = r.u32()? as usize;
        rec.headers.truncate(header_count);
        for i in 0..header_count {
            let key = std::str::from_utf8(r.bytes()?)
                .map_err(|_| "header key is not UTF-8".to_string())?;
            let value = r.bytes()?;
            match rec.headers.get_mut(i) {
                Some(h) => {
                    h.key.clear();
                    h.key.push_str(key);
                    h.value.clear();
                    h.value.extend_from_slice(value);
                }
                None => rec.headers.push(Header {
                    key: key.to_string(),
                    value: value.to_vec(),
                }),
            }
        }
        Ok(true)
    }
}

/// `i64 timestamp | key (u32::MAX: none) | value | headers`: a record after its offset (input)
/// or its source index and flag (output).
fn put_record(out: &mut Vec<u8>, r: &Record) {
    out.extend_from_slice(&r.timestamp.to_le_bytes());
    match &r.key {
        None => out.extend_from_slice(&u32::MAX.to_le_bytes()),
        Some(k) => {
            out.extend_from_slice(&(k.len() as u32).to_le_bytes());
            out.extend_from_slice(k);
        }
    }
    out.extend_from_slice(&(r.value.len() as u32).to_le_bytes());
    out.extend_from_slice(&r.value);
    out.extend_from_slice(&(r.headers.len() as u32).to_le_bytes());
    for h in &r.headers {
        out.extend_from_slice(&(h.key.len() as u32).to_le_bytes());
        out.extend_from_slice(h.key.as_bytes());
        out.extend_from_slice(&(h.value.len() as u32).to_le_bytes());
        out.extend_from_slice(&h.value);
    }
}

/// The output batch being built: `u32 state_len | state | u32 count | output*`.
pub struct Output {
    records: Vec<u8>,
    count: u32,
}

impl Output {
    fn with_capacity(inputs: usize) -> Self {
        Self {
            // Room for every input passed on unchanged (5 bytes each); new records grow it.
            records: Vec::with_capacity(inputs.min(1 << 20) * 5),
            count: 0,
        }
    }

    /// Emits input record `index` as it was.
    pub fn push_unchanged(&mut self, index: u32) {
        self.records.extend_from_slice(&index.to_le_bytes());
        self.records.push(OUTPUT_UNCHANGED);
        self.count += 1;
    }

    /// Emits a new record that came from input record `index` (it keeps that offset).
    pub fn push(&mut self, index: u32, r: &Record) {
        self.records.extend_from_slice(&index.to_le_bytes());
        self.records.push(OUTPUT_NEW);
        put_record(&mut self.records, r);
        self.count += 1;
    }

    fn finish(self, state: &[u8]) -> Vec<u8> {
        let mut buf = Vec::with_capacity(8 + state.len() + self.records.len());
        buf.extend_from_slice(&(state.len() as u32).to_le_bytes());
        buf.extend_from_slice(state);
        buf.extend_from_slice(&self.count.to_le_bytes());
        buf.extend_from_slice(&self.records);
        buf
    }
}

/// `weir_init`: parses the JSON params (empty means `{}`) into `slot`.
pub fn init<P: serde::de::DeserializeOwned>(
    slot: &std::sync::OnceLock<P>,
    ptr: u32,
    len: u32,
) -> i32 {
    let input = Input { ptr, len };
    let json = match input.bytes() {
        [] => &b"{}"[..],
        b => b,
    };
    match serde_json::from_slice::<P>(json) {
        Ok(p) => {
            let _ = slot.set(p);
            set_result(Vec::new());
            STATUS_OK
        }
        Err(e) => fail(format!("bad params: {e}")),
    }
}

/// `weir_process` before a successful `weir_init`: frees the input, reports the mistake.
pub fn fail_uninitialized(ptr: u32, len: u32) -> i32 {
    drop(Input { ptr, len });
    fail("weir_process called before a successful weir_init".into())
}

/// Params of a plugin that takes none: any JSON object (or nothing) is accepted.
#[derive(Debug, Default, serde::Deserialize)]
pub struct NoParams {}

/// `weir_process` of a stateless plugin: calls `step(index, record, output)` per record.
pub fn process(
    ptr: u32,
    len: u32,
    mut step: impl FnMut(u32, Record, &mut Output) -> Result<(), String>,
) -> i32 {
    let input = Input { ptr, len };
    let (_, mut records) = match Records::open(input.bytes()) {
        Ok(d) => d,
        Err(e) => return fail(e),
    };
    let mut out = Output::with_capacity(records.remaining);
    if let Err(e) = records.for_each_owned(|i, r| step(i, r, &mut out)) {
        return fail(e);
    }
    set_result(out.finish(&[]));
    STATUS_OK
}

/// `weir_process` of a filter: calls `keep(record)` per record, decoding every record into one
/// reused buffer (a filter only looks), and passes the kept ones on unchanged.
pub fn process_filter(
    ptr: u32,
    len: u32,
    mut keep: impl FnMut(&Record) -> Result<bool, String>,
) -> i32 {
    let input = Input { ptr, len };
    let (_, mut records) = match Records::open(input.bytes()) {
        Ok(d) => d,
        Err(e) => return fail(e),
    };
    let mut out = Output::with_capacity(records.remaining);
    let mut r = Record::new(Vec::new());
    let mut i = 0u32;
    loop {
        match records.next_into(&mut r) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => return fail(e),
        }
        match keep(&r) {
            Ok(true) => out.push_unchanged(i),
            Ok(false) => {}
            Err(e) => return fail(format!("record at offset {}: {e}", r.offset)),
        }
        i += 1;
    }
    set_result(out.finish(&[]));
    STATUS_OK
}

/// `weir_process` of an aggregate: the state comes in with the batch (JSON; empty means
/// `S::default()`) and goes out with the output.
pub fn process_aggregate<S>(
    ptr: u32,
    len: u32,
    mut step: impl FnMut(&mut S, u32, Record, &mut Output) -> Result<(), String>,
) -> i32
where
    S: Default + serde::Serialize + serde::de::DeserializeOwned,
{
    let input = Input { ptr, len };
    let (state, mut records) = match Records::open(input.bytes()) {
        Ok(d) => d,
        Err(e) => return fail(e),
    };
    let mut state: S = if state.is_empty() {
        S::default()
    } else {
        match serde_json::from_slice(state) {
            Ok(s) => s,
            Err(e) => return fail(format!("cannot read the aggregate state: {e}")),
        }
    };
    let mut out = Output::with_capacity(records.remaining);
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

/// Encodes an input batch the way the host does (for native tests of plugins and of this
/// codec).
pub fn encode_input(state: &[u8], records: &[Record]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&(state.len() as u32).to_le_bytes());
    b.extend_from_slice(state);
    b.extend_from_slice(&(records.len() as u32).to_le_bytes());
    for r in records {
        b.extend_from_slice(&r.offset.to_le_bytes());
        put_record(&mut b, r);
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
        let records = vec![rec(7, Some("k"), "héllo"), rec(8, None, "")];
        let bytes = encode_input(b"{}", &records);
        let (state, back) = decode_input(&bytes).unwrap();
        assert_eq!(state, b"{}");
        assert_eq!(back, records);
        for cut in 0..bytes.len() {
            assert!(decode_input(&bytes[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn output_layout_matches_the_abi() {
        let mut out = Output::with_capacity(0);
        out.push_unchanged(3);
        out.push(1, &Record::new("v").with_key("k"));
        let buf = out.finish(b"S");
        assert_eq!(&buf[..9], &[1, 0, 0, 0, b'S', 2, 0, 0, 0]);
        assert_eq!(&buf[9..14], &[3, 0, 0, 0, OUTPUT_UNCHANGED]);
        assert_eq!(&buf[14..19], &[1, 0, 0, 0, OUTPUT_NEW]);
        // timestamp 0, key "k", value "v", no headers
        assert_eq!(buf.len(), 19 + 8 + 4 + 1 + 4 + 1 + 4);
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
        ];
        let bytes = encode_input(b"", &records);
        let (_, mut it) = Records::open(&bytes).unwrap();
        let mut reused = Record::new(Vec::new());
        let mut seen = Vec::new();
        while it.next_into(&mut reused).unwrap() {
            seen.push(reused.clone());
        }
        assert_eq!(seen, records);
    }
}
