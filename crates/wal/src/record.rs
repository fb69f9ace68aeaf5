//! The WAL's record codec: how a collection's series and values become the
//! bytes the WAL stores (opaque to its engines), and back.
//!
//! Owns: the byte layout of `SeriesSet` and `Samples` records. Must never:
//! panic or allocate without bound on bytes read back from disk (every
//! length is checked against the data that is really there; errors are
//! `BlockError`), or change a value on the way through (the stale NaN
//! `0x7ff0000000000002` and `-0.0` come back bit for bit).
//!
//! Layout (all integers LEB128 varints unless said otherwise; both record
//! kinds are one format byte followed by a snappy *raw* block):
//!
//! ```text
//! SeriesSet: 0xC1 | snappy( set_id, n_symbols, n_symbols × (len, utf8),
//!                           n_series, n_series × (n_labels, n_labels × (name_sym, value_sym)) )
//! Samples:   0xC2 | snappy( set_id, n_series, n_collections,
//!                           n_collections × ( ts, n_series × value ) )
//! ```
//!
//! `ts` is zigzag(ts) for the first collection of a record and
//! zigzag(ts − previous ts) after. A value starts with a varint `h`
//! whose low 3 bits are a tag:
//! - tag 0..=6: the value is `m / 10^tag` for an integer `m` (|m| ≤ 2^53)
//!   that round-trips bit-exactly; `h >> 3` is zigzag(m), or zigzag(m − m')
//!   when the same series' value in the previous collection of this record
//!   had the same tag with mantissa m'. Counters and most gauges of a host
//!   are integers or short decimals, so a value is 1–4 bytes, and an
//!   unchanged value in a batched record is one byte.
//! - tag 7 (`h == 7`): raw IEEE bits follow: 8 bytes little-endian, or,
//!   when the previous collection's value was raw too, a varint of the XOR
//!   with its bits. NaNs (the stale marker among them) always go raw.
//! - tag 7 with `h >> 3 = r ≥ 1`: the next `r` series (at most
//!   `MAX_RUN`, never past the row's end) have no value in this collection
//!   ([`ABSENT`]: the row belongs to another source). A run of up to 15 is
//!   one byte. Absent slots leave each series' previous value as it was, so
//!   the next present value is still a delta. Records written before runs
//!   existed never hold such an `h` and decode exactly as before.
//!
//! No record depends on another except that a Samples record refers to the
//! latest SeriesSet record with the same `set_id` before it (the WAL hands
//! a reader that one first).

use std::collections::HashMap;

use crate::RecordMeta;

/// The stale marker of the Prometheus remote-write spec. Never produced by
/// arithmetic: only the scheduler writes it, once, for a vanished series.
// `f64::from_bits` is const only from Rust 1.83; the MSRV is 1.80.
#[allow(unknown_lints, unnecessary_transmutes)]
// SAFETY: every u64 is a valid f64 bit pattern.
pub const STALE_NAN: f64 = unsafe { std::mem::transmute::<u64, f64>(STALE_NAN_BITS) };
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// True only for the stale marker itself, not for other NaNs.
pub fn is_stale(v: f64) -> bool {
    v.to_bits() == STALE_NAN_BITS
}

/// "No value here": the slot of a series in a Samples row written for
/// another source (the host collection, or another scrape target). Not a
/// sample: never sent, never counted. A NaN payload no exposition parser
/// produces (Go's and Rust's NaN are `0x7ff8…01` / `0x7ff8…00`, the stale
/// marker is `…02`); on disk it is a run, never a value.
#[allow(unknown_lints, unnecessary_transmutes)]
// SAFETY: every u64 is a valid f64 bit pattern.
pub const ABSENT: f64 = unsafe { std::mem::transmute::<u64, f64>(ABSENT_BITS) };
pub const ABSENT_BITS: u64 = 0x7ff0_0000_0000_0003;

/// True only for [`ABSENT`].
pub fn is_absent(v: f64) -> bool {
    v.to_bits() == ABSENT_BITS
}

const SERIES_SET_V1: u8 = 0xC1;
const SAMPLES_V1: u8 = 0xC2;
/// Largest decimal exponent tried; tag 7 is raw.
const MAX_DEC: usize = 6;
const TAG_RAW: u64 = 7;
const POW10: [f64; MAX_DEC + 1] = [1.0, 10.0, 100.0, 1e3, 1e4, 1e5, 1e6];
const MANTISSA_LIMIT: f64 = (1u64 << 53) as f64;
/// Longest run of absent values one token holds: two varint bytes. Also
/// what bounds, per byte of a record, the series count a reader accepts.
const MAX_RUN: usize = (1 << 11) - 1;
/// No legitimate record comes near this; a corrupt length claiming more is
/// rejected before anything is allocated.
const MAX_DECOMPRESSED: usize = 256 << 20;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlockError {
    #[error("empty record")]
    Empty,
    #[error("unknown record format byte {0:#04x}")]
    Format(u8),
    #[error("snappy: {0}")]
    Snappy(String),
    #[error("record truncated")]
    Truncated,
    #[error("varint overflows 64 bits")]
    Varint,
    #[error("trailing bytes after the record")]
    Trailing,
    #[error("label symbol {0} out of range")]
    Symbol(u64),
    #[error("label string is not UTF-8")]
    Utf8,
    #[error("labels of series {0} are not strictly sorted by name or have an empty name")]
    Unsorted(usize),
    #[error("count {0} does not fit in the record")]
    Count(u64),
    #[error("value slice has {got} entries for {want} series")]
    Width { got: usize, want: usize },
}

