//! A real server on loopback ports for the HTTP and gRPC tests, and a raw HTTP/1.1 client:
//! the tests speak bytes on a socket, as any client would, so what they check is what goes
//! over the wire.

use linear_dit::engine::{Engine, EngineConfig, EngineHandle};
use linear_dit::sampling::ModelDescription;
use linear_dit::server::{AppState, HttpLimits, serve_with_grpc};
use linear_dit::{Grid, Model};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A server for a model of 4×4-token images (`Grid::new(4, 4)`, linear schedule).
pub struct TestServer {
    /// The HTTP address.
    pub addr: SocketAddr,
    /// The gRPC address, when started with gRPC.
    pub grpc: Option<SocketAddr>,
    /// The engine behind it.
    pub engine: EngineHandle,
    /// Resolves the server's shutdown future when sent (or dropped).
    pub stop: Option<tokio::sync::oneshot::Sender<()>>,
    /// What `serve` returned.
    pub task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl TestServer {
    /// Starts `model` behind an engine with `engine` limits and the HTTP `limits`, with a
    /// gRPC port when `grpc` is set.
    pub async fn start(
        model: Arc<Model>,
        engine: EngineConfig,
        limits: HttpLimits,
        grpc: bool,
    ) -> TestServer {
        let description = ModelDescription::of(model.config()).with_grid(Grid::new(4, 4));
        let engine = Engine::start_with_description(model, description, engine).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let grpc_listener = match grpc {
            true => Some(TcpListener::bind("127.0.0.1:0").await.unwrap()),
            false => None,
        };
        let grpc = grpc_listener.as_ref().map(|l| l.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let state = AppState::new(engine.clone(), limits);
        let task = tokio::spawn(serve_with_grpc(
            listener,
            grpc_listener,
            state,
            async move {
                let _ = stopped.await;
            },
        ));
        TestServer {
            addr,
            grpc,
            engine,
            stop: Some(stop),
            task,
        }
    }

    /// Stops the server; it must drain and return `Ok`.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.await.unwrap().unwrap();
    }
}

/// One HTTP/1.1 exchange on a fresh connection, with extra header lines (each ending in
/// `\r\n`) and a raw body: (status, head, body; a chunked body de-chunked).
pub async fn exchange(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &str,
    body: &[u8],
) -> (u16, String, Vec<u8>) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n{headers}\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    read_response(stream).await
}

/// One JSON exchange: `exchange` with `Content-Type: application/json`.
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
) -> (u16, String, Vec<u8>) {
    exchange(
        addr,
        method,
        path,
        "Content-Type: application/json\r\n",
        body.as_bytes(),
    )
    .await
}

/// Reads a whole response from `stream`: (status, head, body; a chunked body de-chunked).
pub async fn read_response(mut stream: TcpStream) -> (u16, String, Vec<u8>) {
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response).await;
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {:?}", String::from_utf8_lossy(&response)));
    let head = String::from_utf8_lossy(&response[..split]).into_owned();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let mut body = response[split + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    (status, head, body)
}

/// The payload of a chunked body.
pub fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(line_end) = data.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size =
            usize::from_str_radix(std::str::from_utf8(&data[..line_end]).unwrap().trim(), 16)
                .unwrap();
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&data[line_end + 2..line_end + 2 + size]);
        data = &data[line_end + 2 + size + 2..];
    }
}
