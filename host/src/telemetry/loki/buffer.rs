//! The Loki pusher's in-memory line buffer: access-log lines wait here, in
//! arrival order, until a batch is sent. Bounded in bytes: when full, the
//! oldest lines are dropped (the caller counts them). Each line gets a
//! timestamp strictly after the previous one's, so no stream is ever pushed
//! out of order, even if the clock steps back.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

/// A stream's label set: sorted pairs and their Loki/Prometheus text form.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StreamLabels {
    pub pairs: Vec<(String, String)>,
    /// `{a="x", b="y"}`, what push.proto's `labels` field carries.
    pub text: String,
}

impl StreamLabels {
    /// From `pairs` (sorted here; empty values left out, as Loki does).
    pub fn new(mut pairs: Vec<(String, String)>) -> Self {
        pairs.retain(|(_, v)| !v.is_empty());
        pairs.sort();
        let mut text = String::from("{");
        for (i, (name, value)) in pairs.iter().enumerate() {
            if i > 0 {
                text.push_str(", ");
            }
            text.push_str(name);
            text.push_str("=\"");
            for c in value.chars() {
                match c {
                    '\\' => text.push_str("\\\\"),
                    '"' => text.push_str("\\\""),
                    '\n' => text.push_str("\\n"),
                    c => text.push(c),
                }
            }
            text.push('"');
        }
        text.push('}');
        StreamLabels { pairs, text }
    }
}

/// One buffered line.
#[derive(Debug, Clone)]
pub struct LogEntry {
    pub stream: Arc<StreamLabels>,
    /// Nanoseconds since the Unix epoch.
    pub timestamp_ns: i64,
    pub line: String,
    pub queued_at: Instant,
}

impl LogEntry {
    /// Bytes it holds (what the buffer and batch sizes count).
    pub fn size(&self) -> usize {
        self.line.len() + self.stream.text.len()
    }
}

#[derive(Debug)]
pub struct LineBuffer {
    entries: VecDeque<LogEntry>,
    bytes: usize,
    max_bytes: usize,
    last_timestamp_ns: i64,
}

impl LineBuffer {
    pub fn new(max_bytes: usize) -> Self {
        LineBuffer {
            entries: VecDeque::new(),
            bytes: 0,
            max_bytes,
            last_timestamp_ns: 0,
        }
    }

    /// Append a line stamped `now_ns` (or just after the previous line).
    /// Returns how many lines were dropped to make room (the oldest ones;
    /// a line larger than the whole buffer is itself dropped).
    pub fn push(
        &mut self,
        stream: Arc<StreamLabels>,
        line: String,
        now_ns: i64,
        now: Instant,
    ) -> usize {
        let timestamp_ns = now_ns.max(self.last_timestamp_ns + 1);
        self.last_timestamp_ns = timestamp_ns;
        let entry = LogEntry {
            stream,
            timestamp_ns,
            line,
            queued_at: now,
        };
        let size = entry.size();
        if size > self.max_bytes {
            return 1;
        }
        let mut dropped = 0;
        while self.bytes + size > self.max_bytes {
            match self.entries.pop_front() {
                Some(old) => {
                    self.bytes -= old.size();
                    dropped += 1;
                }
                None => break,
            }
        }
        self.bytes += size;
        self.entries.push_back(entry);
        dropped
    }

    /// The oldest lines up to `max_bytes` (at least one line when any).
    pub fn take_batch(&mut self, max_bytes: usize) -> Vec<LogEntry> {
        let mut batch = Vec::new();
        let mut bytes = 0;
        while let Some(front) = self.entries.front() {
            let size = front.size();
            if !batch.is_empty() && bytes + size > max_bytes {
                break;
            }
            bytes += size;
            self.bytes -= size;
            if let Some(entry) = self.entries.pop_front() {
                batch.push(entry);
            }
        }
        batch
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// When the oldest waiting line was queued.
    pub fn oldest(&self) -> Option<Instant> {
        self.entries.front().map(|e| e.queued_at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(job: &str) -> Arc<StreamLabels> {
        Arc::new(StreamLabels::new(vec![("job".into(), job.into())]))
    }

    #[test]
    fn labels_are_sorted_escaped_and_skip_empty_values() {
        let s = StreamLabels::new(vec![
            ("job".into(), "a\"b\\c".into()),
            ("host".into(), "x".into()),
            ("empty".into(), String::new()),
        ]);
        assert_eq!(s.text, r#"{host="x", job="a\"b\\c"}"#);
        assert_eq!(s.pairs.len(), 2);
    }

    #[test]
    fn timestamps_strictly_increase_even_if_the_clock_steps_back() {
        let mut b = LineBuffer::new(1 << 20);
        let now = Instant::now();
        b.push(stream("a"), "1".into(), 1_000, now);
        b.push(stream("a"), "2".into(), 500, now);
        b.push(stream("a"), "3".into(), 1_001, now);
        let ts: Vec<i64> = b
            .take_batch(1 << 20)
            .iter()
            .map(|e| e.timestamp_ns)
            .collect();
        assert_eq!(ts, vec![1_000, 1_001, 1_002]);
    }

    #[test]
    fn dropping_keeps_the_newest_and_counts() {
        let s = stream("a");
        let mut b = LineBuffer::new(3 * 14);
        let now = Instant::now();
        let dropped: usize = (0..5)
            .map(|i| b.push(s.clone(), format!("line{i}"), i, now))
            .sum();
        assert_eq!(dropped, 2);
        let lines: Vec<String> = b
            .take_batch(usize::MAX)
            .into_iter()
            .map(|e| e.line)
            .collect();
        assert_eq!(lines, vec!["line2", "line3", "line4"]);
        assert!(b.is_empty());
        assert_eq!(b.bytes(), 0);
        assert_eq!(
            b.push(s, "x".repeat(100), 9, now),
            1,
            "larger than the buffer"
        );
        assert!(b.is_empty());
    }

    #[test]
    fn batches_are_cut_by_size_in_order() {
        let s = stream("a");
        let mut b = LineBuffer::new(1 << 20);
        let now = Instant::now();
        for i in 0..10 {
            b.push(s.clone(), format!("line{i}"), i, now);
        }
        let first = b.take_batch(30);
        assert_eq!(first.len(), 2);
        assert_eq!(first[0].line, "line0");
        let rest = b.take_batch(1 << 20);
        assert_eq!(rest.len(), 8);
        assert_eq!(rest[0].line, "line2");
        assert_eq!(b.len(), 0);
    }
}
