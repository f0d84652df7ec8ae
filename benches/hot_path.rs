//! Microbenchmarks of the per-request hot paths: route match, backend pick, and the
//! request-head parse plus rewrite. A counting allocator proves that a pick and a
//! head rewrite into a warm buffer allocate nothing: the run stops with a panic if they do.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use weir::balance::key::hash_bytes;
use weir::balance::PickRequest;
use weir::config::HashKey;
use weir::config::{
    BackendAddress, BackendConfig, Config, HashConfig, HostMatch, PoolConfig, RouteConfig,
    StrategyKind,
};
use weir::http1::request::{self, Forwarding};
use weir::snapshot::{Registry, Snapshot};

/// Counts allocations so the benchmark can assert there are none.
struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards every call unchanged to the system allocator; it only counts. This is
// the one place weir uses unsafe code, and only in this benchmark binary, because a global
// allocator cannot be written without it.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations_during(f: impl FnOnce()) -> u64 {
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    f();
    ALLOCATIONS.load(Ordering::Relaxed) - before
}

fn snapshot(backends: usize, strategy: StrategyKind) -> Snapshot {
    let mut config = Config::default();
    let list = (0..backends)
        .map(|i| BackendConfig {
            address: BackendAddress::parse(&format!("127.0.0.1:{}", 10_000 + i)).unwrap(),
            weight: 1 + (i as u32 % 5),
            resolve: weir::config::Resolve::Once,
        })
        .collect();
    let mut web = PoolConfig::new("web", strategy, list);
    if strategy == StrategyKind::ConsistentHash {
        web.hash = Some(HashConfig { key: HashKey::Path, table_size: 65_537 });
    }
    config.pools.push(web);
    config.pools.push(PoolConfig::new("api", strategy, Vec::new()));
    config.routes = vec![
        RouteConfig {
            host: Some(HostMatch::Exact("static.example.com".into())),
            path_prefix: None,
            pool: "web".into(),
            acl: Default::default(),
            rules: Default::default(),
            limits: Vec::new(),
        },
        RouteConfig {
            host: Some(HostMatch::Suffix(".example.com".into())),
            path_prefix: Some("/api".into()),
            pool: "api".into(),
            acl: Default::default(),
            rules: Default::default(),
            limits: Vec::new(),
        },
    ];
    Registry::new(1).build(&Arc::new(config), 1).unwrap().publish()
}

fn bench_route(c: &mut Criterion) {
    let snapshot = snapshot(16, StrategyKind::RoundRobin);
    c.bench_function("route/wildcard_host_and_prefix", |b| {
        b.iter(|| {
            weir::route::select(&snapshot, black_box(Some(b"a.example.com:8080")), b"/api/v1")
        })
    });
    c.bench_function("route/no_match_default", |b| {
        b.iter(|| weir::route::select(&snapshot, black_box(Some(b"other.org")), b"/"))
    });
}

/// Every strategy, and a name for its benchmark. Sticky runs twice: with a cookie naming a
/// backend, and without one (a pick by its base strategy, least requests). Weighted round
/// robin also runs with its first backend down, whose scheduled turns it passes.
const STRATEGIES: [(&str, StrategyKind); 9] = [
    ("round_robin", StrategyKind::RoundRobin),
    ("weighted_round_robin", StrategyKind::WeightedRoundRobin),
    ("weighted_round_robin_one_down", StrategyKind::WeightedRoundRobin),
    ("random", StrategyKind::Random),
    ("least_requests", StrategyKind::LeastRequests),
    ("consistent_hash", StrategyKind::ConsistentHash),
    ("sticky_cookie", StrategyKind::Sticky),
    ("sticky_no_cookie", StrategyKind::Sticky),
    ("peak_ewma", StrategyKind::PeakEwma),
];

