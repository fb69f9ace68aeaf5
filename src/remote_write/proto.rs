//! Remote-Write 1.0 wire messages (`prometheus.WriteRequest`).
//!
//! Owns: the protobuf shape. The prost structs are the reference (tests
//! and receivers decode with them); the sender writes the same bytes with
//! `RequestWriter`, straight from pre-encoded labels, so building a request
//! allocates nothing per series or sample. Must never: emit a label set
//! that is not sorted by name (the record codec guarantees it upstream).

use crate::wal::record::{put_varint, SeriesSet};

#[derive(Clone, PartialEq, prost::Message)]
pub struct WriteRequest {
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct TimeSeries {
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Label {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Sample {
    #[prost(double, tag = "1")]
    pub value: f64,
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

const fn key(field: u64, wire: u64) -> u8 {
    ((field << 3) | wire) as u8
}
const LEN: u64 = 2;
const TIMESERIES: u8 = key(1, LEN);
const TS_LABEL: u8 = key(1, LEN);
const TS_SAMPLE: u8 = key(2, LEN);
const LABEL_NAME: u8 = key(1, LEN);
const LABEL_VALUE: u8 = key(2, LEN);
const SAMPLE_VALUE: u8 = key(1, 1);
const SAMPLE_TS: u8 = key(2, 0);

fn varint_len(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

/// The `labels` fields (tag 1 of TimeSeries) of every series of a set,
/// encoded once when the set is read, so each request only copies bytes.
#[derive(Debug, Default, Clone)]
pub struct EncodedLabels {
    bytes: Vec<u8>,
    /// Series i is `bytes[ends[i-1]..ends[i]]` (0 for i = 0).
    ends: Vec<u32>,
}

impl EncodedLabels {
    pub fn new(set: &SeriesSet) -> Self {
        let mut e = EncodedLabels::default();
        for i in 0..set.len() {
            e.push(set.labels(i));
        }
        e
    }

    /// Appends one series' labels (sorted by name).
    pub fn push<'a>(&mut self, labels: impl Iterator<Item = (&'a str, &'a str)>) {
        for (k, v) in labels {
            let inner =
                1 + varint_len(k.len() as u64) + k.len() + 1 + varint_len(v.len() as u64) + v.len();
            self.bytes.push(TS_LABEL);
            put_varint(&mut self.bytes, inner as u64);
            self.bytes.push(LABEL_NAME);
            put_varint(&mut self.bytes, k.len() as u64);
            self.bytes.extend_from_slice(k.as_bytes());
            self.bytes.push(LABEL_VALUE);
            put_varint(&mut self.bytes, v.len() as u64);
            self.bytes.extend_from_slice(v.as_bytes());
        }
        self.ends.push(self.bytes.len() as u32);
    }

    /// Forgets the series from `len` on.
    pub fn truncate(&mut self, len: usize) {
        if len < self.ends.len() {
            let end = if len == 0 {
                0
            } else {
                self.ends[len - 1] as usize
            };
            self.ends.truncate(len);
            self.bytes.truncate(end);
        }
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    pub fn series(&self, i: usize) -> &[u8] {
        let a = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        &self.bytes[a..self.ends[i] as usize]
    }

    /// Series `i` as `{name="value", ...}`, for log lines.
    pub fn describe(&self, i: usize) -> String {
        match self.ends.get(i) {
            Some(_) => describe_series(self.series(i)),
            None => String::from("{}"),
        }
    }
}

/// Appends TimeSeries messages to an uncompressed WriteRequest body.
#[derive(Debug, Default)]
pub struct RequestWriter {
    pub body: Vec<u8>,
    samples: Vec<u8>,
    pub n_samples: usize,
    pub n_series: usize,
}

impl RequestWriter {
    pub fn clear(&mut self) {
        self.body.clear();
        self.n_samples = 0;
        self.n_series = 0;
    }

    /// Writes one TimeSeries: `labels` from `EncodedLabels::series`, and
    /// its samples (in timestamp order). Series without samples are
    /// skipped: a receiver has nothing to do with them.
    pub fn series(&mut self, labels: &[u8], samples: impl Iterator<Item = (i64, f64)>) {
        self.samples.clear();
        let mut n = 0;
        for (ts, v) in samples {
            let inner = 1 + 8 + 1 + varint_len(ts as u64);
            self.samples.push(TS_SAMPLE);
            self.samples.push(inner as u8);
            self.samples.push(SAMPLE_VALUE);
            self.samples.extend_from_slice(&v.to_bits().to_le_bytes());
            self.samples.push(SAMPLE_TS);
            put_varint(&mut self.samples, ts as u64);
            n += 1;
        }
        if n == 0 {
            return;
        }
        let len = labels.len() + self.samples.len();
        self.body.push(TIMESERIES);
        put_varint(&mut self.body, len as u64);
        self.body.extend_from_slice(labels);
        self.body.extend_from_slice(&self.samples);
        self.n_samples += n;
        self.n_series += 1;
    }
}

/// One series' encoded labels (a `TimeSeries` holding only them) as
/// `{name="value", ...}`, for log lines.
pub fn describe_series(bytes: &[u8]) -> String {
    use prost::Message;
    match TimeSeries::decode(bytes) {
        Ok(ts) => {
            let parts: Vec<String> = ts
                .labels
                .iter()
                .map(|l| format!("{}={:?}", l.name, l.value))
                .collect();
            format!("{{{}}}", parts.join(", "))
        }
        Err(_) => String::from("{?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wal::record::{decode_series_set, encode_series_set, LabelSet, STALE_NAN_BITS};
    use prost::Message;

    #[test]
    fn writer_output_decodes_as_the_prost_messages() {
        let series = vec![
            LabelSet::from_pairs([("__name__", "up"), ("job", "node")]),
            LabelSet::from_pairs([("__name__", "node_load1"), ("zz", &"x".repeat(300))]),
        ];
        let mut rec = Vec::new();
        encode_series_set(1, &series, &mut rec);
        let set = decode_series_set(&rec).unwrap();
        let labels = EncodedLabels::new(&set);
        let mut w = RequestWriter::default();
        w.series(
            labels.series(0),
            [
                (-5i64, 1.0),
                (1_700_000_000_000, f64::from_bits(STALE_NAN_BITS)),
            ]
            .into_iter(),
        );
        w.series(labels.series(1), std::iter::empty());
        w.series(
            labels.series(1),
            [(0i64, -0.0), (i64::MAX, 2.5)].into_iter(),
        );
        assert_eq!((w.n_series, w.n_samples), (2, 4));
        let got = WriteRequest::decode(&w.body[..]).unwrap();
        assert_eq!(got.timeseries.len(), 2);
        let l0: Vec<(&str, &str)> = got.timeseries[0]
            .labels
            .iter()
            .map(|l| (l.name.as_str(), l.value.as_str()))
            .collect();
        assert_eq!(l0, vec![("__name__", "up"), ("job", "node")]);
        assert_eq!(got.timeseries[1].labels[1].value.len(), 300);
        let s0 = &got.timeseries[0].samples;
        assert_eq!((s0[0].timestamp, s0[0].value), (-5, 1.0));
        assert_eq!(s0[1].value.to_bits(), STALE_NAN_BITS);
        assert_eq!(got.timeseries[1].samples[1].timestamp, i64::MAX);
        // And prost writes the same message back to the same bytes where
        // it does not skip defaults (no zero values/timestamps here).
        let mut w2 = RequestWriter::default();
        w2.series(labels.series(0), [(7i64, 1.5)].into_iter());
        assert_eq!(
            WriteRequest::decode(&w2.body[..]).unwrap().encode_to_vec(),
            w2.body
        );
    }
}
