//! The host side of the plugin ABI (versions 2 to 5, `plugins/ABI.md`): lays out a call's input —
//! the stored batches themselves, copied once into guest memory — and turns what comes back,
//! read strictly in place (the guest is untrusted), into output batches.

use bytes::Bytes;
use weir_common::batch::{self, BatchBuilder, BatchError, BatchHeader, RecordRef, TimestampType};
use weir_common::limits::{
    MAX_BATCH_BYTES, MAX_HEADERS_PER_RECORD, MAX_PIPELINE_OUTPUTS, MAX_RECORDS_PER_BATCH,
    PLUGIN_OUTPUT_BATCH_BYTES,
};

/// The ABI version the guest SDK builds (`weir_abi_version`): 3 adds the failure exports
/// (`weir_offset`, `weir_panic_ptr`, `weir_panic_len`); 4 the entries that send records to
/// another output (`KEEP_TO`, `NEW_TO`) and the `route` kind; 5 the `BATCH` entry (new records
/// already in the batch format, taken as they are once checked).
pub const ABI_VERSION: i32 = 5;
/// The oldest version the host still runs: version 2 modules have no failure exports.
pub const MIN_ABI_VERSION: i32 = 2;

const NO_KEY: u32 = u32::MAX;
const ENTRY_KEEP: u8 = 0;
const ENTRY_NEW: u8 = 1;
/// Version 4: as KEEP and NEW, to the output named by a `u8` after the tag.
const ENTRY_KEEP_TO: u8 = 2;
const ENTRY_NEW_TO: u8 = 3;
/// Version 5: a batch of new records the guest built in the broker's format (explicit
/// offsets: each record at its source's offset), to the output named by a `u8` after the tag.
const ENTRY_BATCH: u8 = 4;

/// The kind a module declares (`weir_kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PluginKind {
    Filter,
    Map,
    FilterMap,
    FlatMap,
    Aggregate,
    /// Version 4: sends each record, unchanged, to one of the pipeline's outputs (or drops it).
    Route,
}

impl PluginKind {
    pub fn from_code(code: i32) -> Option<Self> {
        Some(match code {
            1 => PluginKind::Filter,
            2 => PluginKind::Map,
            3 => PluginKind::FilterMap,
            4 => PluginKind::FlatMap,
            5 => PluginKind::Aggregate,
            6 => PluginKind::Route,
            _ => return None,
        })
    }

    pub fn code(self) -> u8 {
        match self {
            PluginKind::Filter => 1,
            PluginKind::Map => 2,
            PluginKind::FilterMap => 3,
            PluginKind::FlatMap => 4,
            PluginKind::Aggregate => 5,
            PluginKind::Route => 6,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            PluginKind::Filter => "filter",
            PluginKind::Map => "map",
            PluginKind::FilterMap => "filter_map",
            PluginKind::FlatMap => "flat_map",
            PluginKind::Aggregate => "aggregate",
            PluginKind::Route => "route",
        }
    }
}

/// The input of one `weir_process` call: uncompressed batches in offset order, of which
/// records below `skip_below` are not to be processed (the start of a consumer's position
/// inside its first batch).
pub struct Input<'a> {
    state: &'a [u8],
    skip_below: u64,
    batches: &'a [Bytes],
    /// Records in the input.
    pub total: u32,
    /// How many of them (all at the front) lie below `skip_below`.
    pub skipped: u32,
}

impl<'a> Input<'a> {
    /// The input of one call, with its records counted (once: [`decode_output`] checks the
    /// plugin's answer against the same counts).
    pub fn new(state: &'a [u8], skip_below: u64, batches: &'a [Bytes]) -> Result<Self, BatchError> {
        let (total, skipped) = counts(batches, skip_below)?;
        Ok(Self {
            state,
            skip_below,
            batches,
            total,
            skipped,
        })
    }

    /// Bytes the encoded input takes.
    pub fn encoded_len(&self) -> usize {
        4 + self.state.len() + 8 + 4 + self.batches.iter().map(Bytes::len).sum::<usize>()
    }

    /// `u32 state_len | state | u64 skip_below | u32 batch_count | batch*` into `dst`, which
    /// is exactly [`Input::encoded_len`] bytes (guest memory: the batches are copied once, here).
    pub fn write(&self, dst: &mut [u8]) {
        let mut at = 0;
        let mut put = |bytes: &[u8]| {
            dst[at..at + bytes.len()].copy_from_slice(bytes);
            at += bytes.len();
        };
        put(&(self.state.len() as u32).to_le_bytes());
        put(self.state);
        put(&self.skip_below.to_le_bytes());
        put(&(self.batches.len() as u32).to_le_bytes());
        for b in self.batches {
            put(b);
        }
    }