fn bench_pick(c: &mut Criterion) {
    let mut group = c.benchmark_group("pick");
    // Keys cycle through 1024 precomputed hashes, so consistent_hash reads all over its table.
    let keys: Vec<u64> = (0..1024).map(|i| hash_bytes(format!("/user/{i}").as_bytes())).collect();
    for (name, strategy) in STRATEGIES {
        for size in [2usize, 16, 256] {
            let snapshot = snapshot(size, strategy);
            let pool = &snapshot.pools[0];
            if name.ends_with("_one_down") {
                pool.backends[0].live.healthy.store(false, Ordering::Relaxed);
            }
            let cookie = pool.strategy.sticky_id(size / 2).unwrap_or_default().to_string();
            let sticky_id = (name == "sticky_cookie").then_some(cookie.as_bytes());
            let mut turn = 0usize;
            let mut pick = || {
                turn = turn.wrapping_add(1);
                let hash_key = Some(keys[turn % keys.len()]);
                pool.strategy.pick(black_box(&pool.backends), &PickRequest { hash_key, sticky_id })
            };
            let allocated = allocations_during(|| {
                for _ in 0..10_000 {
                    assert!(black_box(pick()).is_some());
                }
            });
            assert_eq!(allocated, 0, "{name} pick allocated with {size} backends");
            group.bench_with_input(BenchmarkId::new(name, size), &size, |b, _| b.iter(&mut pick));
        }
    }
    group.finish();
}

const HEAD: &[u8] = b"GET /api/v1/items?page=2 HTTP/1.1\r\nHost: shop.example.com\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/128.0\r\n\
Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n\
Accept-Language: en-GB,en;q=0.5\r\nAccept-Encoding: gzip, deflate, br\r\n\
Connection: keep-alive\r\nCookie: session=0123456789abcdef; theme=dark\r\n\
X-Forwarded-For: 203.0.113.9\r\nUpgrade-Insecure-Requests: 1\r\n\r\n";

fn bench_rewrite(c: &mut Criterion) {
    let forwarding = Forwarding {
        client_ip: b"127.0.0.1",
        proto: b"http",
        max_headers: 100,
        trust: weir::http1::forwarded::Trust::Everyone,
    };
    let mut out = Vec::with_capacity(2048);
    let allocated = allocations_during(|| {
        for _ in 0..10_000 {
            black_box(request::parse(HEAD, &forwarding, &mut out).unwrap());
        }
    });
    assert_eq!(allocated, 0, "head parse and rewrite allocated");
    c.bench_function("request_head/parse_and_rewrite", |b| {
        b.iter(|| request::parse(black_box(HEAD), &forwarding, &mut out).unwrap())
    });
}

const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\n\
Date: Fri, 27 Nov 2026 08:00:00 GMT\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\
Connection: keep-alive\r\n\r\nok\n";

fn bench_response(c: &mut Criterion) {
    let exchange = weir::http1::response::Exchange {
        head_request: false,
        upgrade_requested: false,
        client_http10: false,
        close_client: false,
        max_headers: 100,
        websocket_accept: None,
    };
    let mut out = Vec::with_capacity(2048);
    let allocated = allocations_during(|| {
        for _ in 0..10_000 {
            black_box(weir::http1::response::parse(RESPONSE, &exchange, &mut out).unwrap());
        }
    });
    assert_eq!(allocated, 0, "response head parse and rewrite allocated");
    c.bench_function("response_head/parse_and_rewrite", |b| {
        b.iter(|| weir::http1::response::parse(black_box(RESPONSE), &exchange, &mut out).unwrap())
    });
}

/// A rate limit's decision on a key it never throttles (the "one limit whose key never
/// throttles" of the traffic-policy benchmark): the key's hash and one compare-and-swap.
fn bench_limit(c: &mut Criterion) {
    use weir::limit::table::{Gcra, Table};
    let table = Table::new(weir::config::limit::DEFAULT_TABLE_SIZE);
    let gcra = Gcra { interval: 1, tolerance: u64::MAX / 4, delay_max: 0 };
    let key = [192u8, 0, 2, 7];
    c.bench_function("limit/decide_never_throttled", |b| {
        b.iter(|| {
            let hash = weir::balance::key::xxh64(black_box(&key), 42);
            table.decide(hash, weir::limit::now_nanos(), gcra)
        })
    });
}

criterion_group!(benches, bench_response, bench_route, bench_pick, bench_rewrite, bench_limit);
criterion_main!(benches);
