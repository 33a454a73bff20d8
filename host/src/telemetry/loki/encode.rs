//! Loki push bodies: a batch of buffered lines grouped into streams (in
//! first-seen order, lines in buffer order), as the snappy-compressed
//! protobuf `PushRequest` of Loki's `pkg/push/push.proto`, or as the push
//! API's JSON form.

use std::collections::HashMap;

use bytes::Bytes;
use serde::Serialize;

use super::buffer::LogEntry;

// === push.proto (github.com/grafana/loki/pkg/push) ===

#[derive(Clone, PartialEq, prost::Message)]
pub struct PushRequest {
    #[prost(message, repeated, tag = "1")]
    pub streams: Vec<StreamAdapter>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct StreamAdapter {
    /// `{name="value", ...}`.
    #[prost(string, tag = "1")]
    pub labels: String,
    #[prost(message, repeated, tag = "2")]
    pub entries: Vec<EntryAdapter>,
    /// Set by Loki's distributor, not by clients.
    #[prost(uint64, tag = "3")]
    pub hash: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct EntryAdapter {
    #[prost(message, optional, tag = "1")]
    pub timestamp: Option<Timestamp>,
    #[prost(string, tag = "2")]
    pub line: String,
}

/// `google.protobuf.Timestamp`.
#[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
pub struct Timestamp {
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

/// Group `batch` into streams, keeping the order lines were buffered in.
fn streams(batch: &[LogEntry]) -> Vec<(&LogEntry, Vec<&LogEntry>)> {
    let mut index: HashMap<&str, usize> = HashMap::new();
    let mut out: Vec<(&LogEntry, Vec<&LogEntry>)> = Vec::new();
    for entry in batch {
        let i = *index.entry(entry.stream.text.as_str()).or_insert_with(|| {
            out.push((entry, Vec::new()));
            out.len() - 1
        });
        out[i].1.push(entry);
    }
    out
}

pub fn push_request(batch: &[LogEntry]) -> PushRequest {
    PushRequest {
        streams: streams(batch)
            .into_iter()
            .map(|(first, entries)| StreamAdapter {
                labels: first.stream.text.clone(),
                entries: entries
                    .into_iter()
                    .map(|e| EntryAdapter {
                        timestamp: Some(Timestamp {
                            seconds: e.timestamp_ns.div_euclid(1_000_000_000),
                            nanos: e.timestamp_ns.rem_euclid(1_000_000_000) as i32,
                        }),
                        line: e.line.clone(),
                    })
                    .collect(),
                hash: 0,
            })
            .collect(),
    }
}

/// The protobuf body, snappy block compressed.
pub fn protobuf_body(batch: &[LogEntry]) -> Result<Bytes, snap::Error> {
    let raw = prost::Message::encode_to_vec(&push_request(batch));
    snap::raw::Encoder::new()
        .compress_vec(&raw)
        .map(Bytes::from)
}

/// The JSON body: `{"streams":[{"stream":{...},"values":[["<ns>","line"]]}]}`.
pub fn json_body(batch: &[LogEntry]) -> Bytes {
    #[derive(Serialize)]
    struct Body {
        streams: Vec<Stream>,
    }
    #[derive(Serialize)]
    struct Stream {
        stream: serde_json::Map<String, serde_json::Value>,
        values: Vec<[String; 2]>,
    }
    let body = Body {
        streams: streams(batch)
            .into_iter()
            .map(|(first, entries)| Stream {
                stream: first
                    .stream
                    .pairs
                    .iter()
                    .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                    .collect(),
                values: entries
                    .into_iter()
                    .map(|e| [e.timestamp_ns.to_string(), e.line.clone()])
                    .collect(),
            })
            .collect(),
    };
    // Strings and maps of strings always serialise.
    Bytes::from(serde_json::to_vec(&body).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Instant;

    use super::super::buffer::StreamLabels;
    use super::*;

    fn batch() -> Vec<LogEntry> {
        let a = Arc::new(StreamLabels::new(vec![("job".into(), "a".into())]));
        let b = Arc::new(StreamLabels::new(vec![("job".into(), "b".into())]));
        let now = Instant::now();
        [
            (&a, "a1", 1_700_000_000_123_456_789),
            (&b, "b1", 1_700_000_000_200_000_000),
            (&a, "a2", 1_700_000_001_000_000_001),
        ]
        .into_iter()
        .map(|(s, line, ts)| LogEntry {
            stream: s.clone(),
            timestamp_ns: ts,
            line: line.into(),
            queued_at: now,
        })
        .collect()
    }

    #[test]
    fn protobuf_groups_streams_in_order_and_round_trips() {
        let body = protobuf_body(&batch()).unwrap();
        let raw = snap::raw::Decoder::new().decompress_vec(&body).unwrap();
        let req: PushRequest = prost::Message::decode(raw.as_slice()).unwrap();
        assert_eq!(req.streams.len(), 2);
        assert_eq!(req.streams[0].labels, "{job=\"a\"}");
        let lines: Vec<&str> = req.streams[0]
            .entries
            .iter()
            .map(|e| e.line.as_str())
            .collect();
        assert_eq!(lines, vec!["a1", "a2"]);
        assert_eq!(
            req.streams[0].entries[0].timestamp,
            Some(Timestamp {
                seconds: 1_700_000_000,
                nanos: 123_456_789
            })
        );
        assert_eq!(req.streams[1].labels, "{job=\"b\"}");
    }

    #[test]
    fn json_has_the_push_api_shape() {
        let v: serde_json::Value = serde_json::from_slice(&json_body(&batch())).unwrap();
        assert_eq!(v["streams"][0]["stream"]["job"], "a");
        assert_eq!(v["streams"][0]["values"][0][0], "1700000000123456789");
        assert_eq!(v["streams"][0]["values"][1][1], "a2");
        assert_eq!(v["streams"][1]["values"][0][1], "b1");
    }
}
