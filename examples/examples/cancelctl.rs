//! An operator CLI for a cluster of processes joined over Redis
//! (`cancelable::remote`): list the live operations of every node, cancel
//! one by id (`--id NODE/ID`, or `NODE/ID@INSTANCE` as `list` prints it)
//! or by key (`--key KEY`, any text: `tenant/123` is a key here), wherever
//! it runs.
//!
//! ```sh
//! redis-server --port 6379 --save "" &                        # a broker
//! cargo run --example cancelctl -- worker &                   # a node running jobs job-1 .. job-3
//! cargo run --example cancelctl -- list
//! cargo run --example cancelctl -- cancel --key job-2 --reason "operator request" --wait 5
//! cargo run --example cancelctl -- cancel --id worker-1/2
//! ```
//!
//! Options: `--redis URL` (default `redis://127.0.0.1:6379`),
//! `--namespace NS` (default `cancelable`), `--node NAME` (for `worker`).

use std::process::ExitCode;
use std::time::Duration;

use cancelable::registry::Registry;
use cancelable::remote::{RemoteError, RemoteRegistry, Target};
use cancelable::{CancelReason, CancelScope};

const USAGE: &str = "usage: cancelctl [--redis URL] [--namespace NS] \
    (list | cancel (--id NODE/ID[@INSTANCE] | --key KEY) [--reason TEXT] [--wait SECONDS] \
    | worker [--node NAME])";

struct Options {
    redis: String,
    namespace: String,
    node: Option<String>,
    target: Option<Target>,
    reason: String,
    wait: Option<Duration>,
    command: Vec<String>,
}

fn parse() -> Result<Options, String> {
    parse_from(std::env::args().skip(1))
}

