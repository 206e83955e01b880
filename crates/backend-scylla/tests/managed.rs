//! What a managed ScyllaDB/Cassandra asks of a client, against the node `scripts/infra/cassandra`
//! runs: a login (PasswordAuthenticator), TLS on the CQL port (its test CA in
//! `$CASSANDRA_TLS_CA`, the node's certificate naming 127.0.0.1), and a local data centre for the
//! load-balancing policy. A wrong password or an untrusted certificate is refused with an error
//! that says why, before any schema is touched.

mod common;

use starling_backend_scylla::{ScyllaConfig, ScyllaStore};
use starling_cluster::store::Accounts;

fn tls_ca() -> std::path::PathBuf {
    std::env::var("CASSANDRA_TLS_CA").unwrap_or_else(|_| "/var/cache/starling/state/cassandra/tls/ca.crt".to_owned()).into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_over_tls_in_the_local_datacenter() {
    let config = ScyllaConfig {
        tls_ca_file: Some(tls_ca()),
        // SimpleSnitch's data centre.
        local_datacenter: Some("datacenter1".into()),
        ..common::fresh_config()
    };
    let keyspace = config.keyspace.clone();
    let store = common::open(config).await;
    let jid = "tls@example.com";
    assert!(store.credentials(jid).await.expect("query over TLS").is_none());
    common::drop_keyspace(&store, &keyspace).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_and_an_untrusted_certificate_are_refused() {
    let (user, _) = common::credentials();
    let wrong = ScyllaConfig { credentials: Some((user, "not-the-password".into())), ..common::fresh_config() };
    let refused = ScyllaStore::open(wrong).await.err().expect("a wrong password is refused").to_string();
    assert!(refused.to_lowercase().contains("authentication") || refused.contains("credentials"), "{refused}");

    let anonymous = ScyllaConfig { credentials: None, ..common::fresh_config() };
    assert!(ScyllaStore::open(anonymous).await.is_err(), "the node asks for a login");

    // A CA that did not sign the node's certificate: our own fresh one.
    let other_ca = std::env::temp_dir().join(format!("starling-other-ca-{}.pem", std::process::id()));
    let issued = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).expect("certificate");
    std::fs::write(&other_ca, issued.cert.pem()).expect("write CA");
    let untrusted = ScyllaConfig { tls_ca_file: Some(other_ca.clone()), ..common::fresh_config() };
    let refused = ScyllaStore::open(untrusted).await.err().expect("an untrusted certificate is refused").to_string();
    let _ = std::fs::remove_file(other_ca);
    assert!(refused.to_lowercase().contains("certificate"), "{refused}");

    let missing = ScyllaConfig { tls_ca_file: Some("/nonexistent/ca.pem".into()), ..common::fresh_config() };
    let refused = ScyllaStore::open(missing).await.err().expect("a missing CA file is a configuration error").to_string();
    assert!(refused.contains("/nonexistent/ca.pem"), "{refused}");
}
