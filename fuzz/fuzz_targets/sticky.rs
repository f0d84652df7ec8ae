//! The sticky cookie: lookup, pick and stripping. See weir_fuzz::simple::sticky.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| weir_fuzz::simple::sticky(data));
