//! gRPC connections: HTTP/2 with keep-alive pings that close connections whose peer stopped
//! answering, and a bound on concurrent streams per connection. They are accepted by the
//! shared loop ([`crate::server::listener::accept_until`]: the same connection limit as
//! HTTP, counted apart, and the graceful drain: GOAWAY, then in-flight calls finish).

use super::GrpcService;
use crate::server::HttpLimits;
use hyper::server::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;

/// Concurrent calls per connection: the engine's queue bounds the work, this bounds the
/// per-connection bookkeeping a single client can make the server hold.
const MAX_STREAMS_PER_CONNECTION: u32 = 256;

/// HTTP/2 connections serving `service`, pinged every `limits.header_timeout` and closed
/// when a ping goes unanswered that long.
pub fn http2_connections(
    service: GrpcService,
    limits: &HttpLimits,
) -> impl FnMut(TokioIo<TcpStream>) -> http2::Connection<TokioIo<TcpStream>, GrpcService, TokioExecutor>
{
    let mut builder = http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(limits.header_timeout))
        .keep_alive_timeout(limits.header_timeout)
        .max_concurrent_streams(MAX_STREAMS_PER_CONNECTION);
    move |io| builder.serve_connection(io, service.clone())
}
