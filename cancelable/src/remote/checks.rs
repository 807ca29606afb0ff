//! What a node checks when it connects, and how broker errors read: a
//! refused password, a missing permission, a wrong-type key at a cluster
//! name and a node name already in use are clear errors, not a "could not
//! reach the broker" or a reconnect loop.

use redis::aio::MultiplexedConnection;
use redis::RedisError;

use super::{RemoteError, Shared};

/// Why a connection attempt failed.
pub(crate) enum Failure {
    /// The broker could not be reached or stopped answering: retry.
    Lost(String),
    /// The broker refused this node (credentials, permissions, data): no
    /// retry helps before someone changes the setup.
    Refused(RemoteError),
}

impl Failure {
    pub(crate) fn of(shared: &Shared, error: &RedisError) -> Failure {
        match refusal(shared, error) {
            Some(refused) => Failure::Refused(refused),
            None => Failure::Lost(error.to_string()),
        }
    }
}

impl From<RemoteError> for Failure {
    fn from(error: RemoteError) -> Failure {
        Failure::Refused(error)
    }
}

/// The clear error for a refusal by the broker, if `error` is one.
pub(crate) fn refusal(shared: &Shared, error: &RedisError) -> Option<RemoteError> {
    let code = error.code().unwrap_or_default();
    let text = error.to_string();
    if error.kind() == redis::ErrorKind::AuthenticationFailed
        || matches!(code, "NOAUTH" | "WRONGPASS")
        || text.contains("NOAUTH")
        || text.contains("WRONGPASS")
    {
        return Some(RemoteError::Auth {
            url: shared.settings.url.clone(),
            error: text,
        });
    }
    if code == "NOPERM" || text.contains("NOPERM") {
        return Some(RemoteError::Permission {
            command: "a command of the cluster protocol".to_owned(),
            error: text,
        });
    }
    None
}

/// The keys of the cluster and the Redis type each must have.
fn expected(shared: &Shared) -> [(&str, &'static str); 3] {
    let names = &shared.names;
    [
        (names.tombstones.as_str(), "zset"),
        (names.bodies.as_str(), "hash"),
        (names.nodes.as_str(), "zset"),
    ]
}

/// `Err(WrongType)` naming the first cluster key that holds another type
/// of value (planted by hand, or another program sharing the namespace).
pub(crate) async fn key_types(
    shared: &Shared,
    connection: &mut MultiplexedConnection,
) -> Result<(), Failure> {
    for (key, wanted) in expected(shared) {
        let found: String = redis::cmd("TYPE")
            .arg(key)
            .query_async(connection)
            .await
            .map_err(|error| Failure::of(shared, &error))?;
        if found != wanted && found != "none" {
            return Err(Failure::Refused(RemoteError::WrongType {
                key: key.to_owned(),
                found,
                expected: wanted,
            }));
        }
    }
    Ok(())
}

/// The error for a `WRONGTYPE` answer: which key, of which type; else the
/// usual mapping.
pub(crate) async fn explain(
    shared: &Shared,
    connection: &mut MultiplexedConnection,
    error: &RedisError,
) -> RemoteError {
    if error.code() == Some("WRONGTYPE") {
        if let Err(Failure::Refused(wrong)) = key_types(shared, connection).await {
            return wrong;
        }
    }
    super::broker_error(shared, error)
}

/// Whether this node's Redis user may `PUBLISH` (acks and requests are
/// published): probed on a channel nobody reads.
pub(crate) async fn may_publish(
    shared: &Shared,
    connection: &mut MultiplexedConnection,
) -> Result<(), Failure> {
    let probe: Result<i64, _> = redis::cmd("PUBLISH")
        .arg(shared.names.probe())
        .arg("")
        .query_async(connection)
        .await;
    match probe {
        Ok(_) => Ok(()),
        Err(error) => Err(match refusal(shared, &error) {
            Some(RemoteError::Permission { error, .. }) => {
                Failure::Refused(RemoteError::Permission {
                    command: "PUBLISH".to_owned(),
                    error,
                })
            }
            _ => Failure::of(shared, &error),
        }),
    }
}

/// Takes the lease on the node name (unless duplicates are allowed):
/// `Err(NodeNameTaken)` if another live instance holds it.
pub(crate) async fn lease(
    shared: &Shared,
    connection: &mut MultiplexedConnection,
) -> Result<(), Failure> {
    if shared.settings.allow_duplicate_name {
        return Ok(());
    }
    let key = shared.names.lease(shared.node());
    let ttl = super::millis(shared.settings.node_ttl).max(1);
    let ttl = ttl.to_string();
    let taken: Option<String> = super::broker::LEASE
        .run(
            connection,
            &[&key],
            &[shared.instance.as_bytes(), ttl.as_bytes()],
        )
        .await
        .map_err(|error| Failure::of(shared, &error))?;
    match taken {
        Some(holder) if holder != shared.instance => {
            Err(Failure::Refused(RemoteError::NodeNameTaken {
                node: shared.node().to_owned(),
                instance: holder,
            }))
        }
        _ => Ok(()),
    }
}
