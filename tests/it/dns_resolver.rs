//! weir's resolver (hickory-resolver) against a real DNS server, dnsmasq on 127.0.0.1: A
//! and AAAA answers with their TTL, CNAME chains, NXDOMAIN. The in-process test server
//! gives what dnsmasq cannot: silence, SERVFAIL, truncated UDP replies and stray replies
//! with a wrong id.

use crate::support::dns::{DnsMode, TestDns};
use crate::support::dnsmasq::Dnsmasq;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use weir::config::DnsConfig;
use weir::discovery::resolver::{Found, Resolver};

fn resolver(server: SocketAddr) -> Resolver {
    let config = DnsConfig { servers: vec![server], timeout: Some(Duration::from_millis(300)) };
    Resolver::new(&config)
}

fn v4(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, last))
}

fn found(ips: &[IpAddr], ttl: u32) -> Found {
    Found { addrs: ips.to_vec(), ttl: Some(ttl) }
}

#[tokio::test]
async fn a_and_aaaa_records_with_their_ttl() {
    let six: IpAddr = "fd00::5".parse().unwrap();
    let name = "api.weir.test";
    let dns = Dnsmasq::start(&[(name, v4(1)), (name, v4(2)), (name, six)], &[]);
    let lookup = resolver(dns.addr()).lookup("API.weir.test").await;
    let mut v4s = lookup.v4.expect("A");
    v4s.addrs.sort();
    assert_eq!(v4s, found(&[v4(1), v4(2)], 1));
    assert_eq!(lookup.v6, Ok(found(&[six], 1)));
}

#[tokio::test]
async fn cname_chains_are_followed() {
    let cname = "--cname=www.weir.test,api.weir.test".to_string();
    let dns = Dnsmasq::start(&[("api.weir.test", v4(3))], &[cname]);
    let lookup = resolver(dns.addr()).lookup("www.weir.test").await;
    assert_eq!(lookup.v4, Ok(found(&[v4(3)], 1)));
    assert_eq!(lookup.v6, Ok(Found::default()), "no AAAA: empty, not a failure");
}

#[tokio::test]
async fn unknown_name_is_empty_not_an_error() {
    let dns = Dnsmasq::start(&[("api.weir.test", v4(1))], &[]);
    let lookup = resolver(dns.addr()).lookup("nothing.weir.test").await;
    assert_eq!((lookup.v4, lookup.v6), (Ok(Found::default()), Ok(Found::default())));
}

#[tokio::test]
async fn silence_and_servfail_are_failures() {
    let dns = TestDns::start();
    dns.set_a("api.weir.test", &[Ipv4Addr::new(10, 0, 0, 1)]);
    dns.set_mode(DnsMode::Silent);
    let lookup = resolver(dns.addr()).lookup("api.weir.test").await;
    assert!(lookup.v4.is_err() && lookup.v6.is_err(), "{lookup:?}");
    dns.set_mode(DnsMode::ServFail);
    let lookup = resolver(dns.addr()).lookup("api.weir.test").await;
    assert!(lookup.v4.is_err(), "{lookup:?}");
}

#[tokio::test]
async fn truncated_udp_reply_is_retried_over_tcp() {
    let dns = TestDns::start();
    let ips = [1, 2, 3].map(|last| Ipv4Addr::new(10, 0, 0, last));
    dns.set_a("big.weir.test", &ips);
    dns.set_truncate_udp(true);
    let lookup = resolver(dns.addr()).lookup("big.weir.test").await;
    assert_eq!(lookup.v4, Ok(found(&[v4(1), v4(2), v4(3)], 1)));
    assert!(dns.tcp_queries() >= 1, "the A query went over TCP: {}", dns.tcp_queries());
}

#[tokio::test]
async fn reply_with_another_id_is_ignored() {
    let dns = TestDns::start();
    dns.set_a("api.weir.test", &[Ipv4Addr::new(10, 0, 0, 9)]);
    dns.set_stray_first(true);
    let lookup = resolver(dns.addr()).lookup("api.weir.test").await;
    // The stray reply names 192.0.2.1; only the matching one counts.
    assert_eq!(lookup.v4, Ok(found(&[v4(9)], 1)));
}

#[tokio::test]
async fn second_server_answers_when_the_first_is_silent() {
    let silent = TestDns::start();
    silent.set_mode(DnsMode::Silent);
    let good = Dnsmasq::start(&[("api.weir.test", v4(4))], &[]);
    let servers = vec![silent.addr(), good.addr()];
    let config = DnsConfig { servers, timeout: Some(Duration::from_millis(200)) };
    let lookup = Resolver::new(&config).lookup("api.weir.test").await;
    assert_eq!(lookup.v4, Ok(found(&[v4(4)], 1)));
}