// ---------------------------------------------------------------------------
// Label sets

/// One series' labels (`__name__` included), sorted by name, no duplicate
/// names.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LabelSet(Vec<(String, String)>);

impl LabelSet {
    /// Sorts by name; of duplicate names the first one given is kept.
    pub fn new(mut pairs: Vec<(String, String)>) -> Self {
        pairs.sort_by(|a, b| a.0.cmp(&b.0));
        pairs.dedup_by(|later, earlier| later.0 == earlier.0);
        LabelSet(pairs)
    }

    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Self::new(
            pairs
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        )
    }

    pub fn pairs(&self) -> &[(String, String)] {
        &self.0
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .binary_search_by(|(k, _)| k.as_str().cmp(name))
            .ok()
            .map(|i| self.0[i].1.as_str())
    }

    /// Adds `name=value` unless the set already has `name` (how external
    /// labels are applied: the series' own label wins).
    pub fn insert_if_absent(&mut self, name: &str, value: &str) {
        if let Err(i) = self.0.binary_search_by(|(k, _)| k.as_str().cmp(name)) {
            self.0.insert(i, (name.to_owned(), value.to_owned()));
        }
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Appends a SeriesSet record for `series` (in this order: a Samples
/// record's i-th value belongs to `series[i]`) to `out`.
pub fn encode_series_set(set_id: u64, series: &[LabelSet], out: &mut Vec<u8>) {
    encode_series_set_iter(
        set_id,
        series
            .iter()
            .map(|s| s.pairs().iter().map(|(k, v)| (k.as_str(), v.as_str()))),
        out,
    );
}

/// [`encode_series_set`] for series given as label iterators (each sorted
/// by name, no duplicate names), so a caller whose labels live elsewhere
/// need not copy them into `LabelSet`s first. Same bytes.
pub fn encode_series_set_iter<'a, S, L>(set_id: u64, series: S, out: &mut Vec<u8>)
where
    S: Iterator<Item = L>,
    L: Iterator<Item = (&'a str, &'a str)>,
{
    // Runs only when the set of series changes, so the map and body
    // allocations here are per change, not per collection.
    let mut syms: HashMap<&str, u32> = HashMap::new();
    let mut order: Vec<&str> = Vec::new();
    let mut refs: Vec<u32> = Vec::new();
    // Labels per series.
    let mut lens: Vec<u32> = Vec::new();
    for s in series {
        let before = refs.len();
        for (k, v) in s {
            for x in [k, v] {
                let next = order.len() as u32;
                let id = *syms.entry(x).or_insert_with(|| {
                    order.push(x);
                    next
                });
                refs.push(id);
            }
        }
        lens.push(((refs.len() - before) / 2) as u32);
    }
    let mut body =
        Vec::with_capacity(refs.len() * 2 + order.iter().map(|s| s.len() + 1).sum::<usize>() + 16);
    put_varint(&mut body, set_id);
    put_varint(&mut body, order.len() as u64);
    for s in &order {
        put_varint(&mut body, s.len() as u64);
        body.extend_from_slice(s.as_bytes());
    }
    drop(syms);
    put_varint(&mut body, lens.len() as u64);
    let mut r = refs.iter();
    for n in lens {
        put_varint(&mut body, u64::from(n));
        for _ in 0..n * 2 {
            // `refs` holds exactly two entries per label, pushed above.
            put_varint(&mut body, u64::from(r.next().copied().unwrap_or(0)));
        }
    }
    out.push(SERIES_SET_V1);
    compress_into(&mut snap::raw::Encoder::new(), &body, out);
}

/// A decoded SeriesSet: all strings in one arena.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SeriesSet {
    pub id: u64,
    arena: String,
    /// Symbol i is `arena[syms[i].0 .. syms[i].1]`.
    syms: Vec<(u32, u32)>,
    /// Pairs of symbol indexes, all series back to back.
    refs: Vec<u32>,
    /// Series i's labels are `refs[starts[i]*2 .. starts[i+1]*2]`.
    starts: Vec<u32>,
}

impl SeriesSet {
    pub fn len(&self) -> usize {
        self.starts.len().saturating_sub(1)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn sym(&self, i: u32) -> &str {
        let (a, b) = self.syms[i as usize];
        &self.arena[a as usize..b as usize]
    }

    /// Labels of series `i`, sorted by name. Panics if `i >= len()` (an
    /// index the caller got from this set, never from the disk).
    pub fn labels(&self, i: usize) -> impl ExactSizeIterator<Item = (&str, &str)> + '_ {
        let (a, b) = (self.starts[i] as usize, self.starts[i + 1] as usize);
        self.refs[a * 2..b * 2]
            .chunks_exact(2)
            .map(|p| (self.sym(p[0]), self.sym(p[1])))
    }

    /// Series `i` as an owned `LabelSet` (tests, tools).
    pub fn label_set(&self, i: usize) -> LabelSet {
        LabelSet(
            self.labels(i)
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        )
    }
}

pub fn decode_series_set(data: &[u8]) -> Result<SeriesSet, BlockError> {
    let mut body = Vec::new();
    decompress(data, SERIES_SET_V1, &mut body)?;
    let mut r = Reader::new(&body);
    let id = r.varint()?;
    let n_syms = r.count(1)?;
    let mut set = SeriesSet {
        id,
        arena: String::new(),
        syms: Vec::with_capacity(n_syms),
        refs: Vec::new(),
        starts: Vec::new(),
    };
    let mut arena = Vec::with_capacity(body.len());
    for _ in 0..n_syms {
        let len = r.count(1)?;
        let bytes = r.bytes(len)?;
        let a = arena.len() as u32;
        arena.extend_from_slice(bytes);
        set.syms.push((a, arena.len() as u32));
    }
    // Each symbol is valid UTF-8 on its own iff the concatenation is and
    // every boundary is a char boundary; checking per symbol is simplest.
    for &(a, b) in &set.syms {
        std::str::from_utf8(&arena[a as usize..b as usize]).map_err(|_| BlockError::Utf8)?;
    }
    set.arena = String::from_utf8(arena).map_err(|_| BlockError::Utf8)?;
    let n_series = r.count(1)?;
    set.starts.reserve(n_series + 1);
    set.starts.push(0);
    let mut labels = 0u32;
    for i in 0..n_series {
        let n = r.count(2)?;
        let mut prev: Option<u32> = None;
        for _ in 0..n {
            let (k, v) = (r.varint()?, r.varint()?);
            for x in [k, v] {
                if x >= set.syms.len() as u64 {
                    return Err(BlockError::Symbol(x));
                }
            }
            let name = set.sym(k as u32);
            if name.is_empty() || prev.is_some_and(|p| set.sym(p) >= name) {
                return Err(BlockError::Unsorted(i));
            }
            prev = Some(k as u32);
            set.refs.push(k as u32);
            set.refs.push(v as u32);
        }
        labels += n as u32;
        set.starts.push(labels);
    }
    if !r.is_empty() {
        return Err(BlockError::Trailing);
    }
    Ok(set)
}

// ---------------------------------------------------------------------------
// Samples

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum Prev {
    #[default]
    None,
    Dec(u8, i64),
    Raw(u64),
}

/// Builds a Samples record from one or more collections; every buffer is
/// kept between records.
#[derive(Debug, Default)]
pub struct SamplesEncoder {
    set_id: u64,
    n_series: usize,
    collections: u64,
    min_ts: i64,
    max_ts: i64,
    prev_ts: i64,
    /// Present (not absent) values pushed since `begin`.
    present: u64,
    prev: Vec<Prev>,
    body: Vec<u8>,
    head: Vec<u8>,
    snappy: Option<snap::raw::Encoder>,
}

impl SamplesEncoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts a record for the series of set `set_id` (`n_series` of them).
    pub fn begin(&mut self, set_id: u64, n_series: usize) {
        self.set_id = set_id;
        self.n_series = n_series;
        self.collections = 0;
        self.present = 0;
        self.min_ts = i64::MAX;
        self.max_ts = i64::MIN;
        self.body.clear();
        self.prev.clear();
        self.prev.resize(n_series, Prev::None);
    }

    /// Collections pushed since `begin`.
    pub fn collections(&self) -> u64 {
        self.collections
    }

    /// Adds one collection: `values[i]` is series i's value at `ts_ms`
    /// ([`ABSENT`] where series i has none). Rows need not come in
    /// timestamp order. Panics if `values.len()` is not the `n_series`
    /// given to `begin` (a caller bug, not data from outside).
    pub fn push_collection(&mut self, ts_ms: i64, values: &[f64]) {
        assert_eq!(values.len(), self.n_series, "one value per series");
        let dts = if self.collections == 0 {
            ts_ms
        } else {
            ts_ms.wrapping_sub(self.prev_ts)
        };
        put_varint(&mut self.body, zigzag(dts));
        self.prev_ts = ts_ms;
        let mut present = 0u64;
        let mut i = 0;
        while i < values.len() {
            if is_absent(values[i]) {
                let run = values[i..]
                    .iter()
                    .take(MAX_RUN)
                    .take_while(|v| is_absent(**v))
                    .count();
                put_varint(&mut self.body, ((run as u64) << 3) | TAG_RAW);
                i += run;
                continue;
            }
            self.prev[i] = put_value(&mut self.body, values[i], self.prev[i]);
            present += 1;
            i += 1;
        }
        // Only present values are samples: a row of absents alone does not
        // widen the record's time range.
        if present > 0 {
            self.min_ts = self.min_ts.min(ts_ms);
            self.max_ts = self.max_ts.max(ts_ms);
        }
        self.present += present;
        self.collections += 1;
    }

    /// Appends the record to `out` and returns its header metadata.
    pub fn finish(&mut self, out: &mut Vec<u8>) -> RecordMeta {
        self.head.clear();
        put_varint(&mut self.head, self.set_id);
        put_varint(&mut self.head, self.n_series as u64);
        put_varint(&mut self.head, self.collections);
        self.head.extend_from_slice(&self.body);
        out.push(SAMPLES_V1);
        let enc = self.snappy.get_or_insert_with(snap::raw::Encoder::new);
        compress_into(enc, &self.head, out);
        let meta = if self.present == 0 {
            RecordMeta::default()
        } else {
            RecordMeta {
                min_ts: self.min_ts,
                max_ts: self.max_ts,
                samples: self.present.min(u32::MAX as u64) as u32,
            }
        };
        self.collections = 0;
        self.body.clear();
        meta
    }
}

