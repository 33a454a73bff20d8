//! `wasi:io` (streams and poll) for plugin guests, as hook calls need it on
//! the proxy's tokio worker threads: a guest's print (stdout/stderr, a Rust
//! panic message) or a poll that is ready at once completes on the calling
//! thread; only an operation that really waits (a timer) leaves the worker
//! (`block_in_place`) and is driven by the runtime.
//!
//! wasmtime-wasi's sync bindings run every blocking `wasi:io` call through
//! `wasmtime_wasi::runtime::in_tokio` (`Handle::block_on`), which panics on a
//! worker thread. Without this module every hook call had to be wrapped in
//! `block_in_place`, which hands the worker's scheduler to another thread and
//! back: several context switches per request (docs/performance-passes.md). These
//! implementations shadow wasmtime-wasi's in the linker ([`link`]) and
//! delegate to its async implementations.

use std::future::Future;
use std::task::{Context, Poll, Waker};

use wasmtime::component::{HasData, Linker, Resource, ResourceTable};
use wasmtime_wasi::p2::bindings::io::poll as async_poll;
use wasmtime_wasi::p2::bindings::io::streams as async_streams;
use wasmtime_wasi::p2::bindings::sync::io::poll;
use wasmtime_wasi::p2::bindings::sync::io::streams;
use wasmtime_wasi::p2::{DynPollable, StreamError, StreamResult};

use wasmtime_wasi::WasiView;

use crate::host_state::HostState;

type InputStream = streams::InputStream;
type OutputStream = streams::OutputStream;

/// Re-links `wasi:io/streams` and `wasi:io/poll` (already linked by
/// `wasmtime_wasi::p2::add_to_linker_sync`) with the implementations below.
pub(crate) fn link(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let linked =
        streams::add_to_linker::<HostState, GuestIoData>(linker, |s| GuestIo(s.ctx().table))
            .and_then(|()| {
                poll::add_to_linker::<HostState, GuestIoData>(linker, |s| GuestIo(s.ctx().table))
            });
    linker.allow_shadowing(false);
    linked
}

/// Drives a `wasi:io` future to completion from a synchronous host call:
/// polled once on the spot (the guest's output streams are always ready);
/// if it must wait, the thread leaves the tokio worker first, then blocks on
/// the runtime that owns the future's timers and I/O.
fn complete<F: Future>(future: F) -> F::Output {
    let mut future = Box::pin(future);
    if let Poll::Ready(out) = future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        return out;
    }
    match tokio::runtime::Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(|| handle.block_on(future))
        }
        // Outside a runtime (tests, the harness, `tailgate check`):
        // wasmtime-wasi's own way.
        _ => wasmtime_wasi::runtime::in_tokio(future),
    }
}

/// The guest's resource table, seen through these implementations.
struct GuestIo<'a>(&'a mut ResourceTable);

struct GuestIoData;

impl HasData for GuestIoData {
    type Data<'a> = GuestIo<'a>;
}

impl streams::Host for GuestIo<'_> {
    fn convert_stream_error(&mut self, err: StreamError) -> wasmtime::Result<streams::StreamError> {
        streams::Host::convert_stream_error(self.0, err)
    }
}

impl streams::HostOutputStream for GuestIo<'_> {
    fn drop(&mut self, stream: Resource<OutputStream>) -> wasmtime::Result<()> {
        complete(async_streams::HostOutputStream::drop(self.0, stream))
    }

    fn check_write(&mut self, stream: Resource<OutputStream>) -> StreamResult<u64> {
        streams::HostOutputStream::check_write(self.0, stream)
    }

    fn write(&mut self, stream: Resource<OutputStream>, bytes: Vec<u8>) -> StreamResult<()> {
        streams::HostOutputStream::write(self.0, stream, bytes)
    }

    fn blocking_write_and_flush(
        &mut self,
        stream: Resource<OutputStream>,
        bytes: Vec<u8>,
    ) -> StreamResult<()> {
        complete(async_streams::HostOutputStream::blocking_write_and_flush(
            self.0, stream, bytes,
        ))
    }

    fn blocking_write_zeroes_and_flush(
        &mut self,
        stream: Resource<OutputStream>,
        len: u64,
    ) -> StreamResult<()> {
        complete(
            async_streams::HostOutputStream::blocking_write_zeroes_and_flush(self.0, stream, len),
        )
    }

    fn subscribe(
        &mut self,
        stream: Resource<OutputStream>,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        streams::HostOutputStream::subscribe(self.0, stream)
    }

    fn write_zeroes(&mut self, stream: Resource<OutputStream>, len: u64) -> StreamResult<()> {
        streams::HostOutputStream::write_zeroes(self.0, stream, len)
    }

    fn flush(&mut self, stream: Resource<OutputStream>) -> StreamResult<()> {
        streams::HostOutputStream::flush(self.0, stream)
    }

    fn blocking_flush(&mut self, stream: Resource<OutputStream>) -> StreamResult<()> {
        complete(async_streams::HostOutputStream::blocking_flush(
            self.0,
            Resource::new_borrow(stream.rep()),
        ))
    }

    fn splice(
        &mut self,
        dst: Resource<OutputStream>,
        src: Resource<InputStream>,
        len: u64,
    ) -> StreamResult<u64> {
        streams::HostOutputStream::splice(self.0, dst, src, len)
    }

    fn blocking_splice(
        &mut self,
        dst: Resource<OutputStream>,
        src: Resource<InputStream>,
        len: u64,
    ) -> StreamResult<u64> {
        complete(async_streams::HostOutputStream::blocking_splice(
            self.0, dst, src, len,
        ))
    }
}

impl streams::HostInputStream for GuestIo<'_> {
    fn drop(&mut self, stream: Resource<InputStream>) -> wasmtime::Result<()> {
        complete(async_streams::HostInputStream::drop(self.0, stream))
    }

    fn read(&mut self, stream: Resource<InputStream>, len: u64) -> StreamResult<Vec<u8>> {
        streams::HostInputStream::read(self.0, stream, len)
    }

    fn blocking_read(&mut self, stream: Resource<InputStream>, len: u64) -> StreamResult<Vec<u8>> {
        complete(async_streams::HostInputStream::blocking_read(
            self.0, stream, len,
        ))
    }

    fn skip(&mut self, stream: Resource<InputStream>, len: u64) -> StreamResult<u64> {
        streams::HostInputStream::skip(self.0, stream, len)
    }

    fn blocking_skip(&mut self, stream: Resource<InputStream>, len: u64) -> StreamResult<u64> {
        complete(async_streams::HostInputStream::blocking_skip(
            self.0, stream, len,
        ))
    }

    fn subscribe(
        &mut self,
        stream: Resource<InputStream>,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        streams::HostInputStream::subscribe(self.0, stream)
    }
}

impl poll::Host for GuestIo<'_> {
    fn poll(&mut self, pollables: Vec<Resource<DynPollable>>) -> wasmtime::Result<Vec<u32>> {
        complete(async_poll::Host::poll(self.0, pollables))
    }
}

impl poll::HostPollable for GuestIo<'_> {
    fn ready(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<bool> {
        complete(async_poll::HostPollable::ready(self.0, pollable))
    }

    fn block(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<()> {
        complete(async_poll::HostPollable::block(self.0, pollable))
    }

    fn drop(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<()> {
        poll::HostPollable::drop(self.0, pollable)
    }
}
