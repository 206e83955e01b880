//! Tests of [`super`]: the SASL exchanges on stored keys and the authentication throttle.

use starling_cluster::failure_counts::LocalFailureCounts;

use super::*;

#[test]
fn reads_the_username_from_first_messages() {
    assert_eq!(initial_username("SCRAM-SHA-256", b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO").as_deref(), Some("user"));
    assert_eq!(initial_username("SCRAM-SHA-1-PLUS", b"p=tls-exporter,,n=a=2Cb=3D,r=x").as_deref(), Some("a,b="));
    assert_eq!(initial_username("PLAIN", b"\0juliet\0pencil").as_deref(), Some("juliet"));
    assert_eq!(initial_username("SCRAM-SHA-1", b"garbage"), None);
}

fn throttle(max_failures: u32, max_address_failures: u32, window: Duration, first_delay: Duration) -> Throttle {
    Throttle::new(max_failures, max_address_failures, window, first_delay, Arc::new(LocalFailureCounts::default()))
}

#[tokio::test]
async fn throttle_blocks_an_account_from_one_address_and_a_spraying_address() {
    let throttle = throttle(3, 5, Duration::from_millis(50), Duration::ZERO);
    let ip: IpAddr = [127, 0, 0, 1].into();
    for _ in 0..3 {
        assert!(!throttle.is_blocked(ip, "bob").await);
        throttle.record_failure(ip, "bob").await;
    }
    assert!(throttle.is_blocked(ip, "bob").await, "bob from the guessing address");
    assert!(!throttle.is_blocked([127, 0, 0, 2].into(), "bob").await, "bob from elsewhere is not locked out");
    assert!(!throttle.is_blocked(ip, "carol").await, "others behind the same address are not either");
    throttle.record_failure(ip, "carol").await;
    throttle.record_failure(ip, "dave").await;
    assert!(throttle.is_blocked(ip, "erin").await, "five failures over any accounts: the address sprays");
    throttle.record_success(ip, "carol").await;
    assert!(throttle.is_blocked(ip, "erin").await, "a success does not reset the address");
    tokio::time::sleep(Duration::from_millis(60)).await;
    assert!(!throttle.is_blocked(ip, "bob").await && !throttle.is_blocked(ip, "erin").await);
}

#[tokio::test]
async fn each_further_failure_is_answered_later() {
    let throttle = throttle(100, 1000, Duration::from_secs(60), Duration::from_millis(250));
    let ip: IpAddr = [127, 0, 0, 1].into();
    let mut delays = Vec::new();
    for _ in 0..7 {
        delays.push(throttle.record_failure(ip, "bob").await.as_millis());
    }
    assert_eq!(delays, [0, 250, 500, 1000, 2000, 4000, 4000], "the first at once, then doubling up to the cap");
    assert_eq!(throttle.record_failure(ip, "carol").await, Duration::ZERO, "another account's first failure from the same address");
    assert_eq!(throttle.record_failure([127, 0, 0, 2].into(), "bob").await, Duration::ZERO, "bob's first from elsewhere");
}

#[test]
fn scram_sha_256_exchange_with_stored_keys() {
    let credentials = ScramCredentials::derive("pencil", 4096);
    let client_first = b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
    let mut exchange = Exchange::start("SCRAM-SHA-256", "user".into(), Some(credentials), None).expect("mechanism");
    assert!(matches!(exchange.step(client_first), Step::Challenge(_)));
    // A wrong proof fails.
    let Step::Failure(condition) = exchange.step(b"c=biws,r=rOprNGfwEbeRWgbNEkqO,p=AAAA") else { panic!("expected failure") };
    assert_eq!(condition, "not-authorized");
}

#[test]
fn scram_messages_with_attributes_shorter_than_their_name_are_malformed_not_a_panic() {
    for (first, later) in [
        (&b"n,a,n=user,r=abc"[..], None),
        (b"n,,n,r=abc", None),
        (b"n,,n=user,r", None),
        (b"n,,n=user,r=abc", Some(&b"c=biws,r"[..])),
        (b"n,,n=user,r=abc", Some(b"c,r=abc,p=AAAA")),
    ] {
        let credentials = ScramCredentials::derive("pencil", 1);
        let mut exchange = Exchange::start("SCRAM-SHA-256", "user".into(), Some(credentials), None).expect("mechanism");
        let outcome = match later {
            None => exchange.step(first),
            Some(later) => {
                assert!(matches!(exchange.step(first), Step::Challenge(_)));
                exchange.step(later)
            }
        };
        assert!(matches!(outcome, Step::Failure("malformed-request")), "{:?}", String::from_utf8_lossy(later.unwrap_or(first)));
    }
}

#[test]
fn server_nonces_never_carry_quotes_or_backslashes() {
    // Without the retry ~18 % of first messages had one; 500 tries would all but surely show it.
    for _ in 0..500 {
        let credentials = ScramCredentials::derive("pencil", 1);
        let mut exchange = Exchange::start("SCRAM-SHA-1", "user".into(), Some(credentials), None).expect("mechanism");
        let Step::Challenge(server_first) = exchange.step(b"n,,n=user,r=abc") else { panic!("expected a challenge") };
        assert!(!server_first.iter().any(|&b| b == b'"' || b == b'\\'), "{}", String::from_utf8_lossy(&server_first));
    }
}

/// A real rsasl client against our server side, with and without channel binding.
fn client_exchange(mechanism: &str, password: &str, client_cb: Option<&[u8]>, server_cb: Option<Vec<u8>>) -> bool {
    use rsasl::prelude::SASLClient;
    struct Binding(Vec<u8>);
    impl ChannelBindingCallback for Binding {
        fn get_cb_data(&self, cbname: &str) -> Option<&[u8]> {
            (cbname == "tls-exporter").then_some(self.0.as_slice())
        }
    }
    let credentials = ScramCredentials::derive("pencil", 4096);
    /// rsasl's `with_credentials` registry has no -PLUS mechanisms, so the client gets ours.
    struct ClientCredentials(String, bool);
    impl SessionCallback for ClientCredentials {
        fn enable_channel_binding(&self) -> bool {
            self.1
        }

        fn callback(&self, _: &SessionData, _: &Context, request: &mut Request) -> Result<(), SessionError> {
            request.satisfy::<AuthId>("user")?.satisfy::<Password>(self.0.as_bytes())?;
            Ok(())
        }
    }
    let config = SASLConfig::builder()
        .with_registry(Registry::with_mechanisms(WITH_BINDING))
        .with_callback(ClientCredentials(password.to_owned(), client_cb.is_some()))
        .expect("client config");
    // Offered as a server offers them: -PLUS beside the plain variant.
    let plain = mechanism.trim_end_matches("-PLUS");
    let offered = [Mechname::parse(mechanism.as_bytes()).expect("name"), Mechname::parse(plain.as_bytes()).expect("name")];
    let client = match client_cb {
        Some(data) => SASLClient::with_cb(config, Binding(data.to_vec())).start_suggested_iter(offered),
        None => SASLClient::with_cb(config, Binding(Vec::new())).start_suggested_iter(offered[1..].iter().copied()),
    };
    let mut client = client.expect("client mechanism");
    let mut server = Exchange::start(mechanism, "user".into(), Some(credentials), server_cb).expect("server mechanism");
    let mut to_server = Cursor::new(Vec::new());
    client.step(None, &mut to_server).expect("client first");
    for _ in 0..4 {
        match server.step(to_server.get_ref()) {
            Step::Challenge(data) => {
                to_server = Cursor::new(Vec::new());
                if client.step(Some(&data), &mut to_server).is_err() {
                    return false;
                }
            }
            Step::Success(data) => return client.step(Some(&data), &mut Cursor::new(Vec::new())).is_ok(),
            Step::Failure(_) => return false,
        }
    }
    false
}

#[test]
fn scram_succeeds_with_the_right_password_only() {
    for mechanism in ["SCRAM-SHA-256", "SCRAM-SHA-1"] {
        assert!(client_exchange(mechanism, "pencil", None, None), "{mechanism}");
        assert!(!client_exchange(mechanism, "pencil2", None, None), "{mechanism} with a wrong password");
    }
}

#[test]
fn scram_plus_binds_to_the_tls_exporter() {
    let exporter = vec![7u8; 32];
    for mechanism in ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-1-PLUS"] {
        assert!(client_exchange(mechanism, "pencil", Some(&exporter), Some(exporter.clone())), "{mechanism}");
        // A man in the middle terminates TLS itself, so the client sees another exporter value.
        assert!(!client_exchange(mechanism, "pencil", Some(&[8u8; 32]), Some(exporter.clone())), "{mechanism} with a different channel");
        // Choosing -PLUS and then not binding is refused.
        let credentials = ScramCredentials::derive("pencil", 4096);
        let mut exchange = Exchange::start(mechanism, "user".into(), Some(credentials), Some(exporter.clone())).expect("mechanism");
        assert!(matches!(exchange.step(b"n,,n=user,r=abc"), Step::Failure("malformed-request")));
    }
}

#[test]
fn plain_checks_the_password_against_stored_keys() {
    let credentials = ScramCredentials::derive("pencil", 4096);
    let mut exchange = Exchange::start("PLAIN", "juliet".into(), Some(credentials.clone()), None).expect("mechanism");
    assert!(matches!(exchange.step(b"\0juliet\0pencil"), Step::Success(_)));
    let mut exchange = Exchange::start("PLAIN", "juliet".into(), Some(credentials), None).expect("mechanism");
    assert!(matches!(exchange.step(b"\0juliet\0wrong"), Step::Failure("not-authorized")));
    let mut exchange = Exchange::start("PLAIN", "juliet".into(), None, None).expect("mechanism");
    assert!(matches!(exchange.step(b"\0juliet\0pencil"), Step::Failure("not-authorized")));
}