fn put_value(out: &mut Vec<u8>, v: f64, prev: Prev) -> Prev {
    if let Some((e, m)) = as_decimal(v) {
        let h = match prev {
            Prev::Dec(pe, pm) if pe == e => zigzag(m - pm),
            _ => zigzag(m),
        };
        put_varint(out, (h << 3) | e as u64);
        return Prev::Dec(e, m);
    }
    let bits = v.to_bits();
    put_varint(out, TAG_RAW);
    match prev {
        Prev::Raw(pb) => put_varint(out, bits ^ pb),
        _ => out.extend_from_slice(&bits.to_le_bytes()),
    }
    Prev::Raw(bits)
}

/// `v` as `m / 10^e` with the smallest `e`, when that decodes to exactly
/// the same bits (so -0.0, NaNs and values needing more digits stay raw).
fn as_decimal(v: f64) -> Option<(u8, i64)> {
    if !v.is_finite() {
        return None;
    }
    for (e, p) in POW10.iter().enumerate() {
        let s = v * p;
        if s.abs() > MANTISSA_LIMIT {
            return None;
        }
        if s.fract() == 0.0 {
            let m = s as i64;
            if ((m as f64) / p).to_bits() == v.to_bits() {
                return Some((e as u8, m));
            }
        }
    }
    None
}

