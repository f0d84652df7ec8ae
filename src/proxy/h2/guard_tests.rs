//! Tests of an HTTP/2 connection's attack budgets.

use super::super::watched::watch;
use super::*;

fn frame(kind: u8, flags: u8, payload: &[u8]) -> Vec<u8> {
    frame_on(1, kind, flags, payload)
}

fn frame_on(stream: u32, kind: u8, flags: u8, payload: &[u8]) -> Vec<u8> {
    crate::http2::frame(kind, flags, stream, payload)
}

fn scan_of(chunks: &[Vec<u8>], split: usize) -> Option<Http2Attack> {
    let (_, watch) = watch((), Duration::from_secs(10));
    let mut bytes = super::super::PREFACE.to_vec();
    chunks.iter().for_each(|c| bytes.extend_from_slice(c));
    // Any split of the bytes into reads gives the same verdict.
    bytes.chunks(split).for_each(|part| watch.0.borrow_mut().feed(part));
    watch.attack()
}

#[tokio::test(start_paused = true)]
async fn floods_of_pings_settings_and_resets_are_told_from_normal_use() {
    let ping = frame(PING, 0, &[0; 8]);
    let pong = frame(PING, ACK, &[0; 8]);
    // Stream `n`'s HEADERS (client streams are odd), and its reset.
    let headers = |n: u32| frame_on(2 * n + 1, HEADERS, 0x5, &[0x82; 20]);
    let reset = |n: u32| frame_on(2 * n + 1, RST_STREAM, 0, &[0, 0, 0, 8]);
    for split in [1, 7, 4096] {
        let burst = vec![ping.clone(); CONTROL_BURST as usize];
        assert_eq!(scan_of(&burst, split), None);
        let flood = vec![ping.clone(); CONTROL_BURST as usize + 1];
        assert_eq!(scan_of(&flood, split), Some(Http2Attack::PingFlood));
        let acks = vec![pong.clone(); 1000];
        assert_eq!(scan_of(&acks, split), None);
        let settings = vec![frame(SETTINGS, 0, &[0, 2, 0, 0, 0, 0]); 101];
        assert_eq!(scan_of(&settings, split), Some(Http2Attack::SettingsFlood));
        // A ping after each new stream is free.
        let timed: Vec<_> = (0..500).flat_map(|n| [headers(n), ping.clone()]).collect();
        assert_eq!(scan_of(&timed, split), None);
        let rapid: Vec<_> = (0..101).flat_map(|n| [headers(n), reset(n)]).collect();
        assert_eq!(scan_of(&rapid, split), Some(Http2Attack::RapidReset));
        // Trailers (a second HEADERS on a stream) do not count as streams: they
        // cannot dilute the reset share.
        let diluted: Vec<_> = (0..101).flat_map(|n| [headers(n), headers(n), reset(n)]).collect();
        assert_eq!(scan_of(&diluted, split), Some(Http2Attack::RapidReset));
        // A browser cancelling a third of its streams is no attack.
        let some: Vec<_> = (0..600)
            .flat_map(|n| if n % 3 == 0 { vec![headers(n), reset(n)] } else { vec![headers(n)] })
            .collect();
        assert_eq!(scan_of(&some, split), None);
    }
}

#[tokio::test(start_paused = true)]
async fn the_control_budget_refills_with_time() {
    let (_, watch) = watch((), Duration::from_secs(10));
    let ping = frame(PING, 0, &[0; 8]);
    let feed = |bytes: &[u8]| watch.0.borrow_mut().feed(bytes);
    feed(super::super::PREFACE);
    (0..CONTROL_BURST).for_each(|_| feed(&ping));
    tokio::time::advance(CONTROL_REFILL * 10).await;
    (0..10).for_each(|_| feed(&ping));
    assert_eq!(watch.attack(), None);
    feed(&ping);
    assert_eq!(watch.attack(), Some(Http2Attack::PingFlood));
}

#[test]
fn a_header_block_is_open_until_its_last_frame_has_passed() {
    let (_, watch) = watch((), Duration::from_secs(10));
    let in_block = |bytes: &[u8]| {
        watch.0.borrow_mut().feed(bytes);
        watch.0.borrow().in_block
    };
    assert!(!in_block(super::super::PREFACE));
    let open = frame(HEADERS, 0x1, &[0x82; 20]);
    assert!(in_block(&open[..12]), "its payload is arriving");
    assert!(in_block(&open[12..]), "no END_HEADERS");
    let last = frame(CONTINUATION, END_HEADERS, &[0x82; 30]);
    assert!(in_block(&last[..20]), "the last frame's payload is arriving");
    assert!(!in_block(&last[20..]));
    let whole = frame(HEADERS, END_HEADERS | 0x1, &[0x82; 20]);
    assert!(in_block(&whole[..12]));
    assert!(!in_block(&whole[12..]));
    assert!(!in_block(&frame(PING, 0, &[0; 8])));
    assert!(!in_block(&frame(HEADERS, END_HEADERS, &[])), "an empty block ends at once");
}

