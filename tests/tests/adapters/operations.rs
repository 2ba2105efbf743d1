//! Operating a client, against each adapter: servers by host name (a fake resolver, and one
//! real `localhost`), connection lifetimes, and the counters every status reports.

use std::net::SocketAddr;
use std::time::Duration;

use callosum_proto::client::{ClientEvent, RemoveCause, ResolveFailure, ServerSpec};
use callosum_tests::conformance::{
    Adapter, ClientSpec, ClientUnderTest, FakeResolver, ServerUnderTest, quick_rover,
};
use callosum_tests::each_adapter;

each_adapter!(
    a_host_name_is_every_address_it_resolves_to,
    localhost_resolves_through_the_system,
    idle_timeout_closes_idle_connections_and_the_pool_refills,
    max_lifetime_replaces_old_connections_when_idle,
    stats_count_gets_and_leases_per_server,
);

fn kept_from(client: &ClientUnderTest, server: SocketAddr) {
    client.event_where(
        &format!("a connection of {server} kept"),
        |event| matches!(event, ClientEvent::Kept { server: s, .. } if *s == server),
    );
}

fn removed_because(client: &ClientUnderTest, cause: RemoveCause) -> SocketAddr {
    let event = client.event_where(
        &format!("a connection removed: {cause}"),
        |event| matches!(event, ClientEvent::Removed { cause: c, .. } if *c == cause),
    );
    let ClientEvent::Removed { server, .. } = event else {
        unreachable!("matched Removed")
    };
    server
}

fn servers(client: &ClientUnderTest) -> Vec<SocketAddr> {
    client.status().iter().map(|held| held.server).collect()
}

fn a_host_name_is_every_address_it_resolves_to(adapter: Adapter) {
    let (a, b) = (
        ServerUnderTest::start(adapter, None),
        ServerUnderTest::start(adapter, None),
    );
    let resolver = FakeResolver::default();
    resolver.set("svc.test", &[a.addr, b.addr]);
    let mut spec = ClientSpec::new(&[], 2, quick_rover());
    spec.config.resolve_interval = Duration::from_millis(50);
    spec.names = vec!["svc.test:7000".parse::<ServerSpec>().unwrap()];
    spec.resolver = Some(resolver.clone());
    let client = ClientUnderTest::start(adapter, spec);
    // Spreading puts the pool of two on both addresses, in either order.
    let mut kept = Vec::new();
    while kept.len() < 2 {
        let event = client.event_where("both addresses in use", |event| {
            matches!(event, ClientEvent::Kept { .. })
        });
        if let ClientEvent::Kept { server, .. } = event {
            kept.push(server);
        }
    }
    kept.sort_unstable();
    let mut both = vec![a.addr, b.addr];
    both.sort_unstable();
    assert_eq!(kept, both);
    // The records change: b is gone, and so are its connections.
    resolver.set("svc.test", &[a.addr]);
    assert_eq!(removed_because(&client, RemoveCause::ServerRemoved), b.addr);
    assert_eq!(servers(&client), [a.addr]);
    // A failed lookup is an event and keeps the last known servers.
    resolver.fail("svc.test");
    client.event_where("a failed lookup", |event| {
        matches!(
            event,
            ClientEvent::ResolveFailed {
                failure: ResolveFailure::LookupFailed,
                ..
            }
        )
    });
    assert_eq!(servers(&client), [a.addr]);
    assert!(client.client_status().stats.resolve_failed >= 1);
}

fn localhost_resolves_through_the_system(adapter: Adapter) {
    let server = ServerUnderTest::start(adapter, None);
    let mut spec = ClientSpec::new(&[], 1, quick_rover());
    let name = format!("localhost:{}", server.addr.port());
    spec.names = vec![name.parse::<ServerSpec>().unwrap()];
    let client = ClientUnderTest::start(adapter, spec);
    // localhost may stand for ::1 as well, where nothing listens: 127.0.0.1 is found.
    kept_from(&client, server.addr);
}

fn idle_timeout_closes_idle_connections_and_the_pool_refills(adapter: Adapter) {
    let server = ServerUnderTest::start(adapter, None);
    let mut spec = ClientSpec::new(&[server.addr], 1, quick_rover());
    spec.config.idle_timeout = Some(Duration::from_millis(100));
    let client = ClientUnderTest::start(adapter, spec);
    kept_from(&client, server.addr);
    assert_eq!(
        removed_because(&client, RemoveCause::IdleTimeout),
        server.addr
    );
    kept_from(&client, server.addr);
    assert!(client.client_status().stats.removed.idle_timeout >= 1);
}

fn max_lifetime_replaces_old_connections_when_idle(adapter: Adapter) {
    let server = ServerUnderTest::start(adapter, None);
    let mut spec = ClientSpec::new(&[server.addr], 1, quick_rover());
    spec.config.max_lifetime = Some(Duration::from_millis(150));
    let client = ClientUnderTest::start(adapter, spec);
    kept_from(&client, server.addr);
    // In use, it answers; idle past its lifetime, it goes and a new one comes.
    assert_eq!(client.round_trip("ping").unwrap().line, "ping");
    assert_eq!(
        removed_because(&client, RemoveCause::MaxLifetime),
        server.addr
    );
    kept_from(&client, server.addr);
}

fn stats_count_gets_and_leases_per_server(adapter: Adapter) {
    let server = ServerUnderTest::start(adapter, None);
    let client = ClientUnderTest::start(adapter, ClientSpec::new(&[server.addr], 1, quick_rover()));
    kept_from(&client, server.addr);
    for request in ["a", "b", "c"] {
        assert_eq!(client.round_trip(request).unwrap().line, request);
    }
    let status = client.client_status();
    assert_eq!(status.stats.gets, 3);
    assert_eq!((status.stats.waits, status.stats.timed_out_gets), (0, 0));
    assert_eq!(status.servers[0].leases, 3);
    assert_eq!(status.servers[0].leased, 0);
}
