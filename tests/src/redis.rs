//! A real `redis-server` for the remote-cancellation tests: started on a
//! free loopback port in a temporary directory, without persistence, so a
//! test can stop and restart it; killed when dropped.
//!
//! A test that finds no `redis-server` fails, saying how to install it:
//! the tests never pass without a broker.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The `redis-server` binary: `$REDIS_SERVER`, else the first on `PATH`,
/// else `/usr/bin/redis-server` or `/usr/sbin/redis-server`. Panics with
/// how to install it if there is none: a test never passes without it.
pub fn redis_server_binary() -> PathBuf {
    find_redis_server(
        std::env::var_os("REDIS_SERVER"),
        std::env::var_os("PATH"),
        &[Path::new("/usr/bin"), Path::new("/usr/sbin")],
    )
    .unwrap_or_else(|message| panic!("{message}"))
}

/// Where `redis-server` is, given `$REDIS_SERVER`, `$PATH` and the
/// directories to look in last; `Err` says how to install it.
pub fn find_redis_server(
    explicit: Option<std::ffi::OsString>,
    path: Option<std::ffi::OsString>,
    fallback: &[&Path],
) -> Result<PathBuf, String> {
    if let Some(explicit) = explicit {
        let explicit = PathBuf::from(explicit);
        if explicit.is_file() {
            return Ok(explicit);
        }
        return Err(format!(
            "REDIS_SERVER={} is not a file; point it at a redis-server binary, or unset it \
             and install one with `apt-get update && apt-get install -y redis-server`",
            explicit.display()
        ));
    }
    let on_path = path
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default();
    on_path
        .into_iter()
        .chain(fallback.iter().map(|dir| dir.to_path_buf()))
        .map(|dir| dir.join("redis-server"))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| {
            "no `redis-server` found (on PATH, /usr/bin, /usr/sbin or $REDIS_SERVER): the remote \
             cancellation tests need a real broker. Install it with \
             `apt-get update && apt-get install -y redis-server` (Debian/Ubuntu), or run \
             `scripts/test`, which installs it when missing"
                .to_owned()
        })
}

/// A running (or stopped) `redis-server` of one test.
pub struct RedisServer {
    port: u16,
    /// Addresses it listens on besides 127.0.0.1.
    also_bind: Vec<String>,
    dir: PathBuf,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts a server on a free loopback port; panics if there is no
    /// `redis-server` or it does not answer within 10 s.
    pub fn start() -> RedisServer {
        static COUNT: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "cancelable-redis-{}-{}",
            std::process::id(),
            COUNT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("a temporary directory for redis-server");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free loopback port")
            .port();
        let mut server = RedisServer {
            port,
            also_bind: Vec::new(),
            dir,
            child: None,
        };
        server.restart();
        server
    }

    /// Starts a server that also listens on `address` (a test's own
    /// network namespace link, say).
    pub fn start_also_on(address: &str) -> RedisServer {
        let mut server = RedisServer::start();
        server.also_bind.push(address.to_owned());
        server.restart();
        server
    }

    /// The URL of the server.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The directory it runs in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Kills the server (as a crash would); its data is gone.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes (`true`: SIGSTOP) or thaws (`false`: SIGCONT) the server: a
    /// broker that keeps its connections open and stops answering.
    #[cfg(unix)]
    pub fn freeze(&self, frozen: bool) {
        let child = self.child.as_ref().expect("the server runs");
        let signal = if frozen { "-STOP" } else { "-CONT" };
        let status = Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()
            .expect("`kill` runs");
        assert!(status.success(), "could not signal redis-server");
    }

    /// Starts the server again on the same port (stopping it first if it
    /// runs), empty, and waits until it answers.
    pub fn restart(&mut self) {
        self.stop();
        let binary = redis_server_binary();
        let child = Command::new(&binary)
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(&self.also_bind)
            // Without a password Redis refuses clients from addresses other
            // than loopback; the extra ones are the test's own links.
            .args([
                "--protected-mode",
                if self.also_bind.is_empty() {
                    "yes"
                } else {
                    "no"
                },
            ])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| panic!("could not start {}: {error}", binary.display()));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(reply) = self.command(&["PING"]) {
                if reply == "+PONG" {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "redis-server on port {} did not answer within 10 s",
                self.port
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Sends one command (RESP) and returns the first line of the reply
    /// (`+OK`, `:3`, `$5` for a bulk string, ...).
    pub fn command(&self, args: &[&str]) -> std::io::Result<String> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port))?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut request = format!("*{}\r\n", args.len()).into_bytes();
        for arg in args {
            request.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
            request.extend_from_slice(arg.as_bytes());
            request.extend_from_slice(b"\r\n");
        }
        stream.write_all(&request)?;
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let line = line.trim_end().to_owned();
        if let Some(length) = line.strip_prefix('$').and_then(|n| n.parse::<usize>().ok()) {
            let mut body = vec![0; length + 2];
            reader.read_exact(&mut body)?;
            body.truncate(length);
            return Ok(String::from_utf8_lossy(&body).into_owned());
        }
        Ok(line)
    }

    /// The integer reply of a command (`PUBLISH`, `ZCARD`, ...).
    pub fn integer(&self, args: &[&str]) -> i64 {
        let reply = self.command(args).expect("redis answers");
        reply
            .strip_prefix(':')
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{args:?} answered {reply:?}, not an integer"))
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Joins `registry` to the cluster of `server` as `node`, with the short
/// heartbeat (100 ms, TTL 600 ms) and backoff (10 ms to 200 ms) the tests
/// use.
pub async fn join(
    server: &RedisServer,
    node: &str,
    registry: &cancelable::registry::Registry,
) -> cancelable::remote::RemoteRegistry {
    builder(server, node, registry)
        .connect()
        .await
        .unwrap_or_else(|error| panic!("node {node} could not join: {error}"))
}

/// The settings [`join`] uses, to adjust before connecting.
pub fn builder(
    server: &RedisServer,
    node: &str,
    registry: &cancelable::registry::Registry,
) -> cancelable::remote::RemoteRegistryBuilder {
    cancelable::remote::RemoteRegistry::builder(server.url(), node)
        .registry(registry)
        .heartbeat(Duration::from_millis(100), Duration::from_millis(600))
        .backoff(Duration::from_millis(10), Duration::from_millis(200))
        .answer_within(Duration::from_secs(3))
}

/// Polls `condition` every 10 ms until it holds; panics with `what` after
/// `limit`.
pub async fn eventually(limit: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !condition() {
        assert!(Instant::now() < deadline, "not within {limit:?}: {what}");
        crate::sleep(Duration::from_millis(10)).await;
    }
}