/// Re-encodes consecutive Samples records of one series set as one record,
/// row for row and bit for bit: collections written together cost a delta
/// per value (an unchanged value is one byte) instead of a whole value.
/// The WAL writer uses it for collections that were held back and that no
/// remote has seen, so records a sender delivered from memory keep the
/// exact bytes it remembers them by.
#[derive(Debug, Default)]
pub struct Merger {
    dec: SamplesDecoder,
    enc: SamplesEncoder,
    values: Vec<f64>,
}

impl Merger {
    pub fn new() -> Self {
        Self::default()
    }

    /// The series set (id, number of series) a Samples record refers to.
    pub fn set_of(&mut self, data: &[u8]) -> Result<(u64, usize), BlockError> {
        let r = self.dec.open(data)?;
        Ok((r.set_id, r.n_series))
    }

    /// Appends to `out` one record holding every row of `records` (all of
    /// set `set`, `n_series` wide) in order.
    pub fn merge<'a>(
        &mut self,
        (set, n_series): (u64, usize),
        records: impl IntoIterator<Item = &'a [u8]>,
        out: &mut Vec<u8>,
    ) -> Result<RecordMeta, BlockError> {
        self.enc.begin(set, n_series);
        self.values.clear();
        self.values.resize(n_series, 0.0);
        for data in records {
            let mut r = self.dec.open(data)?;
            if (r.set_id, r.n_series) != (set, n_series) {
                return Err(BlockError::Width {
                    got: r.n_series,
                    want: n_series,
                });
            }
            while let Some(ts) = r.next_collection(&mut self.values)? {
                self.enc.push_collection(ts, &self.values);
            }
        }
        Ok(self.enc.finish(out))
    }
}

/// Reusable decoder for Samples records.
#[derive(Debug, Default)]
pub struct SamplesDecoder {
    body: Vec<u8>,
    prev: Vec<Prev>,
}

/// One Samples record being read: its header, then one collection at a time.
#[derive(Debug)]
pub struct SamplesReader<'a> {
    pub set_id: u64,
    pub n_series: usize,
    pub n_collections: usize,
    r: Reader<'a>,
    prev: &'a mut Vec<Prev>,
    done: usize,
    prev_ts: i64,
}

impl SamplesDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn open<'a>(&'a mut self, data: &[u8]) -> Result<SamplesReader<'a>, BlockError> {
        decompress(data, SAMPLES_V1, &mut self.body)?;
        let mut r = Reader::new(&self.body);
        let set_id = r.varint()?;
        let n_series = r.varint()?;
        let n_collections = r.varint()?;
        // Each collection takes its timestamp and at least one byte per
        // value or per run of up to MAX_RUN absent values, so counts beyond
        // what the bytes left can hold are corrupt (and would otherwise
        // size an allocation).
        if n_collections > 0 {
            let left = r.remaining() as u64;
            let per_row = n_series.div_ceil(MAX_RUN as u64).saturating_add(1);
            if n_collections.saturating_mul(per_row) > left {
                return Err(BlockError::Count(n_collections));
            }
            if n_series > left.saturating_mul(MAX_RUN as u64) {
                return Err(BlockError::Count(n_series));
            }
        }
        let (n_series, n_collections) = (n_series as usize, n_collections as usize);
        self.prev.clear();
        if n_collections > 0 {
            self.prev.resize(n_series, Prev::None);
        }
        Ok(SamplesReader {
            set_id,
            n_series,
            n_collections,
            r,
            prev: &mut self.prev,
            done: 0,
            prev_ts: 0,
        })
    }
}

