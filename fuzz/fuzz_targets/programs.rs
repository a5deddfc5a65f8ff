//! Decodes the input into a program of tapegrad calls and runs every check of
//! `tapegrad_fuzz::program::check` on it; a failed check or an unexpected panic is a
//! crash.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tapegrad_fuzz::program;

fuzz_target!(|data: &[u8]| {
    program::install_panic_hook();
    if let Err(message) = program::check(data) {
        panic!("{message}");
    }
});