    /// Every input record, by index (only needed to build a changed output).
    pub fn records(&self) -> Result<Vec<RecordRef<'_>>, BatchError> {
        let mut out = Vec::new();
        for b in self.batches {
            for r in batch::record_refs(b)? {
                out.push(r?);
            }
        }
        Ok(out)
    }
}

/// Records in `batches`, and how many of them (all at the front) lie below `skip_below`.
fn counts(batches: &[Bytes], skip_below: u64) -> Result<(u32, u32), BatchError> {
    let (mut total, mut skipped) = (0u32, 0u32);
    for b in batches {
        let h = BatchHeader::parse(b)?;
        total += h.record_count;
        if h.base_offset >= skip_below {
            continue;
        }
        skipped += if h.explicit_offsets() {
            let mut below = 0;
            for r in batch::record_refs(b)? {
                if r?.offset >= skip_below {
                    break;
                }
                below += 1;
            }
            below
        } else {
            (skip_below - h.base_offset).min(u64::from(h.record_count)) as u32
        };
    }
    Ok((total, skipped))
}

/// Reads little-endian fields of the guest's output.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    #[inline(always)]
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], String> {
        let (head, rest) = self
            .buf
            .split_at_checked(n)
            .ok_or_else(|| format!("output truncated in {what}"))?;
        self.buf = rest;
        Ok(head)
    }

    #[inline(always)]
    fn u8(&mut self, what: &str) -> Result<u8, String> {
        Ok(self.take(1, what)?[0])
    }

    #[inline(always)]
    fn u32(&mut self, what: &str) -> Result<u32, String> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    #[inline(always)]
    fn i64(&mut self, what: &str) -> Result<i64, String> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8, what)?);
        Ok(i64::from_le_bytes(a))
    }

    #[inline(always)]
    fn bytes(&mut self, what: &str) -> Result<&'a [u8], String> {
        let n = self.u32(what)? as usize;
        self.take(n, what)
    }
}

/// The headers of a new output record (`u32 len` framed, checked before use).
#[derive(Clone)]
struct NewHeaders<'a> {
    buf: &'a [u8],
    left: u32,
}

impl<'a> Iterator for NewHeaders<'a> {
    type Item = (&'a str, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let mut r = Reader { buf: self.buf };
        let k = std::str::from_utf8(r.bytes("").ok()?).ok()?;
        let v = r.bytes("").ok()?;
        self.buf = r.buf;
        Some((k, v))
    }
}

/// What one call made of its input.
pub enum Decoded<'a> {
    /// Every record from `skip_below` on passed on unchanged, in order: the input stands.
    Unchanged { state: &'a [u8] },
    /// New output batches (explicit offsets; empty when everything was dropped).
    Changed {
        state: &'a [u8],
        /// Output 0's.
        batches: Vec<Bytes>,
        /// Records in `batches`.
        records: u64,
        /// The other outputs' (version 4), by output, those with records only.
        routed: Vec<(u8, Vec<Bytes>)>,
    },
}

/// Output batches under construction: explicit-offset batches of about
/// [`PLUGIN_OUTPUT_BATCH_BYTES`], each record at its source's offset.
#[derive(Default)]
struct OutputBatches {
    done: Vec<Bytes>,
    current: Option<BatchBuilder>,
    /// Bytes a new batch reserves (about the input's size: a map's output is as large).
    capacity: usize,
    records: u64,
}

impl OutputBatches {
    fn new(capacity: usize) -> Self {
        Self {
            done: Vec::new(),
            current: None,
            capacity: capacity.clamp(4096, PLUGIN_OUTPUT_BATCH_BYTES),
            records: 0,
        }
    }