impl SamplesReader<'_> {
    /// Decodes the next collection into `values` (exactly `n_series`
    /// long) and returns its timestamp; `None` after the last one, once
    /// the whole record has been checked for trailing bytes.
    pub fn next_collection(&mut self, values: &mut [f64]) -> Result<Option<i64>, BlockError> {
        if self.done == self.n_collections {
            if !self.r.is_empty() {
                return Err(BlockError::Trailing);
            }
            return Ok(None);
        }
        if values.len() != self.n_series {
            return Err(BlockError::Width {
                got: values.len(),
                want: self.n_series,
            });
        }
        let d = unzigzag(self.r.varint()?);
        let ts = if self.done == 0 {
            d
        } else {
            self.prev_ts.wrapping_add(d)
        };
        self.prev_ts = ts;
        let mut i = 0;
        while i < values.len() {
            let h = self.r.varint()?;
            let tag = h & 7;
            if tag == TAG_RAW && h != TAG_RAW {
                let run = h >> 3;
                if run > MAX_RUN as u64 || run > (values.len() - i) as u64 {
                    return Err(BlockError::Count(run));
                }
                let run = run as usize;
                values[i..i + run].fill(ABSENT);
                i += run;
                continue;
            }
            let (slot, prev) = (&mut values[i], &mut self.prev[i]);
            i += 1;
            if tag == TAG_RAW {
                let bits = match *prev {
                    Prev::Raw(pb) => pb ^ self.r.varint()?,
                    _ => u64::from_le_bytes(
                        self.r
                            .bytes(8)?
                            .try_into()
                            .map_err(|_| BlockError::Truncated)?,
                    ),
                };
                *prev = Prev::Raw(bits);
                *slot = f64::from_bits(bits);
            } else {
                let e = tag as u8;
                let z = unzigzag(h >> 3);
                let m = match *prev {
                    Prev::Dec(pe, pm) if pe == e => pm.wrapping_add(z),
                    _ => z,
                };
                *prev = Prev::Dec(e, m);
                *slot = (m as f64) / POW10[e as usize];
            }
        }
        self.done += 1;
        Ok(Some(ts))
    }
}

