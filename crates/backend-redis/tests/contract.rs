//! The registry contract (`starling_cluster::contract::registry`) against the Redis at
//! `$REDIS_URL` (default what `scripts/infra/redis start` runs). An unreachable Redis FAILS the
//! test: skipping would let a CI without the service go green without testing this backend.

use starling_backend_redis::RedisRegistry;
use starling_cluster::contract;
use starling_cluster::registry::{Fenced, Registry, ResourceRoute};

fn url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:26379/".to_owned())
}

async fn connect() -> RedisRegistry {
    match RedisRegistry::connect(&url(), None, "starling-test").await {
        Ok(registry) => registry,
        Err(error) => panic!("\n\n*** Redis not reachable at {} ({error}).\n*** Start it with `scripts/infra/redis start` (or set REDIS_URL).\n\n", url()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contract_suite() {
    let registry = connect().await;
    contract::registry(&registry, &contract::unique_prefix()).await;
    // Again with another prefix on the same database: the suite must not need a fresh one.
    contract::registry(&registry, &contract::unique_prefix()).await;
    contract::failure_counts(&registry, &contract::unique_prefix()).await;
}

/// A password given apart from the URL (`[cluster] redis_password_file`) authenticates the URL's
/// user: `scripts/infra/redis` has an ACL user `starling` for this. A wrong one is refused with
/// Redis' answer, not a hang.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_kept_out_of_the_url_logs_in() {
    let with_user = url().replacen("redis://", "redis://starling@", 1);
    let registry = RedisRegistry::connect(&with_user, Some("starling-redis-secret".into()), "starling-test").await.expect("logged in as starling");
    contract::failure_counts(&registry, &contract::unique_prefix()).await;
    let refused = RedisRegistry::connect(&with_user, Some("wrong".into()), "starling-test").await.err().expect("a wrong password is refused");
    assert!(refused.to_string().to_lowercase().contains("authentication failed"), "{refused}");
}

/// Two registries (two nodes' connections) racing owners of one user: exactly the newest
/// generation's writes survive, whatever the interleaving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generation_fencing_holds_across_connections() {
    let (old_owner, new_owner) = (connect().await, connect().await);
    let user = format!("{}@example.com", contract::unique_prefix());
    let route = |connection: u64| ResourceRoute { resource: "r".into(), node: "n".into(), connection, priority: 0, presence: None, stream_management: None };
    let mut writes = tokio::task::JoinSet::new();
    let (old_owner, new_owner) = (std::sync::Arc::new(old_owner), std::sync::Arc::new(new_owner));
    for n in 0..50u64 {
        let (old, new, user) = (old_owner.clone(), new_owner.clone(), user.clone());
        writes.spawn(async move {
            let stale = old.put_resource(&user, &route(1000 + n), 1).await.expect("put");
            let fresh = new.put_resource(&user, &route(n), 2).await.expect("put");
            (stale, fresh)
        });
    }
    while let Some(result) = writes.join_next().await {
        let (_, fresh) = result.expect("task");
        assert_eq!(fresh, Fenced::Applied, "the newest generation is never refused");
    }
    let routes = new_owner.resources(&user).await.expect("resources");
    assert_eq!(routes.len(), 1);
    assert!(routes[0].connection < 1000, "a stale owner's write survived: {routes:?}");
    assert_eq!(old_owner.put_resource(&user, &route(5000), 1).await.expect("put"), Fenced::Stale);
    new_owner.remove_resource(&user, "r", routes[0].connection, 2).await.expect("remove");
    new_owner.reap("n").await.expect("reap");
}
