//! The admin listener's request head parser. See weir_fuzz::simple::admin_head.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| weir_fuzz::simple::admin_head(data));