/// Calls `f(set_id, ts, series_index, value)` for every sample of a Samples
/// record, collection by collection, series in set order; absent slots are
/// not samples and are skipped.
pub fn decode_samples(
    data: &[u8],
    mut f: impl FnMut(u64, i64, usize, f64),
) -> Result<(), BlockError> {
    let mut dec = SamplesDecoder::new();
    let mut rd = dec.open(data)?;
    let mut values = vec![0.0; if rd.n_collections > 0 { rd.n_series } else { 0 }];
    while let Some(ts) = rd.next_collection(&mut values)? {
        for (i, v) in values.iter().enumerate() {
            if !is_absent(*v) {
                f(rd.set_id, ts, i, *v);
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Primitives

fn compress_into(enc: &mut snap::raw::Encoder, input: &[u8], out: &mut Vec<u8>) {
    let start = out.len();
    out.resize(start + snap::raw::max_compress_len(input.len()), 0);
    // Compressing into a buffer of max_compress_len cannot fail except for
    // inputs over 4 GiB, which a record never is.
    let n = enc.compress(input, &mut out[start..]).unwrap_or(0);
    out.truncate(start + n);
}

fn decompress(data: &[u8], format: u8, body: &mut Vec<u8>) -> Result<(), BlockError> {
    let (&first, rest) = data.split_first().ok_or(BlockError::Empty)?;
    if first != format {
        return Err(BlockError::Format(first));
    }
    let n = snap::raw::decompress_len(rest).map_err(|e| BlockError::Snappy(e.to_string()))?;
    // Snappy expands at most ~21× (a 3-byte copy of 64 bytes).
    if n > MAX_DECOMPRESSED || n > rest.len().saturating_mul(32).saturating_add(64) {
        return Err(BlockError::Snappy(format!(
            "claimed length {n} is implausible"
        )));
    }
    body.clear();
    body.resize(n, 0);
    let got = snap::raw::Decoder::new()
        .decompress(rest, body)
        .map_err(|e| BlockError::Snappy(e.to_string()))?;
    body.truncate(got);
    Ok(())
}

/// Appends `v` as an unsigned LEB128 varint (protobuf's): the agent's
/// protobuf encoder for remote_write uses it too.
pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

#[derive(Debug)]
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    fn remaining(&self) -> usize {
        self.buf.len()
    }

    fn varint(&mut self) -> Result<u64, BlockError> {
        let mut v = 0u64;
        for (i, &b) in self.buf.iter().enumerate().take(10) {
            if i == 9 && b > 1 {
                return Err(BlockError::Varint);
            }
            v |= ((b & 0x7f) as u64) << (7 * i);
            if b < 0x80 {
                self.buf = &self.buf[i + 1..];
                return Ok(v);
            }
        }
        if self.buf.len() >= 10 {
            Err(BlockError::Varint)
        } else {
            Err(BlockError::Truncated)
        }
    }

    /// A count of items that each take at least `min_bytes` bytes.
    fn count(&mut self, min_bytes: usize) -> Result<usize, BlockError> {
        let n = self.varint()?;
        if n > (self.buf.len() / min_bytes.max(1)) as u64 {
            return Err(BlockError::Count(n));
        }
        Ok(n as usize)
    }

    fn bytes(&mut self, n: usize) -> Result<&'a [u8], BlockError> {
        if n > self.buf.len() {
            return Err(BlockError::Truncated);
        }
        let (a, b) = self.buf.split_at(n);
        self.buf = b;
        Ok(a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ls(pairs: &[(&str, &str)]) -> LabelSet {
        LabelSet::from_pairs(pairs.iter().copied())
    }

    fn sample_series() -> Vec<LabelSet> {
        vec![
            ls(&[("__name__", "node_load1")]),
            ls(&[
                ("mode", "idle"),
                ("cpu", "0"),
                ("__name__", "node_cpu_seconds_total"),
            ]),
            ls(&[
                ("__name__", "node_cpu_seconds_total"),
                ("cpu", "0"),
                ("mode", "user"),
            ]),
            ls(&[
                ("__name__", "node_filesystem_avail_bytes"),
                ("device", "/dev/sda1"),
                ("mountpoint", "/ü"),
            ]),
        ]
    }

    #[test]
    fn label_set_sorts_dedups_and_inserts() {
        let mut s = LabelSet::new(vec![
            ("b".into(), "1".into()),
            ("a".into(), "2".into()),
            ("b".into(), "3".into()),
        ]);
        assert_eq!(
            s.pairs(),
            &[("a".into(), "2".into()), ("b".into(), "1".into())]
        );
        s.insert_if_absent("b", "x");
        s.insert_if_absent("ab", "y");
        assert_eq!(s.get("ab"), Some("y"));
        assert_eq!(s.get("b"), Some("1"));
        assert_eq!(s.len(), 3);
    }

    #[test]
    fn series_set_round_trips() {
        let series = sample_series();
        let mut out = vec![0xAA]; // appends: existing bytes stay
        encode_series_set(42, &series, &mut out);
        assert_eq!(out[0], 0xAA);
        let set = decode_series_set(&out[1..]).unwrap();
        assert_eq!(set.id, 42);
        assert_eq!(set.len(), series.len());
        for (i, s) in series.iter().enumerate() {
            assert_eq!(&set.label_set(i), s);
        }
        let empty = {
            let mut o = Vec::new();
            encode_series_set(7, &[], &mut o);
            decode_series_set(&o).unwrap()
        };
        assert_eq!((empty.id, empty.len()), (7, 0));
    }

    #[test]
    fn unsorted_labels_are_rejected() {
        // Hand-built body: symbols "b", "a"; one series with the labels
        // (b=b, a=a), out of order.
        let mut raw = Vec::new();
        put_varint(&mut raw, 1);
        put_varint(&mut raw, 2);
        raw.extend_from_slice(&[1, b'b', 1, b'a']);
        raw.extend_from_slice(&[1, 2, 0, 0, 1, 1]);
        let mut rec = vec![SERIES_SET_V1];
        compress_into(&mut snap::raw::Encoder::new(), &raw, &mut rec);
        assert_eq!(decode_series_set(&rec), Err(BlockError::Unsorted(0)));
    }

    fn roundtrip(cols: &[(i64, Vec<f64>)]) -> (Vec<u8>, RecordMeta) {
        let n = cols.first().map_or(0, |c| c.1.len());
        let mut enc = SamplesEncoder::new();
        enc.begin(9, n);
        for (ts, v) in cols {
            enc.push_collection(*ts, v);
        }
        let mut out = Vec::new();
        let meta = enc.finish(&mut out);
        let mut got: Vec<(i64, Vec<u64>)> = Vec::new();
        let mut dec = SamplesDecoder::new();
        let mut rd = dec.open(&out).unwrap();
        assert_eq!(rd.set_id, 9);
        let mut row = vec![0.0; n];
        while let Some(ts) = rd.next_collection(&mut row).unwrap() {
            got.push((ts, row.iter().map(|v| v.to_bits()).collect()));
        }
        let want: Vec<(i64, Vec<u64>)> = cols
            .iter()
            .filter(|c| !c.1.is_empty())
            .map(|(t, v)| (*t, v.iter().map(|x| x.to_bits()).collect()))
            .collect();
        assert_eq!(got, want);
        (out, meta)
    }

    /// Why the writer merges held collections: a host's counters move a
    /// little between collections, and a delta costs less than the value.
    #[test]
    fn merging_slowly_moving_collections_makes_them_much_smaller() {
        let n = 500;
        let mut singles = Vec::new();
        for c in 0..10i64 {
            let row: Vec<f64> = (0..n)
                .map(|i| 1_234_567.0 + (i as f64) * 1000.0 + (c * (i as i64 % 3)) as f64)
                .collect();
            let mut enc = SamplesEncoder::new();
            enc.begin(3, n);
            enc.push_collection(c * 1000, &row);
            let mut out = Vec::new();
            enc.finish(&mut out);
            singles.push(out);
        }
        let apart: usize = singles.iter().map(Vec::len).sum();
        let mut merged = Vec::new();
        Merger::new()
            .merge((3, n), singles.iter().map(|s| &s[..]), &mut merged)
            .unwrap();
        assert!(
            merged.len() * 2 < apart,
            "merged {} bytes, apart {apart}",
            merged.len()
        );
    }

    #[test]
    fn stale_nan_and_awkward_values_round_trip_bit_exactly() {
        assert!(is_stale(STALE_NAN) && !is_stale(f64::NAN) && STALE_NAN.is_nan());
        let awkward = vec![
            STALE_NAN,
            f64::NAN,
            -0.0,
            0.0,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::MIN_POSITIVE,
            f64::MAX,
            -f64::MAX,
            1e-300,
            0.1,
            0.3,
            123456.789,
            9007199254740993.0,
            18446744073709551615.0,
            -42.0,
            f64::from_bits(0x7ff8_0000_0000_0001),
        ];
        let mut second = awkward.clone();
        second.reverse();
        let (_, meta) = roundtrip(&[(1000, awkward.clone()), (16000, second), (31000, awkward)]);
        assert_eq!(
            meta,
            RecordMeta {
                min_ts: 1000,
                max_ts: 31000,
                samples: 17 * 3
            }
        );
    }

    #[test]
    fn multi_collection_records_pack_unchanged_and_counter_values() {
        // 500 series: a third constant, a third integer counters, a third
        // two-decimal seconds.
        let n = 500;
        let mut cols = Vec::new();
        for c in 0..20i64 {
            let v: Vec<f64> = (0..n)
                .map(|i| match i % 3 {
                    0 => (i as f64) * 1000.0,
                    1 => 1e9 + (i as f64) * 7.0 + (c as f64) * 1234.0,
                    _ => ((1_000_000 + i * 100 + c as usize * 37) as f64) / 100.0,
                })
                .collect();
            cols.push((1_700_000_000_000 + c * 15_000, v));
        }
        let (one, _) = roundtrip(&cols[..1]);
        let (twenty, meta) = roundtrip(&cols);
        assert_eq!(meta.samples, 20 * 500);
        let first = one.len() as f64 / n as f64;
        let later = (twenty.len() - one.len()) as f64 / (19.0 * n as f64);
        eprintln!("block: first collection {first:.2} B/sample, later ones {later:.2} B/sample");
        // Later collections only carry deltas: a byte or two per value.
        assert!(later < 2.0, "{later}");
        assert!(later < first / 2.0, "{later} vs {first}");
    }

    #[test]
    fn absent_values_round_trip_and_are_not_samples() {
        assert!(is_absent(ABSENT) && !is_absent(STALE_NAN) && !is_stale(ABSENT));
        assert!(!is_absent(f64::NAN) && ABSENT.is_nan());
        // Two sources in one record, rows out of timestamp order: the host
        // row (series 0..3) and a scrape row (series 3..5) started earlier.
        let a = ABSENT;
        let (out, meta) = roundtrip(&[
            (15_000, vec![1.0, 2.5, STALE_NAN, a, a]),
            (14_200, vec![a, a, a, 7.0, f64::NAN]),
            (30_000, vec![2.0, 3.5, a, a, a]),
            (29_100, vec![a, a, a, 8.0, 9.0]),
            (40_000, vec![a, a, a, a, a]),
        ]);
        assert_eq!(
            meta,
            RecordMeta {
                min_ts: 14_200,
                max_ts: 30_000,
                samples: 3 + 2 + 2 + 2
            }
        );
        let mut seen = Vec::new();
        decode_samples(&out, |_, ts, i, v| seen.push((ts, i, v.to_bits()))).unwrap();
        assert_eq!(seen.len(), 9, "absent slots are not handed out: {seen:?}");
        let (only_absent, meta) = roundtrip(&[(1, vec![a; 5000])]);
        assert_eq!(meta, RecordMeta::default());
        assert!(only_absent.len() < 40, "{}", only_absent.len());
    }

    #[test]
    fn runs_longer_than_a_token_and_damaged_runs() {
        let n = MAX_RUN * 2 + 7;
        let mut row = vec![ABSENT; n];
        row[MAX_RUN + 3] = 4.0;
        roundtrip(&[(1, row.clone()), (2, vec![1.0; n]), (3, row)]);
        // A run past the row's end is an error, not a panic or a short row.
        let mut body = Vec::new();
        for x in [9u64, 2, 1, 0] {
            put_varint(&mut body, x);
        }
        put_varint(&mut body, (3 << 3) | TAG_RAW);
        let rec = framed(SAMPLES_V1, &body);
        let mut d = SamplesDecoder::new();
        let mut rd = d.open(&rec).unwrap();
        assert_eq!(rd.next_collection(&mut [0.0; 2]), Err(BlockError::Count(3)));
    }

    /// Bytes a row costs when most of the set belongs to other sources:
    /// 500 series, 450 of them absent, as the scheduler lays them out
    /// (one source's series side by side).
    #[test]
    fn rows_of_mostly_absent_values_stay_small() {
        let n = 500;
        let host = |c: i64| -> Vec<f64> {
            (0..n)
                .map(|i| {
                    if i < 50 {
                        1e6 + (i as f64) * 3.0 + c as f64 * 17.0
                    } else {
                        ABSENT
                    }
                })
                .collect()
        };
        let cols: Vec<(i64, Vec<f64>)> = (0..20).map(|c| (c * 15_000, host(c))).collect();
        let mut enc = SamplesEncoder::new();
        enc.begin(1, n);
        for (ts, v) in &cols {
            enc.push_collection(*ts, v);
        }
        // The 450 absent slots of a row: what the rows cost minus their
        // timestamps and 50 values, measured by encoding those alone.
        let mut alone = SamplesEncoder::new();
        alone.begin(1, 50);
        for (ts, v) in &cols {
            alone.push_collection(*ts, &v[..50]);
        }
        let per_row_absent = (enc.body.len() as f64 - alone.body.len() as f64) / cols.len() as f64;
        let mut out = Vec::new();
        let meta = enc.finish(&mut out);
        assert_eq!(meta.samples, 20 * 50);
        eprintln!(
            "500-series set, 450 absent: {per_row_absent:.2} B per row for the absent slots \
             before snappy; record {} B for 20 rows",
            out.len()
        );
        assert!(per_row_absent <= 2.0, "{per_row_absent}");
    }

    #[test]
    fn timestamps_may_go_backwards_and_empty_records_work() {
        roundtrip(&[
            (5000, vec![1.0]),
            (4000, vec![2.0]),
            (i64::MIN, vec![3.0]),
            (i64::MAX, vec![4.0]),
        ]);
        let (out, meta) = roundtrip(&[]);
        assert_eq!(meta, RecordMeta::default());
        let mut d = SamplesDecoder::new();
        let rd = d.open(&out).unwrap();
        assert_eq!((rd.set_id, rd.n_collections), (9, 0));
    }

    #[test]
    fn reader_checks_width_and_trailing_bytes() {
        let (out, _) = roundtrip(&[(1, vec![1.0, 2.0])]);
        let mut d = SamplesDecoder::new();
        let mut rd = d.open(&out).unwrap();
        assert_eq!(
            rd.next_collection(&mut [0.0; 3]),
            Err(BlockError::Width { got: 3, want: 2 })
        );
        assert_eq!(decode_series_set(&out), Err(BlockError::Format(SAMPLES_V1)));
        assert_eq!(decode_series_set(&[]), Err(BlockError::Empty));
    }

    #[test]
    fn truncations_of_valid_records_are_errors_not_panics() {
        let (out, _) = roundtrip(&[(1, vec![1.5, STALE_NAN, 3.0]), (2, vec![1.5, 2.0, 4.0])]);
        for cut in 0..out.len() {
            assert!(
                decode_samples(&out[..cut], |_, _, _, _| {}).is_err(),
                "{cut}"
            );
        }
        let mut set = Vec::new();
        encode_series_set(1, &sample_series(), &mut set);
        for cut in 0..set.len() {
            assert!(decode_series_set(&set[..cut]).is_err(), "{cut}");
        }
    }

    /// Random bodies behind a valid format byte and snappy framing, so the
    /// decoder's own parsing is what gets exercised.
    fn framed(format: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![format];
        compress_into(&mut snap::raw::Encoder::new(), body, &mut v);
        v
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode_series_set(&data);
            let _ = decode_samples(&data, |_, _, _, _| {});
            let _ = decode_series_set(&framed(SERIES_SET_V1, &data));
            let _ = decode_samples(&framed(SAMPLES_V1, &data), |_, _, _, _| {});
        }

        #[test]
        fn flipped_bytes_never_panic(pos in any::<usize>(), bit in 0u8..8) {
            let (mut out, _) = roundtrip(&[(1, vec![1.5, STALE_NAN, 3.0]), (2, vec![1.5, 2.0, 4.0])]);
            let p = pos % out.len();
            out[p] ^= 1 << bit;
            let _ = decode_samples(&out, |_, _, _, _| {});
            let mut set = Vec::new();
            encode_series_set(1, &sample_series(), &mut set);
            let p = pos % set.len();
            set[p] ^= 1 << bit;
            let _ = decode_series_set(&set);
        }

        #[test]
        fn any_values_round_trip(bits in proptest::collection::vec(any::<u64>(), 1..40), k in 1usize..4) {
            let vals: Vec<f64> = bits.iter().map(|b| f64::from_bits(*b)).collect();
            let cols: Vec<(i64, Vec<f64>)> = (0..k)
                .map(|c| {
                    let mut v = vals.clone();
                    v.rotate_left(c % vals.len());
                    (c as i64 * 1000, v)
                })
                .collect();
            roundtrip(&cols);
        }

        /// Merged records hold every row of their inputs, bit for bit,
        /// absent slots included, and count the same samples.
        #[test]
        fn merged_records_hold_every_row_bit_exactly(
            bits in proptest::collection::vec(any::<u64>(), 1..30),
            k in 2usize..6,
            absent_every in 2usize..5,
        ) {
            let n = bits.len();
            let mut singles = Vec::new();
            let mut want = Vec::new();
            let mut samples = 0u32;
            for c in 0..k {
                let row: Vec<f64> = (0..n)
                    .map(|i| {
                        if (i + c) % absent_every == 0 {
                            ABSENT
                        } else {
                            f64::from_bits(bits[(i + c) % n])
                        }
                    })
                    .collect();
                let ts = 1_700_000_000_000 + c as i64 * 1000;
                let mut enc = SamplesEncoder::new();
                enc.begin(7, n);
                enc.push_collection(ts, &row);
                let mut out = Vec::new();
                samples += enc.finish(&mut out).samples;
                singles.push(out);
                want.push((ts, row.iter().map(|v| v.to_bits()).collect::<Vec<u64>>()));
            }
            let mut m = Merger::new();
            prop_assert_eq!(m.set_of(&singles[0]).unwrap(), (7, n));
            let mut merged = Vec::new();
            let meta = m
                .merge((7, n), singles.iter().map(|s| &s[..]), &mut merged)
                .unwrap();
            prop_assert_eq!(meta.samples, samples);
            let mut dec = SamplesDecoder::new();
            let mut rd = dec.open(&merged).unwrap();
            let mut row = vec![0.0; n];
            let mut got = Vec::new();
            while let Some(ts) = rd.next_collection(&mut row).unwrap() {
                got.push((ts, row.iter().map(|v| v.to_bits()).collect::<Vec<u64>>()));
            }
            prop_assert_eq!(got, want);
        }

        #[test]
        fn decimal_values_round_trip(ms in proptest::collection::vec(-(1i64 << 53)..(1i64 << 53), 1..40), e in 0i32..8) {
            let vals: Vec<f64> = ms.iter().map(|m| *m as f64 / 10f64.powi(e)).collect();
            let next: Vec<f64> = vals.iter().map(|v| v + 0.5).collect();
            roundtrip(&[(0, vals), (1, next)]);
        }
    }
}
