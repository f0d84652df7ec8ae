use super::*;

#[test]
fn resolv_conf_as_hickory_reads_it_with_glibc_caps() {
    let text = "# comment\nnameserver 10.0.0.2\nnameserver 10.0.0.3\nnameserver 10.0.0.4\n\
                nameserver 10.0.0.5\ndomain ignored.test\n\
                search ns.svc.cluster.local svc.cluster.local\n\
                options ndots:5 timeout:3 attempts:9 rotate edns0\n";
    let (config, opts) = from_resolv_conf(text.as_bytes());
    let servers: Vec<String> = config.name_servers().iter().map(|s| s.ip.to_string()).collect();
    assert_eq!(servers, ["10.0.0.2", "10.0.0.3", "10.0.0.4"], "at most three");
    let search: Vec<String> = config.search().iter().map(ToString::to_string).collect();
    assert_eq!(search, ["ns.svc.cluster.local", "svc.cluster.local"], "the last search line");
    assert_eq!(opts.ndots, 5);
    assert_eq!(opts.timeout, Duration::from_secs(3));
    assert_eq!(opts.attempts, MAX_ATTEMPTS);
    assert!(opts.edns0);
}

#[test]
fn resolv_conf_without_servers_asks_localhost() {
    let (config, opts) = from_resolv_conf(b"search a.test\n");
    let servers: Vec<IpAddr> = config.name_servers().iter().map(|s| s.ip).collect();
    assert_eq!(servers, [FALLBACK_SERVER]);
    assert_eq!(opts.timeout, Duration::from_secs(5), "glibc's RES_TIMEOUT");
}

#[test]
fn empty_and_unknown_names_are_answers_not_failures() {
    let no_records = NetError::from(hickory_resolver::net::NoRecords::new(
        hickory_resolver::proto::op::Query::query("api.test.".parse().unwrap(), RecordType::A),
        hickory_resolver::proto::op::ResponseCode::NXDomain,
    ));
    assert_eq!(nothing_or_failure(no_records), Ok(Found::default()));
    let timeout = NetError::Timeout;
    assert!(nothing_or_failure(timeout).is_err());
}
