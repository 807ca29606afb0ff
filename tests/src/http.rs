//! Helpers of the services tests (`tests/http_*.rs`): real servers on
//! 127.0.0.1 with ephemeral ports, real HTTP/1.1, HTTP/2 and gRPC clients.
//! Tokio only, as the integration itself.

use std::net::SocketAddr;
use std::time::Duration;

use axum::response::IntoResponse;
use axum::Router;
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Which HTTP version a test client speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    /// HTTP/1.1.
    Http1,
    /// HTTP/2 with prior knowledge (h2c).
    Http2,
}

/// Both versions, for tests that run on each.
pub const VERSIONS: [Version; 2] = [Version::Http1, Version::Http2];

/// A running server; stopped when dropped.
pub struct Server {
    /// Where it listens.
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Server {
    /// `http://127.0.0.1:port` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves `router` with `axum::serve` (HTTP/1.1 and h2c) on an ephemeral
/// loopback port.
pub async fn serve(router: Router) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local address");
    let task = tokio::spawn(async move {
        axum::serve(listener, router).await.expect("serve");
    });
    Server { addr, task }
}

/// One client connection, which the test can close at any time.
pub struct Connection {
    send: Sender,
    driver: JoinHandle<()>,
}

enum Sender {
    Http1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    Http2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
}

impl Connection {
    /// Connects to `addr` speaking `version`.
    pub async fn open(addr: SocketAddr, version: Version) -> Connection {
        let io = TokioIo::new(TcpStream::connect(addr).await.expect("connect"));
        match version {
            Version::Http1 => {
                let (send, connection) = hyper::client::conn::http1::handshake(io)
                    .await
                    .expect("HTTP/1.1 handshake");
                Connection {
                    send: Sender::Http1(send),
                    driver: tokio::spawn(async move {
                        let _ = connection.await;
                    }),
                }
            }
            Version::Http2 => {
                let (send, connection) =
                    hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                        .await
                        .expect("HTTP/2 handshake");
                Connection {
                    send: Sender::Http2(send),
                    driver: tokio::spawn(async move {
                        let _ = connection.await;
                    }),
                }
            }
        }
    }

    /// Sends `request` and reads the whole response.
    pub async fn send(&mut self, request: Request<Full<Bytes>>) -> Response<Bytes> {
        let response = self.start(request).await;
        collect(response).await
    }

    /// Sends `request` and returns the response head.
    pub async fn start(&mut self, request: Request<Full<Bytes>>) -> Response<Incoming> {
        match &mut self.send {
            Sender::Http1(send) => {
                send.ready().await.expect("connection ready");
                send.send_request(request).await.expect("HTTP/1.1 request")
            }
            Sender::Http2(send) => {
                send.ready().await.expect("connection ready");
                send.send_request(request).await.expect("HTTP/2 request")
            }
        }
    }

    /// Sends `request` in a task of its own: abort the task to drop the
    /// request (an HTTP/2 stream reset), or [`close`](Self::close) the
    /// connection.
    pub fn spawn(&mut self, request: Request<Full<Bytes>>) -> JoinHandle<Response<Bytes>> {
        let future = match &mut self.send {
            Sender::Http1(send) => {
                let future = send.send_request(request);
                tokio::spawn(async move { collect(future.await.expect("request")).await })
            }
            Sender::Http2(send) => {
                let future = send.send_request(request);
                tokio::spawn(async move { collect(future.await.expect("request")).await })
            }
        };
        future
    }

