//! Storing a response while it streams to the client: [`FillingBody`]
//! passes every frame on at once and keeps a copy; when the body ends
//! cleanly the copy becomes a cache entry. A body that grows past the
//! entry limit stops being copied (and is not stored); one that fails or is
//! abandoned is not stored either. The cache lock, when held, is released
//! when the fill ends either way, waking the requests waiting for it.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};

use super::freshness::StoragePlan;
use super::lock::CacheLockGuard;
use super::ResponseCache;
use crate::body::BoxError;

/// Where a filling body goes once complete.
pub struct CacheFill {
    pub cache: Arc<ResponseCache>,
    pub primary: String,
    pub request_headers: HeaderMap,
    pub plan: StoragePlan,
    /// Bodies longer than this are not stored.
    pub limit: u64,
    pub lock: Option<CacheLockGuard>,
    pub buffer: BytesMut,
}

impl CacheFill {
    fn store(self) {
        let CacheFill {
            cache,
            primary,
            request_headers,
            plan,
            lock,
            buffer,
            ..
        } = self;
        let entry = Arc::new(plan.into_entry(buffer.freeze()));
        if !cache.store.insert(&primary, &request_headers, entry) {
            tracing::debug!(key = %primary, "response larger than the whole cache; not stored");
        }
        // Waiters wake once the entry is in place.
        drop(lock);
    }
}

pin_project_lite::pin_project! {
    /// A response body on its way to the client, copied into the cache.
    pub struct FillingBody<B> {
        #[pin]
        inner: B,
        fill: Option<CacheFill>,
    }
}

impl<B> FillingBody<B> {
    pub fn new(inner: B, fill: CacheFill) -> Self {
        FillingBody {
            inner,
            fill: Some(fill),
        }
    }
}

impl<B> Body for FillingBody<B>
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
        let mut this = self.project();
        match this.inner.as_mut().poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(data), Some(fill)) = (frame.data_ref(), this.fill.as_mut()) {
                    if (fill.buffer.len() + data.len()) as u64 > fill.limit {
                        tracing::debug!(key = %fill.primary, limit = fill.limit, "body over the cache entry limit; not stored");
                        *this.fill = None;
                    } else {
                        fill.buffer.extend_from_slice(data);
                    }
                }
                // A body of known length may not be polled past its last
                // byte (hyper stops at Content-Length): complete the fill now.
                if this.inner.is_end_stream() {
                    if let Some(fill) = this.fill.take() {
                        fill.store();
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                *this.fill = None;
                Poll::Ready(Some(Err(e.into())))
            }
            Poll::Ready(None) => {
                if let Some(fill) = this.fill.take() {
                    fill.store();
                }
                Poll::Ready(None)
            }
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
    use crate::cache::freshness::{assess, policy_request};
    use crate::config::model::{CacheConfig, RouteCache};
    use futures_util::stream;
    use http_body_util::{BodyExt, StreamBody};
    use std::time::SystemTime;

    fn fill(cache: &Arc<ResponseCache>, limit: u64) -> CacheFill {
        let settings = RouteCache {
            max_entry_size: limit,
            ..crate::cache::freshness::tests::settings()
        };
        let mut headers = HeaderMap::new();
        headers.insert("cache-control", "max-age=60".parse().expect("value"));
        let request = policy_request(&"http://x/".parse().expect("uri"), &HeaderMap::new());
        let plan = assess(
            &settings,
            &request,
            http::StatusCode::OK,
            &headers,
            SystemTime::now(),
        )
        .expect("storable");
        CacheFill {
            cache: cache.clone(),
            primary: "k".into(),
            request_headers: HeaderMap::new(),
            plan,
            limit,
            lock: None,
            buffer: BytesMut::new(),
        }
    }

    fn chunks(parts: &[&'static str]) -> impl Body<Data = Bytes, Error = BoxError> {
        let frames: Vec<Result<Frame<Bytes>, BoxError>> = parts
            .iter()
            .map(|c| Ok(Frame::data(Bytes::from_static(c.as_bytes()))))
            .collect();
        StreamBody::new(stream::iter(frames))
    }

    #[tokio::test]
    async fn a_complete_body_is_passed_on_and_stored() {
        let cache = ResponseCache::new(&CacheConfig::default());
        let body = FillingBody::new(chunks(&["hello ", "world"]), fill(&cache, 100));
        let sent = body.collect().await.expect("body").to_bytes();
        assert_eq!(&sent[..], b"hello world");
        let entry = cache.store.get("k", &HeaderMap::new()).expect("stored");
        assert_eq!(&entry.body[..], b"hello world");
    }

    #[tokio::test]
    async fn an_oversized_or_abandoned_body_is_not_stored() {
        let cache = ResponseCache::new(&CacheConfig::default());
        let body = FillingBody::new(chunks(&["12345", "67890"]), fill(&cache, 8));
        let sent = body.collect().await.expect("body").to_bytes();
        assert_eq!(sent.len(), 10, "the client still gets everything");
        assert!(cache.store.get("k", &HeaderMap::new()).is_none());

        let mut body = Box::pin(FillingBody::new(
            chunks(&["12345", "67890"]),
            fill(&cache, 100),
        ));
        let _first = body.frame().await;
        drop(body);
        assert!(cache.store.get("k", &HeaderMap::new()).is_none());
    }
}
