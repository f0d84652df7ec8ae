//! PROXY protocol headers: parse, and the reader's promise. See weir_fuzz::simple::proxy_protocol.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| weir_fuzz::simple::proxy_protocol(data));