    fn push<'h>(
        &mut self,
        offset: u64,
        timestamp: i64,
        key: Option<&[u8]>,
        value: &[u8],
        headers: impl IntoIterator<Item = (&'h str, &'h [u8])> + Clone,
    ) {
        if matches!(&self.current, Some(b) if b.len_bytes() >= PLUGIN_OUTPUT_BATCH_BYTES) {
            self.seal();
        }
        let b = self.current.get_or_insert_with(|| {
            let mut b =
                BatchBuilder::with_explicit_offsets(TimestampType::CreateTime, self.capacity);
            b.set_base_offset(offset);
            b
        });
        b.push_at(offset - b.base_offset(), timestamp, key, value, headers);
        self.records += 1;
    }

    /// A finished batch of `records` records, after what is there (which it seals).
    fn push_batch(&mut self, batch: Bytes, records: u64) {
        self.seal();
        self.done.push(batch);
        self.records += records;
    }

    fn seal(&mut self) {
        if let Some(b) = self.current.take() {
            self.done.push(b.finish());
        }
    }

    fn finish(mut self) -> (Vec<Bytes>, u64) {
        self.seal();
        (self.done, self.records)
    }
}

/// The input's records, decoded on first need: a map's NEW entries need only offsets, which
/// batches with implicit offsets give without decoding a record.
struct InputRecords<'i> {
    input: &'i Input<'i>,
    decoded: Option<Vec<RecordRef<'i>>>,
    /// Per input batch: index of its first record, its base offset, its record count.
    batches: Vec<(u32, u64, u32)>,
    /// Whether any input batch carries explicit offsets (a chain's later stage): offsets then
    /// come from the decoded records.
    explicit: bool,
}

impl<'i> InputRecords<'i> {
    fn new(input: &'i Input<'i>) -> Result<Self, BatchError> {
        let mut batches = Vec::with_capacity(input.batches.len());
        let mut first = 0u32;
        let mut explicit = false;
        for b in input.batches {
            let h = BatchHeader::parse(b)?;
            batches.push((first, h.base_offset, h.record_count));
            explicit |= h.explicit_offsets();
            first += h.record_count;
        }
        Ok(Self {
            input,
            decoded: None,
            batches,
            explicit,
        })
    }

    fn all(&mut self) -> Result<&[RecordRef<'i>], BatchError> {
        if self.decoded.is_none() {
            self.decoded = Some(self.input.records()?);
        }
        Ok(self.decoded.as_deref().unwrap_or_default())
    }

    /// Offset of input record `i` (< total).
    fn offset(&mut self, i: u32) -> Result<u64, BatchError> {
        if !self.explicit {
            let at = self.batches.partition_point(|(first, ..)| *first <= i);
            if let Some(&(first, base, _)) = self.batches.get(at.wrapping_sub(1)) {
                return Ok(base + u64::from(i - first));
            }
        }
        Ok(self.all()?[i as usize].offset)
    }

    /// Index of the first input record from index `from` on whose offset is `offset`.
    fn index_of(&mut self, offset: u64, from: u32) -> Result<Option<u32>, BatchError> {
        if !self.explicit {
            let at = self.batches.partition_point(|&(_, base, _)| base <= offset);
            return Ok(self
                .batches
                .get(at.wrapping_sub(1))
                .and_then(|&(first, base, count)| {
                    let i = u32::try_from(offset - base).ok().filter(|&d| d < count)? + first;
                    (i >= from).then_some(i)
                }));
        }
        let all = self.all()?;
        let rest = all.get(from as usize..).unwrap_or_default();
        let i = rest.partition_point(|r| r.offset < offset);
        Ok(rest
            .get(i)
            .filter(|r| r.offset == offset)
            .map(|_| from + i as u32))
    }
}

