//! Readiness from a source, end to end through the control plane: an endpoint that does
//! not serve gets no request, and a `serving && terminating` one gets new requests only
//! when nothing else in the pool serves. The sets are handed to the balancer's sink as
//! any source hands them (the DNS name's own answer never changes meanwhile).

use std::time::Duration;

use crate::discovery_coalesce::name_on_dnsmasq;
use crate::dns::answered_by;
use crate::support::{Balancer, TestBackend};
use weir::discovery::{Endpoint, Readiness};

const NAME: &str = "ready.weir.test";
const SOON: Duration = Duration::from_secs(5);

fn endpoint(backend: &TestBackend, serving: bool, terminating: bool) -> Endpoint {
    let readiness = Readiness { ready: serving && !terminating, serving, terminating };
    let port = Some(backend.addr().port());
    Endpoint { port, readiness, ..Endpoint::address(backend.addr().ip()) }
}

#[tokio::test]
async fn terminating_endpoints_serve_only_when_nothing_else_does() {
    let [a, b, c] = [
        TestBackend::start("a").await,
        TestBackend::start("b").await,
        TestBackend::start("c").await,
    ];
    let (_dns, weir) = name_on_dnsmasq(NAME, 1);
    let sink = std::sync::Arc::clone(weir.shared().plane().sink());
    let push = |set: Vec<Endpoint>| {
        let generation = weir.shared().snapshot.load().generation;
        sink.push(NAME.to_string(), set);
        generation
    };
    let swapped = |after: u64| move |w: &Balancer| w.shared().snapshot.load().generation > after;

    // a serves, b is terminating but serving, c does not serve.
    let before =
        push(vec![endpoint(&a, true, false), endpoint(&b, true, true), endpoint(&c, false, false)]);
    assert!(weir.wait_for(SOON, swapped(before)).await.is_some(), "the set was applied");
    assert_eq!(answered_by(&weir, 20).await, ["a"]);
    // a stops serving: the terminating b is all that serves, so it takes the requests.
    let before = push(vec![
        endpoint(&a, false, false),
        endpoint(&b, true, true),
        endpoint(&c, false, false),
    ]);
    assert!(weir.wait_for(SOON, swapped(before)).await.is_some());
    assert_eq!(answered_by(&weir, 20).await, ["b"]);
    // c serves again: b goes back to taking nothing new.
    let before =
        push(vec![endpoint(&a, false, false), endpoint(&b, true, true), endpoint(&c, true, false)]);
    assert!(weir.wait_for(SOON, swapped(before)).await.is_some());
    assert_eq!(answered_by(&weir, 20).await, ["c"]);
    let status = weir.status(a.addr());
    assert_eq!(
        (status.healthy, status.state),
        (false, "not_serving"),
        "readiness is a health flag"
    );
}
