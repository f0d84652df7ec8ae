//! Kubernetes discovery through a fake API server that speaks the real LIST + WATCH
//! protocol ([`KubeApi`]): the initial list gives the backend set, a scale-up is applied
//! within a second, a 410 Gone costs exactly one re-list, a rolling replacement under
//! load fails no request, and an API outage keeps the set and resyncs after it.

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use crate::support::kube_api::{slice, KubeApi};
use tokio::time::Instant;

use crate::dns::labels;
use crate::support::admin::{authed, pools_until, TOKEN};
use crate::support::load::Load;
use crate::support::scrape::{metric, scrape};
use crate::support::{config_for, Balancer, TestBackend};
use weir::config::backend::KubePort;
use weir::config::{BackendAddress, BackendConfig, Resolve, Scheme};
use weir::discovery::endpoint::TERMINATING_TIER;

const SERVICE: &str = "api";
/// Generous bounds for waits on events (never asserted as speed, except where the issue
/// sets one).
const SOON: Duration = Duration::from_secs(10);
/// The API outage the issue asks weir to ride out.
const OUTAGE: Duration = Duration::from_secs(60);

/// weir with one pool over Service `api` of `namespace`, port `http`, admin on; the
/// caller holds [`KubeApi::shared`].
fn weir_on(namespace: &str) -> Balancer {
    let mut config = config_for(&[]);
    config.admin.listen = Some("127.0.0.1:0".parse().unwrap());
    config.pools[0].backends = vec![kubernetes_backend(namespace)];
    Balancer::start(config)
}

/// A backend following Service `api` of `namespace`, port `http`.
fn kubernetes_backend(namespace: &str) -> BackendConfig {
    let host = format!("{SERVICE}.{namespace}.svc");
    let address = BackendAddress { scheme: Scheme::Http, host, port: 0 };
    let port = KubePort::name("http").unwrap();
    BackendConfig { address, weight: 1, resolve: Resolve::Kubernetes(port) }
}

/// One slice per backend (each TestBackend has its own port), as a Service whose pods
/// listen on different ports would have.
fn put(api: &KubeApi, namespace: &str, backend: &TestBackend, state: (bool, bool, bool)) {
    let (ready, serving, terminating) = state;
    let addr = backend.addr();
    let ip = addr.ip().to_string();
    let name = format!("{SERVICE}-{}", addr.port());
    api.put(namespace, &name, slice(SERVICE, addr.port(), &[(&ip, ready, serving, terminating)]));
}

const READY: (bool, bool, bool) = (true, true, false);

/// Whether the running snapshot has `backend` with `check` true of it.
fn has(
    weir: &Balancer,
    backend: &TestBackend,
    check: fn(&weir::snapshot::Backend) -> bool,
) -> bool {
    let snapshot = weir.shared().snapshot.load();
    let label = backend.addr().to_string();
    snapshot.pools[0].backends.iter().any(|b| b.label == label && check(b))
}

fn label_set(backends: &[&TestBackend]) -> Vec<String> {
    let mut labels: Vec<String> = backends.iter().map(|b| b.addr().to_string()).collect();
    labels.sort();
    labels
}

async fn wait_labels(weir: &Balancer, want: &[String]) -> Option<Duration> {
    weir.wait_for(SOON, |w| labels(w) == want).await
}

#[tokio::test]
async fn the_initial_list_gives_the_backend_set_and_a_scale_up_joins_within_a_second() {
    let (api, ns) = (&KubeApi::shared(), "initial");
    let backends = [
        TestBackend::start("a").await,
        TestBackend::start("b").await,
        TestBackend::start("c").await,
    ];
    for backend in &backends[..2] {
        put(api, ns, backend, READY);
    }
    // A slice of another Service in the namespace is not selected.
    api.put(ns, "other-1", slice("other", 9, &[("10.9.9.9", true, true, false)]));
    let weir = weir_on(ns);
    let first = label_set(&[&backends[0], &backends[1]]);
    assert!(wait_labels(&weir, &first).await.is_some(), "initial set: {:?}", labels(&weir));
    assert_eq!(crate::dns::answered_by(&weir, 10).await, ["a", "b"]);
    assert_eq!(api.lists(ns), 1, "one LIST");
    let key = format!("k8s:{ns}/{SERVICE}:http");
    let stats = weir.shared().plane().dns().of(&key).expect("the source is known");
    assert_eq!((stats.endpoints, stats.generation), (2, 1));

    // Scale up: a third pod's slice is watched in, and joins within a second.
    put(api, ns, &backends[2], READY);
    let all = label_set(&[&backends[0], &backends[1], &backends[2]]);
    let took = wait_labels(&weir, &all).await.expect("the scale-up is applied");
    assert!(took < Duration::from_secs(1), "scale-up applied after {took:?}");
    eprintln!("scale-up applied after {took:?}");
    assert_eq!(crate::dns::answered_by(&weir, 12).await, ["a", "b", "c"]);
    assert_eq!(api.lists(ns), 1, "watched, not listed again");
}