/// The options of a command line (without the program name).
fn parse_from(args: impl IntoIterator<Item = String>) -> Result<Options, String> {
    let mut options = Options {
        redis: "redis://127.0.0.1:6379".to_owned(),
        namespace: "cancelable".to_owned(),
        node: None,
        target: None,
        reason: String::new(),
        wait: None,
        command: Vec::new(),
    };
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--redis" => options.redis = value("--redis")?,
            "--namespace" => options.namespace = value("--namespace")?,
            "--node" => options.node = Some(value("--node")?),
            "--reason" => options.reason = value("--reason")?,
            "--key" => {
                let key = value("--key")?;
                if key.is_empty() {
                    return Err("--key needs a non-empty key".to_owned());
                }
                options.target = Some(Target::key(key));
            }
            "--id" => {
                let id = value("--id")?;
                match id.parse::<Target>() {
                    Ok(target @ Target::Id { .. }) => options.target = Some(target),
                    _ => {
                        return Err(format!(
                            "--id takes NODE/ID or NODE/ID@INSTANCE (as `list` prints it), \
                             not {id:?}; for a key, use --key"
                        ))
                    }
                }
            }
            "--wait" => {
                let seconds: f64 = value("--wait")?
                    .parse()
                    .map_err(|_| "--wait takes a number of seconds".to_owned())?;
                options.wait = Some(
                    Duration::try_from_secs_f64(seconds)
                        .map_err(|_| "--wait takes a number of seconds >= 0".to_owned())?,
                );
            }
            "-h" | "--help" => return Err(USAGE.to_owned()),
            _ => options.command.push(arg),
        }
    }
    Ok(options)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let options = match parse() {
        Ok(options) => options,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    match run(options).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("cancelctl: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn join(
    options: &Options,
    node: String,
    registry: &Registry,
) -> Result<RemoteRegistry, RemoteError> {
    RemoteRegistry::builder(options.redis.as_str(), node)
        .namespace(options.namespace.as_str())
        .registry(registry)
        .connect()
        .await
}

async fn run(options: Options) -> Result<(), String> {
    let command: Vec<&str> = options.command.iter().map(String::as_str).collect();
    match command.as_slice() {
        ["list"] => {
            let remote = join(
                &options,
                format!("cancelctl-{}", std::process::id()),
                &Registry::new(),
            )
            .await
            .map_err(|error| error.to_string())?;
            let operations = remote.list().await.map_err(|error| error.to_string())?;
            println!(
                "{:<44} {:<14} {:<16} {:<10} {:>9}  REASON",
                "NODE/ID@INSTANCE", "KEY", "NAME", "STATUS", "ELAPSED"
            );
            for op in &operations {
                println!(
                    "{:<44} {:<14} {:<16} {:<10} {:>8.1}s  {}",
                    op.target().to_string(),
                    op.key.as_deref().unwrap_or("-"),
                    op.name.as_deref().unwrap_or("-"),
                    op.status,
                    op.elapsed_ms as f64 / 1000.0,
                    match (&op.reason, &op.message) {
                        (Some(reason), Some(message)) => format!("{reason}: {message}"),
                        (Some(reason), None) => reason.clone(),
                        _ => String::new(),
                    }
                );
            }
            println!("{} live operation(s)", operations.len());
            remote.close().await;
            Ok(())
        }
        ["cancel"] => {
            let target = options
                .target
                .clone()
                .ok_or_else(|| format!("cancel needs --id or --key\n{USAGE}"))?;
            let remote = join(
                &options,
                format!("cancelctl-{}", std::process::id()),
                &Registry::new(),
            )
            .await
            .map_err(|error| error.to_string())?;
            let reason = options.reason.clone();
            let ack = match options.wait {
                Some(wait) => {
                    remote
                        .cancel_and_wait(target, CancelReason::Manual, reason, wait)
                        .await
                }
                None => remote.cancel(target, CancelReason::Manual, reason).await,
            };
            remote.close().await;
            let ack = ack.map_err(|error| error.to_string())?;
            println!(
                "{} ({}) on node {}: {:?}{}",
                ack.target(),
                ack.key.as_deref().or(ack.name.as_deref()).unwrap_or("-"),
                ack.node,
                ack.status,
                match (ack.running, ack.lag) {
                    (false, Some(lag)) => format!(", exited {lag:?} after the cancel"),
                    (true, _) if options.wait.is_some() => ", still running".to_owned(),
                    _ => String::new(),
                }
            );
            Ok(())
        }
        ["worker"] => {
            let node = options
                .node
                .clone()
                .unwrap_or_else(|| format!("worker-{}", std::process::id()));
            let registry = Registry::new();
            let _remote = join(&options, node.clone(), &registry)
                .await
                .map_err(|error| error.to_string())?;
            println!(
                "node {node} runs job-1, job-2, job-3 until they are cancelled (Ctrl-C to stop)"
            );
            let jobs = (1..=3).map(|n| {
                let scope = CancelScope::new()
                    .name("export")
                    .metadata("job", n.to_string())
                    .register_in(&registry)
                    .key(format!("job-{n}"));
                async move {
                    let scope = match scope {
                        Ok(scope) => scope,
                        Err(error) => return println!("job-{n}: {error}"),
                    };
                    let outcome = scope.try_run(work_until_cancelled()).await;
                    match outcome {
                        Err(cancelled) => println!("job-{n}: {cancelled}"),
                        Ok(()) => println!("job-{n}: done"),
                    }
                }
            });
            futures_join_all(jobs.collect()).await;
            Ok(())
        }
        _ => Err(USAGE.to_owned()),
    }
}

/// A job's body: works in 200 ms steps until its scope is cancelled.
async fn work_until_cancelled() -> Result<(), cancelable::Cancelled> {
    loop {
        cancelable::sleep(Duration::from_millis(200)).await?;
    }
}

/// Awaits every future (a minimal `join_all` on tokio tasks).
async fn futures_join_all<F: std::future::Future<Output = ()> + Send + 'static>(futures: Vec<F>) {
    let tasks: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    for task in tasks {
        let _ = task.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(line: &[&str]) -> Result<Option<Target>, String> {
        parse_from(line.iter().map(|arg| arg.to_string())).map(|options| options.target)
    }

    /// A key that looks like `NODE/ID` is still a key when given as one.
    #[test]
    fn a_key_with_a_slash_is_a_key() {
        assert_eq!(
            target(&["cancel", "--key", "tenant/123"]),
            Ok(Some(Target::key("tenant/123")))
        );
    }

    #[test]
    fn an_id_names_a_node_and_its_incarnation_if_given() {
        assert_eq!(
            target(&["cancel", "--id", "tenant/123"]),
            Ok(Some(Target::id("tenant", 123)))
        );
        assert_eq!(
            target(&["cancel", "--id", "worker-1/3@4f2a"]),
            Ok(Some(Target::id("worker-1", 3).in_instance("4f2a")))
        );
    }

    #[test]
    fn an_id_that_is_not_one_says_to_use_key() {
        let error = target(&["cancel", "--id", "job-2"]).unwrap_err();
        assert!(error.contains("--key"), "{error}");
        let error = target(&["cancel", "--key", ""]).unwrap_err();
        assert!(error.contains("non-empty"), "{error}");
    }
}
