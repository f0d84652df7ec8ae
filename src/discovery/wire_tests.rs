use super::*;

/// A reply header: id 7, QR and RD and RA set, `rcode`, one question, `answers`.
fn header(flags_low: u8, answers: u16) -> Vec<u8> {
    let mut out = vec![0, 7, 0x81, 0x80 | flags_low, 0, 1];
    out.extend_from_slice(&answers.to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]);
    out
}

/// The question `api.test` A IN, at offset 12.
fn question(out: &mut Vec<u8>) {
    out.extend_from_slice(b"\x03api\x04test\x00\x00\x01\x00\x01");
}

fn record(out: &mut Vec<u8>, owner: &[u8], kind: u16, ttl: u32, rdata: &[u8]) {
    out.extend_from_slice(owner);
    out.extend_from_slice(&kind.to_be_bytes());
    out.extend_from_slice(&1u16.to_be_bytes());
    out.extend_from_slice(&ttl.to_be_bytes());
    out.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
    out.extend_from_slice(rdata);
}

#[test]
fn query_layout() {
    let query = encode_query(0xBEEF, "Api.Test.", TYPE_AAAA);
    let mut want = vec![0xBE, 0xEF, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 1];
    want.extend_from_slice(b"\x03api\x04test\x00\x00\x1c\x00\x01");
    want.extend_from_slice(&[0, 0, 41, 0x04, 0xD0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(query, want);
}

#[test]
fn answers_with_compressed_names() {
    let mut msg = header(0, 3);
    question(&mut msg);
    // api.test CNAME pods.test (the "test" suffix compressed to offset 16).
    record(&mut msg, &[0xC0, 12], TYPE_CNAME, 60, b"\x04pods\xC0\x10");
    let pods = msg.len() - 7; // Where "pods" starts, for the next owner.
    let pointer = [0xC0, pods as u8];
    record(&mut msg, &pointer, TYPE_A, 30, &[10, 0, 0, 1]);
    record(&mut msg, &pointer, TYPE_A, 0x8000_0005, &[10, 0, 0, 2]);
    let reply = decode(&msg).unwrap();
    assert_eq!((reply.id, reply.truncated, reply.rcode), (7, false, RCODE_NOERROR));
    assert_eq!(reply.question, ("api.test".to_string(), TYPE_A));
    assert_eq!(reply.answers[0].data, Data::Alias("pods.test".to_string()));
    assert_eq!(reply.answers[1].owner, "pods.test");
    assert_eq!(reply.answers[2].ttl, 0, "a TTL with the top bit set counts as 0");
    let chain = follow(&reply.answers, "API.test.", TYPE_A).unwrap();
    let ips = vec![IpAddr::from([10, 0, 0, 1]), IpAddr::from([10, 0, 0, 2])];
    assert_eq!(chain, Chain { addrs: ips, ttl: Some(0), name: "pods.test".to_string() });
    assert!(follow(&reply.answers, "api.test", TYPE_AAAA).unwrap().addrs.is_empty());
}

#[test]
fn truncated_reply_skips_answers() {
    let mut msg = header(0, 5);
    msg[2] |= 0x02;
    question(&mut msg);
    let reply = decode(&msg).unwrap();
    assert!(reply.truncated && reply.answers.is_empty());
}

#[test]
fn hostile_messages_are_errors_not_panics() {
    let mut base = header(0, 1);
    question(&mut base);
    // A pointer to itself, a forward pointer, a name running past the end.
    for owner in [&[0xC0, 26][..], &[0xC0, 40], &[5, b'a']] {
        let mut msg = base.clone();
        msg.extend_from_slice(owner);
        assert!(decode(&msg).is_err(), "{owner:?}");
    }
    // Every prefix of a good message fails cleanly.
    let mut good = base.clone();
    record(&mut good, &[0xC0, 12], TYPE_A, 1, &[1, 2, 3, 4]);
    for end in 0..good.len() {
        assert!(decode(&good[..end]).is_err(), "prefix of {end} bytes");
    }
    // An address record of the wrong size, a query instead of a reply.
    let mut bad = base.clone();
    record(&mut bad, &[0xC0, 12], TYPE_A, 1, &[1, 2, 3]);
    assert!(decode(&bad).is_err());
    let mut query = good.clone();
    query[2] &= 0x7F;
    assert!(decode(&query).is_err());
}

#[test]
fn name_longer_than_255_bytes_is_refused() {
    let mut msg = header(0, 0);
    for _ in 0..5 {
        msg.push(63);
        msg.extend_from_slice(&[b'a'; 63]);
    }
    msg.extend_from_slice(&[0, 0, 1, 0, 1]);
    assert!(decode(&msg).unwrap_err().contains("255"));
}

#[test]
fn cname_loops_end() {
    let alias = |from: &str, to: &str| Record {
        owner: from.to_string(),
        ttl: 1,
        data: Data::Alias(to.to_string()),
    };
    let looped = [alias("a.test", "b.test"), alias("b.test", "a.test")];
    assert!(follow(&looped, "a.test", TYPE_A).is_err());
}

#[test]
fn names_that_can_be_queried() {
    // 127 one-letter labels: 253 characters, 255 bytes on the wire.
    for good in ["api.internal", "a", "svc_1.ns-2.cluster.local.", &"a.".repeat(127)] {
        assert!(check_name(good).is_ok(), "{good}");
    }
    let long_label = "a".repeat(64);
    for bad in ["", ".", "a..b", "bad name", "caf\u{e9}.test", &long_label, &"a.".repeat(128)] {
        assert!(check_name(bad).is_err(), "{bad}");
    }
}

#[test]
fn mutated_messages_never_panic() {
    let mut good = header(0, 3);
    question(&mut good);
    record(&mut good, &[0xC0, 12], TYPE_CNAME, 60, b"\x04pods\xC0\x10");
    record(&mut good, &[0xC0, 38], TYPE_A, 30, &[10, 0, 0, 1]);
    record(&mut good, &[0xC0, 38], TYPE_AAAA, 30, &[0xFD; 16]);
    assert_eq!(decode(&good).unwrap().answers.len(), 3);
    // Deterministic: the same mutations on every run.
    let mut rng = crate::rng::WyRand::new(0x5EED);
    for _ in 0..20_000 {
        let mut msg = good.clone();
        for _ in 0..=rng.next_u64() % 4 {
            let at = (rng.next_u64() % msg.len() as u64) as usize;
            msg[at] = rng.next_u64() as u8;
        }
        let cut = (rng.next_u64() % (msg.len() as u64 + 1)) as usize;
        if let Ok(reply) = decode(&msg[..cut]) {
            let _ = follow(&reply.answers, &reply.question.0, TYPE_A);
        }
    }
}
