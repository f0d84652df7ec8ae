//! The config parser on arbitrary text. See weir_fuzz::simple::config.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| weir_fuzz::simple::config(data));
