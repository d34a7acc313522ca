//! Instance hosts are resolved off the request path and kept fresh: when a host's addresses
//! change, new connections go to the new ones without a restart; when it stops resolving, the
//! last good addresses stay. The proxy runs in-process with an injected resolver in front of
//! two stubs on different loopback addresses.

mod support;

use std::sync::Arc;
use std::time::Duration;

use edge_proxy::server::Overrides;
use edge_proxy::upstream::resolve::StaticResolver;
use support::{client, Behaviour, Stub};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_connections_follow_the_hosts_addresses() {
    let first = Stub::start_at("first", Behaviour::Ok, "127.0.0.2:0").await;
    let port = first.port;
    let second = Stub::start_at("second", Behaviour::Ok, &format!("127.0.0.3:{port}")).await;
    let resolver = Arc::new(StaticResolver::default());
    resolver.set("fn.test", vec!["127.0.0.2:0".parse().unwrap()]);
    let config = format!(
        r#"
        [server]
        listen = "127.0.0.1:{{port}}"
        threads = 1
        grace-period-seconds = 0

        [dns]
        refresh-ms = 1000

        [services.fn]
        instances = ["http://fn.test:{port}/svc"]
        [services.fn.health-check]
        enabled = false

        [[routes]]
        prefix = "/api"
        service = "fn"
        "#
    );
    let proxy = support::start_proxy_with(
        &config,
        Overrides {
            resolver: Some(resolver.clone()),
            ..Overrides::default()
        },
    )
    .await;
    let http = client();
    let instance_of = |body: serde_json::Value| body["instance"].as_str().unwrap().to_string();
    let get = || async {
        let response = http
            .get(format!("{}/api/x", proxy.base))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200);
        instance_of(response.json().await.unwrap())
    };
    assert_eq!(get().await, "first", "the host name resolved at start");

    // The host moves: within a refresh interval or two, new connections go to the new address.
    resolver.set("fn.test", vec!["127.0.0.3:0".parse().unwrap()]);
    let mut moved = false;
    for _ in 0..60 {
        if get().await == "second" {
            moved = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(moved, "requests follow the new address without a restart");
    assert!(second.count() > 0);
    let before = first.count();

    // The host stops resolving: the last good address stays in use, and it is counted.
    resolver.fail("fn.test");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    for _ in 0..5 {
        assert_eq!(get().await, "second");
    }
    assert_eq!(
        first.count(),
        before,
        "nothing went back to the old address"
    );
    let text = proxy.handle.metrics.render();
    assert!(
        text.contains("edge_dns_resolutions_total{outcome=\"failure\",service=\"fn\"}"),
        "{text}"
    );
}