/// A BATCH entry (number `n`): the guest's batch, checked record by record — framing, UTF-8
/// header keys, offsets that name input records from index `next` on, in order, timestamps
/// not negative — with the header fields the host owns (max timestamp, producer) written by
/// the host. Returns the batch as it goes out and its record count.
fn guest_batch(
    n: u32,
    bytes: &[u8],
    records: &mut InputRecords<'_>,
    next: &mut u32,
) -> Result<(Bytes, u64), String> {
    let bad = |what: String| format!("output entry {n}: {what}");
    if bytes.len() > MAX_BATCH_BYTES {
        return Err(bad(format!(
            "a batch of {} bytes; at most {MAX_BATCH_BYTES}",
            bytes.len()
        )));
    }
    let header = BatchHeader::parse(bytes).map_err(|e| bad(e.to_string()))?;
    if header.attributes != batch::EXPLICIT_OFFSETS_BIT {
        return Err(bad(format!(
            "batch attributes {:#04x}; a plugin's batch has explicit offsets, create times \
             and no compression ({:#04x})",
            header.attributes,
            batch::EXPLICIT_OFFSETS_BIT
        )));
    }
    if bytes.len() != batch::HEADER_LEN + header.records_len as usize {
        return Err(bad(format!(
            "batch of {} bytes says {} bytes of records",
            bytes.len(),
            header.records_len
        )));
    }
    if header.record_count == 0 || header.record_count > MAX_RECORDS_PER_BATCH {
        return Err(bad(format!("a batch of {} records", header.record_count)));
    }
    if header.base_timestamp < 0 {
        return Err(bad(format!(
            "batch has a negative base timestamp ({})",
            header.base_timestamp
        )));
    }
    let mut max_timestamp = 0i64;
    let mut last: Option<(u64, u32)> = None;
    let bad_input = |e: BatchError| format!("input batch: {e}");
    for rec in batch::record_refs(bytes).map_err(|e| bad(e.to_string()))? {
        let rec = rec.map_err(|e| bad(e.to_string()))?;
        if rec.timestamp < 0 {
            return Err(bad(format!(
                "a record has a negative timestamp ({})",
                rec.timestamp
            )));
        }
        max_timestamp = max_timestamp.max(rec.timestamp);
        let i = match last {
            Some((offset, i)) if offset == rec.offset => i,
            None if rec.offset != header.base_offset => {
                return Err(bad(format!(
                    "batch base offset {} but its first record is at {}",
                    header.base_offset, rec.offset
                )));
            }
            _ => records
                .index_of(rec.offset, *next)
                .map_err(bad_input)?
                .ok_or_else(|| {
                    bad(format!(
                        "a record at offset {} is not at an input record's offset (from input \
                         record {next} on, in order)",
                        rec.offset
                    ))
                })?,
        };
        *next = i;
        last = Some((rec.offset, i));
    }
    let mut owned = bytes.to_vec();
    BatchHeader {
        max_timestamp,
        producer_id: 0,
        base_sequence: 0,
        ..header
    }
    .write_to(&mut owned);
    Ok((Bytes::from(owned), u64::from(header.record_count)))
}

