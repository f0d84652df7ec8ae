//! Tests for sticky ids, the pinned pick and the Set-Cookie value.

use super::*;
use crate::balance::testing::{backend, backends, set_healthy};
use crate::config::StickyConfig;
use crate::rng;

fn settings(secret: Option<&str>) -> PoolConfig {
    let mut settings = PoolConfig::new("web", StrategyKind::Sticky, Vec::new());
    let sticky = StickyConfig { secret: secret.map(str::to_string), ..StickyConfig::default() };
    settings.sticky = Some(sticky);
    settings
}

fn request(id: &[u8]) -> PickRequest<'_> {
    PickRequest { hash_key: None, sticky_id: Some(id) }
}

#[test]
fn siphash_matches_the_reference_vectors() {
    let key = (0x0706_0504_0302_0100, 0x0f0e_0d0c_0b0a_0908);
    let message: Vec<u8> = (0..15).collect();
    assert_eq!(sip24(key, b""), 0x726f_db47_dd0e_0e31);
    assert_eq!(sip24(key, &message), 0xa129_ca61_49be_45e5);
    assert_eq!(sip24(key, &message[..8]), 0x93f5_f579_9a93_2462);
}

#[test]
fn ids_are_stable_across_reordering_and_hide_the_address() {
    let pool = backends(&[1, 1, 1]);
    let reversed: Vec<_> = (0..3).rev().map(|i| backend(&format!("10.0.0.{i}:80"), 1)).collect();
    let (a, b) = (Sticky::new(&settings(None), &pool), Sticky::new(&settings(None), &reversed));
    for i in 0..3 {
        let id = a.sticky_id(i).expect("an id");
        assert_eq!(Some(id), b.sticky_id(2 - i));
        assert_eq!(id.len(), 16);
        assert!(id.bytes().all(|c| c.is_ascii_hexdigit()), "{id}");
        assert!(!id.contains("10.0.0") && id != i.to_string());
    }
    // Pinned: the default key must not change, or every client is re-pinned on upgrade.
    assert_eq!(a.sticky_id(0), Some(PINNED));
    assert_eq!(a.sticky_id(3), None);
    // Case of the host does not matter; the secret does.
    let upper = [backend("HOST.example:80", 1)];
    let lower = [backend("host.example:80", 1)];
    let id = |s: &Sticky| s.sticky_id(0).map(str::to_string);
    assert_eq!(
        id(&Sticky::new(&settings(None), &upper)),
        id(&Sticky::new(&settings(None), &lower))
    );
    let secret = Sticky::new(&settings(Some("s3cret")), &pool);
    assert_ne!(secret.sticky_id(0), a.sticky_id(0));
    assert_eq!(Sticky::new(&settings(Some("s3cret")), &pool).sticky_id(0), secret.sticky_id(0));
}

const PINNED: &str = "7d9e1f473f45f654";

#[test]
fn a_cookie_pins_to_a_healthy_backend_even_at_weight_zero() {
    rng::seed_thread(31);
    let pool = backends(&[1, 0, 1]);
    let sticky = Sticky::new(&settings(None), &pool);
    let id = sticky.sticky_id(1).expect("an id").to_string();
    assert!((0..100).all(|_| sticky.pick(&pool, &request(id.as_bytes())) == Some(1)));
    let upper = id.to_ascii_uppercase();
    assert_eq!(sticky.pick(&pool, &request(upper.as_bytes())), Some(1));
    // Unhealthy: the base strategy picks again, never the pinned backend.
    set_healthy(&pool, 1, false);
    assert!((0..100).all(|_| matches!(sticky.pick(&pool, &request(id.as_bytes())), Some(0 | 2))));
}

#[test]
fn a_tampered_or_unknown_id_means_a_base_pick() {
    rng::seed_thread(32);
    let pool = backends(&[1, 1, 1, 1]);
    let sticky = Sticky::new(&settings(None), &pool);
    let id = sticky.sticky_id(2).expect("an id").to_string();
    let mut tampered = id.clone().into_bytes();
    tampered[5] = if tampered[5] == b'0' { b'1' } else { b'0' };
    for bad in [&tampered[..], &id.as_bytes()[..15], b"zzzzzzzzzzzzzzzz", b"", b"2"] {
        let mut seen = [0u32; 4];
        for _ in 0..400 {
            seen[sticky.pick(&pool, &request(bad)).expect("a base pick")] += 1;
        }
        assert!(seen.iter().all(|&n| n > 50), "{bad:?} gave {seen:?}");
    }
    assert!(sticky.pick(&pool, &PickRequest::default()).is_some());
    (0..4).for_each(|i| set_healthy(&pool, i, false));
    assert_eq!(sticky.pick(&pool, &request(id.as_bytes())), None);
}

#[test]
fn set_cookie_carries_the_configured_attributes() {
    let mut out = Vec::new();
    write_set_cookie(&StickyConfig::default(), "00ff00ff00ff00ff", &mut out);
    assert_eq!(out, b"weir_affinity=00ff00ff00ff00ff; Path=/; HttpOnly");
    let config = StickyConfig {
        cookie: "srv".into(),
        path: "/app".into(),
        max_age: Some(Duration::from_millis(3_600_500)),
        secure: true,
        http_only: false,
        same_site: Some(SameSite::Lax),
        ..StickyConfig::default()
    };
    out.clear();
    write_set_cookie(&config, "0123456789abcdef", &mut out);
    let text = String::from_utf8(out).unwrap();
    assert_eq!(text, "srv=0123456789abcdef; Path=/app; Max-Age=3601; Secure; SameSite=Lax");
}
