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

/// Request body bytes seen so far, shared between the body wrapper (which
/// moves upstream) and the request's log record.
#[derive(Debug, Default)]
pub struct BodyCounter {
    bytes: AtomicU64,
    exceeded: AtomicBool,
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
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
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
