use super::*;

#[test]
fn resolv_conf_as_glibc_reads_it() {
    let text = "# comment\nnameserver 10.0.0.2\nnameserver fe80::1%eth0 ; zone dropped\n\
                nameserver 10.0.0.3\nnameserver 10.0.0.4\nnameserver bogus\n\
                domain ignored.test\nsearch ns.svc.cluster.local svc.cluster.local bad..name\n\
                options ndots:5 timeout:3 attempts:9 rotate\n";
    let resolver = Resolver::from_resolv_conf(text);
    let servers: Vec<String> = resolver.servers.iter().map(ToString::to_string).collect();
    assert_eq!(servers, ["10.0.0.2:53", "[fe80::1]:53", "10.0.0.3:53"], "at most three");
    assert_eq!(resolver.search, ["ns.svc.cluster.local", "svc.cluster.local"]);
    assert_eq!(resolver.ndots, 5);
    assert_eq!(resolver.timeout, Duration::from_secs(3));
    assert_eq!(resolver.attempts, MAX_ATTEMPTS);
}

#[test]
fn empty_resolv_conf_asks_localhost() {
    let resolver = Resolver::from_resolv_conf("");
    assert_eq!(resolver.servers, [FALLBACK_SERVER]);
    assert_eq!((resolver.ndots, resolver.attempts), (1, DEFAULT_ATTEMPTS));
    assert_eq!(resolver.timeout, RESOLV_CONF_TIMEOUT);
}

#[test]
fn search_order_follows_ndots() {
    let mut resolver = Resolver::from_resolv_conf("search a.test b.test\n");
    assert_eq!(resolver.candidates("api"), ["api.a.test", "api.b.test", "api"]);
    assert_eq!(resolver.candidates("api.ns"), ["api.ns", "api.ns.a.test", "api.ns.b.test"]);
    assert_eq!(resolver.candidates("API.ns."), ["api.ns"], "absolute: as written only");
    resolver.ndots = 5;
    assert_eq!(resolver.candidates("api.ns")[0], "api.ns.a.test");
}

#[test]
fn servers_from_config_replace_resolv_conf() {
    let config = DnsConfig { servers: vec!["127.0.0.1:5353".parse().unwrap()], timeout: None };
    let resolver = Resolver::new(&config);
    assert_eq!(resolver.servers, config.servers);
    assert!(resolver.search.is_empty());
    assert_eq!(resolver.hosts, Hosts::default(), "no /etc/hosts either");
    assert_eq!(resolver.timeout, DEFAULT_TIMEOUT);
}

#[test]
fn hosts_file_lines() {
    let hosts = Hosts::parse(
        "127.0.0.1 localhost # loopback\n10.0.0.5 API.internal api\n\
         fd00::5%eth0 api.internal\n10.0.0.5 api.internal\nbogus name.test\n# 10.9.9.9 api\n",
    );
    let ips: Vec<IpAddr> = vec!["10.0.0.5".parse().unwrap(), "fd00::5".parse().unwrap()];
    assert_eq!(hosts.get("api.INTERNAL."), Some(&ips[..]));
    assert_eq!(hosts.get("api"), Some(&ips[..1]));
    assert_eq!(hosts.get("name.test"), None);
}

#[tokio::test]
async fn a_name_in_hosts_is_not_queried() {
    // No server at all: any query would fail.
    let mut resolver = Resolver::from_resolv_conf("");
    resolver.servers.clear();
    resolver.hosts = Hosts::parse("10.0.0.5 api.internal\nfd00::5 api.internal\n");
    let lookup = resolver.lookup("api.internal").await;
    let v4 = Found { addrs: vec!["10.0.0.5".parse().unwrap()], ttl: None };
    let v6 = Found { addrs: vec!["fd00::5".parse().unwrap()], ttl: None };
    assert_eq!(lookup, Lookup { v4: Ok(v4), v6: Ok(v6) });
    assert!(resolver.lookup("other.internal").await.v4.is_err());
}
