//! The accept loop: HTTP/1.1 connections under a connection limit and a header read timeout,
//! and a graceful drain bounded in time.
//!
//! axum's own `serve` has neither a connection limit nor a read timeout, so 300 half-sent
//! requests exhausted the process's file descriptors. Here every connection holds a permit
//! of a semaphore (at the limit the loop stops accepting and new connections wait in the
//! kernel's backlog), hyper closes a connection whose request header has not arrived within
//! the timeout (also between keep-alive requests), and the handlers bound the body read
//! themselves ([`super::body`]).

use super::HttpLimits;
use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// After a failed `accept` (e.g. out of file descriptors), wait this long before the next, so
/// the loop does not spin while the condition lasts.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Accepts connections on `listener` and serves `app` on them until `stop` resolves; then
/// stops accepting and returns the connections still open, to be drained by the caller.
pub async fn accept_until(
    listener: TcpListener,
    app: Router,
    limits: &HttpLimits,
    stop: impl Future<Output = ()>,
) -> GracefulShutdown {
    let graceful = GracefulShutdown::new();
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
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
                    tracing::warn!(%error, "accept failed; retrying");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        let service = TowerToHyperService::new(app.clone());
        let connection = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%peer, %error, "connection closed with an error");
            }
            drop(permit);
        });
    }
    graceful
}