/// Decodes the output of a call on `input`:
/// `u32 state_len | state | u32 entry_count | entry*`, every length checked against the buffer
/// and every source index against the input (in range, not skipped, non-decreasing).
pub fn decode_output<'a>(buf: &'a [u8], input: &Input<'_>) -> Result<Decoded<'a>, String> {
    let mut r = Reader { buf };
    let state = r.bytes("state")?;
    let count = r.u32("entry count")?;
    let (total, skipped) = (input.total, input.skipped);
    let all_kept = {
        let mut peek = Reader { buf: r.buf };
        count == 1
            && peek.u8("").ok() == Some(ENTRY_KEEP)
            && peek.u32("").ok() == Some(skipped)
            && peek.u32("").ok() == Some(total - skipped)
            && peek.buf.is_empty()
    };
    if all_kept {
        return Ok(Decoded::Unchanged { state });
    }
    // Each entry takes at least 9 bytes: a count beyond that is a lie.
    if count as usize > r.buf.len() / 9 {
        return Err(format!(
            "output claims {count} entries in {} bytes",
            r.buf.len()
        ));
    }
    let bad_input = |e: BatchError| format!("input batch: {e}");
    let mut records = InputRecords::new(input).map_err(bad_input)?;
    // Output 0's batches, then the other outputs' as entries name them.
    let mut outs: Vec<OutputBatches> = vec![OutputBatches::new(input.encoded_len())];
    // The next source index an entry may name.
    let mut next = skipped;
    let source = |n: u32, i: u32, next: u32| {
        if i < next || i >= total {
            Err(format!(
                "output entry {n} names input record {i} (inputs from {next} to {}, in order)",
                total.saturating_sub(1)
            ))
        } else {
            Ok(i)
        }
    };
    for n in 0..count {
        let tag = r.u8("entry tag")?;
        let output = match tag {
            ENTRY_KEEP_TO | ENTRY_NEW_TO | ENTRY_BATCH => r.u8("output")?,
            _ => 0,
        };
        if usize::from(output) >= MAX_PIPELINE_OUTPUTS {
            return Err(format!(
                "output entry {n} sends a record to output {output}; there are at most \
                 {MAX_PIPELINE_OUTPUTS}"
            ));
        }
        while outs.len() <= usize::from(output) {
            outs.push(OutputBatches::new(input.encoded_len() / 2));
        }
        let out = &mut outs[usize::from(output)];
        match tag {
            ENTRY_KEEP | ENTRY_KEEP_TO => {
                let first = source(n, r.u32("first")?, next)?;
                let len = r.u32("count")?;
                let end = first
                    .checked_add(len)
                    .filter(|&e| len > 0 && e <= total)
                    .ok_or_else(|| {
                        format!("output entry {n} keeps {len} records from input record {first}")
                    })?;
                for rec in &records.all().map_err(bad_input)?[first as usize..end as usize] {
                    out.push(rec.offset, rec.timestamp, rec.key, rec.value, rec.headers());
                }
                next = end - 1;
            }
            ENTRY_NEW | ENTRY_NEW_TO => {
                let i = source(n, r.u32("source")?, next)?;
                next = i;
                let timestamp = r.i64("timestamp")?;
                // Stored batches carry create times, never negative (`batch::validate`); found
                // by the `plugin_output` fuzz target, which overflowed the batch's deltas.
                if timestamp < 0 {
                    return Err(format!(
                        "output entry {n} has a negative timestamp ({timestamp})"
                    ));
                }
                let key = match r.u32("key")? {
                    NO_KEY => None,
                    len => Some(r.take(len as usize, "key")?),
                };
                let value = r.bytes("value")?;
                let header_count = r.u32("header count")?;
                if header_count as usize > MAX_HEADERS_PER_RECORD {
                    return Err(format!("output entry {n} has {header_count} headers"));
                }
                let start = r.buf;
                for _ in 0..header_count {
                    std::str::from_utf8(r.bytes("header key")?)
                        .map_err(|_| format!("output entry {n}: header key is not UTF-8"))?;
                    r.bytes("header value")?;
                }
                let headers = NewHeaders {
                    buf: &start[..start.len() - r.buf.len()],
                    left: header_count,
                };
                let offset = records.offset(i).map_err(bad_input)?;
                out.push(offset, timestamp, key, value, headers);
            }
            ENTRY_BATCH => {
                let (batch, count) = guest_batch(n, r.bytes("batch")?, &mut records, &mut next)?;
                out.push_batch(batch, count);
            }
            t => return Err(format!("output entry {n} has unknown tag {t}")),
        }
    }
    if !r.buf.is_empty() {
        return Err(format!("{} bytes left over after the output", r.buf.len()));
    }
    let mut outs = outs.into_iter();
    let (batches, records) = outs.next().map(OutputBatches::finish).unwrap_or_default();
    let routed = (1u8..)
        .zip(outs)
        .map(|(k, o)| (k, o.finish().0))
        .filter(|(_, b)| !b.is_empty())
        .collect();
    Ok(Decoded::Changed {
        state,
        batches,
        records,
        routed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_common::batch::set_base_offset;
    use weir_common::record::Record;

    /// A stored batch of `values` at offsets `base..`.
    fn stored(base: u64, values: &[&str]) -> Bytes {
        let mut b = BatchBuilder::new(TimestampType::CreateTime);
        for (i, v) in values.iter().enumerate() {
            b.push(100 + i as i64, Some(b"k"), v.as_bytes(), [("h", &b"x"[..])]);
        }
        let mut bytes = b.finish().to_vec();
        set_base_offset(&mut bytes, base);
        Bytes::from(bytes)
    }

    enum E<'a> {
        Keep(u32, u32),
        New(u32, &'a str),
        /// Version 4: to another output.
        KeepTo(u8, u32, u32),
        NewTo(u8, u32, &'a str),
        /// Version 5: a batch the guest built, to output `.0`, of (offset, value).
        Batch(u8, Vec<(u64, &'a str)>),
        /// Any bytes as a BATCH entry's batch.
        RawBatch(Vec<u8>),
    }

    /// A batch as the guest SDK builds it: explicit offsets from the first record's.
    fn guest_batch_of(records: &[(u64, &str)]) -> Vec<u8> {
        let mut b = BatchBuilder::with_explicit_offsets(TimestampType::CreateTime, 0);
        b.set_base_offset(records[0].0);
        for (offset, value) in records {
            b.push_at(
                offset - records[0].0,
                7,
                None,
                value.as_bytes(),
                [("n", &b"v"[..])],
            );
        }
        b.finish().to_vec()
    }

    /// An output as the guest SDK encodes it.
    fn output(state: &[u8], entries: &[E]) -> Vec<u8> {
        let mut b = Vec::new();
        let put = |b: &mut Vec<u8>, bytes: &[u8]| {
            b.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
            b.extend_from_slice(bytes);
        };
        put(&mut b, state);
        b.extend_from_slice(&(entries.len() as u32).to_le_bytes());
        for e in entries {
            match e {
                E::Keep(first, count) => {
                    b.push(ENTRY_KEEP);
                    b.extend_from_slice(&first.to_le_bytes());
                    b.extend_from_slice(&count.to_le_bytes());
                }
                E::KeepTo(k, first, count) => {
                    b.extend_from_slice(&[ENTRY_KEEP_TO, *k]);
                    b.extend_from_slice(&first.to_le_bytes());
                    b.extend_from_slice(&count.to_le_bytes());
                }
                E::Batch(k, records) => {
                    b.extend_from_slice(&[ENTRY_BATCH, *k]);
                    put(&mut b, &guest_batch_of(records));
                }
                E::RawBatch(bytes) => {
                    b.extend_from_slice(&[ENTRY_BATCH, 0]);
                    put(&mut b, bytes);
                }
                E::New(..) | E::NewTo(..) => {
                    let (source, value) = match e {
                        E::NewTo(k, source, value) => {
                            b.extend_from_slice(&[ENTRY_NEW_TO, *k]);
                            (source, value)
                        }
                        E::New(source, value) => {
                            b.push(ENTRY_NEW);
                            (source, value)
                        }
                        _ => unreachable!(),
                    };
                    b.extend_from_slice(&source.to_le_bytes());
                    b.extend_from_slice(&7i64.to_le_bytes());
                    b.extend_from_slice(&NO_KEY.to_le_bytes());
                    put(&mut b, value.as_bytes());
                    b.extend_from_slice(&1u32.to_le_bytes());
                    put(&mut b, b"n");
                    put(&mut b, b"v");
                }
            }
        }
        b
    }

    fn decoded(batches: &[Bytes]) -> Vec<Record> {
        batches
            .iter()
            .flat_map(|b| batch::decode(b).unwrap().1)
            .collect()
    }

    #[test]
    fn input_layout_and_counts() {
        let batches = [stored(10, &["a", "b", "c"]), stored(13, &["d"])];
        let input = Input::new(b"S", 11, &batches).unwrap();
        let mut buf = vec![0; input.encoded_len()];
        input.write(&mut buf);
        assert_eq!(&buf[..5], &[1, 0, 0, 0, b'S']);
        assert_eq!(&buf[5..13], &11u64.to_le_bytes());
        assert_eq!(&buf[13..17], &2u32.to_le_bytes());
        assert_eq!(&buf[17..17 + batches[0].len()], &batches[0][..]);
        assert_eq!((input.total, input.skipped), (4, 1));
    }

    #[test]
    fn keeping_everything_leaves_the_input_as_it_is() {
        let batches = [stored(10, &["a", "b", "c"]), stored(13, &["d"])];
        let input = Input::new(&[], 11, &batches).unwrap();
        let out = output(b"S", &[E::Keep(1, 3)]);
        assert!(matches!(
            decode_output(&out, &input).unwrap(),
            Decoded::Unchanged { state: b"S" }
        ));
    }

    #[test]
    fn records_sent_to_other_outputs_come_out_apart_in_order() {
        let batches = [stored(10, &["a", "b", "c"]), stored(13, &["d"])];
        let input = Input::new(&[], 10, &batches).unwrap();
        let out = output(
            &[],
            &[
                E::KeepTo(2, 0, 2),
                E::Keep(2, 1),
                E::NewTo(2, 3, "D"),
                E::NewTo(0, 3, "D0"),
            ],
        );
        let Decoded::Changed {
            batches,
            records,
            routed,
            ..
        } = decode_output(&out, &input).unwrap()
        else {
            panic!("unchanged")
        };
        let values = |b: &[Bytes]| -> Vec<(u64, String)> {
            decoded(b)
                .iter()
                .map(|r| (r.offset, String::from_utf8(r.value.to_vec()).unwrap()))
                .collect()
        };
        assert_eq!(records, 2);
        assert_eq!(values(&batches), [(12, "c".into()), (13, "D0".into())]);
        // Output 1 got nothing: only outputs with records are listed.
        assert_eq!(routed.len(), 1);
        assert_eq!(routed[0].0, 2);
        assert_eq!(
            values(&routed[0].1),
            [(10, "a".into()), (11, "b".into()), (13, "D".into())]
        );
        let bad = output(&[], &[E::KeepTo(MAX_PIPELINE_OUTPUTS as u8, 0, 1)]);
        let e = decode_output(&bad, &input).err().unwrap();
        assert!(e.contains("output 8"), "{e}");
    }

    #[test]
    fn kept_and_new_records_keep_their_source_offsets() {
        let batches = [stored(10, &["a", "b", "c"]), stored(13, &["d"])];
        let input = Input::new(&[], 10, &batches).unwrap();
        let out = output(
            &[],
            &[
                E::Keep(0, 1),
                E::New(2, "C1"),
                E::New(2, "C2"),
                E::Keep(3, 1),
            ],
        );
        let Decoded::Changed {
            batches, records, ..
        } = decode_output(&out, &input).unwrap()
        else {
            panic!("unchanged")
        };
        assert_eq!(records, 4);
        let got = decoded(&batches);
        let summary: Vec<(u64, &[u8])> = got.iter().map(|r| (r.offset, &r.value[..])).collect();
        assert_eq!(
            summary,
            [(10, &b"a"[..]), (12, b"C1"), (12, b"C2"), (13, b"d")]
        );
        // A kept record is the input record; a new one is what the plugin said.
        assert_eq!(got[0].key.as_deref(), Some(&b"k"[..]));
        assert_eq!(got[0].timestamp, 100);
        assert_eq!(got[0].headers[0].key, "h");
        assert_eq!(got[1].key, None);
        assert_eq!(got[1].timestamp, 7);
        assert_eq!(got[1].headers[0].key, "n");
        // Dropping everything is an empty output.
        let Decoded::Changed { batches, .. } = decode_output(&output(&[], &[]), &input).unwrap()
        else {
            panic!("unchanged")
        };
        assert!(batches.is_empty());
    }

    #[test]
    fn a_guest_batch_goes_out_as_it_is_at_its_sources_offsets() {
        let batches = [stored(10, &["a", "b", "c"]), stored(13, &["d", "e"])];
        let input = Input::new(&[], 11, &batches).unwrap();
        let out = output(
            &[],
            &[
                E::Batch(0, vec![(11, "B"), (12, "C1"), (12, "C2")]),
                E::Keep(3, 1),
                E::Batch(2, vec![(13, "D")]),
                E::Batch(0, vec![(14, "E")]),
            ],
        );
        let Decoded::Changed {
            batches: out0,
            records,
            routed,
            ..
        } = decode_output(&out, &input).unwrap()
        else {
            panic!("unchanged")
        };
        assert_eq!(records, 5);
        let got = decoded(&out0);
        let summary: Vec<(u64, &[u8])> = got.iter().map(|r| (r.offset, &r.value[..])).collect();
        assert_eq!(
            summary,
            [
                (11, &b"B"[..]),
                (12, b"C1"),
                (12, b"C2"),
                (13, b"d"),
                (14, b"E")
            ]
        );
        assert_eq!(got[0].timestamp, 7);
        assert_eq!(got[0].headers[0].key, "n");
        assert_eq!(got[3].key.as_deref(), Some(&b"k"[..]));
        // The guest's batch went out byte for byte but for the header fields the host owns.
        let sent = guest_batch_of(&[(11, "B"), (12, "C1"), (12, "C2")]);
        assert_eq!(out0[0][batch::HEADER_LEN..], sent[batch::HEADER_LEN..]);
        let h = BatchHeader::parse(&out0[0]).unwrap();
        assert_eq!((h.max_timestamp, h.producer_id, h.record_count), (7, 0, 3));
        assert_eq!(routed.len(), 1);
        assert_eq!(routed[0].0, 2);
        assert_eq!(decoded(&routed[0].1)[0].offset, 13);
    }

    #[test]
    fn a_guest_batch_is_checked_record_by_record() {
        let batches = [stored(10, &["a", "b", "c"]), stored(20, &["d"])];
        let input = Input::new(&[], 11, &batches).unwrap();
        let bad = |entries: &[E]| {
            decode_output(&output(&[], entries), &input)
                .err()
                .unwrap_or_else(|| panic!("accepted"))
        };
        // Offsets: skipped, between batches, past the input, backwards across entries.
        assert!(bad(&[E::Batch(0, vec![(10, "x")])]).contains("not at an input record"));
        assert!(bad(&[E::Batch(0, vec![(11, "x"), (15, "y")])]).contains("offset 15"));
        assert!(bad(&[E::Batch(0, vec![(21, "x")])]).contains("offset 21"));
        assert!(bad(&[E::Keep(2, 1), E::Batch(0, vec![(11, "x")])]).contains("offset 11"));
        assert!(bad(&[E::Batch(0, vec![(12, "x")]), E::Keep(1, 1)]).contains("names input"));
        let good = guest_batch_of(&[(11, "x"), (20, "y")]);
        assert!(decode_output(&output(&[], &[E::RawBatch(good.clone())]), &input).is_ok());
        let with = |f: &dyn Fn(&mut Vec<u8>)| {
            let mut b = good.clone();
            f(&mut b);
            bad(&[E::RawBatch(b)])
        };
        // Header: compression, log-append time, implicit offsets, base offset, lengths, count.
        assert!(with(&|b| b[1] |= 1).contains("attributes"));
        assert!(with(&|b| b[1] |= 0b1000).contains("attributes"));
        assert!(with(&|b| b[1] = 0).contains("attributes"));
        let mut gap = BatchBuilder::with_explicit_offsets(TimestampType::CreateTime, 0);
        gap.set_base_offset(11);
        gap.push_at(1, 7, None, b"x", []);
        assert!(bad(&[E::RawBatch(gap.finish().to_vec())]).contains("base offset 11"));
        assert!(with(&|b| b.push(0)).contains("bytes of records"));
        assert!(with(&|b| b[4] = 3).contains("3 records"));
        assert!(with(&|b| b[4] = 0).contains("0 records"));
        // Timestamps below zero, in the header or a record.
        assert!(with(&|b| b[16..24].copy_from_slice(&(-1i64).to_le_bytes())).contains("negative"));
        let mut back = BatchBuilder::with_explicit_offsets(TimestampType::CreateTime, 0);
        back.set_base_offset(11);
        back.push_at(0, 7, None, b"x", []);
        back.push_at(9, 3, None, b"y", []);
        let mut back = back.finish().to_vec();
        back[16..24].copy_from_slice(&2i64.to_le_bytes());
        assert!(bad(&[E::RawBatch(back)]).contains("negative timestamp (-2)"));
        // Every cut and every flipped byte: an error or a batch that checks out, never a panic.
        for cut in 0..good.len() {
            assert!(
                decode_output(&output(&[], &[E::RawBatch(good[..cut].to_vec())]), &input).is_err()
            );
        }
        for i in 0..good.len() {
            let mut b = good.clone();
            b[i] ^= 0xff;
            if let Ok(Decoded::Changed { batches, .. }) =
                decode_output(&output(&[], &[E::RawBatch(b)]), &input)
            {
                for out in &batches {
                    batch::record_refs(out)
                        .unwrap()
                        .for_each(|r| assert!(r.is_ok()));
                }
            }
        }
    }

    #[test]
    fn a_new_record_with_a_negative_timestamp_is_an_error() {
        let batches = [stored(10, &["a", "b"])];
        let input = Input::new(&[], 10, &batches).unwrap();
        let mut out = output(&[], &[E::New(0, "x"), E::New(1, "y")]);
        // The second entry's timestamp: after state and count (8), entry 1 (36), tag and source.
        let at = 8 + 36 + 5;
        assert_eq!(&out[at..at + 8], &7i64.to_le_bytes());
        out[at..at + 8].copy_from_slice(&i64::MIN.to_le_bytes());
        let e = decode_output(&out, &input).err().unwrap();
        assert!(e.contains("negative timestamp"), "{e}");
    }

    #[test]
    fn malformed_outputs_are_errors_never_panics() {
        let batches = [stored(10, &["a", "b", "c"])];
        let input = Input::new(&[], 11, &batches).unwrap();
        let good = output(b"S", &[E::Keep(1, 1), E::New(2, "x")]);
        assert!(decode_output(&good, &input).is_ok());
        for cut in 0..good.len() {
            assert!(decode_output(&good[..cut], &input).is_err(), "cut at {cut}");
        }
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0xff;
            let _ = decode_output(&bad, &input);
        }
        let bad = |entries: &[E]| decode_output(&output(&[], entries), &input).err();
        // A skipped record, out of range, backwards, an empty or overlong run.
        assert!(
            bad(&[E::Keep(0, 1)])
                .unwrap()
                .contains("names input record 0")
        );
        assert!(bad(&[E::New(3, "x")]).is_some());
        assert!(bad(&[E::New(2, "x"), E::Keep(1, 1)]).is_some());
        assert!(bad(&[E::Keep(1, 0)]).is_some());
        assert!(bad(&[E::Keep(1, 5)]).is_some());
        let mut lie = output(&[], &[]);
        lie[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode_output(&lie, &input).is_err());
    }
}
