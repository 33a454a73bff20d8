//! The body types every layer shares (a leaf: it imports nothing from the
//! rest of the crate): [`ProxyBody`], the body of every response the proxy
//! sends and of every request it sends upstream, with its constructors; and
//! [`LimitedBody`], which counts the request body as it streams upstream
//! (pipeline phase 4) and cuts it at the route's `max_body_size`. Nothing
//! here buffers. The response body's wrapper that fires the log phase,
//! `LoggedBody`, lives beside the log phase (`pipeline/logged_body.rs`).

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};

/// Any error a body can end with.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body type of every response the proxy sends (and of requests it
/// sends upstream).
pub type ProxyBody = BoxBody<Bytes, BoxError>;

pub fn empty_body() -> ProxyBody {
    Empty::<Bytes>::new()
        .map_err(|never| match never {})
        .boxed()
}

pub fn full_body(bytes: impl Into<Bytes>) -> ProxyBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// Box any body whose error converts to [`BoxError`].
pub fn boxed<B>(body: B) -> ProxyBody
where
    B: Body<Data = Bytes> + Send + Sync + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed()
}

/// The request body went past the route's `max_body_size`.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("request body larger than {limit} bytes")]
pub struct BodyTooLarge {
    pub limit: u64,
}

/// How the client's request body failed (its error is the client's, never
/// the upstream's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientBodyError {
    /// Not valid HTTP (a malformed chunk size, say): 400.
    Malformed,
    /// The client went away before the body ended: nginx's 499.
    Closed,
}

/// Request body bytes seen so far, shared between the body wrapper (which
/// moves upstream) and the request's log record.
#[derive(Debug, Default)]
pub struct BodyCounter {
    bytes: AtomicU64,
    exceeded: AtomicBool,
    /// 0: none; 1: malformed; 2: closed ([`ClientBodyError`]).
    client_error: std::sync::atomic::AtomicU8,
}

impl BodyCounter {
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Count bytes that reached the upstream outside a body (upgrades).
    pub fn add(&self, bytes: u64) {
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// The body was cut because it went past the limit.
    pub fn exceeded(&self) -> bool {
        self.exceeded.load(Ordering::Relaxed)
    }

    /// The client's body failed (malformed, or the client went away).
    pub fn client_error(&self) -> Option<ClientBodyError> {
        match self.client_error.load(Ordering::Relaxed) {
            1 => Some(ClientBodyError::Malformed),
            2 => Some(ClientBodyError::Closed),
            _ => None,
        }
    }

    /// The body failed for a reason of the client's (too large, malformed,
    /// cut short): an upstream failure at the same time is not the
    /// upstream's fault.
    pub fn failed_downstream(&self) -> bool {
        self.exceeded() || self.client_error().is_some()
    }

    fn record_client_error(&self, err: &BoxError) {
        let code = if client_went_away(err.as_ref()) { 2 } else { 1 };
        self.client_error.store(code, Ordering::Relaxed);
    }
}

/// Did this body error come from the client going away (the connection
/// closed, reset or timed out mid-body), rather than from bytes that are
/// not HTTP?
fn client_went_away(err: &(dyn std::error::Error + 'static)) -> bool {
    use std::io::ErrorKind;
    let mut next = Some(err);
    while let Some(e) = next {
        if let Some(h) = e.downcast_ref::<hyper::Error>() {
            if h.is_incomplete_message() || h.is_canceled() || h.is_timeout() {
                return true;
            }
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return matches!(
                io.kind(),
                ErrorKind::UnexpectedEof
                    | ErrorKind::ConnectionReset
                    | ErrorKind::ConnectionAborted
                    | ErrorKind::BrokenPipe
                    | ErrorKind::TimedOut
            );
        }
        next = e.source();
    }
    false
}

pin_project_lite::pin_project! {
    /// A request body that errors with [`BodyTooLarge`] once more than
    /// `limit` bytes have streamed through it.
    pub struct LimitedBody<B> {
        #[pin]
        inner: B,
        limit: u64,
        counter: Arc<BodyCounter>,
    }
}

impl<B> LimitedBody<B> {
    pub fn new(inner: B, limit: u64, counter: Arc<BodyCounter>) -> Self {
        LimitedBody {
            inner,
            limit,
            counter,
        }
    }
}

impl<B> Body for LimitedBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        if this.counter.exceeded() {
            return Poll::Ready(Some(Err(BodyTooLarge { limit: *this.limit }.into())));
        }
        match this.inner.poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let len = data.len() as u64;
                    let total = this.counter.bytes.fetch_add(len, Ordering::Relaxed) + len;
                    if total > *this.limit {
                        this.counter.exceeded.store(true, Ordering::Relaxed);
                        return Poll::Ready(Some(Err(BodyTooLarge { limit: *this.limit }.into())));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                let e: BoxError = e.into();
                this.counter.record_client_error(&e);
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::stream;
    use http_body_util::StreamBody;

    fn chunked(chunks: &[&'static str]) -> impl Body<Data = Bytes, Error = BoxError> {
        let frames: Vec<Result<Frame<Bytes>, BoxError>> = chunks
            .iter()
            .map(|c| Ok(Frame::data(Bytes::from_static(c.as_bytes()))))
            .collect();
        StreamBody::new(stream::iter(frames))
    }

    #[tokio::test]
    async fn chunked_body_within_limit_passes_and_is_counted() {
        let counter = Arc::new(BodyCounter::default());
        let body = LimitedBody::new(chunked(&["hello ", "world"]), 11, counter.clone());
        let bytes = body.collect().await.expect("within limit").to_bytes();
        assert_eq!(&bytes[..], b"hello world");
        assert_eq!(counter.bytes(), 11);
        assert!(!counter.exceeded());
    }

    #[tokio::test]
    async fn chunked_body_past_limit_errors_midstream() {
        let counter = Arc::new(BodyCounter::default());
        let body = LimitedBody::new(chunked(&["12345", "67890", "abc"]), 8, counter.clone());
        let err = body.collect().await.expect_err("over the limit");
        assert!(err.is::<BodyTooLarge>(), "{err}");
        assert!(counter.exceeded());
        assert_eq!(counter.bytes(), 10);
    }
}
