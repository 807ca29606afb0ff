//! Joining a cluster fails fast and clearly, on a real `redis-server`: the
//! connect timeout bounds the whole of `connect()`, a refused password
//! says "authentication failed", a user that may not `PUBLISH` is refused
//! at connect, a wrong-type key at a cluster name is named with its type
//! (and does not make a node reconnect in a loop), and two live nodes may
//! not share a name unless explicitly allowed.

use std::time::{Duration, Instant};

use cancelable::registry::Registry;
use cancelable::remote::{RemoteError, Target};
use cancelable::CancelReason;
use cancelable_tests::redis::{builder, join, RedisServer};

cancelable_tests::on_every_backend! {
    async fn the_connect_timeout_bounds_the_whole_of_connect() {
        let server = RedisServer::start();
        server.freeze(true);
        let registry = Registry::new();
        let started = Instant::now();
        let error = builder(&server, "a", &registry)
            .connect_timeout(Duration::from_millis(300))
            .answer_within(Duration::from_secs(5))
            .connect()
            .await
            .unwrap_err();
        let took = started.elapsed();
        server.freeze(false);
        assert!(matches!(error, RemoteError::Connect { .. }), "{error:?}");
        // 300 ms asked; the answer limit (5 s) must not be added.
        assert!(took < Duration::from_secs(2), "connect took {took:?}");
    }

    async fn a_refused_password_says_authentication_failed() {
        let server = RedisServer::start();
        assert_eq!(server.command(&["CONFIG", "SET", "requirepass", "right"]).unwrap(), "+OK");
        let registry = Registry::new();
        for url in [
            format!("redis://127.0.0.1:{}", server.port()),
            format!("redis://:wrong@127.0.0.1:{}", server.port()),
        ] {
            let error = cancelable::remote::RemoteRegistry::builder(url, "a")
                .registry(&registry)
                .connect()
                .await
                .unwrap_err();
            assert!(matches!(error, RemoteError::Auth { .. }), "{error:?}");
            let text = error.to_string();
            assert!(text.contains("authentication failed"), "{text}");
            assert!(!text.contains("start one"), "{text}");
        }
    }

    async fn a_user_that_may_not_publish_is_refused_at_connect() {
        let server = RedisServer::start();
        let acl = ["ACL", "SETUSER", "mute", "on", ">pw", "~*", "&*", "+@all", "-publish"];
        assert_eq!(server.command(&acl).unwrap(), "+OK");
        let registry = Registry::new();
        let url = format!("redis://mute:pw@127.0.0.1:{}", server.port());
        let started = Instant::now();
        let error = cancelable::remote::RemoteRegistry::builder(url, "mute")
            .registry(&registry)
            .connect()
            .await
            .map(|_| ())
            .unwrap_err();
        assert!(matches!(error, RemoteError::Permission { .. }), "{error:?}");
        assert!(error.to_string().contains("PUBLISH"), "{error}");
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    async fn a_wrong_type_key_is_named_at_connect_and_while_running() {
        let server = RedisServer::start();
        let (registry_a, registry_b) = (Registry::new(), Registry::new());
        let a = join(&server, "a", &registry_a).await;
        // Planted while a runs: a stays connected and does not reconnect.
        assert_eq!(server.command(&["SET", "cancelable:v2:tombstones", "x"]).unwrap(), "+OK");
        assert_eq!(server.command(&["SET", "cancelable:v2:nodes", "x"]).unwrap(), "+OK");
        let error = a.cancel(Target::key("k"), CancelReason::Manual, "").await.unwrap_err();
        assert!(matches!(error, RemoteError::WrongType { .. }), "{error:?}");
        let text = error.to_string();
        assert!(text.contains("cancelable:v2:tombstones") && text.contains("string"), "{text}");
        cancelable_tests::sleep(Duration::from_millis(600)).await;
        assert!(a.is_connected());
        assert_eq!(a.reconnects(), 0);
        // A node joining now is refused, with the key and its type.
        let error = builder(&server, "b", &registry_b).connect().await.map(|_| ()).unwrap_err();
        assert!(matches!(error, RemoteError::WrongType { .. }), "{error:?}");
        assert!(error.to_string().contains("string"), "{error}");
    }

    async fn two_live_nodes_may_not_share_a_name() {
        let server = RedisServer::start();
        let (registry_a, registry_b, registry_c) = (Registry::new(), Registry::new(), Registry::new());
        let first = join(&server, "twin", &registry_a).await;
        let error = builder(&server, "twin", &registry_b).connect().await.map(|_| ()).unwrap_err();
        assert!(matches!(error, RemoteError::NodeNameTaken { .. }), "{error:?}");
        assert!(error.to_string().contains(first.instance()), "{error}");
        // Explicitly allowed: it joins.
        let allowed = builder(&server, "twin", &registry_c).allow_duplicate_name().connect().await;
        assert!(allowed.is_ok(), "{allowed:?}");
        drop(allowed);
        // Once the first one left, the name is free.
        first.close().await;
        let _again = join(&server, "twin", &registry_b).await;
    }
}