#[tokio::test]
async fn a_410_gone_costs_exactly_one_relist() {
    let (api, ns) = (&KubeApi::shared(), "gone");
    let [a, b] = [TestBackend::start("a").await, TestBackend::start("b").await];
    put(api, ns, &a, READY);
    let weir = weir_on(ns);
    assert!(wait_labels(&weir, &label_set(&[&a])).await.is_some());
    let relists = || weir.shared().plane().sink().kubernetes.relists.load(Relaxed);
    assert_eq!((api.lists(ns), relists()), (1, 0));
    // Wait for the watch to be open, then compact: the watch gets an ERROR 410.
    assert!(weir.wait_for(SOON, |_| api.watches(ns) >= 1).await.is_some());
    api.expire(ns);
    put(api, ns, &b, READY);
    let both = label_set(&[&a, &b]);
    assert!(wait_labels(&weir, &both).await.is_some(), "the re-list brings b");
    assert!(weir.wait_for(SOON, |_| relists() == 1).await.is_some(), "counted");
    // And then it watches again from the new list, with no further list.
    let c = TestBackend::start("c").await;
    put(api, ns, &c, READY);
    assert!(wait_labels(&weir, &label_set(&[&a, &b, &c])).await.is_some());
    assert_eq!(api.lists(ns), 2, "exactly one re-list after the 410");
    assert_eq!(relists(), 1);
    let text = scrape(weir.admin()).await;
    assert_eq!(metric(&text, "weir_kubernetes_relists_total", &[]), Some(1.0));
    let source = format!("k8s:{ns}/{SERVICE}:http");
    let endpoints = metric(&text, "weir_discovery_endpoints", &[("source", &source)]);
    assert_eq!(endpoints, Some(3.0), "{text}");
    assert!(!text.contains("weir_dns_lookups_total{host=\"k8s:"), "no DNS series");
}

#[tokio::test]
async fn a_rolling_replacement_under_load_fails_nothing_and_removed_endpoints_get_nothing_new() {
    let (api, ns) = (&KubeApi::shared(), "rolling");
    let mut old = Vec::new();
    let mut new = Vec::new();
    for _ in 0..6 {
        old.push(TestBackend::start("old").await);
        new.push(TestBackend::start("new").await);
    }
    for backend in &old {
        put(api, ns, backend, READY);
    }
    let weir = weir_on(ns);
    assert!(wait_labels(&weir, &label_set(&old.iter().collect::<Vec<_>>())).await.is_some());
    // 3 keep-alive clients, 10 ms apart: at most 300 requests a second.
    let request = b"GET / HTTP/1.1\r\nHost: api\r\n\r\n".to_vec();
    let load = Load::repeat(weir.addr(), 3, Duration::from_millis(10), request);
    let mut after_removal = Vec::new();
    for (leaving, joining) in old.iter().zip(&new) {
        put(api, ns, joining, READY);
        let joined = weir.wait_for(SOON, |w| has(w, joining, |b| b.is_usable())).await;
        assert!(joined.is_some(), "the new pod joins");
        // Terminating (still serving): moved past every serving endpoint.
        put(api, ns, leaving, (false, true, true));
        let last = |b: &weir::snapshot::Backend| b.tier >= TERMINATING_TIER;
        assert!(weir.wait_for(SOON, |w| has(w, leaving, last)).await.is_some());
        put(api, ns, leaving, (false, false, true));
        let stopped = weir.wait_for(SOON, |w| has(w, leaving, |b| !b.serving)).await;
        assert!(stopped.is_some(), "not serving");
        api.delete(ns, &format!("{SERVICE}-{}", leaving.addr().port()));
        let gone = weir.wait_for(SOON, |w| !has(w, leaving, |b| b.is_active())).await;
        assert!(gone.is_some(), "removed");
        after_removal.push(leaving.requests());
    }
    let all_new = label_set(&new.iter().collect::<Vec<_>>());
    assert!(wait_labels(&weir, &all_new).await.is_some());
    // Traffic keeps going on the new pods for a while, then stops.
    let served = load.served();
    assert!(weir.wait_for(SOON, |_| load.served() > served + 300).await.is_some());
    let (sent, samples) = load.finish().await;
    let failed: Vec<_> = samples.iter().filter(|s| !s.ok()).collect();
    assert!(failed.is_empty(), "{} of {sent} requests failed: {:?}", failed.len(), &failed[..1]);
    assert!(samples.len() > 600, "{} requests", samples.len());
    eprintln!("rolling replacement: {} requests, none failed", samples.len());
    let now: Vec<usize> = old.iter().map(TestBackend::requests).collect();
    assert_eq!(now, after_removal, "no new request reached a pod after its removal");
    assert!(new.iter().all(|b| b.requests() > 0), "every new pod serves");
}