    /// Closes the TCP connection at once, as a client that goes away.
    pub fn close(self) {
        self.driver.abort();
        drop(self.send);
    }
}

/// Reads a whole response.
pub async fn collect(response: Response<Incoming>) -> Response<Bytes> {
    let (parts, body) = response.into_parts();
    let body = body.collect().await.expect("response body").to_bytes();
    Response::from_parts(parts, body)
}

/// A `GET` of `url` with `headers`.
pub fn get(url: &str, headers: &[(&str, &str)]) -> Request<Full<Bytes>> {
    let mut request = Request::get(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.body(Full::new(Bytes::new())).expect("request")
}

/// Sends one request on a fresh connection.
pub async fn fetch(
    addr: SocketAddr,
    version: Version,
    request: Request<Full<Bytes>>,
) -> Response<Bytes> {
    Connection::open(addr, version).await.send(request).await
}

/// The body of a response, as text.
pub fn text(response: &Response<Bytes>) -> String {
    String::from_utf8_lossy(response.body()).into_owned()
}

/// Waits until `check` holds, polling every millisecond, for at most
/// `within`; `false` if it never did.
pub async fn eventually(within: Duration, mut check: impl FnMut() -> bool) -> bool {
    let until = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < until {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    check()
}

/// A handler that returns in the very poll in which its request scope
/// learns of its cancellation — the race of a handler whose checkpoint
/// sees a cancel arriving from another thread and which returns its error
/// at once — made deterministic: the handler blocks its poll (in
/// [`block_in_place`](tokio::task::block_in_place)) until its scope is
/// cancelled, then returns what its checkpoint says, as an `Err(String)`
/// that axum answers with `200 OK`. The layer must answer with the
/// cancellation's status instead. Multi-thread tokio runtimes only.
pub async fn returns_in_the_poll_it_is_cancelled(
    scope: cancelable::http::RequestScope,
) -> Result<&'static str, String> {
    let token = scope.token();
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(token.cancelled()));
    cancelable::checkpoint()
        .await
        .map_err(|cancelled| format!("the handler's own answer: {cancelled}"))?;
    Ok("the handler's own answer: never cancelled")
}

/// A gRPC service of one unary method, `/test.Worker/Work`, written
/// without protoc: prost derives for the messages, tonic's
/// `server::Grpc` and `client::Grpc` for the wire.
pub mod grpc {
    use super::*;
    use http::uri::PathAndQuery;
    use std::future::Future;
    use tonic::{Request as GrpcRequest, Response as GrpcResponse, Status};

    /// The method's path.
    pub const WORK: &str = "/test.Worker/Work";

    /// What the client asks for.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct WorkRequest {
        /// How long to work, in milliseconds.
        #[prost(uint64, tag = "1")]
        pub millis: u64,
    }

    /// What the server answers.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct WorkReply {
        /// What happened.
        #[prost(string, tag = "1")]
        pub outcome: String,
    }

    /// An axum route serving `/test.Worker/Work` with `work`.
    pub fn route<F, Fut>(work: F) -> Router
    where
        F: Fn(GrpcRequest<WorkRequest>) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<GrpcResponse<WorkReply>, Status>> + Send + 'static,
    {
        Router::new().route(
            WORK,
            axum::routing::post(move |request: axum::extract::Request| {
                let work = work.clone();
                async move {
                    let mut grpc = tonic::server::Grpc::new(tonic_prost::ProstCodec::<
                        WorkReply,
                        WorkRequest,
                    >::default());
                    grpc.unary(tower::service_fn(work), request)
                        .await
                        .into_response()
                }
            }),
        )
    }

    /// The HTTP/2 client tonic's `client::Grpc` runs on: hyper's.
    pub type Channel = hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        tonic::body::Body,
    >;

    /// A plain HTTP/2 channel to `addr`.
    pub fn channel() -> Channel {
        hyper_util::client::legacy::Client::builder(TokioExecutor::new())
            .http2_only(true)
            .build_http()
    }

    /// Calls `/test.Worker/Work` on `addr` through `service` (a channel,
    /// maybe intercepted or layered).
    pub async fn call<S>(
        service: S,
        addr: SocketAddr,
        request: GrpcRequest<WorkRequest>,
    ) -> Result<WorkReply, Status>
    where
        S: tonic::client::GrpcService<tonic::body::Body>,
        S::ResponseBody: http_body::Body<Data = Bytes> + Send + 'static,
        <S::ResponseBody as http_body::Body>::Error: Into<cancelable::http::BoxError>,
        S::Error: Into<cancelable::http::BoxError>,
    {
        let origin = format!("http://{addr}").parse().expect("origin");
        let mut client = tonic::client::Grpc::with_origin(service, origin);
        client
            .ready()
            .await
            .map_err(|error| Status::unavailable(error.into().to_string()))?;
        let reply = client
            .unary(
                request,
                PathAndQuery::from_static(WORK),
                tonic_prost::ProstCodec::<WorkRequest, WorkReply>::default(),
            )
            .await?;
        Ok(reply.into_inner())
    }
}

/// Runs a services test on a two-worker tokio runtime, with the watchdog
/// of the other behaviour tests.
pub fn run<F>(name: &str, body: F)
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    crate::with_watchdog(name, || crate::tokio_multi_thread(body));
}
