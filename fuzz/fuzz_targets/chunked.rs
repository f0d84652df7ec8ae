//! The chunked decoder, split and whole, against the strict reader. See weir_fuzz::simple::chunked.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| weir_fuzz::simple::chunked(data));
