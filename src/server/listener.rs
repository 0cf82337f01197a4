//! The accept loop both protocols share: connections under a connection limit, and a
//! graceful drain driven by the caller.
//!
//! axum's own `serve` has neither a connection limit nor a read timeout, so 300 half-sent
//! requests exhausted the process's file descriptors. Here every connection holds a permit
//! of a semaphore (at the limit the loop stops accepting and new connections wait in the
//! kernel's backlog); each protocol's connection builder adds its own timeouts (HTTP/1.1: the
//! header read timeout, see [`http1_connections`]; gRPC: keep-alive pings, see
//! [`super::grpc`]), and the handlers bound the body read themselves ([`super::body`]).

use super::HttpLimits;
use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulConnection, GracefulShutdown};
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

/// After a failed `accept` (e.g. out of file descriptors), wait this long before the next, so
/// the loop does not spin while the condition lasts.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Accepts connections on `listener`, at most `max_connections` open at once, and serves
/// each with the connection `serve` makes of it, until `stop` resolves; then stops accepting
/// and returns the connections still open, to be drained by the caller. `protocol` names
/// them in logs.
pub async fn accept_until<C>(
    listener: TcpListener,
    max_connections: usize,
    protocol: &'static str,
    stop: impl Future<Output = ()>,
    mut serve: impl FnMut(TokioIo<TcpStream>) -> C,
) -> GracefulShutdown
where
    C: GracefulConnection + Send + 'static,
    C::Error: std::fmt::Display + Send,
{
    let graceful = GracefulShutdown::new();
    let permits = Arc::new(Semaphore::new(max_connections));
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
                    tracing::warn!(protocol, %error, "accept failed; retrying");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        let connection = graceful.watch(serve(TokioIo::new(stream)));
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(protocol, %peer, %error, "connection closed with an error");
            }
            drop(permit);
        });
    }
    graceful
}

/// HTTP/1.1 connections serving `app`: hyper closes one whose request header has not
/// arrived within `limits.header_timeout` (also between keep-alive requests).
pub fn http1_connections(
    app: Router,
    limits: &HttpLimits,
) -> impl FnMut(TokioIo<TcpStream>) -> http1::Connection<TokioIo<TcpStream>, TowerToHyperService<Router>>
{
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    move |io| builder.serve_connection(io, TowerToHyperService::new(app.clone()))
}
