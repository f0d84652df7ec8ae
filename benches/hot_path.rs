//! Microbenchmarks of the per-request hot paths: route match, backend pick, and the
//! request-head parse plus rewrite. A counting allocator proves that a pick and a
//! head rewrite into a warm buffer allocate nothing: the run stops with a panic if they do.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use weir::config::{
    BackendAddress, BackendConfig, Config, HostMatch, PoolConfig, RouteConfig, StrategyKind,
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
        })
        .collect();
    config.pools.push(PoolConfig::new("web", strategy, list));
    config.pools.push(PoolConfig::new("api", strategy, Vec::new()));
    config.routes = vec![
        RouteConfig {
            host: Some(HostMatch::Exact("static.example.com".into())),
            path_prefix: None,
            pool: "web".into(),
        },
        RouteConfig {
            host: Some(HostMatch::Suffix(".example.com".into())),
            path_prefix: Some("/api".into()),
            pool: "api".into(),
        },
    ];
    Registry::new(1).build(&Arc::new(config), 1).unwrap()
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

fn bench_pick(c: &mut Criterion) {
    let mut group = c.benchmark_group("pick");
    for size in [2usize, 16, 256] {
        let snapshot = snapshot(size, StrategyKind::RoundRobin);
        let pool = &snapshot.pools[0];
        let allocated = allocations_during(|| {
            for _ in 0..10_000 {
                black_box(pool.strategy.pick(&pool.backends));
            }
        });
        assert_eq!(allocated, 0, "round_robin pick allocated with {size} backends");
        group.bench_with_input(BenchmarkId::new("round_robin", size), &size, |b, _| {
            b.iter(|| pool.strategy.pick(black_box(&pool.backends)))
        });
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
    let forwarding = Forwarding { client_ip: b"127.0.0.1", proto: b"http", max_headers: 100 };
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

criterion_group!(benches, bench_route, bench_pick, bench_rewrite);
criterion_main!(benches);
