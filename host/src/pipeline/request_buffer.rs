//! Request buffering, the start of the upstream phase (nginx
//! `proxy_request_buffering on`, the default per route): the client's body
//! is read whole — in memory up to the route's `request_buffer_size`, then
//! in an unlinked temporary file — and bounded by `max_body_size` before
//! the upstream is contacted. So a body over the limit is a 413 the
//! upstream never sees, a malformed or cut-short body is the client's 400 /
//! 499, and a slow upload holds no upstream connection while it trickles
//! in. The buffered body goes upstream with a `Content-Length`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures_util::TryStreamExt;
use http::{header, HeaderValue, Request};
use http_body::{Body, Frame};
use http_body_util::{BodyExt, StreamBody};
use tokio::io::{AsyncSeekExt, AsyncWriteExt};

use crate::body::{full_body, BodyCounter, BoxError, LimitedBody, ProxyBody};
use crate::config::model::Route;
use crate::error::ProxyError;

/// Does the request carry a body worth buffering?
pub fn has_body<B: Body>(req: &Request<B>) -> bool {
    if req.body().is_end_stream() {
        return false;
    }
    let headers = req.headers();
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    match declared {
        Some(n) => n > 0,
        // Chunked (HTTP/1.1), or an HTTP/2 stream with data to come.
        None => {
            headers.contains_key(header::TRANSFER_ENCODING)
                || req.version() >= http::Version::HTTP_2
        }
    }
}

/// Read `req`'s body whole (counted in `counter`, cut at the route's
/// limit) and give the request back with it buffered.
pub async fn buffer<B>(
    req: Request<B>,
    route: &Route,
    counter: Arc<BodyCounter>,
) -> Result<Request<ProxyBody>, ProxyError>
where
    B: Body<Data = Bytes> + Send + Sync + 'static,
    B::Error: Into<BoxError>,
{
    let (mut parts, body) = req.into_parts();
    let body = LimitedBody::new(body, route.max_body_size, counter.clone());
    let (body, length) = read_whole(body, route.request_buffer_size)
        .await
        .map_err(|e| {
            ProxyError::from_client_body(&counter, &route.name.0, route.max_body_size)
                .unwrap_or_else(|| ProxyError::Internal(format!("buffering the request body: {e}")))
        })?;
    parts.headers.remove(header::TRANSFER_ENCODING);
    parts
        .headers
        .insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    Ok(Request::from_parts(parts, body))
}

/// Where a body was read to.
enum Spool {
    Memory(BytesMut),
    File(tokio::fs::File),
}

async fn read_whole<B>(body: B, in_memory: usize) -> Result<(ProxyBody, u64), BoxError>
where
    B: Body<Data = Bytes, Error = BoxError>,
{
    let mut body = std::pin::pin!(body);
    let mut spool = Spool::Memory(BytesMut::new());
    let mut length = 0u64;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame?.into_data() else {
            // Trailers are not forwarded from a buffered body.
            continue;
        };
        length += data.len() as u64;
        spool = match spool {
            Spool::Memory(mut buf) if buf.len() + data.len() <= in_memory => {
                buf.extend_from_slice(&data);
                Spool::Memory(buf)
            }
            Spool::Memory(buf) => {
                let mut file = temp_file().await?;
                file.write_all(&buf).await?;
                file.write_all(&data).await?;
                Spool::File(file)
            }
            Spool::File(mut file) => {
                file.write_all(&data).await?;
                Spool::File(file)
            }
        };
    }
    let body = match spool {
        Spool::Memory(buf) => full_body(buf.freeze()),
        Spool::File(mut file) => {
            file.flush().await?;
            file.seek(std::io::SeekFrom::Start(0)).await?;
            let frames = tokio_util::io::ReaderStream::new(file)
                .map_ok(Frame::data)
                .map_err(BoxError::from);
            StreamBody::new(frames).boxed()
        }
    };
    Ok((body, length))
}

/// A new temporary file, already unlinked: it is gone when the body is
/// dropped, whatever happens to the process.
async fn temp_file() -> std::io::Result<tokio::fs::File> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let path = std::env::temp_dir().join(format!(
        "tailgate-body-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let file = tokio::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .await?;
    tokio::fs::remove_file(&path).await?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    fn chunks(parts: &[&'static [u8]]) -> impl Body<Data = Bytes, Error = BoxError> {
        let frames: Vec<Result<Frame<Bytes>, BoxError>> = parts
            .iter()
            .map(|p| Ok(Frame::data(Bytes::from_static(p))))
            .collect();
        StreamBody::new(futures_util::stream::iter(frames))
    }

    #[tokio::test]
    async fn small_bodies_stay_in_memory_and_large_ones_spill_to_a_file() {
        for in_memory in [1024, 4] {
            let (body, length) = read_whole(chunks(&[b"hello ", b"world"]), in_memory)
                .await
                .expect("read");
            assert_eq!(length, 11);
            let bytes = body.collect().await.expect("collect").to_bytes();
            assert_eq!(&bytes[..], b"hello world", "in_memory = {in_memory}");
        }
    }
}
