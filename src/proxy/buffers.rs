//! Per-worker free list of connection buffers.
//!
//! A connection holds buffers only while a request is in progress: an idle keep-alive
//! connection gives them back, so 10,000 idle clients cost sockets, not buffers. Taking and
//! returning is a thread-local push and pop, with no allocation once warm.

use std::cell::RefCell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::BytesMut;

/// Initial capacity of the client input buffer: a typical request head fits; bigger heads
/// and bodies grow it on demand.
const INPUT_BYTES: usize = 4 * 1024;
/// Initial capacity of the upstream input buffer: a small response fits whole; bodies grow
/// it to `pump::READ_CHUNK_BYTES`.
const UPSTREAM_BYTES: usize = 8 * 1024;
/// Initial capacity of each head scratch vector.
const HEAD_BYTES: usize = 2 * 1024;
/// Buffer sets a worker's free list holds at most. HTTP/2 clients keep thousands of
/// requests in flight per worker (64 connections at 100 streams, as h2load `-m100` and
/// gRPC clients do, is 6,400), each with its own set, and their streams end and begin
/// in batches of hundreds: with 1,024 kept, a batch that ended overflowed the list and
/// the next one allocated afresh (callgrind, bench/grpc.sh's load: [`take`] cost 3,600
/// instructions a call with 1,024 kept, 1,700 with 8,192, most of that each set's first
/// allocation in a short run; 64 kept cost a tenth of an `-m10` stream's work).
/// A set is 16 KiB, and up to 32 KiB kept (see [`SHRINK_ABOVE`]): what the list holds
/// was in use a moment before, and [`trim`] gives back within two seconds what no
/// request took since, so a burst's memory is held no longer, bounded by 256 MiB per
/// worker.
const FREE_LIST_MAX: usize = 8192;
/// Sets a worker keeps for good, however long it idles: enough for ordinary HTTP/1
/// concurrency without an allocation (1 MiB, at most 2 MiB of grown sets).
const FREE_LIST_KEEP: usize = 64;
/// A buffer that grew past this many times its initial capacity (a body streamed through
/// it, a large head) is replaced by a fresh small one when its request ends. The free
/// list then holds small sets only, so a worker's memory follows the requests in
/// progress rather than the largest burst of large bodies it ever served: with grown
/// sets kept, the soak's RSS crept up by 1.6 MiB over ten minutes, each rare peak of
/// concurrency leaving more grown sets behind. A large transfer pays one allocation of
/// at most 32 KiB for it, nothing next to the copies of its body.
const SHRINK_ABOVE: usize = 2;

/// The buffers one in-progress request uses.
#[derive(Debug)]
pub struct Buffers {
    /// Client input: the head, body bytes, pipelined requests.
    pub input: BytesMut,
    /// The upstream request head.
    pub head: Vec<u8>,
    /// The client-bound response head.
    pub reply: Vec<u8>,
    /// Upstream input.
    pub upstream: BytesMut,
}

/// A worker's spare sets, and the fewest it held since the last [`trim`]: that many sat
/// unused the whole time, so they are surplus.
struct FreeList {
    sets: Vec<Buffers>,
    low_water: usize,
}

thread_local! {
    static FREE: RefCell<FreeList> =
        const { RefCell::new(FreeList { sets: Vec::new(), low_water: 0 }) };
    /// This thread's count of buffer sets taken and not given back. Only this thread
    /// writes it, so a plain load and store suffice: no locked instruction per request.
    static HELD: Arc<AtomicUsize> = {
        let held = Arc::new(AtomicUsize::new(0));
        COUNTERS.lock().unwrap_or_else(PoisonError::into_inner).push(Arc::clone(&held));
        held
    };
}

/// Every thread's [`HELD`] counter, registered once per thread that uses buffers.
static COUNTERS: Mutex<Vec<Arc<AtomicUsize>>> = Mutex::new(Vec::new());

fn count(up: bool) {
    HELD.with(|held| {
        let now = held.load(Ordering::Relaxed);
        held.store(if up { now + 1 } else { now.saturating_sub(1) }, Ordering::Relaxed);
    });
}

/// Buffer sets that connections hold now, in all threads: taken and not yet given back.
/// Silent and idle connections hold none, so this counts requests in progress (and
/// pipelined requests waiting); tests read it to check exactly that.
pub fn held() -> usize {
    let counters = COUNTERS.lock().unwrap_or_else(PoisonError::into_inner);
    counters.iter().map(|held| held.load(Ordering::Relaxed)).sum()
}

