//! The response head with its body, checked by the strict oracle; see weir_fuzz::response.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| weir_fuzz::response::check(data));
