//! The gRPC accept loop: HTTP/2 connections under the same connection limit as HTTP (a
//! semaphore permit per connection; at the limit new connections wait in the kernel's
//! backlog), keep-alive pings that close connections whose peer stopped answering, a bound on
//! concurrent streams per connection, and a graceful drain (GOAWAY, then in-flight calls
//! finish) driven by the caller.

use super::GrpcService;
use crate::server::HttpLimits;
use hyper::server::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// After a failed `accept` (e.g. out of file descriptors), wait this long before the next.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Concurrent calls per connection: the engine's queue bounds the work, this bounds the
/// per-connection bookkeeping a single client can make the server hold.
const MAX_STREAMS_PER_CONNECTION: u32 = 256;

/// Accepts connections on `listener` and serves `service` on them until `stop` resolves;
/// then stops accepting and returns the connections still open, to be drained by the caller.
pub async fn accept_until(
    listener: TcpListener,
    service: GrpcService,
    limits: &HttpLimits,
    stop: impl Future<Output = ()>,
) -> GracefulShutdown {
    let graceful = GracefulShutdown::new();
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let mut builder = http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(limits.header_timeout))
        .keep_alive_timeout(limits.header_timeout)
        .max_concurrent_streams(MAX_STREAMS_PER_CONNECTION);
    tokio::pin!(stop);
    loop {
        let permit = tokio::select! {
            () = &mut stop => break,
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break, // the semaphore is never closed
            },
        };
        let (stream, peer) = tokio::select! {
            () = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "gRPC accept failed; retrying");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        let connection =
            graceful.watch(builder.serve_connection(TokioIo::new(stream), service.clone()));
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%peer, %error, "gRPC connection closed with an error");
            }
            drop(permit);
        });
    }
    graceful
}