#[tokio::test(start_paused = true)]
async fn a_stalled_header_block_is_refused_after_header_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut client, server) = tokio::io::duplex(1 << 16);
    let (mut watched, watch) = watch(server, Duration::from_secs(10));
    let mut buf = vec![0; 1 << 16];
    let mut sent = super::super::PREFACE.to_vec();
    sent.extend(frame(HEADERS, END_HEADERS, &[0x82; 20]));
    client.write_all(&sent).await.unwrap();
    watched.read_exact(&mut buf[..sent.len()]).await.unwrap();
    let read = tokio::time::timeout(Duration::from_secs(60), watched.read(&mut buf));
    assert!(read.await.is_err(), "a complete head arms no deadline");
    assert_eq!(watch.attack(), None);
    client.write_all(&frame(HEADERS, 0x1, &[0x82; 20])).await.unwrap();
    watched.read_exact(&mut buf[..29]).await.unwrap();
    let read = tokio::time::timeout(Duration::from_secs(9), watched.read(&mut buf));
    assert!(read.await.is_err());
    assert_eq!(watch.attack(), None, "within header_timeout");
    let read = tokio::time::timeout(Duration::from_secs(2), watched.read(&mut buf));
    assert!(read.await.is_err(), "reads nothing once refused");
    assert_eq!(watch.attack(), Some(Http2Attack::SlowHeaders));
}

#[tokio::test(start_paused = true)]
async fn only_resets_of_young_streams_count_as_rapid_reset() {
    // Goal: a client that cancels streams it kept open a while (subscriptions, long
    // downloads) is no attack; one that resets them as it opens them is. Method: 120
    // streams opened within 50 ms, all reset 1.5 s later: nothing; then 130 more, each
    // reset at once: Rapid Reset (130 of the 250 streams opened, over half).
    let (_, watch) = watch((), Duration::from_secs(10));
    let headers = |n: u32| frame_on(2 * n + 1, HEADERS, 0x5, &[0x82; 20]);
    let reset = |n: u32| frame_on(2 * n + 1, RST_STREAM, 0, &[0, 0, 0, 8]);
    let feed = |bytes: &[u8]| watch.0.borrow_mut().feed(bytes);
    feed(super::super::PREFACE);
    for n in 0..120 {
        feed(&headers(n));
        if n % 40 == 0 {
            tokio::time::advance(Duration::from_millis(20)).await;
        }
    }
    tokio::time::advance(Duration::from_millis(1500)).await;
    (0..120).for_each(|n| feed(&reset(n)));
    assert_eq!(watch.attack(), None, "resets of streams 1.5 s old");
    (120..250).for_each(|n| {
        feed(&headers(n));
        feed(&reset(n));
    });
    assert_eq!(watch.attack(), Some(Http2Attack::RapidReset));
}

#[test]
fn the_header_budget_refuses_streams_alone_until_refusals_in_a_row_pass_its_bound() {
    // 16 x 1 KiB of headers; up to 10 streams at once, so 100 refusals in a row (the
    // least) make the Bomb; with 100 streams, 400; with 10,000, 1,000 (the most).
    let mut budget = HeaderBudget::new(1024, 10);
    (0..HEADER_BUDGET_STREAMS).for_each(|_| assert_eq!(budget.take(1024), Ok(())));
    (0..100).for_each(|_| assert_eq!(budget.take(1), Err(None)));
    assert_eq!(budget.take(1), Err(Some(Http2Attack::HeaderBudget)), "the 101st in a row");
    // A stream that ends gives its room back, and the count starts over.
    budget.give(1024);
    assert_eq!(budget.take(1000), Ok(()));
    assert_eq!(budget.take(100), Err(None), "24 bytes left");
    let mut wide = HeaderBudget::new(1024, 100);
    (0..HEADER_BUDGET_STREAMS).for_each(|_| assert_eq!(wide.take(1024), Ok(())));
    (0..400).for_each(|_| assert_eq!(wide.take(1), Err(None)));
    assert_eq!(wide.take(1), Err(Some(Http2Attack::HeaderBudget)));
    // At most 1,000, whatever the streams allowed.
    let mut widest = HeaderBudget::new(1024, 10_000);
    (0..HEADER_BUDGET_STREAMS).for_each(|_| assert_eq!(widest.take(1024), Ok(())));
    (0..1000).for_each(|_| assert_eq!(widest.take(1), Err(None)));
    assert_eq!(widest.take(1), Err(Some(Http2Attack::HeaderBudget)));
}