/// Takes a set of empty buffers.
pub fn take() -> Buffers {
    count(true);
    let spare = FREE.with(|free| {
        let mut free = free.borrow_mut();
        let spare = free.sets.pop();
        free.low_water = free.low_water.min(free.sets.len());
        spare
    });
    spare.unwrap_or_else(|| Buffers {
        input: BytesMut::with_capacity(INPUT_BYTES),
        head: Vec::with_capacity(HEAD_BYTES),
        reply: Vec::with_capacity(HEAD_BYTES),
        upstream: BytesMut::with_capacity(UPSTREAM_BYTES),
    })
}

/// Replaces each buffer that grew past [`SHRINK_ABOVE`] times its initial size.
fn shrink(buffers: &mut Buffers) {
    if buffers.input.capacity() > INPUT_BYTES * SHRINK_ABOVE {
        buffers.input = BytesMut::with_capacity(INPUT_BYTES);
    }
    if buffers.upstream.capacity() > UPSTREAM_BYTES * SHRINK_ABOVE {
        buffers.upstream = BytesMut::with_capacity(UPSTREAM_BYTES);
    }
    for head in [&mut buffers.head, &mut buffers.reply] {
        if head.capacity() > HEAD_BYTES * SHRINK_ABOVE {
            *head = Vec::with_capacity(HEAD_BYTES);
        }
    }
}

/// Gives buffers back. The input must hold no unread client bytes.
pub fn give(mut buffers: Buffers) {
    debug_assert!(buffers.input.is_empty());
    count(false);
    shrink(&mut buffers);
    buffers.input.clear();
    buffers.head.clear();
    buffers.reply.clear();
    buffers.upstream.clear();
    FREE.with(|free| {
        let mut free = free.borrow_mut();
        if free.sets.len() < FREE_LIST_MAX {
            free.sets.push(buffers);
        }
    });
}

/// Frees the spare sets beyond [`FREE_LIST_KEEP`] that no request used since the last
/// call; each worker calls it about once a second. A burst's sets are gone a second or
/// two after it ends, while a steady load keeps the sets it keeps taking.
pub fn trim() {
    FREE.with(|free| {
        let mut free = free.borrow_mut();
        let surplus = free.low_water.saturating_sub(FREE_LIST_KEEP);
        let keep = free.sets.len() - surplus.min(free.sets.len());
        free.sets.truncate(keep);
        if free.sets.len() <= FREE_LIST_KEEP {
            free.sets.shrink_to(FREE_LIST_KEEP);
        }
        free.low_water = free.sets.len();
        debug_assert!(free.sets.len() <= FREE_LIST_MAX);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grown_buffers_come_back_small() {
        let mut buffers = take();
        buffers.input.reserve(64 * 1024);
        buffers.upstream.reserve(32 * 1024);
        buffers.reply.reserve(64 * 1024);
        give(buffers);
        let buffers = take();
        assert!(buffers.input.capacity() <= INPUT_BYTES * SHRINK_ABOVE);
        assert!(buffers.upstream.capacity() <= UPSTREAM_BYTES * SHRINK_ABOVE);
        assert!(buffers.reply.capacity() <= HEAD_BYTES * SHRINK_ABOVE);
        // A set that stayed small is kept as it is: ordinary requests allocate nothing.
        let input = buffers.input.as_ptr();
        give(buffers);
        assert_eq!(take().input.as_ptr(), input);
    }

    fn spare() -> usize {
        FREE.with(|free| free.borrow().sets.len())
    }

    #[test]
    fn a_bursts_sets_are_kept_while_used_and_trimmed_once_unused() {
        // Unit tests run each on its own thread, so this free list is this test's.
        let burst: Vec<Buffers> = (0..FREE_LIST_MAX + 10).map(|_| take()).collect();
        burst.into_iter().for_each(give);
        assert_eq!(spare(), FREE_LIST_MAX, "the list is bounded");
        trim();
        // The sets came back after the low-water mark was last taken: none sat unused a
        // whole interval yet.
        assert_eq!(spare(), FREE_LIST_MAX);
        // A steady load of 300 requests at once keeps its sets over intervals.
        for _ in 0..3 {
            let load: Vec<Buffers> = (0..300).map(|_| take()).collect();
            load.into_iter().for_each(give);
            trim();
        }
        assert!(spare() >= 300, "{} sets kept under a load of 300", spare());
        assert!(spare() < FREE_LIST_MAX, "the unused rest was freed: {}", spare());
        // Idle: down to what is kept for good.
        trim();
        assert_eq!(spare(), FREE_LIST_KEEP);
        trim();
        assert_eq!(spare(), FREE_LIST_KEEP);
    }
}
