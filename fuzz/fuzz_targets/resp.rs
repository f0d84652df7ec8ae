//! The Redis reply parser of rate-limit stores. See weir_fuzz::simple::resp.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| weir_fuzz::simple::resp(data));
