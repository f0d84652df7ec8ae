//! weir's stub resolver against a real (test) DNS server on 127.0.0.1: A and AAAA
//! answers with their TTL, CNAME chains, NXDOMAIN, silence and SERVFAIL, truncated UDP
//! replies retried over TCP, and stray replies with a wrong id.

use crate::support::dns::{DnsMode, TestDns};

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use weir::config::DnsConfig;
use weir::discovery::resolver::{Failure, Found, Resolver};

fn resolver(dns: &TestDns) -> Resolver {
    let config = DnsConfig { servers: vec![dns.addr()], timeout: Some(Duration::from_millis(300)) };
    Resolver::new(&config)
}

fn v4(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 0, last)
}

fn found(ips: &[Ipv4Addr], ttl: u32) -> Found {
    Found { addrs: ips.iter().map(|ip| IpAddr::V4(*ip)).collect(), ttl: Some(ttl) }
}

#[tokio::test]
async fn a_and_aaaa_records_with_their_ttl() {
    let dns = TestDns::start();
    dns.set_ttl(42);
    dns.set_a("api.weir.test", &[v4(1), v4(2)]);
    let six: Ipv6Addr = "fd00::5".parse().unwrap();
    dns.set_aaaa("api.weir.test", &[six]);
    let lookup = resolver(&dns).lookup("API.weir.test").await;
    assert_eq!(lookup.v4, Ok(found(&[v4(1), v4(2)], 42)));
    assert_eq!(lookup.v6, Ok(Found { addrs: vec![IpAddr::V6(six)], ttl: Some(42) }));
}

#[tokio::test]
async fn cname_chains_are_followed() {
    let dns = TestDns::start();
    dns.set_cname("www.weir.test", "edge.weir.test");
    dns.set_cname("edge.weir.test", "pods.weir.test");
    dns.set_a("pods.weir.test", &[v4(7)]);
    let lookup = resolver(&dns).lookup("www.weir.test").await;
    assert_eq!(lookup.v4, Ok(found(&[v4(7)], 1)));
    assert_eq!(lookup.v6, Ok(Found::default()), "no AAAA at the end of the chain");
}

#[tokio::test]
async fn unknown_name_is_empty_not_an_error() {
    let dns = TestDns::start();
    let lookup = resolver(&dns).lookup("missing.weir.test").await;
    assert_eq!((lookup.v4, lookup.v6), (Ok(Found::default()), Ok(Found::default())));
}

#[tokio::test]
async fn silence_times_out_and_servfail_is_reported() {
    let dns = TestDns::start();
    dns.set_a("api.weir.test", &[v4(1)]);
    dns.set_mode(DnsMode::Silent);
    let before = dns.udp_queries();
    let lookup = resolver(&dns).lookup("api.weir.test").await;
    assert_eq!(lookup.v4, Err(Failure::Timeout));
    // Two attempts for each of A and AAAA.
    assert_eq!(dns.udp_queries() - before, 4);
    dns.set_mode(DnsMode::ServFail);
    let lookup = resolver(&dns).lookup("api.weir.test").await;
    assert_eq!(lookup.v4, Err(Failure::Server(2)));
}

#[tokio::test]
async fn truncated_udp_reply_is_retried_over_tcp() {
    let dns = TestDns::start();
    dns.set_a("big.weir.test", &[v4(1), v4(2), v4(3)]);
    dns.set_truncate_udp(true);
    let lookup = resolver(&dns).lookup("big.weir.test").await;
    assert_eq!(lookup.v4, Ok(found(&[v4(1), v4(2), v4(3)], 1)));
    assert!(dns.tcp_queries() >= 2, "A and AAAA went over TCP: {}", dns.tcp_queries());
}

#[tokio::test]
async fn reply_with_another_id_is_ignored() {
    let dns = TestDns::start();
    dns.set_a("api.weir.test", &[v4(9)]);
    dns.set_stray_first(true);
    let lookup = resolver(&dns).lookup("api.weir.test").await;
    // The stray reply names 192.0.2.1; only the matching one counts.
    assert_eq!(lookup.v4, Ok(found(&[v4(9)], 1)));
}

#[tokio::test]
async fn second_server_answers_when_the_first_is_silent() {
    let (silent, good) = (TestDns::start(), TestDns::start());
    silent.set_mode(DnsMode::Silent);
    good.set_a("api.weir.test", &[v4(4)]);
    let servers = vec![silent.addr(), good.addr()];
    let config = DnsConfig { servers, timeout: Some(Duration::from_millis(200)) };
    let lookup = Resolver::new(&config).lookup("api.weir.test").await;
    assert_eq!(lookup.v4, Ok(found(&[v4(4)], 1)));
}

#[tokio::test]
async fn search_list_is_tried_for_short_names() {
    let dns = TestDns::start();
    dns.set_a("api.ns.svc.weir.test", &[v4(5)]);
    let text = format!(
        "nameserver {}\nsearch ns.svc.weir.test svc.weir.test\noptions ndots:5 timeout:1\n",
        dns.addr().ip()
    );
    let mut resolver = Resolver::from_resolv_conf(&text);
    resolver.servers = vec![dns.addr()]; // resolv.conf cannot name a port.
    let lookup = resolver.lookup("api").await;
    assert_eq!(lookup.v4, Ok(found(&[v4(5)], 1)));
}