#[tokio::test]
async fn an_api_outage_keeps_the_set_and_it_resyncs_after() {
    let (api, ns) = (&KubeApi::shared(), "outage");
    let [a, b, c] = [
        TestBackend::start("a").await,
        TestBackend::start("b").await,
        TestBackend::start("c").await,
    ];
    put(api, ns, &a, READY);
    put(api, ns, &b, READY);
    let weir = weir_on(ns);
    let before = label_set(&[&a, &b]);
    assert!(wait_labels(&weir, &before).await.is_some());
    let errors = || weir.shared().plane().sink().kubernetes.errors.load(Relaxed);
    let generation = weir.shared().snapshot.load().generation;
    api.set_down(ns, true);
    assert!(weir.wait_for(SOON, |_| errors() >= 3).await.is_some(), "weir saw the outage");
    // While it lasts, the API server changes (c joins) unseen, and weir keeps its set.
    put(api, ns, &c, READY);
    let outage = Instant::now();
    while outage.elapsed() < OUTAGE {
        assert_eq!(labels(&weir), before, "the set holds during the outage");
        assert_eq!(weir.shared().snapshot.load().generation, generation);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(crate::dns::answered_by(&weir, 10).await, ["a", "b"]);
    let key = format!("k8s:{ns}/{SERVICE}:http");
    let stats = weir.shared().plane().dns().of(&key).unwrap();
    assert!(stats.failed > 0 && stats.endpoints == 2, "{stats:?}");
    api.set_down(ns, false);
    let after = label_set(&[&a, &b, &c]);
    let took = wait_labels(&weir, &after).await.expect("resynced");
    assert!(took < Duration::from_secs(5), "resynced {took:?} after the outage ended");
    eprintln!("resynced {took:?} after a {OUTAGE:?} outage ({} errors)", errors());
    assert_eq!(crate::dns::answered_by(&weir, 12).await, ["a", "b", "c"]);
}

#[tokio::test]
async fn a_reload_that_adds_the_first_kubernetes_backend_starts_following_it() {
    let (api, ns) = (&KubeApi::shared(), "reloaded");
    let [fixed, a] = [TestBackend::start("fixed").await, TestBackend::start("a").await];
    put(api, ns, &a, READY);
    let mut config = config_for(&[fixed.addr()]);
    let weir = Balancer::start(config.clone());
    assert_eq!(labels(&weir), [fixed.addr().to_string()]);
    config.pools[0].backends.push(kubernetes_backend(ns));
    weir.reload(config).unwrap();
    let both = label_set(&[&fixed, &a]);
    assert!(wait_labels(&weir, &both).await.is_some(), "followed: {:?}", labels(&weir));
    assert_eq!(api.lists(ns), 1);
}

#[tokio::test]
async fn hostile_slices_and_malformed_events_are_skipped_and_the_set_holds() {
    let (api, ns) = (&KubeApi::shared(), "hostile");
    let [a, b] = [TestBackend::start("a").await, TestBackend::start("b").await];
    put(api, ns, &a, READY);
    let weir = weir_on(ns);
    let first = label_set(&[&a]);
    assert!(wait_labels(&weir, &first).await.is_some());
    assert!(weir.wait_for(SOON, |_| api.watches(ns) >= 1).await.is_some());
    let errors = || weir.shared().plane().sink().kubernetes.errors.load(Relaxed);
    // A truncated event, then one that is not JSON at all: errors, and the set holds.
    api.inject(ns, r#"{"type":"ADDED","object":{"kind":"EndpointSlice","metadata":"#);
    api.inject(ns, "\u{0}garbage");
    assert!(weir.wait_for(SOON, |_| errors() >= 1).await.is_some(), "counted");
    // Slices that make no endpoint: addresses that are not IPs, a port out of range.
    let mut bad = slice(SERVICE, 80, &[("not-an-ip", true, true, false)]);
    api.put(ns, "bad-address", bad.clone());
    bad["endpoints"][0]["addresses"] = serde_json::json!(["10.0.0.1"]);
    bad["ports"][0]["port"] = serde_json::json!(70000);
    api.put(ns, "bad-port", bad.clone());
    bad["ports"][0]["port"] = serde_json::json!(-1);
    api.put(ns, "negative-port", bad);
    // The watch still works: b joins, and nothing from the bad slices does.
    put(api, ns, &b, READY);
    let both = label_set(&[&a, &b]);
    assert!(wait_labels(&weir, &both).await.is_some(), "{:?}", labels(&weir));
    // A slice with more endpoints than weir keeps: the lowest 256 addresses are used.
    let many: Vec<String> = (0..300).map(|i| format!("10.1.{}.{}", i / 250, i % 250)).collect();
    let endpoints: Vec<(&str, bool, bool, bool)> =
        many.iter().map(|ip| (ip.as_str(), true, true, false)).collect();
    api.put(ns, "huge", slice(SERVICE, 8080, &endpoints));
    let key = format!("k8s:{ns}/{SERVICE}:http");
    let kept = |w: &Balancer| w.shared().plane().dns().of(&key).is_some_and(|s| s.endpoints == 256);
    assert!(weir.wait_for(SOON, kept).await.is_some(), "bounded");
    let applied = weir.wait_for(SOON, |w| labels(w).len() == 256).await;
    assert!(applied.is_some(), "{} backends", labels(&weir).len());
}

/// Opt-in, against a real cluster: `WEIR_K8S_SERVICE=NAMESPACE/SERVICE:PORT cargo test
/// --test it discovery_k8s::real_cluster -- --ignored` with `KUBECONFIG` set (and
/// nothing else in the run, since the fake server points `KUBECONFIG` at itself). The
/// Service must have at least one ready endpoint; weir must reach the API server, not
/// the pods.
#[tokio::test]
#[ignore = "needs a real cluster: set KUBECONFIG and WEIR_K8S_SERVICE"]
async fn real_cluster() {
    let target = std::env::var("WEIR_K8S_SERVICE").expect("WEIR_K8S_SERVICE=NS/SERVICE:PORT");
    let (namespace, rest) = target.split_once('/').expect("NS/SERVICE:PORT");
    let (service, port) = rest.split_once(':').expect("NS/SERVICE:PORT");
    let port = match port.parse::<u16>() {
        Ok(number) => KubePort::Number(number),
        Err(_) => KubePort::name(port).unwrap(),
    };
    let host = format!("{service}.{namespace}.svc");
    let address = BackendAddress { scheme: Scheme::Http, host, port: 0 };
    let mut config = config_for(&[]);
    config.pools[0].backends =
        vec![BackendConfig { address, weight: 1, resolve: Resolve::Kubernetes(port) }];
    let weir = Balancer::start(config);
    let key = format!("k8s:{namespace}/{service}:{}", port.text());
    let synced = |w: &Balancer| w.shared().plane().dns().of(&key).is_some_and(|s| s.generation > 0);
    assert!(
        weir.wait_for(Duration::from_secs(30), synced).await.is_some(),
        "no set from the cluster"
    );
    let stats = weir.shared().plane().dns().of(&key).unwrap();
    eprintln!(
        "{key}: {} endpoints, set hash {:016x}: {:?}",
        stats.endpoints,
        stats.hash,
        labels(&weir)
    );
    assert!(stats.endpoints > 0 && !labels(&weir).is_empty());
}

#[tokio::test]
async fn the_admin_api_adds_a_kubernetes_backend_and_lists_its_source() {
    let (api, ns) = (&KubeApi::shared(), "viaapi");
    let [fixed, a] = [TestBackend::start("fixed").await, TestBackend::start("a").await];
    put(api, ns, &a, READY);
    let token = |config: &mut weir::config::Config| config.admin.token = Some(TOKEN.to_string());
    let weir = Balancer::with_admin(&[fixed.addr()], token);
    let add = "/api/v1/pools/web/backends";
    let bad = format!(r#"{{"address": "api.{ns}", "resolve": "kubernetes:http"}}"#);
    let reply = authed(weir.admin(), "POST", add, Some(&bad)).await;
    assert_eq!(reply.status, 400, "{:?}", reply.json);
    let body = format!(r#"{{"address": "{SERVICE}.{ns}.svc", "resolve": "kubernetes:http"}}"#);
    let reply = authed(weir.admin(), "POST", add, Some(&body)).await;
    assert_eq!(reply.status, 201, "{:?}", reply.json);
    let both = label_set(&[&fixed, &a]);
    assert!(wait_labels(&weir, &both).await.is_some(), "followed: {:?}", labels(&weir));
    let source = format!("k8s:{ns}/{SERVICE}:http");
    let listed = pools_until(weir.admin(), "the source", |doc| {
        let sources = doc["pools"][0]["sources"].as_array().cloned().unwrap_or_default();
        sources.iter().any(|s| s["source"] == source.as_str() && s["endpoints"] == 1)
    });
    listed.await;
}
