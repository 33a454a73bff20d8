//! The response body as it streams to the client (pipeline phase 6):
//! [`LoggedBody`] counts the bytes sent and fires the log phase (phase 7)
//! once, when the body ends or is dropped unfinished. It does not buffer.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use super::log_phase::PendingLog;
use crate::body::{BoxError, ProxyBody};

/// Fires the log phase once: when the body ends, or when it is dropped
/// unfinished (client went away, or hyper never polled an empty body).
pub struct LogGuard {
    pending: Option<PendingLog>,
    bytes_sent: u64,
}

impl LogGuard {
    pub fn new(pending: PendingLog) -> Self {
        LogGuard {
            pending: Some(pending),
            bytes_sent: 0,
        }
    }

    pub fn add_sent(&mut self, bytes: u64) {
        self.bytes_sent += bytes;
    }

    pub fn finish(&mut self) {
        if let Some(pending) = self.pending.take() {
            pending.emit(self.bytes_sent);
        }
    }
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        self.finish();
    }
}

pin_project_lite::pin_project! {
    /// The response body as sent to the client.
    pub struct LoggedBody {
        #[pin]
        inner: ProxyBody,
        guard: LogGuard,
    }
}

impl LoggedBody {
    pub fn new(inner: ProxyBody, guard: LogGuard) -> Self {
        LoggedBody { inner, guard }
    }
}

impl Body for LoggedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.guard.add_sent(data.len() as u64);
                }
            }
            Poll::Ready(Some(Err(_))) | Poll::Ready(None) => this.guard.finish(),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
